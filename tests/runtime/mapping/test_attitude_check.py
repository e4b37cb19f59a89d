"""runtime.mapping.attitude_check: a survey's recorded attitude against the one its overlapping images give.

Rendered pairs over a textured flat ground with known attitudes (what the check must recover: a tilt put into the
recorded attitude on purpose), every skip reason and setting error, and real Seneca photos (the conventions of the
real senseFly files: correcting the recorded attitude by the measured error makes it agree with the images)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from calibration.camera import CameraModel
from calibration.geometry import NADIR_MOUNT, Attitude
from maps.geodesy import LocalFrame
from runtime.mapping.attitude_check import (AttitudeCheckError, CheckConfig, check_attitude, pair_check,
                                            robust_sigma)
from runtime.sources.photos import PhotoMeta

REPO = Path(__file__).resolve().parents[3]
FRAME = LocalFrame(41.0, -83.0)
HEIGHT = 60.0
CAMERA = CameraModel.from_fov(640, 480, 70.0)


def _survey(ground, recorded_b=None, positions=((-12.0, 0.0), (12.0, 0.0), (36.0, 0.0))):
    atts = [Attitude.from_degrees(2.0, -3.0, 10.0), Attitude.from_degrees(-1.5, 2.0, 12.0),
            Attitude.from_degrees(1.0, 1.0, 8.0)]
    shots = []
    for k, (xy, att) in enumerate(zip(positions, atts)):
        rec = recorded_b if (k == 1 and recorded_b is not None) else att
        shots.append(ground.shot(f"p{k}.jpg", xy, att, rec, 4.0 * k))
    metas = [m for m, _ in shots]
    images = {m.name: g for m, g in shots}
    return metas, images, atts


def test_recorded_attitude_that_is_right_checks_out(ground):
    metas, images, _ = _survey(ground)
    check = check_attitude(metas, [[0, 1, 2]], load=lambda m: images[m.name])
    assert len(check.pairs) == 2 and check.skipped == ()
    for p in check.pairs:
        assert p.inliers >= 100 and p.reprojection_px < 1.0
        assert np.abs(p.rotation_error_deg).max() < 0.3
        assert 0.3 < p.baseline < 0.5  # 24 m at 60 m
    assert max(check.tilt_error_deg.values()) < 0.5
    assert max(np.hypot(*v) for v in check.nadir_shift_m.values()) < 0.6
    d = check.to_dict()
    assert d["pairs_used"] == 2 and len(d["photos"]) == 3


def test_a_tilt_put_into_the_recorded_attitude_is_recovered(ground):
    """Photo 1's recorded roll is 4 degrees off: both of its pairs see a ~4 degree rotation error, its tilt error
    is ~4 degrees, and the nadir shift it makes is ~height * tan(4 deg) = 4.2 m; the other photos stay near 0."""
    metas, _, atts = _survey(ground)
    true = atts[1]
    wrong = Attitude(true.roll + math.radians(4.0), true.pitch, true.yaw)
    metas, images, _ = _survey(ground, recorded_b=wrong)
    check = check_attitude(metas, [[0, 1, 2]], load=lambda m: images[m.name])
    assert len(check.pairs) == 2
    for p in check.pairs:
        assert abs(np.linalg.norm(p.rotation_error_deg) - 4.0) < 0.4
    assert abs(check.tilt_error_deg["p1.jpg"] - 4.0) < 0.6
    assert abs(np.hypot(*check.nadir_shift_m["p1.jpg"]) - HEIGHT * math.tan(math.radians(4.0))) < 0.6
    assert check.tilt_error_deg["p0.jpg"] < 0.6 and check.tilt_error_deg["p2.jpg"] < 0.6


def test_every_skip_says_why(ground):
    metas, images, _ = _survey(ground)

    def f(m, img=None):
        from runtime.mapping.mosaic import sift_features

        return sift_features(images[m.name] if img is None else img)

    assert pair_check(replace(metas[0], attitude=None), metas[1], f(metas[0]), f(metas[1])) == "no recorded attitude"
    other = replace(metas[1], camera=CameraModel.from_fov(640, 480, 60.0))
    assert pair_check(metas[0], other, f(metas[0]), f(metas[1])) == "the two photos have different cameras"
    flat = np.full((480, 640), 128, np.uint8)
    assert "too few features" in pair_check(metas[0], metas[1], f(metas[0], flat), f(metas[1], flat))
    # two photos 1 m apart at 60 m: the rotation is seen, the ground normal is not
    close, close_images, _ = _survey(ground, positions=((0.0, 0.0), (1.0, 0.0), (2.0, 0.0)))
    feats = {m.name: f(m, close_images[m.name]) for m in close}
    res = pair_check(close[0], close[1], feats["p0.jpg"], feats["p1.jpg"])
    assert isinstance(res, str) and res.startswith("baseline |t|/d 0.0") and "undetermined" in res
    check = check_attitude(close, [[0, 1, 2]], load=lambda m: close_images[m.name])
    assert check.pairs == () and len(check.skipped) == 2 and check.tilt_error_deg == {}
    assert all(math.isnan(v) for v in check.rotation_sigma_deg)
    assert "0 used, 2 skipped" in check.format_text()


def test_bad_settings_and_lines_are_typed_errors(ground):
    with pytest.raises(AttitudeCheckError, match=r"ratio must be a number in \(0, 1\), got 1.5"):
        CheckConfig(ratio=1.5)
    with pytest.raises(AttitudeCheckError, match="min_inliers must be an integer >= 8, got 3"):
        CheckConfig(min_inliers=3)
    with pytest.raises(AttitudeCheckError, match="unknown"):
        CheckConfig.from_dict({"ratio": 0.7, "sift": 1})
    assert CheckConfig.from_dict({"ratio": 0.7}).ratio == 0.7
    metas, images, _ = _survey(ground)
    with pytest.raises(AttitudeCheckError, match=r"flight line \[0, 1, 5\] names photos \[5\] outside the 3 photos"):
        check_attitude(metas, [[0, 1, 5]], load=lambda m: images[m.name])


def test_gps_smoothness_reads_white_noise_as_such():
    """Photos on a straight line at constant speed with white GPS noise of 2 m per axis: the smoothness sigma is
    about 2 * sqrt(1.5) along and across (no images needed: a line of one photo pairs nothing)."""
    rng = np.random.default_rng(3)
    n = 400
    metas = []
    for k in range(n):
        x, y = 7.0 * 4.5 * k + rng.normal(0, 2.0), rng.normal(0, 2.0)
        lat, lon = FRAME.to_wgs84(x, y)
        metas.append(PhotoMeta(Path(f"g{k}.jpg"), int(4.5e9 * k), float(lat), float(lon), 60.0, 60.0, CAMERA,
                               None, NADIR_MOUNT, "exif"))
    check = check_attitude(metas, [list(range(n))], load=lambda m: np.zeros((480, 640), np.uint8))
    assert len(check.skipped) == n - 1 and all(r == "no recorded attitude" for *_, r in check.skipped)
    along, cross = check.gps_sigma_m
    expect = 2.0 * math.sqrt(1.5)
    assert abs(along - expect) < 0.35 and abs(cross - expect) < 0.35
    np.testing.assert_allclose(robust_sigma(np.array([[-1.0, 2.0], [0.0, 0.0], [1.0, -2.0]])), [1.4826, 2.9652])


SENECA = "real/seneca/images"
LINE = [f"IMG_{k:04d}.jpg" for k in range(446, 451)]  # one flight line, photos ~4.5 s apart


def test_real_sensefly_photos(shared_data):
    """Five consecutive real photos: the pairs register (a homography fits to about a pixel), and correcting a
    photo's recorded attitude by the error the check measured makes the pair agree with the images: the
    senseFly conventions (roll as given, pitch negated, image top to the nose) hold through the check."""
    from calibration.geometry import R_cam2world
    from runtime.mapping.attitude_check import _read_gray
    from runtime.mapping.mosaic import sift_features
    from runtime.sources.photos import read_photo_folder

    src = shared_data(SENECA)
    metas = list(read_photo_folder([src / n for n in LINE]).photos)
    assert [m.name for m in metas] == LINE
    check = check_attitude(metas, [list(range(len(metas)))])
    assert len(check.pairs) >= 3
    for p in check.pairs:
        assert p.inliers >= 100 and p.reprojection_px < 1.5 and p.baseline > 0.2
    p = check.pairs[0]
    a, b = metas[0], metas[1]
    import cv2

    R_err = cv2.Rodrigues(np.radians(p.rotation_error_deg))[0]  # in b's camera axes: R_img = R_err @ R_rec
    Rb = R_cam2world(b.attitude, b.mount)
    Rb_fixed = Rb @ R_err.T  # b's camera -> world such that Rb_fixed^T Ra = R_err Rb^T Ra
    fixed = Attitude.from_matrix(Rb_fixed @ b.mount.R_cam2body.T)
    again = pair_check(a, replace(b, attitude=fixed), sift_features(_read_gray(a)), sift_features(_read_gray(b)))
    assert np.abs(again.rotation_error_deg).max() < 0.1
    # the tilt parts are a few degrees (the whole flight: ~3 deg per photo and axis); about the optical axis the
    # senseFly Heading scatters by ~17 deg (this pair: 26 deg), which the loop covers with its yaw views
    assert np.abs(p.rotation_error_deg[:2]).max() < 15.0
    assert all(np.isfinite(v) for v in check.nadir_sigma_m)


def test_photo_check_cli(shared_data, tmp_path):
    src = shared_data(SENECA)
    d = tmp_path / "photos"
    d.mkdir()
    for n in LINE[:3]:
        os.symlink(src / n, d / n)
    out = tmp_path / "check.json"
    r = subprocess.run([sys.executable, "-m", "runtime.cli.onboard", "photo-check", str(d), "--json", str(out)],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "pairs of consecutive photos: 2 used, 0 skipped" in r.stdout
    assert "3 photos in 1 flight lines" in r.stderr
    import json

    d = json.loads(out.read_text())
    assert d["pairs_used"] == 2 and len(d["pairs"]) == 2 and d["tilt_error_deg"]["photos"] == 3


def _five(ground, wrong_deg: dict):
    """Five photos along a line, 24 m apart; photo k's recorded roll/pitch off by ``wrong_deg[k]`` degrees."""
    atts = [Attitude.from_degrees(2.0, -3.0, 10.0), Attitude.from_degrees(-1.5, 2.0, 12.0),
            Attitude.from_degrees(1.0, 1.0, 8.0), Attitude.from_degrees(-2.0, 0.5, 9.0),
            Attitude.from_degrees(0.5, -1.0, 11.0)]
    shots = []
    for k, att in enumerate(atts):
        dr, dp = wrong_deg.get(k, (0.0, 0.0))
        rec = Attitude(att.roll + math.radians(dr), att.pitch + math.radians(dp), att.yaw)
        shots.append(ground.shot(f"p{k}.jpg", (-48.0 + 24.0 * k, 0.0), att, rec, 4.0 * k))
    return [m for m, _ in shots], {m.name: g for m, g in shots}, atts


