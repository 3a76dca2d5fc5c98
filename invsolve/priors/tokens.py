"""Masked-token priors: a VQ tokenizer and a bidirectional masked-token model over its codes.

A :class:`MaskedTokenPrior` is what discrete samplers (APS, best-of-N) see: a grid of ``token_shape`` positions,
each one of ``K`` codes whose embeddings are the rows of ``codebook``; ``token_logits(tokens)`` gives, for a grid in
which some positions hold the mask token ``K``, the logits of every code at every position given the visible ones
(MaskGIT, Chang et al., CVPR 2022, sec. 3.1); ``decode_embeddings`` maps an embedding grid ``(B, C, h, w)`` to
images of ``image_shape``, so a sampler may decode soft (probability-weighted) embeddings as well as codes.

Three ways to make one:

* :func:`load_token_prior`: a diffusers ``VQModel`` tokenizer (``experiments/train_autoencoder.py --kind vq``) with a
  :class:`MaskedTokenTransformer` trained on its codes (``experiments/train_token_prior.py``); the shipped
  ``token_brain`` is one (:func:`invsolve.priors.default.load_shipped_prior`).
* :meth:`MaskedTokenPrior.tabular`: a joint distribution over all ``K ** L`` grids given as a table, with exact
  masked conditionals and a linear decoder; :func:`exact_token_posterior` then enumerates the posterior.
* the constructor, from any codebook, decoder and logits function.

A token prior is a :class:`~invsolve.priors.base.Prior` so that it travels through the same interfaces (problems,
studies, declarations), but it has no Gaussian denoiser: :meth:`MaskedTokenPrior.denoise` refuses.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from invsolve.priors.base import Prior

#: Bounds on a transformer's config, checked before a network is built from a file.
TRANSFORMER_BOUNDS = {"codebook_size": (2, 16384), "tokens": (1, 4096), "width": (8, 2048), "depth": (1, 48),
                      "heads": (1, 64)}


class MaskedTokenTransformer(nn.Module):
    """A bidirectional transformer encoder over a token grid (``torch.nn.TransformerEncoder``, pre-norm) that
    predicts the code at every position; input codes in ``[0, codebook_size]``, the last value being the mask."""

    def __init__(self, codebook_size: int, tokens: int, width: int = 128, depth: int = 4, heads: int = 4,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.config = check_transformer_config({"codebook_size": codebook_size, "tokens": tokens, "width": width,
                                                "depth": depth, "heads": heads, "dropout": dropout})
        self.embed = nn.Embedding(codebook_size + 1, width)
        self.position = nn.Parameter(torch.zeros(1, tokens, width))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, codebook_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens (B, L)`` -> logits ``(B, L, codebook_size)``."""
        return self.head(self.norm(self.encoder(self.embed(tokens) + self.position)))


def check_transformer_config(config: dict, source: str = "config") -> dict:
    """The config with its sizes checked against :data:`TRANSFORMER_BOUNDS` (raises ``ValueError``)."""
    checked = {}
    for key, (low, high) in TRANSFORMER_BOUNDS.items():
        value = config.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ValueError(f"{source}: {key} must be an integer in [{low}, {high}], got {value!r}")
        checked[key] = value
    if checked["width"] % checked["heads"]:
        raise ValueError(f"{source}: width {checked['width']} must be a multiple of heads {checked['heads']}")
    dropout = config.get("dropout", 0.1)
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise ValueError(f"{source}: dropout must be a number in [0, 1), got {dropout!r}")
    checked["dropout"] = float(dropout)
    return checked


