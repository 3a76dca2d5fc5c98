"""Acquisition models for active subsampling: what one candidate measurement is, and the operator of a set.

An acquisition model splits a full measurement into ``K`` candidates (k-space columns for Cartesian
MRI, pixels for inpainting). For a boolean selection ``(K,)`` it builds the operator that measures
exactly the selected candidates, and for images ``x`` it gives the values each candidate would
measure, ``(B, K, D)`` real, which is what active samplers compare across particles
(:mod:`invsolve.samplers.ads`).

:class:`ActiveMeasurement` holds the data a scanner would return for every candidate
(``y_full``, noisy) and reveals the selected part as an ordinary :class:`~invsolve.Measurement`:
retrospective undersampling of fully sampled data, the setting of fastMRI studies and of Nolan et
al. (TMLR 2025). It may also carry the ``budget``: how many candidates an active sampler acquires beyond
``initial``.

This module sits beside the likelihood (it builds :class:`~invsolve.Measurement` objects), not among the
operators, which know no noise model or measurement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from invsolve.measurement import Measurement
from invsolve.noise import NoiseModel
from invsolve.operators.algebra import RealToComplex
from invsolve.operators.base import LinearOperator
from invsolve.operators.inpainting import Inpainting
from invsolve.operators.mri import MultiCoilMRI, SingleCoilMRI


def _selection(selected: torch.Tensor, k: int) -> torch.Tensor:
    if not isinstance(selected, torch.Tensor) or selected.dtype != torch.bool or tuple(selected.shape) != (k,):
        raise ValueError(f"selected must be a boolean tensor of shape ({k},), got "
                         f"{getattr(selected, 'dtype', type(selected).__name__)} {tuple(getattr(selected, 'shape', ()))}")
    return selected


class ColumnAcquisition:
    """Cartesian MRI of real images ``(B, 1, H, W)``; the candidates are the ``W`` phase-encode columns.

    Single-coil (``coil_maps=None``): ``SingleCoilMRI(mask) @ RealToComplex``; multi-coil: the same with
    :class:`MultiCoilMRI` and complex ``coil_maps (coils, H, W)``. A column's values are its ``H`` (times
    coils) complex k-space samples as ``D = 2 H coils`` reals.
    """

    def __init__(self, img_size: Sequence[int], coil_maps: torch.Tensor | None = None, *,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> None:
        self.img_size = tuple(int(s) for s in img_size)
        if len(self.img_size) != 2:
            raise ValueError(f"img_size must be (H, W), got {img_size!r}")
        self.coil_maps, self.dtype, self.device = coil_maps, dtype, torch.device(device)
        self.n_candidates = self.img_size[1]
        self.x_shape = (1, *self.img_size)
        self.full = self.operator(torch.ones(self.n_candidates, dtype=torch.bool))

    def mask(self, selected: torch.Tensor) -> torch.Tensor:
        """The ``(H, W)`` 0/1 k-space mask of a column selection."""
        h, w = self.img_size
        return _selection(selected, w).to(self.dtype).expand(h, w).clone()

    def mri(self, selected: torch.Tensor) -> SingleCoilMRI | MultiCoilMRI:
        """The MRI operator on complex images ``(B, 2, H, W)`` that measures the selected columns."""
        mask = self.mask(selected).to(self.device)
        kw = {"dtype": self.dtype, "device": self.device}
        if self.coil_maps is None:
            return SingleCoilMRI(mask, self.img_size, **kw)
        return MultiCoilMRI(mask, self.coil_maps.to(self.device), self.img_size, **kw)

    def operator(self, selected: torch.Tensor) -> LinearOperator:
        """The operator on real images ``(B, 1, H, W)``: :meth:`mri` after ``RealToComplex``."""
        return self.mri(selected) @ RealToComplex((1, *self.img_size), dtype=self.dtype, device=self.device)

    def values(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` -> ``(B, W, D)``: each column's full k-space samples."""
        y = self.full.A(x)  # (B, 2, H, W) or (B, 2, C, H, W)
        y = y.movedim(-1, 1)  # the column axis next to the batch
        return y.reshape(y.shape[0], self.n_candidates, -1)

    def restrict(self, y_full: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
        """The data of the selected columns (zero elsewhere, the operators' convention)."""
        return y_full * self.mask(selected).to(y_full.device)


class PixelAcquisition:
    """Inpainting of images ``(B, C, H, W)``; the candidates are the ``H W`` pixel positions (all channels)."""

    def __init__(self, shape: Sequence[int], *, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> None:
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) != 3:
            raise ValueError(f"shape must be (C, H, W), got {shape!r}")
        self.dtype, self.device = dtype, torch.device(device)
        self.n_candidates = self.shape[1] * self.shape[2]
        self.x_shape = self.shape

    def mask(self, selected: torch.Tensor) -> torch.Tensor:
        c, h, w = self.shape
        return _selection(selected, self.n_candidates).to(self.dtype).reshape(1, h, w).expand(c, h, w).clone()

    def operator(self, selected: torch.Tensor) -> LinearOperator:
        return Inpainting(self.mask(selected).to(self.device), dtype=self.dtype, device=self.device)

    def values(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, H W, C)``."""
        return x.flatten(2).transpose(1, 2)

    def restrict(self, y_full: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
        return y_full * self.mask(selected).to(y_full.device)


Acquisition = ColumnAcquisition | PixelAcquisition


@dataclass
class ActiveMeasurement:
    """Fully acquirable data ``y_full`` (what the scanner returns for every candidate, with its noise).

    ``measurement(selected)`` is the ordinary measurement of the selected candidates; ``initial`` is
    what is acquired before any choice (e.g. the calibration lines).
    """

    acquisition: Acquisition
    y_full: torch.Tensor
    noise: NoiseModel
    initial: torch.Tensor
    budget: int | None = None

    def __post_init__(self) -> None:
        _selection(self.initial, self.acquisition.n_candidates)
        available = int((~self.initial).sum())
        if self.budget is not None and (isinstance(self.budget, bool) or not isinstance(self.budget, int)
                                        or not 0 <= self.budget <= available):
            raise ValueError(f"budget must be an integer in [0, {available}] (candidates not yet acquired), "
                             f"got {self.budget!r}")
        expected = (1, *self.acquisition_operator_y_shape())
        if tuple(self.y_full.shape) != expected:
            raise ValueError(f"y_full must have shape {expected}, got {tuple(self.y_full.shape)}")

    def acquisition_operator_y_shape(self) -> tuple[int, ...]:
        return tuple(self.acquisition.operator(self.initial).y_shape)

    @property
    def x_shape(self) -> tuple[int, ...]:
        """The shape of one image the acquisition measures."""
        return self.acquisition.x_shape

    def measurement(self, selected: torch.Tensor) -> Measurement:
        op = self.acquisition.operator(selected)
        return Measurement(op, self.noise, self.acquisition.restrict(self.y_full, selected))

    @classmethod
    def simulate(cls, acquisition: Acquisition, truth: torch.Tensor, noise: NoiseModel, initial: torch.Tensor,
                 generator: torch.Generator, budget: int | None = None) -> ActiveMeasurement:
        """Noisy data of ``truth (1, ...)`` for every candidate (what a full scan would return)."""
        full = acquisition.operator(torch.ones(acquisition.n_candidates, dtype=torch.bool))
        with torch.no_grad():
            y_full = noise.sample(full.A(truth), generator)
        return cls(acquisition, y_full, noise, initial, budget)
