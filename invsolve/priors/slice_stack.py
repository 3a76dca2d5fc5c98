"""A 2D prior over volumes: independent slices, denoised in chunks (the prior half of DiffusionMBIR).

``SliceStackPrior(prior2d, depth)`` is the prior ``p(x) = prod_d p2d(x[:, :, d])`` over volumes
``(B, C, D, H, W)``. Its denoiser is the 2D denoiser applied to every axial slice, ``chunk`` slices
at a time, so the network's memory is bounded by the chunk size and not by the depth (Chung et al.,
"Solving 3D Inverse Problems using Pre-trained 2D Diffusion Models", CVPR 2023, who use chunks of
12). Any sampler run with it reconstructs the slices independently given the data — the
slice-wise 2D baseline of DiffusionMBIR; :mod:`invsolve.samplers.mbir3d` couples them through a
total-variation prior along ``z``.
"""

from __future__ import annotations

import torch

from invsolve.priors.base import Prior, sigma_like


class SliceStackPrior(Prior):
    """Independent slices along the depth axis of ``(B, C, D, H, W)``, each under ``prior2d``."""

    def __init__(self, prior2d: Prior, depth: int, *, chunk: int = 12) -> None:
        if not isinstance(prior2d, Prior) or len(prior2d.shape) != 3:
            raise TypeError("prior2d must be a Prior over images (C, H, W)")
        for name, value in (("depth", depth), ("chunk", chunk)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        c, h, w = prior2d.shape
        self.prior2d, self.depth, self.chunk = prior2d, depth, chunk
        self.shape = (c, depth, h, w)
        self.sigma_min, self.sigma_max = prior2d.sigma_min, prior2d.sigma_max
        self.value_range = prior2d.value_range

    def denoise(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        self.check_x(x)
        b, c, d, h, w = x.shape
        sigmas = sigma_like(sigma, x).reshape(b)
        slices = x.permute(0, 2, 1, 3, 4).reshape(b * d, c, h, w)  # (B*D, C, H, W), item-major
        per_slice = sigmas.repeat_interleave(d)
        same = bool((sigmas == sigmas[0]).all())
        out = torch.empty_like(slices)
        for start in range(0, b * d, self.chunk):
            part = slice(start, start + self.chunk)
            out[part] = self.prior2d.denoise(slices[part], float(sigmas[0]) if same else per_slice[part])
        return out.reshape(b, d, c, h, w).permute(0, 2, 1, 3, 4).contiguous()
