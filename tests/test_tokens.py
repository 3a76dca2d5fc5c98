"""Masked-token priors and their samplers against enumerable truth.

A tabular prior over ``K ** L`` code sequences has exact masked conditionals and, with a linear decoder and Gaussian
noise, an exact posterior by enumeration: the oracle for APS and best-of-N, as the Gaussian priors are for pixel
samplers. Tolerances come from the finite-sample floor: the total variation between ``n`` exact draws and the
distribution they come from.
"""

from __future__ import annotations

import json

import pytest
import torch

from invsolve import GaussianNoise, Measurement
from invsolve.operators.matrix import MatrixOperator
from invsolve.priors.tokens import (MaskedTokenPrior, MaskedTokenTransformer, TokenizerFiles, all_sequences,
                                    check_transformer_config, exact_token_posterior, load_token_prior,
                                    sequence_index)
from invsolve.samplers import aps, best_of_n
from invsolve.samplers.aps import quantized_expectation
from invsolve.samplers.token_decoding import decide, mask_fractions, masked_after, unguided_decode

K, L, C, DX, DY = 3, 4, 2, 8, 4


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tabular(seed: int = 0) -> MaskedTokenPrior:
    g = gen(seed)
    table = torch.rand((K,) * L, generator=g, dtype=torch.float64) ** 3
    codebook = torch.randn(K, C, generator=g, dtype=torch.float64)
    weight = torch.randn(DX, L * C, generator=g, dtype=torch.float64) / 2
    return MaskedTokenPrior.tabular(table, codebook, weight, torch.zeros(DX, dtype=torch.float64), (DX,))


def problem(seed: int = 0, sigma: float = 0.3):
    prior = tabular(seed)
    g = gen(seed + 100)
    op = MatrixOperator(torch.randn(DY, DX, generator=g, dtype=torch.float64) / DX**0.5)
    truth = prior.decode_tokens(prior.states[torch.multinomial(prior.joint, 1, generator=g)])
    noise = GaussianNoise(sigma)
    return Measurement(op, noise, noise.sample(op.A(truth), g)), prior


def total_variation(codes: torch.Tensor, probabilities: torch.Tensor) -> float:
    counts = torch.bincount(sequence_index(codes, K), minlength=probabilities.numel()).to(probabilities.dtype)
    return 0.5 * float((counts / counts.sum() - probabilities).abs().sum())


def floor(probabilities: torch.Tensor, n: int, seed: int = 7) -> float:
    """TV of ``n`` exact draws to ``probabilities`` (the finite-sample floor)."""
    draws = torch.multinomial(probabilities, n, replacement=True, generator=gen(seed))
    return total_variation(all_sequences(K, L)[draws], probabilities)


def test_tabular_logits_are_the_exact_masked_conditionals():
    prior = tabular()
    table = prior.joint.reshape((K,) * L)
    tokens = torch.tensor([[2, K, 0, K]])  # positions 1 and 3 masked
    probs = prior.token_logits(tokens).softmax(-1)[0]
    cond = table[2, :, 0, :] / table[2, :, 0, :].sum()
    torch.testing.assert_close(probs[1], cond.sum(dim=1))
    torch.testing.assert_close(probs[3], cond.sum(dim=0))
    everything = prior.token_logits(torch.full((1, L), K)).softmax(-1)[0]
    torch.testing.assert_close(everything[0], table.sum(dim=(1, 2, 3)))


def test_exact_posterior_is_bayes_rule_by_enumeration():
    measurement, prior = problem()
    post = exact_token_posterior(measurement, prior)[0]
    images = prior.decode_tokens(prior.states)
    sq = (measurement.y - measurement.operator.A(images)).square().sum(dim=1)
    brute = prior.joint * torch.exp(-sq / (2 * 0.3**2))
    torch.testing.assert_close(post, brute / brute.sum())


def test_sequence_index_matches_the_table_order():
    states = all_sequences(K, L)
    assert torch.equal(sequence_index(states, K), torch.arange(K**L))


def test_cosine_schedule_unmasks_everything_and_one_token_at_least_per_step():
    assert mask_fractions(4)[0] == 1.0 and mask_fractions(4)[-1] == 0.0
    masked = 256
    for step in range(12):
        after = masked_after(step, 12, 256, masked)
        assert after < masked
        masked = after
    assert masked == 0


def test_decide_keeps_the_most_confident_and_never_touches_visible_tokens():
    tokens = torch.tensor([[K, 1, K, K]])
    out = decide(tokens, torch.tensor([[0, 2, 2, 1]]), torch.tensor([[0.1, -9.0, 0.9, 0.5]]), 1, K)
    assert out.tolist() == [[K, 1, 2, 1]]


