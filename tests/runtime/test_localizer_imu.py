"""The loop's IMU input: its frame convention (NED/FRD converted, or detected from gravity) and its clock offset."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.rotations import R_FRD2FLU, R_NED2ENU, matrix_to_quaternion, rotation_from_rpy
from runtime.events import ImuSample
from runtime.localizer import Localizer, LocalizerConfig, LocalizerError

G = 9.80665


def _enu_sample(t_ns: int) -> ImuSample:
    """Level-ish, facing north-east, accelerating forward: ENU world, FLU body."""
    R = rotation_from_rpy(0.05, -0.02, np.pi / 4)
    f_world = np.array([1.0, 1.0, G])
    return ImuSample(t_ns, matrix_to_quaternion(R), (0.01, 0.02, 0.3), tuple(R.T @ f_world))


def _ned_frd(s: ImuSample) -> ImuSample:
    """The same sample as PX4 would send it (orientation FRD -> NED, FRD vectors)."""
    R = np.asarray(s.R_body2world)
    R_frd2ned = R_NED2ENU.T @ R @ R_FRD2FLU
    w = R_FRD2FLU.T @ np.asarray(s.angular_velocity)
    a = R_FRD2FLU.T @ np.asarray(s.linear_acceleration)
    return ImuSample(s.t_ns, matrix_to_quaternion(R_frd2ned), tuple(w), tuple(a))


@pytest.mark.parametrize("frame", ["auto", "ned_frd"])
def test_a_ned_frd_imu_is_converted(frame):
    loop = Localizer(None, None, config=LocalizerConfig(imu_frame=frame))
    enu = _enu_sample(10**9)
    loop.on_imu(_ned_frd(enu))
    assert np.allclose(loop._imu.R_body2world, enu.R_body2world, atol=1e-9)
    assert np.allclose(loop._imu.linear_acceleration, enu.linear_acceleration, atol=1e-9)
    if frame == "auto":
        assert any("NED/FRD (PX4 convention) detected from gravity" in n for n in loop.notes)


def test_an_enu_imu_passes_and_auto_says_so():
    loop = Localizer(None, None)
    enu = _enu_sample(10**9)
    loop.on_imu(enu)
    assert loop._imu == enu and any("ENU/FLU (REP-103) detected" in n for n in loop.notes)


def test_the_imu_clock_offset_is_taken_out():
    loop = Localizer(None, None, config=LocalizerConfig(imu_time_offset_s=0.05))
    loop.on_imu(_enu_sample(10**9))
    assert loop._imu.t_ns == 10**9 - 50_000_000


@pytest.mark.parametrize("kw, msg", [
    ({"imu_frame": "nwu"}, "imu_frame must be one of auto, enu_flu, ned_frd, got 'nwu'"),
    ({"imu_time_offset_s": 2.0}, "imu_time_offset_s must be a number of seconds within [-1, 1], got 2.0"),
    ({"imu_time_offset_s": True}, "imu_time_offset_s must be a number of seconds within [-1, 1], got True"),
])
def test_imu_settings_are_checked(kw, msg):
    with pytest.raises(LocalizerError) as exc:
        LocalizerConfig(**kw)
    assert msg in str(exc.value)


@pytest.mark.parametrize("frame", ["enu_flu", "ned_frd"])
def test_a_sample_that_states_its_tilt_sigma_is_used_for_its_frames(frame):
    """A photo whose tilt came from its images states its own roll/pitch sigma: the loop's visual fixes use it
    instead of ``attitude_sigma_deg`` (kept through the NED/FRD conversion); a sample without one falls back."""
    from dataclasses import replace

    import math

    loop = Localizer(None, None, config=LocalizerConfig(imu_frame=frame, attitude_sigma_deg=4.7))
    enu = _enu_sample(10**9)
    s = enu if frame == "enu_flu" else _ned_frd(enu)
    loop.on_imu(replace(s, tilt_sigma_rad=math.radians(0.8)))
    assert loop._imu_tilt_sigma_deg() == pytest.approx(0.8)
    loop.on_imu(replace(s, t_ns=2 * 10**9))
    assert loop._imu_tilt_sigma_deg() == pytest.approx(4.7)


@pytest.mark.parametrize("bad", [-0.1, 2.0, float("nan"), True, "1"])
def test_a_bad_tilt_sigma_says_what_was_expected(bad):
    from runtime.errors import BagError

    with pytest.raises(BagError) as exc:
        ImuSample(0, (0.0, 0.0, 0.0, 1.0), tilt_sigma_rad=bad)
    assert f"ImuSample.tilt_sigma_rad must be a number in [0, pi/2) radians or None, got {bad!r}" in str(exc.value)