def _tilt_deg(a: Attitude, b: Attitude) -> float:
    """Angle between the two attitudes' body z axes, degrees (the tilt difference; heading ignored)."""
    za, zb = a.R_body2world[:, 2], b.R_body2world[:, 2]
    return math.degrees(math.acos(float(np.clip(za @ zb, -1.0, 1.0))))


def test_images_tilt_replaces_a_wrong_recorded_tilt(ground):
    """Photos 1 and 3 are recorded 4-5 degrees off in roll/pitch: from the images their tilt comes back within
    0.5 degree of the truth, the heading stays as recorded, and each changed photo states its tilt's precision."""
    from runtime.mapping.attitude_check import images_tilt, pair_tilt_sigma_deg, recorded_tilt_sigma_deg

    metas, images, atts = _five(ground, {1: (4.0, 0.0), 3: (-3.0, 3.0)})
    check = check_attitude(metas, [[0, 1, 2, 3, 4]], load=lambda m: images[m.name])
    assert len(check.pairs) == 4
    fixed, changed = images_tilt(metas, check, min_photos=3)
    assert set(changed) == {m.name for m in metas}
    assert abs(changed["p1.jpg"] - 4.0) < 0.6 and abs(changed["p3.jpg"] - math.hypot(3.0, 3.0)) < 0.8
    for m, f, att in zip(metas, fixed, atts):
        assert _tilt_deg(f.attitude, att) < 0.5, m.name
        assert abs(math.degrees(f.attitude.yaw - m.attitude.yaw)) < 0.5  # the heading is not the images' to fix
    one = pair_tilt_sigma_deg(check, min_photos=3)
    assert one is not None and one < 0.5  # rendered pairs: each pair's normal is near exact
    assert fixed[2].tilt_sigma_deg == pytest.approx(pair_tilt_sigma_deg(check, 3, pairs=2))  # photo 2: two pairs
    assert fixed[0].tilt_sigma_deg == pytest.approx(one)  # photo 0 has one
    assert pair_tilt_sigma_deg(check) is None  # 3 photos in two pairs < the default 5
    assert images_tilt(metas, check)[0][2].tilt_sigma_deg is None
    assert recorded_tilt_sigma_deg(metas, check, min_photos=3) < 0.5  # robust: 2 of 5 off do not make the sigma
    # every photo's recorded roll off by -4, -2, 0, 2, 4 degrees: robust sigma 1.4826 * 2 = 3.0 degrees
    metas, images, _ = _five(ground, {k: (2.0 * k - 4.0, 0.0) for k in range(5)})
    check = check_attitude(metas, [[0, 1, 2, 3, 4]], load=lambda m: images[m.name])
    assert recorded_tilt_sigma_deg(metas, check, min_photos=3) == pytest.approx(1.4826 * 2.0, abs=0.4)
    assert recorded_tilt_sigma_deg(metas, check, min_photos=6) is None


