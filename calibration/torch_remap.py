"""``calibration.view``'s mip-mapped resampling on a torch device (``grid_sample``), for any caller of the geometry.

:func:`calibration.view.rectify` and :func:`calibration.view.render` are a pixel map (``rectify_map`` /
``render_map``: the source pixel of every output pixel), a mip level per output pixel (``mip_levels``, ``mip_plan``)
and ``_mip_remap``: a ``cv2.pyrDown`` pyramid of the source, ``cv2.remap`` (bilinear) per level, a trilinear blend.
This module is that last part in torch, so that the same maps can be sampled on a GPU: by the onboard loop
(``runtime.gpu.rectify``: ground views of a frame) and by training (``export.data.gpu_pairs``: camera frames
rendered from an orthophoto, then rectified), without either importing the other.

* :func:`pyr_down`: ``cv2.pyrDown`` (5-tap ``[1 4 6 4 1] / 16`` kernel per axis, BORDER_REFLECT_101, every second
  pixel), rounded half up as OpenCV's uint8 result (``integer=True``, exact: shifted adds of integers) or kept in
  float (``integer=False``, as ``cv2.pyrDown`` of a float32 image, up to float rounding).
* :class:`Pyramid`: the levels of one source (or a batch of same-sized sources), built lazily.
* :func:`mip_sample`: ``grid_sample`` (bilinear, ``padding_mode="border"`` = BORDER_REPLICATE, pixel centres at
  integers as OpenCV) at ``map / 2**k`` for every level ``k`` in ``lo..hi``, rounded per level as ``cv2.remap``'s
  uint8 result (``integer=True``), blended with the very operations and order of ``_mip_remap``.

The sampler follows the installed OpenCV (:func:`calibration.cv_compat.remap_fraction_bits`):

* OpenCV 5.x (its uint8 ``remap`` rounds an exact float bilinear, half to even): ``grid_sample``, equal except where
  its float32 coordinate normalisation (about 1e-4 px for sources of a few hundred pixels, proportionally more for
  larger ones) moves a bilinear value across a rounding boundary: +/-1 DN on a few values in 100 000
  (tests/runtime/gpu, tests/export/test_gpu_pairs.py);
* OpenCV 4.x (coordinates rounded to 1/32 px, integer weights, uint8 rounded half up): the same rounding of the
  coordinates and four gathered neighbours, exact in float32 (the weights are multiples of 1/1024).

Only the "linear" interpolation is implemented. torch is imported inside the functions: ``calibration`` imports
without it (docs/DESIGN.md).
"""

from __future__ import annotations

import numpy as np

__all__ = ["AS_OPENCV", "Pyramid", "grid_sample_px", "mip_sample", "pyr_down", "to_uint8", "warp_affine_coords_fixed"]


def pyr_down(x, integer: bool = True):
    """``cv2.pyrDown`` of float32[N, C, H, W] (H, W >= 3) -> [N, C, (H+1)//2, (W+1)//2].

    Args:
        x: the source; with ``integer`` its values are integers (DN of a uint8 image).
        integer: round half up to integers as OpenCV's uint8 result (exact on any device: shifted adds of integers
            below 2**24, no convolution algorithm that might round); False: the float result (a float32 source such
            as a validity mask).
    """
    import torch

    H, W = x.shape[-2:]
    p = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    h = p[..., 0:W] + 4.0 * p[..., 1:W + 1] + 6.0 * p[..., 2:W + 2] + 4.0 * p[..., 3:W + 3] + p[..., 4:W + 4]
    h = h[..., ::2]
    v = h[..., 0:H, :] + 4.0 * h[..., 1:H + 1, :] + 6.0 * h[..., 2:H + 2, :] + 4.0 * h[..., 3:H + 3, :] + h[..., 4:H + 4, :]
    v = v[..., ::2, :]
    return torch.floor((v + 128.0) / 256.0) if integer else v / 256.0


