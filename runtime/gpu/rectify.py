"""Ground views on a torch device: ``calibration.view.rectify``'s mip-mapped resampling as ``grid_sample``.

Per frame, the decoded frame (RGB uint8[H, W, 3]) is uploaded once (:class:`DeviceFrame`) and its mip pyramid is
built there once, up to the deepest level any view of the frame needs (:func:`pyr_down`: ``cv2.pyrDown``'s 5-tap
``[1 4 6 4 1] / 16`` kernel with BORDER_REFLECT_101, rounded to integers as OpenCV's uint8 result; exact). The
kernels are :mod:`calibration.torch_remap`'s (shared with training's pair renderer, ``export.data.gpu_pairs``).

Per view, the geometry runs on the host in its one implementation: ``calibration.view.rectify_map`` (the source
pixel of every output pixel from the camera model, attitude, mount and height), ``mip_levels`` (the pyramid level
per output pixel) and ``mip_plan`` (the levels lo..hi to sample). The maps (float32[3, V, s, s]: x, y, level) and
masks go up in one copy per call, and all views of the call are sampled together (:func:`mip_sample`): for each
level k, ``grid_sample`` (bilinear; ``padding_mode="border"`` is cv2's BORDER_REPLICATE) at ``map / 2**k``, rounded
to integers as ``cv2.remap`` rounds its uint8 result, then blended trilinearly in float32 with the very operations
and order of ``calibration.view._mip_remap``, and rounded; pixels outside the mask are 0. The views come back to the
host in one copy (the encoder and ground odometry read them there) and keep their device copy for the aligner
(:class:`DeviceGroundView`).

Parity with the CPU path (OpenCV 5.x, whose uint8 ``remap`` rounds an exact float bilinear; tests/runtime/gpu/):
identical masks; pixel values equal except where ``grid_sample``'s float32 coordinate normalisation (about 1e-4 px)
moves a bilinear value across a rounding boundary: +/-1 DN on about 2 in 100 000 values (measured on 160 views of
zurich_a, pinhole and fisheye, 35-140 m, tilts to 10 degrees). OpenCV 4.x quantises ``remap`` coordinates to 1/32
px; there the difference is a few DN at sharp edges.

The host part stays per view: ``rectify_map`` (the camera model's projection of every output pixel) and
``mip_levels`` take about 2.5 ms for a 230 px view on one core; the frame's pyramid, the sampling and the blend are
the device's.

Only the "linear" interpolation of the ground views is implemented (what :class:`runtime.ground_view.GroundViewer`
uses).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np

from calibration.errors import CalibrationError
from calibration.geometry import NADIR_MOUNT, Attitude, Mount
from calibration.torch_remap import Pyramid
from calibration.torch_remap import mip_sample as _mip_sample
from calibration.torch_remap import pyr_down as _pyr_down
from calibration.torch_remap import to_uint8 as _to_uint8
from calibration.view import mip_levels, mip_plan, rectify_map

from ..ground_view import GroundView, GroundViewer, GroundViewError
from . import import_torch, to_device

__all__ = ["DeviceFrame", "DeviceGroundView", "TorchGroundViewer", "mip_sample", "pyr_down"]


# ---------------------------------------------------------------------------------------------------- device data
@dataclass(frozen=True, eq=False)
class DeviceGroundView(GroundView):
    """A :class:`runtime.ground_view.GroundView` (numpy ``image``/``mask`` on the host) that also keeps its pixels on
    the device for the next device stage (:class:`runtime.gpu.align.TorchFineAligner`).

    Attributes:
        device_image: torch uint8[s, s, 3] RGB, the same pixels as ``image``.
        device_mask: torch bool[s, s], the same as ``mask``.
    """

    device_image: object = None
    device_mask: object = None


class DeviceFrame:
    """A camera frame uploaded to a torch device once, with its mip pyramid built lazily.

    Args:
        image: RGB uint8[H, W, 3] (the decoded frame).
        device: the ``torch.device``.

    Attributes:
        shape: the host frame's shape (H, W, 3); dtype: its dtype (uint8).
    """

    def __init__(self, image: np.ndarray, device) -> None:
        torch = import_torch()
        self.shape = tuple(image.shape)
        self.dtype = image.dtype
        self.device = device
        t = to_device(image, device)
        self._pyramid = Pyramid(t.permute(2, 0, 1).unsqueeze(0).to(torch.float32))  # [1, 3, H, W] DN (integers)

    @classmethod
    def from_chw(cls, chw) -> "DeviceFrame":
        """A frame already on the device: ``chw`` torch uint8[3, H, W] RGB (a GPU-decoded JPEG,
        :mod:`runtime.gpu.decode`); its device is the frame's."""
        torch = import_torch()
        self = cls.__new__(cls)
        self.shape = (int(chw.shape[1]), int(chw.shape[2]), 3)
        self.dtype = np.dtype(np.uint8)
        self.device = chw.device
        self._pyramid = Pyramid(chw.unsqueeze(0).to(torch.float32))
        return self

    def level(self, k: int):
        """Pyramid level ``k`` (0: the frame) as float32[1, 3, H_k, W_k], integer DN; built on first use."""
        return self._pyramid.level(k)


