"""ROS1 bag writer for the standard messages (see :class:`BagWriter`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from calibration.camera import CameraModel

from ..errors import BagError
from ..events import (
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
from .images import encode_image
from .msgtypes import (
    CAMERA_INFO,
    COMPRESSED_IMAGE,
    IMAGE,
    IMU,
    NAVSATFIX,
    POSE_STAMPED,
    TWIST_WITH_COVARIANCE_STAMPED,
    ros1_type_name,
    typestore,
)

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

    def write_velocity(self, topic: str, t_ns: int, velocity_enu, *, sigma_mps: float | None = None,
                       frame_id: str = "gps") -> None:
        """``geometry_msgs/TwistWithCovarianceStamped`` of a GNSS ground velocity (as ublox ``fix_velocity``).

        Args:
            velocity_enu: (east, north) or (east, north, up) m/s -> ``twist.linear``; angular is zero.
            sigma_mps: 1-sigma per linear axis, m/s -> covariance diagonal (x, y, z); None writes a zero covariance
                (unknown). The angular part of the covariance is zero.
        """
        v = np.asarray(velocity_enu, dtype=float).ravel()
        if v.shape not in ((2,), (3,)) or not np.all(np.isfinite(v)):
            raise BagError(f"velocity_enu must be 2 or 3 finite numbers (east, north[, up]) m/s, got {velocity_enu!r}")
        if v.size == 2:
            v = np.append(v, 0.0)
        cov = np.zeros(36)
        if sigma_mps is not None:
            if not (isinstance(sigma_mps, (int, float, np.floating, np.integer)) and np.isfinite(sigma_mps)
                    and sigma_mps >= 0):
                raise BagError(f"sigma_mps must be a finite number of m/s >= 0 or None, got {sigma_mps!r}")
            cov[[0, 7, 14]] = float(sigma_mps) ** 2
        T = typestore().types
        V3 = T["geometry_msgs/msg/Vector3"]
        twist = T["geometry_msgs/msg/Twist"](linear=V3(x=float(v[0]), y=float(v[1]), z=float(v[2])),
                                             angular=V3(x=0.0, y=0.0, z=0.0))
        msg = T[TWIST_WITH_COVARIANCE_STAMPED](
            header=self._header(topic, t_ns, frame_id),
            twist=T["geometry_msgs/msg/TwistWithCovariance"](twist=twist, covariance=cov),
        )
        self.write_message(topic, t_ns, msg)

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