def test_images_tilt_causal_uses_the_photo_before_only(ground):
    from runtime.mapping.attitude_check import images_tilt

    metas, images, atts = _five(ground, {0: (4.0, 0.0), 2: (0.0, 4.0)})
    check = check_attitude(metas, [[0, 1, 2, 3, 4]], load=lambda m: images[m.name])
    fixed, changed = images_tilt(metas, check, causal=True)
    assert "p0.jpg" not in changed  # the first photo of the line has no photo before it
    assert fixed[0].attitude == metas[0].attitude and fixed[0].tilt_sigma_deg is None
    assert _tilt_deg(fixed[2].attitude, atts[2]) < 0.5
    # a subset (the held-out photos of a split) is matched by name
    sub, ch = images_tilt([metas[3]], check, causal=True)
    assert list(ch) == ["p3.jpg"] and _tilt_deg(sub[0].attitude, atts[3]) < 0.5
    # a photo without a recorded attitude is left alone
    none, ch = images_tilt([replace(metas[2], attitude=None)], check)
    assert ch == {} and none[0].attitude is None


def test_one_pairs_lean_along_the_baseline_is_measured_and_removed():
    """Synthetic pairs: each photo's normal from the pair before leans +0.7 degree in camera y, from the pair after
    -0.7 (a pair's normal leaning along its baseline), plus 0.5 degree of white noise per axis. The lean is
    measured (signed) and removed from each pair's normal: one pair's tilt is then good to the noise, 0.5 degree,
    and the causal normals (the pair before only) lean no more; two pairs' mean to 0.5 / sqrt(2) = 0.35."""
    from runtime.mapping.attitude_check import AttitudeCheck, PairCheck, _downs, _pair_tilt_stats, pair_tilt_sigma_deg

    rng = np.random.default_rng(2)
    lean, noise = math.radians(0.7), math.radians(0.5)

    def down(sign):
        v = np.array([0.0, sign * lean, 1.0]) + np.append(rng.normal(0.0, noise, 2), 0.0)
        return v / np.linalg.norm(v)

    pairs = tuple(PairCheck(f"p{k}", f"p{k + 1}", 100, 0.5, 0.4, np.zeros(3), down(-1.0), down(+1.0))
                  for k in range(4000))
    check = AttitudeCheck(pairs, ())
    lean, _ = _pair_tilt_stats(check, 5)
    assert np.degrees(lean) == pytest.approx([0.0, 0.7], abs=0.05)
    causal = np.array([v[0] for v in _downs(check, causal=True).values()])
    assert np.degrees(np.median(causal[:, 1])) == pytest.approx(0.0, abs=0.05)
    raw = np.array([p.down_b for p in pairs])
    assert np.degrees(np.median(raw[:, 1])) == pytest.approx(0.7, abs=0.05)  # without the removal: leaning
    assert pair_tilt_sigma_deg(check) == pytest.approx(0.5, rel=0.05)
    assert pair_tilt_sigma_deg(check, pairs=2) == pytest.approx(0.5 / math.sqrt(2.0), rel=0.05)
    assert pair_tilt_sigma_deg(AttitudeCheck(pairs[:3], ())) is None  # 2 photos in two pairs < 5


