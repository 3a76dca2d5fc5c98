"""X-ray CT forward operators over deepinv's :class:`~deepinv.physics.Tomography`.

=====================  ========================  ==========================================
operator               ``x`` (attenuation map)   ``y`` (sinogram)
=====================  ========================  ==========================================
``ParallelBeamCT``     ``(B, 1, H, H)``          ``(B, 1, n_detectors, n_angles)``
``FanBeamCT``          ``(B, 1, H, H)``          ``(B, 1, n_detectors, n_angles)``
``ParallelBeamCT3D``   ``(B, 1, D, H, H)``       ``(B, 1, D, n_detectors, n_angles)``
=====================  ========================  ==========================================

Conventions:

- Angles are in **degrees** (any finite values, any order, repeats allowed).
  :func:`sparse_view_angles` and :func:`limited_angle_angles` build the usual sets.
- The projections are un-normalized line integrals (deepinv's ``normalize=False``):
  for parallel beam, a sum of bilinear samples at unit steps along each ray, i.e. a
  line integral with the pixel side as the unit of length. With ``circle=False`` the
  image is zero-padded to ``S = ceil(sqrt(2) * H)`` pixels (its diagonal) and
  ``n_detectors = S``; with ``circle=True`` only the inscribed disc is seen and
  ``n_detectors = H``. The rotation axis is the centre of the (padded) sampling
  grid, pixel index ``(S - 1) / 2 - (S // 2 - H // 2)`` (``(H - 1) / 2`` with
  ``circle=True``), so when ``S`` is odd (e.g. ``H = 64, 256``) the sinogram equals
  ``skimage.transform.radon(image, angles, circle=False)``; when ``S`` is even the
  two rotation axes are half a pixel apart.
- ``A_adjoint`` is the **exact** transpose of ``A`` (to rounding): the transpose of
  the bilinear ``grid_sample`` that deepinv's Radon transform is made of. deepinv's
  own cheap adjoint (``adjoint_via_backprop=False``) is an interpolated
  back-projection with a ~1e-2 relative mismatch, so it is not used.
- ``fbp(y)`` is the filtered back-projection baseline (Ram-Lak ramp filter),
  calibrated so that a densely sampled sinogram of ``x`` gives back ``x``
  (uniform views over 180 degrees for parallel beam, over 360 degrees for fan beam).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real

import numpy as np
import torch
from deepinv.physics import Tomography
from deepinv.physics.functional import RampFilter

from invsolve._validation import require_nonnegative_number, require_positive_number
from invsolve.operators._image import float_dtype, positive_int
from invsolve.operators.base import LinearOperator

__all__ = [
    "FanBeamCT",
    "ParallelBeamCT",
    "ParallelBeamCT3D",
    "limited_angle_angles",
    "sparse_view_angles",
]


# -- angle sets ------------------------------------------------------------------------
def _arc(name: str, value: object) -> float:
    value = require_positive_number(name, value)
    if value > 360.0:
        raise ValueError(f"{name} must be in (0, 360] degrees, got {value}")
    return value


def sparse_view_angles(n_views: int, arc: float = 180.0, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``n_views`` equally spaced angles (degrees) over ``[0, arc)``: ``arc * k / n_views``.

    ``arc=180`` (default) is a full parallel-beam scan; use ``arc=360`` for fan beam.
    """
    n = positive_int(n_views, "n_views")
    step = _arc("arc", arc) / n
    return (torch.arange(n, dtype=torch.float64) * step).to(float_dtype(dtype))