class Pyramid:
    """The mip pyramid of a source on a torch device, level ``k`` built on first use from level ``k - 1``.

    Args:
        base: float32[N, C, H, W] level 0 (N same-sized sources are reduced together).
        integer: the source holds integer DN (levels rounded as ``cv2.pyrDown`` of uint8); False: float values.
    """

    def __init__(self, base, integer: bool = True) -> None:
        self.integer = bool(integer)
        self._levels = [base]

    def level(self, k: int):
        """Level ``k`` (0: the source) as float32[N, C, H_k, W_k]."""
        while len(self._levels) <= k:
            self._levels.append(pyr_down(self._levels[-1], self.integer))
        return self._levels[k]


#: ``fraction_bits`` default: as the installed OpenCV's ``cv2.remap`` (:func:`calibration.cv_compat.remap_fraction_bits`)
AS_OPENCV = "opencv"


def _fraction_bits(fraction_bits, channels: int, integer: bool):
    if fraction_bits == AS_OPENCV:
        from .cv_compat import remap_fraction_bits

        return remap_fraction_bits(channels, integer)
    return fraction_bits


def grid_sample_px(src, map_x, map_y, fraction_bits=None, border: str = "replicate", integer: bool = True):
    """Bilinear samples of ``src`` float32[N, C, h, w] at pixel coordinates ``map_x``, ``map_y`` float32[N, H, W]
    (OpenCV: pixel centres at integers) -> float32[N, C, H, W].

    ``fraction_bits``: None samples at float precision (``grid_sample``); ``b`` rounds each coordinate to ``2**-b``
    px first (half to even, as OpenCV 4.x's ``cvRound(x * 32)``) and blends the four neighbours with the weights of
    that grid (:data:`AS_OPENCV`: whichever the installed OpenCV does for ``src``'s channel count, uint8 when
    ``integer`` else float32). ``border``: ``"replicate"`` (BORDER_REPLICATE) or ``"zeros"`` (BORDER_CONSTANT
    with 0).
    """
    import torch

    if border not in ("replicate", "zeros"):
        raise ValueError(f"border must be 'replicate' or 'zeros', not {border!r}")
    bits = _fraction_bits(fraction_bits, src.shape[1], integer)
    if bits is not None:
        return _sample_on_grid(src, map_x, map_y, int(bits), border)
    hk, wk = src.shape[-2:]
    grid = torch.stack([(2.0 * map_x + 1.0) / wk - 1.0, (2.0 * map_y + 1.0) / hk - 1.0], dim=-1)
    padding = "border" if border == "replicate" else "zeros"
    return torch.nn.functional.grid_sample(src, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def _sample_on_grid(src, map_x, map_y, bits: int, border: str = "replicate"):
    """:func:`grid_sample_px` with coordinates rounded to ``2**-bits`` px: OpenCV 4.x's fixed-point bilinear. The
    weights ``(1 - fx)(1 - fy)``, ``fx (1 - fy)``, ... are multiples of ``4**-bits``, so for integer sources every
    product and sum is exact in float32 and the value is OpenCV's integer blend before its final shift."""
    import torch

    N, C, h, w = src.shape
    n = float(1 << bits)
    X = torch.round(map_x * n)  # a power of two: map * n is exact
    Y = torch.round(map_y * n)
    x0 = torch.floor(X / n)
    y0 = torch.floor(Y / n)
    fx = ((X - x0 * n) / n).unsqueeze(1)
    fy = ((Y - y0 * n) / n).unsqueeze(1)
    gx, gy = 1.0 - fx, 1.0 - fy
    x0 = x0.long()
    y0 = y0.long()
    flat = src.reshape(N, C, h * w)
    out_shape = (N, C) + tuple(map_x.shape[1:])

    def at(yi, xi):
        """The neighbour at rows ``yi``, columns ``xi``: BORDER_REPLICATE clamps each neighbour into the source;
        BORDER_CONSTANT (0) zeroes the ones outside, the others keep their weights."""
        idx = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).reshape(N, 1, -1).expand(N, C, -1)
        v = torch.gather(flat, 2, idx).reshape(out_shape)
        if border == "zeros":
            v = v * ((yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)).unsqueeze(1).to(src.dtype)
        return v

    return (at(y0, x0) * (gx * gy) + at(y0, x0 + 1) * (fx * gy) + at(y0 + 1, x0) * (gx * fy)
            + at(y0 + 1, x0 + 1) * (fx * fy))


