"""Atomic file output: write to a temporary file in the target folder, then rename over the target."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it replaces ``target`` in one rename.

    On error the temporary file is removed and ``target`` is left untouched, so
    no half-written output ever appears under the final name.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + target.suffix, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; give the final file ordinary permissions
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_h5(target: str | os.PathLike) -> Iterator[Any]:
    """Yield a new HDF5 file (``h5py.File``) built in memory; on success it is written to ``target`` atomically.

    HDF5 writes from C, also while an object is being garbage-collected: a disk error there (a full disk) ends in
    "Exception ignored" noise and a segmentation fault at exit. Built in memory, the file reaches the disk in one
    Python write, where a full disk is an ordinary ``OSError`` and the temporary file is removed.
    """
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        yield f
    with atomic_path(target) as tmp:
        tmp.write_bytes(buffer.getbuffer())


@contextlib.contextmanager
def atomic_group(targets: list[Path]) -> Iterator[dict[Path, Path]]:
    """Stage several outputs that belong together; they appear under their final names together or not at all.

    Yields ``{target: staged path}`` (same file names, in a hidden folder beside the first target). When the block
    succeeds every staged file is moved into place, in the order given (put the file whose presence means "done",
    e.g. a sidecar, last); when it fails (a full disk, an error) the staged files are removed and no target is
    touched. Targets must share one folder (one file system, so every move is a rename).
    """
    targets = [Path(t) for t in targets]
    folder = targets[0].parent
    if any(t.parent.resolve() != folder.resolve() for t in targets):
        raise ValueError("atomic_group: the outputs must share one folder")
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".invsolve-staging-", dir=folder))
    try:
        staged = {t: staging / t.name for t in targets}
        yield staged
        for target, path in staged.items():
            if not path.exists():
                raise FileNotFoundError(f"atomic_group: {target.name} was not written")
        for target, path in staged.items():
            os.replace(path, target)
    finally:
        for leftover in staging.iterdir():
            leftover.unlink()
        staging.rmdir()


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def save_weights_with_recipe(folder: str | os.PathLike, stem: str, state_dict: dict, recipe: dict) -> None:
    """``folder/STEM.safetensors`` (the tensors, contiguous) and ``folder/STEM.json`` (the recipe), together or not
    at all (:func:`atomic_group`)."""
    import json

    from safetensors.torch import save_file

    folder = Path(folder)
    weights, sidecar = folder / f"{stem}.safetensors", folder / f"{stem}.json"
    with atomic_group([weights, sidecar]) as staged:
        save_file({k: v.contiguous() for k, v in state_dict.items()}, str(staged[weights]))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staged[weights], 0o666 & ~umask)  # safetensors writes 0600; give it ordinary permissions
        staged[sidecar].write_text(json.dumps(recipe, indent=2) + "\n")
