"""runtime.ground_view on real orthophotos: render a frame at a known pose, make the ground view, compare with the map."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calibration.camera_io import default_camera
from calibration.geometry import Attitude, Mount
from calibration.view import render
from runtime.errors import OnboardError
from runtime.events import STATUS_NO_FIX, GpsFix
from runtime.ground_view import GroundView, GroundViewer, GroundViewError, HeightError, HeightKeeper

ORTHO = "ortho/swissimage_zurich_a_0.5m.tif"
GSD = 0.4
SIZE = 128


@pytest.fixture(scope="module")
def maps(shared_data):
    from maps.geotiff import load_orthophoto
    from maps.tiling import resample_to_gsd

    ortho = load_orthophoto(shared_data(ORTHO))
    return ortho, resample_to_gsd(ortho, GSD)


@pytest.fixture(scope="module")
def camera():
    return default_camera()


@pytest.fixture(scope="module")
def viewer(camera):
    return GroundViewer(camera, GSD, SIZE)


def _tile(ortho04, xy, size=SIZE) -> np.ndarray:
    from maps.tiling import TileGrid, cut_tiles

    return cut_tiles(ortho04, [xy], TileGrid(size * GSD, size * GSD / 4, GSD))[0]


def _ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    a = a.astype(np.float64).mean(axis=2)[mask]
    b = b.astype(np.float64).mean(axis=2)[mask]
    a -= a.mean()
    b -= b.mean()
    return float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum()))


POSES = [  # (x, y, height, roll_deg, pitch_deg, yaw_deg)
    (10.0, 5.0, 60.0, 0.0, 0.0, 30.0),
    (-80.0, 30.0, 80.0, 6.0, -7.0, 135.0),
    (95.0, -40.0, 100.0, -4.0, 9.0, -100.0),
]


@pytest.mark.parametrize("pose", POSES)
def test_round_trip_matches_the_map_tile_and_a_wrong_yaw_does_not(maps, camera, viewer, pose):
    ortho, ortho04 = maps
    x, y, h, r, p, yaw = pose
    att = Attitude.from_degrees(r, p, yaw)
    frame, _ = render(ortho, camera, (x, y), h, att)
    (view,) = viewer.views(frame, height_m=h, attitude=att, yaws=[0.0, 1.0])  # yaws ignored with an attitude
    assert view.size_px >= SIZE and (view.size_px - SIZE) % 2 == 0
    assert view.image.dtype == np.uint8 and view.image.shape == (view.size_px, view.size_px, 3)
    assert view.mask.dtype == bool and view.mask.shape == (view.size_px, view.size_px)
    assert view.gsd == GSD and view.height_m == h and view.yaw_rad == pytest.approx(att.yaw)
    assert not view.image[~view.mask].any()
    crop = view.crop(SIZE)
    assert crop.image.shape == (SIZE, SIZE, 3) and crop.valid_fraction > 0.8
    tile = _tile(ortho04, (x, y))
    good = _ncc(crop.image, tile, crop.mask)
    assert good > 0.93
    # the context view matches the bigger map patch too
    big = _tile(ortho04, (x, y), view.size_px)
    assert _ncc(view.image, big, view.mask) > 0.9
    # a yaw off by 20 degrees rotates the view about the nadir point: much worse
    wrong = Attitude(att.roll, att.pitch, att.yaw + math.radians(20.0))
    bad_view = viewer.views(frame, height_m=h, attitude=wrong)[0].crop(SIZE)
    bad = _ncc(bad_view.image, tile, bad_view.mask)
    assert bad < good - 0.25 and bad < 0.75
    # the wrong view is the right one rotated by +20 deg (counter-clockwise, ENU) about the nadir point
    import cv2

    c = (view.size_px - 1) / 2.0
    M = cv2.getRotationMatrix2D((c, c), 20.0, 1.0)
    rot = cv2.warpAffine(view.image, M, (view.size_px, view.size_px))
    rmask = cv2.warpAffine(view.mask.astype(np.float32), M, (view.size_px, view.size_px)) > 0.99
    bad_full = viewer.views(frame, height_m=h, attitude=wrong)[0]
    assert _ncc(bad_full.image, rot, rmask & bad_full.mask) > 0.95


def test_heading_hypotheses_without_attitude(maps, camera, viewer):
    ortho, ortho04 = maps
    true_yaw = math.radians(57.0)
    frame, _ = render(ortho, camera, (-30.0, -15.0), 75.0, Attitude(0.0, 0.0, true_yaw))
    yaws = [true_yaw + math.radians(d) for d in (180.0, 90.0, 0.0, -90.0)]
    views = viewer.views(frame, height_m=75.0, yaws=yaws)
    assert [v.yaw_rad for v in views] == pytest.approx(yaws)
    tile = _tile(ortho04, (-30.0, -15.0))
    scores = [_ncc(v.crop(SIZE).image, tile, v.crop(SIZE).mask) for v in views]
    assert int(np.argmax(scores)) == 2
    assert scores[2] > 0.93 and max(scores[:2] + scores[3:]) < 0.5


def test_context_size_is_clipped_to_what_the_camera_sees(camera):
    big = GroundViewer(camera, GSD, SIZE, context_px=2000)
    side = big.context_size(60.0)
    # the level camera's footprint at 60 m: corners ~53 m from the nadir point -> a ~267 px circle at 0.4 m
    assert 250 <= side <= 280 and (side - SIZE) % 2 == 0
    assert big.context_size(100.0) > side  # higher: sees more
    assert big.context_size(60.0, Attitude.from_degrees(0, 10, 0)) > side  # tilted: the far side is further
    low = GroundViewer(camera, GSD, SIZE, context_px=129)
    assert low.context_size(60.0) in (SIZE, SIZE + 2) and low.context_size(60.0) >= SIZE
    assert GroundViewer(camera, GSD, SIZE).context_size(80.0) == 2 * SIZE  # the default: 2 x size_px
    tiny = GroundViewer(camera, 2.0, 100, context_px=400)  # 2 m/px: the footprint is smaller than size_px
    assert tiny.context_size(30.0) == 100


def test_crop_keeps_the_nadir_centred_and_rejects_bad_sizes(maps, camera, viewer):
    ortho, _ = maps
    att = Attitude.from_degrees(0, 0, 10)
    frame, _ = render(ortho, camera, (0.0, 0.0), 80.0, att)
    view = viewer.views(frame, height_m=80.0, attitude=att)[0]
    s = view.size_px
    c = view.crop(s - 10)
    assert np.array_equal(c.image, view.image[5:s - 5, 5:s - 5]) and np.array_equal(c.mask, view.mask[5:s - 5, 5:s - 5])
    assert view.crop(s).image.shape == view.image.shape
    with pytest.raises(GroundViewError, match=r"cannot crop 1000 px out of a \d+ px view; make the GroundViewer's "
                                              r"context_px >= 1000"):
        view.crop(1000)
    with pytest.raises(GroundViewError, match="differ by an odd number"):
        view.crop(s - 3)
    for bad in (0, -4, 2.5, True, "64"):
        with pytest.raises(GroundViewError, match="crop size_px must be a positive integer"):
            view.crop(bad)


def test_views_error_messages(camera, viewer):
    frame = np.zeros((480, 640, 3), np.uint8)
    with pytest.raises(GroundViewError, match="image must be a numpy array uint8"):
        viewer.views(frame.tolist(), height_m=80.0, attitude=Attitude())
    with pytest.raises(GroundViewError, match=r"image must be RGB uint8\[480, 640, 3\].*got uint8\[240, 320, 3\]; "
                                              r"for a resized stream use camera.scaled"):
        viewer.views(frame[::2, ::2], height_m=80.0, attitude=Attitude())
    with pytest.raises(GroundViewError, match=r"got float32\[480, 640, 3\]"):
        viewer.views(frame.astype(np.float32), height_m=80.0, attitude=Attitude())
    with pytest.raises(GroundViewError, match=r"got uint8\[480, 640\]"):
        viewer.views(frame[:, :, 0], height_m=80.0, attitude=Attitude())
    for h in (0.0, -5.0, float("nan"), float("inf")):
        with pytest.raises(GroundViewError, match="height_m must be > 0 metres above ground.*ground_elevation_m"):
            viewer.views(frame, height_m=h, attitude=Attitude())
    with pytest.raises(GroundViewError, match="height_m must be a number of metres"):
        viewer.views(frame, height_m="high", attitude=Attitude())
    with pytest.raises(GroundViewError, match=r"needs the attitude or heading hypotheses: pass attitude=Attitude"):
        viewer.views(frame, height_m=80.0)
    with pytest.raises(GroundViewError, match="yaws is empty"):
        viewer.views(frame, height_m=80.0, yaws=[])
    with pytest.raises(GroundViewError, match="yaws must be finite"):
        viewer.views(frame, height_m=80.0, yaws=[0.0, float("nan")])
    with pytest.raises(GroundViewError, match="yaws must be a sequence of numbers"):
        viewer.views(frame, height_m=80.0, yaws=["north"])
    with pytest.raises(GroundViewError, match="attitude must be a calibration.geometry.Attitude or None, got tuple"):
        viewer.views(frame, height_m=80.0, attitude=(0.0, 0.0, 0.0))
    # upside down: the camera sees the sky
    with pytest.raises(GroundViewError, match="cannot make a ground view at height 80.0 m .*horizon"):
        viewer.views(frame, height_m=80.0, attitude=Attitude(math.pi, 0.0, 0.0))
    # every error is an OnboardError
    assert issubclass(GroundViewError, OnboardError) and issubclass(HeightError, OnboardError)


def test_viewer_constructor_errors(camera):
    with pytest.raises(GroundViewError, match="camera must be a calibration.camera.CameraModel, got str"):
        GroundViewer("default", GSD, SIZE)
    with pytest.raises(GroundViewError, match="mount must be a calibration.geometry.Mount, got list"):
        GroundViewer(camera, GSD, SIZE, mount=[[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    for gsd in (0.0, -0.4, float("nan")):
        with pytest.raises(GroundViewError, match="gsd must be > 0 metres per pixel"):
            GroundViewer(camera, gsd, SIZE)
    with pytest.raises(GroundViewError, match="gsd must be a number of metres per pixel"):
        GroundViewer(camera, None, SIZE)
    for size in (0, -1, 12.5, True):
        with pytest.raises(GroundViewError, match="size_px must be a positive integer"):
            GroundViewer(camera, GSD, size)
    with pytest.raises(GroundViewError, match="context_px must be a positive integer"):
        GroundViewer(camera, GSD, SIZE, context_px=0)
    with pytest.raises(GroundViewError, match=r"context_px \(100\) must be >= size_px \(128\)"):
        GroundViewer(camera, GSD, SIZE, context_px=100)


def test_mount_lever_arm_is_used(maps, camera):
    """A camera 0.5 m forward of the body origin: the view stays centred on the body's nadir point."""
    ortho, ortho04 = maps
    mount = Mount(t_cam2body=(0.5, 0.0, -0.2))
    viewer = GroundViewer(camera, GSD, SIZE, mount=mount)
    att = Attitude.from_degrees(2, 3, -20)
    frame, _ = render(ortho, camera, (40.0, 10.0), 70.0, att, mount=mount)
    crop = viewer.views(frame, height_m=70.0, attitude=att)[0].crop(SIZE)
    assert _ncc(crop.image, _tile(ortho04, (40.0, 10.0)), crop.mask) > 0.93


