"""The GMM benchmark script runs end to end on a tiny subset, renders its table and resumes without recomputing."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "benchmarks" / "gmm.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gmm_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_problem_follows_the_cardoso_setup():
    gmm = load_script()
    p = gmm.make_problem(8, 2, seed=123)
    assert p.prior.n_components == 25 and p.prior.d == 8
    assert torch.equal(p.prior.means[0], torch.tensor([16.0, 16.0] * 4, dtype=torch.float64))
    s = torch.linalg.svdvals(p.measurement.operator.matrix)
    assert s.shape == (2,) and bool((s > 0).all() and (s < 1).all())
    assert 0 <= p.measurement.sigma_y <= float(s.max())
    again = gmm.make_problem(8, 2, seed=123)  # deterministic in the seed
    assert torch.equal(p.measurement.y, again.measurement.y)


def test_tiny_run_renders_and_resumes(tmp_path):
    gmm = load_script()
    out = tmp_path / "g.md"
    args = ["--dims", "8", "--dys", "1", "--problems", "2", "--samples", "64", "--directions", "10",
            "--no-tune", "--samplers", "exact", "prior", "ddrm", "--out", str(out)]
    gmm.main(args)
    text = out.read_text()
    assert "floor (exact vs exact)" in text and "±" in text and "[" in text
    assert "python experiments/benchmarks/gmm.py --dims 8" in text
    store = json.loads(out.with_suffix(".json").read_text())
    assert len(store["records"]) == 6 and len(store["floors"]) == 2
    gmm.main(args)  # resume: nothing recomputed, one more run recorded
    again = json.loads(out.with_suffix(".json").read_text())
    assert again["records"] == store["records"] and len(again["runs"]) == 2
