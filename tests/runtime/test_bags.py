"""runtime.bags: the ROS1 writer and the type-driven reader, round trips of every message and image encoding."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from calibration.camera import CameraModel
from calibration.geometry import Attitude
from runtime.bags import (
    IMAGE_ENCODINGS,
    BagReader,
    BagWriter,
    decode_image,
    encode_image,
    encode_jpeg,
    encode_png,
    is_truth_topic,
    select_topics,
    typestore,
)
from runtime.errors import BagError
from runtime.events import CameraInfoEvent, Frame, GpsFix, ImuSample, TruthPose

T0 = 1_600_000_000_000_000_000
CAM = CameraModel(64, 48, 50.0, 51.0, 31.5, 23.5, (-0.1, 0.01, 0.001, -0.002, 0.0))


def _texture(h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return img


def _smooth(h=48, w=64):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (w + h - 2)], axis=2).astype(np.uint8)


def _flat(rgb, h=16, w=20):
    img = np.empty((h, w, 3), np.uint8)
    img[:] = rgb
    return img


# ---------------------------------------------------------------------------------------------- encodings
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_colour_encodings_round_trip_exactly(encoding):
    img = _texture()
    data, step = encode_image(img, encoding)
    np.testing.assert_array_equal(decode_image(48, 64, encoding, data, step), img)


def test_mono8_is_grey_replicated():
    img = _texture()
    data, step = encode_image(img, "mono8")
    out = decode_image(48, 64, "mono8", data, step)
    assert out.shape == (48, 64, 3)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    grey = 0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2]
    assert np.max(np.abs(out[..., 0] - grey)) <= 1.0


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_patterns_demosaic_to_the_right_colours(pattern):
    rgb = (200, 100, 30)
    img = _flat(rgb)
    data, step = encode_image(img, f"bayer_{pattern}8")
    assert step == 20  # one byte per pixel
    out = decode_image(16, 20, f"bayer_{pattern}8", data, step)
    np.testing.assert_array_equal(out[4:-4, 4:-4], img[4:-4, 4:-4])


def test_bayer16_and_mono16_scale_to_8_bits():
    mosaic8 = np.frombuffer(encode_image(_flat((200, 100, 30)), "bayer_rggb8")[0], np.uint8).reshape(16, 20)
    for big in (0, 1):
        m16 = mosaic8.astype(">u2" if big else "<u2") * 257
        out = decode_image(16, 20, "bayer_rggb16", m16.tobytes(), 40, is_bigendian=big)
        np.testing.assert_array_equal(out[4:-4, 4:-4, :], _flat((200, 100, 30))[4:-4, 4:-4])
    grey16 = (np.arange(12, dtype="<u2").reshape(3, 4) * 5000)
    out = decode_image(3, 4, "mono16", grey16.tobytes(), 8)
    np.testing.assert_array_equal(out[..., 0], (grey16 >> 8).astype(np.uint8))


def test_row_padding_is_ignored():
    img = _texture(5, 7)
    step = 7 * 3 + 11
    rows = np.zeros((5, step), np.uint8)
    rows[:, : 7 * 3] = img.reshape(5, -1)
    np.testing.assert_array_equal(decode_image(5, 7, "rgb8", rows.tobytes(), step), img)


def test_encoding_errors():
    with pytest.raises(BagError, match="unsupported sensor_msgs/Image encoding 'yuv422'"):
        decode_image(2, 2, "yuv422", b"\0" * 8)
    with pytest.raises(BagError, match="too small"):
        decode_image(4, 4, "rgb8", b"\0" * 10)
    with pytest.raises(BagError, match="cannot write sensor_msgs/Image encoding 'mono16'"):
        encode_image(_texture(), "mono16")
    with pytest.raises(BagError, match="RGB uint8"):
        encode_jpeg(np.zeros((4, 4), np.uint8))
    assert set(IMAGE_ENCODINGS) >= {"mono8", "rgb8", "bgr8", "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8"}


# ---------------------------------------------------------------------------------------------- round trip
def _write_everything(path: Path) -> dict:
    img = _smooth()
    jpeg = encode_jpeg(img, 95)
    png = encode_png(img)
    att = Attitude(0.05, -0.02, 1.2)
    with BagWriter(path) as bag:
        for k in range(4):
            t = T0 + k * 100_000_000
            bag.write_camera_info("/cam/camera_info", t, CAM)
            bag.write_compressed_image("/cam/image_raw/compressed", t, jpeg if k % 2 == 0 else png)
            bag.write_navsatfix("/gps/fix", t + 1, 47.0 + k * 1e-5, 8.0, 500.0, cov_enu=np.diag([4.0, 4.0, 9.0]))
            bag.write_navsatfix("/ground_truth/fix", t, 47.0, 8.0 + k * 1e-5, 460.0, cov_enu=0.0)
            bag.write_pose("/ground_truth/pose", t, (k, 2 * k, 60.0), att.to_quaternion(), frame_id="enu@47,8,400")
            for j in range(5):
                bag.write_imu("/imu/data", t + j * 20_000_000, att.to_quaternion(), (0.01, 0.02, 0.03),
                              (0.1, 0.2, 9.8), orientation_cov=0.01, angular_velocity_cov=0.001)
        bag.write_image("/mono/image", T0 + 5, img, encoding="mono8")
        bag.write_image("/bayer/image", T0 + 6, img, encoding="bayer_grbg8")
    return {"img": img, "att": att}


def test_written_bag_reads_back_with_anyreader(tmp_path):
    path = tmp_path / "all.bag"
    _write_everything(path)
    assert not (tmp_path / "all.bag.partial").exists()
    with AnyReader([path], default_typestore=typestore()) as r:
        topics = {n: (t.msgtype, t.msgcount) for n, t in r.topics.items()}
        assert topics == {
            "/cam/camera_info": ("sensor_msgs/msg/CameraInfo", 4),
            "/cam/image_raw/compressed": ("sensor_msgs/msg/CompressedImage", 4),
            "/gps/fix": ("sensor_msgs/msg/NavSatFix", 4),
            "/ground_truth/fix": ("sensor_msgs/msg/NavSatFix", 4),
            "/ground_truth/pose": ("geometry_msgs/msg/PoseStamped", 4),
            "/imu/data": ("sensor_msgs/msg/Imu", 20),
            "/mono/image": ("sensor_msgs/msg/Image", 1),
            "/bayer/image": ("sensor_msgs/msg/Image", 1),
        }
        for conn, t, raw in r.messages():
            msg = r.deserialize(raw, conn.msgtype)
            assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == t  # stamp = record time
            if conn.topic == "/gps/fix":
                assert msg.position_covariance_type == 2
                np.testing.assert_allclose(msg.position_covariance, [4, 0, 0, 0, 4, 0, 0, 0, 9])
            if conn.topic == "/cam/camera_info":
                assert (msg.width, msg.height, msg.distortion_model) == (64, 48, "plumb_bob")
                np.testing.assert_allclose(msg.K, CAM.K.ravel())


def test_reader_yields_typed_events_in_time_order(tmp_path):
    path = tmp_path / "all.bag"
    ref = _write_everything(path)
    with BagReader(path) as bag:
        assert bag.selection == {
            "camera": "/cam/image_raw/compressed",
            "camera_info": "/cam/camera_info",
            "gps": "/gps/fix",
            "imu": "/imu/data",
            "truth_fix": "/ground_truth/fix",
            "truth_pose": "/ground_truth/pose",
            "gps_velocity": None,
        }
        assert any("several candidates" in n and "camera:" in n for n in bag.notes)  # 3 image topics
        events = list(bag.events())
    times = [e.t_ns for e in events]
    assert times == sorted(times)
    kinds = {}
    for e in events:
        kinds.setdefault(type(e), []).append(e)
    assert len(kinds[Frame]) == 4 and len(kinds[CameraInfoEvent]) == 4 and len(kinds[GpsFix]) == 4
    assert len(kinds[ImuSample]) == 20 and len(kinds[TruthPose]) == 4
    f0, f1 = kinds[Frame][:2]
    assert f0.camera == CAM and not f0.is_decoded
    np.testing.assert_array_equal(f1.image, ref["img"])  # PNG: lossless
    assert np.mean(np.abs(f0.image.astype(int) - ref["img"])) < 3  # JPEG: lossy but close
    g = kinds[GpsFix][1]
    assert g.lat == pytest.approx(47.00001) and g.sigma_h == pytest.approx(2.0) and g.sigma_v == pytest.approx(3.0)
    assert g.t_ns == T0 + 100_000_001
    imu = kinds[ImuSample][0]
    np.testing.assert_allclose(imu.orientation, ref["att"].to_quaternion(), atol=1e-12)
    assert imu.angular_velocity == (0.01, 0.02, 0.03) and imu.linear_acceleration == (0.1, 0.2, 9.8)
    tp = kinds[TruthPose][2]  # fix and pose with the same stamp merge
    assert (tp.x, tp.y, tp.z) == (2.0, 4.0, 60.0) and tp.lon == pytest.approx(8.00002) and tp.alt == 460.0
    assert tp.attitude is not None and tp.frame_id == "enu@47,8,400"


def test_reader_role_overrides_and_filters(tmp_path):
    path = tmp_path / "all.bag"
    _write_everything(path)
    with BagReader(path, camera_topic="/bayer/image", gps_topic="none") as bag:
        assert bag.selection["camera"] == "/bayer/image" and bag.selection["gps"] is None
        frames = list(bag.events(roles=["camera"]))
        assert len(frames) == 1 and frames[0].camera == CAM and frames[0].image.shape == (48, 64, 3)
        assert not any(isinstance(e, GpsFix) for e in bag.events())
        assert any("no GPS topic" in n for n in bag.missing_notes())
    with BagReader(path, topics={"camera": "/mono/image"}) as bag:
        (frame,) = bag.events(roles=["camera"])
        assert np.array_equal(frame.image[..., 0], frame.image[..., 2])
    with BagReader(path, time_source="record") as bag:
        g = next(e for e in bag.events(roles=["gps"]))
        assert g.t_ns == T0 + 1
    with BagReader(path) as bag:
        only = list(bag.events(roles=["gps"], start_ns=T0 + 150_000_000))
        assert [e.t_ns for e in only] == [T0 + 200_000_001, T0 + 300_000_001]
        with pytest.raises(BagError, match="unknown role"):
            list(bag.events(roles=["lidar"]))


def test_reader_sorts_by_header_stamp_within_the_window(tmp_path):
    """A driver that stamps at capture but logs late: record order differs from stamp order."""
    path = tmp_path / "late.bag"
    T = typestore().types
    with BagWriter(path) as bag:
        for k, (rec, stamp) in enumerate([(10, 5), (20, 25), (30, 12), (40, 35), (50, 31)]):
            Header = T["std_msgs/msg/Header"]
            Time = T["builtin_interfaces/msg/Time"]
            msg = T["sensor_msgs/msg/NavSatFix"](
                header=Header(seq=k, stamp=Time(sec=1000, nanosec=stamp * 1_000_000), frame_id="gps"),
                status=T["sensor_msgs/msg/NavSatStatus"](status=0, service=1),
                latitude=1.0, longitude=2.0, altitude=3.0, position_covariance=np.zeros(9), position_covariance_type=0,
            )
            bag.write_message("/fix", 1000 * 10**9 + rec * 1_000_000, msg)
    with BagReader(path) as bag:
        stamps = [(e.t_ns - 1000 * 10**9) // 1_000_000 for e in bag.events()]
    assert stamps == [5, 12, 25, 31, 35]


def test_write_event_round_trip(tmp_path):
    path = tmp_path / "ev.bag"
    q = Attitude(0, 0, 0.3).to_quaternion()
    evs = [
        Frame(T0, _texture(), CAM, "/camera/image_raw"),
        CameraInfoEvent(T0, CAM, "/camera/camera_info"),
        GpsFix(T0 + 1, 47.0, 8.0, 400.0, 2.0, topic="/gps/fix"),
        ImuSample(T0 + 2, None, (0, 0, 0.1), (0, 0, 9.8), "/imu/data"),
        TruthPose(T0 + 3, 47.0, 8.0, 460.0, 1.0, 2.0, 60.0, q, frame_id="enu@47.000000000,8.000000000,400.000"),
    ]
    with BagWriter(path) as bag:
        for e in evs:
            bag.write_event(e)
    with BagReader(path) as bag:
        out = list(bag.events())
    types = [type(e).__name__ for e in out]
    assert sorted(types) == sorted(["CameraInfoEvent", "Frame", "GpsFix", "ImuSample", "TruthPose"])
    frame = next(e for e in out if isinstance(e, Frame))
    np.testing.assert_array_equal(frame.image, evs[0].image)  # rgb8 Image: exact
    imu = next(e for e in out if isinstance(e, ImuSample))
    assert imu.orientation is None  # orientation_covariance[0] = -1
    tp = next(e for e in out if isinstance(e, TruthPose))
    assert tp.z == 60.0 and tp.lat == 47.0


def test_truth_pose_alone_recovers_wgs84_from_frame_id(tmp_path):
    from runtime.truth_frame import TruthFrame

    frame = TruthFrame(47.3, 8.5, 400.0)
    path = tmp_path / "pose.bag"
    with BagWriter(path) as bag:
        bag.write_pose("/ground_truth/pose", T0, (100.0, -50.0, 60.0), (0, 0, 0, 1), frame_id=frame.frame_id)
    with BagReader(path) as bag:
        (tp,) = list(bag.events())
    lat, lon, alt = frame.to_wgs84(100.0, -50.0, 60.0)
    assert tp.lat == pytest.approx(lat, abs=1e-9) and tp.lon == pytest.approx(lon, abs=1e-9) and tp.alt == 460.0


# ---------------------------------------------------------------------------------------------- GPS velocity
def _write_gps_with_velocity(path: Path, *, twist_stamped: bool = False) -> None:
    """Fixes at 1 Hz; velocities 0.05 s after each (recorded after the fix) except fix 2 (0.4 s: too far) and fix 3
    (none); an extra velocity 0.2 s before fix 1 that must lose to the nearer one."""
    T = typestore().types
    with BagWriter(path) as bag:
        for k in range(5):
            t = T0 + k * 1_000_000_000
            if k == 1:
                bag.write_velocity("/gps/vel", t - 200_000_000, (-9.0, -9.0), sigma_mps=2.0)
            bag.write_navsatfix("/gps/fix", t, 47.0 + k * 1e-5, 8.0, 500.0, cov_enu=2.0)
            if k == 3:
                continue
            tv = t + (400_000_000 if k == 2 else 50_000_000)
            v = (1.0 + k, -0.5 * k, 0.1)
            if twist_stamped:
                V3 = T["geometry_msgs/msg/Vector3"]
                twist = T["geometry_msgs/msg/Twist"](linear=V3(x=v[0], y=v[1], z=v[2]), angular=V3(x=0.0, y=0.0, z=0.0))
                hdr = T["std_msgs/msg/Header"](seq=k, stamp=T["builtin_interfaces/msg/Time"](
                    sec=tv // 10**9, nanosec=tv % 10**9), frame_id="gps")
                bag.write_message("/vel", tv, T["geometry_msgs/msg/TwistStamped"](header=hdr, twist=twist))
            else:
                bag.write_velocity("/gps/vel", tv, v, sigma_mps=0.2 if k != 4 else None)


def test_reader_attaches_the_nearest_gps_velocity_to_each_fix(tmp_path):
    path = tmp_path / "vel.bag"
    _write_gps_with_velocity(path)
    with BagReader(path) as bag:
        assert bag.selection["gps_velocity"] == "/gps/vel" and bag.selection["gps"] == "/gps/fix"
        events = list(bag.events())
    assert all(isinstance(e, GpsFix) for e in events)  # velocities are no events of their own
    assert [e.t_ns - T0 for e in events] == [k * 1_000_000_000 for k in range(5)]
    v = [None if e.velocity_enu is None else e.velocity_enu.tolist() for e in events]
    assert v[0] == [1.0, 0.0, 0.1] and v[1] == [2.0, -0.5, 0.1]  # the nearer one, not the one 0.2 s before
    assert v[2] is None and v[3] is None  # 0.4 s away (> 0.25 s), and none at all
    assert v[4] == [5.0, -2.0, 0.1]
    assert events[0].velocity_sigma_mps == pytest.approx(0.2) and events[0].velocity_xy == (1.0, 0.0)
    assert events[4].velocity_sigma_mps is None  # zero covariance: unknown
    with BagReader(path, velocity_max_dt_ns=500_000_000) as bag:
        assert next(e for e in bag.events() if e.t_ns == T0 + 2 * 10**9).velocity_xy == (3.0, -1.0)
    # a velocity topic alone yields nothing; switched off, the fixes are as before
    with BagReader(path) as bag:
        assert list(bag.events(roles=["gps_velocity"])) == []
    with BagReader(path, gps_velocity_topic="none") as bag:
        assert bag.selection["gps_velocity"] is None
        assert [e.velocity_enu for e in bag.events()] == [None] * 5
    with BagReader(path, reorder_window_ns=0) as bag:  # no reorder window: the later velocity still pairs
        assert [e.velocity_enu is not None for e in bag.events(roles=["gps"])] == [True, True, False, False, True]
    with pytest.raises(BagError, match="velocity_max_dt_ns"):
        BagReader(path, velocity_max_dt_ns=-1)


def test_twist_stamped_velocity_has_no_sigma(tmp_path):
    path = tmp_path / "twist.bag"
    _write_gps_with_velocity(path, twist_stamped=True)
    with BagReader(path) as bag:
        assert bag.selection["gps_velocity"] == "/vel"
        fixes = list(bag.events(roles=["gps"]))
    assert fixes[0].velocity_xy == (1.0, 0.0) and fixes[0].velocity_sigma_mps is None
    assert [f.velocity_enu is not None for f in fixes] == [True, True, False, False, True]


def test_write_velocity_errors(tmp_path):
    with BagWriter(tmp_path / "e.bag") as bag:
        with pytest.raises(BagError, match="velocity_enu must be 2 or 3 finite numbers"):
            bag.write_velocity("/v", T0, (1.0,))
        with pytest.raises(BagError, match="sigma_mps must be a finite number"):
            bag.write_velocity("/v", T0, (1.0, 2.0), sigma_mps=-1.0)


# ---------------------------------------------------------------------------------------------- selection
def test_select_topics_by_type_and_name():
    topics = {
        "/fix": ("sensor_msgs/msg/NavSatFix", 10),
        "/gt/fix": ("sensor_msgs/msg/NavSatFix", 10),
        "/camera/depth/image": ("sensor_msgs/msg/Image", 50),
        "/camera/color/image_raw": ("sensor_msgs/msg/Image", 30),
        "/camera/color/camera_info": ("sensor_msgs/msg/CameraInfo", 30),
        "/camera/depth/camera_info": ("sensor_msgs/msg/CameraInfo", 50),
        "/odom": ("nav_msgs/msg/Odometry", 100),
    }
    sel, notes = select_topics(topics)
    assert sel["gps"] == "/fix" and sel["truth_fix"] == "/gt/fix"
    assert sel["camera"] == "/camera/color/image_raw"  # depth is never the camera
    assert sel["camera_info"] == "/camera/color/camera_info"  # same namespace as the camera
    assert sel["imu"] is None and sel["truth_pose"] is None and sel["gps_velocity"] is None
    sel, _ = select_topics(topics | {"/ground_truth/vel": ("geometry_msgs/msg/TwistStamped", 10),
                                     "/ublox/fix_velocity": ("geometry_msgs/msg/TwistWithCovarianceStamped", 10)})
    assert sel["gps_velocity"] == "/ublox/fix_velocity"  # by type; a truth topic is never the receiver's velocity
    sel, _ = select_topics({"/vel": ("geometry_msgs/msg/TwistStamped", 10)}, {"gps_velocity": "none"})
    assert sel["gps_velocity"] is None
    assert is_truth_topic("/ground_truth/pose") and is_truth_topic("/vicon/drone") and not is_truth_topic("/gtx/fix")


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"gps": "/nope"}, "gps topic '/nope' is not in the bag; topics: /fix \\(sensor_msgs/NavSatFix\\)"),
        ({"imu": "/fix"}, "imu topic /fix carries sensor_msgs/NavSatFix, expected sensor_msgs/Imu"),
        ({"lidar": "/x"}, "unknown topic role"),
        ({"gps_velocity": "/fix"}, "gps_velocity topic /fix carries sensor_msgs/NavSatFix, expected "
                                   "geometry_msgs/TwistWithCovarianceStamped or geometry_msgs/TwistStamped"),
    ],
)
def test_select_topics_override_errors(overrides, match):
    with pytest.raises(BagError, match=match):
        select_topics({"/fix": ("sensor_msgs/msg/NavSatFix", 3)}, overrides)


# ---------------------------------------------------------------------------------------------- errors
def test_writer_errors_and_partial_cleanup(tmp_path):
    path = tmp_path / "x.bag"
    with BagWriter(path) as bag:
        bag.write_navsatfix("/fix", T0, 1, 2, 3)
        with pytest.raises(BagError, match="already carries sensor_msgs/NavSatFix, cannot also write sensor_msgs/Imu"):
            bag.write_imu("/fix", T0, None, (0, 0, 0), (0, 0, 0))
        with pytest.raises(BagError, match="non-negative integer of nanoseconds"):
            bag.write_navsatfix("/fix", 1.5, 1, 2, 3)
        with pytest.raises(BagError, match="3x3 covariance"):
            bag.write_navsatfix("/fix", T0, 1, 2, 3, cov_enu=[1, 2, 3])
    with pytest.raises(BagError, match="exists already"):
        BagWriter(path).open()
    with pytest.raises(BagError, match="must end in .bag"):
        BagWriter(tmp_path / "x.db3").open()
    with pytest.raises(BagError, match="does not exist"):
        BagWriter(tmp_path / "missing" / "x.bag").open()
    with pytest.raises(BagError, match="not open"):
        BagWriter(tmp_path / "y.bag").write_navsatfix("/fix", T0, 1, 2, 3)
    with pytest.raises(RuntimeError):
        with BagWriter(tmp_path / "z.bag") as bag:
            bag.write_navsatfix("/fix", T0, 1, 2, 3)
            raise RuntimeError("boom")
    assert not (tmp_path / "z.bag").exists() and not (tmp_path / "z.bag.partial").exists()
    with BagWriter(path, overwrite=True) as bag:  # replaces
        bag.write_navsatfix("/fix2", T0, 1, 2, 3)
    with BagReader(path) as r:
        assert list(r.topics) == ["/fix2"]
    with pytest.raises(BagError, match="cannot write an event of type str"):
        with BagWriter(tmp_path / "w.bag") as bag:
            bag.write_event("hello")


def test_reader_errors(tmp_path):
    with pytest.raises(BagError, match="does not exist"):
        BagReader(tmp_path / "none.bag")
    junk = tmp_path / "junk.bag"
    junk.write_bytes(b"this is not a bag" * 10)
    with pytest.raises(BagError, match="cannot read .*junk.bag as a ROS bag"):
        BagReader(junk).open()
    with pytest.raises(BagError, match="time_source"):
        BagReader(junk, time_source="wall")
    good = tmp_path / "g.bag"
    with BagWriter(good) as bag:
        bag.write_compressed_image("/cam/compressed", T0, b"GIF89a-not-supported", fmt="gif")
    with pytest.raises(BagError, match="not open"):
        _ = BagReader(good).topics
    with BagReader(good) as r:  # one bad image is a counted skip with a note, not the end of the replay
        assert list(r.events()) == []
        assert r.skipped == {"/cam/compressed": 1}
        assert "neither JPEG nor PNG" in r.skip_notes[0] and f"t={T0} ns" in r.skip_notes[0]
    with pytest.raises(BagError, match="camera topic '/x' is not in the bag"):
        BagReader(good, camera_topic="/x").open()


# ---------------------------------------------------------------------------------------------- real bag
def test_real_husky_bag_reads(shared_data):
    path = shared_data("bags/husky_gps_imu_odom.bag")
    with BagReader(path) as bag:
        topics = bag.topics
        assert topics["/fix"].count == 989 and topics["/fix"].ros1_type == "sensor_msgs/NavSatFix"
        assert topics["/imu/data"].ros1_type == "sensor_msgs/Imu"
        assert bag.selection["gps"] == "/fix" and bag.selection["imu"] == "/imu/data"
        assert bag.selection["camera"] is None
        assert bag.duration_s == pytest.approx(395.3, abs=0.5)
        assert topics["/fix"].rate_hz == pytest.approx(2.5, abs=0.1)
        assert bag.selection["gps_velocity"] is None  # this recording has no velocity topic
        fixes = list(bag.events(roles=["gps"]))
        imu = list(bag.events(roles=["imu"], stop_ns=bag.start_ns + 2 * 10**9))
    assert len(fixes) == 989 and all(f.velocity_enu is None for f in fixes)
    assert all(a.t_ns <= b.t_ns for a, b in zip(fixes, fixes[1:]))
    lat = np.array([f.lat for f in fixes if f.has_fix])
    lon = np.array([f.lon for f in fixes if f.has_fix])
    assert 42.3 < lat.mean() < 42.5 and -71.2 < lon.mean() < -71.1  # Cambridge, MA
    assert fixes[0].sigma_h == pytest.approx(0.9)
    assert imu and all(s.orientation is not None for s in imu)
    assert all(math.isclose(np.linalg.norm(s.linear_acceleration), 9.8, rel_tol=0.1) for s in imu)


def test_unusable_camera_info_is_a_bag_error(tmp_path):
    from runtime.bags import camera_info_to_camera

    assert camera_info_to_camera(64, 48, "plumb_bob", [], [0.0] * 9) is None  # uncalibrated
    with pytest.raises(BagError, match="CameraInfo \\(64x48, 'kannala'\\) is not a usable camera"):
        camera_info_to_camera(64, 48, "kannala", [0.1, 0, 0, 0], [50, 0, 32, 0, 50, 24, 0, 0, 1])
    with pytest.raises(BagError, match="no bag path given"):
        BagReader([])
