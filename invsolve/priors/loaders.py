"""Loading checkpoints people have, safely: never unpickling arbitrary code.

Files are read with ``torch.load(..., weights_only=True)`` or, for ``.safetensors`` files, with the
``safetensors`` package. Nothing is downloaded: a missing file is a :class:`FileNotFoundError`
naming it, and an unreadable or malformed one a :class:`ValueError` naming it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch


def _existing_file(path: str | os.PathLike, what: str = "checkpoint") -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} file {p} does not exist (nothing is downloaded; pass a local file)")
    if not p.is_file():
        raise ValueError(f"{what} path {p} is not a file")
    return p


def load_checkpoint_file(path: str | os.PathLike) -> Any:
    """The object stored in ``path``: ``torch.load(weights_only=True, map_location="cpu")``, or a dict of
    tensors for ``.safetensors`` files."""
    p = _existing_file(path)
    if p.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as err:
            raise ImportError(f"reading {p} needs the 'safetensors' package (pip install safetensors)") from err
        try:
            return load_file(str(p), device="cpu")
        except Exception as err:  # safetensors raises its own error types
            raise ValueError(f"{p}: not a readable safetensors file ({err})") from err
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError, EOFError, ... all mean "not a safe checkpoint"
        raise ValueError(f"{p}: not a readable weights-only torch checkpoint ({type(err).__name__}: {err})") from err


def extract_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The model state dict inside common checkpoint wrappers.

    Accepts a plain state dict or a dict holding one under ``"ema"``, ``"state_dict"``, ``"model"``,
    ``"model_state_dict"`` or ``"net"`` (first match wins); strips a ``"module."`` prefix left by
    ``DataParallel``/``DistributedDataParallel``.
    """
    if not isinstance(obj, Mapping):
        raise ValueError(f"{source}: expected a state dict (a mapping of names to tensors), got {type(obj).__name__}")
    if not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("ema", "state_dict", "model", "model_state_dict", "net"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
        else:
            raise ValueError(
                f"{source}: no state dict found (top-level keys: {sorted(map(str, obj))[:10]}); "
                "expected tensors or one of 'ema', 'state_dict', 'model', 'model_state_dict', 'net'"
            )
    if not obj:
        raise ValueError(f"{source}: the state dict is empty")
    state = dict(obj)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


# ----------------------------------------------------------------------------------- VP schedules
def guided_diffusion_alphas_cumprod(schedule: str = "linear", num_steps: int = 1000) -> torch.Tensor:
    """``abar_t`` of guided-diffusion's named beta schedules (float64).

    ``"linear"``: betas linear from ``1e-4`` to ``0.02`` scaled by ``1000 / num_steps`` (Ho et al., 2020);
    ``"cosine"``: ``abar(t) = cos^2(((t / T) + s) / (1 + s) * pi / 2)``, ``s = 0.008``, betas capped at
    0.999 (Nichol & Dhariwal, 2021, eq. 17).
    """
    if not isinstance(num_steps, int) or num_steps < 2:
        raise ValueError(f"num_steps must be an integer >= 2, got {num_steps!r}")
    if schedule == "linear":
        scale = 1000 / num_steps
        betas = torch.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=torch.float64)
    elif schedule == "cosine":
        betas = _alpha_bar_betas(num_steps)
    else:
        raise ValueError(f"schedule must be 'linear' or 'cosine', got {schedule!r}")
    return torch.cumprod(1.0 - betas, dim=0)


def _alpha_bar_betas(num_steps: int, max_beta: float = 0.999, s: float = 0.008) -> torch.Tensor:
    t = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    abar = torch.cos((t + s) / (1 + s) * torch.pi / 2).square()
    return (1 - abar[1:] / abar[:-1]).clamp(max=max_beta)


