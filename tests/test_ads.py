"""ADS (active diffusion subsampling): the selection math, the acquisition models and the sampler's contract."""

from __future__ import annotations

import math

import pytest
import torch

from invsolve.noise import GaussianNoise
from invsolve.operators import fastmri_mask, kspace_variance_mask, synthetic_coil_maps
from invsolve.acquisition import ActiveMeasurement, ColumnAcquisition, PixelAcquisition
from invsolve.priors import GaussianPrior
from invsolve.samplers import ads
from invsolve.samplers.ads import acquisition_steps, entropy_scores, pairwise_sq_distances, variance_scores


def _naive_entropy(values: torch.Tensor, sigma: float) -> torch.Tensor:
    n, k, _ = values.shape
    out = torch.zeros(k, dtype=torch.float64)
    for a in range(k):
        for i in range(n):
            out[a] += math.log(sum(math.exp(float((values[i, a] - values[j, a]).square().sum()) / (2 * sigma**2))
                                   for j in range(n)))
    return out


def test_entropy_surrogate_matches_the_formula_and_stays_finite():
    values = torch.randn(5, 7, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(entropy_scores(values, 1.5), _naive_entropy(values, 1.5), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(pairwise_sq_distances(values), torch.cdist(values.transpose(0, 1),
                                                                          values.transpose(0, 1)).square())
    huge = entropy_scores(values * 1e4, 1e-3)  # exp would overflow by far: log-space keeps it exact
    assert torch.isfinite(huge).all()
    d2 = pairwise_sq_distances(values * 1e4)
    torch.testing.assert_close(huge, (d2.max(dim=2).values / 2e-6).sum(dim=1), rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="at least 2 particles"):
        entropy_scores(values[:1], 1.0)


def test_scores_pick_the_candidate_where_particles_disagree():
    values = torch.zeros(6, 10, 4, dtype=torch.float64)
    values[:, 3] = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    values[:, 7] = 0.1 * torch.randn(6, 4, generator=torch.Generator().manual_seed(2))
    for scores in (entropy_scores(values, 0.5), variance_scores(values)):
        assert scores.argmax() == 3 and scores.topk(2).indices.tolist() == [3, 7]


@pytest.mark.parametrize(("n", "window", "budget"), [(10, (0.0, 0.5), 3), (10, (0.0, 0.5), 12), (7, (0.2, 0.3), 4)])
def test_acquisition_schedule_spends_the_budget_inside_the_window(n, window, budget):
    counts = acquisition_steps(n, window, budget)
    assert sum(counts) == budget and len(counts) == n
    used = [i for i, c in enumerate(counts) if c]
    assert used[0] >= math.floor(window[0] * n) and used[-1] < max(math.ceil(window[1] * n), used[0] + 1)
    with pytest.raises(ValueError, match="window"):
        acquisition_steps(n, (0.5, 0.5), 1)


def test_acquisition_models_shapes_and_operators():
    x = torch.rand(3, 1, 8, 6, generator=torch.Generator().manual_seed(0))
    single = ColumnAcquisition((8, 6))
    assert single.values(x).shape == (3, 6, 2 * 8)
    multi = ColumnAcquisition((8, 6), synthetic_coil_maps(4, (8, 6)))
    assert multi.values(x).shape == (3, 6, 2 * 4 * 8)
    selected = torch.tensor([True, False, False, True, False, False])
    op = single.operator(selected)
    y = op.A(x)
    # the values of the selected columns are exactly what the operator measures there
    cols = single.values(x)[:, selected].reshape(3, 2, 2, 8)
    torch.testing.assert_close(y.movedim(-1, 1)[:, selected].reshape(3, 2, 2, 8), cols)
    pixels = PixelAcquisition((1, 4, 5))
    assert pixels.values(x[..., :4, :5]).shape == (3, 20, 1)
    with pytest.raises(ValueError, match="boolean tensor of shape"):
        single.operator(torch.ones(5, dtype=torch.bool))


def _problem(seed: int = 0):
    h = w = 8
    prior = GaussianPrior(torch.full((1, h, w), 0.5), 0.05, sigma_max=20.0)
    truth = prior.sample(1, torch.Generator().manual_seed(seed)).float() if hasattr(prior, "sample") else \
        torch.rand(1, 1, h, w, generator=torch.Generator().manual_seed(seed))
    initial = torch.zeros(w, dtype=torch.bool)
    initial[3:5] = True
    active = ActiveMeasurement.simulate(ColumnAcquisition((h, w)), truth.reshape(1, 1, h, w), GaussianNoise(0.01),
                                        initial, torch.Generator().manual_seed(1))
    return prior, active


@pytest.mark.parametrize("criterion", ["entropy", "variance"])
def test_ads_acquires_its_budget_once_each_and_ends_data_consistent(criterion):
    prior, active = _problem()
    out = ads(active, prior, budget=3, steps=12, n_samples=4, generator=torch.Generator().manual_seed(0),
              criterion=criterion, window=(0.0, 0.5))
    order = out.diagnostics["acquisition_order"]
    picked = [c for _, c in order]
    assert len(picked) == 3 and len(set(picked)) == 3 and not set(picked) & {3, 4}
    assert all(step < 6 for step, _ in order)
    selected = out.diagnostics["selected"]
    assert int(selected.sum()) == 5 and all(selected[c] for c in picked)
    final = out.diagnostics["final_measurement"]
    raw = ads(active, prior, budget=3, steps=12, n_samples=4, generator=torch.Generator().manual_seed(0),
              criterion=criterion, window=(0.0, 0.5), hard_data_consistency=False)
    # a real image cannot match complex k-space exactly: the final step A^T (y - A x) only shrinks the residual
    assert final.residual(out.samples[:, 0]).norm() < 0.9 * final.residual(raw.samples[:, 0]).norm()
    assert out.samples.shape == (4, 1, 1, 8, 8) and out.nfe == 12
    again = ads(active, prior, budget=3, steps=12, n_samples=4, generator=torch.Generator().manual_seed(0),
                criterion=criterion, window=(0.0, 0.5))
    assert again.diagnostics["acquisition_order"] == order and torch.equal(again.samples, out.samples)


def test_ads_on_pixels_is_exactly_consistent_at_the_end():
    prior = GaussianPrior(torch.full((1, 6, 6), 0.5), 0.05, sigma_max=20.0)
    truth = torch.rand(1, 1, 6, 6, generator=torch.Generator().manual_seed(3))
    initial = torch.zeros(36, dtype=torch.bool)
    initial[::5] = True
    active = ActiveMeasurement.simulate(PixelAcquisition((1, 6, 6)), truth, GaussianNoise(0.01), initial,
                                        torch.Generator().manual_seed(4))
    out = ads(active, prior, budget=6, steps=10, n_samples=3, generator=torch.Generator().manual_seed(5))
    final = out.diagnostics["final_measurement"]
    assert float(final.residual(out.samples[:, 0]).abs().max()) < 1e-6  # the acquired pixels are the data
    assert int(out.diagnostics["selected"].sum()) == int(initial.sum()) + 6


def test_ads_rejects_bad_arguments():
    prior, active = _problem()
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match=r"budget must be an integer in \[0, 6\]"):
        ads(active, prior, budget=7, steps=4, n_samples=4, generator=g)
    with pytest.raises(ValueError, match="at least 2 particles"):
        ads(active, prior, budget=1, steps=4, n_samples=1, generator=g)
    with pytest.raises(ValueError, match="criterion"):
        ads(active, prior, budget=1, steps=4, n_samples=4, generator=g, criterion="mutual")
    with pytest.raises(TypeError, match="ActiveMeasurement"):
        ads(active.measurement(active.initial), prior, budget=1, steps=4, n_samples=4, generator=g)


def test_kspace_variance_mask_keeps_the_centre_and_the_budget():
    images = torch.rand(16, 32, 32, generator=torch.Generator().manual_seed(0))
    mask = kspace_variance_mask(images, 4, 0.08)
    assert mask.shape == (32, 32) and int(mask[0].sum()) == 8
    reference = fastmri_mask((32, 32), 4, 0.08)
    centre = reference[0].bool() & (torch.arange(32) - 16).abs().le(2)
    assert bool(mask[0][centre].all())
    with pytest.raises(ValueError, match="N >= 2"):
        kspace_variance_mask(images[:1], 4, 0.08)


def test_study_pairs_ads_with_active_masks_and_records_the_order(tmp_path):
    import json

    from invsolve.study import enumerate_cases, parse_config, run_study

    config = parse_config({"dataset": {"kind": "phantoms", "count": 1},
                           "operators": ["mri:acceleration=4,mask=variance", "mri:acceleration=4,mask=active"],
                           "samplers": [{"name": "dps", "steps": 3, "samples": 2},
                                        {"name": "ads", "steps": 4, "samples": 2}], "figures": False})
    cases = enumerate_cases(config)
    assert [(c.operator["mask"], c.method.name) for c in cases] == [("variance", "dps"), ("active", "ads")]
    report = run_study(config, tmp_path / "out", progress=False)
    ads_row = next(r for r in report.rows if r["sampler"] == "ads")
    order = json.loads((tmp_path / "out" / "cases" / f"{ads_row['case_id']}.json").read_text())["acquisition_order"]
    assert len(order) == 16 - 5 and len({c for _, c in order}) == 11  # 4x of 64 columns, 5 central given