class MaskedTokenPrior(Prior):
    """A prior over grids of ``token_shape`` codes (see the module docstring).

    Args:
        codebook: ``(K, C)`` code embeddings.
        decode_embeddings: ``(B, C, h, w)`` embeddings -> images ``(B, *image_shape)`` (differentiable).
        logits: ``(B, L)`` codes in ``[0, K]`` (``K`` = masked) -> ``(B, L, K)`` logits, ``L = h * w``.
        token_shape: ``(h, w)``.
        image_shape: the per-item image shape.
        tokenize: images -> codes ``(B, h, w)`` (optional; for ceilings and training).
        value_range: of the decoded images.
    """

    sigma_min = 0.0
    sigma_max = 0.0

    def __init__(self, codebook: torch.Tensor, decode_embeddings: Callable[[torch.Tensor], torch.Tensor],
                 logits: Callable[[torch.Tensor], torch.Tensor], token_shape: tuple[int, int],
                 image_shape: tuple[int, ...], *, tokenize: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 value_range: tuple[float, float] = (0.0, 1.0)) -> None:
        if codebook.dim() != 2 or codebook.shape[0] < 2:
            raise ValueError(f"codebook must be (K >= 2, C), got {tuple(codebook.shape)}")
        if len(token_shape) != 2 or min(token_shape) < 1:
            raise ValueError(f"token_shape must be (h, w), got {token_shape}")
        self.codebook = codebook.detach()
        self._decode, self._logits, self._tokenize = decode_embeddings, logits, tokenize
        self.shape = tuple(int(s) for s in token_shape)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.value_range = tuple(value_range)

    @property
    def codebook_size(self) -> int:
        return int(self.codebook.shape[0])

    @property
    def mask_id(self) -> int:
        """The code that marks a masked position (one past the last code)."""
        return self.codebook_size

    @property
    def n_tokens(self) -> int:
        return self.shape[0] * self.shape[1]

    def denoise(self, x: torch.Tensor, sigma) -> torch.Tensor:
        raise TypeError("a masked-token prior has no Gaussian denoiser; sample it with a token sampler (aps, "
                        "best-of-n)")

    def token_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens (B, L)`` with ``mask_id`` at masked positions -> logits ``(B, L, K)``."""
        if tokens.dim() != 2 or tokens.shape[1] != self.n_tokens:
            raise ValueError(f"tokens must be (batch, {self.n_tokens}), got {tuple(tokens.shape)}")
        return self._logits(tokens)

    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, L)`` -> embedding grid ``(B, C, h, w)``."""
        return self.grid(self.codebook.to(codes.device)[codes])

    def grid(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Per-position embeddings ``(B, L, C)`` -> the decoder's layout ``(B, C, h, w)``."""
        return embeddings.transpose(1, 2).reshape(embeddings.shape[0], -1, *self.shape)

    def decode_embeddings(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self._decode(embeddings)

    def decode_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, L)`` (no mask) -> images ``(B, *image_shape)``."""
        return self.decode_embeddings(self.embed(codes))

    def tokenize(self, images: torch.Tensor) -> torch.Tensor:
        """Images -> codes ``(B, L)``."""
        if self._tokenize is None:
            raise TypeError("this token prior has no tokenizer")
        return self._tokenize(images).reshape(images.shape[0], -1)

    @classmethod
    def tabular(cls, probabilities: torch.Tensor, codebook: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor, image_shape: tuple[int, ...]) -> MaskedTokenPrior:
        """An enumerable prior: ``probabilities`` of shape ``(K,) * L`` over all length-``L`` code sequences (token
        grid ``(1, L)``), exact masked conditionals, and the linear decoder ``x = weight @ vec(e) + bias`` of the
        ``(L, C)`` embeddings ``e`` (``weight``: ``(prod(image_shape), L * C)``)."""
        k, c = codebook.shape
        length = probabilities.dim()
        if tuple(probabilities.shape) != (k,) * length or (probabilities < 0).any() or probabilities.sum() <= 0:
            raise ValueError(f"probabilities must be a non-negative table of shape ({k},) * L, "
                             f"got {tuple(probabilities.shape)}")
        d_x = math.prod(image_shape)
        if tuple(weight.shape) != (d_x, length * c) or tuple(bias.shape) != (d_x,):
            raise ValueError(f"weight must be ({d_x}, {length * c}) and bias ({d_x},), got {tuple(weight.shape)} "
                             f"and {tuple(bias.shape)}")
        states = all_sequences(k, length)
        joint = (probabilities / probabilities.sum()).reshape(-1)
        hot = nn.functional.one_hot(states, k).to(joint.dtype)  # (S, L, K)

        def logits(tokens: torch.Tensor) -> torch.Tensor:
            visible = tokens != k
            agree = ((states[None] == tokens[:, None]) | ~visible[:, None]).all(dim=2)  # (B, S)
            marginal = torch.einsum("bs,slk->blk", joint[None] * agree.to(joint.dtype), hot)
            return marginal.clamp_min(1e-300).log()

        def decode(e: torch.Tensor) -> torch.Tensor:
            flat = e.reshape(e.shape[0], c, length).transpose(1, 2).reshape(e.shape[0], -1)
            return (flat @ weight.T + bias).reshape(e.shape[0], *image_shape)

        prior = cls(codebook, decode, logits, (1, length), image_shape)
        prior.joint, prior.states = joint, states
        return prior


def all_sequences(k: int, length: int) -> torch.Tensor:
    """All ``k ** length`` code sequences ``(S, length)``, in the row-major order of a ``(k,) * length`` table."""
    return torch.tensor(list(itertools.product(range(k), repeat=length)), dtype=torch.long)


def exact_token_posterior(measurement, prior: MaskedTokenPrior) -> torch.Tensor:
    """The posterior ``p(codes | y)`` of a :meth:`MaskedTokenPrior.tabular` prior under Gaussian noise, by
    enumeration: ``(B, S)`` probabilities over ``prior.states``."""
    if not hasattr(prior, "joint"):
        raise TypeError("the exact posterior needs a tabular token prior (MaskedTokenPrior.tabular)")
    sigma = float(measurement.noise.sigma)
    with torch.no_grad():
        images = prior.decode_tokens(prior.states)  # (S, *image_shape)
        clean = measurement.operator.A(images)  # (S, *y_shape)
        y = measurement.y
        sq = (y[:, None] - clean[None]).reshape(y.shape[0], clean.shape[0], -1).square().sum(dim=2)
        log_post = prior.joint.clamp_min(1e-300).log()[None] - sq / (2 * sigma**2)
    return torch.softmax(log_post, dim=1)


def sequence_index(codes: torch.Tensor, k: int) -> torch.Tensor:
    """Row-major index of code sequences ``(..., L)`` in :func:`all_sequences`."""
    powers = k ** torch.arange(codes.shape[-1] - 1, -1, -1, device=codes.device)
    return (codes * powers).sum(dim=-1)


class TokenizerFiles:
    """A diffusers ``VQModel`` trained by ``experiments/train_autoencoder.py --kind vq``: ``STEM.safetensors`` and
    ``STEM.json`` (its config and recipe) in one folder. Images in ``[0, 1]``; frozen."""

    def __init__(self, folder, device: str | torch.device = "cpu", *, stem: str = "tokenizer") -> None:
        from invsolve.priors.latent import read_autoencoder_files

        meta, config, state = read_autoencoder_files(folder, stem)
        from diffusers import VQModel

        vq = VQModel(**config)
        vq.load_state_dict(state, strict=True)
        self.vq = vq.to(device).eval().requires_grad_(False)
        self.meta = meta
        size = int(config.get("sample_size", 64))
        factor = 2 ** (len(config["block_out_channels"]) - 1)
        self.image_shape = (int(config.get("in_channels", 1)), size, size)
        self.token_shape = (size // factor, size // factor)

    @property
    def codebook(self) -> torch.Tensor:
        return self.vq.quantize.embedding.weight

    def tokenize(self, x: torch.Tensor) -> torch.Tensor:
        h = self.vq.encode(x).latents  # (B, C, h, w)
        flat = h.permute(0, 2, 3, 1).reshape(-1, h.shape[1])
        return torch.cdist(flat, self.codebook).argmin(dim=1).reshape(x.shape[0], -1)

    def decode_embeddings(self, e: torch.Tensor) -> torch.Tensor:
        return self.vq.decode(e, force_not_quantize=True).sample


def load_transformer(path, device: str | torch.device = "cpu") -> MaskedTokenTransformer:
    """A :class:`MaskedTokenTransformer` from ``PATH.safetensors`` and its config ``PATH.json`` (bounded first)."""
    from safetensors.torch import load_file

    weights = Path(path).with_suffix(".safetensors")
    meta_path = weights.with_suffix(".json")
    for file in (weights, meta_path):
        if not file.is_file():
            raise FileNotFoundError(f"token prior file {file} does not exist (nothing is downloaded)")
    try:
        config = dict(json.loads(meta_path.read_text())["config"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{meta_path}: not a token prior recipe ({err})") from err
    model = MaskedTokenTransformer(**check_transformer_config(config, str(meta_path)))
    model.load_state_dict(load_file(str(weights)), strict=True)
    return model.to(device).eval().requires_grad_(False)


def load_token_prior(transformer_path, tokenizer_folder, device: str | torch.device = "cpu", *,
                     tokenizer_stem: str = "tokenizer") -> MaskedTokenPrior:
    """A masked-token prior from a transformer file (``experiments/train_token_prior.py``) and the tokenizer its
    codes come from."""
    tokenizer = TokenizerFiles(tokenizer_folder, device, stem=tokenizer_stem)
    model = load_transformer(transformer_path, device)
    k = tokenizer.codebook.shape[0]
    length = tokenizer.token_shape[0] * tokenizer.token_shape[1]
    if model.config["codebook_size"] != k or model.config["tokens"] != length:
        raise ValueError(f"{transformer_path} models {model.config['tokens']} tokens of {model.config['codebook_size']}"
                         f" codes but the tokenizer in {tokenizer_folder} makes {length} tokens of {k} codes")
    return MaskedTokenPrior(tokenizer.codebook, tokenizer.decode_embeddings, model, tokenizer.token_shape,
                            tokenizer.image_shape, tokenize=tokenizer.tokenize)
