"""ROS 2 bags (sqlite3 and mcap, with and without stored definitions) read like the ROS 1 original they were made
from with the real ``rosbags-convert``; ROS 2 bags written directly with rosbags' rosbag2 Writer; typestore choice."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader, AnyReaderError

from runtime.bags import BagReader
from runtime.cli.onboard import main as runtime_main
from runtime.errors import BagError
from runtime.events import CameraInfoEvent, Frame, GpsFix, ImuSample

from .conftest import CAM, N_FRAMES, T0, humble_style, rosbags_convert


def _key(ev):
    """Everything an event carries, comparable across bags."""
    base = (type(ev).__name__, ev.t_ns, ev.topic)
    if isinstance(ev, Frame):
        return base + (ev.encoded, ev.camera)
    if isinstance(ev, CameraInfoEvent):
        return base + (ev.camera,)
    if isinstance(ev, GpsFix):
        return base + (ev.lat, ev.lon, ev.alt, ev.status, ev.covariance_type, ev.cov_enu.tolist(),
                       None if ev.velocity_enu is None else ev.velocity_enu.tolist(), ev.velocity_sigma_mps)
    if isinstance(ev, ImuSample):
        return base + (ev.orientation, ev.angular_velocity, ev.linear_acceleration)
    raise AssertionError(type(ev))


def _events(path, **kw):
    with BagReader(path, **kw) as bag:
        evs = list(bag.events())
        return [_key(e) for e in evs], bag.first_camera(), dict(bag.selection), list(bag.notes), bag


LAYOUTS = {
    # name: (rosbags-convert arguments, Humble-style rewrite (ros_distro) or None)
    "mcap_humble": (("--dst-storage", "mcap", "--dst-typestore", "ros2_humble"), None),
    "mcap_jazzy": (("--dst-storage", "mcap", "--dst-typestore", "ros2_jazzy"), None),
    "sqlite3_jazzy": (("--dst-typestore", "ros2_jazzy"), None),
    "sqlite3_copy": ((), None),  # ROS 1 definitions (D/K) stored in a ROS 2 bag
    "sqlite3_humble_no_definitions": (("--dst-typestore", "ros2_humble"), "humble"),
    "sqlite3_no_definitions_no_distro": (("--dst-typestore", "ros2_humble"), ""),
}


@pytest.fixture(scope="module")
def layouts(tmp_path_factory, ros1_flight):
    root = tmp_path_factory.mktemp("layouts")
    out = {}
    for name, (args, distro) in LAYOUTS.items():
        dst = rosbags_convert(ros1_flight, root / name, *args)
        out[name] = humble_style(dst, distro) if distro is not None else dst
    return out


def test_humble_style_bag_stores_no_definitions(humble_bag):
    """The fixture is what the issue reports: rosbags alone cannot read it without a typestore."""
    with pytest.raises(AnyReaderError, match="no type definitions"):
        with AnyReader([humble_bag]):
            pass


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_converted_bag_gives_the_events_of_the_ros1_original(layout, layouts, ros1_flight):
    ref, ref_cam, ref_sel, _, _ = _events(ros1_flight)
    got, cam, sel, notes, bag = _events(layouts[layout])
    assert bag.is_ros2
    assert sel == ref_sel
    assert cam == ref_cam == CAM  # from lowercase d/k (ROS 2) exactly as from D/K (ROS 1)
    assert len(got) == len(ref) and got == ref
    kinds = [k[0] for k in got]
    assert kinds.count("Frame") == N_FRAMES and kinds.count("GpsFix") == N_FRAMES
    if layout == "sqlite3_humble_no_definitions":
        assert bag.typestore_used == "ros2_humble"
        assert any("stores no message definitions" in n and "ros2_humble" in n for n in notes)
    elif layout == "sqlite3_no_definitions_no_distro":
        assert any("names no ROS distribution" in n and "--typestore" in n for n in notes)
    else:
        assert bag.typestore_used == "stored in the bag"


def test_ros2_camera_info_really_has_lowercase_arrays(layouts):
    with AnyReader([layouts["mcap_humble"]]) as r:
        conn = next(c for c in r.connections if c.topic == "/cam/camera_info")
        msg = r.deserialize(next(r.messages(connections=[conn]))[2], conn.msgtype)
    assert not hasattr(msg, "K") and np.allclose(msg.k, CAM.K.ravel()) and np.allclose(msg.d, CAM.distortion)


def test_storage_file_path_is_taken_as_its_bag_folder(layouts):
    db = next(layouts["sqlite3_jazzy"].glob("*.db3"))
    mcap = next(layouts["mcap_humble"].glob("*.mcap"))
    for path, folder in ((db, layouts["sqlite3_jazzy"]), (mcap, layouts["mcap_humble"])):
        with BagReader(path) as bag:
            assert bag.paths == [folder] and bag.selection["camera"] == "/cam/image_raw/compressed"


def test_typestore_by_name(humble_bag):
    ref, _, _, _, _ = _events(humble_bag)
    jazzy, _, _, _, bag = _events(humble_bag, typestore="ros2_jazzy")  # same layouts for these types
    assert jazzy == ref and bag.typestore_used == "ros2_jazzy"
    with pytest.raises(BagError, match="ROS 2 bag without stored message definitions; the ros1_noetic typestore"):
        BagReader(humble_bag, typestore="ros1_noetic").open()
    with pytest.raises(BagError, match="unknown typestore 'ros2_rolling'; expected one of auto, ros1_noetic"):
        BagReader(humble_bag, typestore="ros2_rolling")


def test_humble_named_in_the_schema_is_used(tmp_path, ros1_flight):
    """ROS 2 Humble writes its name into the sqlite3 schema table: auto reads it from there."""
    dst = humble_style(rosbags_convert(ros1_flight, tmp_path / "h", "--dst-typestore", "ros2_humble"), "jazzy")
    with BagReader(dst) as bag:
        assert bag.typestore_used == "ros2_jazzy"


# ---------------------------------------------------------------------------------------------- rosbag2 Writer
@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
@pytest.mark.parametrize("store", ["ros2_jazzy", "ros2_humble"])
def test_bag_written_by_rosbag2_writer(tmp_path, storage, store):
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    from calibration.camera_io import camera_info_fields
    from runtime.bags import encode_jpeg

    ts = get_typestore(Stores(store))
    T = ts.types
    f = camera_info_fields(CAM)

    def header(t):
        return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=t % 10**9),
                                        frame_id="cam")

    path = tmp_path / "direct"
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    img = encode_jpeg(np.full((48, 64, 3), 120, np.uint8))
    with Writer(path, version=9, storage_plugin=plugin) as w:
        c_info = w.add_connection("/camera/camera_info", "sensor_msgs/msg/CameraInfo", typestore=ts)
        c_img = w.add_connection("/camera/image/compressed", "sensor_msgs/msg/CompressedImage", typestore=ts)
        c_fix = w.add_connection("/fix", "sensor_msgs/msg/NavSatFix", typestore=ts)
        for k in range(3):
            t = T0 + k * 10**8
            roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
            info = T["sensor_msgs/msg/CameraInfo"](
                header=header(t), height=48, width=64, distortion_model="plumb_bob",
                d=np.asarray(f["d"], float), k=np.asarray(f["k"], float).ravel(), r=np.eye(3).ravel(),
                p=np.asarray(f["p"], float).ravel(), binning_x=0, binning_y=0, roi=roi)
            w.write(c_info, t, ts.serialize_cdr(info, "sensor_msgs/msg/CameraInfo"))
            msg = T["sensor_msgs/msg/CompressedImage"](header=header(t), format="jpeg",
                                                       data=np.frombuffer(img, np.uint8))
            w.write(c_img, t, ts.serialize_cdr(msg, "sensor_msgs/msg/CompressedImage"))
            fix = T["sensor_msgs/msg/NavSatFix"](
                header=header(t), status=T["sensor_msgs/msg/NavSatStatus"](status=0, service=1),
                latitude=47.0 + k * 1e-4, longitude=8.0, altitude=450.0,
                position_covariance=np.diag([1.0, 1.0, 4.0]).ravel(), position_covariance_type=2)
            w.write(c_fix, t, ts.serialize_cdr(fix, "sensor_msgs/msg/NavSatFix"))
    with BagReader(path) as bag:
        assert bag.selection["camera"] == "/camera/image/compressed" and bag.selection["gps"] == "/fix"
        assert bag.first_camera() == CAM
        evs = list(bag.events())
    frames = [e for e in evs if isinstance(e, Frame)]
    fixes = [e for e in evs if isinstance(e, GpsFix)]
    assert [f.t_ns for f in frames] == [T0, T0 + 10**8, T0 + 2 * 10**8]
    assert all(f.camera == CAM and f.encoded == img for f in frames)
    assert [round(f.lat, 6) for f in fixes] == [47.0, 47.0001, 47.0002] and fixes[0].sigma_h == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------- CLI
def test_inspect_lists_the_topics_of_a_ros2_bag(layouts, capsys):
    assert runtime_main(["inspect", str(layouts["sqlite3_humble_no_definitions"]), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "ROS 2" and info["typestore"] == "ros2_humble"
    assert {t["topic"]: (t["type"], t["count"]) for t in info["topics"]} == {
        "/cam/camera_info": ("sensor_msgs/CameraInfo", N_FRAMES),
        "/cam/image_raw/compressed": ("sensor_msgs/CompressedImage", N_FRAMES),
        "/gps/fix": ("sensor_msgs/NavSatFix", N_FRAMES),
        "/gps/fix_velocity": ("geometry_msgs/TwistWithCovarianceStamped", N_FRAMES),
        "/imu/data": ("sensor_msgs/Imu", 5 * N_FRAMES),
    }
    assert info["camera"]["width"] == 64 and info["first_fix"]["lat"] == pytest.approx(47.0)
    assert info["bytes"] > 10_000
    assert runtime_main(["inspect", str(layouts["mcap_jazzy"])]) == 0
    text = capsys.readouterr().out
    assert "ROS 2 bag" in text and "message definitions: stored in the bag" in text
    assert "camera_info  /cam/camera_info" in text and "64x48 pinhole" in text


def test_inspect_typestore_flag(humble_bag, capsys):
    assert runtime_main(["inspect", str(humble_bag), "--typestore", "ros2_jazzy", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["typestore"] == "ros2_jazzy"
    assert runtime_main(["inspect", str(humble_bag), "--typestore", "noetic"]) == 2  # a typed error, said plainly
    assert "error: unknown typestore 'noetic'; expected one of auto, ros1_noetic" in capsys.readouterr().err


def _track(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for r in rows:
        r.pop("latency_ms")
    return rows


def test_replay_of_converted_real_bag_gives_the_same_track(shared_data, tmp_path, capsys):
    """The real Husky ROS 1 bag, converted to mcap (Humble types) and to Humble-style sqlite3 without definitions:
    `runtime replay` gives the same estimates."""
    src = shared_data("bags/husky_gps_imu_odom.bag")
    mcap = rosbags_convert(src, tmp_path / "husky_mcap", "--dst-storage", "mcap", "--dst-typestore", "ros2_humble")
    sql = humble_style(rosbags_convert(src, tmp_path / "husky_sql", "--dst-typestore", "ros2_humble"))
    tracks = []
    for k, bag in enumerate((src, mcap, sql)):
        out = tmp_path / f"t{k}.jsonl"
        assert runtime_main(["replay", str(bag), "-o", str(out), "--quiet", "--no-geojson", "--no-gpx"]) == 0
        tracks.append(_track(out))
    err = capsys.readouterr().err
    assert "stores no message definitions" in err  # the Humble-style bag says what it was read with
    assert len(tracks[0]) == 989
    assert tracks[1] == tracks[0] and tracks[2] == tracks[0]
    assert all(math.isfinite(r["lat"]) for r in tracks[0])
