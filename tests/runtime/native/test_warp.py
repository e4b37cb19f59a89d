"""skyfix_native's bilinear warp against cv2.remap (INTER_LINEAR, BORDER_REPLICATE, then 0 outside rectify's
bounds) and a float64 numpy reference, on random frames and a real aerial frame, with rotation+scale and perspective
maps; its validity mask; its argument errors."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from calibration.cv_compat import remap_fraction_bits
from runtime import native

FRAME_H, FRAME_W = 480, 640


def rotation_scale_map(out: int, angle_deg: float, scale: float, cx: float, cy: float) -> tuple[np.ndarray, ...]:
    """map_x, map_y float32[out, out]: output pixel (u, v) samples the frame at the centre (cx, cy) plus the output
    offset rotated by ``angle_deg`` and scaled by ``scale`` (source pixels per output pixel)."""
    v, u = np.mgrid[0:out, 0:out].astype(np.float64)
    du, dv = (u - out / 2) * scale, (v - out / 2) * scale
    a = np.deg2rad(angle_deg)
    return ((np.cos(a) * du - np.sin(a) * dv + cx).astype(np.float32),
            (np.sin(a) * du + np.cos(a) * dv + cy).astype(np.float32))


def perspective_map(out: int) -> tuple[np.ndarray, np.ndarray]:
    """A homography map, like a tilted camera's ground view (the far edge leaves the frame)."""
    Hm = np.array([[1.6, 0.35, 40.0], [0.05, 2.1, -60.0], [0.0002, 0.0021, 1.0]])
    v, u = np.mgrid[0:out, 0:out].astype(np.float64)
    p = Hm @ np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
    return (p[0] / p[2]).reshape(out, out).astype(np.float32), (p[1] / p[2]).reshape(out, out).astype(np.float32)


def valid_mask(map_x, map_y, h, w) -> np.ndarray:
    """calibration.view.rectify's rule: inside the frame's pixel-edge bounds."""
    return (map_x >= -0.5) & (map_x <= w - 0.5) & (map_y >= -0.5) & (map_y <= h - 0.5)


