"""Shared pieces of the benchmark scripts: network-call counting, the wide 256x256 network, paired timing.

Imported by the scripts of this folder as a sibling module (``python experiments/benchmarks/<script>.py`` puts the
folder on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from invsolve.priors.edm import EDMPrior, make_edm_prior

#: A realistic network at 256x256 (ADM UNet, 21.6 M parameters): the size of the ADM / DPS FFHQ-256 networks'
#: lighter cousins, wide enough that the network dominates a step as it does in practice.
WIDE_256 = {"arch": "adm", "resolution": 256, "width": 64, "channel_mult": (1, 1, 2, 2, 4), "num_blocks": 2,
            "attn_resolutions": (16,)}


def wide_prior(resolution: int = 256, device: str | torch.device = "cpu", **overrides: Any) -> EDMPrior:
    """A randomly initialised :data:`WIDE_256`-shaped EDM prior at ``resolution`` (timing only: no trained weights
    exist at this size)."""
    return make_edm_prior({**WIDE_256, "resolution": resolution, **overrides}, seed=0, device=device)


def parameter_count(prior: EDMPrior) -> int:
    return sum(p.numel() for p in prior.denoiser.net.parameters())


class NetworkCalls:
    """Counts calls of a prior's denoiser module (a forward hook: whichever library drives it; every call is one
    network evaluation over the batch it is given)."""

    def __init__(self, prior: EDMPrior) -> None:
        self.count = 0
        self.batch_items = 0
        self._handle = prior.denoiser.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output) -> None:
        self.count += 1
        self.batch_items += int(inputs[0].shape[0])

    @contextlib.contextmanager
    def counting(self) -> Iterator[NetworkCalls]:
        self.count = self.batch_items = 0
        yield self

    def close(self) -> None:
        self._handle.remove()


def timed(fn: Callable[[], Any], device: torch.device | str = "cpu") -> tuple[Any, float]:
    """``(fn(), seconds)``, synchronising a CUDA device before and after."""
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    out = fn()
    sync()
    return out, time.perf_counter() - start
