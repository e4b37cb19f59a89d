"""runtime.sources.sanitize.EventSanitizer on events built directly: good events pass unchanged and in order; each
bad one is counted by reason and noted with topic, time and reason (capped per reason, counts exact)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from runtime.events import STATUS_NO_FIX, Frame, GpsFix, GroundMotion, ImuSample
from runtime.sources import SourceError
from runtime.sources.sanitize import EventSanitizer, SkippedInput, skip_report

T = 1_700_000_000_000_000_000
MS = 1_000_000
Q = (0.0, 0.0, 0.0, 1.0)


def _gps(t, lat=47.0, lon=8.0, topic="/fix", **kw):
    return GpsFix(t, lat, lon, 400.0, 2.0, topic=topic, **kw)


def _imu(t, topic="/imu"):
    return ImuSample(t, Q, (0.0, 0.0, 0.1), (0.0, 0.0, 9.81), topic)


def _raw_imu(t, orientation=Q, rates=(0.0, 0.0, 0.0), acc=(0.0, 0.0, 9.81)):
    """An ImuSample holding values its constructor refuses (what a source that bypassed it would hand over)."""
    s = _imu(t)
    object.__setattr__(s, "orientation", orientation)
    object.__setattr__(s, "angular_velocity", rates)
    object.__setattr__(s, "linear_acceleration", acc)
    return s


def test_good_events_pass_unchanged_and_in_order():
    img = np.zeros((4, 6, 3), np.uint8)
    evs = []
    for i in range(50):
        evs += [_imu(T + i * 20 * MS), _imu(T + i * 20 * MS + 10 * MS)]
        if i % 5 == 0:
            evs += [_gps(T + i * 20 * MS), Frame(T + i * 20 * MS, img, topic="/cam")]
    evs.append(_gps(T + 2000 * MS, math.nan, math.nan, status=STATUS_NO_FIX))  # ROS's no-fix: NaN, passed on
    s = EventSanitizer()
    out = list(s.filter(evs))
    assert len(out) == len(evs) and all(a is b for a, b in zip(out, evs))
    assert s.skipped == 0 and s.notes == [] and s.summary() == "" and s.passed == len(evs)


def test_duplicates_are_dropped_other_messages_at_the_same_time_kept():
    s = EventSanitizer()
    a, b = _gps(T), _gps(T, lat=47.001)
    out = list(s.filter([a, _imu(T), a, b, _gps(T), _gps(T + 200 * MS)]))
    assert len(out) == 4 and out[:3] == [a, out[1], b]
    assert s.counts["duplicate"] == 2
    assert s.notes[0] == f"GPS /fix at t=0.000 s (t_ns {T}): the same message again (same topic, time and content)"


def test_a_ground_motion_sent_twice_is_a_duplicate_another_at_the_same_time_is_not():
    """Applied twice, one displacement would move the belief twice as far."""
    s = EventSanitizer()
    m = GroundMotion(T, T - 5000 * MS, (30.0, 0.0), 1.5, 0.3, topic="photos", frame_id="b.jpg")
    other = GroundMotion(T, T - 4000 * MS, (24.0, 0.0), 1.5, 0.3, topic="photos", frame_id="b.jpg")
    out = list(s.filter([m, GroundMotion(T, T - 5000 * MS, (30.0, 0.0), 1.5, 0.3, topic="photos", frame_id="b.jpg"),
                         other]))
    assert out == [m, other] and s.counts["duplicate"] == 1


def test_a_backward_clock_jump_is_counted_noted_and_reported():
    s = EventSanitizer()
    evs = [_gps(T + i * 200 * MS) for i in range(10)]
    evs += [_gps(T + i * 200 * MS - 10_000 * MS) for i in range(10, 15)]  # the clock back 10 s for 5 fixes
    evs += [_gps(T + i * 200 * MS) for i in range(15, 20)]
    evs += [_imu(T + 4000 * MS)]
    out = list(s.filter(evs))
    assert len(out) == 16 and s.counts["clock_back"] == 5
    assert len(s.clock_jumps) == 1 and s.clock_jumps[0][3] == 5
    assert s.notes == [f"GPS /fix at t=-8.000 s (t_ns {T - 8000 * MS}): the clock went back 9.800 s (from t=1.800 s "
                       f"(t_ns {T + 1800 * MS})); its events are skipped until its time passes t=1.800 s (t_ns "
                       f"{T + 1800 * MS}) again"]
    assert s.summary() == ("input checks: 5 events skipped (5 clock back); 1 backward clock jump, largest 9.800 s on "
                           f"GPS /fix at t=1.800 s (t_ns {T + 1800 * MS}) (5 events skipped in it)")
    # a small step back (within topic_backstep_s) passes: the tracker applies it at its own time
    s2 = EventSanitizer()
    assert len(list(s2.filter([_gps(T), _gps(T - 50 * MS)]))) == 2


def test_an_event_far_behind_the_other_topics_is_dropped():
    s = EventSanitizer(max_behind_s=1.0)
    out = list(s.filter([_imu(T + 5000 * MS), _gps(T), _gps(T + 4500 * MS)]))
    assert len(out) == 2 and s.counts["behind_loop"] == 1
    assert s.notes[0].startswith(f"GPS /fix at t=-5.000 s (t_ns {T}): 5.000 s older than the newest event passed "
                                 "(IMU /imu at t=0.000 s")
    assert "the tracker takes at most 1 s back" in s.notes[0]


@pytest.mark.parametrize("lat, lon, alt, what", [
    (math.nan, 8.0, 400.0, "latitude nan is not a WGS84 latitude"),
    (91.0, 8.0, 400.0, "latitude 91.0 is not a WGS84 latitude"),
    (47.0, math.inf, 400.0, "longitude inf is not a WGS84 longitude"),
    (47.0, 8.0, math.nan, "altitude nan is not a finite number of metres"),
])
def test_gps_positions_that_are_no_position_are_dropped(lat, lon, alt, what):
    s = EventSanitizer()
    out = list(s.filter([_gps(T), GpsFix(T + 200 * MS, lat, lon, alt, 2.0, topic="/fix"), _gps(T + 400 * MS)]))
    assert len(out) == 2 and s.counts["gps_position"] == 1
    assert s.notes == [f"GPS /fix at t=0.200 s (t_ns {T + 200 * MS}): {what} (finite, -90..90 degrees); fix skipped"
                       if "latitude" in what else
                       f"GPS /fix at t=0.200 s (t_ns {T + 200 * MS}): {what}"
                       + (" (finite, -180..180 degrees); fix skipped" if "longitude" in what else "; fix skipped")]


def test_imu_values_the_loop_cannot_use_are_dropped_and_a_near_unit_quaternion_normalised():
    s = EventSanitizer()
    bad = [_raw_imu(T + 10 * MS, acc=(0.0, math.nan, 9.81)), _raw_imu(T + 20 * MS, rates=(math.inf, 0.0, 0.0)),
           _raw_imu(T + 30 * MS, orientation=(0.0, 0.0, 0.0, 2.0)), _raw_imu(T + 40 * MS, orientation=(math.nan,) * 4)]
    near = _raw_imu(T + 50 * MS, orientation=(0.0, 0.0, 0.0, 1.05))
    out = list(s.filter([_imu(T)] + bad + [near, _imu(T + 60 * MS)]))
    assert len(out) == 3 and out[1].orientation == (0.0, 0.0, 0.0, 1.0)
    assert (s.counts["imu_acceleration"], s.counts["imu_rates"], s.counts["imu_orientation"]) == (1, 1, 2)
    assert s.counts["imu_normalised"] == 1
    assert s.notes[0] == f"IMU /imu at t=0.010 s (t_ns {T + 10 * MS}): linear acceleration [0.0, nan, 9.81] is not " \
                         "finite; sample skipped"
    assert "has norm 2.0000, more than 0.1 off 1 (not a rotation); sample skipped" in s.notes[2]
    assert "1 IMU quaternions normalised" in s.summary()


def test_notes_are_capped_per_reason_counts_stay_exact():
    s = EventSanitizer(notes_per_reason=3)
    evs = [_gps(T)] + [GpsFix(T + i * MS, math.nan, 8.0, 400.0, 2.0, topic="/fix") for i in range(1, 1001)]
    assert len(list(s.filter(evs))) == 1
    assert s.counts["gps_position"] == 1000 and len(s.notes) == 4
    assert s.notes[-1] == "further 'gps position' skips are counted, not listed"


def test_a_source_marker_is_counted_and_the_loop_report_joins_the_counts():
    s = EventSanitizer()
    assert s.check(SkippedInput(T, "/imu", "linear_acceleration is not finite")) is None
    assert s.notes == [f"/imu at t=0.000 s (t_ns {T}): linear_acceleration is not finite"]
    lines = skip_report(s, {"frames_undecodable": 2, "frames_outside_map": 7})
    assert lines[-2] == "input checks: 1 events skipped (1 unreadable)"
    assert lines[-1] == ("loop: 2 frames not decodable (zero-length or corrupt image); 7 frames with the belief "
                         "outside the map (GPS alone)")


def test_settings_and_events_are_checked():
    with pytest.raises(SourceError, match="max_behind_s must be a finite number of seconds >= 0, got nan"):
        EventSanitizer(max_behind_s=math.nan)
    with pytest.raises(SourceError, match="quaternion_tolerance must be a number in"):
        EventSanitizer(quaternion_tolerance=1e9)
    with pytest.raises(SourceError, match="notes_per_reason must be an integer in"):
        EventSanitizer(notes_per_reason=10**9)
    with pytest.raises(SourceError, match="integer t_ns"):
        EventSanitizer().check(object())
