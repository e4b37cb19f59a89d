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

Parity with OpenCV 5.x (whose uint8 ``remap`` rounds an exact float bilinear): equal except where ``grid_sample``'s
float32 coordinate normalisation (about 1e-4 px for sources of a few hundred pixels, proportionally more for larger
ones) moves a bilinear value across a rounding boundary: +/-1 DN on a few values in 100 000 (tests/runtime/gpu,
tests/export/test_gpu_pairs.py).

Only the "linear" interpolation is implemented. torch is imported inside the functions: ``calibration`` imports
without it (docs/DESIGN.md).
"""

from __future__ import annotations

import numpy as np

__all__ = ["Pyramid", "grid_sample_px", "mip_sample", "pyr_down", "to_uint8"]


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


def grid_sample_px(src, map_x, map_y):
    """Bilinear samples of ``src`` float32[N, C, h, w] at pixel coordinates ``map_x``, ``map_y`` float32[N, H, W]
    (OpenCV: pixel centres at integers) with BORDER_REPLICATE outside -> float32[N, C, H, W]."""
    import torch

    hk, wk = src.shape[-2:]
    grid = torch.stack([(2.0 * map_x + 1.0) / wk - 1.0, (2.0 * map_y + 1.0) / hk - 1.0], dim=-1)
    return torch.nn.functional.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)


def mip_sample(level, map_x, map_y, levels, lo: int, hi: int, integer: bool = True):
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
        r = grid_sample_px(level(k), mx, my)
        return torch.round(r) if integer else r

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
