"""TrackerConfig: defaults, strict from_dict, round trip, and every validation message."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from runtime.errors import OnboardError
from runtime.tracking import TrackerConfig, TrackingError


def test_defaults_match_the_documented_values():
    c = TrackerConfig()
    assert c.n_particles == 1500 and c.seed == 0
    assert c.gps_gate_chi2 == 25.0 and c.gps_reaccept_s == 2.0 and c.gps_outage_s == 2.0
    assert c.lost_sigma_m == 100.0 and c.lost_no_support_s == 15.0 and c.visual_confirm_frames == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.n_particles = 10  # type: ignore[misc]


def test_round_trip_through_dict():
    c = TrackerConfig(n_particles=300, seed=7, gps_gate_chi2=16.0)
    d = c.to_dict()
    assert d["n_particles"] == 300 and d["gps_gate_chi2"] == 16.0
    assert TrackerConfig.from_dict(d) == c
    assert TrackerConfig.from_dict({}) == TrackerConfig()


def test_from_dict_names_unknown_keys():
    with pytest.raises(TrackingError) as e:
        TrackerConfig.from_dict({"n_particle": 10, "gate": 3, "seed": 1})
    msg = str(e.value)
    assert "unknown tracker config keys ['gate', 'n_particle']" in msg
    assert "expected only [" in msg and "'n_particles'" in msg


def test_from_dict_needs_a_mapping():
    with pytest.raises(TrackingError, match="a tracker config must be a mapping, got list"):
        TrackerConfig.from_dict([("seed", 1)])


def test_tracking_error_is_an_onboard_error():
    assert issubclass(TrackingError, OnboardError)


def test_numpy_numbers_are_accepted_and_converted():
    c = TrackerConfig(n_particles=np.int64(200), accel_sigma=np.float32(2.0))
    assert type(c.n_particles) is int and c.n_particles == 200
    assert type(c.accel_sigma) is float and c.accel_sigma == 2.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_particles": 1500.0}, "tracker config n_particles must be an integer, got 1500.0 (float)"),
        ({"n_particles": True}, "tracker config n_particles must be an integer, got True (bool)"),
        ({"n_particles": 5}, "tracker config n_particles must be >= 10, got 5"),
        ({"seed": -1}, "tracker config seed must be >= 0, got -1"),
        ({"visual_confirm_frames": 0}, "tracker config visual_confirm_frames must be >= 1, got 0"),
        ({"accel_sigma": "1.5"}, "tracker config accel_sigma must be a number, got '1.5' (str)"),
        ({"gps_bias_m": False}, "tracker config gps_bias_m must be a number, got False (bool)"),
        ({"gps_gate_chi2": float("nan")}, "tracker config gps_gate_chi2 must be a finite number > 0, got nan"),
        ({"gps_reaccept_s": 0}, "tracker config gps_reaccept_s must be a finite number > 0, got 0"),
        ({"visual_temperature": -0.1}, "tracker config visual_temperature must be a finite number > 0, got -0.1"),
        ({"visual_inlier_prob": 1.0}, "tracker config visual_inlier_prob must be in (0, 1), got 1.0"),
        ({"visual_support_min": 1.5}, "tracker config visual_support_min must be in (0, 1], got 1.5"),
        ({"resample_ess_fraction": 2.0}, "tracker config resample_ess_fraction must be in (0, 1], got 2.0"),
        ({"inject_min_mass": 1.0}, "tracker config inject_min_mass must be in (0, 1), got 1.0"),
        ({"reinit_confirm_s": 0}, "tracker config reinit_confirm_s must be a finite number > 0, got 0"),
        ({"ok_sigma_m": 100.0}, "tracker config ok_sigma_m (100.0 m) must be below lost_sigma_m (100.0 m)"),
    ],
)
def test_every_validation_message(kwargs, message):
    with pytest.raises(TrackingError) as e:
        TrackerConfig(**kwargs)
    assert str(e.value) == message


def test_upper_bounds_that_are_allowed():
    c = TrackerConfig(visual_support_min=1.0, resample_ess_fraction=1.0)
    assert c.visual_support_min == 1.0 and c.resample_ess_fraction == 1.0
