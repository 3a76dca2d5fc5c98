"""How a prior's network is executed: numeric precision, memory layout, compilation.

The options change only how the network ``F`` of ``D(x, sigma) = c_skip x + c_out F(c_in x, c_noise)`` runs, never
what the samplers compute around it: the preconditioning, the skip connection and every data-consistency step stay
in the caller's dtype (float32 or float64). With ``precision="bfloat16"`` (or ``"float16"``) the network runs under
:func:`torch.autocast` (Micikevicius et al., 2018, "Mixed precision training": matrix products in reduced precision,
reductions and normalisations in float32) and its output is cast back before it is combined with ``x``; autograd
through it (DPS, PiGDM) works as usual. ``channels_last`` stores activations NHWC, the layout convolution
kernels prefer on GPUs (tensor cores) and on CPUs (oneDNN). ``compile`` wraps the network in :func:`torch.compile`
(its first call of each new shape is slow while it compiles; worth it for long GPU runs, not for a CPU demo).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

#: Accepted ``precision`` values and the autocast dtype each stands for (``None``: no autocast).
PRECISIONS: dict[str, torch.dtype | None] = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class ExecutionOptions:
    """``precision`` (``"float32"``, ``"bfloat16"``, ``"float16"``), ``channels_last``, ``compile``."""

    precision: str = "float32"
    channels_last: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        for name in ("channels_last", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return PRECISIONS[self.precision]


def autocast(options: ExecutionOptions, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast region the network runs in (a no-op for float32)."""
    dtype = options.autocast_dtype
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def layout(x: torch.Tensor, options: ExecutionOptions) -> torch.Tensor:
    """``x`` in the memory layout the network is stored in (4-D image batches only)."""
    if options.channels_last and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def prepare_network(net: torch.nn.Module, options: ExecutionOptions) -> None:
    """Store ``net``'s 4-D weights channels-last when asked (values unchanged; any layout still runs)."""
    if options.channels_last:
        net.to(memory_format=torch.channels_last)


def network_function(call: Callable[..., torch.Tensor], options: ExecutionOptions) -> Callable[..., torch.Tensor]:
    """``call`` itself, or ``torch.compile(call)`` when ``options.compile``."""
    return torch.compile(call) if options.compile else call
