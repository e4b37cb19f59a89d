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
says ``truth``) and truth_pose (PoseStamped) — each overridable by name (``""`` switches a role off), and yields
:mod:`runtime.events` in time order (header stamps, reordered within a small window; the record time where a stamp is
zero). Image encodings: mono8, mono16, rgb8, bgr8, rgba8, bgra8, bayer_{rggb,bggr,gbrg,grbg}{8,16}; CompressedImage:
JPEG and PNG (decoded lazily, when the tracker looks at :attr:`Frame.image`).
"""

from __future__ import annotations

import heapq
import math
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from calibration.camera import CameraModel

from .errors import BagError
from .events import (
    COVARIANCE_TYPE_DIAGONAL_KNOWN,
    COVARIANCE_TYPE_KNOWN,
    COVARIANCE_TYPE_UNKNOWN,
    STATUS_FIX,
    CameraInfoEvent,
    Event,
    Frame,
    GpsFix,
    ImuSample,
    TruthPose,
    image_format,
)

# Message types as rosbags names them (ROS1 bags show them without '/msg/').
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
IMAGE = "sensor_msgs/msg/Image"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
NAVSATFIX = "sensor_msgs/msg/NavSatFix"
IMU = "sensor_msgs/msg/Imu"
POSE_STAMPED = "geometry_msgs/msg/PoseStamped"

#: role -> message types that can fill it, in order of preference.
ROLE_TYPES: dict[str, tuple[str, ...]] = {
    "camera": (COMPRESSED_IMAGE, IMAGE),
    "camera_info": (CAMERA_INFO,),
    "gps": (NAVSATFIX,),
    "imu": (IMU,),
    "truth_fix": (NAVSATFIX,),
    "truth_pose": (POSE_STAMPED,),
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


# ============================================================================================== image encodings
_BAYER_TO_CV = {  # ROS pattern -> OpenCV code name producing RGB (OpenCV names the pattern by the 2nd row/col).
    "rggb": "COLOR_BayerBG2RGB",
    "bggr": "COLOR_BayerRG2RGB",
    "gbrg": "COLOR_BayerGR2RGB",
    "grbg": "COLOR_BayerGB2RGB",
}
_BAYER_OFFSETS = {  # pattern -> {channel index: [(row, col) offsets within the 2x2 cell]}
    "rggb": {0: [(0, 0)], 1: [(0, 1), (1, 0)], 2: [(1, 1)]},
    "bggr": {2: [(0, 0)], 1: [(0, 1), (1, 0)], 0: [(1, 1)]},
    "gbrg": {1: [(0, 0), (1, 1)], 2: [(0, 1)], 0: [(1, 0)]},
    "grbg": {1: [(0, 0), (1, 1)], 0: [(0, 1)], 2: [(1, 0)]},
}


def decode_image(height: int, width: int, encoding: str, data, step: int = 0, is_bigendian: int = 0) -> np.ndarray:
    """A ``sensor_msgs/Image`` payload -> RGB ``uint8[height, width, 3]``.

    16-bit encodings are scaled to 8 bits (>> 8). Bayer mosaics are demosaiced with OpenCV (bilinear).

    Raises:
        BagError: unsupported encoding, or a payload of the wrong size.
    """
    import cv2

    enc = encoding.strip().lower()
    if enc not in IMAGE_ENCODINGS:
        raise BagError(
            f"unsupported sensor_msgs/Image encoding {encoding!r}; supported: {', '.join(IMAGE_ENCODINGS)} "
            "(or publish sensor_msgs/CompressedImage JPEG/PNG)"
        )
    channels = 3 if enc in ("rgb8", "bgr8") else 4 if enc in ("rgba8", "bgra8") else 1
    depth = 2 if enc.endswith("16") else 1
    row_bytes = width * channels * depth
    step = int(step) or row_bytes
    buf = np.frombuffer(bytes(data) if not isinstance(data, np.ndarray) else data.tobytes(), dtype=np.uint8)
    if step < row_bytes or buf.size < step * (height - 1) + row_bytes:
        raise BagError(
            f"image payload of {buf.size} bytes is too small for {width}x{height} {encoding} with step {step} "
            f"(needs {step * height})"
        )
    if buf.size < step * height:
        buf = np.concatenate([buf, np.zeros(step * height - buf.size, np.uint8)])
    rows = buf[: step * height].reshape(height, step)[:, :row_bytes]
    if depth == 2:
        dt = np.dtype(">u2" if is_bigendian else "<u2")
        arr = np.ascontiguousarray(rows).view(dt).reshape(height, width, channels)
        arr = (arr >> 8).astype(np.uint8)
    else:
        arr = rows.reshape(height, width, channels)
    if enc.startswith("bayer_"):
        code = getattr(cv2, _BAYER_TO_CV[enc[6:10]])
        return cv2.cvtColor(np.ascontiguousarray(arr[:, :, 0]), code)
    if channels == 1:
        return np.repeat(arr, 3, axis=2)
    if enc in ("bgr8", "bgra8"):
        return np.ascontiguousarray(arr[:, :, 2::-1])
    return np.ascontiguousarray(arr[:, :, :3])


def encode_image(image: np.ndarray, encoding: str) -> tuple[bytes, int]:
    """RGB ``uint8[h, w, 3]`` -> (payload, step) of a ``sensor_msgs/Image`` in ``encoding`` (8-bit encodings only:
    mono8, rgb8, bgr8, rgba8, bgra8, bayer_*8; a Bayer image keeps, at each pixel, the channel of the pattern)."""
    img = _check_rgb(image, "image")
    enc = encoding.strip().lower()
    h, w = img.shape[:2]
    if enc == "rgb8":
        out = img
    elif enc == "bgr8":
        out = img[:, :, ::-1]
    elif enc == "rgba8":
        out = np.concatenate([img, np.full((h, w, 1), 255, np.uint8)], axis=2)
    elif enc == "bgra8":
        out = np.concatenate([img[:, :, ::-1], np.full((h, w, 1), 255, np.uint8)], axis=2)
    elif enc == "mono8":
        import cv2

        out = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
    elif enc.startswith("bayer_") and enc.endswith("8") and enc[6:10] in _BAYER_OFFSETS:
        out = np.empty((h, w), np.uint8)
        for ch, offsets in _BAYER_OFFSETS[enc[6:10]].items():
            for dr, dc in offsets:
                out[dr::2, dc::2] = img[dr::2, dc::2, ch]
    else:
        raise BagError(
            f"cannot write sensor_msgs/Image encoding {encoding!r}; writable: mono8, rgb8, bgr8, rgba8, bgra8, "
            "bayer_rggb8, bayer_bggr8, bayer_gbrg8, bayer_grbg8"
        )
    out = np.ascontiguousarray(out)
    return out.tobytes(), out.strides[0]


def _check_rgb(image, what: str) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise BagError(f"{what} must be RGB uint8[h, w, 3], got {arr.dtype}{list(arr.shape)}")
    return arr


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """RGB ``uint8[h, w, 3]`` -> JPEG bytes (OpenCV/libjpeg, deterministic for a given input and quality)."""
    import cv2

    img = _check_rgb(image, "image")
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise BagError(f"OpenCV could not JPEG-encode an image of shape {list(img.shape)}")
    return buf.tobytes()


def encode_png(image: np.ndarray) -> bytes:
    """RGB ``uint8[h, w, 3]`` -> PNG bytes."""
    import cv2

    img = _check_rgb(image, "image")
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img[:, :, ::-1]))
    if not ok:
        raise BagError(f"OpenCV could not PNG-encode an image of shape {list(img.shape)}")
    return buf.tobytes()


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


# ============================================================================================== writer
def _stamp(t_ns: int):
    Time = typestore().types["builtin_interfaces/msg/Time"]
    return Time(sec=int(t_ns // 1_000_000_000), nanosec=int(t_ns % 1_000_000_000))


def _cov9(cov, what: str) -> np.ndarray:
    if cov is None:
        return np.zeros(9)
    arr = np.asarray(cov, dtype=float)
    if arr.ndim == 0:
        arr = np.eye(3) * float(arr) ** 2
    if arr.size != 9 or not np.all(np.isfinite(arr)):
        raise BagError(f"{what} must be a 3x3 covariance (9 finite numbers) or a sigma, got {cov!r}")
    return arr.reshape(9).astype(float)


class BagWriter:
    """Write a ROS1 bag of standard messages.

    Use as a context manager; the bag is written to ``PATH.partial`` and renamed to ``PATH`` on a clean exit
    (replacing an existing file when ``overwrite``), or removed after an error.

    All ``t_ns`` are integer nanoseconds (header stamp = record time). Vectors are float64; covariances are 3x3
    row-major in the message's frame (ENU for NavSatFix).
    """

    def __init__(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.overwrite = overwrite
        self._partial = self.path.with_name(self.path.name + ".partial")
        self._writer = None
        self._connections: dict[str, tuple[object, str]] = {}
        self._seq: dict[str, int] = {}
        self.counts: dict[str, int] = {}

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> "BagWriter":
        from rosbags.rosbag1 import Writer

        if self.path.suffix != ".bag":
            raise BagError(f"a ROS1 bag path must end in .bag, got {str(self.path)!r}")
        if self.path.exists() and not self.overwrite:
            raise BagError(f"{self.path} exists already; remove it or choose another output path")
        if not self.path.parent.is_dir():
            raise BagError(f"cannot write {self.path}: folder {self.path.parent} does not exist")
        if self._partial.exists():
            self._partial.unlink()
        self._writer = Writer(self._partial)
        self._writer.open()
        return self

    def close(self) -> None:
        if self._writer is None:
            return
        writer, self._writer = self._writer, None
        writer.close()
        os.replace(self._partial, self.path)

    def abort(self) -> None:
        if self._writer is None:
            return
        writer, self._writer = self._writer, None
        writer.abort()
        self._partial.unlink(missing_ok=True)

    def __enter__(self) -> "BagWriter":
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # ------------------------------------------------------------------ plumbing
    def _header(self, topic: str, t_ns: int, frame_id: str):
        Header = typestore().types["std_msgs/msg/Header"]
        seq = self._seq.get(topic, 0)
        self._seq[topic] = seq + 1
        return Header(seq=seq, stamp=_stamp(t_ns), frame_id=frame_id)

    def write_message(self, topic: str, t_ns: int, msg) -> None:
        """Serialize a rosbags message object (any type of the Noetic typestore) and write it at ``t_ns``."""
        if self._writer is None:
            raise BagError("the bag writer is not open; use it as a context manager: with BagWriter(path) as bag: ...")
        if isinstance(t_ns, bool) or not isinstance(t_ns, (int, np.integer)) or t_ns < 0:
            raise BagError(f"t_ns must be a non-negative integer of nanoseconds, got {t_ns!r}")
        msgtype = msg.__msgtype__
        conn = self._connections.get(topic)
        if conn is None:
            conn = (self._writer.add_connection(topic, msgtype, typestore=typestore()), msgtype)
            self._connections[topic] = conn
        elif conn[1] != msgtype:
            raise BagError(f"topic {topic} already carries {ros1_type_name(conn[1])}, cannot also write {ros1_type_name(msgtype)}")
        self._writer.write(conn[0], int(t_ns), typestore().serialize_ros1(msg, msgtype))
        self.counts[topic] = self.counts.get(topic, 0) + 1

    # ------------------------------------------------------------------ message writers
    def write_compressed_image(self, topic: str, t_ns: int, data: bytes, *, fmt: str | None = None,
                               frame_id: str = "camera") -> None:
        """``sensor_msgs/CompressedImage``: ``data`` JPEG/PNG bytes; ``fmt`` defaults from the magic bytes."""
        T = typestore().types
        fmt = fmt or image_format(data) or "jpeg"
        msg = T[COMPRESSED_IMAGE](
            header=self._header(topic, t_ns, frame_id), format=fmt, data=np.frombuffer(bytes(data), dtype=np.uint8)
        )
        self.write_message(topic, t_ns, msg)

    def write_image(self, topic: str, t_ns: int, image: np.ndarray, *, encoding: str = "rgb8",
                    frame_id: str = "camera") -> None:
        """``sensor_msgs/Image`` from RGB ``uint8[h, w, 3]``, stored in ``encoding`` (see :func:`encode_image`)."""
        data, step = encode_image(image, encoding)
        h, w = np.asarray(image).shape[:2]
        msg = typestore().types[IMAGE](
            header=self._header(topic, t_ns, frame_id), height=h, width=w, encoding=encoding, is_bigendian=0,
            step=step, data=np.frombuffer(data, dtype=np.uint8),
        )
        self.write_message(topic, t_ns, msg)

    def write_camera_info(self, topic: str, t_ns: int, camera: CameraModel, *, frame_id: str = "camera") -> None:
        """``sensor_msgs/CameraInfo`` of ``camera`` (fields from :func:`calibration.camera_io.camera_info_fields`)."""
        from calibration.camera_io import camera_info_fields

        f = camera_info_fields(camera)
        T = typestore().types
        roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        msg = T[CAMERA_INFO](
            header=self._header(topic, t_ns, frame_id), height=int(f["height"]), width=int(f["width"]),
            distortion_model=str(f["distortion_model"]), D=np.asarray(f["d"], dtype=float).ravel(),
            K=np.asarray(f["k"], dtype=float).ravel(), R=np.asarray(f["r"], dtype=float).ravel(),
            P=np.asarray(f["p"], dtype=float).ravel(), binning_x=0, binning_y=0, roi=roi,
        )
        self.write_message(topic, t_ns, msg)

    def write_navsatfix(self, topic: str, t_ns: int, lat: float, lon: float, alt: float, *, cov_enu=None,
                        covariance_type: int | None = None, status: int = STATUS_FIX, service: int = 1,
                        frame_id: str = "gps") -> None:
        """``sensor_msgs/NavSatFix``: degrees, metres; ``cov_enu`` 3x3 m^2 ENU or a sigma (None = unknown).

        ``covariance_type`` defaults to DIAGONAL_KNOWN for a diagonal covariance, KNOWN for a full one and UNKNOWN
        without one.
        """
        T = typestore().types
        cov = _cov9(cov_enu, "cov_enu")
        if covariance_type is None:
            if cov_enu is None:
                covariance_type = COVARIANCE_TYPE_UNKNOWN
            elif np.count_nonzero(cov.reshape(3, 3) - np.diag(np.diag(cov.reshape(3, 3)))) == 0:
                covariance_type = COVARIANCE_TYPE_DIAGONAL_KNOWN
            else:
                covariance_type = COVARIANCE_TYPE_KNOWN
        msg = T[NAVSATFIX](
            header=self._header(topic, t_ns, frame_id),
            status=T["sensor_msgs/msg/NavSatStatus"](status=int(status), service=int(service)),
            latitude=float(lat), longitude=float(lon), altitude=float(alt), position_covariance=cov,
            position_covariance_type=int(covariance_type),
        )
        self.write_message(topic, t_ns, msg)

    def write_imu(self, topic: str, t_ns: int, orientation, angular_velocity, linear_acceleration, *,
                  orientation_cov=None, angular_velocity_cov=None, linear_acceleration_cov=None,
                  frame_id: str = "imu") -> None:
        """``sensor_msgs/Imu``: ``orientation`` (x, y, z, w) of R_body2world or None (then
        ``orientation_covariance[0] = -1``), body rates rad/s, specific force m/s^2; covariances 3x3 or sigmas."""
        T = typestore().types
        V3, Q = T["geometry_msgs/msg/Vector3"], T["geometry_msgs/msg/Quaternion"]
        if orientation is None:
            q, qcov = (0.0, 0.0, 0.0, 1.0), np.array([-1.0] + [0.0] * 8)
        else:
            q, qcov = tuple(map(float, orientation)), _cov9(orientation_cov, "orientation_cov")
        w = [float(v) for v in angular_velocity]
        a = [float(v) for v in linear_acceleration]
        msg = T[IMU](
            header=self._header(topic, t_ns, frame_id), orientation=Q(x=q[0], y=q[1], z=q[2], w=q[3]),
            orientation_covariance=qcov, angular_velocity=V3(x=w[0], y=w[1], z=w[2]),
            angular_velocity_covariance=_cov9(angular_velocity_cov, "angular_velocity_cov"),
            linear_acceleration=V3(x=a[0], y=a[1], z=a[2]),
            linear_acceleration_covariance=_cov9(linear_acceleration_cov, "linear_acceleration_cov"),
        )
        self.write_message(topic, t_ns, msg)

    def write_pose(self, topic: str, t_ns: int, position, orientation, *, frame_id: str = "map") -> None:
        """``geometry_msgs/PoseStamped``: ``position`` (x, y, z) metres, ``orientation`` (x, y, z, w)."""
        T = typestore().types
        p = [float(v) for v in position]
        q = [float(v) for v in orientation]
        pose = T["geometry_msgs/msg/Pose"](
            position=T["geometry_msgs/msg/Point"](x=p[0], y=p[1], z=p[2]),
            orientation=T["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]),
        )
        self.write_message(topic, t_ns, T[POSE_STAMPED](header=self._header(topic, t_ns, frame_id), pose=pose))

    def write_event(self, event: Event, topic: str | None = None) -> None:
        """Write a :mod:`runtime.events` event on ``topic`` (default: the event's own topic).

        A Frame with encoded bytes becomes a CompressedImage, one built from an array an rgb8 Image. A TruthPose
        writes a NavSatFix on ``topic`` (default ``/ground_truth/fix``) and, when it has an attitude, a PoseStamped
        on the sibling ``pose`` topic.
        """
        name = topic or getattr(event, "topic", "") or ""
        if isinstance(event, Frame):
            name = name or "/camera/image_raw"
            if event.encoded is not None:
                self.write_compressed_image(name, event.t_ns, event.encoded, frame_id=event.frame_id or "camera")
            else:
                self.write_image(name, event.t_ns, event.image, frame_id=event.frame_id or "camera")
        elif isinstance(event, CameraInfoEvent):
            self.write_camera_info(name or "/camera/camera_info", event.t_ns, event.camera,
                                   frame_id=event.frame_id or "camera")
        elif isinstance(event, GpsFix):
            self.write_navsatfix(name or "/gps/fix", event.t_ns, event.lat, event.lon, event.alt, cov_enu=event.cov_enu,
                                 covariance_type=event.covariance_type if event.cov_enu is not None else None,
                                 status=event.status, frame_id=event.frame_id or "gps")
        elif isinstance(event, ImuSample):
            self.write_imu(name or "/imu/data", event.t_ns, event.orientation, event.angular_velocity,
                           event.linear_acceleration, frame_id=event.frame_id or "imu")
        elif isinstance(event, TruthPose):
            fix_topic = topic or "/ground_truth/fix"
            self.write_navsatfix(fix_topic, event.t_ns, event.lat, event.lon, event.alt, cov_enu=0.0,
                                 frame_id="ground_truth")
            if event.attitude is not None:
                pose_topic = fix_topic.rsplit("/", 1)[0] + "/pose"
                self.write_pose(pose_topic, event.t_ns, event.position, event.attitude,
                                frame_id=event.frame_id or "map")
        else:
            raise BagError(f"cannot write an event of type {type(event).__name__}")


# ============================================================================================== reader
@dataclass(frozen=True)
class TopicSummary:
    """One topic of a bag: name, message type (as rosbags names it), message count, first/last record time (ns),
    the median interval between messages and the longest one with when it starts (ns; 0 for < 2 messages)."""

    name: str
    msgtype: str
    count: int
    first_ns: int
    last_ns: int
    median_period_ns: int = 0
    max_gap_ns: int = 0
    max_gap_start_ns: int = 0

    @classmethod
    def from_times(cls, name: str, msgtype: str, times) -> "TopicSummary":
        t = np.sort(np.asarray(times, dtype=np.int64))
        if t.size == 0:
            return cls(name, msgtype, 0, 0, 0)
        if t.size == 1:
            return cls(name, msgtype, 1, int(t[0]), int(t[0]))
        dt = np.diff(t)
        k = int(np.argmax(dt))
        return cls(name, msgtype, int(t.size), int(t[0]), int(t[-1]), int(np.median(dt)), int(dt[k]), int(t[k]))

    @property
    def rate_hz(self) -> float:
        """Nominal message rate: 1 / the median interval (outages do not lower it); NaN for < 2 messages."""
        return 1e9 / self.median_period_ns if self.median_period_ns > 0 else math.nan

    @property
    def mean_rate_hz(self) -> float:
        """Messages per second over the topic's span (gaps included); NaN for fewer than two messages."""
        span = self.last_ns - self.first_ns
        return (self.count - 1) * 1e9 / span if self.count > 1 and span > 0 else math.nan

    @property
    def has_gap(self) -> bool:
        """Whether the longest interval is a gap: over 1 s and over 5 median intervals."""
        return self.max_gap_ns > max(1_000_000_000, 5 * self.median_period_ns) and self.count > 2

    @property
    def ros1_type(self) -> str:
        return ros1_type_name(self.msgtype)


def _namespace_overlap(a: str, b: str) -> int:
    pa, pb = [p for p in a.split("/") if p], [p for p in b.split("/") if p]
    n = 0
    for x, y in zip(pa, pb):
        if x != y:
            break
        n += 1
    return n


def select_topics(topics: Mapping[str, tuple[str, int]], overrides: Mapping[str, str | None] | None = None):
    """Choose a topic for each role, by message type.

    Args:
        topics: topic name -> (message type as rosbags names it, message count).
        overrides: role -> topic name (must exist and have a fitting type), ``""`` to switch the role off, or None
            to choose automatically.
    Returns:
        (selection role -> topic or None, notes: list of str about ambiguous choices).
    Raises:
        BagError: an unknown role, or an override naming a missing topic or one of the wrong type.
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(ROLES))
    if unknown:
        raise BagError(f"unknown topic role(s) {unknown}; roles are {', '.join(ROLES)}")
    selection: dict[str, str | None] = {}
    notes: list[str] = []
    for role in ROLES:
        want = ROLE_TYPES[role]
        forced = overrides.get(role)
        if forced is not None:
            if forced == "" or forced.lower() == "none":
                selection[role] = None
                continue
            if forced not in topics:
                raise BagError(
                    f"{role} topic {forced!r} is not in the bag; topics: "
                    + (", ".join(f"{n} ({ros1_type_name(t)})" for n, (t, _) in sorted(topics.items())) or "none")
                )
            if topics[forced][0] not in want:
                raise BagError(
                    f"{role} topic {forced} carries {ros1_type_name(topics[forced][0])}, expected "
                    + " or ".join(ros1_type_name(t) for t in want)
                )
            selection[role] = forced
            continue
        cands = [n for n, (t, c) in topics.items() if t in want and c > 0]
        if role == "truth_fix":
            cands = [n for n in cands if is_truth_topic(n)]
        elif role in ("camera", "camera_info", "gps", "imu"):
            cands = [n for n in cands if not is_truth_topic(n)]
        taken = {v for v in selection.values() if v}
        cands = [n for n in cands if n not in taken]
        if not cands:
            selection[role] = None
            continue

        def score(name: str):
            t, count = topics[name]
            s = 0
            if role == "camera":
                s -= 10 * bool(re.search(r"depth|disparity|thermal|\bir\b", name, re.IGNORECASE))
                s += want.index(t) * -1
            if role == "camera_info" and selection.get("camera"):
                s += _namespace_overlap(name, selection["camera"])
            if role == "truth_pose":
                s += 5 * is_truth_topic(name)
            return (s, count, -len(name), name)

        cands.sort(key=score, reverse=True)
        selection[role] = cands[0]
        if len(cands) > 1:
            notes.append(
                f"{role}: several candidates ({', '.join(cands)}); using {cands[0]} "
                f"(choose another with the {role.replace('_', '-')} topic option)"
            )
    return selection, notes


def _truth_frame_origin(frame_id: str):
    from .sim.frames import parse_truth_frame_id  # local: keeps runtime.bags light

    return parse_truth_frame_id(frame_id)


class BagReader:
    """Read a ROS1 bag (or several, or a ROS2 bag folder) and yield typed events in time order.

    Args:
        path: a .bag file, or a sequence of them.
        topics: role -> topic name overrides (see :func:`select_topics`); also accepted as ``<role>_topic`` keywords.
        time_source: ``"header"`` (default; header stamps, the record time where a stamp is zero) or ``"record"``.
        reorder_window_ns: events are re-sorted by ``t_ns`` within this window of record time (default 0.5 s).

    Use as a context manager; :attr:`topics` lists every topic, :attr:`selection` the topic chosen per role.
    """

    def __init__(self, path, *, topics: Mapping[str, str | None] | None = None, time_source: str = "header",
                 reorder_window_ns: int = 500_000_000, camera_topic: str | None = None,
                 camera_info_topic: str | None = None, gps_topic: str | None = None, imu_topic: str | None = None,
                 truth_fix_topic: str | None = None, truth_pose_topic: str | None = None) -> None:
        paths = [Path(p) for p in ([path] if isinstance(path, (str, os.PathLike)) else path)]
        if not paths:
            raise BagError("no bag path given")
        for p in paths:
            if not p.exists():
                raise BagError(f"bag {p} does not exist")
        if time_source not in ("header", "record"):
            raise BagError(f"time_source must be 'header' or 'record', got {time_source!r}")
        self.paths = paths
        self.time_source = time_source
        self.reorder_window_ns = int(reorder_window_ns)
        self._overrides = dict(topics or {})
        for role, value in (("camera", camera_topic), ("camera_info", camera_info_topic), ("gps", gps_topic),
                            ("imu", imu_topic), ("truth_fix", truth_fix_topic), ("truth_pose", truth_pose_topic)):
            if value is not None:
                self._overrides[role] = value
        self._reader = None
        self.selection: dict[str, str | None] = {}
        self.notes: list[str] = []
        self._summaries: dict[str, TopicSummary] | None = None

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> "BagReader":
        from rosbags.highlevel import AnyReader

        try:
            reader = AnyReader(self.paths, default_typestore=typestore())
            reader.open()
        except Exception as exc:  # rosbags raises its own error types (and struct/OS errors on corrupt files)
            names = ", ".join(map(str, self.paths))
            raise BagError(f"cannot read {names} as a ROS bag: {exc}; is it a complete ROS1 .bag (or ROS2 folder)?") from exc
        self._reader = reader
        info = {name: (t.msgtype or "", t.msgcount) for name, t in reader.topics.items()}
        try:
            self.selection, self.notes = select_topics(info, self._overrides)
        except BagError:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self._reader is not None:
            reader, self._reader = self._reader, None
            reader.close()

    def __enter__(self) -> "BagReader":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def _r(self):
        if self._reader is None:
            raise BagError("the bag reader is not open; use it as a context manager: with BagReader(path) as bag: ...")
        return self._reader

    # ------------------------------------------------------------------ metadata
    @property
    def start_ns(self) -> int:
        return int(self._r().start_time)

    @property
    def end_ns(self) -> int:
        return int(self._r().end_time)

    @property
    def duration_s(self) -> float:
        r = self._r()
        return (r.end_time - r.start_time) / 1e9 if r.message_count else 0.0

    @property
    def topics(self) -> dict[str, TopicSummary]:
        """Every topic: name -> :class:`TopicSummary` (record times from the bag index, no message decoded)."""
        if self._summaries is None:
            r = self._r()
            times: dict[str, list[int]] = {}
            for conn in r.connections:
                idx = getattr(conn.owner, "indexes", None)
                stamps = None
                if isinstance(idx, dict) and conn.id in idx:  # rosbag1 index: no payload read
                    stamps = [int(e.time) for e in idx[conn.id]]
                if stamps is None:
                    stamps = [int(t) for _, t, _ in r.messages(connections=[conn])]
                times.setdefault(conn.topic, []).extend(stamps)
            self._summaries = {
                name: TopicSummary.from_times(name, t.msgtype or "?", times.get(name, []))
                for name, t in sorted(r.topics.items())
            }
        return self._summaries

    def missing_notes(self) -> list[str]:
        """What the runtime will have to do without, one line per missing role."""
        s = self.selection
        notes = []
        if not s.get("camera"):
            notes.append("no camera topic (sensor_msgs/CompressedImage or Image): the runtime will track on GPS alone")
        elif not s.get("camera_info"):
            notes.append("no camera_info topic: the runtime needs a camera file (--camera) for the intrinsics")
        if not s.get("gps"):
            notes.append("no GPS topic (sensor_msgs/NavSatFix): the runtime needs an initial position to start")
        if not s.get("imu"):
            notes.append("no IMU topic (sensor_msgs/Imu): attitude is assumed level (nadir camera), heading from motion")
        if not s.get("truth_fix") and not s.get("truth_pose"):
            notes.append("no ground truth (/ground_truth/fix or PoseStamped): no error statistics can be computed")
        return notes

    # ------------------------------------------------------------------ events
    def first_camera(self) -> CameraModel | None:
        """Intrinsics from the first message of the camera_info topic (None without one or when uncalibrated)."""
        topic = self.selection.get("camera_info")
        if not topic:
            return None
        r = self._r()
        conns = [c for c in r.connections if c.topic == topic]
        for conn, _, raw in r.messages(connections=conns):
            return self._camera_info(r.deserialize(raw, conn.msgtype))
        return None

    @staticmethod
    def _camera_info(msg) -> CameraModel | None:
        return camera_info_to_camera(msg.width, msg.height, msg.distortion_model, msg.D, msg.K)

    def events(self, *, roles=None, start_ns: int | None = None, stop_ns: int | None = None) -> Iterator[Event]:
        """Yield :mod:`runtime.events` in ``t_ns`` order.

        Args:
            roles: roles to read (default all selected). ``truth_fix`` and ``truth_pose`` with the same stamp merge
                into one :class:`TruthPose`.
            start_ns, stop_ns: record-time bounds (ns), as rosbags takes them.
        Yields:
            Frame (with the latest CameraInfo's intrinsics), CameraInfoEvent, GpsFix, ImuSample, TruthPose.
        """
        r = self._r()
        roles = tuple(ROLES if roles is None else roles)
        bad = sorted(set(roles) - set(ROLES))
        if bad:
            raise BagError(f"unknown role(s) {bad}; roles are {', '.join(ROLES)}")
        by_topic = {self.selection[ro]: ro for ro in roles if self.selection.get(ro)}
        if "camera" in roles and self.selection.get("camera") and self.selection.get("camera_info"):
            by_topic.setdefault(self.selection["camera_info"], "camera_info")
        conns = [c for c in r.connections if c.topic in by_topic]
        if not conns:
            return
        both_truth = bool(by_topic.keys() & {self.selection.get("truth_fix")}) and bool(
            by_topic.keys() & {self.selection.get("truth_pose")}
        )
        yield_info = "camera_info" in roles
        camera = self.first_camera() if "camera" in by_topic.values() else None
        heap: list = []
        seq = 0
        pending_truth: dict[int, dict] = {}
        window = self.reorder_window_ns
        newest = -(2**63)

        def push(ev) -> None:
            nonlocal seq
            heapq.heappush(heap, (ev.t_ns, seq, ev))
            seq += 1

        for conn, rec_ns, raw in r.messages(connections=conns, start=start_ns, stop=stop_ns):
            role = by_topic[conn.topic]
            msg = r.deserialize(raw, conn.msgtype)
            t = int(rec_ns)
            header = getattr(msg, "header", None)
            if self.time_source == "header" and header is not None:
                stamp = int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
                t = stamp or t
            frame_id = header.frame_id if header is not None else ""
            topic = conn.topic
            if role == "camera_info":
                cam = self._camera_info(msg)
                if cam is not None:
                    camera = cam
                    if yield_info:
                        push(CameraInfoEvent(t, cam, topic, frame_id))
            elif role == "camera":
                if conn.msgtype == COMPRESSED_IMAGE:
                    data = bytes(msg.data)
                    if not image_format(data):
                        raise BagError(
                            f"{topic}: CompressedImage format {msg.format!r} at t={t} ns is neither JPEG nor PNG; "
                            "only those are supported"
                        )
                    push(Frame(t, data, camera, topic, frame_id))
                else:
                    img = decode_image(msg.height, msg.width, msg.encoding, msg.data, msg.step, msg.is_bigendian)
                    push(Frame(t, img, camera, topic, frame_id))
            elif role == "gps":
                push(_gps_event(msg, t, topic, frame_id))
            elif role == "imu":
                push(_imu_event(msg, t, topic, frame_id))
            elif role in ("truth_fix", "truth_pose"):
                part = pending_truth.setdefault(t, {})
                part[role] = (msg, topic, frame_id)
                if not both_truth or len(part) == 2:
                    push(_truth_event(t, pending_truth.pop(t)))
            # release what can no longer be overtaken (an event lagging the newest stamp by more than the window
            # would come out of order; stamps are compared with stamps, so any clock base works)
            newest = max(newest, t)
            horizon = newest - window
            for tt in [tt for tt in pending_truth if tt < horizon]:
                push(_truth_event(tt, pending_truth.pop(tt)))
            while heap and heap[0][0] < horizon:
                yield heapq.heappop(heap)[2]
        for tt in sorted(pending_truth):
            push(_truth_event(tt, pending_truth.pop(tt)))
        while heap:
            yield heapq.heappop(heap)[2]


def _gps_event(msg, t: int, topic: str, frame_id: str) -> GpsFix:
    ctype = int(msg.position_covariance_type)
    cov = np.asarray(msg.position_covariance, dtype=float).reshape(3, 3)
    if ctype == COVARIANCE_TYPE_UNKNOWN or not np.all(np.isfinite(cov)) or np.any(np.diag(cov) < 0):
        cov = None
    return GpsFix(t, msg.latitude, msg.longitude, msg.altitude, cov, int(msg.status.status), topic, ctype, frame_id)


def _imu_event(msg, t: int, topic: str, frame_id: str) -> ImuSample:
    o = msg.orientation
    q = (o.x, o.y, o.z, o.w)
    norm = math.sqrt(sum(v * v for v in q))
    orientation = None if msg.orientation_covariance[0] == -1 or not 0.9 < norm < 1.1 else q
    w, a = msg.angular_velocity, msg.linear_acceleration
    return ImuSample(t, orientation, (w.x, w.y, w.z), (a.x, a.y, a.z), topic, frame_id)


def _truth_event(t: int, parts: dict) -> TruthPose:
    lat = lon = alt = math.nan
    x = y = z = math.nan
    attitude = None
    topics, frame_id = [], ""
    if "truth_fix" in parts:
        msg, topic, _ = parts["truth_fix"]
        lat, lon, alt = msg.latitude, msg.longitude, msg.altitude
        topics.append(topic)
    if "truth_pose" in parts:
        msg, topic, frame_id = parts["truth_pose"]
        p, q = msg.pose.position, msg.pose.orientation
        x, y, z = p.x, p.y, p.z
        attitude = (q.x, q.y, q.z, q.w)
        topics.append(topic)
        if "truth_fix" not in parts:
            origin = _truth_frame_origin(frame_id)
            if origin is not None:
                lat, lon, alt = origin.to_wgs84(x, y, z)
    return TruthPose(t, lat, lon, alt, x, y, z, attitude, ",".join(topics), frame_id)


__all__ = [
    "BagReader",
    "BagWriter",
    "IMAGE_ENCODINGS",
    "ROLES",
    "ROLE_TYPES",
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
