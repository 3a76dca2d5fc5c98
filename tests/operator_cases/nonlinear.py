"""Contract cases for the nonlinear operators (phase retrieval)."""

from invsolve.operators import FourierMagnitude


def fourier_magnitude(dtype):
    return FourierMagnitude((1, 8, 8), oversampling=2.0, dtype=dtype)


def fourier_intensity_unpadded(dtype):
    return FourierMagnitude((2, 6, 5), oversampling=1.0, squared=True, dtype=dtype)


CASES = {
    "FourierMagnitude": (fourier_magnitude, True),
    "FourierMagnitude-intensity": (fourier_intensity_unpadded, True, FourierMagnitude),
}
