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

from invsolve.datasets.fastmri_files import (  # noqa: E402
    FastMRIInfo,
    FastMRIVolume,
    SyntheticVolume,
    fastmri_info,
    ismrmrd_header,
    kspace_to_grid,
    read_fastmri,
    synthesize_fastmri_volume,
    write_fastmri,
    write_synthetic_dataset,
)
from invsolve.datasets.fastmri_submission import evaluate_folder, volume_metrics, write_submission  # noqa: E402

__all__ += [
    "FastMRIInfo",
    "FastMRIVolume",
    "SyntheticVolume",
    "evaluate_folder",
    "fastmri_info",
    "ismrmrd_header",
    "kspace_to_grid",
    "read_fastmri",
    "synthesize_fastmri_volume",
    "volume_metrics",
    "write_fastmri",
    "write_submission",
    "write_synthetic_dataset",
]
