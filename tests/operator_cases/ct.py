"""Contract cases for the CT operators (operators/ct.py): small sizes so the contract runs fast."""

from invsolve.operators import FanBeamCT, ParallelBeamCT, ParallelBeamCT3D, limited_angle_angles, sparse_view_angles


def parallel_beam(dtype):
    return ParallelBeamCT(sparse_view_angles(6, dtype=dtype), 24, dtype=dtype)


def parallel_beam_circle(dtype):
    return ParallelBeamCT([0.0, 20.0, 45.0, 100.0, 170.0], 24, circle=True, dtype=dtype)


def fan_beam(dtype):
    return FanBeamCT(sparse_view_angles(8, arc=360.0, dtype=dtype), 24, dtype=dtype)


def fan_beam_custom_geometry(dtype):
    return FanBeamCT(
        [0.0, 50.0, 130.0, 250.0], 20, source_radius=3.0, detector_radius=2.0, n_detectors=17,
        detector_spacing=0.3, pixel_spacing=0.1, circle=True, dtype=dtype,
    )


def parallel_beam_3d(dtype):
    return ParallelBeamCT3D(sparse_view_angles(6, dtype=dtype), (3, 24, 24), dtype=dtype)


def parallel_beam_3d_limited_angle(dtype):
    return ParallelBeamCT3D(limited_angle_angles(10, 90.0, start=30.0, dtype=dtype), (4, 20, 20), dtype=dtype)


CASES = {
    "ParallelBeamCT": (parallel_beam, True),
    "ParallelBeamCT-circle": (parallel_beam_circle, True),
    "FanBeamCT": (fan_beam, True),
    "FanBeamCT-geometry-circle": (fan_beam_custom_geometry, True),
    "ParallelBeamCT3D": (parallel_beam_3d, True),
    "ParallelBeamCT3D-limited-angle": (parallel_beam_3d_limited_angle, True),
}
