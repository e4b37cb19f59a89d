"""Replay recorded events: real-time pacing of :mod:`runtime.events` by their ``t_ns``, and what a bag lacks.

:func:`replay_events` wraps any iterable of events (``BagReader.events()``, a list) and, when ``realtime`` is set,
sleeps so that event ``i`` comes out ``(t_i - t_0) / speed`` seconds after the first; by default it passes them
through as fast as the consumer takes them. The clock and the sleep are parameters, so tests run on a fake clock.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Iterable, Iterator

from ..events import Event
from . import SourceError


def replay_events(events: Iterable[Event], *, realtime: bool = False, speed: float = 1.0,
                  clock: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], None] = time.sleep) -> Iterator[Event]:
    """Yield ``events`` unchanged, paced by their ``t_ns`` when ``realtime``.

    Args:
        events: events in time order (anything with an integer ``t_ns``).
        realtime: pace them (default False: as fast as possible).
        speed: replay rate when realtime (2.0 = twice as fast); > 0.
        clock: seconds, monotonic (default :func:`time.monotonic`). sleep: sleeps seconds (default :func:`time.sleep`).
    Pacing is against the schedule, not event to event: time the consumer spends is not added, and a consumer
    that falls behind gets the late events at once (no sleep) until it catches up. An event older than the one
    before it comes out at once.
    Raises:
        SourceError: speed not a positive finite number, or an event without an integer ``t_ns``.
    """
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not math.isfinite(speed) or speed <= 0:
        raise SourceError(f"speed must be a positive finite number (1.0 = real time, 2.0 = twice as fast), got {speed!r}")
    return _paced(events, realtime, float(speed), clock, sleep)  # arguments checked now, not at the first next()


def _paced(events, realtime: bool, speed: float, clock, sleep) -> Iterator[Event]:
    t0_ns = None
    wall0 = 0.0
    for ev in events:
        t_ns = getattr(ev, "t_ns", None)
        if isinstance(t_ns, bool) or not isinstance(t_ns, int):
            raise SourceError(f"replay needs events with an integer t_ns (runtime.events), got {ev!r}")
        if realtime:
            if t0_ns is None:
                t0_ns, wall0 = t_ns, clock()
            else:
                due = wall0 + (t_ns - t0_ns) / 1e9 / speed
                wait = due - clock()
                if wait > 0:
                    sleep(wait)
        yield ev


def describe_bag_inputs(reader) -> list[str]:
    """Human notices about what an open :class:`runtime.bags.reader.BagReader` gives the runtime.

    Returns one line per concern: missing inputs (camera -> "no camera topic: tracking on GPS alone", GPS, IMU,
    camera intrinsics, ground truth), ambiguous topic choices, gaps in the chosen topics, an empty bag.
    """
    sel = reader.selection
    notes: list[str] = []
    if not sel.get("camera"):
        notes.append("no camera topic (sensor_msgs/CompressedImage or Image): tracking on GPS alone")
    elif not sel.get("camera_info"):
        notes.append(f"camera {sel['camera']} has no camera_info topic: give a camera file (--camera) for the "
                     "intrinsics")
    if not sel.get("gps"):
        notes.append("no GPS topic (sensor_msgs/NavSatFix): the runtime needs an initial position to start")
    if not sel.get("imu"):
        notes.append("no IMU topic (sensor_msgs/Imu): attitude assumed level (nadir camera), heading from motion")
    if not sel.get("truth_fix") and not sel.get("truth_pose"):
        notes.append("no ground truth (/ground_truth/fix or PoseStamped): no error statistics can be computed")
    notes.extend(reader.notes)
    topics = reader.topics
    for role in ("camera", "gps", "imu"):
        name = sel.get(role)
        summary = topics.get(name) if name else None
        if summary is None:
            continue
        if summary.count == 0:
            notes.append(f"{role} topic {name} has no messages")
        elif summary.has_gap:
            notes.append(
                f"{role} topic {name} has a {summary.max_gap_ns / 1e9:.1f} s gap starting "
                f"{(summary.max_gap_start_ns - summary.first_ns) / 1e9:.1f} s into it "
                f"(nominal rate {summary.rate_hz:.1f} Hz)"
            )
    if not any(t.count for t in topics.values()):
        notes.append("the bag holds no messages")
    return notes


__all__ = ["describe_bag_inputs", "replay_events"]
