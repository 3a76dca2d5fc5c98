"""EDM-preconditioned networks as priors (Karras et al., 2022, "Elucidating the Design Space of
Diffusion-Based Generative Models", section 5 and Table 1).

The denoiser is ``D(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma))``
(eq. 7) with, for data of standard deviation ``sigma_data``,

* ``c_skip = sigma_data^2 / (sigma^2 + sigma_data^2)``,
* ``c_out  = sigma * sigma_data / sqrt(sigma^2 + sigma_data^2)``,
* ``c_in   = 1 / sqrt(sigma^2 + sigma_data^2)``,
* ``c_noise = log(sigma) / 4``.

``F`` is a raw deepinv UNet (:class:`deepinv.models.ADMUNet` or :class:`deepinv.models.NCSNpp`).
Both deepinv classes apply their own EDM preconditioning inside ``forward`` (with their own
``pixel_std`` and an optional ``[0, 1] -> [-1, 1]`` rescaling); to avoid preconditioning twice,
:class:`EDMDenoiser` calls their un-preconditioned ``forward_unet`` and owns the preconditioning
itself, so ``sigma_data`` is ours to set and is saved with the weights.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from invsolve.priors.base import Prior, sigma_like
from invsolve.priors.execution import ExecutionOptions, autocast, layout, network_function, prepare_network

Arch = Literal["adm", "ncsnpp", "ddpmpp"]
ARCHITECTURES: tuple[str, ...] = ("adm", "ncsnpp", "ddpmpp")

#: ``format`` tag of prior files written by :meth:`EDMPrior.save` (config + weights in one dict).
PRIOR_FORMAT = "invsolve-edm-prior"
#: ``format`` tag of training checkpoints written by :mod:`invsolve.training`.
TRAIN_FORMAT = "invsolve-edm-train"


def edm_preconditioning(
    sigma: torch.Tensor, sigma_data: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(c_skip, c_out, c_in, c_noise)`` of Karras et al. (2022), Table 1, for a tensor of sigmas."""
    if sigma_data <= 0:
        raise ValueError(f"sigma_data must be positive, got {sigma_data}")
    total = sigma.square() + sigma_data**2
    c_skip = sigma_data**2 / total
    c_out = sigma * sigma_data / total.sqrt()
    c_in = total.rsqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


def edm_loss_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """``lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma * sigma_data)^2`` (Karras et al., 2022, Table 1)."""
    return (sigma.square() + sigma_data**2) / (sigma * sigma_data).square()


#: Bounds checked before any network is built (a config file could otherwise ask for terabytes).
MAX_CHANNELS, MAX_RESOLUTION, MAX_WIDTH, MAX_BLOCKS, MAX_LEVELS, MAX_MULT = 16, 4096, 1024, 16, 8, 16
MAX_PARAMETERS = 2e9


def estimated_parameters(width: int, channel_mult: Sequence[int], num_blocks: int) -> float:
    """A rough estimate (within 2x, from above for the ADM UNets here) of a UNet's parameter count: per level and
    block about ``40 (width * mult)^2``, for the encoder and the decoder."""
    return float(sum(40 * (width * m) ** 2 * 2 * (num_blocks + 1) for m in channel_mult))


