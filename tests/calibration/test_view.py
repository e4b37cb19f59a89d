"""Ground-view geometry: rectify / render / ground_footprint.

Round trips use real orthophotos from ``../shared/data/ortho`` (skipped when absent). Run with ``-s`` to see the
measured NCC values and timings.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import cv2
import numpy as np
import pytest

from calibration import view
from calibration.camera import CameraModel
from calibration.cv_compat import remap_fraction_bits
from calibration.errors import CalibrationError, GeometryError
from calibration.geometry import NADIR_MOUNT, Attitude, Mount, R_cam2world
from calibration.view import GroundRaster, GroundView, ground_footprint, rectify, render

PINHOLE = CameraModel.from_fov(640, 480, 70, distortion=(-0.25, 0.07, 0.0, 0.0))
FISHEYE = CameraModel.from_fov(640, 480, 120, distortion=(0.02, -0.01, 0.0, 0.0), model="fisheye")


@dataclass
class Raster:
    """Minimal ground raster (the fields of maps.ortho.Orthophoto)."""

    image: np.ndarray
    mask: np.ndarray
    gsd: float
    x_min: float
    y_max: float

    def center(self) -> tuple[float, float]:
        h, w = self.mask.shape
        return self.x_min + 0.5 * w * self.gsd, self.y_max - 0.5 * h * self.gsd


_ORTHO_CACHE: dict[str, Raster] = {}


def load_ortho(shared_data, name: str) -> Raster:
    """An orthophoto as a Raster in the file's own projected metres (north-up, gsd = the x pixel size)."""
    if name not in _ORTHO_CACHE:
        import rasterio

        with rasterio.open(shared_data(f"ortho/{name}")) as ds:
            image = np.ascontiguousarray(ds.read([1, 2, 3]).transpose(1, 2, 0))
            mask = ds.dataset_mask() > 0
            _ORTHO_CACHE[name] = Raster(image, mask, float(ds.res[0]), float(ds.bounds.left), float(ds.bounds.top))
    return _ORTHO_CACHE[name]


def textured_noise(h: int, w: int, seed: int = 0, sigma: float = 1.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.uniform(0, 255, (h, w, 3)).astype(np.float32), (0, 0), sigma)
    img = (img - img.mean()) / img.std() * 50 + 128
    return np.clip(img, 0, 255).astype(np.uint8)


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64) - a.mean()
    b = b.astype(np.float64) - b.mean()
    return float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum()))


def gray(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)