# ---------------------------------------------------------------------------------------------------- height
def _fix(t_s: float, alt: float, status: int = 0) -> GpsFix:
    return GpsFix(t_ns=int(t_s * 1e9), lat=47.37, lon=8.54, alt=alt, status=status)


def test_height_keeper_holds_through_an_outage():
    hk = HeightKeeper(ground_elevation_m=408.0, alpha=1.0, beta=0.0)  # no smoothing: each fix as is
    assert not hk.ready and hk.age_s(0) == math.inf
    with pytest.raises(HeightError, match="no height above ground yet: no usable GPS fix has arrived"):
        hk.height_m
    assert hk.update(_fix(0.0, 488.0))
    assert hk.ready and hk.height_m == pytest.approx(80.0)
    assert hk.update(_fix(1.0, 490.5)) and hk.height_m == pytest.approx(82.5)
    # outage: no-fix messages and a NaN altitude are rejected, the last height is held and ages
    assert not hk.update(_fix(2.0, 300.0, status=STATUS_NO_FIX))
    assert "no GPS fix at t_ns=2000000000" in hk.last_rejection
    assert not hk.update(_fix(3.0, float("nan")))
    assert hk.rejected == 2
    assert hk.height_m == pytest.approx(82.5) and hk.age_s(int(5e9)) == pytest.approx(4.0)
    # a fix below the map ground (wrong datum) is rejected with the reason
    assert not hk.update(_fix(4.0, 350.0))
    assert "below min_height_m 1.0 m; check the map's ground_elevation_m" in hk.last_rejection
    assert hk.height_m == pytest.approx(82.5)
    # back: the new fix wins
    assert hk.update(_fix(6.0, 478.0)) and hk.height_m == pytest.approx(70.0) and hk.age_s(int(6e9)) == 0.0