# ---------------------------------------------------------------------------------------------------- kernels
def pyr_down(x):
    """``cv2.pyrDown`` of an integer-valued image float32[N, C, H, W] (H, W >= 3) -> [N, C, (H+1)//2, (W+1)//2],
    rounded as OpenCV's uint8 result (:func:`calibration.torch_remap.pyr_down`, exact)."""
    import_torch()
    return _pyr_down(x, integer=True)


def mip_sample(frame: DeviceFrame, map_x, map_y, level, mask, lo: int, hi: int):
    """Sample ``frame`` for V views at once with a mip-map, as ``calibration.view._mip_remap`` ("linear") does
    (:func:`calibration.torch_remap.mip_sample`, the views stacked along the height into one ``grid_sample``).

    Args:
        frame: the :class:`DeviceFrame`.
        map_x, map_y: float32[V, H, W] source pixel coordinates at level 0 (OpenCV convention), on the device.
        level: float32[V, H, W] mip level per pixel, clipped to the pyramid's top (``calibration.view.mip_plan``).
        mask: bool[V, H, W] pixels that are valid (the others come out 0).
        lo, hi: the lowest and highest level any view needs (every view's own [lo_v, hi_v] inside; sampling the
            union changes nothing: below a view's lo_v its blend weights are exactly 1, above its hi_v exactly 0).
    Returns:
        uint8[V, H, W, 3] on the device.
    """
    torch = import_torch()
    V, H, W = map_x.shape
    acc = _mip_sample(frame.level, map_x.reshape(1, V * H, W), map_y.reshape(1, V * H, W),
                      level.reshape(1, V * H, W), lo, hi)  # [1, 3, V * H, W]
    out = _to_uint8(acc).reshape(3, V, H, W).permute(1, 2, 3, 0)
    return torch.where(mask.unsqueeze(-1), out, torch.zeros((), dtype=torch.uint8, device=out.device)).contiguous()


# ---------------------------------------------------------------------------------------------------- the viewer
class TorchGroundViewer(GroundViewer):
    """:class:`runtime.ground_view.GroundViewer` whose resampling runs on a torch device.

    Same arguments, checks, sizes and results (``views()``, ``context_size()``), plus:

    Args:
        device: the ``torch.device`` (or its name).
        clock: optional :class:`runtime.gpu.timing.StageClock` (stage ``"rectify"``).

    :meth:`views` takes the frame as a numpy array (uploaded per call) or as a :class:`DeviceFrame` from
    :meth:`upload` (uploaded once per frame, its pyramid shared by every call); it returns
    :class:`DeviceGroundView` s.
    """

    def __init__(self, camera, gsd: float, size_px: int, *, mount: Mount = NADIR_MOUNT, context_px: int | None = None,
                 device="cpu", clock=None) -> None:
        super().__init__(camera, gsd, size_px, mount=mount, context_px=context_px)
        torch = import_torch()
        self.device = torch.device(device)
        self.clock = clock

    def upload(self, image: np.ndarray) -> DeviceFrame:
        """The frame on the device (checked as :meth:`views` checks it); a :class:`DeviceFrame` is checked and
        returned as it is."""
        if isinstance(image, DeviceFrame):
            self._check_frame(image)
            return image
        super()._check_frame(image)
        return DeviceFrame(image, self.device)

    def _check_frame(self, image) -> None:
        if isinstance(image, DeviceFrame):
            want = (self.camera.height, self.camera.width, 3)
            if image.dtype != np.uint8 or image.shape != want:
                raise GroundViewError(
                    f"the device frame is {image.dtype}{list(image.shape)}, the camera model's frames are RGB uint8"
                    f"{list(want)}; upload frames of this camera (TorchGroundViewer.upload)"
                )
            return
        super()._check_frame(image)

    def _make_views(self, image, attitudes: list[Attitude], h: float, side: int) -> list[GroundView]:
        torch = import_torch()
        frame = image if isinstance(image, DeviceFrame) else DeviceFrame(image, self.device)
        if frame.device != self.device:
            raise GroundViewError(f"the frame was uploaded to {frame.device}, this viewer runs on {self.device}")
        maps = np.empty((3, len(attitudes), side, side), np.float32)  # x, y, level
        masks = np.empty((len(attitudes), side, side), bool)
        lo, hi = None, 0
        for i, att in enumerate(attitudes):
            try:
                m = rectify_map(self.camera, att, h, self.gsd, mount=self.mount, size_px=(side, side))
            except CalibrationError as exc:
                raise GroundViewError(f"cannot make a ground view at height {h} m and attitude {att}: {exc}") from exc
            level, lo_v, hi_v = mip_plan(frame.shape, mip_levels(m.map_x, m.map_y, m.mask), m.mask, "linear")
            maps[0, i], maps[1, i], maps[2, i], masks[i] = m.map_x, m.map_y, level, m.mask
            lo, hi = lo_v if lo is None else min(lo, lo_v), max(hi, hi_v)
        ctx = self.clock.stage("rectify") if self.clock is not None else nullcontext()
        with ctx:
            maps_t = torch.from_numpy(maps).to(self.device)
            masks_t = torch.from_numpy(masks).to(self.device)
            images = mip_sample(frame, maps_t[0], maps_t[1], maps_t[2], masks_t, lo, hi)
            host = images.cpu().numpy()
        return [DeviceGroundView(image=host[i], mask=masks[i], gsd=self.gsd, yaw_rad=float(att.yaw), height_m=h,
                                 device_image=images[i], device_mask=masks_t[i])
                for i, att in enumerate(attitudes)]
