"""The default prior shipped with the package: an EDM prior of 64x64 random ellipse phantoms on ``[0, 1]``.

Trained by ``experiments/train_prior.py`` on :class:`invsolve.datasets.training_data.EllipsePhantoms`;
the exact recipe (command, data, steps, seed, wall time, final loss) is in
``invsolve/weights/default_prior.json`` beside the weights, and its measured denoising quality in
``experiments/results/default_prior.md``. Loading needs no network access.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from invsolve.priors.edm import EDMPrior

WEIGHTS_FILE = "default_prior.pt"
RECIPE_FILE = "default_prior.json"


def _weights_dir() -> Path:
    return Path(str(resources.files("invsolve") / "weights"))


def default_prior_path() -> Path:
    """Path of the shipped weights (``invsolve/weights/default_prior.pt``)."""
    return _weights_dir() / WEIGHTS_FILE


def default_prior_recipe() -> dict[str, Any]:
    """The training recipe recorded beside the weights."""
    path = _weights_dir() / RECIPE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"default prior recipe {path} is missing from the installation")
    return json.loads(path.read_text())


def load_default_prior(device: str | torch.device = "cpu") -> EDMPrior:
    """The shipped default prior, shape ``(1, 64, 64)``, values in ``[0, 1]``, on ``device``."""
    path = default_prior_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"default prior weights {path} are missing from the installation; retrain them with the recipe "
            f"in {RECIPE_FILE} (experiments/train_prior.py) and copy prior.pt there"
        )
    return EDMPrior.from_checkpoint(path, device=device)
