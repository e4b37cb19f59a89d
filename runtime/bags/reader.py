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
    QUATERNION_NORM_TOL,
    COVARIANCE_TYPE_DIAGONAL_KNOWN,
    COVARIANCE_TYPE_UNKNOWN,
    STATUS_FIX,
    STATUS_GBAS_FIX,
    STATUS_NO_FIX,
    STATUS_SBAS_FIX,
    CameraInfoEvent,
    Event,
    Frame,
    GpsFix,
    ImuSample,
    TruthPose,
)
from .images import compressed_image_problem, decode_image
from .msgtypes import (
    COMPRESSED_IMAGE,
    PX4_SENSOR_COMBINED,
    PX4_SENSOR_GPS,
    PX4_VEHICLE_ATTITUDE,
    TWIST_WITH_COVARIANCE_STAMPED,
    ROLE_TYPES,
    ROLES,
    TYPESTORES,
    camera_info_to_camera,
    check_typestore_name,
    is_truth_topic,
    reading_typestore,
    ros1_type_name,
)

#: a topic whose first this many messages all fail is unusable as a whole: a BagError, not a skip per message.
UNUSABLE_AFTER = 20
#: skip notes kept per topic (the rest are counted in :attr:`BagReader.skipped`).
NOTES_PER_TOPIC = 5
#: a PX4 VehicleAttitude older than this (ns) gives no orientation to a SensorCombined sample.
PX4_ATTITUDE_MAX_AGE_NS = 100_000_000
#: PX4 timestamps (microseconds) at or above this are UNIX time (2001-09-09 on): used as the event time.
_UNIX_US = 10**15

# topic names of an autopilot's own fused position (mavros global_position/global, robot_localization
# gps/filtered, ...): a GPS role prefers the receiver's fixes, which do not carry SkyFix's own output back
_FUSED_GPS = re.compile(r"global_position/global$|filtered|fused|odometry|/global$|estimate", re.IGNORECASE)
_RAW_GPS = re.compile(r"raw/fix$|/raw$|gps_raw|vehicle_gps_position|sensor_gps", re.IGNORECASE)

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
        if role == "imu_attitude" and (not selection.get("imu") or topics[selection["imu"]][0] != PX4_SENSOR_COMBINED):
            continue  # only a px4_msgs SensorCombined imu topic takes its orientation from here: no key
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
            if role == "gps":
                s -= 10 * bool(_FUSED_GPS.search(name))
                s += 2 * bool(_RAW_GPS.search(name))
            if role == "imu":
                s += want.index(t) * -1
                s -= 2 * bool(re.search(r"data_raw|/raw$", name))  # mavros imu/data_raw: no orientation
            return (s, count, -len(name), name)

        cands.sort(key=score, reverse=True)
        selection[role] = cands[0]
        if len(cands) > 1:
            why = ""
            if role == "gps" and not _FUSED_GPS.search(cands[0]):
                fused = [n for n in cands[1:] if _FUSED_GPS.search(n)]
                if fused:
                    why = (f": the receiver's fixes; {', '.join(fused)} "
                           f"{'is' if len(fused) == 1 else 'are'} the autopilot's own fused estimate, which would feed "
                           "SkyFix its own output back")
            notes.append(
                f"{role}: several candidates ({', '.join(cands)}); using {cands[0]}{why} "
                f"(choose another with the {role.replace('_', '-')} topic option)"
            )
    return selection, notes


def _truth_frame_origin(frame_id: str):
    from ..truth_frame import parse_truth_frame_id

    return parse_truth_frame_id(frame_id)


