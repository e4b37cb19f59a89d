"""Message type names, topic roles, the ROS1 typestore and CameraInfo conversion."""

from __future__ import annotations

import re
from functools import lru_cache

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

#: role -> message types that can fill it, in order of preference.
ROLE_TYPES: dict[str, tuple[str, ...]] = {
    "camera": (COMPRESSED_IMAGE, IMAGE),
    "camera_info": (CAMERA_INFO,),
    "gps": (NAVSATFIX,),
    "imu": (IMU,),
    "truth_fix": (NAVSATFIX,),
    "truth_pose": (POSE_STAMPED,),
    # GNSS ground velocity, ENU m/s (nmea_navsat_driver ``vel``, ublox ``fix_velocity``): not an event of its own,
    # attached to the GpsFix nearest in time (see BagReader.events)
    "gps_velocity": (TWIST_WITH_COVARIANCE_STAMPED, TWIST_STAMPED),
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
    """The ROS1 Noetic typestore of rosbags (cached)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS1_NOETIC)


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


