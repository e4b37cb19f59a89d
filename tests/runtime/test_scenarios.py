"""``runtime scenarios``: which flight each area gets (lawnmower, or the racetrack fallback at the fastest speed that
fits), the options that choose it, and how the choice is reported. Planning only: no map, no replay (the loop itself
is measured in test_localizer.py)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from maps.geodesy import LocalFrame
from maps.geotiff import write_geotiff
from maps.ortho import Orthophoto
from runtime.cli.common import run_handler
from runtime.errors import SimulationError
from runtime.tools.scenarios import (
    ScenarioConfig,
    _sim_config,
    choose_flight,
    flight_candidates,
    format_row,
    register,
    scaled_config,
)


def _ortho(tmp_path, name: str, width_m: float, height_m: float):
    """A textured, all-valid GeoTIFF of width_m x height_m at 0.5 m/px."""
    gen = np.random.default_rng(0)
    h, w = int(height_m / 0.5), int(width_m / 0.5)
    img = gen.integers(0, 255, (h, w, 3), dtype=np.uint8)
    o = Orthophoto(img, np.ones((h, w), bool), 0.5, -width_m / 2, height_m / 2, LocalFrame(47.3, 8.5))
    return write_geotiff(tmp_path / f"{name}.tif", o)


def test_candidates_fall_back_to_the_racetrack_fastest_first():
    assert flight_candidates(ScenarioConfig()) == [("lawnmower", 8.0), ("racetrack", 8.0), ("racetrack", 6.0),
                                                   ("racetrack", 5.0), ("racetrack", 4.0)]
    assert flight_candidates(ScenarioConfig(speed_mps=7.0)) == [("lawnmower", 7.0), ("racetrack", 7.0)]
    assert flight_candidates(ScenarioConfig(trajectory="racetrack")) == [("racetrack", v) for v in (8.0, 6.0, 5.0, 4.0)]
    assert flight_candidates(ScenarioConfig(trajectory="random", speed_mps=5.0)) == [("random", 5.0)]
    # the protocol's flight where the lawnmower fits is unchanged: 60 m, 8 m/s, lawnmower
    sim = _sim_config(scaled_config(120.0), "noisy", "a.tif", "a.bag")
    assert (sim.trajectory, sim.speed_mps, sim.altitude_m, sim.max_outside_m) == ("lawnmower", 8.0, 60.0, 0.0)


def test_a_narrow_area_gets_the_racetrack_at_the_fastest_speed_that_fits(tmp_path):
    # like zurich_b (441 x 207 m): the 60 m footprint leaves a band ~60 m wide, too narrow for U-turns at 8 m/s
    tif = _ortho(tmp_path, "narrow", 441.0, 207.0)
    cfg = choose_flight(tif, scaled_config(60.0))
    assert (cfg.trajectory, cfg.speed_mps, cfg.altitude_m) == ("racetrack", 6.0, 60.0)
    sim = _sim_config(cfg, "outage", str(tif), str(tmp_path / "o.bag"))
    assert (sim.trajectory, sim.speed_mps, sim.gps_outages) == ("racetrack", 6.0, ((20.0, 35.0),))
    # a wide area keeps the lawnmower at 8 m/s
    cfg = choose_flight(_ortho(tmp_path, "wide", 440.0, 300.0), scaled_config(60.0))
    assert (cfg.trajectory, cfg.speed_mps) == ("lawnmower", 8.0)
    # a speed given is kept: at 5 m/s the lawnmower's U-turns fit the band
    cfg = choose_flight(tif, scaled_config(60.0, speed_mps=5.0))
    assert (cfg.trajectory, cfg.speed_mps) == ("lawnmower", 5.0)
    cfg = choose_flight(tif, scaled_config(60.0, trajectory="racetrack", speed_mps=5.0))
    assert (cfg.trajectory, cfg.speed_mps) == ("racetrack", 5.0)


def test_no_flight_fits_lists_every_refusal(tmp_path):
    tif = _ortho(tmp_path, "tiny", 150.0, 150.0)
    with pytest.raises(SimulationError, match="no flight fits") as exc:
        choose_flight(tif, scaled_config(30.0))
    msg = str(exc.value)
    for line in ("lawnmower at 8 m/s: ", "racetrack at 8 m/s: ", "racetrack at 4 m/s: ", "--trajectory waypoints"):
        assert line in msg
    with pytest.raises(SimulationError, match="trajectory must be one of auto, lawnmower"):
        choose_flight(tif, ScenarioConfig(trajectory="spiral"))


def test_rows_show_the_flight():
    row = {"area": "zurich_b", "trajectory": "racetrack", "speed_mps": 6.0, "scenario": "noisy", "median_m": 1.0,
           "p95_m": 2.0, "max_m": 3.0, "gps_median_m": 5.0, "gps_p95_m": 9.0, "total_ms_median": 30.0}
    assert "zurich_b" in format_row(row) and "racetrack 6 m/s" in format_row(row)
    row.update(scenario="no_gps", ok_over_10m=2, frames_to_first_fix=3, frames_to_converge=40)
    assert format_row(row).endswith("OK >10 m off: 2 | within 6 m from frame 3, stays from 40")


def _cli(argv):
    parser = argparse.ArgumentParser(prog="runtime")
    register(parser.add_subparsers(dest="command", required=True))
    return parser, run_handler(parser.parse_args(argv))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--trajectory", "waypoints"], "--trajectory waypoints needs a route: --waypoints FILE"),
        (["--speed", "0"], "--speed must be a ground speed > 0 m/s, got 0"),
        (["--trajectory", "racetrack", "--waypoints", "r.csv"], "--waypoints is the route of --trajectory waypoints"),
    ],
)
def test_cli_option_errors(argv, message, capsys, tmp_path):
    _, code = _cli(["scenarios", str(tmp_path / "a.tif"), "--out", str(tmp_path / "s")] + argv)
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_cli_options_and_help(capsys):
    parser = argparse.ArgumentParser(prog="runtime")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["scenarios", "a.tif", "--trajectory", "racetrack", "--speed", "5", "--max-outside", "2"])
    assert (args.trajectory, args.speed, args.max_outside, args.waypoints) == ("racetrack", 5.0, 2.0, None)
    args = parser.parse_args(["scenarios", "a.tif"])
    assert (args.trajectory, args.speed, args.max_outside) == ("auto", None, 0.0)
    with pytest.raises(SystemExit):
        parser.parse_args(["scenarios", "a.tif", "--trajectory", "spiral"])
    with pytest.raises(SystemExit):
        parser.parse_args(["scenarios", "--help"])
    out = capsys.readouterr().out
    assert all(w in out for w in ("--trajectory", "--waypoints FILE", "--speed M/S", "racetrack"))


def test_held_out_areas_get_the_flight_that_fits(shared_data):
    pytest.importorskip("rasterio")
    cfg = scaled_config(120.0)
    a = choose_flight(shared_data("ortho/swissimage_zurich_a_0.5m.tif"), cfg)
    b = choose_flight(shared_data("ortho/swissimage_zurich_b_0.5m.tif"), cfg)
    assert (a.trajectory, a.speed_mps) == ("lawnmower", 8.0)
    assert (b.trajectory, b.speed_mps) == ("racetrack", 6.0)


def test_trajectory_choices_are_the_simulators_plus_auto():
    from runtime.tools.scenarios import TRAJECTORY_CHOICES
    from runtime.sim.trajectory import TRAJECTORIES

    assert set(TRAJECTORY_CHOICES) == {"auto"} | set(TRAJECTORIES)


def test_localizer_settings_from_the_command_line():
    from runtime.localizer import LocalizerError
    from runtime.tools.scenarios import localizer_settings
    from runtime.tracking import TrackingError

    assert localizer_settings(["align_min_score=0.4", "tracker.n_particles=2000", "tracker.seed=3"], "softmax") == {
        "align_min_score": 0.4, "tracker": {"n_particles": 2000, "seed": 3}, "likelihood": "softmax"}
    assert localizer_settings([]) == {}
    with pytest.raises(LocalizerError, match="--set expects KEY=VALUE"):
        localizer_settings(["align_min_score"])
    with pytest.raises(LocalizerError, match=r"unknown localizer keys \['nope'\]"):
        localizer_settings(["nope=1"])
    with pytest.raises(TrackingError, match=r"unknown tracker config keys \['nope'\]"):
        localizer_settings(["tracker.nope=1"])
    with pytest.raises(LocalizerError, match="align_min_score must be an NCC in"):
        localizer_settings(["align_min_score=3"])
