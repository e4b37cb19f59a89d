"""runtime.mapping: an orthomosaic from real survey photos (Seneca, senseFly swinglet CAM), its GeoTIFF, the map
built from it (``skyfix maps build --photos``), and a photo folder replayed and evaluated against its own GPS
(``runtime replay PHOTOS``, ``runtime eval --truth PHOTOS``)."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

SENECA = "real/seneca/images"
# two flight lines of the survey: IMG_0446-0455 fly north-east, IMG_0456-0459 come back south-west beside them
MAP_PHOTOS = [f"IMG_{k:04d}.jpg" for k in range(446, 460)]


@pytest.fixture(scope="module")
def photo_dir(shared_data, tmp_path_factory):
    """A folder of links to the 14 real photos (the shared data is read in place, never copied)."""
    src = shared_data(SENECA)
    d = tmp_path_factory.mktemp("photos")
    for name in MAP_PHOTOS:
        os.symlink(src / name, d / name)
    return d


@pytest.fixture(scope="module")
def mosaic(photo_dir):
    from runtime.mapping.photo_map import mosaic_from_photos

    return mosaic_from_photos([photo_dir], gsd=0.25)


def test_the_photos_register_to_each_other(mosaic):
    """Placed by their GPS and attitude alone, overlapping photos disagree by metres (the GPS, the noisy senseFly
    heading); after the adjustment the matched ground points of every used pair agree to within a metre (median
    0.5 m at 0.15 m/px), and each photo's correction stays inside what its GPS and heading allow around the
    survey's own calibration (one ground scale, one camera-to-GPS offset)."""
    ortho, rep = mosaic
    r = rep["residual_m"]
    assert rep["photos"] == len(MAP_PHOTOS) and rep["pairs_used"] >= 6  # 7 of 12 tried (uniform fields)
    assert r["after_median"] <= 1.0 and r["after_p95"] <= 2.0
    assert r["before_median"] >= 3.0 * r["after_median"]
    # the survey's calibration: its XMP heights and focal length make the footprints ~17 % larger than the GPS
    # distances between the photos say (measured over the whole survey: x0.82-0.83); the camera a few metres from
    # its GPS fix
    S = rep["survey_scale"]
    assert 0.7 < S < 0.95
    assert math.hypot(rep["camera_offset_m"]["forward"], rep["camera_offset_m"]["right"]) < 10.0
    for c in rep["corrections"]:
        assert math.hypot(c["dx_m"], c["dy_m"]) < 25.0 and abs(c["rotation_deg"]) < 45.0
        assert abs(c["scale"] - S) < 0.2  # per-photo height noise (barometric) on top
    assert rep["skipped"] == []
    assert ortho.mask.mean() > 0.4 and ortho.gsd == 0.25
    # the photos' own metadata noise: where the images put each nadir against its GPS (+ the common offset),
    # white from one photo to the next (over the whole survey: 5-6 m per axis, ~5 deg of attitude at ~57 m)
    assert 1.0 < rep["placement_sigma_m"] < 12.0
    assert 40.0 < rep["survey_height_m"] < 70.0  # the XMP heights (63-77 m) times the survey scale
    assert rep["mosaic_attitude_sigma_deg"] == pytest.approx(
        math.degrees(math.atan2(rep["placement_sigma_m"], rep["survey_height_m"])))


def test_the_photos_tilt_comes_from_their_images(mosaic):
    """The recorded senseFly roll/pitch is off by degrees (over the whole survey 4.7 per axis); the tilt the
    consecutive photos' homographies give is good to under a degree (0.8 over the survey), so the mosaic takes
    it, and the report states the recorded tilt's error as the survey's ``attitude_sigma_deg`` (what a later
    flight's recorded attitude is worth)."""
    _, rep = mosaic
    tilt = rep["tilt_from_images"]
    assert tilt["pairs_used"] >= 6 and tilt["photos"] >= 8
    assert 2.0 < tilt["median_change_deg"] < 15.0
    assert tilt["pair_tilt_sigma_deg"] is not None and tilt["pair_tilt_sigma_deg"] < 2.0
    assert tilt["recorded_tilt_sigma_deg"] > 2.0 * tilt["pair_tilt_sigma_deg"]
    assert rep["attitude_sigma_deg"] == tilt["recorded_tilt_sigma_deg"]