def test_boresight_measures_and_removes_a_constant_tilt_of_the_camera(ground):
    """Every photo's recorded roll is 3 degrees and pitch -2 degrees off the truth (a camera tilted in its mount; one
    photo 6 degrees more: robust), so the recorded attitude puts every camera's axis off the same way: the
    boresight measures it from the photos in two pairs, and the mounts it turns make the recorded attitudes give the
    true camera axes within half a degree; a boresight of a survey without one measures zero."""
    from runtime.mapping.attitude_check import Boresight, apply_boresight, boresight, recorded_tilt_sigma_deg

    wrong = {k: (3.0, -2.0) for k in range(5)}
    wrong[2] = (9.0, -2.0)
    metas, images, atts = _five(ground, wrong)
    check = check_attitude(metas, [[0, 1, 2, 3, 4]], load=lambda m: images[m.name])
    bore = boresight(metas, check, min_photos=3)
    assert bore is not None and bore.photos == 3  # photos 1-3 are in two pairs
    assert math.hypot(bore.x_deg, bore.y_deg) == pytest.approx(math.hypot(3.0, 2.0), abs=0.5)
    fixed = apply_boresight(metas, bore)
    for k in (0, 1, 3, 4):
        z_true = (atts[k].R_body2world @ metas[k].mount.R_cam2body)[:, 2]
        z_fixed = fixed[k].R_cam2world[:, 2]
        assert math.degrees(math.acos(float(np.clip(z_true @ z_fixed, -1.0, 1.0)))) < 0.5, k
    assert boresight(fixed, check, min_photos=3).x_deg == pytest.approx(0.0, abs=0.3)
    assert recorded_tilt_sigma_deg(fixed, check, min_photos=3) < recorded_tilt_sigma_deg(metas, check, min_photos=3)
    assert boresight(metas, check) is None  # 3 photos in two pairs < the default 5
    assert apply_boresight(metas, None) == metas
    clean, images, _ = _five(ground, {})
    check = check_attitude(clean, [[0, 1, 2, 3, 4]], load=lambda m: images[m.name])
    zero = boresight(clean, check, min_photos=3)
    assert abs(zero.x_deg) < 0.3 and abs(zero.y_deg) < 0.3
    assert Boresight.from_dict(bore.to_dict()) == bore
    with pytest.raises(AttitudeCheckError, match="x_deg, y_deg, photos, sigma_deg"):
        Boresight.from_dict({"x_deg": 1.0})
    with pytest.raises(AttitudeCheckError, match=r"\|x_deg\|, \|y_deg\| < 30"):
        Boresight.from_dict({"x_deg": 40.0, "y_deg": 0.0, "photos": 5, "sigma_deg": 1.0})
