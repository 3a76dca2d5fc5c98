"""Small argument checks shared across the package; each raises a clear error naming the argument."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch

FLOAT_DTYPES = (torch.float32, torch.float64)


def require_tensor(name: str, value: object) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def require_floating(name: str, value: torch.Tensor) -> torch.Tensor:
    require_tensor(name, value)
    if not value.is_floating_point():
        raise TypeError(
            f"{name} must have a real floating dtype (float32 or float64), got {value.dtype}; "
            "complex data is stored as two real channels (see invsolve.operators)"
        )
    return value


def require_finite(name: str, value: torch.Tensor) -> torch.Tensor:
    if not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise ValueError(f"{name} contains {bad} NaN/Inf value(s); all entries must be finite")
    return value


def require_nonnegative_number(name: str, value: object) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got a tensor of shape {tuple(value.shape)}")
        value = float(value)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return float(value)


def require_positive_number(name: str, value: object) -> float:
    value = require_nonnegative_number(name, value)
    if value == 0:
        raise ValueError(f"{name} must be > 0, got 0")
    return value


def require_batched_shape(name: str, value: torch.Tensor, item_shape: Sequence[int]) -> torch.Tensor:
    """Check ``value.shape == (B, *item_shape)`` for some batch size B >= 1."""
    item_shape = tuple(item_shape)
    if value.dim() != len(item_shape) + 1 or tuple(value.shape[1:]) != item_shape:
        raise ValueError(
            f"{name} must have shape (batch, {', '.join(map(str, item_shape))}) "
            f"(rank {len(item_shape) + 1}), got {tuple(value.shape)}"
        )
    return value


def float_dtype(dtype: object, name: str = "dtype") -> torch.dtype:
    """``dtype`` if it is torch.float32 or torch.float64 (the real dtypes every operator supports)."""
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be torch.float32 or torch.float64, got {dtype!r}")
    return dtype  # type: ignore[return-value]


def positive_int(value: object, name: str, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum``; booleans and non-integers are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def require_generator(generator: object, name: str = "generator") -> torch.Generator:
    """Every random draw takes an explicit generator (same seed, same result)."""
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{name} must be an explicit torch.Generator (e.g. torch.Generator().manual_seed(0)), "
            f"got {type(generator).__name__}"
        )
    return generator


def require_device(value: object, name: str = "device") -> torch.device:
    """A torch device that exists on this machine (``cpu``, or ``cuda[:k]`` with that GPU present)."""
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError):
        raise ValueError(f"{name} must be a torch device such as 'cpu' or 'cuda', got {value!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name} {value!r} was requested but CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{name} {value!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise ValueError(f"{name} must be 'cpu' or 'cuda[:index]', got {value!r}")
    return device
