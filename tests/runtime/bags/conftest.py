"""Fixtures of tests/runtime/bags: real ROS 2 bags made with the real tools.

* ``ros1_flight``: a ROS 1 bag written by :class:`runtime.bags.BagWriter` (CameraInfo, JPEG frames, NavSatFix, Imu).
* ``convert``: the real ``rosbags-convert`` CLI (ROS 1 -> ROS 2 sqlite3 or mcap, with a destination typestore).
* ``humble_style``: rewrites a rosbags-written sqlite3 bag the way ROS 2 Humble's rosbag2 stores one: sqlite schema 3
  (``schema``/``metadata``/``topics``/``messages``, no ``message_definitions`` table, no type hashes) and metadata
  version 5: no stored message definitions.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from calibration.camera import CameraModel
from calibration.geometry import Attitude

T0 = 1_700_000_000_000_000_000
CAM = CameraModel(64, 48, 50.0, 51.0, 31.5, 23.5, (-0.1, 0.01, 0.001, -0.002, 0.0))
N_FRAMES = 6


def write_flight(path: Path) -> None:
    """A small ROS 1 flight: 6 JPEG frames with CameraInfo, GPS at 10 Hz with a velocity, IMU at 50 Hz."""
    from runtime.bags import BagWriter, encode_jpeg

    rng = np.random.default_rng(3)
    with BagWriter(path) as bag:
        for k in range(N_FRAMES):
            t = T0 + k * 100_000_000
            bag.write_camera_info("/cam/camera_info", t, CAM)
            bag.write_compressed_image("/cam/image_raw/compressed", t,
                                       encode_jpeg(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)))
            bag.write_navsatfix("/gps/fix", t + 3, 47.0 + k * 1e-5, 8.0 + k * 2e-5, 500.0 + k,
                                cov_enu=np.diag([4.0, 4.0, 9.0]))
            bag.write_velocity("/gps/fix_velocity", t + 3, (1.5, 1.1, 0.0), sigma_mps=0.2)
            for j in range(5):
                att = Attitude(0.05 * k, -0.02, 0.3 + 0.01 * j)
                bag.write_imu("/imu/data", t + j * 20_000_000, att.to_quaternion(), (0.01, 0.02, 0.03 * j),
                              (0.1, 0.2, 9.8), orientation_cov=0.01)


@pytest.fixture(scope="session")
def ros1_flight(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ros1") / "flight.bag"
    write_flight(path)
    return path


def rosbags_convert(src: Path, dst: Path, *extra: str) -> Path:
    """Run the real ``rosbags-convert`` CLI of this environment; returns ``dst``."""
    exe = Path(sys.executable).with_name("rosbags-convert")
    if not exe.exists():
        pytest.skip(f"rosbags-convert is not installed next to {sys.executable} (pip install rosbags)")
    proc = subprocess.run([str(exe), "--src", str(src), "--dst", str(dst), *extra], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return dst


@pytest.fixture(scope="session")
def convert():
    return rosbags_convert


def humble_style(folder: Path, ros_distro: str = "humble") -> Path:
    """Rewrite a rosbags-written sqlite3 ROS 2 bag in place as ROS 2 Humble's rosbag2 writes one: no stored message
    definitions or type hashes, sqlite schema 3 naming ``ros_distro`` (``""``: names none), metadata version 5."""
    meta_path = folder / "metadata.yaml"
    meta = yaml.safe_load(meta_path.read_text())
    info = meta["rosbag2_bagfile_information"]
    (db,) = [folder / p for p in info["relative_file_paths"]]
    con = sqlite3.connect(db)
    con.executescript(
        """
        DROP TABLE message_definitions;
        CREATE TABLE topics_h(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL,
                              serialization_format TEXT NOT NULL, offered_qos_profiles TEXT NOT NULL);
        INSERT INTO topics_h SELECT id, name, type, serialization_format, offered_qos_profiles FROM topics;
        DROP TABLE topics;
        ALTER TABLE topics_h RENAME TO topics;
        """
    )
    con.execute("UPDATE schema SET schema_version = 3, ros_distro = ?", (ros_distro,))
    con.commit()
    con.close()
    info["version"] = 5
    for key in ("ros_distro", "custom_data"):
        info.pop(key, None)
    for t in info["topics_with_message_count"]:
        t["topic_metadata"].pop("type_description_hash", None)
        t["topic_metadata"]["offered_qos_profiles"] = ""
    meta_path.write_text(yaml.safe_dump(meta))
    return folder


@pytest.fixture(scope="session")
def humble_bag(tmp_path_factory, ros1_flight) -> Path:
    """The ROS 1 flight converted to ROS 2 Humble types, stored as Humble does (sqlite3, no definitions)."""
    dst = tmp_path_factory.mktemp("humble") / "humble"
    rosbags_convert(ros1_flight, dst, "--dst-typestore", "ros2_humble")
    return humble_style(dst)


@pytest.fixture(scope="session")
def copy_tree():
    def _copy(src: Path, dst: Path) -> Path:
        shutil.copytree(src, dst)
        return dst

    return _copy
