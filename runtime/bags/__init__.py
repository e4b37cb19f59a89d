"""ROS1 bag I/O with ``rosbags``: a writer for the standard messages and a reader that yields typed events.

Writing
-------
:class:`BagWriter` writes ``sensor_msgs/CompressedImage``, ``Image``, ``CameraInfo``, ``NavSatFix``, ``Imu`` and
``geometry_msgs/PoseStamped`` with the ROS1 Noetic type definitions (so ``rosbag info``/``rqt_bag`` read the files).
Each message's header stamp and the bag's record time are the same integer nanoseconds; ``header.seq`` counts per
topic. The file appears only when the writer closes without error (written to ``NAME.partial`` first).

Reading
-------
:class:`BagReader` (on ``rosbags.highlevel.AnyReader``) finds the topics **by message type** — camera
(CompressedImage or Image), camera_info (CameraInfo), gps (NavSatFix), imu (Imu), truth_fix (a NavSatFix whose name
says ``truth``), truth_pose (PoseStamped) and gps_velocity (TwistWithCovarianceStamped or TwistStamped, ENU m/s:
attached to the nearest GpsFix, not an event of its own) — each overridable by name (``""`` switches a role off),
and yields
:mod:`runtime.events` in time order (header stamps, reordered within a small window; the record time where a stamp is
zero). Image encodings: mono8, mono16, rgb8, bgr8, rgba8, bgra8, bayer_{rggb,bggr,gbrg,grbg}{8,16}; CompressedImage:
JPEG and PNG (decoded lazily, when the tracker looks at :attr:`Frame.image`).

Modules: :mod:`.msgtypes` (type names, roles, typestore), :mod:`.images` (image encodings), :mod:`.writer`
(:class:`BagWriter`), :mod:`.reader` (:class:`BagReader`, :func:`select_topics`).
"""

from .images import decode_image, encode_image, encode_jpeg, encode_png
from .msgtypes import (
    CAMERA_INFO,
    COMPRESSED_IMAGE,
    IMAGE,
    IMAGE_ENCODINGS,
    IMU,
    NAVSATFIX,
    POSE_STAMPED,
    ROLE_TYPES,
    ROLES,
    TWIST_STAMPED,
    TWIST_WITH_COVARIANCE_STAMPED,
    camera_info_to_camera,
    is_truth_topic,
    ros1_type_name,
    typestore,
)
from .reader import BagReader, TopicSummary, select_topics
from .writer import BagWriter

__all__ = [
    "BagReader",
    "BagWriter",
    "CAMERA_INFO",
    "COMPRESSED_IMAGE",
    "IMAGE",
    "IMAGE_ENCODINGS",
    "IMU",
    "NAVSATFIX",
    "POSE_STAMPED",
    "ROLES",
    "ROLE_TYPES",
    "TWIST_STAMPED",
    "TWIST_WITH_COVARIANCE_STAMPED",
    "TopicSummary",
    "camera_info_to_camera",
    "decode_image",
    "encode_image",
    "encode_jpeg",
    "encode_png",
    "is_truth_topic",
    "ros1_type_name",
    "select_topics",
    "typestore",
]