def cv_reference(frame, map_x, map_y) -> tuple[np.ndarray, np.ndarray]:
    mask = valid_mask(map_x, map_y, *frame.shape[:2])
    mx = np.where(mask, map_x, -1.0).astype(np.float32)  # as rectify: keep cv2 away from NaN/huge coordinates
    my = np.where(mask, map_y, -1.0).astype(np.float32)
    out = cv2.remap(frame, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    out[~mask] = 0
    return out, mask


def numpy_reference(frame, map_x, map_y) -> np.ndarray:
    """Bilinear in float64 with replicated borders, rounded to nearest (0 outside the mask)."""
    h, w = frame.shape[:2]
    mask = valid_mask(map_x, map_y, h, w)
    x = np.where(mask, map_x, 0).astype(np.float64)
    y = np.where(mask, map_y, 0).astype(np.float64)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    ax, ay = x - x0, y - y0
    xa, xb = np.clip(x0, 0, w - 1), np.clip(x0 + 1, 0, w - 1)
    ya, yb = np.clip(y0, 0, h - 1), np.clip(y0 + 1, 0, h - 1)
    f = frame.astype(np.float64)
    if f.ndim == 3:
        ax, ay = ax[..., None], ay[..., None]
    top = f[ya, xa] + ax * (f[ya, xb] - f[ya, xa])
    bot = f[yb, xa] + ax * (f[yb, xb] - f[yb, xa])
    out = np.rint(top + ay * (bot - top))
    out[~mask] = 0
    return out.astype(np.uint8)


def opencv_remap_tolerance(channels: int = 3) -> int:
    """Allowed |native - cv2.remap| in DN for frames of ``channels``. Where OpenCV's remap interpolates in float, as
    skyfix_native does (OpenCV 5 for 1, 3 and 4 channels): 1 DN (rounding). Where it rounds the coordinates to 1/32
    px (fixed point: OpenCV 4, and OpenCV 5 for 2 channels): up to 1/64 px per axis more, i.e. up to
    255 * 2 / 64 = 8 DN more on random noise. Told apart by :func:`calibration.cv_compat.remap_fraction_bits`."""
    return 1 if remap_fraction_bits(channels) is None else 9


@pytest.fixture(scope="module")
def random_frame():
    return np.random.default_rng(0).integers(0, 256, (FRAME_H, FRAME_W, 3), dtype=np.uint8)


def check_parity(lib, frame, map_x, map_y, stats=None) -> None:
    out, mask = lib.warp_bilinear(frame, map_x, map_y)
    ref, ref_mask = cv_reference(frame, map_x, map_y)
    assert out.shape == ref.shape and out.dtype == np.uint8 and mask.dtype == bool
    np.testing.assert_array_equal(mask, ref_mask)
    assert 0.0 < mask.mean()
    d_cv = int(np.abs(out.astype(int) - ref).max())
    d_np = int(np.abs(out.astype(int) - numpy_reference(frame, map_x, map_y)).max())
    assert d_cv <= opencv_remap_tolerance(frame.shape[2] if frame.ndim == 3 else 1), d_cv
    assert d_np <= 1, d_np  # float32 steps vs float64: only a tie at .5 can round the other way
    assert np.all(out[~mask] == 0)
    if stats is not None:
        stats.append((d_cv, d_np))


@pytest.mark.parametrize("angle, scale", [(0.0, 1.0), (30.0, 1.7), (-75.0, 0.6), (180.0, 2.5), (12.5, 3.1)])
def test_rotation_scale_maps_random_frame(host_lib, random_frame, angle, scale):
    mx, my = rotation_scale_map(256, angle, scale, 320.0, 240.0)  # 1.7 and more: part of the view outside
    check_parity(host_lib, random_frame, mx, my)


def test_perspective_map_random_frame(host_lib, random_frame):
    mx, my = perspective_map(300)
    check_parity(host_lib, random_frame, mx, my)


def test_real_aerial_frame(host_lib, shared_data):
    frame = cv2.cvtColor(cv2.imread(str(shared_data("calib/aero1.jpg"))), cv2.COLOR_BGR2RGB)
    assert frame.shape == (FRAME_H, FRAME_W, 3)
    for mx, my in (rotation_scale_map(256, 30.0, 1.7, 320.0, 240.0), perspective_map(256)):
        check_parity(host_lib, frame, mx, my)


@pytest.mark.parametrize("attitude, height_m, gsd", [((0.0, 0.0, 0.0), 80.0, 0.4), ((0.08, -0.12, 0.7), 80.0, 0.4),
                                                     ((-0.2, 0.15, -2.0), 40.0, 0.25)])
def test_rectify_maps_of_the_default_camera(host_lib, shared_data, attitude, height_m, gsd):
    """The maps SkyFix's rectification samples a frame with (calibration.view.rectify_map: the default camera's
    distortion, an attitude, a height) on a real aerial frame; the mask is rectify's."""
    from calibration.camera_io import default_camera
    from calibration.geometry import Attitude
    from calibration.view import rectify_map

    frame = cv2.cvtColor(cv2.imread(str(shared_data("calib/aero1.jpg"))), cv2.COLOR_BGR2RGB)
    m = rectify_map(default_camera(), Attitude(*attitude), height_m, gsd, size_px=(256, 256))
    check_parity(host_lib, frame, m.map_x, m.map_y)
    np.testing.assert_array_equal(host_lib.warp_bilinear(frame, m.map_x, m.map_y)[1], m.mask)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_channel_counts(host_lib, channels):
    rng = np.random.default_rng(channels)
    frame = rng.integers(0, 256, (37, 53, channels), dtype=np.uint8)
    mx = rng.uniform(-2, 55, (41, 29)).astype(np.float32)  # inside, on and outside the bounds
    my = rng.uniform(-2, 39, (41, 29)).astype(np.float32)
    out, mask = host_lib.warp_bilinear(frame, mx, my)
    ref, ref_mask = cv_reference(frame, mx, my)
    np.testing.assert_array_equal(mask, ref_mask)
    assert np.abs(out.astype(int) - ref.reshape(out.shape)).max() <= opencv_remap_tolerance(channels)
    assert np.abs(out.astype(int) - numpy_reference(frame, mx, my)).max() <= 1


def test_grey_frame_2d(host_lib, random_frame):
    grey = np.ascontiguousarray(random_frame[..., 1])
    mx, my = rotation_scale_map(64, 20.0, 1.3, 320.0, 240.0)
    out, mask = host_lib.warp_bilinear(grey, mx, my)
    assert out.shape == (64, 64) and mask.all()
    assert np.abs(out.astype(int) - cv_reference(grey, mx, my)[0]).max() <= opencv_remap_tolerance(1)


def test_bounds_and_non_finite_coordinates(host_lib):
    frame = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3) * 4 + 3
    xs = np.array([-0.5, -0.50001, 4.5, 4.50001, 0.0, 2.25, np.nan, 1.0, np.inf, -np.inf, 1e30, 4.4999], np.float32)
    ys = np.array([0.0, 0.0, 3.5, 1.0, -0.5, 3.50001, 1.0, np.nan, 1.0, 1.0, 1.0, 3.4999], np.float32)
    out, mask = host_lib.warp_bilinear(frame, xs[None, :], ys[None, :])
    assert mask[0].tolist() == [True, False, True, False, True, False, False, False, False, False, False, True]
    np.testing.assert_array_equal(out[0, ~mask[0]], 0)
    assert out[0, 0].tolist() == frame[0, 0].tolist()  # -0.5: the edge pixel replicated
    assert out[0, 2].tolist() == frame[3, 4].tolist()  # (w - 0.5, h - 0.5): the corner pixel
    assert out[0, 4].tolist() == frame[0, 0].tolist()


