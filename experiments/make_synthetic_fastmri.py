"""Write a synthetic fastMRI-format dataset (k-space of held-out phantoms or brains through synthetic coil maps).

Slices are phantoms of the held-out evaluation stream (:data:`invsolve.tasks.EVALUATION_SEED`), never
seen by the default prior in training or tuning, or with ``--source brain`` held-out brain slices (the MNI152
band never used to train the brain prior, :mod:`invsolve.datasets.brain`); files are readable by ``fastmri.data.SliceDataset``
and carry ``reconstruction_rss`` (multi-coil) or ``reconstruction_esc`` (single-coil) computed from the
noisy fully sampled k-space as fastMRI does.

    python experiments/make_synthetic_fastmri.py --out experiments/data/fastmri_synthetic_multicoil \\
        --volumes 10 --slices 4 --coils 8
    python experiments/make_synthetic_fastmri.py --source brain --seed 0 --out experiments/data/fastmri_brain_multicoil
"""

from __future__ import annotations

import argparse

from invsolve.datasets.fastmri_files import write_synthetic_dataset
from invsolve.tasks import EVALUATION_SEED


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--volumes", type=int, default=10)
    parser.add_argument("--slices", type=int, default=4, help="slices per volume")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--coils", type=int, default=8, help="receive coils; 0 = single-coil files")
    parser.add_argument("--noise", type=float, default=0.01, help="noise std relative to the RMS of k-space")
    parser.add_argument("--source", default="ellipses", choices=("ellipses", "brain"), help="images (default: ellipses)")
    parser.add_argument("--seed", type=int, default=EVALUATION_SEED,
                        help="stream seed (default: the held-out phantom stream; brain slices are held out by split)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    paths = write_synthetic_dataset(args.out, n_volumes=args.volumes, n_slices=args.slices, size=args.size,
                                    n_coils=args.coils or None, seed=args.seed, noise_level=args.noise,
                                    overwrite=args.overwrite, source=args.source)
    print(f"wrote {len(paths)} files to {args.out}")


if __name__ == "__main__":
    main()
