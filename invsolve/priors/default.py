"""The priors shipped with the package, EDM priors of 64x64 images on ``[0, 1]``, by name (:data:`SHIPPED`).

* ``default``: random 2D ellipse phantoms (:class:`invsolve.datasets.training_data.EllipsePhantoms`);
  its measured denoising quality is in ``experiments/results/default_prior.md``.
* ``ellipsoid_slice``: the default prior fine-tuned on axial slices of random 3D ellipsoid
  volumes (:class:`invsolve.datasets.training_data.EllipsoidSlices`), the 2D prior of 3D reconstruction
  (:func:`invsolve.samplers.mbir3d`) as DiffusionMBIR trains it on the slices of training volumes.
* ``brain``: the default prior fine-tuned on the training split of the brain stream made from nilearn's
  MNI152 templates (:class:`invsolve.datasets.brain.BrainSlices`); measured in
  ``experiments/results/brain_prior.md``.
* ``brain_slice``: the brain prior fine-tuned on axial slices of training-split brain *volumes*
  (:class:`invsolve.datasets.brain.BrainVolumeSlices`), the slice prior of 3D reconstruction on brains
  (``dds3d``, ``mbir3d``); measured in ``experiments/results/mbir3d_brain.md``.
* ``latent_brain``: a latent prior of the same stream: a diffusers ``AutoencoderKL`` (64x64 -> 4 x 16 x 16,
  ``brain_autoencoder.*``, ``experiments/train_autoencoder.py``) and an EDM prior over its encodings
  (``train-prior --autoencoder``); measured in ``experiments/results/latent_brain.md``.
* ``token_brain``: a masked-token prior of the same stream: a diffusers ``VQModel`` tokenizer (64x64 -> 16 x 16 codes
  of 256, ``brain_tokenizer.*``, ``experiments/train_autoencoder.py --kind vq``) and a masked-token transformer over
  its codes (``token_brain_prior.*``, ``experiments/train_token_prior.py``), both safetensors; measured in
  ``experiments/results/token_brain.md``.

Both were trained by ``experiments/train_prior.py``; the exact recipe (command, data, steps, seed, wall
time, final loss) is in the JSON file beside each weights file. Loading needs no network access.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from invsolve.priors.edm import EDMPrior

#: Shipped priors by name -> file stem in ``invsolve/weights`` (``STEM.pt`` and its recipe ``STEM.json``).
SHIPPED = {"default": "default_prior", "ellipsoid_slice": "ellipsoid_slice_prior", "brain": "brain_prior",
           "brain_slice": "brain_slice_prior",
           "latent_brain": "latent_brain_prior", "token_brain": "token_brain_prior"}
#: Shipped latent priors: name -> the stem of their autoencoder in ``invsolve/weights`` (``STEM.safetensors`` and
#: ``STEM.json``); :func:`load_shipped_prior` returns them as :class:`~invsolve.priors.latent.LatentPrior`.
SHIPPED_AUTOENCODERS = {"latent_brain": "brain_autoencoder"}
#: Shipped masked-token priors: name -> the stem of their tokenizer (``STEM.safetensors`` and ``STEM.json``); the
#: transformer is ``SHIPPED[name].safetensors`` with its recipe; loaded as :class:`~invsolve.priors.tokens.MaskedTokenPrior`.
SHIPPED_TOKENIZERS = {"token_brain": "brain_tokenizer"}
WEIGHTS_FILE = "default_prior.pt"
RECIPE_FILE = "default_prior.json"
SLICE_WEIGHTS_FILE = "ellipsoid_slice_prior.pt"
SLICE_RECIPE_FILE = "ellipsoid_slice_prior.json"


def _weights_dir() -> Path:
    return Path(str(resources.files("invsolve") / "weights"))


def default_prior_path() -> Path:
    """Path of the shipped weights (``invsolve/weights/default_prior.pt``)."""
    return _weights_dir() / WEIGHTS_FILE


def ellipsoid_slice_prior_path() -> Path:
    """Path of the shipped slice prior (``invsolve/weights/ellipsoid_slice_prior.pt``)."""
    return _weights_dir() / SLICE_WEIGHTS_FILE


def _recipe(name: str) -> dict[str, Any]:
    path = _weights_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"prior recipe {path} is missing from the installation")
    return json.loads(path.read_text())


def default_prior_recipe() -> dict[str, Any]:
    """The training recipe recorded beside the default prior's weights."""
    return _recipe(RECIPE_FILE)