def test_unguided_decoding_one_token_per_step_in_random_order_samples_the_prior():
    prior, n = tabular(), 6000
    codes = unguided_decode(prior, n, L, gen(1), confidence_noise=1e6, device=torch.device("cpu"),
                            dtype=torch.float64)
    assert total_variation(codes, prior.joint) < 2.0 * floor(prior.joint, n)


def test_quantized_expectation_is_a_code_forward_and_the_soft_expectation_backward():
    codebook = torch.randn(K, C, generator=gen(3))
    logits = torch.randn(2, L, K, generator=gen(4), requires_grad=True)
    e = quantized_expectation(logits, codebook)
    assert (torch.cdist(e.reshape(-1, C), codebook).min(dim=1).values < 1e-6).all()
    (grad,) = torch.autograd.grad(e.square().sum(), logits)
    soft_logits = logits.detach().requires_grad_(True)
    soft = logits.detach().softmax(-1) @ codebook
    (soft_grad,) = torch.autograd.grad((soft_logits.softmax(-1) @ codebook * 2 * e.detach()).sum(), soft_logits)
    torch.testing.assert_close(grad, soft_grad)
    assert not torch.allclose(soft, e)


def test_aps_is_much_closer_to_the_exact_posterior_than_unguided_decoding():
    n, gaps = 3000, []
    for seed in range(3):
        measurement, prior = problem(seed)
        post = exact_token_posterior(measurement, prior)[0]
        guided = aps(measurement, prior, steps=L, n_samples=n, generator=gen(seed), inner_steps=20)
        unguided = aps(measurement, prior, steps=L, n_samples=n, generator=gen(seed), inner_steps=0)
        tv_aps = total_variation(guided.diagnostics["tokens"], post)
        tv_prior = total_variation(unguided.diagnostics["tokens"], post)
        gaps.append(tv_prior - tv_aps)
        assert guided.nfe == L and guided.diagnostics["decoder_calls"] == L * 20 + 1
    assert sum(gaps) / len(gaps) > 0.15, gaps


def test_best_of_n_fits_the_data_better_as_n_grows():
    measurement, prior = problem(1)
    fits = []
    for candidates in (1, 4, 16):
        out = best_of_n(measurement, prior, steps=L, n_samples=400, candidates=candidates, generator=gen(2), chunk=8)
        fits.append(float(out.diagnostics["best_misfit"].mean()))
        assert out.nfe == L * candidates
    assert fits[0] > fits[1] > fits[2]


def test_aps_refuses_bad_settings_before_work():
    measurement, prior = problem()
    with pytest.raises(ValueError, match="anchor must be one of"):
        aps(measurement, prior, steps=2, generator=gen(0), anchor="confident")
    with pytest.raises(ValueError, match="expectation must be one of"):
        aps(measurement, prior, steps=2, generator=gen(0), expectation="hard")
    with pytest.raises(ValueError, match="steps must be between 1 and the number of tokens"):
        aps(measurement, prior, steps=L + 1, generator=gen(0))


def test_token_prior_has_no_gaussian_denoiser():
    with pytest.raises(TypeError, match="no Gaussian denoiser"):
        tabular().denoise(torch.zeros(1, 1, L), 1.0)


def test_transformer_config_is_bounded_before_a_network_is_built():
    good = {"codebook_size": 16, "tokens": 16, "width": 32, "depth": 1, "heads": 2}
    assert check_transformer_config(good)["width"] == 32
    with pytest.raises(ValueError, match="depth must be an integer in"):
        check_transformer_config({**good, "depth": 10**6})
    with pytest.raises(ValueError, match="multiple of heads"):
        check_transformer_config({**good, "heads": 3})


def _tiny_files(folder, tokens_side=4, codes=16):
    """An untrained VQModel (16x16 images -> 4x4 tokens) and transformer, written as the training scripts do."""
    import invsolve  # noqa: F401
    from diffusers import VQModel
    from safetensors.torch import save_file

    config = {"in_channels": 1, "out_channels": 1, "latent_channels": 4, "vq_embed_dim": 4,
              "num_vq_embeddings": codes, "block_out_channels": [8, 8, 8],
              "down_block_types": ["DownEncoderBlock2D"] * 3, "up_block_types": ["UpDecoderBlock2D"] * 3,
              "layers_per_block": 1, "norm_num_groups": 4, "sample_size": 16, "mid_block_add_attention": False}
    torch.manual_seed(0)
    save_file(VQModel(**config).state_dict(), str(folder / "tokenizer.safetensors"))
    (folder / "tokenizer.json").write_text(json.dumps({"config": config}))
    model = MaskedTokenTransformer(codes, tokens_side**2, width=16, depth=1, heads=2)
    save_file(model.state_dict(), str(folder / "token_prior.safetensors"))
    (folder / "token_prior.json").write_text(json.dumps({"config": model.config}))


