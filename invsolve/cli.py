"""The ``invsolve`` command line. Subcommands are thin: they parse arguments and call library functions.

User mistakes (bad arguments, missing files, existing outputs) end with one clear
line on stderr and exit code 2; library code never prints, progress goes to tqdm.
"""

from __future__ import annotations

import argparse
import errno
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
                      samplers=_names(args.samplers), tasks=_names(args.tasks), data=args.data,
                      precision=args.precision,
                      progress=not args.quiet)
    print(report.markdown)
    print("figures: " + ", ".join(str(p) for p in report.figures) + f"\ntable: {report.table}")
    return 0


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


def _train_prior(args: argparse.Namespace) -> int:
    from invsolve.training_cli import run_from_args

    result = run_from_args(args)
    print(
        f"trained to step {result.step} (final loss {result.final_loss:.5g}, {result.wall_seconds:.0f} s"
        f"{', stopped by the wall-time limit' if result.stopped_early else ''})\n"
        f"prior: {result.prior}\ncheckpoint: {result.checkpoint}\nloss log: {result.loss_log}"
    )
    return 0


def _reconstruct(args: argparse.Namespace) -> int:
    from invsolve.reconstruct import reconstruct_file

    volume = args.volume if args.volume in (None, "all") else _int_arg("--volume", args.volume)
    slices = args.slices
    if slices not in ("all", "middle"):
        slices = [_int_arg("--slices", s) for s in slices.split(",")]
    sampler = {"name": args.sampler, **_settings(args.set)} if args.set else args.sampler
    report = reconstruct_file(args.input, args.out, operator=args.operator, sampler=sampler, steps=args.steps,
                              samples=args.samples, seed=args.seed, device=args.device, prior=args.prior,
                              resize="prior" if args.resize else "none", volume=volume, plane=args.plane,
                              slices=slices, overwrite=args.overwrite, progress=not args.quiet)
    m = report.metrics
    print(f"PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f}, NMSE {m['nmse']:.4g} against the reference")
    print("wrote: " + ", ".join(str(p) for p in report.outputs))
    return 0


def _settings(pairs: list[str]) -> dict[str, object]:
    """``--set KEY=VALUE`` pairs as sampler settings; values are read as integers, floats, booleans or text."""
    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = _scalar(value.strip())
    return out