#: OpenCV 4.x's ``AB_BITS``: warpAffine's fixed-point fraction bits of each term of a source coordinate
_AB_BITS = 10


def warp_affine_coords_fixed(inv, w: int, h: int, bits: int):
    """Source pixel coordinates of ``cv2.warpAffine``'s output pixels in OpenCV 4.x's fixed point.

    Args:
        inv: float64[A, 2, 3] inverse maps (output pixel -> source pixel, ``cv2.invertAffineTransform`` of the
            forward matrices, as warpAffine inverts them itself), on the device.
        w, h: the output size (px).
        bits: the interpolation's fraction bits (:func:`calibration.cv_compat.remap_fraction_bits`; 5 in 4.x).
    Returns:
        (X, Y) float32[A, h, w], multiples of ``2**-bits`` px: each of the column and row terms rounded to
        ``2**-10`` px (``AB_BITS``), their sum plus half a step floored to ``2**-bits`` px, as 4.x's
        ``WarpAffineInvoker`` (pass them to :func:`grid_sample_px` with the same ``bits``).
    """
    import torch

    ab = float(1 << _AB_BITS)
    step = float(1 << (_AB_BITS - bits))
    half = float(1 << (_AB_BITS - bits - 1))
    xs = torch.arange(w, dtype=torch.float64, device=inv.device)[None, None, :]
    ys = torch.arange(h, dtype=torch.float64, device=inv.device)[None, :, None]
    out = []
    for r in (0, 1):
        col = torch.round(inv[:, r, 0, None, None] * xs * ab)
        row = torch.round((inv[:, r, 1, None, None] * ys + inv[:, r, 2, None, None]) * ab)
        out.append((torch.floor((col + row + half) / step) / float(1 << bits)).to(torch.float32))
    return out[0], out[1]


def mip_sample(level, map_x, map_y, levels, lo: int, hi: int, integer: bool = True, fraction_bits=AS_OPENCV):
    """Sample a pyramid at level-0 pixel coordinates with a trilinear mip-map blend, as
    ``calibration.view._mip_remap`` ("linear") does.

    Args:
        level: callable ``k -> float32[N, C, H_k, W_k]``, pyramid level ``k`` (e.g. :meth:`Pyramid.level`).
        map_x, map_y: float32[N, H, W] source pixel coordinates at level 0 (OpenCV convention), on the device.
        levels: float32[N, H, W] mip level per output pixel, clipped to the pyramid's top
            (``calibration.view.mip_plan``).
        lo, hi: the lowest and highest level any output pixel needs (each one's own range inside; sampling a wider
            range changes nothing: below a pixel's level the blend weights are exactly 1, above it exactly 0).
        integer: round every level's samples as ``cv2.remap``'s uint8 result (integer sources); False: float.
        fraction_bits: the coordinate rounding and uint8 rounding of :func:`grid_sample_px` (default: the installed
            OpenCV's; None: float precision, half to even as 5.x; ``b``: ``2**-b`` px, half up as 4.x).
    Returns:
        float32[N, C, H, W]: the blend before the final rounding (:func:`to_uint8` gives the uint8 result); values
        outside the valid output pixels are unspecified.
    """
    import torch

    def at(k: int):
        if k == 0:
            mx, my = map_x, map_y
        else:
            s = float(np.float32(1.0 / (1 << k)))  # a power of two: exact, as the CPU's map * s
            mx, my = map_x * s, map_y * s
        r = grid_sample_px(level(k), mx, my, bits)
        if not integer:
            return r
        return torch.round(r) if bits is None else torch.floor(r + 0.5)

    bits = _fraction_bits(fraction_bits, level(lo).shape[1], integer)
    prev = at(lo)
    acc = prev.clone()
    for k in range(lo + 1, hi + 1):
        ck = torch.clamp(levels - float(k - 1), 0.0, 1.0).unsqueeze(1)
        cur = at(k)
        acc += (cur - prev) * ck
        prev = cur
    return acc


def to_uint8(acc):
    """A blend of :func:`mip_sample` (integer sources) as ``_mip_remap``'s uint8 result: ``+ 0.5``, clipped to
    [0, 255], truncated."""
    import torch

    return (acc + 0.5).clamp_(0.0, 255.0).to(torch.uint8)