def limited_angle_angles(
    n_views: int, arc: float, start: float = 0.0, *, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``n_views`` equally spaced angles (degrees) over the wedge ``[start, start + arc)``.

    The spacing is ``arc / n_views`` (the end point is excluded, as in
    :func:`sparse_view_angles`, so ``limited_angle_angles(n, 180)`` is the full scan).
    """
    n = positive_int(n_views, "n_views")
    step = _arc("arc", arc) / n
    if isinstance(start, bool) or not isinstance(start, Real) or not math.isfinite(start):
        raise ValueError(f"start must be a finite number of degrees, got {start!r}")
    return (float(start) + torch.arange(n, dtype=torch.float64) * step).to(float_dtype(dtype))


# -- argument checks -------------------------------------------------------------------
def _angles(angles: object, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """Validate a 1-D, non-empty, finite list of angles (degrees); return it as ``dtype``."""
    if isinstance(angles, (bool, int, float)):
        raise TypeError(
            f"angles must be a 1-D sequence or tensor of angles in degrees, got the number {angles!r}; "
            "use sparse_view_angles(n_views) for equally spaced views"
        )
    if isinstance(angles, torch.Tensor):
        angles = angles.detach().cpu()
    try:
        values = torch.as_tensor(np.asarray(angles, dtype=np.float64))
    except (TypeError, ValueError) as err:
        raise TypeError(f"angles must be a 1-D sequence or tensor of numbers (degrees): {err}") from None
    if values.dim() != 1:
        raise ValueError(f"angles must be 1-D, got shape {tuple(values.shape)}")
    if values.numel() == 0:
        raise ValueError("angles must not be empty: give at least one projection angle (degrees)")
    if not bool(torch.isfinite(values).all()):
        bad = int((~torch.isfinite(values)).sum())
        raise ValueError(f"angles must be finite (degrees), got {bad} NaN/Inf value(s)")
    return values.to(dtype=dtype, device=device)


def _length(name: str, value: object, pixel_spacing: float, zero_ok: bool = False) -> float:
    """A geometry length (> 0, or >= 0 if ``zero_ok``) converted to pixels."""
    check = require_nonnegative_number if zero_ok else require_positive_number
    return check(name, value) / pixel_spacing


def _img_size(value: object, circle: bool) -> int:
    """Image side: >= 2, or >= 3 with ``circle`` (the disc inscribed in 2x2 pixels holds no pixel centre)."""
    return positive_int(value, "img_size" + (" (with circle=True)" if circle else ""), minimum=3 if circle else 2)


def _volume_shape(value: object) -> tuple[int, int]:
    if isinstance(value, torch.Size):
        value = tuple(value)
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 3:
        raise ValueError(f"volume_shape must be (depth, height, width), got {value!r}")
    depth = positive_int(value[0], "volume_shape[0] (depth)")
    height = positive_int(value[1], "volume_shape[1] (height)", minimum=2)
    width = positive_int(value[2], "volume_shape[2] (width)", minimum=2)
    if height != width:
        raise ValueError(f"volume_shape must have square slices (height == width), got {tuple(value)}")
    return depth, height


# -- shared machinery --------------------------------------------------------------------
class _Backproject(torch.autograd.Function):
    """``A^T y`` with ``A`` as its derivative, so the adjoint is itself differentiable."""

    @staticmethod
    def forward(y: torch.Tensor, op: _TomographyOperator) -> torch.Tensor:
        return op._backproject(y)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.op = inputs[1]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return ctx.op._project(grad), None


class _TomographyOperator(LinearOperator):
    """A 2D ray transform over a deepinv :class:`Tomography` kept as :attr:`physics`.

    deepinv's Radon transform zero-pads the image to ``(S, S)``, samples it with one
    bilinear ``grid_sample`` on a grid ``(1, S, n_angles * n_rays, 2)`` (one block of
    ``n_rays`` columns per angle, ``S`` samples along each ray) and sums over the ``S``
    samples. :meth:`_backproject` applies the exact transpose of that chain.
    """

    def __init__(self, physics: Tomography, img_size: int, circle: bool, n_detectors: int) -> None:
        n_angles = int(physics.angles.numel())
        super().__init__((1, img_size, img_size), (1, n_detectors, n_angles))
        self.physics = physics
        self.img_size = img_size
        self.circle = circle
        padded = int(physics.radon.all_grids.shape[1])
        self._padded = padded
        self._pad_before = (padded // 2 - img_size // 2) if not circle else 0
        if circle:  # the disc deepinv's forward multiplies by, computed as there (in float32)
            axis = 2 * torch.arange(img_size, dtype=torch.float) / (img_size - 1) - 1.0
            mask = (axis[None, :] ** 2 + axis[:, None] ** 2 <= 1).to(physics.angles.dtype)
            self.register_buffer("_circle_mask", mask.to(physics.angles.device), persistent=False)
        else:
            self._circle_mask = None

    @property
    def angles(self) -> torch.Tensor:
        """Projection angles in degrees, shape ``(n_angles,)``."""
        return self.physics.angles

    @property
    def n_angles(self) -> int:
        return self.y_shape[2]

    @property
    def n_detectors(self) -> int:
        return self.y_shape[1]

    def _raw_backproject(self, y: torch.Tensor, ray_weights: torch.Tensor | None = None) -> torch.Tensor:
        """Transpose of deepinv's ``radon`` (optionally weighting the samples along each ray)."""
        grid = self.physics.radon.all_grids
        n, c = y.shape[0], y.shape[1]
        s, cols = grid.shape[1], grid.shape[2]
        g = y.transpose(-2, -1).reshape(n, c, 1, cols)
        if ray_weights is not None:
            g = g * ray_weights
        stub = y.new_zeros(()).expand(n, c, self._padded, self._padded)  # only its shape is read
        image, _ = torch.ops.aten.grid_sampler_2d_backward(
            g.expand(n, c, s, cols), stub, grid.expand(n, -1, -1, -1), 0, 0, True, [True, False]
        )  # bilinear, zero padding, align_corners=True: deepinv's settings
        if not self.circle:
            p, w = self._pad_before, self.img_size
            image = image[..., p : p + w, p : p + w].contiguous()
        else:
            image = image * self._circle_mask
        return image

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        return self.physics.A(x)

    def _backproject(self, y: torch.Tensor) -> torch.Tensor:
        return self._raw_backproject(y)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._project(x)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return _Backproject.apply(y, self)

    def fbp(self, y: torch.Tensor) -> torch.Tensor:
        """Filtered back-projection of ``y`` ``(B, *y_shape) -> (B, *x_shape)`` (a baseline reconstruction)."""
        return self._fbp(self.check_y(y))

    def _fbp(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, n_angles={self.n_angles}, circle={self.circle}"


def _ramp(y: torch.Tensor) -> torch.Tensor:
    """deepinv's Ram-Lak filter along the detector axis (built in ``y``'s dtype)."""
    return RampFilter(dtype=y.dtype)(y, dim=-2)


# -- operators ---------------------------------------------------------------------------
class ParallelBeamCT(_TomographyOperator):
    """2D parallel-beam CT: ``x (B, 1, H, H) -> y (B, 1, n_detectors, n_angles)``.

    :param angles: projection angles in degrees, a non-empty 1-D sequence or tensor
        (see :func:`sparse_view_angles`, :func:`limited_angle_angles`).
    :param img_size: image side ``H`` (>= 2).
    :param circle: if True, only the disc inscribed in the image is projected and
        ``n_detectors = H``; otherwise the whole square, ``n_detectors = ceil(sqrt(2) H)``.
    :param dtype: ``torch.float32`` or ``torch.float64``.
    :param device: where the sampling grids live.

    ``y`` holds line integrals with the pixel side as unit length; ``fbp`` inverts
    a full scan (uniform views over 180 degrees) up to discretization error.
    The rotation axis is the image centre up to half a pixel (see the module docstring).
    """

    def __init__(
        self,
        angles: Sequence[float] | torch.Tensor,
        img_size: int,
        *,
        circle: bool = False,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        dtype = float_dtype(dtype)
        circle = bool(circle)
        img_size = _img_size(img_size, circle)
        angles = _angles(angles, dtype, device)
        physics = Tomography(
            angles, img_size, circle=circle, normalize=False, adjoint_via_backprop=True,
            fan_beam=False, device=device, dtype=dtype,
        )
        # deepinv also builds an IRadon with a second full set of sampling grids
        # (n_angles * S^2 * 2 values); our exact adjoint and FBP never use them.
        physics.iradon.register_buffer("all_grids", physics.iradon.all_grids.new_empty(0), persistent=False)
        physics.to(dtype=dtype)  # deepinv keeps a float32 `_device_holder` buffer
        super().__init__(physics, img_size, circle, int(physics.radon.all_grids.shape[1]))

    def _fbp(self, y: torch.Tensor) -> torch.Tensor:
        return self._raw_backproject(_ramp(y)) * (math.pi / (2 * self.n_angles))


class FanBeamCT(_TomographyOperator):
    """2D fan-beam CT with a flat detector: ``x (B, 1, H, H) -> y (B, 1, n_detectors, n_angles)``.

    Geometry (deepinv's ``fan_beam=True``): a point source at distance
    ``source_radius`` from the rotation axis (the image centre), a flat detector of
    ``n_detectors`` cells ``detector_spacing`` apart at distance ``detector_radius``
    on the other side. All lengths are in the unit of ``pixel_spacing``, the side of
    one image pixel (default 1: lengths in pixels). Defaults: ``source_radius = 2 H``
    and ``detector_radius = H`` pixels, ``detector_spacing`` equal to the
    magnification (one pixel per cell at the rotation axis), and the fewest cells
    whose fan covers the field of view (the disc around the image, or the inscribed
    disc if ``circle``).

    :param angles: source angles in degrees (a full scan is 360 degrees:
        ``sparse_view_angles(n, arc=360)``).
    :param img_size: image side ``H`` (>= 2).

    ``y`` holds line integrals in the unit of ``pixel_spacing`` times the unit of
    ``x``. deepinv samples each ray at unit steps along the central ray, which
    integrates ``cos(gamma)`` times the line integral for a ray at fan angle
    ``gamma``; ``A`` divides that out. ``fbp`` is the weighted flat-detector
    fan-beam FBP (cosine pre-weighting, ramp filter, ``1/U^2`` distance weighting)
    and inverts a full 360-degree scan up to discretization error.
    """

    def __init__(
        self,
        angles: Sequence[float] | torch.Tensor,
        img_size: int,
        *,
        source_radius: float | None = None,
        detector_radius: float | None = None,
        n_detectors: int | None = None,
        detector_spacing: float | None = None,
        pixel_spacing: float = 1.0,
        circle: bool = False,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        dtype = float_dtype(dtype)
        circle = bool(circle)
        img_size = _img_size(img_size, circle)
        angles = _angles(angles, dtype, device)
        ps = require_positive_number("pixel_spacing", pixel_spacing)
        # geometry in pixels
        r_s = 2.0 * img_size if source_radius is None else _length("source_radius", source_radius, ps)
        r_d = 1.0 * img_size
        if detector_radius is not None:
            r_d = _length("detector_radius", detector_radius, ps, zero_ok=True)
        fov = img_size / 2 if circle else img_size / math.sqrt(2)
        if r_s <= fov:
            raise ValueError(
                f"source_radius must put the source outside the field of view: need > {fov * ps:g} "
                f"({'half the image side' if circle else 'half the image diagonal'}), got {r_s * ps:g}"
            )
        magnification = (r_s + r_d) / r_s
        d = magnification if detector_spacing is None else _length("detector_spacing", detector_spacing, ps)
        if n_detectors is None:
            half_width = (r_s + r_d) * math.tan(math.asin(fov / r_s))
            n_detectors = 2 * math.ceil(half_width / d) + 1
        n_detectors = positive_int(n_detectors, "n_detectors", minimum=2)

        padded = math.ceil(math.sqrt(2) * img_size) if not circle else img_size
        # deepinv scales lengths by 2 / (padded * pixel_spacing) into grid units, while its
        # grid (align_corners=True) puts pixel centres 2 / (padded - 1) apart: this
        # pixel_spacing makes one length unit exactly one pixel.
        fan_parameters = {
            "pixel_spacing": (padded - 1) / padded,
            "source_radius": r_s,
            "detector_radius": r_d,
            "n_detector_pixels": n_detectors,
            "detector_spacing": d,
        }
        physics = Tomography(
            angles, img_size, circle=circle, normalize=False, adjoint_via_backprop=True,
            fan_beam=True, fan_parameters=fan_parameters, device=device, dtype=dtype,
        )
        physics.to(dtype=dtype)  # deepinv keeps a float32 `_device_holder` buffer
        super().__init__(physics, img_size, circle, n_detectors)
        self.source_radius = r_s * ps
        self.detector_radius = r_d * ps
        self.detector_spacing = d * ps
        self.pixel_spacing = ps

        u = (torch.arange(n_detectors, dtype=torch.float64) - (n_detectors - 1) / 2) * d
        cos_gamma = (r_s + r_d) / torch.sqrt((r_s + r_d) ** 2 + u**2)
        s = torch.arange(padded, dtype=torch.float64) - (padded - 1) / 2  # along the central ray
        self.register_buffer("_ray_scale", (ps / cos_gamma)[:, None].to(dtype=dtype, device=device), persistent=False)
        self.register_buffer("_fbp_scale", (cos_gamma / ps)[:, None].to(dtype=dtype, device=device), persistent=False)
        self.register_buffer("_distance_weight", (r_s / (r_s + s))[:, None].to(dtype=dtype, device=device),
                             persistent=False)

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        return self.physics.A(x) * self._ray_scale

    def _backproject(self, y: torch.Tensor) -> torch.Tensor:
        return self._raw_backproject(y * self._ray_scale)

    def _fbp(self, y: torch.Tensor) -> torch.Tensor:
        filtered = _ramp(y * self._fbp_scale)
        return self._raw_backproject(filtered, self._distance_weight) * (math.pi / (2 * self.n_angles))

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, source_radius={self.source_radius:g}, "
            f"detector_radius={self.detector_radius:g}, detector_spacing={self.detector_spacing:g}, "
            f"pixel_spacing={self.pixel_spacing:g}"
        )


class ParallelBeamCT3D(LinearOperator):
    """3D parallel-beam CT as a stack of 2D slices: ``(B, 1, D, H, H) -> (B, 1, D, n_detectors, n_angles)``.

    The rotation axis is the depth axis ``D``; every slice ``x[:, :, k]`` is projected
    by the same :class:`ParallelBeamCT` (kept as :attr:`slice_op`), all slices in one
    batched call.

    :param angles: projection angles in degrees.
    :param volume_shape: ``(D, H, W)`` with ``H == W >= 2``.
    """

    def __init__(
        self,
        angles: Sequence[float] | torch.Tensor,
        volume_shape: Sequence[int],
        *,
        circle: bool = False,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        depth, size = _volume_shape(volume_shape)
        slice_op = ParallelBeamCT(angles, size, circle=circle, dtype=dtype, device=device)
        n_det, n_ang = slice_op.n_detectors, slice_op.n_angles
        super().__init__((1, depth, size, size), (1, depth, n_det, n_ang))
        self.slice_op = slice_op
        self.depth = depth

    @property
    def angles(self) -> torch.Tensor:
        """Projection angles in degrees, shape ``(n_angles,)``."""
        return self.slice_op.angles

    @property
    def n_angles(self) -> int:
        return self.slice_op.n_angles

    @property
    def n_detectors(self) -> int:
        return self.slice_op.n_detectors

    def _slices(self, t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        return t.reshape(t.shape[0] * self.depth, 1, *shape[2:])

    def _stack(self, t: torch.Tensor, batch: int) -> torch.Tensor:
        return t.reshape(batch, 1, self.depth, *t.shape[2:])

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._stack(self.slice_op._forward(self._slices(x, self.x_shape)), x.shape[0])

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self._stack(self.slice_op._adjoint(self._slices(y, self.y_shape)), y.shape[0])

    def fbp(self, y: torch.Tensor) -> torch.Tensor:
        """Slice-by-slice filtered back-projection ``(B, *y_shape) -> (B, *x_shape)``."""
        y = self.check_y(y)
        return self._stack(self.slice_op._fbp(self._slices(y, self.y_shape)), y.shape[0])