def test_token_prior_from_files_tokenizes_decodes_and_runs_aps(tmp_path):
    from invsolve.operators import Inpainting

    _tiny_files(tmp_path)
    prior = load_token_prior(tmp_path / "token_prior", tmp_path)
    assert prior.shape == (4, 4) and prior.image_shape == (1, 16, 16) and prior.codebook_size == 16
    x = torch.rand(2, 1, 16, 16, generator=gen(0))
    codes = prior.tokenize(x)
    assert codes.shape == (2, 16) and codes.max() < 16
    assert prior.decode_tokens(codes).shape == (2, 1, 16, 16)
    op = Inpainting.random((1, 16, 16), 0.5, gen(1))
    noise = GaussianNoise(0.05)
    out = aps(Measurement(op, noise, noise.sample(op.A(x), gen(2))), prior, steps=4, inner_steps=2,
              generator=gen(3))
    assert out.samples.shape == (1, 2, 1, 16, 16) and torch.isfinite(out.samples).all()


def test_token_prior_files_must_agree(tmp_path):
    _tiny_files(tmp_path, codes=16)
    model = MaskedTokenTransformer(32, 16, width=16, depth=1, heads=2)
    from safetensors.torch import save_file

    save_file(model.state_dict(), str(tmp_path / "other.safetensors"))
    (tmp_path / "other.json").write_text(json.dumps({"config": model.config}))
    with pytest.raises(ValueError, match="models 16 tokens of 32 codes but the tokenizer"):
        load_token_prior(tmp_path / "other", tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TokenizerFiles(tmp_path, stem="missing")


def test_the_shipped_token_brain_prior_loads_offline_and_decodes_held_out_brains():
    """The shipped token prior: safetensors only, at most ~20 MB together, its tokenizer's ceiling on held-out
    brains as its recipe records, and APS runs on it from the run layer."""
    from pathlib import Path

    pytest.importorskip("diffusers")
    from invsolve.datasets.brain import BrainSlices
    from invsolve.metrics import psnr
    from invsolve.priors.default import load_shipped_prior, shipped_prior_path

    path = shipped_prior_path("token_brain")
    tokenizer = Path(path).parent / "brain_tokenizer.safetensors"
    assert path.suffix == ".safetensors" and path.stat().st_size + tokenizer.stat().st_size < 20e6
    recipe = json.loads(tokenizer.with_suffix(".json").read_text())
    prior = load_shipped_prior("token_brain")
    assert prior.shape == (16, 16) and prior.image_shape == (1, 64, 64) and prior.codebook_size == 256
    stream = BrainSlices(64, split="heldout", seed=0)
    images = torch.stack([stream[i] for i in range(4)])
    with torch.no_grad():
        recon = prior.decode_tokens(prior.tokenize(images)).clamp(0, 1)
    ceiling = [psnr(images[i, 0], recon[i, 0]) for i in range(4)]
    assert sum(ceiling) / 4 > recipe["heldout_psnr"] - 2.0  # recorded on 32 held-out slices
    from invsolve.operators import Inpainting

    op = Inpainting.random((1, 64, 64), 0.5, gen(0))
    noise = GaussianNoise(0.01)
    measurement = Measurement(op, noise, noise.sample(op.A(images[:1]), gen(1)))
    out = aps(measurement, prior, steps=4, inner_steps=3, generator=gen(2))
    assert out.samples.shape == (1, 1, 1, 64, 64) and out.diagnostics["transformer_calls"] == 4


def test_a_study_runs_aps_and_best_of_n_on_the_shipped_token_prior(tmp_path):
    """Reachable like every sampler: a study over brain slices with the token prior by name."""
    import yaml

    from invsolve.study import load_config, run_study

    pytest.importorskip("diffusers")
    config = {"name": "tokens", "dataset": {"kind": "brain", "count": 1, "split": "heldout"},
              "operators": ["inpainting:fraction=0.5"], "priors": ["token_brain"],
              "samplers": [{"name": "aps", "steps": 3, "samples": 1, "inner_steps": 1},
                           {"name": "best-of-n", "steps": 3, "samples": 1, "candidates": 2}],
              "seeds": [0], "figures": False}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    run_study(load_config(path), tmp_path / "out", progress=False)
    rows = (tmp_path / "out" / "results.csv").read_text().splitlines()
    assert len(rows) == 3 and all("token_brain" in row for row in rows[1:])
