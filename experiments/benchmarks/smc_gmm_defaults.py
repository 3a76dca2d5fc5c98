"""The SMC samplers at their default settings on the GMM benchmark, 2000 particles: SW / floor and log-evidence error.

Cells: the benchmark's ``d_x`` in {8, 80} x ``d_y`` in {1, 2, 4} (identity component covariances, problems and
exact reference sets of :mod:`gmm`), plus ``d_x = 8`` with **full, random component covariances** (each
``Q diag(lam) Q^T``, ``lam`` log-uniform in [0.2, 2]: no isotropic ``data_variance`` is exact there). Each sampler
runs with its declared defaults (100 steps, ``data_variance="auto"``) and 2000 particles; ``fkc+tempering``
adds the adaptive tempering with MALA resample-move (``cess_target=0.5``, one move per increment). Per cell:
the mean over problems of ``SW / floor`` (the floor: 2000 fresh exact draws against the same reference), the
mean log-evidence error ``log Z_hat - log p(y)`` and its largest absolute value, and the NFE.

    OMP_NUM_THREADS=1 .venv/bin/python experiments/benchmarks/smc_gmm_defaults.py --problems 5
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gmm  # noqa: E402

from invsolve._atomic import write_text_atomic  # noqa: E402
from invsolve.exact_posterior import log_evidence  # noqa: E402
from invsolve.metrics import sliced_wasserstein  # noqa: E402
from invsolve.samplers import afes, fkc, tds  # noqa: E402

N = 2000
DIRECTIONS = 100
SAMPLERS = {
    "afes": (afes, {}),
    "fkc": (fkc, {}),
    "fkc+tempering": (fkc, {"cess_target": 0.5, "moves": 1}),
    "tds": (tds, {}),
}
CELLS = [(d_x, d_y, False) for d_x in (8, 80) for d_y in (1, 2, 4)] + [(8, d_y, True) for d_y in (1, 2, 4)]
OUT = Path(__file__).resolve().parents[1] / "results" / "smc_gmm_defaults.md"


def cell_name(d_x: int, d_y: int, full: bool) -> str:
    return f"d_x={d_x}, d_y={d_y}" + (", full cov." if full else "")


def run_problem(d_x: int, d_y: int, full: bool, index: int, samplers: list[str]) -> dict:
    seed = gmm.problem_seed(False, d_x, d_y, index) + (5 * 10**8 if full else 0)
    problem = gmm.make_problem(d_x, d_y, seed, full_covariances=full)
    ref, _ = gmm.reference_sets(problem, N, DIRECTIONS)
    draws = gmm.exact(problem.measurement, problem.prior, n_samples=N, generator=gmm.stream(seed, 60)).samples[:, 0]
    floor = sliced_wasserstein(draws, ref, DIRECTIONS, gmm.directions_generator(seed))
    exact_log_z = float(log_evidence(problem.measurement, problem.prior)[0])
    out = {"floor": floor}
    for name in samplers:
        fn, settings = SAMPLERS[name]
        t0 = time.perf_counter()
        res = fn(problem.measurement, problem.prior, n_samples=N, generator=gmm.stream(seed, 200 + list(SAMPLERS).index(name)),
                 **settings)
        sw = sliced_wasserstein(res.samples[:, 0], ref, DIRECTIONS, gmm.directions_generator(seed),
                                a_weights=res.weights[:, 0])
        out[name] = {"ratio": sw / floor, "log_z_error": float(res.diagnostics["log_evidence"][0]) - exact_log_z,
                     "nfe": res.nfe, "wall_s": time.perf_counter() - t0}
    return out


def render(store: dict, commands: list[str]) -> str:
    lines = ["# SMC samplers at their defaults on the GMM benchmark (2000 particles)", "",
             __doc__.split("\n\n")[1].replace("\n", " "), "",
             "Target (issue 23): the best SMC sampler within 1.5x of the floor in every cell, log-evidence within "
             "0.1 nats of the exact value.", ""]
    names = [n for n in SAMPLERS if any(n in v for v in store.values())]
    header = "| cell | problems | " + " | ".join(f"{n}: SW/floor" for n in names) + " | " + \
        " | ".join(f"{n}: ΔlogZ mean (max abs)" for n in names) + " |"
    lines += [header, "|---|---:|" + "---:|" * (2 * len(names))]
    for d_x, d_y, full in CELLS:
        rows = [v for k, v in store.items() if k.startswith(cell_name(d_x, d_y, full) + "#")]
        if not rows:
            continue
        ratios = [f"{statistics.mean(r[n]['ratio'] for r in rows):.2f}" for n in names]
        errs = [f"{statistics.mean(r[n]['log_z_error'] for r in rows):+.3f} "
                f"({max(abs(r[n]['log_z_error']) for r in rows):.3f})" for n in names]
        lines.append(f"| {cell_name(d_x, d_y, full)} | {len(rows)} | " + " | ".join(ratios + errs) + " |")
    nfe = {n: statistics.mean(r[n]["nfe"] for r in store.values() if n in r) for n in names}
    wall = {n: statistics.mean(r[n]["wall_s"] for r in store.values() if n in r) for n in names}
    lines += ["", "Mean NFE / wall seconds per problem: " + ", ".join(f"{n} {nfe[n]:.0f} / {wall[n]:.1f} s" for n in names),
              "", "Commands:", "", *(f"    {c}" for c in commands), ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--problems", type=int, default=5)
    p.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=list(SAMPLERS))
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    out_md = Path(args.out)
    store_path = out_md.with_suffix(".json")
    store = json.loads(store_path.read_text()) if store_path.exists() else {}
    commands = store.pop("_commands", [])
    commands = list(dict.fromkeys(commands + [f"OMP_NUM_THREADS={torch.get_num_threads()} .venv/bin/python "
                                              f"experiments/benchmarks/smc_gmm_defaults.py {shlex.join(sys.argv[1:])}"]))
    for d_x, d_y, full in CELLS:
        for i in range(args.problems):
            key = f"{cell_name(d_x, d_y, full)}#{i}"
            todo = [n for n in args.samplers if n not in store.get(key, {})]
            if not todo:
                continue
            store[key] = store.get(key, {}) | run_problem(d_x, d_y, full, i, todo)
            print(key, {n: round(store[key][n]["ratio"], 2) for n in todo}, flush=True)
            write_text_atomic(store_path, json.dumps(store | {"_commands": commands}, indent=1))
    write_text_atomic(store_path, json.dumps(store | {"_commands": commands}, indent=1))
    write_text_atomic(out_md, render(store, commands))
    print(f"wrote {out_md}")


if __name__ == "__main__":
    main()