class BagReader:
    """Read a ROS1 bag (or several), or a ROS 2 bag (sqlite3 or mcap folder), and yield typed events in time order.

    Args:
        path: a .bag file, a sequence of them, or a ROS 2 bag folder (its .db3/.mcap file is taken as its folder).
        topics: role -> topic name overrides (see :func:`select_topics`); also accepted as ``<role>_topic`` keywords.
        time_source: ``"header"`` (default; header stamps, the record time where a stamp is zero) or ``"record"``.
        reorder_window_ns: events are re-sorted by ``t_ns`` within this window of record time (default 0.5 s).
        velocity_max_dt_ns: a ``gps_velocity`` message is attached to the GpsFix nearest in time (same clock as
            ``t_ns``) when within this many ns of it (default 0.25 s).
        typestore: message definitions for the types a bag does not store (one of :data:`TYPESTORES`): ``"auto"``
            (default) takes ROS 1 Noetic for ROS 1 bags; for ROS 2 bags the definitions the bag stores (mcap,
            Iron/Jazzy sqlite3), and for the rest the distribution the bag names (metadata ``ros_distro``, the
            sqlite3 ``schema`` table), else ``ros2_humble`` (Humble's sqlite3 stores none), said in :attr:`notes`.
            The px4_msgs SensorGps, VehicleAttitude and SensorCombined shipped in ``runtime/bags/px4_msgs`` are
            always added.

    Use as a context manager; :attr:`topics` lists every topic, :attr:`selection` the topic chosen per role,
    :attr:`notes` what was chosen and why. One message that cannot be used (it does not deserialize, a CompressedImage
    that is empty, cut short or not JPEG/PNG, an Image of the wrong size, an unusable CameraInfo, ...) is skipped:
    counted per topic in :attr:`skipped`, with a line naming topic, time and reason in :attr:`skip_notes`; the
    events before and after it are all delivered. A topic whose first :data:`UNUSABLE_AFTER` messages all fail is
    unusable as a whole: a :class:`BagError`.
    """

    def __init__(self, path, *, topics: Mapping[str, str | None] | None = None, time_source: str = "header",
                 reorder_window_ns: int = 500_000_000, camera_topic: str | None = None,
                 camera_info_topic: str | None = None, gps_topic: str | None = None, imu_topic: str | None = None,
                 truth_fix_topic: str | None = None, truth_pose_topic: str | None = None,
                 gps_velocity_topic: str | None = None, velocity_max_dt_ns: int = 250_000_000,
                 imu_attitude_topic: str | None = None, typestore: str = "auto") -> None:
        paths = [Path(p) for p in ([path] if isinstance(path, (str, os.PathLike)) else path)]
        if not paths:
            raise BagError("no bag path given")
        for p in paths:
            if not p.exists():
                raise BagError(f"bag {p} does not exist")
        # a ROS 2 bag is its folder: accept its storage file (r2/r2.db3, r2/r2.mcap) for it
        paths = [p.parent if p.suffix in (".db3", ".mcap") and (p.parent / "metadata.yaml").is_file() else p
                 for p in paths]
        if time_source not in ("header", "record"):
            raise BagError(f"time_source must be 'header' or 'record', got {time_source!r}")
        self.typestore_name = check_typestore_name(typestore)
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
                            ("gps_velocity", gps_velocity_topic), ("imu_attitude", imu_attitude_topic)):
            if value is not None:
                self._overrides[role] = value
        self._reader = None
        self.selection: dict[str, str | None] = {}
        self.notes: list[str] = []
        self.skipped: dict[str, int] = {}
        self.repaired: dict[str, int] = {}
        self.skip_notes: list[str] = []
        self.read_notes: list[str] = []
        self.typestore_used: str = ""
        self._summaries: dict[str, TopicSummary] | None = None
        self._ok: dict[str, int] = {}

    # ------------------------------------------------------------------ lifecycle
    @property
    def is_ros2(self) -> bool:
        """Whether the recording is a ROS 2 bag (rosbags' rule: any path that is not a .bag file)."""
        return any(p.suffix != ".bag" for p in self.paths)

    def _bag_distro(self) -> str:
        """The ROS distribution a ROS 2 bag names (metadata.yaml ``ros_distro``, sqlite3 ``schema.ros_distro``), or
        ''."""
        import sqlite3

        import yaml

        names = []
        for folder in self.paths:
            try:
                meta = yaml.safe_load((folder / "metadata.yaml").read_text()) or {}
                info = meta.get("rosbag2_bagfile_information", {}) or {}
                names.append(str(info.get("ros_distro") or ""))
                for rel in info.get("relative_file_paths") or []:
                    db = folder / str(rel)
                    if db.suffix == ".db3" and db.is_file():
                        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
                        try:
                            row = con.execute("SELECT ros_distro FROM schema").fetchone()
                        finally:
                            con.close()
                        names.append(str(row[0]) if row else "")
            except (OSError, yaml.YAMLError, sqlite3.Error, AttributeError, TypeError):
                continue
        for name in names:
            if f"ros2_{name.strip().lower()}" in TYPESTORES:
                return f"ros2_{name.strip().lower()}"
        return ""

    def open(self) -> "BagReader":
        from rosbags.highlevel import AnyReader
        from rosbags.interfaces import MessageDefinitionFormat

        names = ", ".join(map(str, self.paths))
        store = self.typestore_name
        distro_note = ""
        if store == "auto":
            if not self.is_ros2:
                store = "ros1_noetic"
            else:
                store = self._bag_distro()
                if not store:
                    store = "ros2_humble"
                    distro_note = ("the bag stores no message definitions and names no ROS distribution: read with "
                                   "the ROS 2 Humble definitions (choose others with the typestore option, e.g. "
                                   "--typestore ros2_jazzy)")
        try:
            default = reading_typestore(store)
            reader = AnyReader(self.paths, default_typestore=default)
            reader.open()
        except Exception as exc:  # rosbags raises its own error types (and struct/OS errors on corrupt files)
            raise BagError(
                f"cannot read {names} as a ROS bag ({type(exc).__name__}: {exc}); expected a complete ROS 1 .bag "
                "file or a ROS 2 bag folder (metadata.yaml with its .db3 or .mcap); a bag whose stored definitions "
                "do not match its types can be read with --typestore (one of " + ", ".join(TYPESTORES[1:]) + ")"
            ) from exc
        stored = {c.msgtype for c in reader.connections if c.msgdef.format != MessageDefinitionFormat.NONE}
        if self.is_ros2 and not stored and store == "ros1_noetic":
            reader.close()
            raise BagError(f"{names} is a ROS 2 bag without stored message definitions; the ros1_noetic typestore "
                           "cannot read it: use --typestore auto or the ROS 2 distribution that recorded it "
                           "(ros2_humble, ros2_jazzy, ...)")
        # types the bag does not define itself (a bag storing some definitions only): from the chosen store
        needed = {c.msgtype for c in reader.connections} - set(reader.typestore.fielddefs)
        if needed:
            try:
                reader.typestore.register({k: v for k, v in default.fielddefs.items()
                                           if k not in reader.typestore.fielddefs})
            except Exception as exc:  # conflicting definitions: rosbags TypesysError
                reader.close()
                raise BagError(f"cannot combine the message definitions stored in {names} with the {store} "
                               f"typestore: {exc}; choose another with --typestore") from exc
        self._reader = reader
        self.typestore_used = "stored in the bag" if stored and not needed else store
        if stored and needed:
            self.typestore_used = f"stored in the bag, {store} for the rest"
        self.notes = []
        unknown = sorted(t for t in needed if t not in reader.typestore.fielddefs)
        if unknown:
            self.notes.append(f"no definition for {', '.join(map(ros1_type_name, unknown))} (not stored in the bag, "
                              f"not in {store}): those topics cannot be read")
        if self.is_ros2 and not stored:
            self.notes.append(distro_note or f"the bag stores no message definitions: read with the {store} ones"
                              + (" (the distribution it names)" if self.typestore_name == "auto" else ""))
        info = {name: (t.msgtype or "", t.msgcount) for name, t in reader.topics.items()}
        try:
            self.selection, sel_notes = select_topics(info, self._overrides)
        except BagError:
            self.close()
            raise
        self.notes += sel_notes
        self.skipped, self.skip_notes, self.read_notes, self._ok = {}, [], [], {}
        self.repaired: dict[str, int] = {}
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
            notes.append("no GPS topic (sensor_msgs/NavSatFix or px4_msgs/SensorGps): the runtime needs an initial "
                         "position to start")
        if not s.get("imu"):
            notes.append("no IMU topic (sensor_msgs/Imu or px4_msgs/SensorCombined): attitude is assumed level (nadir "
                         "camera), heading from motion")
        elif s.get("imu") and self.topics.get(s["imu"]) and self.topics[s["imu"]].msgtype == PX4_SENSOR_COMBINED and (
                not s.get("imu_attitude")):
            notes.append("px4_msgs/SensorCombined without a VehicleAttitude topic: IMU samples carry no orientation")
        if not s.get("truth_fix") and not s.get("truth_pose"):
            notes.append("no ground truth (/ground_truth/fix or PoseStamped): no error statistics can be computed")
        return notes

    # ------------------------------------------------------------------ skips
    def _skip(self, topic: str, t_ns: int, reason: str) -> None:
        """Count one unusable message of ``topic``; a topic none of whose first UNUSABLE_AFTER messages worked is a
        BagError."""
        n = self.skipped.get(topic, 0) + 1
        self.skipped[topic] = n
        rel = ""
        if self._reader is not None:
            rel = f" ({(t_ns - self.start_ns) / 1e9:.3f} s into the recording)"
        if n <= NOTES_PER_TOPIC:
            self.skip_notes.append(f"{topic}: message at t={t_ns} ns{rel} skipped: {reason}")
        elif n == NOTES_PER_TOPIC + 1:
            self.skip_notes.append(f"{topic}: more messages skipped (see the count at the end)")
        if n >= UNUSABLE_AFTER and not self._ok.get(topic):
            raise BagError(
                f"{topic}: none of its first {n} messages can be used (last: {reason}); the topic is unusable as a "
                f"whole: check the recording, switch the role off ('none' as its topic), or, for messages that do not "
                f"deserialize, choose the typestore that recorded it (--typestore, now {self.typestore_used})"
            )

    def _repaired(self, topic: str, t_ns: int, what: str) -> None:
        """Count one message used without a bad part (``what``); noted like a skip, at most NOTES_PER_TOPIC per
        topic, the count in :attr:`repaired`."""
        n = self.repaired.get(topic, 0) + 1
        self.repaired[topic] = n
        if n <= NOTES_PER_TOPIC:
            self.skip_notes.append(f"{topic}: message at t={t_ns} ns: {what}")

    def reading_notes(self) -> list[str]:
        """What reading the events found, to show after them: notes on the messages (PX4 clock), the skip notes,
        and one count line per topic with more skips than notes."""
        out = list(self.read_notes) + list(self.skip_notes)
        for topic, n in sorted(self.skipped.items()):
            if n > NOTES_PER_TOPIC:
                out.append(f"{topic}: {n} messages skipped in all ({self._ok.get(topic, 0)} used)")
        for topic, n in sorted(self.repaired.items()):
            if n > NOTES_PER_TOPIC:
                out.append(f"{topic}: {n} messages used without their bad part in all")
        return out

    def _deserialize(self, raw, conn, t_ns: int):
        """The message, or None after counting a skip (bytes that do not deserialize with the bag's types)."""
        try:
            return self._r().deserialize(raw, conn.msgtype)
        except BagError:
            raise
        except Exception as exc:  # rosbags: AnyReaderError/SerdeError, struct/Unicode/Key errors on bad bytes
            self._skip(conn.topic, t_ns, f"{ros1_type_name(conn.msgtype)} does not deserialize "
                                         f"({type(exc).__name__}: {exc})")
            return None

    # ------------------------------------------------------------------ events
    def first_camera(self) -> CameraModel | None:
        """Intrinsics from the first usable message of the camera_info topic (None without one or when
        uncalibrated)."""
        topic = self.selection.get("camera_info")
        if not topic:
            return None
        r = self._r()
        conns = [c for c in r.connections if c.topic == topic]
        for k, (conn, rec, raw) in enumerate(r.messages(connections=conns)):
            try:
                return self._camera_info(r.deserialize(raw, conn.msgtype))
            except Exception as exc:  # a bad first message: the next one may serve (events() counts the skips)
                if k + 1 >= UNUSABLE_AFTER:
                    raise BagError(f"{topic}: none of its first {k + 1} CameraInfo messages can be used (last: "
                                   f"{type(exc).__name__}: {exc}); give the intrinsics with --camera CAMERA.yaml "
                                   "and --camera-info-topic none") from exc
        return None

    @staticmethod
    def _camera_info(msg) -> CameraModel | None:
        # ROS 1 names the arrays D/K, ROS 2 d/k (a ROS 1 bag converted with its own definitions keeps D/K)
        d = msg.d if hasattr(msg, "d") else msg.D
        k = msg.k if hasattr(msg, "k") else msg.K
        return camera_info_to_camera(msg.width, msg.height, msg.distortion_model, d, k)

    def _px4_time(self, msg, rec_ns: int, topic: str) -> int:
        """Event time of a px4_msgs message: its sample time when it is UNIX time (µs), else the record time (PX4
        counts from boot: that clock cannot be compared with the other topics' stamps)."""
        us = int(getattr(msg, "timestamp_sample", 0) or 0) or int(msg.timestamp)
        if self.time_source == "header" and us >= _UNIX_US:
            return us * 1000
        if self.time_source == "header" and topic not in self._px4_record_time_noted:
            self._px4_record_time_noted.add(topic)
            self.read_notes.append(f"{topic}: PX4 timestamps count from boot ({us} us): the record time is used "
                                   "instead")
        return int(rec_ns)

    def events(self, *, roles=None, start_ns: int | None = None, stop_ns: int | None = None) -> Iterator[Event]:
        """Yield :mod:`runtime.events` in ``t_ns`` order.

        Args:
            roles: roles to read (default all selected). ``truth_fix`` and ``truth_pose`` with the same stamp merge
                into one :class:`TruthPose`. ``gps_velocity`` yields nothing of its own: whenever ``gps`` is read and a
                velocity topic is selected, each GpsFix carries the velocity message nearest in time (header stamps,
                within ``velocity_max_dt_ns``) as ``velocity_enu`` (twist.linear x, y, z = east, north, up, m/s) and
                ``velocity_sigma_mps`` (sqrt of the mean of the x and y variances of the twist covariance when they
                are > 0; None for TwistStamped or an unknown covariance). Switch it off with the override
                ``gps_velocity: ""``. ``imu_attitude`` likewise: a px4_msgs SensorCombined imu topic takes the
                orientation of each sample from the latest VehicleAttitude (at most 0.1 s old).
            start_ns, stop_ns: record-time bounds (ns), as rosbags takes them.
        Yields:
            Frame (with the latest CameraInfo's intrinsics), CameraInfoEvent, GpsFix, ImuSample, TruthPose.
            px4_msgs become GpsFix (SensorGps: ellipsoid altitude, eph/epv as the covariance, NED velocity as ENU)
            and ImuSample in ENU/FLU (SensorCombined FRD and VehicleAttitude FRD->NED converted by
            :func:`runtime.imu_frame.ned_frd_to_enu_flu`).
        Raises:
            BagError: a topic none of whose first :data:`UNUSABLE_AFTER` messages can be used, or a bag whose
                storage fails (after every event read before the failure was yielded).
        """
        r = self._r()
        roles = tuple(ROLES if roles is None else roles)
        bad = sorted(set(roles) - set(ROLES))
        if bad:
            raise BagError(f"unknown role(s) {bad}; roles are {', '.join(ROLES)}")
        by_topic = {self.selection[ro]: ro for ro in roles
                    if self.selection.get(ro) and ro not in ("gps_velocity", "imu_attitude")}
        if "camera" in roles and self.selection.get("camera") and self.selection.get("camera_info"):
            by_topic.setdefault(self.selection["camera_info"], "camera_info")
        vel_topic = self.selection.get("gps_velocity") if "gps" in by_topic.values() else None
        if vel_topic:
            by_topic.setdefault(vel_topic, "gps_velocity")
        att_topic = self.selection.get("imu_attitude") if "imu" in by_topic.values() else None
        if att_topic:
            by_topic.setdefault(att_topic, "imu_attitude")
        conns = [c for c in r.connections if c.topic in by_topic]
        if not conns:
            return
        both_truth = bool(by_topic.keys() & {self.selection.get("truth_fix")}) and bool(
            by_topic.keys() & {self.selection.get("truth_pose")}
        )
        yield_info = "camera_info" in roles
        camera = self.first_camera() if "camera" in by_topic.values() else None
        self._px4_record_time_noted: set[str] = set()
        heap: list = []
        seq = 0
        pending_truth: dict[int, dict] = {}
        window = self.reorder_window_ns
        newest = -(2**63)
        max_dt = self.velocity_max_dt_ns
        pending_gps: list[GpsFix] = []  # fixes waiting for the velocity message nearest to them
        velocities: list[tuple[int, np.ndarray, float | None]] = []  # (stamp, ENU m/s, sigma), by stamp
        attitude: list = [None]  # latest px4 VehicleAttitude: (t_ns, (x, y, z, w) of R_frd2ned or None)

        def settle_gps(horizon_t: int) -> None:
            """Attach the nearest velocity to the pending fixes that can no longer get a nearer one; push them."""
            nonlocal pending_gps, velocities
            keep = []
            for fix in pending_gps:
                later = any(tv >= fix.t_ns for tv, _, _ in velocities)
                if fix.t_ns < horizon_t or later:
                    if fix.velocity_enu is None:  # a px4 SensorGps fix brings its own
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

        def convert(conn, role: str, msg, t: int, frame_id: str) -> None:
            """Turn one message into events (pushed); raises on a message that cannot be used."""
            nonlocal camera
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
                    problem = compressed_image_problem(data)
                    if problem:
                        raise _Unusable(f"CompressedImage (format {msg.format!r}) {problem}")
                    push(Frame(t, data, camera, topic, frame_id))
                else:
                    img = decode_image(msg.height, msg.width, msg.encoding, msg.data, msg.step, msg.is_bigendian)
                    push(Frame(t, img, camera, topic, frame_id))
            elif role == "gps":
                fix = _px4_gps_event(msg, t, topic) if conn.msgtype == PX4_SENSOR_GPS else _gps_event(
                    msg, t, topic, frame_id)
                if vel_topic:
                    pending_gps.append(fix)
                else:
                    push(fix)
            elif role == "gps_velocity":
                vel = _velocity_of(msg, conn.msgtype)
                if vel is not None:
                    velocities.append((t, vel[0], vel[1]))
                    velocities.sort(key=lambda v: v[0])
            elif role == "imu_attitude":
                attitude[0] = (t, _px4_quaternion(msg))
            elif role == "imu":
                if conn.msgtype == PX4_SENSOR_COMBINED:
                    att = attitude[0]
                    q = att[1] if att is not None and abs(t - att[0]) <= PX4_ATTITUDE_MAX_AGE_NS else None
                    push(_px4_imu_event(msg, q, t, topic))
                else:
                    ev, dropped = _imu_event(msg, t, topic, frame_id)
                    if dropped is not None:
                        self._repaired(topic, t, f"{dropped}: orientation dropped, rates and acceleration kept")
                    push(ev)
            elif role in ("truth_fix", "truth_pose"):
                part = pending_truth.setdefault(t, {})
                part[role] = (msg, topic, frame_id)
                if not both_truth or len(part) == 2:
                    push(_truth_event(t, pending_truth.pop(t)))

        messages = iter(r.messages(connections=conns, start=start_ns, stop=stop_ns))
        failure: BaseException | None = None
        while True:
            try:
                item = next(messages)
            except StopIteration:
                break
            except Exception as exc:  # storage failing mid-way: deliver what was read, then say so
                failure = exc
                break
            conn, rec_ns, raw = item
            role = by_topic[conn.topic]
            t = int(rec_ns)
            msg = self._deserialize(raw, conn, t)
            if msg is None:
                continue
            try:
                if conn.msgtype in (PX4_SENSOR_GPS, PX4_SENSOR_COMBINED, PX4_VEHICLE_ATTITUDE):
                    t = self._px4_time(msg, rec_ns, conn.topic)
                    frame_id = ""
                else:
                    header = getattr(msg, "header", None)
                    if self.time_source == "header" and header is not None:
                        stamp = int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
                        t = stamp or t
                    frame_id = header.frame_id if header is not None else ""
                convert(conn, role, msg, t, frame_id)
            except BagError as exc:
                self._skip(conn.topic, t, str(exc))
                continue
            except (_Unusable, ValueError, TypeError, AttributeError, IndexError, KeyError, OverflowError) as exc:
                self._skip(conn.topic, t, str(exc) if isinstance(exc, _Unusable) else f"{type(exc).__name__}: {exc}")
                continue
            self._ok[conn.topic] = self._ok.get(conn.topic, 0) + 1
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
        if failure is not None:
            raise BagError(
                f"reading {', '.join(map(str, self.paths))} failed after {newest} ns "
                f"({type(failure).__name__}: {failure}); every event before that was delivered. The file is damaged "
                "or cut short: a ROS 1 bag can be repaired with `rosbag reindex`, a ROS 2 one with `ros2 bag reindex`"
            ) from failure


