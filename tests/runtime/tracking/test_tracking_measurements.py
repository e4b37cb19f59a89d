"""VisualFix validation, GpsDecision and TrackEstimate helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from runtime.tracking import GpsDecision, Status, TrackEstimate, TrackingError, VisualFix


def _fix(**kw):
    base = dict(t_ns=5, positions=[[1.0, 2.0], [3.0, 4.0]], scores=[0.9, 0.8], sigma_m=[1.0, 6.4])
    base.update(kw)
    return VisualFix(**base)


def test_visual_fix_stores_read_only_float64_copies():
    pos = np.array([[1, 2], [3, 4]], dtype=np.int32)
    f = _fix(positions=pos, yaws=[0.5, np.nan], scope=(1, 2, 60))
    assert f.positions.dtype == np.float64 and f.positions.shape == (2, 2)
    assert not f.positions.flags.writeable and not f.scores.flags.writeable and not f.sigma_m.flags.writeable
    pos[0, 0] = 99
    assert f.positions[0, 0] == 1.0
    assert f.k == 2 and np.isnan(f.yaws[1]) and f.scope == (1.0, 2.0, 60.0)
    with pytest.raises(ValueError):
        f.positions[0, 0] = 3.0


def test_visual_fix_broadcasts_one_sigma_and_allows_no_candidates():
    f = _fix(sigma_m=2.5)
    assert f.sigma_m.tolist() == [2.5, 2.5]
    empty = VisualFix(1, np.zeros((0, 2)), np.zeros(0), np.zeros(0))
    assert empty.k == 0 and empty.positions.shape == (0, 2)
    assert VisualFix(1, [], [], []).k == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"t_ns": 1.5}, "VisualFix.t_ns must be an integer number of nanoseconds, got 1.5 (float)"),
        ({"t_ns": True}, "VisualFix.t_ns must be an integer number of nanoseconds, got True (bool)"),
        ({"positions": [1.0, 2.0]}, "VisualFix.positions must be float[k, 2] (x east, y north metres), got shape [2]"),
        ({"positions": [[1.0, np.nan], [3.0, 4.0]]},
         "VisualFix.positions must be finite; drop padded or invalid candidates first"),
        ({"scores": [0.9]}, "VisualFix.scores must be float[2] (one per candidate), got shape [1]"),
        ({"scores": [0.9, -np.inf]},
         "VisualFix.scores must be finite; drop padded search results (id -1, score -inf) before building a fix"),
        ({"sigma_m": [1.0, 2.0, 3.0]}, "VisualFix.sigma_m must be float[2] or one number (metres), got shape [3]"),
        ({"sigma_m": [1.0, 0.0]}, "VisualFix.sigma_m must be finite and > 0 metres, got [1.0, 0.0]"),
        ({"yaws": [0.1]}, "VisualFix.yaws must be float[2] (rad, NaN = unknown) or None, got shape [1]"),
        ({"yaws": [0.1, np.inf]}, "VisualFix.yaws must be finite radians or NaN (unknown), got an infinity"),
        ({"yaw_sigma_rad": 0.0}, "VisualFix.yaw_sigma_rad must be a finite number > 0, got 0.0"),
        ({"yaw_sigma_rad": "x"}, "VisualFix.yaw_sigma_rad must be a number, got 'x' (str)"),
        ({"scope": (1.0, 2.0)},
         "VisualFix.scope must be None (whole map) or (x, y, radius_m) with radius > 0, got (1.0, 2.0)"),
        ({"scope": (1.0, 2.0, -5.0)},
         "VisualFix.scope must be None (whole map) or (x, y, radius_m) with radius > 0, got (1.0, 2.0, -5.0)"),
    ],
)
def test_visual_fix_error_messages(kwargs, message):
    with pytest.raises(TrackingError) as e:
        _fix(**kwargs)
    assert str(e.value) == message


def test_gps_decision_is_a_frozen_record():
    d = GpsDecision(False, "gate: far", 200.0, 800.0)
    assert (d.accepted, d.reason, d.distance_m, d.nis) == (False, "gate: far", 200.0, 800.0)
    with pytest.raises(AttributeError):
        d.accepted = True  # type: ignore[misc]


def test_track_estimate_sigma_is_the_largest_axis():
    cov = np.array([[9.0, 0.0], [0.0, 4.0]])
    e = TrackEstimate(1, 2.0, 3.0, 0.5, cov, 0.1, Status.OK, "ok", True, 100.0)
    assert e.sigma_m == pytest.approx(3.0)
    assert e.position.tolist() == [2.0, 3.0] and e.notes == ()
    rot = np.array([[5.0, 4.0], [4.0, 5.0]])  # eigenvalues 1 and 9
    assert TrackEstimate(1, 0, 0, 0, rot, 0, Status.OK, "ok", True, 1.0).sigma_m == pytest.approx(3.0)
    inf = np.full((2, 2), np.inf)
    assert math.isinf(TrackEstimate(1, 0, 0, 0, inf, 0, Status.LOST, "none", False, 0.0).sigma_m)


def test_status_is_a_string_enum():
    assert Status("GPS_REJECTED") is Status.GPS_REJECTED
    assert Status.OK == "OK" and [s.value for s in Status] == ["OK", "DEGRADED", "GPS_REJECTED", "LOST"]