# ------------------------------------------------------------------------- guided-diffusion / ADM
def load_guided_diffusion(
    path: str | os.PathLike,
    *,
    image_size: int,
    noise_schedule: str = "linear",
    diffusion_steps: int = 1000,
    num_heads: int = 4,
    num_head_channels: int = 64,
    num_heads_upsample: int = -1,
    use_new_attention_order: bool = False,
    value_range: tuple[float, float] | None = None,
    device: str | torch.device = "cpu",
):
    """An OpenAI guided-diffusion / ADM epsilon-prediction checkpoint as a :class:`~invsolve.priors.vp.VPPrior`.

    These are the FFHQ-256 (``ffhq_10m.pt``) and ImageNet-256 unconditional models used by DPS,
    DiffPIR and RED-Diff, and any other ``guided_diffusion.unet.UNetModel`` state dict: the
    architecture is read off the state dict (:func:`~invsolve.priors.guided_unet.config_from_state_dict`);
    only the attention-head layout, which has no parameters, comes from the arguments (defaults:
    64 channels per head, as in those models). Learned-sigma models (``2C`` output channels) work:
    the prior uses the first ``C`` (epsilon) channels. Class-conditional models are refused.

    Args:
        path: the ``.pt`` state dict (read with ``weights_only=True``) or a ``.safetensors`` file.
        image_size: training resolution (the prior's shape is ``(C, image_size, image_size)``).
        noise_schedule, diffusion_steps: the VP schedule the model was trained with.
        value_range: ``None`` keeps the model's ``[-1, 1]``; e.g. ``(0, 1)`` wraps it in a
            :class:`~invsolve.priors.rescale.RescaledPrior`.
    """
    from invsolve.priors.guided_unet import GuidedDiffusionUNet, config_from_state_dict
    from invsolve.priors.vp import VPPrior

    source = str(path)
    state = extract_state_dict(load_checkpoint_file(path), source)
    config = config_from_state_dict(
        state,
        num_heads=num_heads,
        num_head_channels=num_head_channels,
        num_heads_upsample=num_heads_upsample,
        use_new_attention_order=use_new_attention_order,
        source=source,
    )
    if config.num_classes is not None:
        raise ValueError(f"{source}: class-conditional models ({config.num_classes} classes) are not supported as priors")
    if config.out_channels not in (config.in_channels, 2 * config.in_channels):
        raise ValueError(
            f"{source}: {config.out_channels} output channels for {config.in_channels} input channels; "
            "expected epsilon (C) or epsilon + learned variance (2C)"
        )
    if not isinstance(image_size, int) or image_size % 2 ** (len(config.channel_mult) - 1):
        raise ValueError(
            f"image_size must be an integer divisible by {2 ** (len(config.channel_mult) - 1)} for this model, "
            f"got {image_size!r}"
        )
    net = GuidedDiffusionUNet(config)
    _load_strict(net, state, source)
    net = net.to(device).eval().requires_grad_(False)
    prior = VPPrior(
        net,
        guided_diffusion_alphas_cumprod(noise_schedule, diffusion_steps),
        (config.in_channels, image_size, image_size),
        prediction="epsilon",
        value_range=(-1.0, 1.0),
    )
    return _in_range(prior, value_range)


def _load_strict(
    net: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str, optional: frozenset[str] = frozenset()
) -> None:
    """``load_state_dict`` with one clear error listing missing, unexpected and mis-shaped keys."""
    expected = net.state_dict()
    missing = sorted(k for k in expected if k not in state and k not in optional)
    unexpected = sorted(k for k in state if k not in expected)
    wrong = sorted(k for k in state if k in expected and tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong)):
            if keys:
                parts.append(f"{label} {len(keys)}: {keys[:5]}{' ...' if len(keys) > 5 else ''}")
        raise ValueError(f"{source}: weights do not fit the network ({'; '.join(parts)})")
    net.load_state_dict(state, strict=not optional)


def _in_range(prior, value_range: tuple[float, float] | None):
    if value_range is None or tuple(map(float, value_range)) == tuple(map(float, prior.value_range)):
        return prior
    from invsolve.priors.rescale import RescaledPrior

    return RescaledPrior(prior, value_range)


# ------------------------------------------------------------------------------------ deepinv
_DIFFUNET_DERIVED_BUFFERS = frozenset({"sqrt_1m_alphas_cumprod", "sqrt_alphas_cumprod"})