def network_config(
    arch: Arch = "adm",
    channels: int = 1,
    resolution: int = 64,
    *,
    width: int = 32,
    channel_mult: Sequence[int] = (1, 2, 2, 2),
    num_blocks: int = 1,
    attn_resolutions: Sequence[int] = (8,),
    dropout: float = 0.0,
) -> dict[str, Any]:
    """A validated, JSON-able description of a network for :func:`build_network`."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {ARCHITECTURES}, got {arch!r}")
    for name, value in (("channels", channels), ("resolution", resolution), ("width", width), ("num_blocks", num_blocks)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if width % 32:
        # deepinv's UNet blocks use GroupNorm with 32 groups.
        raise ValueError(f"width must be a multiple of 32 (GroupNorm with 32 groups), got {width}")
    mult = [int(m) for m in channel_mult]
    if not mult or min(mult) < 1:
        raise ValueError(f"channel_mult must be a non-empty sequence of positive integers, got {channel_mult!r}")
    if resolution % 2 ** (len(mult) - 1):
        raise ValueError(
            f"resolution {resolution} must be divisible by 2**(len(channel_mult) - 1) = {2 ** (len(mult) - 1)}"
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
    for name, value, bound in (("channels", channels, MAX_CHANNELS), ("resolution", resolution, MAX_RESOLUTION),
                               ("width", width, MAX_WIDTH), ("num_blocks", num_blocks, MAX_BLOCKS),
                               ("len(channel_mult)", len(mult), MAX_LEVELS), ("max(channel_mult)", max(mult), MAX_MULT)):
        if value > bound:
            raise ValueError(f"{name} = {value} exceeds the bound {bound} (configs are bounded before a network "
                             "is built)")
    estimate = estimated_parameters(width, mult, num_blocks)
    if estimate > MAX_PARAMETERS:
        raise ValueError(f"the network would have about {estimate:.3g} parameters, more than {MAX_PARAMETERS:.3g} "
                         f"(width {width}, channel_mult {mult}, num_blocks {num_blocks})")
    return {
        "arch": arch,
        "channels": channels,
        "resolution": resolution,
        "width": width,
        "channel_mult": mult,
        "num_blocks": num_blocks,
        "attn_resolutions": [int(r) for r in attn_resolutions],
        "dropout": float(dropout),
    }


def build_network(
    arch: Arch = "adm",
    channels: int = 1,
    resolution: int = 64,
    *,
    width: int = 32,
    channel_mult: Sequence[int] = (1, 2, 2, 2),
    num_blocks: int = 1,
    attn_resolutions: Sequence[int] = (8,),
    dropout: float = 0.0,
    seed: int | None = 0,
) -> nn.Module:
    """A randomly initialized deepinv UNet with ``channels`` in and out, without pretrained weights.

    Args:
        arch: ``"adm"`` (:class:`deepinv.models.ADMUNet`, Dhariwal & Nichol 2021), ``"ncsnpp"``
            (:class:`deepinv.models.NCSNpp`, Song et al. 2021, Fourier noise embedding) or
            ``"ddpmpp"`` (NCSNpp in its DDPM++ configuration, positional embedding).
        channels: 1 for magnitude images, 2 for complex images as (real, imag).
        resolution: spatial size (square images).
        width: base channel count (a multiple of 32).
        channel_mult: per-resolution channel multipliers; ``len - 1`` downsamplings.
        num_blocks: residual blocks per resolution.
        attn_resolutions: resolutions with self-attention.
        dropout: dropout probability in residual blocks.
        seed: seeds the initialization (deepinv draws its weights, and NCSN++ its Fourier
            frequencies, from torch's global generator, so it is forked and seeded here and the
            caller's global RNG state is left untouched). ``None`` uses the global generator as is.
    """
    cfg = network_config(
        arch,
        channels,
        resolution,
        width=width,
        channel_mult=channel_mult,
        num_blocks=num_blocks,
        attn_resolutions=attn_resolutions,
        dropout=dropout,
    )
    from deepinv.models import ADMUNet, NCSNpp

    common = dict(
        img_resolution=cfg["resolution"],
        in_channels=cfg["channels"],
        out_channels=cfg["channels"],
        model_channels=cfg["width"],
        channel_mult=tuple(cfg["channel_mult"]),
        num_blocks=cfg["num_blocks"],
        attn_resolutions=tuple(cfg["attn_resolutions"]),
        dropout=cfg["dropout"],
        label_dim=0,
        augment_dim=0,
        pretrained=None,
    )
    rng = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
    with rng:
        if seed is not None:
            torch.manual_seed(seed)
        if arch == "adm":
            net = ADMUNet(**common)
        else:
            net = NCSNpp(model_type="ncsn" if arch == "ncsnpp" else "ddpm", **common)
    net.train(False)
    return net


class EDMDenoiser(nn.Module):
    """``D(x, sigma) = c_skip x + c_out F(c_in x, c_noise)`` around a raw network (Karras et al., 2022, eq. 7).

    Args:
        net: a deepinv ``ADMUNet``/``NCSNpp`` (its ``forward_unet`` is used, bypassing deepinv's own
            preconditioning) or any module called as ``net(x, c_noise)`` returning ``F``.
        sigma_data: standard deviation of the training data.
        execution: how ``F`` runs (precision, memory layout, compilation; :mod:`invsolve.priors.execution`);
            the preconditioning around it stays in ``x``'s dtype.
    """

    def __init__(self, net: nn.Module, sigma_data: float = 0.5, execution: ExecutionOptions | None = None) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be positive, got {sigma_data}")
        self.net = net
        self.sigma_data = float(sigma_data)
        self.execution = ExecutionOptions() if execution is None else execution
        if not isinstance(self.execution, ExecutionOptions):
            raise TypeError(f"execution must be an ExecutionOptions, got {type(self.execution).__name__}")
        prepare_network(net, self.execution)
        self._network = network_function(self.raw, self.execution)

    def raw(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        forward_unet = getattr(self.net, "forward_unet", None)
        return forward_unet(x, c_noise) if forward_unet is not None else self.net(x, c_noise)

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """Denoise ``x`` (any float dtype; the network runs in its parameter dtype, or under autocast as
        :attr:`execution` says) at ``sigma`` (scalar or ``(B,)``); the result has ``x``'s dtype and layout."""
        param = next(self.net.parameters(), None)
        net_dtype = param.dtype if param is not None else torch.float32
        s = sigma_like(sigma, x)
        c_skip, c_out, c_in, c_noise = edm_preconditioning(s, self.sigma_data)
        with autocast(self.execution, x.device):
            f = self._network(layout((c_in * x).to(net_dtype), self.execution), c_noise.reshape(-1).to(net_dtype))
        return c_skip * x + c_out * f.to(x.dtype).contiguous()


class EDMPrior(Prior):
    """A :class:`~invsolve.priors.base.Prior` from an EDM-preconditioned network.

    ``denoise`` keeps the autograd graph (guidance methods differentiate through it); wrap calls in
    :func:`torch.no_grad` when no gradient is needed. The network is put in eval mode.

    Args:
        denoiser: an :class:`EDMDenoiser`.
        shape: per-item data shape ``(C, H, W)``.
        sigma_min, sigma_max: noise range the network was trained for.
        value_range: range of the clean training data.
        config: the network/training description saved with the weights (optional).
    """

    def __init__(
        self,
        denoiser: EDMDenoiser,
        shape: Sequence[int],
        *,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        value_range: tuple[float, float] = (0.0, 1.0),
        config: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(denoiser, EDMDenoiser):
            raise TypeError(f"denoiser must be an EDMDenoiser, got {type(denoiser).__name__}")
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
        self.denoiser = denoiser.eval()
        self.shape = tuple(int(d) for d in shape)
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.config = dict(config or {})

    @property
    def sigma_data(self) -> float:
        return self.denoiser.sigma_data

    @property
    def device(self) -> torch.device:
        param = next(self.denoiser.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    def to(self, device: str | torch.device) -> EDMPrior:
        """Move the network to ``device`` (in place) and return ``self``."""
        self.denoiser.to(device)
        return self

    def denoise(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        self.check_x(x)
        return self.denoiser(x, sigma)

    @property
    def execution(self) -> ExecutionOptions:
        return self.denoiser.execution

    def with_execution(self, **options: Any) -> EDMPrior:
        """This prior with its network run as asked (keywords of :class:`~invsolve.priors.execution.ExecutionOptions`:
        ``precision``, ``channels_last``, ``compile``), sharing the weights (no copy). ``precision="bfloat16"`` runs
        only the network in bf16. Note that ``channels_last=True`` re-lays the shared weights (values unchanged)."""
        options = ExecutionOptions(**options)
        denoiser = EDMDenoiser(self.denoiser.net, self.sigma_data, options)
        return EDMPrior(denoiser, self.shape, sigma_min=self.sigma_min, sigma_max=self.sigma_max,
                        value_range=self.value_range, config=self.config)

    # ------------------------------------------------------------------ files
    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild this prior, as a dict loadable with ``weights_only=True``."""
        return {
            "format": PRIOR_FORMAT,
            "config": prior_config(self),
            "state_dict": {k: v.detach().cpu() for k, v in self.denoiser.net.state_dict().items()},
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`state` to ``path`` atomically (``torch.save``)."""
        from invsolve._atomic import atomic_path

        with atomic_path(path) as tmp:
            torch.save(self.state(), tmp)
        return Path(path)

    @classmethod
    def from_state(cls, state: Mapping[str, Any], *, device: str | torch.device = "cpu", source: str = "state") -> EDMPrior:
        """Rebuild a prior from :meth:`state` output or from a training checkpoint (its EMA weights)."""
        fmt = state.get("format") if isinstance(state, Mapping) else None
        if fmt in (TRAIN_FORMAT, PRIOR_FORMAT):
            config_key, weights_key = ("config", "ema") if fmt == TRAIN_FORMAT else ("config", "state_dict")
            lacking = [k for k in (config_key, weights_key) if not isinstance(state.get(k), Mapping)]
            config = state.get("config") if not lacking else None
            if fmt == TRAIN_FORMAT and isinstance(config, Mapping):
                config = config.get("prior")
                if not isinstance(config, Mapping):
                    lacking.append("config['prior']")
            if lacking:
                raise ValueError(f"{source}: a {fmt!r} file needs the entries {lacking} (a network description and "
                                 "its weights); the file is incomplete or damaged")
            config, weights = dict(config), state[weights_key]
        else:
            raise ValueError(
                f"{source}: not an invsolve EDM prior or training checkpoint (format tag {fmt!r}); "
                "for other checkpoints use invsolve.priors.loaders"
            )
        net_keys = ("arch", "channels", "resolution", "width", "channel_mult", "num_blocks", "attn_resolutions", "dropout")
        missing = [k for k in net_keys + ("sigma_data",) if k not in config]
        if missing:
            raise ValueError(f"{source}: prior config lacks {missing}")
        # The config is bounded before the network is built; the initial weights are overwritten (seeding just
        # keeps the caller's global RNG untouched).
        try:
            checked = network_config(**{k: config[k] for k in net_keys})
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: {err}") from None
        net = build_network(**checked, seed=0)
        try:
            net.load_state_dict(weights, strict=True)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"{source}: weights do not match the network in its config: {err}") from err
        bad = [name for name, t in net.state_dict().items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
        if bad:
            raise ValueError(f"{source}: weights hold NaN/Inf values (in {bad[:3]}{' ...' if len(bad) > 3 else ''})")
        denoiser = EDMDenoiser(net, sigma_data=config["sigma_data"]).to(device)
        res = config["resolution"]
        return cls(
            denoiser,
            (config["channels"], res, res),
            sigma_min=config.get("sigma_min", 0.002),
            sigma_max=config.get("sigma_max", 80.0),
            value_range=tuple(config.get("value_range", (0.0, 1.0))),
            config=config,
        )

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, *, device: str | torch.device = "cpu") -> EDMPrior:
        """Load a prior file (:meth:`save`) or a training checkpoint, with ``torch.load(weights_only=True)``."""
        from invsolve.priors.loaders import load_checkpoint_file

        state = load_checkpoint_file(path)
        return cls.from_state(state, device=device, source=str(path))


def prior_config(prior: EDMPrior) -> dict[str, Any]:
    """The JSON-able config saved with a prior: network description, sigma_data, sigma range, value range."""
    config = dict(prior.config)
    config.update(
        sigma_data=prior.sigma_data,
        sigma_min=prior.sigma_min,
        sigma_max=prior.sigma_max,
        value_range=list(prior.value_range),
    )
    return config


def make_edm_prior(
    config: Mapping[str, Any], *, seed: int | None = 0, device: str | torch.device = "cpu"
) -> EDMPrior:
    """A freshly initialized :class:`EDMPrior` from a config dict (network keys of :func:`network_config`
    plus ``sigma_data``, and optionally ``sigma_min``, ``sigma_max``, ``value_range``)."""
    net_cfg = network_config(
        **{k: config[k] for k in ("arch", "channels", "resolution") if k in config},
        **{k: config[k] for k in ("width", "channel_mult", "num_blocks", "attn_resolutions", "dropout") if k in config},
    )
    sigma_data = float(config.get("sigma_data", 0.5))
    full = dict(net_cfg, sigma_data=sigma_data)
    for key in ("sigma_min", "sigma_max", "value_range"):
        if key in config:
            full[key] = config[key]
    net = build_network(**net_cfg, seed=seed)
    res = net_cfg["resolution"]
    return EDMPrior(
        EDMDenoiser(net, sigma_data).to(device),
        (net_cfg["channels"], res, res),
        sigma_min=float(full.get("sigma_min", 0.002)),
        sigma_max=float(full.get("sigma_max", 80.0)),
        value_range=tuple(full.get("value_range", (0.0, 1.0))),
        config=full,
    )

