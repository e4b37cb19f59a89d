"""One bad message in a bag is a counted skip with a note (topic, time, reason); nothing before or after is lost."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from runtime.bags import BagReader, BagWriter, encode_jpeg, encode_png
from runtime.bags.images import compressed_image_problem
from runtime.bags.reader import UNUSABLE_AFTER
from runtime.errors import BagError
from runtime.events import Frame, GpsFix, decode_image_bytes

from .conftest import CAM, T0, rosbags_convert

DT = 100_000_000


def _jpeg(seed=0):
    rng = np.random.default_rng(seed)
    return encode_jpeg(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))


def _bag_with_bad_frames(path, bad: dict[int, bytes], n=8):
    """n frames at T0 + k*DT, those in ``bad`` replaced by the given bytes; a GPS fix with every frame."""
    with BagWriter(path) as bag:
        bag.write_camera_info("/cam/camera_info", T0 - 1, CAM)
        for k in range(n):
            t = T0 + k * DT
            bag.write_compressed_image("/cam/image/compressed", t, bad.get(k, _jpeg(k)), fmt="jpeg")
            bag.write_navsatfix("/gps/fix", t + 1, 47.0 + k * 1e-5, 8.0, 500.0, cov_enu=2.0)
    return path


def test_corrupt_and_empty_jpegs_are_counted_skips(tmp_path):
    good = _jpeg(2)
    bad = {2: b"", 4: good[: len(good) // 2], 5: b"\xff\xd8" + bytes(200)}
    path = _bag_with_bad_frames(tmp_path / "bad.bag", bad)
    with BagReader(path) as bag:
        evs = list(bag.events())
        notes = bag.reading_notes()
    frames = [e for e in evs if isinstance(e, Frame)]
    fixes = [e for e in evs if isinstance(e, GpsFix)]
    assert [f.t_ns for f in frames] == [T0 + k * DT for k in (0, 1, 3, 6, 7)]  # before and after: all there
    assert len(fixes) == 8
    assert all(f.image.shape == (48, 64, 3) for f in frames)  # every frame handed on decodes
    assert bag.skipped == {"/cam/image/compressed": 3}
    assert len(notes) == 3 and all(n.startswith("/cam/image/compressed: message at t=") for n in notes)
    assert f"t={T0 + 2 * DT} ns (0.200 s into the recording) skipped: CompressedImage (format 'jpeg') empty" in notes[0]
    assert f"t={T0 + 4 * DT} ns" in notes[1] and "cut short" in notes[1]
    assert f"t={T0 + 5 * DT} ns" in notes[2] and "corrupt JPEG" in notes[2]


def test_a_topic_of_nothing_but_bad_images_is_a_bag_error(tmp_path):
    path = _bag_with_bad_frames(tmp_path / "allbad.bag", {k: b"" for k in range(UNUSABLE_AFTER + 5)},
                                n=UNUSABLE_AFTER + 5)
    with BagReader(path) as bag:
        with pytest.raises(BagError, match=f"/cam/image/compressed: none of its first {UNUSABLE_AFTER} messages can be "
                                           "used .*empty.*switch the role off"):
            list(bag.events())


def test_many_skips_keep_a_few_notes_and_count_the_rest(tmp_path):
    bad = {k: b"" for k in range(1, 30, 2)}  # 15 bad of 30, good ones between
    path = _bag_with_bad_frames(tmp_path / "many.bag", bad, n=30)
    with BagReader(path) as bag:
        frames = [e for e in bag.events(roles=["camera"]) if isinstance(e, Frame)]
        notes = bag.reading_notes()
    assert len(frames) == 15 and bag.skipped == {"/cam/image/compressed": 15}
    assert notes[-1] == "/cam/image/compressed: 15 messages skipped in all (15 used)"
    assert sum("skipped: " in n for n in notes) == 5


def test_structural_check_agrees_with_the_real_decoder(shared_data):
    """Whatever the check passes, OpenCV decodes; cut-short and damaged files are caught (a real photo)."""
    real = shared_data("calib/aero1.jpg").read_bytes()
    png = encode_png(np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8))
    import cv2

    progressive = cv2.imencode(".jpg", np.random.default_rng(2).integers(0, 256, (40, 40, 3), dtype=np.uint8),
                               [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    grey = cv2.imencode(".jpg", np.full((16, 16), 90, np.uint8))[1].tobytes()
    for data in (real, _jpeg(), png, progressive, grey):
        assert compressed_image_problem(data) == ""
        assert decode_image_bytes(data).ndim == 3
    rng = np.random.default_rng(0)
    cases = [real[:n] for n in (0, 1, 2, 3, 10, 100, 600, 5000, len(real) // 2, len(real) - 2)]
    cases += [png[:n] for n in (8, 20, 40, len(png) - 1)]
    for _ in range(200):  # random byte damage in the headers
        b = bytearray(real)
        b[int(rng.integers(2, 600))] = int(rng.integers(0, 256))
        cases.append(bytes(b))
    flagged = 0
    for data in cases:
        problem = compressed_image_problem(data)
        if problem:
            flagged += 1
        else:  # passed: the real decoder must manage it
            assert decode_image_bytes(data).shape[2] == 3
    assert flagged >= 14  # every truncation at least
    assert compressed_image_problem(png[:-1]).startswith("PNG cut short")
    assert "CRC mismatch" in compressed_image_problem(png[:40] + bytes([png[40] ^ 1]) + png[41:])


def test_a_message_that_does_not_deserialize_is_a_counted_skip(tmp_path, ros1_flight):
    """A ROS 2 bag (real rosbags-convert output) with one NavSatFix's bytes cut: that fix is skipped, named."""
    dst = rosbags_convert(ros1_flight, tmp_path / "r2", "--dst-typestore", "ros2_jazzy")
    db = next(dst.glob("*.db3"))
    con = sqlite3.connect(db)
    (tid,) = con.execute("SELECT id FROM topics WHERE name = '/gps/fix'").fetchone()
    rows = con.execute("SELECT id, timestamp FROM messages WHERE topic_id = ? ORDER BY timestamp", (tid,)).fetchall()
    bad_id, bad_t = rows[2]
    con.execute("UPDATE messages SET data = substr(data, 1, 20) WHERE id = ?", (bad_id,))
    con.commit()
    con.close()
    with BagReader(dst) as bag:
        fixes = [e for e in bag.events(roles=["gps"]) if isinstance(e, GpsFix)]
        notes = bag.reading_notes()
    with BagReader(ros1_flight) as ref:
        ref_fixes = list(ref.events(roles=["gps"]))
    assert [f.t_ns for f in fixes] == [f.t_ns for i, f in enumerate(ref_fixes) if i != 2]
    assert bag.skipped == {"/gps/fix": 1}
    assert notes[0].startswith(f"/gps/fix: message at t={bad_t} ns") and "does not deserialize" in notes[0]


