"""The input checks between every source (bag, photo folder, serial GPS, camera) and the loop: one named stage.

:class:`EventSanitizer` takes the event stream (:mod:`runtime.events`) and passes every good event through
unchanged, in order (the same object: the estimator's numbers do not move on good input). What it drops is counted
by reason (:attr:`EventSanitizer.counts`, exact) and said in a note naming the topic, the time and the reason
(:attr:`EventSanitizer.notes`, at most ``notes_per_reason`` per reason so that a flood of bad messages does not
flood the log; the counts stay exact). It decodes nothing: a frame whose image cannot be decoded is counted and
skipped by the loop itself (:meth:`runtime.localizer.Localizer.on_frame`, ``frames_undecodable``).

What is dropped, by reason (the keys of :attr:`~EventSanitizer.counts`):

* ``duplicate``: a Frame, GpsFix, ImuSample, GroundMotion or TruthPose equal to one already passed on the same topic at the
  topic's newest ``t_ns`` (a message recorded twice would give a second estimate). Content is compared only when the stamp
  repeats, so good input costs nothing.
* ``clock_back``: an event earlier than the previous one on its topic by more than ``topic_backstep_s`` (default
  0.1 s). The events of a topic whose clock jumped back are dropped until its time passes where it was; each such
  jump is reported once (:attr:`~EventSanitizer.clock_jumps`: topic, where, how far) and the summary gives how
  many and the largest.
* ``behind_loop``: an event older than the newest event passed (any topic) by more than ``max_behind_s`` (default
  1 s = the tracker's ``max_backstep_s``, beyond which :class:`runtime.tracking.ParticleTracker` refuses a
  timestamp): a topic whose clock runs behind the others.
* ``gps_position``: a GpsFix with a fix status whose latitude or longitude is NaN/inf or outside [-90, 90] /
  [-180, 180] degrees, or whose altitude is not finite. A fix with ``STATUS_NO_FIX`` passes unchecked (ROS sends
  NaN positions with it; the loop ignores it).
* ``imu_orientation``: an ImuSample whose orientation is NaN/inf or whose norm is off 1 by more than
  ``quaternion_tolerance`` (default 0.1). Within it the quaternion is normalised (counted as ``imu_normalised``,
  not a skip; a unit quaternion, within 1e-6, passes unchanged).
* ``imu_rates`` / ``imu_acceleration``: an ImuSample whose angular velocity or linear acceleration is NaN/inf (the
  whole sample is dropped: an :class:`~runtime.events.ImuSample` cannot say that a part is unknown, and the loop
  would integrate the acceleration).
* ``unreadable``: a :class:`SkippedInput` marker, which a source may yield in place of a message it could not turn
  into an event (its own reason is kept in the note).

(:class:`~runtime.events.ImuSample` and :class:`~runtime.events.GpsFix` already refuse some of these values when
they are built; the checks here hold for whatever reaches the loop, whichever source built it.)
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from typing import Iterable, Iterator

import numpy as np

from ..events import (QUATERNION_NORM_TOL, STATUS_NO_FIX, CameraInfoEvent, Frame, GpsFix, GroundMotion, ImuSample,
                      TruthPose)
from . import SourceError

__all__ = ["EventSanitizer", "SkippedInput", "REASONS", "LOOP_SKIPS", "skip_report"]

#: skip reasons, in the order the summary lists them
REASONS = ("duplicate", "clock_back", "behind_loop", "gps_position", "imu_orientation", "imu_rates",
           "imu_acceleration", "unreadable")


@dataclass(frozen=True)
class SkippedInput:
    """A message a source could not turn into an event (a marker for :class:`EventSanitizer`, which counts and
    notes it and passes nothing on; :meth:`runtime.localizer.Localizer.process` ignores it too).

    Attributes:
        t_ns: the message's time, integer ns. topic: its topic. reason: why it was skipped (said in the note).
    """

    t_ns: int
    topic: str
    reason: str


def _finite(values) -> bool:
    return all(math.isfinite(float(v)) for v in values)


def _digest(ev) -> bytes | tuple:
    """What two events must share to be the same message (computed only when a topic's stamp repeats)."""
    if isinstance(ev, Frame):
        data = ev.encoded if ev.encoded is not None else np.ascontiguousarray(ev.image).tobytes()
        return hashlib.blake2b(data, digest_size=16).digest()
    if isinstance(ev, GpsFix):
        cov = None if ev.cov_enu is None else ev.cov_enu.tobytes()
        vel = None if ev.velocity_enu is None else ev.velocity_enu.tobytes()
        return (ev.lat, ev.lon, ev.alt, ev.status, cov, vel, ev.velocity_sigma_mps, ev.frame_id)
    if isinstance(ev, ImuSample):
        return (ev.orientation, ev.angular_velocity, ev.linear_acceleration, ev.frame_id)
    if isinstance(ev, TruthPose):
        return (ev.lat, ev.lon, ev.alt, ev.x, ev.y, ev.z, ev.attitude)
    if isinstance(ev, GroundMotion):
        return (ev.t_ref_ns, ev.displacement_en, ev.sigma_m, ev.heading_sigma_rad, ev.frame_id)
    return (id(ev),)  # never equal to another event


def _check_seconds(value, name: str, *, zero_ok: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or (
            value == 0 and not zero_ok):
        raise SourceError(f"EventSanitizer {name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


class EventSanitizer:
    """The input checks of the loop (see the module docstring).

    Args:
        topic_backstep_s: how far (seconds) an event may be earlier than the previous one on its topic and still
            pass (the tracker applies it at its own time). Default 0.1 s.
        max_behind_s: how far (seconds) an event may be older than the newest event passed on any topic. Default
            1.0 s (the tracker's default ``max_backstep_s``; pass the loop's ``tracker.config.max_backstep_s``).
        quaternion_tolerance: how far an IMU orientation's norm may be from 1 and still be normalised (default 0.1,
            the tolerance :class:`~runtime.events.ImuSample` builds with).
        notes_per_reason: at most this many notes per reason (default 5); the counts stay exact.
    Raises:
        SourceError: a setting out of range.

    Use :meth:`filter` on a stream (replay) or :meth:`check` per event (a live loop fed by several sources).
    """

    def __init__(self, *, topic_backstep_s: float = 0.1, max_behind_s: float = 1.0,
                 quaternion_tolerance: float = QUATERNION_NORM_TOL, notes_per_reason: int = 5) -> None:
        self._backstep_ns = int(round(_check_seconds(topic_backstep_s, "topic_backstep_s") * 1e9))
        self._behind_ns = int(round(_check_seconds(max_behind_s, "max_behind_s") * 1e9))
        q = quaternion_tolerance
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0.0 <= q < 1.0:
            raise SourceError(f"EventSanitizer quaternion_tolerance must be a number in [0, 1), got {q!r}")
        self._q_tol = float(q)
        n = notes_per_reason
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 1000:
            raise SourceError(f"EventSanitizer notes_per_reason must be an integer in [0, 1000], got {n!r}")
        self._max_notes = n
        #: events dropped, by reason (:data:`REASONS`), plus ``imu_normalised`` (kept, quaternion normalised)
        self.counts: dict[str, int] = {r: 0 for r in REASONS}
        self.counts["imu_normalised"] = 0
        #: notes naming topic, time and reason (at most ``notes_per_reason`` per reason)
        self.notes: list[str] = []
        #: every backward clock jump: [topic, t_ns where it was, t_ns of the jumped clock's latest event, events
        #: skipped, seconds back]. Events that go on from the jumped clock (later than its latest) belong to the
        #: same jump, also when the reader interleaves them with the topic's own later events.
        self.clock_jumps: list[list] = []
        self.passed = 0
        self._noted: dict[str, int] = {}
        self._last: dict[tuple, int] = {}  # topic key -> newest t_ns passed on it
        self._at_last: dict[tuple, list] = {}  # topic key -> digests of the events passed at that newest t_ns
        self._jumping: dict[tuple, list] = {}  # topic key -> its latest jump (an entry of clock_jumps)
        self._loop_t: int | None = None
        self._loop_topic = ""
        self._t0: int | None = None

    # ------------------------------------------------------------------------------------------------ use
    def filter(self, events: Iterable) -> Iterator:
        """Yield the good events of ``events`` unchanged (an IMU quaternion within tolerance normalised)."""
        for ev in events:
            out = self.check(ev)
            if out is not None:
                yield out

    __call__ = filter

    def check(self, ev):
        """The event to pass on (``ev`` itself when good), or None when it is dropped (counted and noted)."""
        t = getattr(ev, "t_ns", None)
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
            raise SourceError(f"the input checks need events with an integer t_ns (runtime.events), got {ev!r}")
        t = int(t)
        if self._t0 is None:
            self._t0 = t
        if isinstance(ev, SkippedInput):
            return self._skip("unreadable", ev.topic or "input", t, ev.reason)
        key = (type(ev).__name__, getattr(ev, "topic", ""))
        name = self._name(ev)
        # values first: a bad event must not move the topic's clock
        if isinstance(ev, GpsFix):
            reason = self._gps_problem(ev)
            if reason:
                return self._skip("gps_position", name, t, reason + "; fix skipped")
        elif isinstance(ev, ImuSample):
            out = self._imu(ev, name, t)
            if out is None:
                return None
            ev = out
        last = self._last.get(key)
        if last is not None and t < last - self._backstep_ns:
            back = (last - t) / 1e9
            jump = self._jumping.get(key)
            if jump is not None and jump[2] <= t:  # the jumped clock goes on: the same jump
                jump[2], jump[3] = t, jump[3] + 1
                return self._skip("clock_back", name, t, "", note=False)
            self._jumping[key] = [name, last, t, 1, back]
            self.clock_jumps.append(self._jumping[key])
            return self._skip("clock_back", name, t,
                              f"the clock went back {back:.3f} s (from {self._rel(last)}); its events are skipped "
                              f"until its time passes {self._rel(last)} again")
        if self._loop_t is not None and t < self._loop_t - self._behind_ns:
            return self._skip("behind_loop", name, t,
                              f"{(self._loop_t - t) / 1e9:.3f} s older than the newest event passed ({self._loop_topic} "
                              f"at {self._rel(self._loop_t)}); the tracker takes at most {self._behind_ns / 1e9:g} s "
                              "back: is this topic's clock behind the others?")
        if last is not None and t == last and not isinstance(ev, CameraInfoEvent):
            d = _digest(ev)
            seen = self._at_last.setdefault(key, [])
            if d in seen:
                return self._skip("duplicate", name, t, "the same message again (same topic, time and content)")
            seen.append(d)
        elif last is None or t > last:
            self._last[key] = t
            self._at_last.pop(key, None)
            if not isinstance(ev, CameraInfoEvent):
                self._at_last[key] = _Lazy(ev)
        if self._loop_t is None or t > self._loop_t:
            self._loop_t, self._loop_topic = t, name
        self.passed += 1
        return ev

    # ------------------------------------------------------------------------------------------------ report
    @property
    def skipped(self) -> int:
        """Events dropped, all reasons."""
        return sum(self.counts[r] for r in REASONS)

    def summary(self) -> str:
        """One line: what was dropped by reason, the clock jumps, the normalised quaternions ('' when nothing)."""
        parts = [f"{self.counts[r]} {r.replace('_', ' ')}" for r in REASONS if self.counts[r]]
        text = ""
        if parts:
            text = f"input checks: {self.skipped} events skipped ({', '.join(parts)})"
        if self.clock_jumps:
            big = max(self.clock_jumps, key=lambda j: j[4])
            text += ("; " if text else "input checks: ") + (
                f"{len(self.clock_jumps)} backward clock jump{'s' if len(self.clock_jumps) > 1 else ''}, largest "
                f"{big[4]:.3f} s on {big[0]} at {self._rel(big[1])} ({big[3]} events skipped in it)")
        if self.counts["imu_normalised"]:
            text += ("; " if text else "input checks: ") + (
                f"{self.counts['imu_normalised']} IMU quaternions normalised (norm off 1 by <= {self._q_tol:g})")
        return text

    # ------------------------------------------------------------------------------------------------ internals
    def _rel(self, t: int) -> str:
        return f"t={(t - (self._t0 or 0)) / 1e9:.3f} s (t_ns {t})"

    @staticmethod
    def _name(ev) -> str:
        kind = {GpsFix: "GPS", ImuSample: "IMU", Frame: "camera", CameraInfoEvent: "camera info",
                TruthPose: "truth"}.get(type(ev), type(ev).__name__)
        topic = getattr(ev, "topic", "")
        return f"{kind} {topic}" if topic else kind

    def _skip(self, reason: str, name: str, t: int, why: str, *, note: bool = True):
        self.counts[reason] += 1
        if note:
            n = self._noted.get(reason, 0)
            if n < self._max_notes:
                self.notes.append(f"{name} at {self._rel(t)}: {why}")
            elif n == self._max_notes:
                self.notes.append(f"further '{reason.replace('_', ' ')}' skips are counted, not listed")
            self._noted[reason] = n + 1
        return None

    @staticmethod
    def _gps_problem(fix: GpsFix) -> str:
        if fix.status == STATUS_NO_FIX:
            return ""
        if not (math.isfinite(fix.lat) and -90.0 <= fix.lat <= 90.0):
            return f"latitude {fix.lat!r} is not a WGS84 latitude (finite, -90..90 degrees)"
        if not (math.isfinite(fix.lon) and -180.0 <= fix.lon <= 180.0):
            return f"longitude {fix.lon!r} is not a WGS84 longitude (finite, -180..180 degrees)"
        if not math.isfinite(fix.alt):
            return f"altitude {fix.alt!r} is not a finite number of metres"
        return ""

    def _imu(self, s: ImuSample, name: str, t: int):
        if not _finite(s.angular_velocity):
            return self._skip("imu_rates", name, t, f"angular velocity {list(s.angular_velocity)} is not finite; "
                              "sample skipped")
        if not _finite(s.linear_acceleration):
            return self._skip("imu_acceleration", name, t, f"linear acceleration {list(s.linear_acceleration)} is not "
                              "finite; sample skipped")
        q = s.orientation
        if q is None:
            return s
        if not _finite(q):
            return self._skip("imu_orientation", name, t, f"orientation {list(q)} is not finite; sample skipped")
        norm = math.sqrt(sum(float(v) * float(v) for v in q))
        if abs(norm - 1.0) > self._q_tol:
            return self._skip("imu_orientation", name, t, f"orientation quaternion {list(q)} has norm {norm:.4f}, "
                              f"more than {self._q_tol:g} off 1 (not a rotation); sample skipped")
        if abs(norm - 1.0) > 1e-6:
            self.counts["imu_normalised"] += 1
            return replace(s, orientation=tuple(float(v) / norm for v in q))
        return s


class _Lazy(list):
    """The digests at a topic's newest stamp, the first one computed only when the stamp repeats."""

    def __init__(self, ev) -> None:
        super().__init__()
        self._ev = ev

    def __contains__(self, d) -> bool:
        if self._ev is not None:
            self.append(_digest(self._ev))
            self._ev = None
        return super().__contains__(d)


#: the loop's own counts of skipped frames (:meth:`runtime.localizer.Localizer.on_frame`), as the report names them
LOOP_SKIPS = (("frames_undecodable", "frames not decodable (zero-length or corrupt image)"),
              ("frames_camera_mismatch", "frames of another size than the camera model"),
              ("frames_outside_map", "frames with the belief outside the map (GPS alone)"))


def skip_report(sanitizer: EventSanitizer | None, loop_counts: dict | None = None) -> list[str]:
    """The lines a CLI prints at the end of a run: the sanitizer's notes and summary, then what the loop skipped."""
    lines = [] if sanitizer is None else list(sanitizer.notes)
    summary = "" if sanitizer is None else sanitizer.summary()
    if summary:
        lines.append(summary)
    counts = loop_counts or {}
    loop = [f"{counts[k]} {what}" for k, what in LOOP_SKIPS if counts.get(k)]
    if loop:
        lines.append("loop: " + "; ".join(loop))
    return lines
