"""runtime.imu_frame: NED/FRD (PX4) IMU samples into ENU/FLU, and detecting the convention from gravity."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calibration.geometry import Attitude
from calibration.rotations import rotation_from_rpy
from runtime.errors import ImuFrameError, OnboardError
from runtime.events import ImuSample, matrix_to_quaternion, quaternion_to_matrix
from runtime.imu_frame import GRAVITY_MPS2, IMU_FRAMES, ImuFrameResolver, ned_frd_to_enu_flu

G = GRAVITY_MPS2
# written out here on purpose (not imported): ENU <-> NED swaps x/y and flips z, FLU <-> FRD flips y and z
_P = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
_D = np.diag([1.0, -1.0, -1.0])


def _enu_flu_to_ned_frd(s: ImuSample) -> ImuSample:
    """Hand-written inverse of ned_frd_to_enu_flu: R_frd2ned = R_enu2ned @ R_flu2enu @ R_frd2flu."""
    q = None if s.orientation is None else matrix_to_quaternion(_P @ quaternion_to_matrix(s.orientation) @ _D)
    return ImuSample(s.t_ns, q, tuple(_D @ np.array(s.angular_velocity)), tuple(_D @ np.array(s.linear_acceleration)),
                     s.topic, s.frame_id)


def _assert_same(a: ImuSample, b: ImuSample, atol=1e-12):
    assert a.t_ns == b.t_ns and a.topic == b.topic and a.frame_id == b.frame_id
    if b.orientation is None:
        assert a.orientation is None
    else:  # compare rotations (q and -q are the same)
        np.testing.assert_allclose(quaternion_to_matrix(a.orientation), quaternion_to_matrix(b.orientation), atol=atol)
    np.testing.assert_allclose(a.angular_velocity, b.angular_velocity, atol=atol)
    np.testing.assert_allclose(a.linear_acceleration, b.linear_acceleration, atol=atol)


# ---------------------------------------------------------------------------------------------- conversion
def test_level_north_east_accelerating_left_turn_matches_the_enu_flu_sample():
    """Level, nose north-east (heading 45 deg), 2 m/s^2 forward, turning left at 0.1 rad/s."""
    c, s = math.cos(math.radians(22.5)), math.sin(math.radians(22.5))
    ned = ImuSample(7, (0.0, 0.0, s, c),  # R_frd2ned: yaw 45 deg about NED's down axis (clockwise from north)
                    angular_velocity=(0.0, 0.0, -0.1),  # left turn = negative rate about body down
                    linear_acceleration=(2.0, 0.0, -G),  # specific force points up = body -z in FRD
                    topic="/imu/data", frame_id="imu_frd")
    enu = ImuSample(7, Attitude(0.0, 0.0, math.pi / 4).to_quaternion(),  # yaw 45 deg from east = north-east
                    angular_velocity=(0.0, 0.0, 0.1), linear_acceleration=(2.0, 0.0, G),
                    topic="/imu/data", frame_id="imu_frd")
    got = ned_frd_to_enu_flu(ned)
    _assert_same(got, enu, atol=1e-15)
    # the forward acceleration points north-east in the world, gravity up
    np.testing.assert_allclose(got.R_body2world @ np.array(got.linear_acceleration),
                               [math.sqrt(2.0), math.sqrt(2.0), G], atol=1e-12)


@pytest.mark.parametrize("roll,pitch,yaw", [(0.1, 0.2, 0.7), (-0.3, -0.15, -2.5), (0.0, 0.4, math.pi)])
def test_px4_euler_angles_map_to_rep103_angles(roll, pitch, yaw):
    """PX4 (roll, pitch nose up, yaw clockwise from north) = REP-103 (roll, -pitch, pi/2 - yaw)."""
    ned = ImuSample(0, matrix_to_quaternion(rotation_from_rpy(roll, pitch, yaw)))
    got = ned_frd_to_enu_flu(ned)
    np.testing.assert_allclose(got.R_body2world, Attitude(roll, -pitch, math.pi / 2 - yaw).R_body2world, atol=1e-12)


def test_world_vectors_agree_and_round_trip_with_hand_written_inverse():
    rng = np.random.default_rng(3)
    for k in range(50):
        q = rng.normal(size=4)
        ned = ImuSample(k, tuple(q / np.linalg.norm(q)), tuple(rng.normal(size=3)), tuple(rng.normal(size=3) * 5),
                        "/imu", "imu")
        enu = ned_frd_to_enu_flu(ned)
        # the same physical vector, seen in the world: ENU = R_ned2enu @ NED
        f_ned = ned.R_body2world @ np.array(ned.linear_acceleration)
        np.testing.assert_allclose(enu.R_body2world @ np.array(enu.linear_acceleration), _P @ f_ned, atol=1e-12)
        w_ned = ned.R_body2world @ np.array(ned.angular_velocity)
        np.testing.assert_allclose(enu.R_body2world @ np.array(enu.angular_velocity), _P @ w_ned, atol=1e-12)
        _assert_same(_enu_flu_to_ned_frd(enu), ned)
        _assert_same(ned_frd_to_enu_flu(_enu_flu_to_ned_frd(enu)), enu)


def test_sample_without_orientation_keeps_none():
    got = ned_frd_to_enu_flu(ImuSample(1, None, (0.1, 0.2, 0.3), (1.0, 2.0, -G)))
    assert got.orientation is None and got.R_body2world is None
    assert got.angular_velocity == (0.1, -0.2, -0.3)
    assert got.linear_acceleration == (1.0, -2.0, G)


# ---------------------------------------------------------------------------------------------- resolver
def _noisy_enu_flight(n: int, seed: int) -> list[ImuSample]:
    """A banking, pitching, turning vehicle: true specific force + 0.3 m/s^2 noise, some 3 m/s^2 manoeuvres, rates."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        att = Attitude(rng.normal(0.0, 0.25), rng.normal(0.0, 0.2), rng.uniform(-math.pi, math.pi))
        a_world = rng.normal(0.0, 1.5, size=3)  # manoeuvring
        f = att.R_body2world.T @ (a_world + [0.0, 0.0, G]) + rng.normal(0.0, 0.3, size=3)
        out.append(ImuSample(k * 10_000_000, att.to_quaternion(), tuple(rng.normal(0.0, 0.2, 3)), tuple(f),
                             "/imu/data", "imu"))
    return out