def test_placement_sigma_is_the_per_photo_noise_around_the_common_offset():
    """Synthetic corrections: a common camera offset (2 m forward, -3 m right along each photo's flight direction)
    plus white noise of 4 m per axis; the robust sigma recovers the noise, not the offset, and leaves out photos
    that matched no neighbour (their correction is the GPS prior's zero)."""
    from runtime.mapping.mosaic import MosaicReport, placement_sigma

    rng = np.random.default_rng(3)
    n = 4000
    heading = rng.uniform(-math.pi, math.pi, n)
    fwd = np.stack([np.cos(heading), np.sin(heading)], axis=1)
    right = np.stack([fwd[:, 1], -fwd[:, 0]], axis=1)
    x = np.zeros((n, 4))
    x[:, :2] = 2.0 * fwd - 3.0 * right + rng.normal(0.0, 4.0, (n, 2))
    connected = np.ones(n, bool)
    connected[:500] = False
    x[:500, :2] = 0.0
    assert placement_sigma(x, fwd, np.array([2.0, -3.0]), connected) == pytest.approx(4.0, rel=0.05)
    # without the offset taken out the spread is wider (the offset turns with each line's direction)
    assert placement_sigma(x, fwd, np.zeros(2), connected) > 4.5
    assert math.isnan(placement_sigma(x[:2], fwd[:2], np.zeros(2), np.ones(2, bool)))
    rep = MosaicReport(("a",), np.zeros((1, 4)), (), 0, 0, (), 0.5, 1.0, 5.0, 9.0, placement_sigma_m=5.0,
                       height_m=57.0)
    assert rep.attitude_sigma_deg == pytest.approx(math.degrees(math.atan(5.0 / 57.0)))
    assert rep.to_dict()["attitude_sigma_deg"] == pytest.approx(5.01, abs=0.01)
    assert math.isnan(MosaicReport(("a",), np.zeros((1, 4)), (), 0, 0, (), 0.5, 1.0, 5.0, 9.0).attitude_sigma_deg)
    assert MosaicReport(("a",), np.zeros((1, 4)), (), 0, 0, (), 0.5, 1.0, 5.0, 9.0).to_dict()[
        "attitude_sigma_deg"] is None


def test_the_mosaic_is_where_the_photos_are_and_round_trips_as_geotiff(mosaic, photo_dir, tmp_path):
    from maps.geotiff import load_orthophoto, write_geotiff
    from runtime.sources.photos import read_photo_folder

    ortho, _ = mosaic
    path = write_geotiff(tmp_path / "m.tif", ortho)
    back = load_orthophoto(path)
    assert back.image.shape == ortho.image.shape and np.array_equal(back.mask, ortho.mask)
    x0, y0, x1, y1 = back.bounds
    for m in read_photo_folder(photo_dir).photos:
        x, y = back.frame.to_local(m.lat, m.lon)
        assert x0 < x < x1 and y0 < y < y1  # every photo's nadir is inside the mosaic
        u, v = back.to_pixel(x, y)
        assert back.mask[int(v), int(u)]


def _tracker_config(tmp_path):
    path = tmp_path / "loop.json"
    path.write_text(json.dumps({"tracker": {"visual_confirm_frames": 3}}))
    return path


