"""Latent priors: an autoencoder and a diffusion prior over its latents (latent diffusion; Rombach et al., CVPR 2022).

A :class:`LatentPrior` *is* a :class:`~invsolve.priors.base.Prior` over latents ``z`` (its ``shape`` is the latent
shape, its ``denoise`` the latent prior's, in the EDM sigma convention), and adds the autoencoder: ``encode(x)`` and
``decode(z)`` between images of ``image_shape`` and latents. Latent samplers (latent DPS, PSLD, STSL) diffuse in
``z`` and score data through ``decode``; every other sampler refuses it (their measurement acts on images of
another shape).

A linear decoder ``D(z) = W z + b`` (:meth:`LatentPrior.linear`) with a Gaussian or Gaussian-mixture latent prior
makes the posterior over ``z`` given ``y = A D(z) + n`` exact (:func:`exact_latent_posterior`): the oracle for
latent samplers, as the Gaussian priors are for pixel samplers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from invsolve.priors.base import Prior


class LatentPrior(Prior):
    """A prior over latents ``z`` with the autoencoder that maps them to images.

    Args:
        latent: the diffusion prior over latents (its ``shape`` is the latent shape).
        encode: images ``(B, *image_shape)`` -> latents ``(B, *latent.shape)`` (a posterior mean, no sampling).
        decode: latents -> images; differentiable (samplers backpropagate through it).
        image_shape: the per-item image shape.
        value_range: of the decoded images.
    """

    def __init__(self, latent: Prior, encode: Callable[[torch.Tensor], torch.Tensor],
                 decode: Callable[[torch.Tensor], torch.Tensor], image_shape: tuple[int, ...], *,
                 value_range: tuple[float, float] = (0.0, 1.0)) -> None:
        if not isinstance(latent, Prior):
            raise TypeError(f"latent must be an invsolve Prior over latents, got {type(latent).__name__}")
        if not callable(encode) or not callable(decode):
            raise TypeError("encode and decode must be callables (images <-> latents)")
        self.latent = latent
        self._encode, self._decode = encode, decode
        self.shape = tuple(latent.shape)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.sigma_min, self.sigma_max = latent.sigma_min, latent.sigma_max
        self.value_range = tuple(value_range)
        self.linear_decoder: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def linear(cls, latent: Prior, weight: torch.Tensor, bias: torch.Tensor, image_shape: tuple[int, ...]
               ) -> LatentPrior:
        """``D(z) = W z + b`` on flattened latents and images (``W`` of shape ``(image size, latent size)``), with
        the least-squares encoder ``E(x) = W^+ (x - b)``: a latent model whose posterior is exact."""
        d_x, d_z = weight.shape
        if d_z != latent_size(latent) or d_x != _numel(image_shape) or bias.shape != (d_x,):
            raise ValueError(f"weight must be ({_numel(image_shape)}, {latent_size(latent)}) and bias "
                             f"({_numel(image_shape)},), got {tuple(weight.shape)} and {tuple(bias.shape)}")
        pinv = torch.linalg.pinv(weight)
        z_shape, x_shape = tuple(latent.shape), tuple(image_shape)

        def decode(z: torch.Tensor) -> torch.Tensor:
            return (z.reshape(z.shape[0], -1) @ weight.T + bias).reshape(z.shape[0], *x_shape)

        def encode(x: torch.Tensor) -> torch.Tensor:
            return ((x.reshape(x.shape[0], -1) - bias) @ pinv.T).reshape(x.shape[0], *z_shape)

        prior = cls(latent, encode, decode, image_shape)
        prior.linear_decoder = (weight, bias)
        return prior

    def denoise(self, z: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        return self.latent.denoise(z, sigma)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self._encode(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self._decode(z)


def latent_size(prior: Prior) -> int:
    return _numel(prior.shape)


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def exact_latent_posterior(measurement, prior: LatentPrior):
    """The exact posterior over latents for a linear decoder and a Gaussian / GMM latent prior: ``y = A (W z + b) +
    n`` is the linear-Gaussian measurement ``y - A b = (A W) z + n`` of ``z``
    (:func:`invsolve.exact_posterior.exact_posterior` on it). Returns a posterior over flattened latents."""
    from invsolve.exact_posterior import exact_posterior, operator_matrix
    from invsolve.measurement import Measurement
    from invsolve.operators import MatrixOperator

    if prior.linear_decoder is None:
        raise ValueError("the exact latent posterior needs a linear decoder (LatentPrior.linear)")
    weight, bias = prior.linear_decoder
    a = operator_matrix(measurement.operator).to(weight.dtype)
    y = measurement.y.reshape(measurement.batch_size, -1).to(weight.dtype) - bias @ a.T
    return exact_posterior(Measurement(MatrixOperator(a @ weight), measurement.noise, y), prior.latent)


def load_diffusers_latent(folder, *, image_range: tuple[float, float] = (-1.0, 1.0),
                          value_range: tuple[float, float] = (0.0, 1.0), device: str | torch.device = "cpu"
                          ) -> LatentPrior:
    """A local diffusers latent-diffusion folder (unconditional) as a :class:`LatentPrior`.

    ``folder`` holds ``vae/`` (an ``AutoencoderKL``: ``config.json`` and safetensors or ``.bin`` weights, read
    with ``weights_only=True``), ``unet/`` (a ``UNet2DModel`` over latents) and ``scheduler/``; nothing is
    downloaded. Latents follow the diffusers convention ``z = scaling_factor * encode(x)`` (the posterior mean);
    the VAE sees images in ``image_range`` (``[-1, 1]`` for diffusers models), mapped affinely from the data's
    ``value_range``. The latent prior is :func:`~invsolve.priors.loaders.load_diffusers_unet` of the same folder.
    """
    import json
    from pathlib import Path

    from invsolve.priors.loaders import (
        _DIFFUSERS_WEIGHTS,
        _load_strict,
        extract_state_dict,
        load_checkpoint_file,
        load_diffusers_unet,
    )

    root = Path(folder)
    vae_dir = root / "vae"
    if not (vae_dir / "config.json").is_file():
        raise FileNotFoundError(f"no vae/config.json in {root} (a latent-diffusion folder has vae/, unet/, scheduler/)")
    from diffusers import AutoencoderKL

    try:
        config = json.loads((vae_dir / "config.json").read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{vae_dir / 'config.json'}: not valid JSON ({err})") from err
    if config.get("_class_name", "AutoencoderKL") != "AutoencoderKL":
        raise ValueError(f"{vae_dir / 'config.json'}: expected an AutoencoderKL, got {config.get('_class_name')!r}")
    weights = next((vae_dir / n for n in _DIFFUSERS_WEIGHTS if (vae_dir / n).is_file()), None)
    if weights is None:
        raise FileNotFoundError(f"no weights ({' or '.join(_DIFFUSERS_WEIGHTS)}) in {vae_dir}")
    vae = AutoencoderKL.from_config(config)
    _load_strict(vae, extract_state_dict(load_checkpoint_file(weights), str(weights)), str(weights))
    vae = vae.to(device).eval().requires_grad_(False)
    latent = load_diffusers_unet(root, device=device)
    scale = float(vae.config.scaling_factor)
    (lo, hi), (a, b) = value_range, image_range
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    image_shape = (vae.config.in_channels, latent.shape[1] * factor, latent.shape[2] * factor)

    def encode(x: torch.Tensor) -> torch.Tensor:
        return scale * vae.encode(a + (x - lo) * (b - a) / (hi - lo)).latent_dist.mean

    def decode(z: torch.Tensor) -> torch.Tensor:
        return lo + (vae.decode(z / scale).sample - a) * (hi - lo) / (b - a)

    return LatentPrior(latent, encode, decode, image_shape, value_range=value_range)


def read_autoencoder_files(folder, stem: str) -> tuple[dict, dict, dict[str, torch.Tensor]]:
    """``(recipe, diffusers config, state dict)`` of ``folder/STEM.json`` and ``folder/STEM.safetensors``, the config's
    sizes bounded before any network is built (an autoencoder or a VQ tokenizer of this project)."""
    import json

    from safetensors.torch import load_file

    root = Path(folder)
    meta_path, weights = root / f"{stem}.json", root / f"{stem}.safetensors"
    for path in (meta_path, weights):
        if not path.is_file():
            raise FileNotFoundError(f"autoencoder file {path} does not exist (nothing is downloaded)")
    try:
        meta = json.loads(meta_path.read_text())
        config = dict(meta["config"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{meta_path}: not an autoencoder recipe ({err})") from err
    widths = config.get("block_out_channels", [])
    if not (isinstance(widths, list) and 1 <= len(widths) <= 5 and all(isinstance(w, int) and 0 < w <= 1024
                                                                        for w in widths)):
        raise ValueError(f"{meta_path}: block_out_channels {widths!r} out of bounds (1-5 widths <= 1024)")
    codes = config.get("num_vq_embeddings", 1)
    if not isinstance(codes, int) or not 1 <= codes <= 16384:
        raise ValueError(f"{meta_path}: num_vq_embeddings {codes!r} out of bounds (1-16384)")
    return meta, config, load_file(str(weights))


class AutoencoderFiles:
    """An ``AutoencoderKL`` trained by ``experiments/train_autoencoder.py``: ``autoencoder.safetensors`` and
    ``autoencoder.json`` (its diffusers config, the latents' standard deviation and the recipe) in one folder.

    ``encode`` / ``decode`` map images in ``[0, 1]`` to latents scaled to unit variance (``mean / latent_std``)
    and back; the network is frozen.
    """

    def __init__(self, folder, device: str | torch.device = "cpu", *, stem: str = "autoencoder") -> None:
        meta, config, state = read_autoencoder_files(folder, stem)
        try:
            self.latent_std = float(meta["latent_std"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{Path(folder) / stem}.json: no latent_std ({err})") from err
        if not 0 < self.latent_std < float("inf"):
            raise ValueError(f"{Path(folder) / stem}.json: latent_std must be a positive number, got {self.latent_std}")
        widths = config["block_out_channels"]
        from diffusers import AutoencoderKL

        vae = AutoencoderKL(**config)
        vae.load_state_dict(state, strict=True)
        self.vae = vae.to(device).eval().requires_grad_(False)
        self.meta = meta
        self.image_size = int(config.get("sample_size", 64))
        factor = 2 ** (len(widths) - 1)
        self.image_shape = (int(config.get("in_channels", 1)), self.image_size, self.image_size)
        self.latent_shape = (int(config.get("latent_channels", 4)), self.image_size // factor,
                             self.image_size // factor)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(x).latent_dist.mean / self.latent_std

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(z * self.latent_std).sample


class EncodedImages(torch.utils.data.Dataset):
    """A dataset of images seen through an autoencoder's encoder: item ``i`` is ``encode(images[i])``."""

    value_range = (-float("inf"), float("inf"))

    def __init__(self, images, autoencoder: AutoencoderFiles) -> None:
        self.images, self.autoencoder = images, autoencoder
        self.channels = autoencoder.latent_shape[0]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        with torch.no_grad():
            return self.autoencoder.encode(self.images[index][None])[0]


def load_latent_prior(prior_path, autoencoder_folder, device: str | torch.device = "cpu", *,
                      autoencoder_stem: str = "autoencoder") -> LatentPrior:
    """A latent EDM prior file (``train-prior --autoencoder``) with the autoencoder it was trained on
    (``autoencoder_folder/{autoencoder_stem}.safetensors`` and ``.json``)."""
    from invsolve.priors.edm import EDMPrior

    autoencoder = AutoencoderFiles(autoencoder_folder, device, stem=autoencoder_stem)
    latent = EDMPrior.from_checkpoint(prior_path, device=device)
    if tuple(latent.shape) != autoencoder.latent_shape:
        raise ValueError(f"{prior_path} models latents {tuple(latent.shape)} but the autoencoder in "
                         f"{autoencoder_folder} makes {autoencoder.latent_shape}")
    return LatentPrior(latent, autoencoder.encode, autoencoder.decode, autoencoder.image_shape)
