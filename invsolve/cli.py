"""The ``invsolve`` command line. Subcommands are thin: they parse arguments and call library functions.

User mistakes (bad arguments, missing files, existing outputs) end with one clear
line on stderr and exit code 2; library code never prints, progress goes to tqdm.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


class UserError(Exception):
    """An error caused by the command's input, reported as one line without a traceback."""


def _demo(args: argparse.Namespace) -> int:
    from invsolve.demo import run_demo

    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise UserError(f"output folder {out} exists and is not empty; pass --overwrite to replace its files")
    report = run_demo(out, device=args.device, seed=args.seed, n_samples=args.samples, steps=args.steps,
                      samplers=_names(args.samplers), tasks=_names(args.tasks), progress=not args.quiet)
    print(report.markdown)
    print("figures: " + ", ".join(str(p) for p in report.figures) + f"\ntable: {report.table}")
    return 0


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


def _train_prior(args: argparse.Namespace) -> int:
    from invsolve.training import run_from_args

    result = run_from_args(args)
    print(
        f"trained to step {result.step} (final loss {result.final_loss:.5g}, {result.wall_seconds:.0f} s"
        f"{', stopped by the wall-time limit' if result.stopped_early else ''})\n"
        f"prior: {result.prior}\ncheckpoint: {result.checkpoint}\nloss log: {result.loss_log}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="invsolve", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo",
        help="reconstruct a held-out phantom (CT, MRI, inpainting) with every sampler on the default prior",
        description="Reconstruct a held-out 64x64 phantom from sparse-view CT (8, 16 views), MRI (4x, 8x) and "
        "50%% inpainting with the classical baseline, TV and every posterior sampler on the shipped default "
        "prior; write one PNG figure per task plus a metrics table (markdown and JSON).",
    )
    demo.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    demo.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    demo.add_argument("--seed", type=int, default=0,
                      help="picks the held-out phantom and seeds masks, noise and samplers (default: 0)")
    demo.add_argument("--samples", type=int, default=4, help="posterior samples per sampler, >= 2 (default: 4)")
    demo.add_argument("--steps", type=int, default=None,
                      help="steps for every sampler (default: DPS 100, PiGDM 50, RED-Diff 100, DDRM 20)")
    demo.add_argument("--samplers", default=None, help="comma-separated subset, e.g. DPS,DDRM (default: all)")
    demo.add_argument("--tasks", default=None,
                      help="comma-separated subset of: CT 8 views, CT 16 views, MRI 4x, MRI 8x, Inpainting 50%% "
                      "(default: all)")
    demo.add_argument("--overwrite", action="store_true", help="replace files in an existing output folder")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=_demo)

    from invsolve.training import add_train_arguments

    train = sub.add_parser(
        "train-prior",
        help="train an EDM diffusion prior (phantoms, NIfTI folder or fastMRI files)",
        description="Train an EDM-preconditioned diffusion prior with EMA, periodic atomic checkpoints and "
        "exact resume (rerun the same command to continue).",
    )
    add_train_arguments(train)
    train.set_defaults(func=_train_prior)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as err:
        print(f"invsolve {args.command}: error: {err}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, FileNotFoundError) as err:
        # Raised by argument validation in the library: the message names the argument.
        print(f"invsolve {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