def load_deepinv_prior(
    path: str | os.PathLike,
    model: torch.nn.Module,
    *,
    shape: tuple[int, ...],
    value_range: tuple[float, float] | None = None,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    device: str | torch.device = "cpu",
):
    """Load deepinv weights into ``model`` and return it as a prior.

    ``model`` is a deepinv network built with ``pretrained=None`` and the checkpoint's architecture
    (deepinv checkpoints hold weights only). ``path`` is a deepinv weights file (a state dict, as
    deepinv's own downloads are) or a ``deepinv.Trainer`` checkpoint (weights under ``"state_dict"``).

    * :class:`deepinv.models.DiffUNet`: its epsilon network (``forward_diffusion``) on the linear
      VP schedule, as a :class:`~invsolve.priors.vp.VPPrior` on ``[-1, 1]``;
    * any other deepinv denoiser ``model(x, sigma)`` (``ADMUNet``/``NCSNpp`` with their built-in EDM
      preconditioning, DRUNet, ...): a :class:`~invsolve.priors.base.DenoiserPrior` on ``[0, 1]``
      (deepinv's convention). Sigma range defaults: ``(0.002, 80)`` for ADMUNet/NCSNpp, else ``(0.001, 1)``.

    ``value_range`` re-expresses the prior on another range (:class:`~invsolve.priors.rescale.RescaledPrior`).
    """
    from deepinv.models import ADMUNet, DiffUNet, NCSNpp

    from invsolve.priors.base import DenoiserPrior
    from invsolve.priors.vp import VPPrior, linear_beta_alphas_cumprod

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a deepinv network (torch.nn.Module), got {type(model).__name__}")
    source = str(path)
    state = extract_state_dict(load_checkpoint_file(path), source)
    optional = _DIFFUNET_DERIVED_BUFFERS if isinstance(model, DiffUNet) else frozenset()
    _load_strict(model, state, source, optional)
    model = model.to(device).eval().requires_grad_(False)
    if isinstance(model, DiffUNet):
        prior = VPPrior(
            lambda x_t, t: model.forward_diffusion(x_t, t),
            linear_beta_alphas_cumprod(1000),
            shape,
            prediction="epsilon",
            value_range=(-1.0, 1.0),
        )
    else:
        edm_like = isinstance(model, (ADMUNet, NCSNpp))
        prior = DenoiserPrior(
            model,
            shape,
            sigma_min=sigma_min if sigma_min is not None else (0.002 if edm_like else 1e-3),
            sigma_max=sigma_max if sigma_max is not None else (80.0 if edm_like else 1.0),
            value_range=(0.0, 1.0),
        )
    return _in_range(prior, value_range)


# ----------------------------------------------------------------------------------- diffusers
_DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
_DIFFUSERS_PREDICTIONS = {"epsilon": "epsilon", "sample": "x0", "v_prediction": "v"}


def diffusers_alphas_cumprod(scheduler_config: Mapping[str, Any]) -> torch.Tensor:
    """``abar_t`` from a diffusers DDPM/DDIM scheduler config (``beta_schedule`` ``linear``,
    ``scaled_linear`` or ``squaredcos_cap_v2``, or explicit ``trained_betas``), float64."""
    steps = int(scheduler_config.get("num_train_timesteps", 1000))
    start = float(scheduler_config.get("beta_start", 1e-4))
    end = float(scheduler_config.get("beta_end", 0.02))
    kind = scheduler_config.get("beta_schedule", "linear")
    trained = scheduler_config.get("trained_betas")
    if trained is not None:
        betas = torch.as_tensor(trained, dtype=torch.float64)
    elif kind == "linear":
        betas = torch.linspace(start, end, steps, dtype=torch.float64)
    elif kind == "scaled_linear":
        betas = torch.linspace(start**0.5, end**0.5, steps, dtype=torch.float64).square()
    elif kind == "squaredcos_cap_v2":
        betas = _alpha_bar_betas(steps)
    else:
        raise ValueError(f"unsupported beta_schedule {kind!r} (linear, scaled_linear, squaredcos_cap_v2)")
    return torch.cumprod(1.0 - betas, dim=0)