def test_auto_detects_enu_flu_and_passes_samples_through():
    samples = _noisy_enu_flight(60, seed=1)
    r = ImuFrameResolver("auto", min_samples=20)
    assert r.frame == "auto" and r.note is None and r.requested == "auto"
    out = [r.convert(s) for s in samples]
    assert out[:19] == [None] * 19 and r.undecided_dropped == 19
    assert r.frame == "enu_flu"
    assert all(o is s for o, s in zip(out[19:], samples[19:]))
    assert "ENU/FLU" in r.note and "detected from gravity" in r.note


def test_auto_detects_ned_frd_and_converts_every_later_sample():
    enu = _noisy_enu_flight(60, seed=2)
    ned = [_enu_flu_to_ned_frd(s) for s in enu]
    r = ImuFrameResolver(min_samples=20)
    out = [r.convert(s) for s in ned]
    assert out[:19] == [None] * 19 and r.undecided_dropped == 19
    assert r.frame == "ned_frd"
    assert r.note.startswith("IMU in NED/FRD (PX4 convention) detected from gravity")
    assert "converted to ENU/FLU" in r.note
    for o, e in zip(out[19:], enu[19:]):
        _assert_same(o, e, atol=1e-9)


def test_auto_ignores_samples_without_orientation_as_evidence():
    ned = [_enu_flu_to_ned_frd(s) for s in _noisy_enu_flight(10, seed=4)]
    r = ImuFrameResolver(min_samples=5)
    stream = []
    for s in ned:  # every other sample lacks an orientation
        stream += [s, ImuSample(s.t_ns + 1, None, linear_acceleration=(0.0, 0.0, -G))]
    out = [r.convert(s) for s in stream]
    assert r.frame == "ned_frd" and r.undecided_dropped == 8  # decided at the 5th oriented sample (index 8)
    assert out[8] is not None and all(o is not None for o in out[8:])
    assert out[9].orientation is None and out[9].linear_acceleration == (0.0, 0.0, G)


def test_ambiguous_evidence_falls_back_to_enu_flu_and_says_so():
    r = ImuFrameResolver(min_samples=4)
    level = Attitude().to_quaternion()
    out = [r.convert(ImuSample(k, level, linear_acceleration=(0.0, 0.0, 0.0))) for k in range(25)]
    assert out[:19] == [None] * 19 and r.undecided_dropped == 19  # 5 x min_samples = 20th sample decides
    assert r.frame == "enu_flu" and out[19] is not None and out[24].t_ns == 24
    assert "could not be detected" in r.note and "assumed ENU/FLU" in r.note and "+0.00 m/s^2" in r.note


def test_no_orientation_at_all_falls_back_to_enu_flu():
    r = ImuFrameResolver(min_samples=2)
    out = [r.convert(ImuSample(k, None, linear_acceleration=(0.0, 0.0, G))) for k in range(12)]
    assert out.count(None) == 9 and r.frame == "enu_flu"
    assert "none of the first 10 samples has an orientation" in r.note


@pytest.mark.parametrize("frame", ["enu_flu", "ned_frd", " NED_FRD "])
def test_explicit_frames_never_drop(frame):
    samples = _noisy_enu_flight(5, seed=5)
    r = ImuFrameResolver(frame)
    out = [r.convert(s) for s in samples]
    assert r.frame == frame.strip().lower() and r.undecided_dropped == 0 and r.note is None
    if r.frame == "enu_flu":
        assert all(o is s for o, s in zip(out, samples))
    else:
        for o, s in zip(out, samples):
            _assert_same(o, ned_frd_to_enu_flu(s), atol=0)


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("bad", ["ned", "NED/FRD", "", None, 3])
def test_unknown_frame_names_the_valid_ones(bad):
    with pytest.raises(ImuFrameError, match="unknown IMU frame") as info:
        ImuFrameResolver(bad)
    assert isinstance(info.value, OnboardError)
    for name in IMU_FRAMES:
        assert name in str(info.value)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "20"])
def test_min_samples_must_be_a_positive_integer(bad):
    with pytest.raises(ImuFrameError, match="min_samples must be an integer >= 1"):
        ImuFrameResolver("auto", min_samples=bad)


def test_non_samples_are_rejected():
    with pytest.raises(ImuFrameError, match="needs a runtime.events.ImuSample, got dict"):
        ImuFrameResolver("enu_flu").convert({"t_ns": 0})
    with pytest.raises(ImuFrameError, match="needs a runtime.events.ImuSample, got NoneType"):
        ned_frd_to_enu_flu(None)


def test_imu_frames_constant():
    assert IMU_FRAMES == ("auto", "enu_flu", "ned_frd")
