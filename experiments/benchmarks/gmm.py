"""GMM benchmark with an exact posterior (Cardoso, Janati el Idrissi, Le Corff, Moulines, ICLR 2024, App. B.3).

Problem (one per seed):

* prior: 25 components ``N(mu_ij, I)`` with ``mu_ij = (-8i, -8j, -8i, -8j, ...)`` in ``R^{d_x}``,
  ``i, j in {-2..2}``; weights ``w ~ |N(0, 1)|^2``, normalised (drawn per problem);
* operator: ``A = U diag(s) V^T`` from the SVD of a ``d_y x d_x`` standard Gaussian matrix, with the
  singular values replaced by sorted ``U(0, 1)`` draws;
* noise: ``sigma_y = u * max(s)``, ``u ~ U(0, 1)`` (as in the authors' code);
* data: ``x* ~ prior``, ``y = A x* + sigma_y n``.

Metric: sliced Wasserstein-1, the mean over 100 random unit directions of the exact 1-D W1 (not the
max-sliced variant), between 2000 sampler draws and 2000 exact posterior draws. Beside every figure
is the floor: the SW between two independent exact posterior sets of the same size, measured along
the same directions. Reported: mean +- 1.96 sd / sqrt(n) over the n problems of a cell.

Hyperparameters that have no default for this data (DPS step size and step scaling, PiGDM's
``data_variance``) are chosen per cell on separate tuning problems (other seeds), by the lowest mean SW.

Results accumulate in a JSON store beside the markdown (``--out`` with ``.json``): problems are
deterministic functions of their seed, so a later run with ``--samplers NEW`` adds a row without
recomputing the others, and an interrupted run resumes where it stopped. Adding a sampler to the
table = adding one entry to ``SAMPLERS`` below.

    python experiments/benchmarks/gmm.py                       # the full table
    python experiments/benchmarks/gmm.py --quick               # a 1-minute smoke run to /tmp
    python experiments/benchmarks/gmm.py --samplers dps --dims 8 --dys 1 2 --problems 3 --out /tmp/g.md
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from invsolve import GaussianNoise, Measurement
from invsolve._atomic import write_text_atomic
from invsolve.metrics import sliced_wasserstein
from invsolve.operators import MatrixOperator
from invsolve.priors import GaussianMixturePrior
from invsolve.samplers import afes, ddrm, dps, exact, fkc, pigdm, red_diff, tds, unconditional

DIMS = (8, 80, 800)
DYS = (1, 2, 4)
DTYPE = torch.float64


# -- the registry --------------------------------------------------------------------------------
@dataclass
class SamplerSpec:
    """How the benchmark runs one sampler: the function, fixed settings, an optional tuning grid."""

    fn: Callable
    label: str
    settings: dict = field(default_factory=dict)
    grid: list[dict] = field(default_factory=list)  # per-cell choices, tuned on separate problems


def _marginal_variance(prior: GaussianMixturePrior) -> float:
    """Mean per-coordinate variance of the prior, trace(Cov) / d."""
    w, mu = prior.weights, prior.means
    centred = mu - w @ mu
    return float(prior._lam.mean() + (w * centred.square().sum(1)).sum() / prior.d)


SAMPLERS: dict[str, SamplerSpec] = {
    "exact": SamplerSpec(exact, "exact posterior (reference sampler)"),
    "prior": SamplerSpec(unconditional, "unconditional prior, EDM Heun", dict(steps=100, method="heun")),
    "dps": SamplerSpec(
        dps,
        "DPS (Chung et al., 2023), ancestral",
        dict(steps=500, eta=1.0),
        [dict(step_scaling="vp", zeta=z) for z in (0.01, 0.03, 0.1, 0.3, 1.0)]
        + [dict(step_scaling="ve", zeta=z) for z in (1.0, 3.0, 10.0, 30.0)],
    ),
    "pigdm": SamplerSpec(
        pigdm,
        "PiGDM (Song et al., 2023), DDIM eta=1",
        dict(steps=100, method="ddim", eta=1.0),
        [dict(data_variance=1.0), dict(data_variance="marginal")],
    ),
    "ddrm": SamplerSpec(
        ddrm,
        "DDRM (Kawar et al., 2022), eta_b=1",
        dict(steps=100, eta_b=1.0),
        [dict(eta=0.85), dict(eta=1.0)],
    ),
    "red_diff": SamplerSpec(
        red_diff,
        "RED-Diff (Mardani et al., 2024), data term / sigma_y^2, inverse-SNR weighting",
        dict(steps=200, data_weight="likelihood", weighting="inverse_snr", init="pseudo_inverse"),
        [dict(lr=lr, lam=lam) for lr in (0.05, 0.2) for lam in (0.25, 1.0)],
    ),
    # SMC / Feynman-Kac ensembles: the samples are one weighted particle system of n = 2000 particles
    # (the SW is the weighted one); data_variance = 1 is the mixture components' variance.
    "afes": SamplerSpec(afes, "AFES (Chen et al., 2025), SDE, exact tilted kernels, 2000 particles",
                        dict(steps=500, data_variance=1.0)),
    "fkc": SamplerSpec(fkc, "FKC (Skreta et al., 2025), linearly annealed likelihood, 2000 particles",
                       dict(steps=500, data_variance=1.0)),
    "tds": SamplerSpec(tds, "TDS (Wu et al., 2023), 2000 particles", dict(steps=500, data_variance=1.0)),
}


def resolve(settings: dict, prior: GaussianMixturePrior) -> dict:
    out = dict(settings)
    if out.get("data_variance") == "marginal":
        out["data_variance"] = _marginal_variance(prior)
    return out


# -- problems ------------------------------------------------------------------------------------
def problem_seed(tuning: bool, d_x: int, d_y: int, index: int) -> int:
    return (1 if tuning else 0) * 10**8 + d_x * 10**4 + d_y * 10**3 + index


def cardoso_prior(d_x: int, generator: torch.Generator, *, full_covariances: bool = False) -> GaussianMixturePrior:
    """Cardoso et al.'s 25-mode prior; ``full_covariances``: each component ``Q diag(lam) Q^T`` with a random
    rotation ``Q`` and eigenvalues log-uniform in [0.2, 2] (drawn after the weights, from the same generator)."""
    grid = [(i, j) for i in range(-2, 3) for j in range(-2, 3)]
    means = torch.tensor([[-8.0 * i, -8.0 * j] * (d_x // 2) for i, j in grid], dtype=DTYPE)
    weights = torch.randn(len(grid), generator=generator, dtype=DTYPE).square()
    if not full_covariances:
        return GaussianMixturePrior(weights, means, 1.0)
    q, _ = torch.linalg.qr(torch.randn(len(grid), d_x, d_x, generator=generator, dtype=DTYPE))
    lam = 0.2 * 10.0 ** torch.rand(len(grid), d_x, generator=generator, dtype=DTYPE)
    return GaussianMixturePrior(weights, means, q @ torch.diag_embed(lam) @ q.transpose(1, 2))


@dataclass
class Problem:
    d_x: int
    d_y: int
    seed: int
    prior: GaussianMixturePrior
    measurement: Measurement


def make_problem(d_x: int, d_y: int, seed: int, *, full_covariances: bool = False) -> Problem:
    g = torch.Generator().manual_seed(seed)
    prior = cardoso_prior(d_x, g, full_covariances=full_covariances)
    gauss = torch.randn(d_y, d_x, generator=g, dtype=DTYPE)
    U, _, Vh = torch.linalg.svd(gauss, full_matrices=False)
    s = torch.rand(d_y, generator=g, dtype=DTYPE).sort(descending=True).values
    A = U @ torch.diag(s) @ Vh
    sigma_y = float(torch.rand((), generator=g, dtype=DTYPE)) * float(s.max())
    x_true = prior.sample(1, g)
    meas = Measurement.simulate(MatrixOperator(A), GaussianNoise(sigma_y), x_true, g)
    return Problem(d_x, d_y, seed, prior, meas)


def stream(problem_seed_: int, role: int) -> torch.Generator:
    """An independent generator per (problem, role): 1, 2 exact sets, 3 directions, 10 + i sampler i."""
    return torch.Generator().manual_seed(problem_seed_ * 1000 + role)


def directions_generator(seed: int) -> torch.Generator:
    return stream(seed, 3)


def reference_sets(problem: Problem, n: int, n_directions: int) -> tuple[torch.Tensor, float]:
    """Exact posterior draws (the reference) and the floor measured against them."""
    ref = exact(problem.measurement, problem.prior, n_samples=n,
                generator=stream(problem.seed, 1)).samples[:, 0]
    other = exact(problem.measurement, problem.prior, n_samples=n,
                  generator=stream(problem.seed, 2)).samples[:, 0]
    floor = sliced_wasserstein(ref, other, n_directions, directions_generator(problem.seed))
    return ref, floor


def run_one(spec: SamplerSpec, settings: dict, problem: Problem, ref: torch.Tensor, n: int,
            n_directions: int, salt: int) -> dict:
    kwargs = {**spec.settings, **resolve(settings, problem.prior)}
    gen = stream(problem.seed, 10 + salt)
    t0 = time.perf_counter()
    out = spec.fn(problem.measurement, problem.prior, n_samples=n, generator=gen, **kwargs)
    wall = time.perf_counter() - t0
    samples = out.samples[:, 0]
    weights = out.weights[:, 0] if out.log_weights is not None else None
    finite = bool(torch.isfinite(samples).all())
    sw = (sliced_wasserstein(samples, ref, n_directions, directions_generator(problem.seed), a_weights=weights)
          if finite else math.inf)
    return {"sw": sw, "wall_s": wall, "nfe": out.nfe, "finite": finite,
            "settings": {k: (float(v) if isinstance(v, float) else v) for k, v in kwargs.items()}}


# -- storage -------------------------------------------------------------------------------------
def atomic_write(path: Path, text: str) -> None:
    write_text_atomic(path, text)  # temp file in the same folder, then one rename


def load_store(path: Path, config: dict, fresh: bool) -> dict:
    if path.exists() and not fresh:
        store = json.loads(path.read_text())
        if store.get("config") != config:
            raise SystemExit(
                f"{path} holds results for a different configuration {store.get('config')}; "
                "use --fresh to start over or another --out"
            )
        return store
    return {"config": config, "floors": {}, "records": {}, "tuning": {}, "runs": []}


def key(*parts) -> str:
    return "/".join(str(p) for p in parts)


def save(store: dict, json_path: Path, md_path: Path) -> None:
    atomic_write(json_path, json.dumps(store, indent=1, sort_keys=True))
    atomic_write(md_path, render(store))


# -- tuning and evaluation -----------------------------------------------------------------------
def tune(name: str, spec: SamplerSpec, store: dict, d_x: int, d_y: int, args, log) -> dict:
    k = key(name, d_x, d_y)
    if k in store["tuning"]:
        return store["tuning"][k]["chosen"]
    if not spec.grid:
        return {}
    cfg = store["config"]
    rows = []
    for settings in spec.grid:
        sws = []
        for idx in range(cfg["tune_problems"]):
            problem = make_problem(d_x, d_y, problem_seed(True, d_x, d_y, idx))
            ref, _ = reference_sets(problem, cfg["tune_samples"], cfg["directions"])
            res = run_one(spec, settings, problem, ref, cfg["tune_samples"], cfg["directions"], salt=0)
            sws.append(res["sw"])
        mean = sum(sws) / len(sws)
        rows.append({"settings": settings, "sw_mean": mean})
        log(f"  tune {name} d_x={d_x} d_y={d_y} {settings}: SW {mean:.3f}")
    best = min(rows, key=lambda r: r["sw_mean"])
    store["tuning"][k] = {"grid": rows, "chosen": best["settings"]}
    return best["settings"]


def evaluate(args, store: dict, json_path: Path, md_path: Path, log) -> None:
    cfg = store["config"]
    for d_x in args.dims:
        for d_y in args.dys:
            chosen = {}
            for name in args.samplers:
                chosen[name] = tune(name, SAMPLERS[name], store, d_x, d_y, args, log) if not args.no_tune else {}
                save(store, json_path, md_path)
            for idx in range(args.problems):
                todo = [n for n in args.samplers if key(n, d_x, d_y, idx) not in store["records"]]
                if not todo:
                    continue
                problem = make_problem(d_x, d_y, problem_seed(False, d_x, d_y, idx))
                ref, floor = reference_sets(problem, cfg["samples"], cfg["directions"])
                store["floors"][key(d_x, d_y, idx)] = floor
                for name in todo:
                    res = run_one(SAMPLERS[name], chosen[name], problem, ref, cfg["samples"], cfg["directions"],
                                  salt=list(SAMPLERS).index(name))
                    store["records"][key(name, d_x, d_y, idx)] = res
                    log(f"d_x={d_x} d_y={d_y} #{idx} sigma_y={problem.measurement.sigma_y:.3f} {name}: "
                        f"SW {res['sw']:.3f} (floor {floor:.3f}) {res['wall_s']:.1f}s")
                save(store, json_path, md_path)


# -- report --------------------------------------------------------------------------------------
def _ci(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, 1.96 * sd / math.sqrt(n)


def _fmt(values: list[float]) -> str:
    if not values:
        return "–"
    if not all(math.isfinite(v) for v in values):
        return f"NaN/Inf in {sum(not math.isfinite(v) for v in values)}/{len(values)}"
    m, c = _ci(values)
    return f"{m:.2f} ± {c:.2f}" if math.isfinite(c) else f"{m:.2f}"


def render(store: dict) -> str:
    cfg = store["config"]
    recs, floors = store["records"], store["floors"]
    cells = sorted({(int(k.split("/")[0]), int(k.split("/")[1])) for k in floors})
    names = [n for n in SAMPLERS if any(k.startswith(n + "/") for k in recs)]
    names += sorted({k.split("/")[0] for k in recs} - set(names))

    def vals(name, d_x, d_y, field_="sw"):
        return [r[field_] for k, r in sorted(recs.items()) if k.startswith(key(name, d_x, d_y) + "/")]

    def floor_vals(d_x, d_y):
        return [v for k, v in floors.items() if k.startswith(key(d_x, d_y) + "/")]

    out = ["# GMM benchmark: sliced Wasserstein to the exact posterior", ""]
    out += [
        "Setup of Cardoso et al. (ICLR 2024, App. B.3): 25-component GMM prior, means "
        "`(-8i, -8j, -8i, -8j, ...)` with i, j in {-2..2}, identity covariances, weights from squared "
        "normals (drawn per problem); `A = U diag(s) V^T` with the singular values of a Gaussian "
        "`d_y x d_x` matrix replaced by sorted U(0,1) draws; `sigma_y = U(0,1) * max(s)`; `x* ~ prior`. "
        "Exact diffused denoiser (`GaussianMixturePrior`), exact posterior from `invsolve.exact_posterior`.",
        "",
        f"**Metric**: sliced Wasserstein-1 = mean over {cfg['directions']} random unit directions of the exact "
        f"1-D W1 (not max-sliced), between {cfg['samples']} sampler draws and {cfg['samples']} exact posterior "
        "draws (weighted particle sets, AFES / FKC / TDS, by the weighted SW). Each entry is mean ± 1.96·sd/√n "
        "over the n problems of the cell; **[brackets] = the floor**, "
        "the SW between two independent exact posterior sets of the same size along the same directions "
        "(what a perfect sampler scores). Lower is better. float64 throughout.",
        "",
    ]
    n_by_cell = {c: len(floor_vals(*c)) for c in cells}
    header = "| sampler | NFE | " + " | ".join(f"d_x={a}, d_y={b}" for a, b in cells) + " |"
    out += [header, "|" + "---|" * (len(cells) + 2)]
    out.append("| *floor (exact vs exact)* | – | " + " | ".join(_fmt(floor_vals(*c)) for c in cells) + " |")
    for name in names:
        nfe = sorted({r["nfe"] for k, r in recs.items() if k.startswith(name + "/")})
        row = []
        for c in cells:
            v = vals(name, *c)
            row.append(f"{_fmt(v)} [{_ci(floor_vals(*c))[0]:.2f}]" if v else "–")
        label = SAMPLERS[name].label if name in SAMPLERS else name
        out.append(f"| {name}: {label} | {'/'.join(map(str, nfe))} | " + " | ".join(row) + " |")
    out += ["", "Problems per cell: " + ", ".join(f"({a}, {b}): {n_by_cell[(a, b)]}" for a, b in cells), ""]

    # wall time
    dims = sorted({c[0] for c in cells})
    out += ["## Wall time", "", f"Mean seconds per problem ({cfg['samples']} samples, one measurement), all d_y pooled.", ""]
    out += ["| sampler | " + " | ".join(f"d_x={d}" for d in dims) + " |", "|" + "---|" * (len(dims) + 1)]
    for name in names:
        row = []
        for d in dims:
            w = [r["wall_s"] for k, r in recs.items() if k.startswith(f"{name}/{d}/")]
            row.append(f"{sum(w) / len(w):.2f}" if w else "–")
        out.append(f"| {name} | " + " | ".join(row) + " |")
    out.append("")

    # settings
    out += ["## Settings", ""]
    for name in names:
        if name not in SAMPLERS:
            continue
        out.append(f"- **{name}**: fixed `{SAMPLERS[name].settings}`" if SAMPLERS[name].settings
                   else f"- **{name}**: no settings")
    tuned = {k: v for k, v in store["tuning"].items() if v["grid"]}
    if tuned:
        out += ["", f"Tuned per cell on {cfg['tune_problems']} separate problems per cell (other seeds), "
                f"{cfg['tune_samples']} samples each, by the lowest mean SW (`marginal` = trace(Cov)/d of the prior):", ""]
        out += ["| sampler | cell | chosen | SW of every candidate |", "|---|---|---|---|"]
        for k, v in sorted(tuned.items(), key=lambda kv: (kv[0].split("/")[0], int(kv[0].split("/")[1]),
                                                          int(kv[0].split("/")[2]))):
            name, a, b = k.split("/")
            grid = "; ".join(f"{_short(r['settings'])}: {r['sw_mean']:.2f}" for r in v["grid"])
            out.append(f"| {name} | ({a}, {b}) | {_short(v['chosen'])} | {grid} |")
    out += ["", "## Runs", ""]
    for run in store["runs"]:
        out.append(f"- `{run['command']}` — {run['machine']}; wall time {run['wall_s'] / 60:.1f} min; {run['date']}")
    out.append("")
    return "\n".join(out)


def _short(settings: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads)"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dims", type=int, nargs="+", default=list(DIMS), help="d_x values (even)")
    p.add_argument("--dys", type=int, nargs="+", default=list(DYS), help="d_y values")
    p.add_argument("--problems", type=int, default=10, help="problems per cell")
    p.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=list(SAMPLERS))
    p.add_argument("--samples", type=int, default=2000, help="samples per sampler and problem")
    p.add_argument("--directions", type=int, default=100, help="random directions of the SW")
    p.add_argument("--tune-problems", type=int, default=2, help="tuning problems per cell")
    p.add_argument("--tune-samples", type=int, default=500, help="samples per tuning run")
    p.add_argument("--no-tune", action="store_true", help="use each sampler's fixed settings only")
    p.add_argument("--out", default="experiments/results/gmm.md", help="markdown table (a .json store beside it)")
    p.add_argument("--fresh", action="store_true", help="discard stored results for this --out")
    p.add_argument("--quick", action="store_true", help="smoke run: d_x=8, d_y=1, 2 problems, 500 samples, /tmp")
    args = p.parse_args(argv)
    if args.quick:
        args.dims, args.dys, args.problems, args.samples = [8], [1], 2, 500
        args.tune_problems, args.tune_samples = 1, 200
        if args.out == p.get_default("out"):
            args.out = "/tmp/gmm_quick.md"
    if any(d % 2 for d in args.dims):
        raise SystemExit("--dims must be even (the means alternate two coordinates)")
    md_path = Path(args.out)
    json_path = md_path.with_suffix(".json")
    config = {"samples": args.samples, "directions": args.directions, "tune_problems": args.tune_problems,
              "tune_samples": args.tune_samples, "tuned": not args.no_tune}
    store = load_store(json_path, config, args.fresh)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    evaluate(args, store, json_path, md_path, log)
    command = "python experiments/benchmarks/gmm.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    store["runs"].append({"command": command.strip(), "machine": machine(), "wall_s": time.perf_counter() - t0,
                          "date": time.strftime("%Y-%m-%d")})
    save(store, json_path, md_path)
    log(f"wrote {md_path} and {json_path}")


if __name__ == "__main__":
    main()