def ellipsoid_slice_prior_recipe() -> dict[str, Any]:
    """The training recipe recorded beside the slice prior's weights."""
    return _recipe(SLICE_RECIPE_FILE)


def _require_weights(path: Path, recipe: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(
            f"prior weights {path} are missing from the installation; retrain them with the recipe "
            f"in {recipe} (experiments/train_prior.py) and copy prior.pt there"
        )


def _load_shipped(path: Path, recipe: str, device: str | torch.device) -> EDMPrior:
    _require_weights(path, recipe)
    return EDMPrior.from_checkpoint(path, device=device)


def load_default_prior(device: str | torch.device = "cpu") -> EDMPrior:
    """The shipped default prior, shape ``(1, 64, 64)``, values in ``[0, 1]``, on ``device``."""
    return _load_shipped(default_prior_path(), RECIPE_FILE, device)


def load_ellipsoid_slice_prior(device: str | torch.device = "cpu") -> EDMPrior:
    """The shipped slice prior of 3D ellipsoid volumes, shape ``(1, 64, 64)``, values in ``[0, 1]``, on ``device``.

    For :class:`~invsolve.priors.SliceStackPrior` and :func:`~invsolve.samplers.mbir3d` on volumes like
    :func:`invsolve.datasets.random_ellipsoids`; measured in ``experiments/results/mbir3d_quality.md``.
    """
    return _load_shipped(ellipsoid_slice_prior_path(), SLICE_RECIPE_FILE, device)


def shipped_prior_path(name: str) -> Path:
    """Path of the shipped prior ``name`` (a key of :data:`SHIPPED`)."""
    if name not in SHIPPED:
        raise ValueError(f"unknown shipped prior {name!r}; choose from {list(SHIPPED)}")
    return _weights_dir() / f"{SHIPPED[name]}{'.safetensors' if name in SHIPPED_TOKENIZERS else '.pt'}"


def shipped_prior_recipe(name: str) -> dict[str, Any]:
    """The training recipe recorded beside the shipped prior ``name``."""
    return _recipe(shipped_prior_path(name).with_suffix(".json").name)


def load_shipped_prior(name: str, device: str | torch.device = "cpu"):
    """The shipped prior ``name`` (``default``, ``ellipsoid_slice``, ``brain``: an :class:`EDMPrior`;
    ``latent_brain``: a :class:`~invsolve.priors.latent.LatentPrior`; ``token_brain``: a
    :class:`~invsolve.priors.tokens.MaskedTokenPrior`) on ``device``."""
    path = shipped_prior_path(name)
    if name in SHIPPED_TOKENIZERS:
        from invsolve.priors.tokens import load_token_prior

        _require_weights(path, path.with_suffix(".json").name)
        return load_token_prior(path, _weights_dir(), device, tokenizer_stem=SHIPPED_TOKENIZERS[name])
    if name in SHIPPED_AUTOENCODERS:
        from invsolve.priors.latent import load_latent_prior

        _require_weights(path, path.with_suffix(".json").name)
        return load_latent_prior(path, _weights_dir(), device, autoencoder_stem=SHIPPED_AUTOENCODERS[name])
    return _load_shipped(path, path.with_suffix(".json").name, device)


def brain_prior_path() -> Path:
    """Path of the shipped brain prior (``invsolve/weights/brain_prior.pt``)."""
    return shipped_prior_path("brain")


def brain_prior_recipe() -> dict[str, Any]:
    return shipped_prior_recipe("brain")


def load_brain_prior(device: str | torch.device = "cpu") -> EDMPrior:
    """The shipped brain prior, shape ``(1, 64, 64)``, values in ``[0, 1]``, on ``device`` (see the module docstring)."""
    return load_shipped_prior("brain", device)
