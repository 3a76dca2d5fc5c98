"""Data sources and file I/O, importable as ``invsolve.datasets``."""

from invsolve.datasets.ellipsoids import random_ellipsoids
from invsolve.datasets.nifti import NiftiVolume, iter_nifti_volumes, read_nifti, slice_axis, write_nifti
from invsolve.datasets.phantoms import random_ellipses, shepp_logan

__all__ = [
    "NiftiVolume",
    "iter_nifti_volumes",
    "random_ellipses",
    "random_ellipsoids",
    "read_nifti",
    "shepp_logan",
    "slice_axis",
    "write_nifti",
]
