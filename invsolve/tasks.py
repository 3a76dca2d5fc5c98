"""The named tasks of the demo and of the quality bar: aliases of operator specs, and the phantom streams.

Five problems at the resolution of a prior (64x64 for the default one), each an alias of a spec of the
catalogue (:mod:`invsolve.pipeline.catalogue`), which builds them:

- ``CT 8 views`` / ``CT 16 views``: parallel-beam CT, equally spaced views over 180 degrees, baseline FBP;
- ``MRI 4x`` / ``MRI 8x``: single-coil Cartesian MRI with fastMRI equispaced masks (centre fractions 0.08 /
  0.04, as in the fastMRI challenge) of real images; baseline the magnitude of the zero-filled inverse FFT;
- ``Inpainting 50%``: half of the pixels observed, chosen uniformly; baseline the masked image.

Two more for sampler comparisons (``EXTRA_TASK_NAMES``): ``Gaussian deblur`` (Gaussian kernel of standard
deviation 1.5 px; baseline the blurred image) and ``SR 4x`` (bicubic-filtered 4x decimation; baseline bicubic
interpolation of ``y``). Noise: ``sigma_y = 0.01 * RMS`` (the catalogue's default, see its docstring).
"""

from __future__ import annotations

import dataclasses

import torch

from invsolve.pipeline.catalogue import DEFAULT_NOISE, OperatorSpec, ProblemSetup, SetupCache, parse_operator_spec

#: Relative measurement noise of the named tasks: ``sigma_y = NOISE_LEVEL * RMS``.
NOISE_LEVEL = DEFAULT_NOISE

#: Named tasks -> operator specs.
TASKS = {"CT 8 views": "ct:views=8", "CT 16 views": "ct:views=16", "MRI 4x": "mri:acceleration=4",
         "MRI 8x": "mri:acceleration=8", "Inpainting 50%": "inpainting:fraction=0.5",
         "Gaussian deblur": "blur:sigma=1.5", "SR 4x": "sr:factor=4"}
TASK_NAMES = ("CT 8 views", "CT 16 views", "MRI 4x", "MRI 8x", "Inpainting 50%")
#: Further tasks of the sampler comparisons (not in the demo).
EXTRA_TASK_NAMES = ("Gaussian deblur", "SR 4x")
ALL_TASK_NAMES = TASK_NAMES + EXTRA_TASK_NAMES

#: Seeds of :class:`~invsolve.datasets.training_data.EllipsePhantoms` streams, kept apart: the default
#: prior was trained on seed 0 and its denoising measured on seed 1.
TV_TUNING_SEED = 2
SAMPLER_TUNING_SEED = 3
EVALUATION_SEED = 4


def task_spec(name: str) -> OperatorSpec:
    """The operator spec a named task stands for."""
    if name not in TASKS:
        raise ValueError(f"unknown task name {name!r}; choose from {list(TASKS)}")
    return parse_operator_spec(TASKS[name])


def phantoms(seed: int, n: int, size: int, *, start: int = 0) -> torch.Tensor:
    """``n`` random-ellipse phantoms ``(n, 1, size, size)`` from the stream ``seed`` (items ``start..start+n-1``)."""
    from invsolve.datasets.training_data import EllipsePhantoms

    data = EllipsePhantoms(size, seed=seed)
    return torch.stack([data[start + i] for i in range(n)])


def standard_tasks(size: int, seed: int, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                   names: tuple[str, ...] = TASK_NAMES, tv_weights: dict[str, float] | None = None,
                   cache: SetupCache | None = None) -> list[ProblemSetup]:
    """The setups of the tasks named in ``names`` (default: the five of the demo) for ``size x size`` images,
    labelled by their task names; ``seed`` draws the masks; ``tv_weights`` overrides the catalogue's weights."""
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise ValueError(f"unknown task name(s) {unknown}; choose from {list(ALL_TASK_NAMES)}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 16:
        raise ValueError(f"size must be an integer >= 16, got {size!r}")
    cache = cache or SetupCache()
    setups = []
    for name in names:
        setup = cache.image(task_spec(name), size, seed, device=torch.device(device), dtype=dtype)
        weight = (tv_weights or {}).get(name, setup.tv_weight)
        setups.append(dataclasses.replace(setup, label=name, tv_weight=weight))
    return setups
