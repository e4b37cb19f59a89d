"""runtime.gpu.rectify against the CPU GroundViewer on frames rendered from a real orthophoto: the same masks, the
same pixels up to +/-1 DN on a tiny share (grid_sample's float32 coordinate normalisation), the same view objects."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from calibration.camera import CameraModel
from calibration.geometry import NADIR_MOUNT, Attitude, Mount
from calibration.view import render
from runtime.ground_view import GroundView, GroundViewer, GroundViewError

from .parity import GSD, SIZE

FISHEYE = CameraModel.from_fov(640, 480, 120, distortion=(0.02, -0.01, 0.0, 0.0), model="fisheye")


def _poses(n: int, seed: int):
    """n (position, height, attitude): tilts up to 12 deg, heights 35-140 m (mip levels 0 to ~2)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        tilt, az = rng.uniform(0.0, 12.0), rng.uniform(0.0, 2 * math.pi)
        att = Attitude.from_degrees(tilt * math.cos(az), tilt * math.sin(az), rng.uniform(-180.0, 180.0))
        out.append(((rng.uniform(-120, 120), rng.uniform(-80, 80)), rng.uniform(35.0, 140.0), att))
    return out


def _compare(cpu_views, dev_views, stats):
    assert len(cpu_views) == len(dev_views)
    for a, b in zip(cpu_views, dev_views):
        assert isinstance(b, GroundView)
        assert b.image.dtype == np.uint8 and b.image.shape == a.image.shape and b.image.flags.c_contiguous
        assert (b.gsd, b.yaw_rad, b.height_m) == (a.gsd, a.yaw_rad, a.height_m)
        assert np.array_equal(a.mask, b.mask)
        assert not b.image[~b.mask].any()
        d = np.abs(a.image.astype(np.int16) - b.image.astype(np.int16))[a.mask]
        stats["n"] += d.size
        stats["differ"] += int(np.count_nonzero(d))
        stats["sum"] += int(d.sum())
        stats["max"] = max(stats["max"], int(d.max()) if d.size else 0)


@pytest.mark.parametrize("cam_name", ["pinhole", "fisheye"])
def test_views_match_the_cpu_viewer(ortho, camera, device, cam_name):
    from runtime.gpu.rectify import DeviceGroundView, TorchGroundViewer

    o, _ = ortho
    cam = camera if cam_name == "pinhole" else FISHEYE
    # a camera mounted 4 deg off nadir with a lever arm: the geometry is the one rectify_map computes for both
    tilt, _ = cv2.Rodrigues(np.radians([3.0, -2.5, 1.0]))
    mount = Mount(NADIR_MOUNT.R_cam2body @ tilt, (0.1, 0.05, -0.2))
    cpu = GroundViewer(cam, GSD, SIZE, mount=mount)
    dev = TorchGroundViewer(cam, GSD, SIZE, device=device, mount=mount)
    stats = {"n": 0, "differ": 0, "sum": 0, "max": 0}
    for xy, h, att in _poses(6, seed=1):
        frame, _ = render(o, cam, xy, h, att)
        up = dev.upload(frame)  # once per frame; both calls below sample it (and its pyramid)
        _compare(cpu.views(frame, height_m=h, attitude=att), dev.views(up, height_m=h, attitude=att), stats)
        yaws = [att.yaw, att.yaw + 0.7, att.yaw - 2.0]
        views = dev.views(up, height_m=h, yaws=yaws)
        assert all(isinstance(v, DeviceGroundView) and v.device_image is not None for v in views)
        _compare(cpu.views(frame, height_m=h, yaws=yaws), views, stats)
        _compare(cpu.views(frame, height_m=h, attitude=att), dev.views(frame, height_m=h, attitude=att), stats)
    # measured (pinhole and fisheye, CPU torch): max 1 DN, ~1e-5 of the valid pixels differ, mean ~1e-5 DN
    assert stats["n"] > 500_000
    assert stats["max"] <= 1
    assert stats["differ"] / stats["n"] < 1e-3
    assert stats["sum"] / stats["n"] < 1e-3


def test_device_views_crop_and_keep_their_device_pixels(ortho, camera, device):
    from runtime.gpu.rectify import TorchGroundViewer

    o, _ = ortho
    dev = TorchGroundViewer(camera, GSD, SIZE, device=device)
    att = Attitude.from_degrees(3.0, -2.0, 40.0)
    frame, _ = render(o, camera, (10.0, 20.0), 80.0, att)
    (v,) = dev.views(frame, height_m=80.0, attitude=att)
    assert np.array_equal(v.device_image.cpu().numpy(), v.image)
    assert np.array_equal(v.device_mask.cpu().numpy(), v.mask)
    c = v.crop(SIZE)
    assert type(c) is GroundView and c.image.shape == (SIZE, SIZE, 3)
    assert v.size_px == dev.context_size(80.0, att)


@pytest.mark.parametrize("shape", [(480, 640, 3), (101, 77, 3), (7, 9, 3), (64, 65, 3)])
def test_pyr_down_is_cv2_pyr_down(device, shape):
    import torch

    from runtime.gpu.rectify import pyr_down

    img = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    ref = cv2.pyrDown(img)
    x = torch.from_numpy(img).to(device).permute(2, 0, 1)[None].float()
    got = pyr_down(x)[0].permute(1, 2, 0).cpu().numpy()
    assert got.shape == ref.shape
    assert np.array_equal(got.astype(np.uint8), ref)


def test_device_frame_of_another_camera_is_refused(camera):
    from runtime.gpu.rectify import TorchGroundViewer

    dev = TorchGroundViewer(camera, GSD, SIZE, device="cpu")
    other = TorchGroundViewer(camera.scaled(0.5), GSD, SIZE, device="cpu")
    frame = np.zeros((camera.height // 2, camera.width // 2, 3), np.uint8)
    up = other.upload(frame)
    with pytest.raises(GroundViewError, match=r"device frame is uint8\[240, 320, 3\].*\[480, 640, 3\]"):
        dev.views(up, height_m=50.0, attitude=Attitude())
    with pytest.raises(GroundViewError, match="RGB uint8"):
        dev.upload(frame)
    with pytest.raises(GroundViewError, match="height_m must be > 0"):
        dev.views(np.zeros((480, 640, 3), np.uint8), height_m=-1.0, attitude=Attitude())
