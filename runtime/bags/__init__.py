"""ROS bag I/O with ``rosbags``: a ROS 1 writer for the standard messages and a ROS 1 / ROS 2 reader that yields
typed events.

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
JPEG and PNG (checked without decoding by :func:`compressed_image_problem`, decoded lazily, when the tracker looks at
:attr:`Frame.image`).

ROS 2 bags (a folder: sqlite3 or mcap) are read with the definitions they store; a bag that stores none (ROS 2
Humble's sqlite3) with the typestore of the distribution it names, else ROS 2 Humble, or the one given
(``typestore=``, ``--typestore``: :data:`TYPESTORES`). CameraInfo's ``d``/``k`` (ROS 2) and ``D``/``K`` (ROS 1) both
work. Autopilot layouts: mavros' ``global_position/raw/fix`` (the receiver) is preferred over ``global_position/global``
(the autopilot's own fused estimate); PX4 uXRCE-DDS ``px4_msgs`` SensorGps (gps), SensorCombined (imu) and
VehicleAttitude (imu_attitude) become GpsFix and ENU/FLU ImuSample (definitions shipped in ``px4_msgs/`` for bags that
do not store them). One message that cannot be used is a counted skip with a note (:attr:`BagReader.skipped`,
:meth:`BagReader.reading_notes`), never the end of the replay.

Modules: :mod:`.msgtypes` (type names, roles, typestores), :mod:`.images` (image encodings), :mod:`.writer`
(:class:`BagWriter`), :mod:`.reader` (:class:`BagReader`, :func:`select_topics`).
"""

from .images import compressed_image_problem, decode_image, encode_image, encode_jpeg, encode_png
from .msgtypes import (
    CAMERA_INFO,
    COMPRESSED_IMAGE,
    IMAGE,
    IMAGE_ENCODINGS,
    IMU,
    NAVSATFIX,
    POSE_STAMPED,
    PX4_SENSOR_COMBINED,
    PX4_SENSOR_GPS,
    PX4_VEHICLE_ATTITUDE,
    ROLE_TYPES,
    ROLES,
    TWIST_STAMPED,
    TWIST_WITH_COVARIANCE_STAMPED,
    TYPESTORES,
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
    "PX4_SENSOR_COMBINED",
    "PX4_SENSOR_GPS",
    "PX4_VEHICLE_ATTITUDE",
    "ROLES",
    "ROLE_TYPES",
    "TWIST_STAMPED",
    "TWIST_WITH_COVARIANCE_STAMPED",
    "TYPESTORES",
    "TopicSummary",
    "camera_info_to_camera",
    "compressed_image_problem",
    "decode_image",
    "encode_image",
    "encode_jpeg",
    "encode_png",
    "is_truth_topic",
    "ros1_type_name",
    "select_topics",
    "typestore",
]