def test_row_strided_inputs_taken_without_copy(host_lib, random_frame):
    """Row slices (frames cropped from a larger buffer, maps cut from larger ones) give the same result."""
    crop = random_frame[40:300, 100:500]
    mx, my = rotation_scale_map(200, 33.0, 1.2, 200.0, 130.0)
    big_x = np.zeros((220, 260), np.float32)
    big_y = np.zeros((220, 260), np.float32)
    big_x[10:210, 30:230], big_y[10:210, 30:230] = mx, my
    out, mask = host_lib.warp_bilinear(crop, big_x[10:210, 30:230], big_y[10:210, 30:230])
    ref, ref_mask = host_lib.warp_bilinear(np.ascontiguousarray(crop), mx, my)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(mask, ref_mask)
    flipped, _ = host_lib.warp_bilinear(crop[::-1], mx, my)  # negative strides: copied
    np.testing.assert_array_equal(flipped, host_lib.warp_bilinear(np.ascontiguousarray(crop[::-1]), mx, my)[0])


# ---------------------------------------------------------------------------------------------------- errors
def test_argument_errors(host_lib):
    frame = np.zeros((8, 8, 3), np.uint8)
    m = np.zeros((4, 4), np.float32)
    cases = [
        ((frame.astype(np.float32), m, m), r"frame must be a non-empty uint8\[h, w\] or uint8\[h, w, c\] array with "
                                           r"c in 1\.\.4 \(the source image\), got float32\[8, 8, 3\]"),
        ((np.zeros((8, 8, 5), np.uint8), m, m), r"got uint8\[8, 8, 5\]"),
        ((np.zeros((0, 8, 3), np.uint8), m, m), r"non-empty .* got uint8\[0, 8, 3\]"),
        (([[1, 2]], m, m), r"frame must be .* got list"),
        ((frame, m.astype(np.float64), m), r"map_x must be a non-empty float32\[h, w\] array \(source x of each "
                                           r"output pixel\), got float64\[4, 4\]; convert it with \.astype"),
        ((frame, m, m[None]), r"map_y must be a non-empty float32\[h, w\] array .* got float32\[1, 4, 4\]"),
        ((frame, m, np.zeros((4, 5), np.float32)), r"map_x and map_y must have one shape \[H, W\], got \[4, 4\] and "
                                                   r"\[4, 5\]"),
    ]
    for args, message in cases:
        with pytest.raises(native.NativeArgumentError, match=message):
            host_lib.warp_bilinear(*args)


def test_c_argument_errors(host_lib):
    """The C function's own checks (for callers other than runtime.native): each names the argument and the rule."""
    fn = host_lib._lib.skyfix_warp_bilinear_u8
    src = np.zeros((8, 8, 3), np.uint8)
    mx = np.zeros((4, 4), np.float32)
    out = np.zeros((4, 4, 3), np.uint8)
    mask = np.zeros((4, 4), np.uint8)
    good = dict(src=src.ctypes.data, sh=8, sw=8, c=3, sp=24, mx=mx.ctypes.data, mxp=16, my=mx.ctypes.data, myp=16,
                oh=4, ow=4, out=out.ctypes.data, op=12, mask=mask.ctypes.data, mp=4)
    assert fn(*good.values()) == 0 and host_lib.last_error() == ""
    cases = [
        (dict(src=None), "warp: src is NULL"),
        (dict(mx=None), "warp: map_x is NULL"),
        (dict(out=None), "warp: out is NULL"),
        (dict(sh=0), r"warp: src_h must be in \[1, 1073741824\], got 0"),
        (dict(ow=-3), r"warp: out_w must be in \[1, 1073741824\], got -3"),
        (dict(c=5), r"warp: channels must be in \[1, 4\], got 5"),
        (dict(sp=23), r"warp: src_pitch must be in \[24, 4294967296\] bytes and a multiple of 1, got 23"),
        (dict(mxp=18), r"warp: map_x_pitch must be in \[16, 4294967296\] bytes and a multiple of 4, got 18"),
        (dict(op=11), r"warp: out_pitch must be in \[12, "),
        (dict(mp=3), r"warp: mask_pitch must be in \[4, "),
    ]
    for change, message in cases:
        args = {**good, **change}
        assert fn(*args.values()) == 1, change
        assert re.search(message, host_lib.last_error()), (change, host_lib.last_error())
    assert fn(*{**good, "mask": None, "mp": 0}.values()) == 0  # no mask wanted: its pitch is not checked


def test_no_mask_wanted(host_lib, random_frame):
    mx, my = rotation_scale_map(32, 10.0, 1.0, 320.0, 240.0)
    out = np.zeros((32, 32, 3), np.uint8)
    rc = host_lib._lib.skyfix_warp_bilinear_u8(random_frame.ctypes.data, FRAME_H, FRAME_W, 3, FRAME_W * 3,
                                               mx.ctypes.data, 128, my.ctypes.data, 128, 32, 32, out.ctypes.data, 96,
                                               None, 0)
    assert rc == 0
    np.testing.assert_array_equal(out, host_lib.warp_bilinear(random_frame, mx, my)[0])