def test_height_keeper_rejections_before_the_first_fix_are_reported():
    hk = HeightKeeper(100.0)
    hk.update(_fix(0.0, 50.0))
    with pytest.raises(HeightError, match=r"no usable GPS fix has arrived \(last rejection: GPS altitude 50.0 m"):
        hk.height_m


def test_height_keeper_scale_correction_hook():
    hk = HeightKeeper(0.0, alpha=1.0, beta=0.0)
    hk.update(_fix(0.0, 80.0))
    # the views matched best magnified by 1.05: the true height is ~84 m; a full-gain step takes it all
    assert hk.observe_scale(1.05, gain=1.0) == pytest.approx(84.0)
    assert hk.bias_m == pytest.approx(4.0)
    # the bias stays with later fixes
    hk.update(_fix(1.0, 90.0))
    assert hk.height_m == pytest.approx(94.0)
    h0 = hk.height_m
    assert hk.observe_scale(0.9) == pytest.approx(h0 - 0.2 * 0.1 * h0)  # default gain 0.2


def test_height_keeper_error_messages():
    with pytest.raises(HeightError, match="ground_elevation_m must be a finite number of metres"):
        HeightKeeper(float("nan"))
    with pytest.raises(HeightError, match="must be numbers of metres"):
        HeightKeeper("sea level")
    with pytest.raises(HeightError, match="min_height_m must be > 0 metres"):
        HeightKeeper(0.0, min_height_m=0.0)
    hk = HeightKeeper(0.0)
    with pytest.raises(HeightError, match="update\\(\\) takes a runtime.events.GpsFix, got dict"):
        hk.update({"alt": 80.0})
    with pytest.raises(HeightError, match="no height above ground yet"):
        hk.observe_scale(1.01)
    hk.update(_fix(0.0, 80.0))
    for s in (0.5, 2.0, float("nan"), -1.0):
        with pytest.raises(HeightError, match=r"scale must be in \(0.5, 2\)"):
            hk.observe_scale(s)
    for g in (0.0, 1.5):
        with pytest.raises(HeightError, match=r"gain must be in \(0, 1\]"):
            hk.observe_scale(1.01, gain=g)
    with pytest.raises(HeightError, match="scale and gain must be numbers"):
        hk.observe_scale("big")


