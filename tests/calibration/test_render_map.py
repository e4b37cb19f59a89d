"""calibration.view.render_map (the geometry of render) and calibration.torch_remap (its resampling in torch):
the maps land where the camera model projects, render is render_map + _mip_remap, and the torch sampler at the same
maps gives render's frame (the same mask, +/-1 DN on a tiny share)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from calibration.camera import CameraModel
from calibration.errors import GeometryError
from calibration.geometry import NADIR_MOUNT, Attitude, Mount, R_cam2world
from calibration.view import RenderMap, mip_plan, render, render_map

from .test_view import Raster, textured_noise

FISHEYE = CameraModel.from_fov(320, 240, 120, distortion=(0.02, -0.01, 0.0, 0.0), model="fisheye")
PINHOLE = CameraModel.from_fov(320, 240, 70, distortion=(-0.25, 0.07, 0.0, 0.0))


def _raster(holes: bool) -> Raster:
    img = textured_noise(700, 900, seed=3)
    mask = np.ones(img.shape[:2], bool)
    if holes:  # no-data areas, as orthophotos have at their borders
        mask[:, :120] = False
        mask[300:360, 400:520] = False
        img[~mask] = 0
    return Raster(img, mask, 0.2, -90.0, 70.0)


def _poses(n: int, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        att = Attitude(rng.uniform(-0.25, 0.25), rng.uniform(-0.25, 0.25), rng.uniform(-math.pi, math.pi))
        yield (float(rng.uniform(-60, 60)), float(rng.uniform(-40, 40))), float(rng.uniform(25.0, 120.0)), att


@pytest.mark.parametrize("cam", [PINHOLE, FISHEYE], ids=["pinhole", "fisheye"])
def test_render_map_lands_where_the_camera_projects(cam):
    """Every valid pixel's raster coordinate is a ground point that the camera model projects back to that pixel."""
    g = _raster(holes=False)
    tilt, _ = cv2.Rodrigues(np.radians([2.0, -3.0, 1.0]))
    mount = Mount(NADIR_MOUNT.R_cam2body @ tilt, (0.1, 0.05, -0.2))
    for (x, y), h, att in _poses(4, seed=1):
        m = render_map(g, cam, (x, y), h, att, mount=mount)
        assert isinstance(m, RenderMap) and m.map_x.shape == (cam.height, cam.width) and m.valid.any()
        r0, r1, c0, c1 = m.window
        assert 0 <= r0 < r1 <= g.image.shape[0] and 0 <= c0 < c1 <= g.image.shape[1]
        assert (m.map_x[~m.valid] == -1).all() and (m.map_y[~m.valid] == -1).all()
        vv, uu = np.nonzero(m.valid)
        pick = np.random.default_rng(0).choice(len(vv), 200, replace=False)
        vv, uu = vv[pick], uu[pick]
        gx = g.x_min + (c0 + m.map_x[vv, uu] + 0.5) * g.gsd
        gy = g.y_max - (r0 + m.map_y[vv, uu] + 0.5) * g.gsd
        centre = np.array([x, y, h]) + att.R_body2world @ mount.t_cam2body
        pts = (np.stack([gx, gy, np.zeros_like(gx)], axis=1) - centre) @ R_cam2world(att, mount)  # world -> camera
        uv, ok = cam.project(pts)
        assert ok.all()
        assert np.abs(uv - np.stack([uu, vv], axis=1)).max() < 0.02  # pixels (float32 maps)
        assert (m.level[m.valid] >= 0).all()


def test_render_is_render_map_plus_mip_remap():
    """render's mask is render_map's geometric validity and the raster's mask; a camera over the horizon gets an
    empty map; bad arguments raise render's errors."""
    g = _raster(holes=True)
    for (x, y), h, att in _poses(4, seed=2):
        m = render_map(g, PINHOLE, (x, y), h, att)
        img, mask = render(g, PINHOLE, (x, y), h, att)
        assert not (mask & ~m.valid).any()
        assert not img[~mask].any()
    up = Attitude(0.0, math.radians(100.0), 0.0)
    m = render_map(g, PINHOLE, (0.0, 0.0), 50.0, up)
    assert not m.valid.any() and m.window == (0, 0, 0, 0)
    with pytest.raises(GeometryError, match="height_m"):
        render_map(g, PINHOLE, (0.0, 0.0), -1.0, Attitude(0, 0, 0))
    with pytest.raises(GeometryError, match="lacks"):
        render_map(object(), PINHOLE, (0.0, 0.0), 10.0, Attitude(0, 0, 0))


@pytest.mark.parametrize("holes", [False, True], ids=["full", "holes"])
def test_torch_sampler_at_render_map_gives_render(holes):
    """calibration.torch_remap at render_map's maps (the window's crop, its own pyramid) = render: the same masks,
    pixel values equal but for +/-1 DN on a tiny share (grid_sample's float32 coordinate normalisation)."""
    torch = pytest.importorskip("torch")
    from calibration.torch_remap import Pyramid, mip_sample, to_uint8

    g = _raster(holes)
    n = differ = 0
    worst = 0
    for (x, y), h, att in _poses(6, seed=4):
        cam = PINHOLE if n % 2 else FISHEYE
        ref, ref_mask = render(g, cam, (x, y), h, att)
        m = render_map(g, cam, (x, y), h, att)
        r0, r1, c0, c1 = m.window
        crop = g.image[r0:r1, c0:c1]
        level, lo, hi = mip_plan(crop.shape, m.level, m.valid)
        mx, my, lv = (torch.from_numpy(a)[None] for a in (m.map_x, m.map_y, level))
        src = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].float()
        out = to_uint8(mip_sample(Pyramid(src).level, mx, my, lv, lo, hi))[0].permute(1, 2, 0).numpy()
        valid = m.valid.copy()
        cm = g.mask[r0:r1, c0:c1]
        if not cm.all():
            msrc = torch.from_numpy(cm.astype(np.float32))[None, None]
            mm = mip_sample(Pyramid(msrc, integer=False).level, mx, my, lv, lo, hi, integer=False)[0, 0].numpy()
            valid &= mm >= np.float32(0.999)
        assert np.array_equal(valid, ref_mask)
        d = np.abs(out.astype(np.int16) - ref.astype(np.int16))[valid]
        n += d.size
        differ += int(np.count_nonzero(d))
        worst = max(worst, int(d.max()))
    assert n > 100_000
    assert worst <= 1 and differ / n < 1e-3


@pytest.mark.parametrize("shape", [(240, 320), (101, 77), (7, 9)])
def test_float_pyr_down_is_cv2_pyr_down_of_float32(shape):
    torch = pytest.importorskip("torch")
    from calibration.torch_remap import pyr_down

    img = np.random.default_rng(sum(shape)).uniform(0, 1, shape).astype(np.float32)
    ref = cv2.pyrDown(img)
    got = pyr_down(torch.from_numpy(img)[None, None], integer=False)[0, 0].numpy()
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() < 1e-6


def test_calibration_imports_without_torch():
    """calibration.torch_remap imports torch only when called (calibration is a foundation layer)."""
    import subprocess
    import sys

    code = "import sys, calibration.torch_remap, calibration.view; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