def _scalar(text: str) -> object:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _int_arg(flag: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{flag} expects an integer, got {text!r}") from None


def _study(args: argparse.Namespace) -> int:
    from invsolve.study import load_config, run_study

    config = load_config(args.config, steps=args.steps, seed=args.seed)
    report = run_study(config, args.out, overwrite=args.overwrite, device=args.device, progress=not args.quiet)
    if report.rows:  # the main process prints the summary
        print((report.out_dir / "summary.md").read_text())
        print(f"{report.n_cases} cases ({report.ran} run here, {report.skipped} already done); "
              f"results: {report.out_dir / 'results.csv'}")
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    from invsolve.benchmark import run_benchmark

    result = run_benchmark(tasks=_names(args.tasks), samplers=_names(args.samplers), n_phantoms=args.phantoms,
                           steps=args.steps, samples=args.samples, seed=args.seed, device=args.device,
                           out=args.out, overwrite=args.overwrite, progress=not args.quiet)
    print(result.markdown)
    return 0


def _sampler_names() -> list[str]:
    from invsolve.pipeline.methods import method_names

    return [n for n in method_names() if n not in ("baseline", "tv")]


def _demo_samplers():
    from invsolve.pipeline.methods import demo_samplers

    return demo_samplers()


def _demo_labels() -> list[str]:
    return [d.label for d in _demo_samplers()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="invsolve", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    from invsolve.demo import DEMO_SAMPLES, DEMO_TASK_NAMES

    demo = sub.add_parser(
        "demo",
        help="reconstruct a held-out brain slice (CT, MRI, inpainting) with every sampler on the brain prior",
        description="Reconstruct a held-out 64x64 brain slice (or, with --data ellipses, a phantom) from sparse-view "
        "CT (8 views), MRI (4x) and 50%% inpainting (CT 16 views and MRI 8x on request) with the classical baseline, tuned TV and every posterior "
        "sampler on a shipped prior; write one PNG figure per task plus a metrics table (markdown and JSON).",
    )
    demo.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    demo.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    demo.add_argument("--seed", type=int, default=0,
                      help="picks the held-out image and seeds masks, noise and samplers (default: 0)")
    demo.add_argument("--samples", type=int, default=DEMO_SAMPLES,
                      help=f"posterior samples per sampler, >= 2 (default: {DEMO_SAMPLES})")
    demo.add_argument("--steps", type=int, default=None,
                      help="steps for every sampler (default: each sampler's own: "
                      f"{', '.join(f'{d.label} {d.default_steps}' for d in _demo_samplers())})")
    demo.add_argument("--samplers", default=None,
                      help=f"comma-separated subset of {', '.join(_demo_labels())} (default: all)")
    demo.add_argument("--tasks", default=None,
                      help="comma-separated subset of: CT 8 views, CT 16 views, MRI 4x, MRI 8x, Inpainting 50%% "
                      f"(default: {', '.join(DEMO_TASK_NAMES).replace('%', '%%')})")
    demo.add_argument("--data", default="brain", choices=("brain", "ellipses"),
                      help="held-out image: a brain slice of the MNI152 band never used in training (brain prior) or "
                      "a random-ellipse phantom, total variation's exact model (default prior) (default: brain)")
    demo.add_argument("--precision", default="float32", choices=("float32", "bfloat16", "float16"),
                      help="network precision: bfloat16 / float16 autocast the network only, data consistency stays "
                      "float32 (for GPUs; default: float32)")
    demo.add_argument("--overwrite", action="store_true", help="replace files in an existing output folder")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=_demo)

    from invsolve.training_cli import add_train_arguments

    train = sub.add_parser(
        "train-prior",
        help="train an EDM diffusion prior (phantoms, NIfTI folder or fastMRI files)",
        description="Train an EDM-preconditioned diffusion prior with EMA, periodic atomic checkpoints and "
        "exact resume (rerun the same command to continue).",
    )
    add_train_arguments(train)
    train.set_defaults(func=_train_prior)

    rec = sub.add_parser(
        "reconstruct",
        help="reconstruct a NIfTI volume, a fastMRI file or an image; write the posterior mean and std",
        description="NIfTI and images are the ground truth: each slice is measured with --operator (simulated, "
        "seeded) and reconstructed with the prior. fastMRI k-space is undersampled with the operator's mask. "
        "Writes OUT (mean) and OUT_std (std; .h5: a second dataset) as .nii/.nii.gz (NIfTI input, header kept), "
        ".h5 (fastMRI submission layout) or .png (one slice), plus OUT.json with settings and metrics.",
    )
    rec.add_argument("input", help="input file: .nii/.nii.gz, fastMRI .h5, or .png/.jpg/.tif/.npy")
    rec.add_argument("--out", required=True, help="output file: .nii.gz, .nii, .h5 or .png")
    rec.add_argument("--operator", required=True,
                     help="operator spec, e.g. mri:acceleration=4, ct:views=8, ct:views=60,arc=90, "
                     "inpainting:fraction=0.5, blur:sigma=1.5, sr:factor=4 (add noise=0.01 for the relative noise)")
    rec.add_argument("--sampler", default="dps",
                     help=f"a sampler ({', '.join(_sampler_names())}; those needing a volume take NIfTI volumes) or "
                     "the classical baseline / tv (default: dps)")
    rec.add_argument("--steps", type=int, default=None, help="sampler steps (default: the sampler's demo setting)")
    rec.add_argument("--samples", type=int, default=4,
                     help="posterior samples (particles) per slice, or per volume for samplers of volumes; each sample "
                          "is a full run, so the cost grows with it (mbir3d: 4 samples = 4 DiffusionMBIR runs); the "
                          "std output is their spread: with 1 sample it is undefined and written as NaN (default: 4)")
    rec.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="a sampler setting (repeatable), e.g. --set lam_xy=4e-4 for mbir3d or --set zeta=0.5 for dps")
    rec.add_argument("--seed", type=int, default=0, help="seeds the mask, the noise and the sampler (default: 0)")
    rec.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    rec.add_argument("--prior", default=None,
                     help="a shipped prior by name (default, brain, brain_slice, ellipsoid_slice, ...) or a prior file from train-prior "
                     "(default: the shipped default prior)")
    rec.add_argument("--resize", action="store_true",
                     help="allow data of another resolution than the prior's: pad to square and resample "
                     "(fastMRI: crop to the header's reconstruction size and low-pass k-space), then map back")
    rec.add_argument("--volume", default=None, help="4D NIfTI: the volume index, or 'all' to iterate them")
    rec.add_argument("--plane", default="axial", choices=("axial", "coronal", "sagittal"),
                     help="NIfTI: slice plane the 2D prior sees (default: axial)")
    rec.add_argument("--slices", default="all", help="'all', 'middle' or comma-separated indices (default: all)")
    rec.add_argument("--overwrite", action="store_true", help="replace existing output files")
    rec.add_argument("--quiet", action="store_true", help="no progress bar")
    rec.set_defaults(func=_reconstruct)

    study = sub.add_parser(
        "study",
        help="run a study from a YAML config (resumable; shard it with torchrun --nproc_per_node=N -m invsolve study)",
        description="Run every case of a YAML study config (dataset x operator x prior x sampler x seed), writing "
        "per-case results, results.csv / .md, summary.md, per-volume fastMRI metrics, submissions and figures. "
        "Rerun the same command to resume. See invsolve.study.config for the config format.",
    )
    study.add_argument("config", help="YAML study config")
    study.add_argument("--out", required=True, help="output folder")
    study.add_argument("--device", default=None, help="overrides the config's device (cuda = this process's GPU)")
    study.add_argument("--steps", type=int, default=None, help="overrides the steps of every sampler")
    study.add_argument("--seed", type=int, default=None, help="overrides the config's seeds with this one")
    study.add_argument("--overwrite", action="store_true",
                       help="replace a study with a different config in --out (same config: resumes anyway)")
    study.add_argument("--quiet", action="store_true", help="no progress bar")
    study.set_defaults(func=_study)

    bench = sub.add_parser(
        "benchmark",
        help="samplers on held-out phantoms: PSNR / SSIM with 95%% CIs and time / bare network time",
        description="Run samplers on the standard tasks over held-out phantoms with the default prior; report "
        "PSNR / SSIM (mean and 95%% CI), NFE, seconds per reconstruction and the ratio of sampler time to the time "
        "of its bare network evaluations measured in the same run.",
    )
    bench.add_argument("--tasks", default="MRI 4x", help="comma-separated standard tasks (default: MRI 4x)")
    bench.add_argument("--samplers", default="dps,red-diff", help="comma-separated methods (default: dps,red-diff)")
    bench.add_argument("--phantoms", type=int, default=4, help="held-out phantoms per task (default: 4)")
    bench.add_argument("--steps", type=int, default=None, help="steps for every sampler")
    bench.add_argument("--samples", type=int, default=2, help="samples per reconstruction (default: 2)")
    bench.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    bench.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    bench.add_argument("--out", default=None, help="also write the table to this markdown file")
    bench.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    bench.set_defaults(func=_benchmark)
    return parser


def _one_line(err: object) -> str:
    """The message on one line (messages passed on from other libraries may hold line breaks)."""
    return " ".join(str(err).split())


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "device", None) is not None:
            from invsolve._validation import require_device

            require_device(args.device, "--device")
        return args.func(args)
    except UserError as err:
        print(f"invsolve {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, IndexError, ImportError) as err:
        # Raised by argument validation in the library: the message names the argument.
        print(f"invsolve {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EROFS):
            raise
        where = f" ({err.filename})" if err.filename else ""
        print(f"invsolve {args.command}: error: {_one_line(err.strerror or err)}{where}; nothing partial was kept: "
              "free space or fix the permissions and rerun the same command (studies resume where they stopped)",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