def test_replay_goes_on_over_a_corrupt_frame_and_says_so(tmp_path, capsys):
    """`runtime replay` on GPS alone over a bag with an empty JPEG: the frames are not read, nothing stops; with the
    camera read (inspect's first camera + events) the skip is named."""
    from runtime.cli.onboard import main as runtime_main

    path = _bag_with_bad_frames(tmp_path / "r.bag", {3: b""})
    out = tmp_path / "t.jsonl"
    assert runtime_main(["replay", str(path), "--camera-topic", "none", "-o", str(out), "--quiet",
                         "--no-geojson", "--no-gpx"]) == 0
    assert len(out.read_text().splitlines()) == 8
    with BagReader(path) as bag:
        assert len([e for e in bag.events(roles=["camera"]) if isinstance(e, Frame)]) == 7
        assert bag.skipped == {"/cam/image/compressed": 1}


def test_imu_nan_and_non_unit_quaternions_are_counted(tmp_path):
    """A NaN acceleration: the sample is skipped (counted, noted); a quaternion of norm 2: no rotation, the sample
    keeps its rates and acceleration without orientation (counted, noted); norm 1.05: normalised; unit ones pass
    unchanged; a message saying it has no orientation (covariance[0] = -1) is no problem."""
    from runtime.events import ImuSample

    q = (0.0, 0.0, 0.38268343236508984, 0.9238795325112867)  # yaw 45 deg
    path = tmp_path / "imu.bag"
    with BagWriter(path) as bag:
        for k in range(10):
            t = T0 + k * DT
            acc = (0.0, 0.0, 9.81)
            orient = q
            if k == 3:
                acc = (float("nan"), 0.0, 9.81)
            if k == 5:
                orient = tuple(2.0 * v for v in q)
            if k == 6:
                orient = tuple(1.05 * v for v in q)
            if k == 7:
                orient = None
            bag.write_imu("/imu/data", t, orient, (0.0, 0.0, 0.1), acc)
    with BagReader(path) as bag:
        evs = [e for e in bag.events() if isinstance(e, ImuSample)]
        notes = bag.reading_notes()
    assert [e.t_ns for e in evs] == [T0 + k * DT for k in range(10) if k != 3]
    by_t = {e.t_ns: e for e in evs}
    assert by_t[T0 + 5 * DT].orientation is None and by_t[T0 + 5 * DT].angular_velocity == (0.0, 0.0, 0.1)
    assert np.allclose(by_t[T0 + 6 * DT].orientation, q)
    assert by_t[T0 + 0 * DT].orientation == q and by_t[T0 + 7 * DT].orientation is None
    assert bag.skipped == {"/imu/data": 1} and bag.repaired == {"/imu/data": 1}
    assert any(f"t={T0 + 3 * DT} ns" in n and "linear_acceleration must be 3 finite numbers" in n for n in notes)
    assert any(f"t={T0 + 5 * DT} ns: orientation quaternion of norm 2 is no rotation" in n
               and "orientation dropped, rates and acceleration kept" in n for n in notes)
