"""runtime.sources.gps_faults: the GPS degraded on purpose (noise, bias, cuts) for evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from maps.geodesy import LocalFrame
from runtime.events import GpsFix, ImuSample
from runtime.sources import SourceError
from runtime.sources.gps_faults import GpsDegradation, degrade_gps


def _fixes(n=4000, dt_s=0.2):
    return [GpsFix(int(k * dt_s * 1e9), 47.0, 8.0, 500.0, cov_enu=2.0) for k in range(n)]


def test_noise_and_bias_have_the_stated_size_and_the_covariance_says_so():
    deg = GpsDegradation(sigma_m=5.0, bias_m=3.0, seed=4)
    out = list(degrade_gps(_fixes(), deg))
    f = LocalFrame(47.0, 8.0)
    xy = np.array([f.to_local(e.lat, e.lon) for e in out])
    assert np.linalg.norm(xy.mean(axis=0)) == pytest.approx(3.0, abs=0.3)  # the bias
    assert xy.std(axis=0) == pytest.approx([5.0, 5.0], rel=0.06)  # the white noise per axis
    assert out[0].cov_enu[0, 0] == pytest.approx(4.0 + 25.0 + 4.5) and out[0].cov_enu[2, 2] == pytest.approx(4.0)
    again = list(degrade_gps(_fixes(10), deg))
    assert [e.lat for e in again] == [e.lat for e in out[:10]]  # the seed makes it repeatable


def test_cuts_drop_fixes_and_other_events_pass():
    imu = ImuSample(int(1.1e9), None)
    events = _fixes(50) [:6] + [imu] + _fixes(50)[6:]
    deg = GpsDegradation.parse(None, ["1:2", "5:5.5"])
    out = list(degrade_gps(events, deg))
    times = [e.t_ns * 1e-9 for e in out if isinstance(e, GpsFix)]
    assert imu in out
    assert not any(1.0 <= t < 2.0 or 5.0 <= t < 5.5 for t in times) and len(times) == 50 - 5 - 3
    assert deg.describe() == "GPS degraded: cut 1-2 s, cut 5-5.5 s"
    assert list(degrade_gps(events, GpsDegradation())) == events  # nothing asked: unchanged


def test_bad_settings_are_typed_errors():
    with pytest.raises(SourceError, match=r"--gps-noise takes SIGMA or SIGMA:BIAS in metres \(e.g. 5:3\), got 'x'"):
        GpsDegradation.parse("x")
    with pytest.raises(SourceError, match="--gps-cut takes START:END in seconds from the start"):
        GpsDegradation.parse(None, ["10"])
    with pytest.raises(SourceError, match="sigma_m must be a number of metres >= 0, got -1"):
        GpsDegradation(sigma_m=-1)
    with pytest.raises(SourceError, match=r"a GPS cut must be \(start, end\) seconds with start < end"):
        GpsDegradation(cuts_s=((5.0, 1.0),))
    assert math.isclose(GpsDegradation.parse("5").sigma_m, 5.0)