class _Unusable(Exception):
    """One message that cannot be used (internal: becomes a counted skip)."""


_PX4_STATUS = {0: STATUS_NO_FIX, 1: STATUS_NO_FIX, 2: STATUS_FIX, 3: STATUS_FIX, 4: STATUS_SBAS_FIX,
               5: STATUS_GBAS_FIX, 6: STATUS_GBAS_FIX}  # SensorGps.fix_type (8 extrapolated: no fix)


def _px4_gps_event(msg, t: int, topic: str) -> GpsFix:
    """px4_msgs/SensorGps -> GpsFix: degrees (float64 ``latitude_deg`` in PX4 >= v1.15, int32 ``lat`` 1e-7 deg
    before), the ellipsoid altitude (as NavSatFix), covariance diag(eph^2, eph^2, epv^2), NED velocity as ENU."""
    if hasattr(msg, "latitude_deg"):
        lat, lon = float(msg.latitude_deg), float(msg.longitude_deg)
        alt = float(msg.altitude_ellipsoid_m) or float(msg.altitude_msl_m)
    else:
        lat, lon = int(msg.lat) * 1e-7, int(msg.lon) * 1e-7
        alt = (int(msg.alt_ellipsoid) or int(msg.alt)) * 1e-3
    eph, epv = float(msg.eph), float(msg.epv)
    cov, ctype = None, COVARIANCE_TYPE_UNKNOWN
    if math.isfinite(eph) and math.isfinite(epv) and eph > 0 and epv > 0:
        cov, ctype = np.diag([eph * eph, eph * eph, epv * epv]), COVARIANCE_TYPE_DIAGONAL_KNOWN
    status = _PX4_STATUS.get(int(msg.fix_type), STATUS_NO_FIX)
    fix = GpsFix(t, lat, lon, alt, cov, status, topic, ctype, "")
    if bool(msg.vel_ned_valid):
        v = (float(msg.vel_e_m_s), float(msg.vel_n_m_s), -float(msg.vel_d_m_s))
        sigma = float(msg.s_variance_m_s)
        if all(map(math.isfinite, v)):
            fix = fix.with_velocity(v, sigma if math.isfinite(sigma) and sigma > 0 else None)
    return fix


