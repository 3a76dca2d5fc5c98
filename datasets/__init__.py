"""Data sources and file I/O, importable as ``invsolve.datasets``."""

from invsolve.datasets.ellipsoids import random_ellipsoids
from invsolve.datasets.phantoms import random_ellipses, shepp_logan

__all__ = ["random_ellipses", "random_ellipsoids", "shepp_logan"]