def test_maps_build_photos_then_replay_and_eval_a_photo_folder(photo_dir, shared_data, tmp_path, capsys):
    """The user's path: photos -> map (classical descriptor: fast) -> a photo folder replayed (here 3 photos of the
    line that came back, also in the map) -> evaluated against the photos' own GPS."""
    from runtime.cli.onboard import main as runtime_main
    from runtime.cli.skyfix import main as skyfix_main
    from runtime.outputs import read_track

    out = tmp_path / "map"
    assert skyfix_main(["maps", "build", "--photos", str(photo_dir), "-o", str(out), "--model", "classical",
                        "--mosaic-gsd", "0.4"]) == 0
    err = capsys.readouterr().err
    assert "mosaic: 14 photos" in err and "registered; residual median" in err
    report = json.loads((tmp_path / "map.mosaic.json").read_text())
    assert report["pairs_used"] >= 6 and (tmp_path / "map.mosaic.tif").exists()
    assert "tilt from the images: " in err and "--recorded-tilt" in err
    bore = report["boresight_deg"]  # the camera's constant tilt against the recorded attitude, from the pairs
    assert bore["photos"] >= 5 and bore == report["tilt_from_images"]["boresight_deg"]
    assert f"boresight: the camera is tilted {bore['x_deg']:.1f} / {bore['y_deg']:.1f} deg (camera x / y)" in err
    fly = tmp_path / "fly"
    fly.mkdir()
    for name in MAP_PHOTOS[-3:]:
        os.symlink(shared_data(SENECA) / name, fly / name)
    track = tmp_path / "track.jsonl"
    assert runtime_main(["replay", str(fly), "--map", str(out), "-o", str(track), "--quiet",
                         "--gps-noise", "5:3"]) == 0
    err = capsys.readouterr().err
    assert "GPS degraded: noise sigma 5 m + bias 3 m" in err
    assert "the map was made from a photo survey whose calibration it keeps" in err
    assert f"pass --survey-calibration {out}" in err
    assert "from the photos: imu_accel=False, attitude_yaw_sigma_deg=17, height_m=" in err
    # the three photos' tilt from their images: the 2nd and 3rd from the photo before them (the 1st has none and
    # keeps its recorded tilt; three photos are too few to measure how far that is off: the loop's default)
    assert "tilt from the images: 2 of 3 photos take their roll and pitch from the photo before them (2 of 2 " in err
    assert "the others' recorded tilt stated off by " not in err
    # ... and their displacement from the photo before (the same registered pairs), which the loop weighs with
    assert "motion from the images: 2 of 3 photos have their displacement from the photo before them" in err
    assert "from the photos: tracker visual_confirm_frames=2" in err
    recs = read_track(track)
    assert len(recs) >= 3 and all(r.lat is not None for r in recs)
    assert runtime_main(["eval", str(track), "--truth", str(fly)]) == 0
    table = capsys.readouterr().out
    assert "all" in table
    cal = tmp_path / "map.mosaic.json"
    assert runtime_main(["replay", str(fly), "--map", str(out), "-o", str(tmp_path / "t2.jsonl"), "--quiet",
                         "--survey-calibration", str(cal)]) == 0
    err = capsys.readouterr().err
    assert f"note: survey calibration {cal}: camera" in err
    assert f"camera tilted {bore['x_deg']:.1f} / {bore['y_deg']:.1f} deg (x / y) in its mount" in err
    assert f"the others' recorded tilt stated off by {report['attitude_sigma_deg']:.1f} deg" in err
    # the survey's measured attitude error reaches the loop (each fix carries the nadir shift it makes)
    assert f"recorded attitude off by {report['attitude_sigma_deg']:.1f} deg (1 sigma)" in err
    assert f"attitude_sigma_deg={report['attitude_sigma_deg']:g}" in err
    # the map keeps the survey's calibration (manifest build.provenance): the same numbers as its report
    kept = json.loads((out / "manifest.json").read_text())["build"]["provenance"]["survey_calibration"]
    assert kept["survey_scale"] == report["survey_scale"] and kept["report"] == "map.mosaic.json"
    assert kept["attitude_sigma_deg"] == report["attitude_sigma_deg"] and kept["boresight_deg"] == bore
    # without GPS the first photo initialises the belief; the motion from it to the second (their images register)
    # makes the second photo's agreeing fix the second of two, so it is localized at once; without that motion
    # (--no-photo-motion) the two fixes after the initialising one must agree and the second stays LOST
    for flag, second in (([], "DEGRADED"), (["--no-photo-motion"], "LOST")):
        nog = tmp_path / f"nogps{len(flag)}.jsonl"
        assert runtime_main(["replay", str(fly), "--map", str(out), "-o", str(nog), "--quiet", "--gps-topic", "none",
                             "--survey-calibration", str(out), *flag]) == 0
        capsys.readouterr()
        assert [r.status for r in read_track(nog)] == ["LOST", second, "DEGRADED"]
        if not flag:  # every estimate within 10 m of the photos' GPS (here 3.2-3.4 m)
            assert runtime_main(["eval", str(nog), "--truth", str(fly)]) == 0
            row = next(ln.split() for ln in capsys.readouterr().out.splitlines() if ln.startswith("estimate"))
            assert row[1:3] == ["all", "3"] and float(row[5]) < 10.0  # the max error, metres
    assert runtime_main(["replay", str(fly), "--map", str(out), "-o", str(tmp_path / "t5.jsonl"), "--quiet",
                         "--survey-calibration", str(out), "--recorded-tilt"]) == 0
    err = capsys.readouterr().err
    assert f"note: survey calibration {out}: camera" in err and "pass --survey-calibration" not in err
    assert "tilt from the images" not in err and "motion from the images: 2 of 3" in err
    assert runtime_main(["replay", str(fly), "--map", str(out), "-o", str(tmp_path / "t7.jsonl"), "--quiet",
                         "--no-photo-motion", "--config", str(_tracker_config(tmp_path))]) == 0
    err = capsys.readouterr().err
    assert "motion from the images" not in err and "tilt from the images: 2 of 3" in err
    assert "from the photos: tracker" not in err  # the user's --config tracker key wins
    plain = tmp_path / "plain.map"
    from maps.build import build_map
    from maps.descriptors import ClassicalDescriptor, classical_contract
    from maps.geotiff import load_orthophoto

    build_map(load_orthophoto(tmp_path / "map.mosaic.tif"), ClassicalDescriptor(), classical_contract(), plain)
    assert runtime_main(["replay", str(fly), "--map", str(out), "-o", str(tmp_path / "t6.jsonl"), "--quiet",
                         "--survey-calibration", str(plain)]) != 0
    assert "this map holds no survey calibration (it was not built from photos" in capsys.readouterr().err
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({**report, "attitude_sigma_deg": "lots"}))
    assert runtime_main(["replay", str(fly), "--map", str(out), "-o", str(tmp_path / "t4.jsonl"), "--quiet",
                         "--survey-calibration", str(wrong)]) != 0
    assert "attitude_sigma_deg 'lots' is not an attitude error in degrees (0 <= sigma < 45)" in \
        capsys.readouterr().err
    wrong.write_text(json.dumps({**report, "boresight_deg": {**bore, "x_deg": 50.0}}))
    assert runtime_main(["replay", str(fly), "--map", str(out), "-o", str(tmp_path / "t8.jsonl"), "--quiet",
                         "--survey-calibration", str(wrong)]) != 0
    assert "boresight: expected |x_deg|, |y_deg| < 30 and 0 <= sigma_deg < 45" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert runtime_main(["replay", str(fly), "--map", str(out), "-o", str(tmp_path / "t3.jsonl"), "--quiet",
                         "--survey-calibration", str(bad)]) != 0
    assert "expected the JSON report of `skyfix maps build --photos`" in capsys.readouterr().err
    assert skyfix_main(["maps", "build", "x.tif", "--photos", str(photo_dir), "-o", str(tmp_path / "m2")]) != 0
    assert "give one kind of input, got orthophoto(s) and --photos" in capsys.readouterr().err
    assert skyfix_main(["maps", "build", "-o", str(tmp_path / "m3")]) != 0
    assert "nothing to build from: give orthophoto GeoTIFF(s), --photos PHOTO_FOLDER, --tiles DIR" in capsys.readouterr().err


def test_mosaic_settings_and_too_few_photos_are_typed_errors(photo_dir):
    from runtime.mapping.mosaic import MosaicConfig, MosaicError, build_mosaic
    from runtime.mapping.photo_map import mosaic_photos
    from runtime.sources.photos import read_photo_folder

    with pytest.raises(MosaicError, match="mosaic gsd must be a number > 0, got 0"):
        MosaicConfig(gsd=0)
    with pytest.raises(MosaicError, match=r"mosaic min_overlap must be a fraction in \(0, 1\), got 1.5"):
        MosaicConfig(min_overlap=1.5)
    with pytest.raises(MosaicError, match="mosaic min_inliers must be an integer >= 3, got 2"):
        MosaicConfig(min_inliers=2)
    one = mosaic_photos(read_photo_folder(photo_dir).photos[:1])
    with pytest.raises(MosaicError, match="a mosaic needs at least 2 overlapping photos, got 1"):
        build_mosaic(one)