def test_ground_view_is_frozen(maps, camera, viewer):
    view = GroundView(np.zeros((4, 4, 3), np.uint8), np.ones((4, 4), bool), 0.4, 0.0, 80.0)
    with pytest.raises(Exception):
        view.gsd = 1.0  # type: ignore[misc]
    assert view.valid_fraction == 1.0 and view.size_px == 4


def test_height_keeper_smooths_gps_altitude_noise_and_follows_a_climb():
    rng = np.random.default_rng(0)
    hk = HeightKeeper(100.0)
    t = np.arange(0, 60, 0.2)
    true = 60.0 + np.where(t > 30, (t - 30) * 1.0, 0.0)  # level, then a 1 m/s climb
    err = []
    for ti, h in zip(t, true):
        hk.update(_fix(float(ti), 100.0 + h + rng.normal(0, 6.0)))
        if ti > 10:
            err.append(hk.height_m - h)
    err = np.abs(np.array(err))
    assert np.median(err) < 2.0 and err.max() < 6.0  # raw fixes: median ~4 m, max ~20 m
    # a gap longer than max_gap_s restarts the filter from the next fix
    hk.update(_fix(100.0, 150.0))
    assert hk.height_m == pytest.approx(50.0)
    with pytest.raises(HeightError, match="alpha must be a gain in"):
        HeightKeeper(0.0, alpha=2.0)
    with pytest.raises(HeightError, match="alpha must be > 0"):
        HeightKeeper(0.0, alpha=0.0)
