"""Message type names, topic roles, typestores (ROS 1 Noetic, ROS 2 distributions, shipped px4_msgs) and CameraInfo
conversion."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from calibration.camera import CameraModel

from ..errors import BagError

# Message types as rosbags names them (ROS1 bags show them without '/msg/').
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
IMAGE = "sensor_msgs/msg/Image"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
NAVSATFIX = "sensor_msgs/msg/NavSatFix"
IMU = "sensor_msgs/msg/Imu"
POSE_STAMPED = "geometry_msgs/msg/PoseStamped"
TWIST_WITH_COVARIANCE_STAMPED = "geometry_msgs/msg/TwistWithCovarianceStamped"
TWIST_STAMPED = "geometry_msgs/msg/TwistStamped"
# PX4 uXRCE-DDS (px4_msgs; definitions shipped in px4_msgs/ for bags that do not store them)
PX4_SENSOR_GPS = "px4_msgs/msg/SensorGps"
PX4_VEHICLE_ATTITUDE = "px4_msgs/msg/VehicleAttitude"
PX4_SENSOR_COMBINED = "px4_msgs/msg/SensorCombined"

#: role -> message types that can fill it, in order of preference.
ROLE_TYPES: dict[str, tuple[str, ...]] = {
    "camera": (COMPRESSED_IMAGE, IMAGE),
    "camera_info": (CAMERA_INFO,),
    "gps": (NAVSATFIX, PX4_SENSOR_GPS),
    "imu": (IMU, PX4_SENSOR_COMBINED),
    "truth_fix": (NAVSATFIX,),
    "truth_pose": (POSE_STAMPED,),
    # GNSS ground velocity, ENU m/s (nmea_navsat_driver ``vel``, ublox ``fix_velocity``): not an event of its own,
    # attached to the GpsFix nearest in time (see BagReader.events)
    "gps_velocity": (TWIST_WITH_COVARIANCE_STAMPED, TWIST_STAMPED),
    # PX4's attitude estimate: the orientation of each SensorCombined sample (used only with a px4_msgs imu topic)
    "imu_attitude": (PX4_VEHICLE_ATTITUDE,),
}
ROLES = tuple(ROLE_TYPES)

IMAGE_ENCODINGS = (
    "mono8", "mono16", "rgb8", "bgr8", "rgba8", "bgra8",
    "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8",
    "bayer_rggb16", "bayer_bggr16", "bayer_gbrg16", "bayer_grbg16",
)  # fmt: skip

_TRUTH_WORDS = re.compile(r"(^|[/_\-])(ground_?truth|truth|gt|groundtruth|vicon|mocap)([/_\-]|$)", re.IGNORECASE)


def ros1_type_name(msgtype: str) -> str:
    """'sensor_msgs/msg/NavSatFix' -> 'sensor_msgs/NavSatFix' (the name ROS1 tools show)."""
    return msgtype.replace("/msg/", "/")


def is_truth_topic(topic: str) -> bool:
    """Whether a topic name says it carries ground truth (``/ground_truth/fix``, ``/gt/pose``, ``/vicon/...``)."""
    return bool(_TRUTH_WORDS.search(topic))


@lru_cache(maxsize=1)
def typestore():
    """The ROS1 Noetic typestore of rosbags (cached): what :class:`~runtime.bags.BagWriter` writes with."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS1_NOETIC)


#: typestores a bag can be read with: ``auto`` (from the bag) or a rosbags store name.
TYPESTORES = ("auto", "ros1_noetic", "ros2_foxy", "ros2_galactic", "ros2_humble", "ros2_iron", "ros2_jazzy",
              "ros2_kilted")
PX4_MSG_DIR = Path(__file__).with_name("px4_msgs")


def check_typestore_name(name) -> str:
    """``name`` normalised (lower case); BagError naming the valid ones otherwise."""
    if not isinstance(name, str) or name.strip().lower() not in TYPESTORES:
        raise BagError(
            f"unknown typestore {name!r}; expected one of {', '.join(TYPESTORES)} (auto: ROS 1 bags use ros1_noetic, "
            "ROS 2 bags their stored definitions, else the distribution the bag names, else ros2_humble)"
        )
    return name.strip().lower()


def px4_types() -> dict:
    """The shipped px4_msgs definitions (``px4_msgs/*.msg``) as rosbags type definitions."""
    from rosbags.typesys import get_types_from_msg

    types: dict = {}
    for path in sorted(PX4_MSG_DIR.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"px4_msgs/msg/{path.stem}"))
    return types


@lru_cache(maxsize=None)
def reading_typestore(name: str):
    """The rosbags typestore ``name`` (one of :data:`TYPESTORES` but auto) with the shipped px4_msgs registered:
    the types of a bag that stores no definitions of its own (cached per name; do not modify it)."""
    from rosbags.typesys import Stores, get_typestore

    name = check_typestore_name(name)
    if name == "auto":
        raise BagError("reading_typestore needs a store name, not 'auto' (BagReader resolves auto from the bag)")
    store = get_typestore(Stores(name))
    store.register(px4_types())
    return store


# ============================================================================================== camera info
def camera_info_to_camera(width: int, height: int, distortion_model: str, d, k) -> CameraModel | None:
    """CameraInfo fields -> CameraModel, or None when the camera is uncalibrated (K all zero).

    Raises:
        BagError: fields that no CameraModel can represent (the message says which).
    """
    from calibration.camera_io import camera_from_camera_info
    from calibration.errors import CalibrationError

    k = np.asarray(k, dtype=float).ravel()
    if k.size != 9 or not np.any(k):
        return None
    try:
        return camera_from_camera_info(int(width), int(height), str(distortion_model), list(map(float, d)), k.tolist())
    except CalibrationError as exc:
        raise BagError(f"CameraInfo ({width}x{height}, {distortion_model!r}) is not a usable camera: {exc}") from exc


