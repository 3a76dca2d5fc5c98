"""SMC / Feynman-Kac samplers on the GMM benchmark as the number of particles grows.

For the problems of :mod:`gmm` (same seeds, same exact reference sets of 2000 draws, same 100
directions) and ``N`` in {16, 64, 256, 1024} particles, each sampler's *weighted* particle set is
compared with the exact posterior by the sliced Wasserstein-1 distance. Beside it:

* the floor at the same size: the SW between ``N`` fresh exact draws and the reference;
* the error of the log-evidence estimate, ``log Z_hat - log p(y)`` with the exact ``log p(y)``;
* the smallest ESS over the run and the wall time.

A consistent sampler's SW falls towards the floor as ``N`` grows and its log-evidence error towards 0.
Results accumulate in a JSON store (resumable, like ``gmm.py``) and render to markdown plus a plot.

    python experiments/benchmarks/gmm_particles.py                 # the committed table and plot
    python experiments/benchmarks/gmm_particles.py --quick         # a smoke run to /tmp
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gmm  # noqa: E402  (the problems, reference sets and storage of the main GMM benchmark)

from invsolve.exact_posterior import log_evidence  # noqa: E402
from invsolve.metrics import sliced_wasserstein  # noqa: E402
from invsolve.samplers import afes, exact, fkc, tds  # noqa: E402

PARTICLES = (16, 64, 256, 1024)
SAMPLERS = {
    "afes": (afes, "AFES (Chen et al., 2025), SDE, exact tilted kernels", dict(steps=500, data_variance=1.0)),
    "afes_ode": (afes, "AFES, ODE + 1 Langevin corrector step", dict(steps=500, data_variance=1.0,
                                                                       variant="ode_langevin")),
    "fkc": (fkc, "FKC (Skreta et al., 2025), annealed likelihood", dict(steps=500, data_variance=1.0)),
    "tds": (tds, "TDS (Wu et al., 2023)", dict(steps=500, data_variance=1.0)),
}


def run_cell(name: str, problem, ref: torch.Tensor, exact_log_z: float, n: int, directions: int) -> dict:
    fn, _, settings = SAMPLERS[name]
    gen = gmm.stream(problem.seed, 100 + 10 * list(SAMPLERS).index(name) + int(math.log2(n)))
    t0 = time.perf_counter()
    out = fn(problem.measurement, problem.prior, n_samples=n, generator=gen, **settings)
    wall = time.perf_counter() - t0
    sw = sliced_wasserstein(out.samples[:, 0], ref, directions, gmm.directions_generator(problem.seed),
                            a_weights=out.weights[:, 0])
    return {"sw": sw, "log_z_error": float(out.diagnostics["log_evidence"][0]) - exact_log_z,
            "min_ess": float(out.diagnostics["ess"].min()) if out.diagnostics["ess"].numel() else float(n),
            "wall_s": wall, "nfe": out.nfe}


def floor_at(problem, ref: torch.Tensor, n: int, directions: int) -> float:
    draws = exact(problem.measurement, problem.prior, n_samples=n, generator=gmm.stream(problem.seed, 50 + n)).samples[:, 0]
    return sliced_wasserstein(draws, ref, directions, gmm.directions_generator(problem.seed))


def evaluate(args, store: dict, json_path: Path, md_path: Path) -> None:
    for d_x in args.dims:
        for d_y in args.dys:
            for idx in range(args.problems):
                problem = None
                for n in args.particles:
                    todo = [s for s in args.samplers if gmm.key(s, d_x, d_y, idx, n) not in store["records"]]
                    fkey = gmm.key("floor", d_x, d_y, idx, n)
                    if not todo and fkey in store["floors"]:
                        continue
                    if problem is None:
                        problem = gmm.make_problem(d_x, d_y, gmm.problem_seed(False, d_x, d_y, idx))
                        ref, _ = gmm.reference_sets(problem, args.reference, args.directions)
                        exact_log_z = float(log_evidence(problem.measurement, problem.prior)[0])
                    if fkey not in store["floors"]:
                        store["floors"][fkey] = floor_at(problem, ref, n, args.directions)
                    for s in todo:
                        res = run_cell(s, problem, ref, exact_log_z, n, args.directions)
                        store["records"][gmm.key(s, d_x, d_y, idx, n)] = res
                        print(f"d_x={d_x} d_y={d_y} #{idx} N={n} {s}: SW {res['sw']:.3f} "
                              f"(floor {store['floors'][fkey]:.3f}) dlogZ {res['log_z_error']:+.3f} "
                              f"{res['wall_s']:.1f}s", file=sys.stderr, flush=True)
                    write(store, json_path, md_path, args)


def _mean_ci(values: list[float]) -> str:
    mean, half = gmm._ci(values)
    return f"{mean:.2f} ± {half:.2f}" if math.isfinite(half) else f"{mean:.2f}"


def render(store: dict, args) -> str:
    recs, floors = store["records"], store["floors"]
    cells = [(a, b) for a in args.dims for b in args.dys]
    lines = ["# SMC / Feynman–Kac samplers on the GMM benchmark: SW vs number of particles", "",
             "Problems, exact reference sets (2000 draws) and directions (100) of `experiments/benchmarks/gmm.py`. "
             "Each entry: weighted SW between the N particles and the reference, mean ± 1.96·sd/√n over the "
             "problems of the cell; **[floor]** = SW between N exact draws and the same reference. "
             "`ΔlogZ` = estimated minus exact log p(y) (mean ± CI). All samplers: 500 steps, "
             "data_variance = 1, systematic resampling.", ""]
    for name in args.samplers:
        lines += [f"## {name}: {SAMPLERS[name][1]}", "",
                  "| N | " + " | ".join(f"d_x={a}, d_y={b}" for a, b in cells) + " |",
                  "|" + "---|" * (len(cells) + 1)]
        for n in args.particles:
            row = []
            for c in cells:
                v = [r["sw"] for k, r in recs.items() if k.startswith(gmm.key(name, *c, "")) and k.endswith(f"/{n}")]
                f = [x for k, x in floors.items() if k.startswith(gmm.key("floor", *c, "")) and k.endswith(f"/{n}")]
                row.append(f"{_mean_ci(v)} [{sum(f) / len(f):.2f}]" if v and f else "–")
            lines.append(f"| {n} | " + " | ".join(row) + " |")
        lines += ["", "ΔlogZ:", "", "| N | " + " | ".join(f"d_x={a}, d_y={b}" for a, b in cells) + " |",
                  "|" + "---|" * (len(cells) + 1)]
        for n in args.particles:
            row = []
            for c in cells:
                v = [r["log_z_error"] for k, r in recs.items()
                     if k.startswith(gmm.key(name, *c, "")) and k.endswith(f"/{n}")]
                row.append(_mean_ci(v) if v else "–")
            lines.append(f"| {n} | " + " | ".join(row) + " |")
        lines.append("")
    lines += ["## Runs", ""] + [f"- `{r['command']}` — {r['machine']}; {r['wall_s'] / 60:.1f} min; {r['date']}"
                                 for r in store["runs"]] + [""]
    return "\n".join(lines)


def plot(store: dict, args, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = [(a, b) for a in args.dims for b in args.dys]
    fig, axes = plt.subplots(len(args.dims), len(args.dys), figsize=(4 * len(args.dys), 3.2 * len(args.dims)),
                             squeeze=False, sharex=True)
    for ax, c in zip(axes.flat, cells):
        for name in args.samplers + ["floor"]:
            xs, ys = [], []
            for n in args.particles:
                pool = store["floors"] if name == "floor" else {k: r["sw"] for k, r in store["records"].items()}
                v = [x for k, x in pool.items() if k.startswith(gmm.key(name, *c, "")) and k.endswith(f"/{n}")]
                if v:
                    xs.append(n)
                    ys.append(sum(v) / len(v))
            if xs:
                ax.plot(xs, ys, "k--" if name == "floor" else "o-", label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"d_x={c[0]}, d_y={c[1]}")
        ax.set_xlabel("particles N")
        ax.set_ylabel("sliced W1 to exact posterior")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def write(store: dict, json_path: Path, md_path: Path, args) -> None:
    gmm.atomic_write(json_path, json.dumps(store, indent=1, sort_keys=True))
    gmm.atomic_write(md_path, render(store, args))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dims", type=int, nargs="+", default=[8, 80])
    p.add_argument("--dys", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--problems", type=int, default=5)
    p.add_argument("--particles", type=int, nargs="+", default=list(PARTICLES))
    p.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=list(SAMPLERS))
    p.add_argument("--reference", type=int, default=2000)
    p.add_argument("--directions", type=int, default=100)
    p.add_argument("--out", default="experiments/results/gmm_particles.md")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.dims, args.dys, args.problems, args.particles = [8], [1], 1, [16, 64]
        if args.out == p.get_default("out"):
            args.out = "/tmp/gmm_particles_quick.md"
    md_path = Path(args.out)
    json_path = md_path.with_suffix(".json")
    store = json.loads(json_path.read_text()) if json_path.exists() else {"floors": {}, "records": {}, "runs": []}
    t0 = time.perf_counter()
    evaluate(args, store, json_path, md_path)
    command = "python experiments/benchmarks/gmm_particles.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    store["runs"].append({"command": command.strip(), "machine": gmm.machine(), "wall_s": time.perf_counter() - t0,
                          "date": time.strftime("%Y-%m-%d")})
    write(store, json_path, md_path, args)
    plot(store, args, md_path.with_suffix(".png"))
    print(f"wrote {md_path}, {json_path} and {md_path.with_suffix('.png')}", file=sys.stderr)


if __name__ == "__main__":
    main()
