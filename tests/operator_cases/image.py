"""Contract cases for the image-domain operators (inpainting, super-resolution, blur)."""

import torch

from invsolve.operators import Blur, Inpainting, SuperResolution, gaussian_kernel, motion_kernel


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def inpainting_random(dtype):
    return Inpainting.random((3, 16, 16), 0.5, _gen(), dtype=dtype)


def inpainting_random_channelwise(dtype):
    return Inpainting.random((2, 16, 16), 0.3, _gen(1), pixelwise=False, dtype=dtype)


def inpainting_box(dtype):
    return Inpainting.box((1, 16, 16), 4, 5, 6, 7, dtype=dtype)


def inpainting_user(dtype):
    mask = torch.zeros(3, 12, 16, dtype=torch.bool)
    mask[0, ::2] = True
    mask[1, :, ::3] = True
    mask[2, 5:] = True
    return Inpainting(mask, dtype=dtype)


def sr(factor, filter, size=24, padding="circular"):
    return lambda dtype: SuperResolution((3, size, size), factor, filter, padding=padding, dtype=dtype)


def blur_gaussian(method, padding=None):
    return lambda dtype: Blur.gaussian((3, 16, 16), 1.0, method, padding, size=5, dtype=dtype)


def blur_motion(method, padding=None):
    return lambda dtype: Blur.motion((2, 16, 16), 7, _gen(3), method, padding, dtype=dtype)


def blur_anisotropic_even(dtype):
    kernel = gaussian_kernel((0.8, 1.5), (4, 6), angle=30.0, dtype=dtype)
    return Blur((1, 16, 20), kernel, "spatial", "reflect", dtype=dtype)


def blur_per_channel_valid(dtype):
    g = _gen(4)
    kernel = torch.stack([motion_kernel(5, g, dtype=dtype) for _ in range(3)])[None]
    return Blur((3, 16, 16), kernel, "spatial", "valid", dtype=dtype)


CASES = {
    "Inpainting-random": (inpainting_random, True),
    "Inpainting-random-channelwise": (inpainting_random_channelwise, True),
    "Inpainting-box": (inpainting_box, True),
    "Inpainting-user": (inpainting_user, True),
    "SuperResolution-x2-bicubic": (sr(2, "bicubic"), True),
    "SuperResolution-x4-bicubic": (sr(4, "bicubic"), True),
    "SuperResolution-x2-bilinear-reflect": (sr(2, "bilinear", 16, "reflect"), True),
    "SuperResolution-x4-gaussian": (sr(4, "gaussian", 32), True),
    "SuperResolution-x2-none": (sr(2, None, 16), True),
    "Blur-gaussian-fft": (blur_gaussian("fft"), True),
    "Blur-gaussian-spatial": (blur_gaussian("spatial"), True),
    "Blur-gaussian-spatial-replicate": (blur_gaussian("spatial", "replicate"), True),
    "Blur-motion-fft": (blur_motion("fft"), True),
    "Blur-motion-spatial-constant": (blur_motion("spatial", "constant"), True),
    "Blur-anisotropic-even-reflect": (blur_anisotropic_even, True),
    "Blur-per-channel-valid": (blur_per_channel_valid, True),
}
