"""Train an EDM diffusion prior (Karras et al., 2022) on phantoms, NIfTI slices or fastMRI slices.

Examples::

    # the shipped default prior (see invsolve/weights/default_prior.json for the exact recipe)
    OMP_NUM_THREADS=1 python experiments/train_prior.py --out runs/default_prior --source ellipses

    # resume after an interruption: run the same command again (the checkpoint in --out is picked up)

    # complex fastMRI slices at 128x128 on a GPU
    python experiments/train_prior.py --out runs/knee --source fastmri --data-path /data/knee \
        --fastmri-mode complex --resolution 128 --device cuda

All options: ``--help``. The training itself is :func:`invsolve.training.train`; the options are
:mod:`invsolve.training_cli`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from invsolve.training_cli import add_train_arguments, run_from_args


def main(argv: Sequence[str] | None = None) -> int:
    parser = add_train_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    result = run_from_args(args)
    summary = {
        "step": result.step,
        "final_loss": result.final_loss,
        "wall_seconds": round(result.wall_seconds, 1),
        "stopped_early": result.stopped_early,
        "checkpoint": str(result.checkpoint),
        "prior": str(result.prior),
        "loss_log": str(result.loss_log),
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