def load_diffusers_unet(
    folder: str | os.PathLike,
    *,
    prediction: str | None = None,
    scheduler_config: Mapping[str, Any] | None = None,
    value_range: tuple[float, float] | None = None,
    device: str | torch.device = "cpu",
):
    """A local Hugging Face diffusers ``UNet2DModel`` folder as a :class:`~invsolve.priors.vp.VPPrior`.

    Needs the optional ``diffusers`` package. ``folder`` is either a pipeline folder (with ``unet/``
    and ``scheduler/``) or a ``UNet2DModel`` folder (``config.json`` plus
    ``diffusion_pytorch_model.safetensors`` or ``.bin``). The network is built from its config and
    the weights are read by :func:`load_checkpoint_file` (safetensors, or ``torch.load`` with
    ``weights_only=True``); nothing is downloaded. The VP schedule and the prediction type come from
    the scheduler config (``scheduler/scheduler_config.json`` or ``scheduler_config.json``, or the
    ``scheduler_config`` argument); without one, diffusers' DDPM defaults apply (linear ``1e-4`` to
    ``0.02``, 1000 steps, epsilon prediction). Data range: ``[-1, 1]`` unless ``value_range`` is given.
    """
    import json

    from invsolve.priors.vp import VPPrior

    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"diffusers folder {root} does not exist (nothing is downloaded; pass a local folder)")
    try:
        from diffusers import UNet2DModel
    except ImportError as err:
        raise ImportError(
            f"loading the diffusers folder {root} needs the optional 'diffusers' package "
            "(pip install 'invsolve[diffusers]')"
        ) from err

    unet_dir = root / "unet" if (root / "unet" / "config.json").is_file() else root
    config_path = unet_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"no UNet config.json in {root} or {root / 'unet'}")
    try:
        unet_config = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_path}: not valid JSON ({err})") from err
    class_name = unet_config.get("_class_name", "UNet2DModel")
    if class_name != "UNet2DModel":
        raise ValueError(f"{config_path}: expected a UNet2DModel, got {class_name!r}")
    weights = next((unet_dir / name for name in _DIFFUSERS_WEIGHTS if (unet_dir / name).is_file()), None)
    if weights is None:
        raise FileNotFoundError(f"no weights ({' or '.join(_DIFFUSERS_WEIGHTS)}) in {unet_dir}")

    if scheduler_config is None:
        for candidate in (root / "scheduler" / "scheduler_config.json", root / "scheduler_config.json"):
            if candidate.is_file():
                try:
                    scheduler_config = json.loads(candidate.read_text())
                except json.JSONDecodeError as err:
                    raise ValueError(f"{candidate}: not valid JSON ({err})") from err
                break
    scheduler_config = dict(scheduler_config or {})
    kind = prediction or scheduler_config.get("prediction_type", "epsilon")
    if kind not in _DIFFUSERS_PREDICTIONS and kind not in ("x0", "v"):
        raise ValueError(f"prediction must be one of {sorted(_DIFFUSERS_PREDICTIONS)}, got {kind!r}")

    unet = UNet2DModel.from_config(unet_config)
    if getattr(unet.config, "num_class_embeds", None) or getattr(unet.config, "class_embed_type", None):
        raise ValueError(f"{config_path}: class-conditional UNets are not supported as priors")
    state = extract_state_dict(load_checkpoint_file(weights), str(weights))
    _load_strict(unet, state, str(weights))
    unet = unet.to(device).eval().requires_grad_(False)
    size = unet.config.sample_size
    size = (size, size) if isinstance(size, int) else tuple(size)

    def model(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return unet(x_t, t).sample

    prior = VPPrior(
        model,
        diffusers_alphas_cumprod(scheduler_config),
        (unet.config.in_channels, *size),
        prediction=_DIFFUSERS_PREDICTIONS.get(kind, kind),
        value_range=(-1.0, 1.0),
    )
    return _in_range(prior, value_range)
