"""Environment compatibility shims, applied once when :mod:`invsolve` is imported.

The only shim today concerns torchvision (SPEC section 10). deepinv imports
torchvision, and on machines with a CPU-only torch the only torchvision wheel pip
finds is a CUDA build whose compiled extension (``torchvision._C``) cannot be
loaded. torchvision then fails at import time while registering fake (meta)
kernels for ``torchvision::nms`` and ``torchvision::qnms``, operators that the
missing extension would have declared. deepinv uses none of torchvision's
compiled ops, so declaring the two operator *schemas* (without kernels) is
enough for the import to succeed; calling them still fails loudly.

The shim is guarded: it runs only if importing torchvision fails *and*
torchvision itself reports that its compiled ops are missing. On a healthy
install (CPU or CUDA) nothing is touched. Installed files are never edited.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import torch

_MISSING_OP_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}

# Kept alive for the life of the process: dropping a torch.library.Library
# object removes the definitions it made.
_schema_library: torch.library.Library | None = None


def _torchvision_reports_missing_ops() -> bool:
    extension = sys.modules.get("torchvision.extension")
    return extension is not None and not extension._has_ops()


def _forget_partial_torchvision_import() -> None:
    for name in list(sys.modules):
        if name == "torchvision" or name.startswith("torchvision."):
            del sys.modules[name]


def _declare_missing_torchvision_schemas() -> None:
    global _schema_library
    if _schema_library is not None:
        return
    _schema_library = torch.library.Library("torchvision", "FRAGMENT")
    for name, schema in _MISSING_OP_SCHEMAS.items():
        if not torch._C._dispatch_has_kernel(f"torchvision::{name}") and not _has_schema(name):
            _schema_library.define(schema)


def _has_schema(name: str) -> bool:
    try:
        torch._C._get_schema(f"torchvision::{name}", "")
    except RuntimeError:
        return False
    return True


def ensure_torchvision_importable() -> bool:
    """Make ``import torchvision`` work when its compiled ops are missing.

    Returns True if the shim was applied, False if nothing was needed (or
    torchvision is not installed at all).
    """
    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is None:
        return False
    try:
        importlib.import_module("torchvision")
        return False
    except RuntimeError as err:
        if "torchvision::" not in str(err) or not _torchvision_reports_missing_ops():
            raise
    _forget_partial_torchvision_import()
    _declare_missing_torchvision_schemas()
    importlib.import_module("torchvision")
    return True


TORCHVISION_SHIM_APPLIED = ensure_torchvision_importable()
