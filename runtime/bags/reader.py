"""ROS1/ROS2 bag reader that finds topics by message type and yields typed events (see :class:`BagReader`)."""

from __future__ import annotations

import heapq
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from calibration.camera import CameraModel

from ..errors import BagError
from ..events import (
    COVARIANCE_TYPE_UNKNOWN,
    CameraInfoEvent,
    Event,
    Frame,
    GpsFix,
    ImuSample,
    TruthPose,
    image_format,
)
from .images import decode_image
from .msgtypes import (
    COMPRESSED_IMAGE,
    TWIST_WITH_COVARIANCE_STAMPED,
    ROLE_TYPES,
    ROLES,
    camera_info_to_camera,
    is_truth_topic,
    ros1_type_name,
    typestore,
)

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
        elif role in ("camera", "camera_info", "gps", "imu", "gps_velocity"):
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
    from ..truth_frame import parse_truth_frame_id

    return parse_truth_frame_id(frame_id)


class BagReader:
    """Read a ROS1 bag (or several, or a ROS2 bag folder) and yield typed events in time order.

    Args:
        path: a .bag file, or a sequence of them.
        topics: role -> topic name overrides (see :func:`select_topics`); also accepted as ``<role>_topic`` keywords.
        time_source: ``"header"`` (default; header stamps, the record time where a stamp is zero) or ``"record"``.
        reorder_window_ns: events are re-sorted by ``t_ns`` within this window of record time (default 0.5 s).
        velocity_max_dt_ns: a ``gps_velocity`` message is attached to the GpsFix nearest in time (same clock as
            ``t_ns``) when within this many ns of it (default 0.25 s).

    Use as a context manager; :attr:`topics` lists every topic, :attr:`selection` the topic chosen per role.
    """

    def __init__(self, path, *, topics: Mapping[str, str | None] | None = None, time_source: str = "header",
                 reorder_window_ns: int = 500_000_000, camera_topic: str | None = None,
                 camera_info_topic: str | None = None, gps_topic: str | None = None, imu_topic: str | None = None,
                 truth_fix_topic: str | None = None, truth_pose_topic: str | None = None,
                 gps_velocity_topic: str | None = None, velocity_max_dt_ns: int = 250_000_000) -> None:
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
        if isinstance(velocity_max_dt_ns, bool) or not isinstance(velocity_max_dt_ns, (int, np.integer)) or (
                velocity_max_dt_ns < 0):
            raise BagError(f"velocity_max_dt_ns must be an integer number of ns >= 0 (e.g. 250_000_000), "
                           f"got {velocity_max_dt_ns!r}")
        self.velocity_max_dt_ns = int(velocity_max_dt_ns)
        self._overrides = dict(topics or {})
        for role, value in (("camera", camera_topic), ("camera_info", camera_info_topic), ("gps", gps_topic),
                            ("imu", imu_topic), ("truth_fix", truth_fix_topic), ("truth_pose", truth_pose_topic),
                            ("gps_velocity", gps_velocity_topic)):
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
                into one :class:`TruthPose`. ``gps_velocity`` yields nothing of its own: whenever ``gps`` is read and a
                velocity topic is selected, each GpsFix carries the velocity message nearest in time (header stamps,
                within ``velocity_max_dt_ns``) as ``velocity_enu`` (twist.linear x, y, z = east, north, up, m/s) and
                ``velocity_sigma_mps`` (sqrt of the mean of the x and y variances of the twist covariance when they
                are > 0; None for TwistStamped or an unknown covariance). Switch it off with the override
                ``gps_velocity: ""``.
            start_ns, stop_ns: record-time bounds (ns), as rosbags takes them.
        Yields:
            Frame (with the latest CameraInfo's intrinsics), CameraInfoEvent, GpsFix, ImuSample, TruthPose.
        """
        r = self._r()
        roles = tuple(ROLES if roles is None else roles)
        bad = sorted(set(roles) - set(ROLES))
        if bad:
            raise BagError(f"unknown role(s) {bad}; roles are {', '.join(ROLES)}")
        by_topic = {self.selection[ro]: ro for ro in roles if self.selection.get(ro) and ro != "gps_velocity"}
        if "camera" in roles and self.selection.get("camera") and self.selection.get("camera_info"):
            by_topic.setdefault(self.selection["camera_info"], "camera_info")
        vel_topic = self.selection.get("gps_velocity") if "gps" in by_topic.values() else None
        if vel_topic:
            by_topic.setdefault(vel_topic, "gps_velocity")
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
        max_dt = self.velocity_max_dt_ns
        pending_gps: list[GpsFix] = []  # fixes waiting for the velocity message nearest to them
        velocities: list[tuple[int, np.ndarray, float | None]] = []  # (stamp, ENU m/s, sigma), by stamp

        def settle_gps(horizon_t: int) -> None:
            """Attach the nearest velocity to the pending fixes that can no longer get a nearer one; push them."""
            nonlocal pending_gps, velocities
            keep = []
            for fix in pending_gps:
                later = any(tv >= fix.t_ns for tv, _, _ in velocities)
                if fix.t_ns < horizon_t or later:
                    best = min(velocities, key=lambda v: abs(v[0] - fix.t_ns), default=None)
                    if best is not None and abs(best[0] - fix.t_ns) <= max_dt:
                        fix = fix.with_velocity(best[1], best[2])
                    push(fix)
                else:
                    keep.append(fix)
            pending_gps = keep
            oldest = min([f.t_ns for f in pending_gps] + [horizon_t])
            velocities = [v for v in velocities if v[0] >= oldest - max_dt]

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
                if vel_topic:
                    pending_gps.append(_gps_event(msg, t, topic, frame_id))
                else:
                    push(_gps_event(msg, t, topic, frame_id))
            elif role == "gps_velocity":
                vel = _velocity_of(msg, conn.msgtype)
                if vel is not None:
                    velocities.append((t, vel[0], vel[1]))
                    velocities.sort(key=lambda v: v[0])
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
            if vel_topic:
                settle_gps(horizon)
            while heap and heap[0][0] < horizon:
                yield heapq.heappop(heap)[2]
        for tt in sorted(pending_truth):
            push(_truth_event(tt, pending_truth.pop(tt)))
        settle_gps(2**63 - 1)
        while heap:
            yield heapq.heappop(heap)[2]


def _gps_event(msg, t: int, topic: str, frame_id: str) -> GpsFix:
    ctype = int(msg.position_covariance_type)
    cov = np.asarray(msg.position_covariance, dtype=float).reshape(3, 3)
    if ctype == COVARIANCE_TYPE_UNKNOWN or not np.all(np.isfinite(cov)) or np.any(np.diag(cov) < 0):
        cov = None
    return GpsFix(t, msg.latitude, msg.longitude, msg.altitude, cov, int(msg.status.status), topic, ctype, frame_id)


def _velocity_of(msg, msgtype: str) -> tuple[np.ndarray, float | None] | None:
    """(ENU velocity float64[3] m/s, horizontal sigma m/s or None) of a Twist(WithCovariance)Stamped; None when the
    velocity is not finite."""
    if msgtype == TWIST_WITH_COVARIANCE_STAMPED:
        lin = msg.twist.twist.linear
        cov = np.asarray(msg.twist.covariance, dtype=float).ravel()
    else:
        lin = msg.twist.linear
        cov = None
    v = np.array([lin.x, lin.y, lin.z], dtype=float)
    if not np.all(np.isfinite(v)):
        return None
    sigma = None
    if cov is not None and cov.size == 36:
        vx, vy = cov[0], cov[7]
        if math.isfinite(vx) and math.isfinite(vy) and vx > 0 and vy > 0:
            sigma = math.sqrt(0.5 * (vx + vy))
    return v, sigma


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