def sample_raster(raster: Raster, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear sample of the raster at world (x, y) float[H, W] -> (image, mask)."""
    mx = ((x - raster.x_min) / raster.gsd - 0.5).astype(np.float32)
    my = ((raster.y_max - y) / raster.gsd - 0.5).astype(np.float32)
    img = cv2.remap(raster.image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    m = cv2.remap(raster.mask.astype(np.uint8), mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT) > 0
    return img, m


def ground_homography(camera: CameraModel, attitude: Attitude, height: float, gv_xmin, gv_ymax, gsd, mount=NADIR_MOUNT):
    """Analytic 3x3 homography: output ground-raster pixel (u, v, 1) -> undistorted camera pixel."""
    R_w2c = R_cam2world(attitude, mount).T
    C = np.array([0.0, 0.0, height]) + attitude.R_body2world @ mount.t_cam2body
    t = -R_w2c @ C
    P = camera.K @ np.column_stack([R_w2c[:, 0], R_w2c[:, 1], t])
    A = np.array([[gsd, 0, gv_xmin + 0.5 * gsd], [0, -gsd, gv_ymax - 0.5 * gsd], [0, 0, 1.0]])
    return P @ A


# ---------------------------------------------------------------------------------------------------- conventions
def marker_raster() -> Raster:
    """0.1 m/px grey raster, 200 m square centred on (0, 0): red disc 10 m north, green disc 10 m east."""
    gsd, n = 0.1, 2000
    img = np.full((n, n, 3), 100, np.uint8)
    raster = Raster(img, np.ones((n, n), bool), gsd, -100.0, 100.0)
    for (x, y), colour in (((0, 10), (255, 0, 0)), ((10, 0), (0, 255, 0))):
        u, v = int((x - raster.x_min) / gsd), int((raster.y_max - y) / gsd)
        cv2.circle(img, (u, v), 10, colour, -1)
    return raster


def blob_centre(img: np.ndarray, channel: int) -> np.ndarray:
    others = [c for c in range(3) if c != channel]
    sel = (img[:, :, channel] > 200) & (img[:, :, others[0]] < 60) & (img[:, :, others[1]] < 60)
    assert sel.sum() > 5, "marker not visible"
    v, u = np.nonzero(sel)
    return np.array([u.mean(), v.mean()])


@pytest.mark.parametrize("camera", [PINHOLE, FISHEYE], ids=["pinhole", "fisheye"])
def test_render_sign_conventions(camera):
    """yaw 0 (nose east): north is on the image's LEFT, east at the TOP; yaw pi/2 (nose north): north TOP, east RIGHT."""
    raster = marker_raster()
    c = np.array([camera.cx, camera.cy])
    img, mask = render(raster, camera, (0.0, 0.0), 40.0, Attitude(0, 0, 0))
    assert mask[100:380, 100:540].all()  # the fisheye's corners see past the 200 m raster
    north, east = blob_centre(img, 0) - c, blob_centre(img, 1) - c
    assert north[0] < -40 and abs(north[1]) < 2  # left
    assert east[1] < -40 and abs(east[0]) < 2  # top
    img, _ = render(raster, camera, (0.0, 0.0), 40.0, Attitude(0, 0, math.pi / 2))
    north, east = blob_centre(img, 0) - c, blob_centre(img, 1) - c
    assert north[1] < -40 and abs(north[0]) < 2  # top
    assert east[0] > 40 and abs(east[1]) < 2  # right
    # nose down (pitch > 0) turns the nadir camera backwards: a point ahead (east) moves towards the image top
    img0, _ = render(raster, camera, (0.0, 0.0), 40.0, Attitude(0, 0, 0))
    img, _ = render(raster, camera, (0.0, 0.0), 40.0, Attitude(0, math.radians(10), 0))
    assert blob_centre(img, 1)[1] < blob_centre(img0, 1)[1] - 40
    # right side down (roll > 0) turns it to look left (north): the northern point moves towards the image centre
    img, _ = render(raster, camera, (0.0, 0.0), 40.0, Attitude(math.radians(10), 0, 0))
    assert blob_centre(img, 0)[0] > blob_centre(img0, 0)[0] + 40


@pytest.mark.parametrize("yaw_deg", [0, 90, -135])
def test_rectify_is_north_up_whatever_the_yaw(yaw_deg):
    raster = marker_raster()
    att = Attitude.from_degrees(5, -5, yaw_deg)
    img, _ = render(raster, PINHOLE, (0.0, 0.0), 40.0, att)
    gv = rectify(img, PINHOLE, att, 40.0, 0.1)
    for channel, (x, y) in ((0, (0.0, 10.0)), (1, (10.0, 0.0))):
        u, v = blob_centre(gv.image, channel)
        gx, gy = gv.to_local(u, v)
        assert abs(gx - x) < 0.15 and abs(gy - y) < 0.15, (yaw_deg, channel, gx, gy)


# ---------------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("attitude", [Attitude.from_degrees(8, -12, 33), Attitude.from_degrees(-20, 15, -170)])
def test_rectify_matches_warp_perspective(attitude):
    cam = CameraModel.from_fov(640, 480, 70)
    frame = textured_noise(480, 640)
    h = 50.0
    gsd = 0.9 * h / cam.fx  # about the camera's resolution: no pyramid level involved
    W, H_ = 760, 640
    gv = rectify(frame, cam, attitude, h, gsd, size_px=(W, H_), center_xy=(3.0, -2.0))
    assert gv.x_min == pytest.approx(3.0 - W / 2 * gsd) and gv.y_max == pytest.approx(-2.0 + H_ / 2 * gsd)
    H = ground_homography(cam, attitude, h, gv.x_min, gv.y_max, gsd)
    ref = cv2.warpPerspective(
        frame, H, (W, H_), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
    )
    # the mask is exactly where the homography lands inside the image
    u, v = np.meshgrid(np.arange(W), np.arange(H_))
    p = H @ np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
    uv = (p[:2] / p[2]).T.reshape(H_, W, 2)
    inside = (p[2].reshape(H_, W) > 0) & np.all((uv >= -0.5) & (uv <= [639.5, 479.5]), axis=2)
    border = inside ^ cv2.erode(inside.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert 0.2 < gv.mask.mean() < 0.99
    assert np.array_equal(gv.mask & ~border, inside & ~border)
    diff = np.abs(gv.image.astype(int) - ref.astype(int))[gv.mask & inside]
    # OpenCV 5.x samples both at float precision: 2 DN (float32 maps against warpPerspective's own coordinates).
    # 4.x rounds each coordinate to 2**-bits px, remap from our float32 maps, warpPerspective from its own
    # arithmetic: where the two round to neighbouring steps a value moves by up to a step times the frame's
    # steepest gradient along each axis.
    bits = remap_fraction_bits(frame.shape[2])
    steepest = int(max(np.abs(np.diff(frame.astype(int), axis=a)).max() for a in (0, 1)))
    tol = 2 if bits is None else 2 + math.ceil(2 * steepest / 2**bits)
    assert diff.max() <= tol and diff.mean() < 0.3, (diff.max(), diff.mean(), tol)
    assert np.all(gv.image[~gv.mask] == 0)


def test_rectify_antialiasing_matches_warp_perspective_on_the_pyramid():
    """Nadir view, output 4x coarser than the camera: rectify must equal the same blend of pyrDown levels warped
    with the analytic homography (checks the pyramid's pixel-centre convention x_k = x_0 / 2^k)."""
    cam = CameraModel.from_fov(640, 480, 70)
    frame = textured_noise(480, 640, seed=3, sigma=0.8)
    h, scale = 50.0, 4.0
    gsd = scale * h / cam.fx
    att = Attitude.from_degrees(0, 0, 17)
    gv = rectify(frame, cam, att, h, gsd, size_px=(100, 80))
    H = ground_homography(cam, att, h, gv.x_min, gv.y_max, gsd)
    level = max(math.log2(scale) - view._AREA_BIAS, math.log2(scale) - view._LONG_AXIS_BIAS)
    lo = int(math.floor(level))
    f = level - lo
    pyr = [frame]
    for _ in range(lo + 1):
        pyr.append(cv2.pyrDown(pyr[-1]))
    ref = np.zeros(gv.image.shape, np.float64)
    for k, wk in ((lo, 1 - f), (lo + 1, f)):
        S = np.diag([2.0**-k, 2.0**-k, 1.0])
        warped = cv2.warpPerspective(
            pyr[k], S @ H, (100, 80), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
        )
        ref += wk * warped
    assert gv.mask.all()
    diff = np.abs(gv.image.astype(np.float64) - ref)
    assert diff.max() <= 2.0 and diff.mean() < 0.5, (diff.max(), diff.mean())
    # and it differs clearly from the aliased level-0 warp
    plain = cv2.warpPerspective(frame, H, (100, 80), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    assert np.abs(gv.image.astype(np.float64) - plain).mean() > 5 * diff.mean()


# ---------------------------------------------------------------------------------------------------- round trips
ORTHOS = [
    # name, pinhole height, fisheye height (camera resolution comparable to the ortho's gsd)
    ("swissimage_zurich_a_0.5m.tif", 60.0, 60.0),
    ("netherlands_0.25m.tif", 40.0, 30.0),
    ("openaerialmap_manila_0.1m.tif", 20.0, 15.0),
]
ATTITUDES = [(0, 0, 0), (0, 30, 45), (30, 0, 120), (20, 20, -100), (-15, -25, 200)]


def camera_scale(camera: CameraModel, attitude: Attitude, height: float, gv: GroundView) -> np.ndarray:
    """Camera pixels per rectified pixel (sqrt of the Jacobian determinant), computed independently of view.py."""
    u, v = np.meshgrid(np.arange(gv.width, dtype=float), np.arange(gv.height, dtype=float))
    x, y = gv.to_local(u, v)
    R_w2c = R_cam2world(attitude).T
    pts = np.stack([x - 0, y - 0, np.full_like(x, -height)], axis=-1) @ R_w2c.T
    uv, _ = camera.project(pts.reshape(-1, 3))
    uv = uv.reshape(gv.height, gv.width, 2)
    du_dx = np.gradient(uv[..., 0], axis=1)
    du_dy = np.gradient(uv[..., 0], axis=0)
    dv_dx = np.gradient(uv[..., 1], axis=1)
    dv_dy = np.gradient(uv[..., 1], axis=0)
    return np.sqrt(np.abs(du_dx * dv_dy - du_dy * dv_dx))


@pytest.mark.parametrize("rpy", ATTITUDES, ids=lambda a: "rpy=" + ",".join(map(str, a)))
@pytest.mark.parametrize("camera_name", ["pinhole", "fisheye"])
@pytest.mark.parametrize("ortho", ORTHOS, ids=lambda o: o[0].split("_")[0] + "_" + o[0].split("_")[-1][:-4])
def test_render_rectify_round_trip_reproduces_the_orthophoto(shared_data, ortho, camera_name, rpy):
    name, h_pin, h_fish = ortho
    raster = load_ortho(shared_data, name)
    camera, height = (PINHOLE, h_pin) if camera_name == "pinhole" else (FISHEYE, h_fish)
    att = Attitude.from_degrees(*rpy)
    pos = raster.center()
    frame, fmask = render(raster, camera, pos, height, att)
    assert fmask.mean() > 0.6  # wide or tilted views see past the raster (or the horizon)
    gv = rectify(frame, camera, att, height, raster.gsd)
    seen = rectify(fmask.astype(np.uint8) * 255, camera, att, height, raster.gsd).image >= 250
    u, v = np.meshgrid(np.arange(gv.width), np.arange(gv.height))
    x, y = gv.to_local(u, v)
    ref, ref_mask = sample_raster(raster, x + pos[0], y + pos[1])
    a, b = gray(ref), gray(gv.image)
    mu = cv2.blur(a, (7, 7))
    std = np.sqrt(np.maximum(cv2.blur(a * a, (7, 7)) - mu * mu, 0))
    common = gv.mask & seen & ref_mask & (std > 8.0)  # textured pixels inside both masks
    # detail the camera never resolved cannot come back: score where the camera resolves the ortho's gsd (at least
    # 0.5 camera px per ortho px); the whole common area is reported too
    resolved = common & (camera_scale(camera, att, height, gv) >= 0.5)
    assert resolved.sum() > 5000
    n_all, n_res = ncc(a[common], b[common]), ncc(a[resolved], b[resolved])
    print(
        f"\nNCC {camera_name:7s} rpy={rpy!s:15s} {name:32s} resolved={n_res:.3f} ({resolved.sum()} px) "
        f"all={n_all:.3f} ({common.sum()} px)"
    )
    assert n_res >= 0.9
    assert n_all >= 0.85


# ---------------------------------------------------------------------------------------------------- anti-aliasing
def _render_plain(raster: Raster, camera: CameraModel, pos, height, att) -> tuple[np.ndarray, np.ndarray]:
    """Independent reference: undistorted camera, one bilinear sample of the raster per pixel (no pre-filter)."""
    u, v = np.meshgrid(np.arange(camera.width, dtype=np.float64), np.arange(camera.height, dtype=np.float64))
    rays = np.stack([(u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy, np.ones_like(u)], axis=-1)
    d = rays @ R_cam2world(att).T
    t = height / -d[..., 2]
    return sample_raster(raster, pos[0] + t * d[..., 0], pos[1] + t * d[..., 1])


def test_render_tilted_view_is_neither_aliased_nor_overblurred(shared_data):
    raster = load_ortho(shared_data, "openaerialmap_manila_0.1m.tif")
    cam = CameraModel.from_fov(240, 180, 60)
    att = Attitude.from_degrees(0, 30, 20)
    pos, height = raster.center(), 40.0  # ~0.19 m/px at nadir, ~0.4 m/px (4 ortho px) at the far edge
    sup, sup_mask = _render_plain(raster, cam.scaled(8), pos, height, att)
    truth = cv2.resize(sup, (240, 180), interpolation=cv2.INTER_AREA).astype(np.float32)  # 64 samples per pixel
    truth_mask = cv2.resize(sup_mask.astype(np.uint8), (240, 180), interpolation=cv2.INTER_NEAREST) > 0
    plain, _ = _render_plain(raster, cam, pos, height, att)
    img, mask = render(raster, cam, pos, height, att)
    sel = mask & truth_mask
    assert sel.mean() > 0.95
    err = np.abs(img.astype(np.float32) - truth)[sel].mean()
    err_plain = np.abs(plain.astype(np.float32) - truth)[sel].mean()
    # over-blurred alternative: one pyramid level (the far field's) for the whole frame
    small = cv2.pyrDown(cv2.pyrDown(raster.image))
    blurred = Raster(small, np.ones(small.shape[:2], bool), raster.gsd * 4, raster.x_min, raster.y_max)
    blur, _ = _render_plain(blurred, cam, pos, height, att)
    err_blur = np.abs(blur.astype(np.float32) - truth)[sel].mean()
    far, near = sel.copy(), sel.copy()
    far[60:] = False
    near[:120] = False
    e_far = np.abs(img.astype(np.float32) - truth)[far].mean()
    e_far_plain = np.abs(plain.astype(np.float32) - truth)[far].mean()
    sharp = np.abs(np.diff(gray(img), axis=1))[near[:, 1:]].mean()
    sharp_truth = np.abs(np.diff(gray(truth.astype(np.uint8)), axis=1))[near[:, 1:]].mean()
    print(
        f"\nanti-aliasing (30 deg tilt): mean |err| vs 8x supersampling: mip={err:.2f} plain={err_plain:.2f} "
        f"single-level={err_blur:.2f}; far third mip={e_far:.2f} plain={e_far_plain:.2f}; "
        f"near-field sharpness mip/truth={sharp / sharp_truth:.2f}"
    )
    assert err < 0.8 * err_plain  # not aliased
    assert e_far < 0.7 * e_far_plain
    assert err < 0.8 * err_blur  # not over-blurred
    assert sharp > 0.85 * sharp_truth


def test_rectify_prefilters_a_fine_frame():
    """A frame much finer than the output gsd: a checkerboard of 2-px squares must average to grey, not alias."""
    cam = CameraModel.from_fov(640, 480, 70)
    i = np.arange(640)[None, :] // 2 + np.arange(480)[:, None] // 2
    frame = ((i % 2) * 255).astype(np.uint8)
    att, gsd = Attitude.from_degrees(0, 0, 10), 6 * 50.0 / cam.fx  # 6 camera pixels per output pixel
    gv = rectify(frame, cam, att, 50.0, gsd, size_px=(64, 48))
    assert gv.image.shape == (48, 64) and gv.mask.all()
    assert abs(gv.image.mean() - 127.5) < 3 and gv.image.std() < 6
    near = rectify(frame, cam, att, 50.0, gsd, size_px=(64, 48), interpolation="nearest")
    assert near.image.std() < 12  # nearest also samples from the mip level


# ---------------------------------------------------------------------------------------------------- footprint
def test_footprint_nadir_rectangle_and_orientation():
    cam = CameraModel.from_fov(640, 480, 70)
    h = 50.0
    poly = ground_footprint(cam, Attitude(0, 0, 0), h, points_per_edge=4)
    assert poly.shape == (16, 2)
    half_w = 320 / cam.fx * h  # image x = south at yaw 0, so the image width spans north-south
    half_h = 240 / cam.fy * h
    np.testing.assert_allclose(poly[:, 1].max(), half_w, rtol=1e-12)
    np.testing.assert_allclose(poly[:, 1].min(), -half_w, rtol=1e-12)
    np.testing.assert_allclose(poly[:, 0].max(), half_h, rtol=1e-12)
    np.testing.assert_allclose(poly[:, 0].min(), -half_h, rtol=1e-12)
    x, y = poly[:, 0], poly[:, 1]
    assert np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y) > 0  # counter-clockwise
    # the image's top-left corner is north-east at yaw 0 (top = east, left = north)
    tl = poly[np.argmin(np.hypot(poly[:, 0] - half_h, poly[:, 1] - half_w))]
    np.testing.assert_allclose(tl, [half_h, half_w], rtol=1e-12)


def test_footprint_moves_with_tilt_lever_arm_and_clips_far_rays():
    cam = CameraModel.from_fov(640, 480, 70)
    h = 50.0
    c_pitch = ground_footprint(cam, Attitude.from_degrees(0, 15, 0), h).mean(axis=0)
    assert c_pitch[0] < -5 and abs(c_pitch[1]) < 1e-6  # nose down: a nadir camera looks back (west at yaw 0)
    c_roll = ground_footprint(cam, Attitude.from_degrees(15, 0, 0), h).mean(axis=0)
    assert c_roll[1] > 5 and abs(c_roll[0]) < 1e-6  # right side down: it looks left (north)
    shifted = ground_footprint(cam, Attitude(), h, Mount(t_cam2body=(1.0, 0.0, 0.0)))
    np.testing.assert_allclose(shifted - ground_footprint(cam, Attitude(), h), np.tile([1.0, 0.0], (64, 1)), atol=1e-9)
    steep = ground_footprint(cam, Attitude.from_degrees(0, -60, 0), h)  # looks far ahead, past 75 deg
    r = np.hypot(*steep.T)
    assert r.max() == pytest.approx(h * math.tan(math.radians(75)), rel=1e-9)
    assert ground_footprint(cam, Attitude.from_degrees(0, -60, 0), h, max_angle_deg=80).max() > r.max()


def test_footprint_of_distorted_cameras_bounds_the_rectified_mask():
    for cam in (PINHOLE, FISHEYE):
        att = Attitude.from_degrees(10, -10, 30)
        poly = ground_footprint(cam, att, 30.0, points_per_edge=64)
        gv = rectify(np.full((480, 640, 3), 200, np.uint8), cam, att, 30.0, 0.2)
        x0, y0, x1, y1 = gv.bounds
        assert x0 <= poly[:, 0].min() and x1 >= poly[:, 0].max() and y0 <= poly[:, 1].min() and y1 >= poly[:, 1].max()
        assert x1 - x0 < np.ptp(poly[:, 0]) + 2 * gv.gsd + 1e-9
        # mask pixels inside the polygon (away from its edge) are all valid; outside it they are invalid, except
        # beyond the 75 deg clipping radius where a wide lens still sees ground
        u, v = gv.to_pixel(poly[:, 0], poly[:, 1])
        pts = np.round(np.stack([u, v], axis=1) * 16).astype(np.int32)  # pixel centres at integers, 4-bit sub-pixel
        inside = np.zeros(gv.mask.shape, np.uint8)
        cv2.fillPoly(inside, [pts.reshape(-1, 1, 2)], 1, lineType=cv2.LINE_8, shift=4)
        kernel = np.ones((5, 5), np.uint8)
        core = cv2.erode(inside, kernel).astype(bool)
        outside = ~cv2.dilate(inside, kernel).astype(bool)
        x, y = gv.to_local(*np.meshgrid(np.arange(gv.width), np.arange(gv.height)))
        outside &= np.hypot(x, y) < 0.95 * 30.0 * math.tan(math.radians(75))  # chords cut the clipped arcs
        assert core.sum() > 0.3 * core.size and outside.sum() > 1000
        assert gv.mask[core].all()
        assert not gv.mask[outside].any()
        assert np.all(gv.image[gv.mask] == 200)


# ---------------------------------------------------------------------------------------------------- API details
def test_rectify_gray_frame_and_ground_view_is_a_ground_raster():
    frame = textured_noise(480, 640)[:, :, 0]
    gv = rectify(frame, PINHOLE, Attitude(), 40.0, 0.1, size_px=(64, 32))
    assert gv.image.shape == (32, 64) and gv.image.dtype == np.uint8 and gv.mask.dtype == bool
    assert isinstance(gv, GroundRaster)
    assert gv.bounds == pytest.approx((-3.2, -1.6, 3.2, 1.6))
    # a rectified view renders back (it is a ground raster too)
    img, mask = render(gv, PINHOLE, (0.0, 0.0), 40.0, Attitude())
    assert img.shape == (480, 640) and mask.any() and not mask.all()
    assert img[mask].std() > 10


def test_render_from_an_orthophoto_and_masks_nodata():
    from maps.geodesy import LocalFrame
    from maps.ortho import Orthophoto

    img = textured_noise(400, 400)
    mask = np.ones((400, 400), bool)
    mask[:, :200] = False  # west half is nodata
    ortho = Orthophoto(img, mask, 0.1, -20.0, 20.0, LocalFrame(47.0, 8.0))
    out, valid = render(ortho, PINHOLE, (0.0, 0.0), 20.0, Attitude(0, 0, math.pi / 2))  # nose north: west = left
    assert valid.dtype == bool and out.shape == (480, 640, 3)
    assert not valid[:, :300].any() and valid[:, 340:].all()
    assert np.all(out[~valid] == 0)


def test_render_looking_at_the_sky_is_empty_not_an_error():
    raster = marker_raster()
    img, mask = render(raster, PINHOLE, (0.0, 0.0), 40.0, Attitude(math.pi, 0, 0))
    assert not mask.any() and not img.any()


def test_render_outside_the_raster_is_masked():
    raster = marker_raster()
    img, mask = render(raster, PINHOLE, (95.0, 0.0), 40.0, Attitude())  # raster ends 5 m east
    assert mask.any() and not mask.all()
    assert not mask[:150].any()  # top = east = beyond the raster edge
    assert np.all(img[~mask] == 0)


def test_ray_grid_is_cached_and_read_only():
    a = view._ray_grid(PINHOLE)
    assert view._ray_grid(CameraModel.from_fov(640, 480, 70, distortion=(-0.25, 0.07, 0.0, 0.0))) is a
    with pytest.raises(ValueError):
        a[0][0, 0] = 1.0


# ---------------------------------------------------------------------------------------------------- errors
def test_errors_height_gsd_and_sizes():
    frame = np.zeros((480, 640, 3), np.uint8)
    for bad in (0.0, -5.0, float("nan")):
        with pytest.raises(GeometryError, match="height_m must be > 0 metres"):
            rectify(frame, PINHOLE, Attitude(), bad, 0.1)
        with pytest.raises(GeometryError, match="height_m must be > 0"):
            render(marker_raster(), PINHOLE, (0.0, 0.0), bad, Attitude())
        with pytest.raises(GeometryError, match="height_m must be > 0"):
            ground_footprint(PINHOLE, Attitude(), bad)
        with pytest.raises(GeometryError, match="gsd must be > 0 m/px"):
            rectify(frame, PINHOLE, Attitude(), 40.0, bad)
    with pytest.raises(GeometryError, match="size_px"):
        rectify(frame, PINHOLE, Attitude(), 40.0, 0.1, size_px=(0, 10))
    with pytest.raises(GeometryError, match="camera model is 640x480"):
        rectify(np.zeros((240, 320, 3), np.uint8), PINHOLE, Attitude(), 40.0, 0.1)
    with pytest.raises(GeometryError, match="interpolation"):
        rectify(frame, PINHOLE, Attitude(), 40.0, 0.1, interpolation="lanczos")
    with pytest.raises(GeometryError, match="lever arm"):
        rectify(frame, PINHOLE, Attitude(), 0.05, 0.1, mount=Mount(t_cam2body=(0, 0, -0.1)))
    with pytest.raises(GeometryError, match=r"lacks \['mask'"):
        render(type("R", (), {"image": frame, "gsd": 1.0, "x_min": 0.0, "y_max": 0.0})(), PINHOLE, (0, 0), 10, Attitude())


@pytest.mark.parametrize(
    "attitude", [Attitude(math.pi, 0, 0), Attitude(0, math.radians(110), 0), Attitude(0, math.radians(-120), 1.0)]
)
def test_errors_camera_at_or_above_the_horizon(attitude):
    frame = np.zeros((480, 640, 3), np.uint8)
    cam = CameraModel.from_fov(640, 480, 40)
    for call in (
        lambda: rectify(frame, cam, attitude, 40.0, 0.1),
        lambda: rectify(frame, cam, attitude, 40.0, 0.1, size_px=(100, 100)),
        lambda: ground_footprint(cam, attitude, 40.0),
    ):
        with pytest.raises(GeometryError, match="horizon") as info:
            call()
        assert isinstance(info.value, CalibrationError)
        assert "attitude" in str(info.value)


def test_error_ground_only_beyond_the_angle_limit():
    cam = CameraModel.from_fov(640, 480, 20)
    att = Attitude.from_degrees(0, -80, 0)  # optical axis 80 deg from nadir, narrow lens: all rays 72..88 deg
    with pytest.raises(GeometryError, match="within 60"):
        rectify(np.zeros((480, 640), np.uint8), cam, att, 40.0, 0.5, max_angle_deg=60)
    gv = rectify(np.full((480, 640), 9, np.uint8), cam, att, 40.0, 0.5, size_px=(200, 200), center_xy=(227.0, 0.0))
    assert gv.mask.any() and np.all(gv.image[gv.mask] == 9)  # an explicit window is not limited by the angle
    poly = ground_footprint(cam, att, 40.0, max_angle_deg=85)
    assert poly[:, 0].min() > 40.0 * math.tan(math.radians(70))


# ---------------------------------------------------------------------------------------------------- timings
def test_timings_are_reported():
    frame = textured_noise(480, 640)
    att = Attitude.from_degrees(10, 20, 30)
    raster = marker_raster()
    rectify(frame, PINHOLE, att, 60.0, 0.25, size_px=(256, 256))  # warm the caches
    render(raster, PINHOLE, (0.0, 0.0), 60.0, att)

    def median_ms(fn, n=15):
        ts = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return 1e3 * float(np.median(ts))

    t_rect = median_ms(lambda: rectify(frame, PINHOLE, att, 60.0, 0.25, size_px=(256, 256)))
    t_rect_fish = median_ms(lambda: rectify(frame, FISHEYE, att, 60.0, 0.25, size_px=(256, 256)))
    t_render = median_ms(lambda: render(raster, PINHOLE, (0.0, 0.0), 60.0, att), n=7)
    print(
        f"\ntimings: rectify 640x480->256x256 pinhole {t_rect:.1f} ms, fisheye {t_rect_fish:.1f} ms; "
        f"render 640x480 {t_render:.1f} ms"
    )
    assert t_rect < 100 and t_render < 500  # generous: a shared CPU; catches pathological regressions only