def _px4_quaternion(msg) -> tuple[float, float, float, float] | None:
    """px4_msgs/VehicleAttitude.q (w, x, y, z) -> (x, y, z, w) of R_frd2ned; None when not a unit quaternion."""
    w, x, y, z = (float(v) for v in msg.q)
    norm = math.sqrt(w * w + x * x + y * y + z * z)
    if not (math.isfinite(norm) and 0.9 < norm < 1.1):
        return None
    return (x / norm, y / norm, z / norm, w / norm)


def _px4_imu_event(msg, q_frd2ned, t: int, topic: str) -> ImuSample:
    """px4_msgs/SensorCombined (FRD) with the orientation of a VehicleAttitude (FRD -> NED) -> ImuSample ENU/FLU."""
    from ..imu_frame import ned_frd_to_enu_flu

    g = tuple(float(v) for v in msg.gyro_rad)
    a = tuple(float(v) for v in msg.accelerometer_m_s2)
    return ned_frd_to_enu_flu(ImuSample(t, q_frd2ned, g, a, topic, ""))


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


def _imu_event(msg, t: int, topic: str, frame_id: str) -> tuple[ImuSample, str | None]:
    """The sample, and why its orientation was dropped (None when it was not, or when the message says it has none:
    ``orientation_covariance[0] == -1`` or an all-zero quaternion, REP-145). A quaternion whose norm is within
    ``QUATERNION_NORM_TOL`` of 1 is normalised; one farther off (or not finite) is no rotation: the sample keeps
    its rates and acceleration, the orientation is dropped and the caller counts it."""
    o = msg.orientation
    q = (float(o.x), float(o.y), float(o.z), float(o.w))
    norm = math.sqrt(sum(v * v for v in q))
    dropped = None
    if msg.orientation_covariance[0] == -1 or norm == 0.0:
        orientation = None
    elif math.isfinite(norm) and abs(norm - 1.0) <= QUATERNION_NORM_TOL:
        orientation = q if abs(norm - 1.0) < 1e-6 else tuple(v / norm for v in q)  # unit ones pass unchanged
    else:
        orientation = None
        dropped = f"orientation quaternion of norm {norm:.3g} is no rotation (|norm - 1| > {QUATERNION_NORM_TOL})"
    w, a = msg.angular_velocity, msg.linear_acceleration
    return ImuSample(t, orientation, (w.x, w.y, w.z), (a.x, a.y, a.z), topic, frame_id), dropped


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
