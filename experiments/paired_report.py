"""A study's results as a quality-bar table: per operator and method PSNR / SSIM (mean +- 95% t-interval over
items) and the paired PSNR difference to a reference method (default: tuned TV), with its 95% t-interval.

    python experiments/paired_report.py runs/brain_quality_bar_mini --out experiments/results/brain_quality_bar_mini.md \\
        --title "Brain quality bar (mini)" --command "OMP_NUM_THREADS=2 invsolve study CONFIG --out DIR"

Reads ``results.csv`` of a study folder (one row per case; or, while the study runs, the records of the items whose
cases are all finished); rows of one operator and item are paired across methods.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shlex
from collections import defaultdict
from pathlib import Path

from invsolve._atomic import write_text_atomic
from invsolve.metrics import format_interval


def read_rows(study: Path) -> list[dict]:
    """The study's ``results.csv``, or (for a study still running or stopped early) its finished case records,
    keeping only items whose every case is finished, so that every comparison is paired."""
    if (study / "results.csv").is_file():
        with open(study / "results.csv", newline="") as f:
            return list(csv.DictReader(f))
    records = [json.loads(p.read_text()) for p in sorted((study / "cases").glob("*.json"))]
    per_item = defaultdict(int)
    for r in records:
        per_item[r["item"]] += 1
    full = max(per_item.values(), default=0)
    return [r for r in records if per_item[r["item"]] == full]


def paired_table(rows: list[dict], reference: str) -> list[str]:
    by: dict[tuple[str, str], dict[str, dict]] = defaultdict(dict)  # (operator, method) -> item -> row
    for r in rows:
        by[(r["operator"], r["method"])][r["item"]] = r
    operators = sorted(dict.fromkeys(r["operator"] for r in rows))
    methods = sorted(dict.fromkeys(r["method"] for r in rows),
                     key=lambda m: ({"baseline": 0, reference: 1}.get(m.split(" ")[0], 2), m))
    ref = next((m for m in methods if m.split(" ")[0] == reference), None)
    lines = [f"| operator | method | n | PSNR (dB) | SSIM | PSNR - {reference} (paired, dB) | s / case |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for op in operators:
        for m in methods:
            cases = by.get((op, m), {})
            if not cases:
                continue
            psnr = [float(c["psnr"]) for c in cases.values()]
            ssim = [float(c["ssim"]) for c in cases.values()]
            diff = "-"
            if ref is not None and m != ref:
                base = by.get((op, ref), {})
                pairs = [float(c["psnr"]) - float(base[i]["psnr"]) for i, c in cases.items() if i in base]
                diff = format_interval(pairs) if len(pairs) > 1 else "-"
            seconds = sum(float(c["seconds"]) for c in cases.values()) / len(cases)
            lines.append(f"| {op} | {m} | {len(cases)} | {format_interval(psnr)} | {format_interval(ssim, 4)} | "
                         f"{diff} | {seconds:.1f} |")
    return lines


def best_against_reference(rows: list[dict], reference: str) -> list[str]:
    """Per operator: the posterior sampler of highest mean PSNR, RED-Diff, and each one's paired difference to the
    reference (the issue's targets are read off this table)."""
    lines = [f"| operator | best sampler | best - {reference} (dB) | red-diff - {reference} (dB) |",
             "|---|---|---:|---:|"]
    for op in sorted(dict.fromkeys(r["operator"] for r in rows)):
        mine = [r for r in rows if r["operator"] == op]
        ref = {r["item"]: float(r["psnr"]) for r in mine if r["method"].split(" ")[0] == reference}
        methods = defaultdict(dict)
        for r in mine:
            if r["method"].split(" ")[0] not in ("baseline", reference):
                methods[r["method"]][r["item"]] = float(r["psnr"])

        def diff(method: str) -> str:
            pairs = [v - ref[i] for i, v in methods[method].items() if i in ref]
            return format_interval(pairs) if len(pairs) > 1 else "-"

        best = max(methods, key=lambda m: sum(methods[m].values()) / len(methods[m]))
        red = next((m for m in methods if m.startswith("red-diff")), None)
        lines.append(f"| {op} | {best} | {diff(best)} | {diff(red) if red else '-'} |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help="a study output folder (with results.csv)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--reference", default="tv", help="method the paired differences are taken against")
    parser.add_argument("--title", default="Quality bar")
    parser.add_argument("--command", default="", help="the command that ran the study (recorded)")
    parser.add_argument("--note", action="append", default=[], help="a paragraph under the table (repeatable)")
    parser.add_argument("--group", action="append", default=[], metavar="NAME=REGEX",
                        help="also a table of the items whose name matches REGEX, titled NAME (repeatable)")
    args = parser.parse_args(argv)
    rows = read_rows(args.study)
    if not rows:
        raise SystemExit(f"{args.study} holds no finished case")
    sections = ["## Best posterior sampler and RED-Diff against the reference", "",
                *best_against_reference(rows, args.reference), ""]
    for group in args.group:
        name, _, pattern = group.partition("=")
        members = [r for r in rows if re.search(pattern, r["item"])]
        if not members:
            raise SystemExit(f"--group {group!r} matches no item")
        sections += [f"## {name} ({len({r['item'] for r in members})} items)", "",
                     *paired_table(members, args.reference), "", *best_against_reference(members, args.reference), ""]
    groups = "".join(f" --group {shlex.quote(g)}" for g in args.group)
    text = "\n".join([f"# {args.title}", "", *paired_table(rows, args.reference), "", *args.note, "", *sections,
                      "Commands:", "", "```", args.command,
                      f"python experiments/paired_report.py {args.study} --out {args.out}{groups}", "```", ""])
    write_text_atomic(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
