"""``runtime scenarios``: the accuracy protocol of the onboard loop, end to end, as a table and JSON.

For each orthophoto (held-out areas: ones the encoder did not train on) a map is built with the encoder, and for
each scenario a flight is simulated over it (:mod:`runtime.sim`, 60 m, camera 5 Hz, GPS 5 Hz with sigma 5 m and a
3 m bias; by default a lawnmower at 8 m/s, or where the area is too narrow for it a racetrack at the fastest of 8, 6,
5, 4 m/s that fits: the flight used is printed and recorded in the JSON), replayed through the loop
(:class:`runtime.localizer.Localizer`; ``--no-imu`` drops the IMU, ``--likelihood`` and ``--set KEY=VALUE`` change its
settings) and evaluated against the ground truth (:mod:`runtime.tools.evaluation`):

=========  =============================================================  ==========================================
scenario   GPS                                                            reported (targets of the onboard issue)
=========  =============================================================  ==========================================
noisy      sigma 5 m, bias 3 m throughout                                 median (<= 2 m), p95 (<= 6 m) vs GPS alone
outage     as noisy, no fix for 30 s from ``outage_start_s``              p95 inside the outage (<= 8 m)
spoof      as noisy, fixes 200 m off for 5 s from ``spoof_start_s``       delay until rejected (<= 2 s), max error
                                                                           during the spoof (<= 6 m)
no_gps     none at all (height given as the flight height)                frames until the error stays <= 6 m (<= 20),
                                                                           and until it is first within 6 m
=========  =============================================================  ==========================================

Every row also counts the estimates that said OK while more than 10 m off (integrity: ``ok_over_10m``).

Nothing here is a test: it measures. The tests run a short version of it.

Narrow areas: ``--trajectory waypoints --waypoints FILE`` flies the user's route (e.g. a straight line down a strip
of imagery), checked frame by frame against the exact camera footprint; ``--max-outside M`` lets up to M metres of
a frame's footprint fall on nodata (rendered as nodata, reported as the invalid pixel fraction). For example the
held-out strip (swissimage_strip_0.5m: ~87.5 m of valid imagery across, the level footprint at 60 m is 85 m across
track) is flown down its southern part, away from zurich_a, along the band's centre line
(``--waypoints docs/routes/swissimage_strip_south.csv``) with ``--max-outside 5``: the 1 degree rms attitude wobble
swings the footprint's edge up to ~5 m onto nodata (0.6 % of the pixels).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

SCENARIOS = ("noisy", "outage", "spoof", "no_gps")
TRAJECTORY_CHOICES = ("auto", "lawnmower", "racetrack", "random", "waypoints")
DEFAULT_SPEED_MPS = 8.0
FALLBACK_SPEEDS_MPS = (8.0, 6.0, 5.0, 4.0)  # tried in order (fastest first) when no speed is given


@dataclass(frozen=True)
class ScenarioConfig:
    """Flight and GPS settings shared by the scenarios (seconds, metres).

    ``trajectory``: ``auto`` (a lawnmower at ``speed_mps`` or 8 m/s; where it is refused, a racetrack at ``speed_mps``
    or the fastest of 8, 6, 5, 4 m/s that fits) or one of the simulator's trajectories (without ``speed_mps``, the
    fastest of those speeds that fits). ``waypoints``: the route file of ``trajectory="waypoints"``.
    ``max_outside_m``: how far a frame's footprint may reach onto nodata (see :class:`runtime.sim.config.SimConfig`).
    ``localizer``: :class:`runtime.localizer.LocalizerConfig` settings for the replays. ``imu``: replay with the
    flight's IMU (False: heading from the images, level camera assumed).
    """

    duration_s: float = 120.0
    altitude_m: float = 60.0
    speed_mps: float | None = None
    trajectory: str = "auto"
    waypoints: str | None = None
    max_outside_m: float = 0.0
    gps_sigma_m: float = 5.0
    gps_bias_m: float = 3.0
    outage_start_s: float = 40.0
    outage_s: float = 30.0
    spoof_start_s: float = 80.0
    spoof_s: float = 5.0
    spoof_m: float = 200.0
    seed: int = 1
    localizer: dict = field(default_factory=dict)
    imu: bool = True


def scaled_config(duration_s: float, **kwargs) -> ScenarioConfig:
    """The default scenarios for a flight of ``duration_s``: outage from 1/3 of it (30 s, at most a quarter of the
    flight), spoof from 2/3 of it."""
    d = float(duration_s)
    return replace(ScenarioConfig(), duration_s=d, outage_start_s=d / 3.0, outage_s=min(30.0, d / 4.0),
                   spoof_start_s=2.0 * d / 3.0, **kwargs)


def _flight_config(cfg: ScenarioConfig, ortho: str, out: str, trajectory: str, speed_mps: float, **gps):
    from ..sim.config import SimConfig

    return SimConfig(ortho=ortho, out=out, duration_s=cfg.duration_s, altitude_m=cfg.altitude_m,
                     speed_mps=speed_mps, trajectory=trajectory, waypoints=cfg.waypoints,
                     max_outside_m=cfg.max_outside_m, gps_sigma_m=cfg.gps_sigma_m, gps_bias_m=cfg.gps_bias_m,
                     seed=cfg.seed, **gps)


def flight_candidates(cfg: ScenarioConfig) -> list[tuple[str, float]]:
    """(trajectory, speed m/s) to try in order for ``cfg`` (see :class:`ScenarioConfig`)."""
    speeds = (float(cfg.speed_mps),) if cfg.speed_mps is not None else FALLBACK_SPEEDS_MPS
    if cfg.trajectory == "auto":
        first = float(cfg.speed_mps) if cfg.speed_mps is not None else DEFAULT_SPEED_MPS
        return [("lawnmower", first)] + [("racetrack", v) for v in speeds]
    return [(cfg.trajectory, v) for v in speeds]


def choose_flight(ortho_path, cfg: ScenarioConfig, ortho=None) -> ScenarioConfig:
    """``cfg`` with the trajectory and speed that fit ``ortho_path``: the first of :func:`flight_candidates` whose
    flight the simulator can plan (camera footprint on valid imagery). ``ortho``: the loaded orthophoto, if at hand.

    Raises:
        SimulationError: none fits; the message lists why each was refused.
    """
    from calibration.camera_io import default_camera
    from calibration.geometry import NADIR_MOUNT
    from maps.geotiff import load_orthophoto

    from ..errors import SimulationError
    from ..sim.flight import plan_flight

    if cfg.trajectory not in TRAJECTORY_CHOICES:
        raise SimulationError(f"trajectory must be one of {', '.join(TRAJECTORY_CHOICES)}, got {cfg.trajectory!r}")
    if ortho is None:
        ortho = load_orthophoto(ortho_path)
    camera = default_camera()
    refused = []
    for trajectory, speed in flight_candidates(cfg):
        sim = _flight_config(cfg, str(ortho_path), "plan.bag", trajectory, speed)
        try:
            plan_flight(sim, ortho, camera, NADIR_MOUNT)
        except SimulationError as exc:
            refused.append(f"{trajectory} at {speed:g} m/s: {exc}")
            continue
        return replace(cfg, trajectory=trajectory, speed_mps=speed)
    raise SimulationError(
        f"no flight fits {ortho_path} at {cfg.altitude_m:g} m:\n  " + "\n  ".join(refused)
        + "\ngive a route that fits (--trajectory waypoints --waypoints FILE), a lower --speed, or another area"
    )


def _sim_config(cfg: ScenarioConfig, scenario: str, ortho: str, out: str):

    outages: tuple = ()
    spoofs: tuple = ()
    if scenario == "outage":
        outages = ((cfg.outage_start_s, cfg.outage_start_s + cfg.outage_s),)
    elif scenario == "spoof":
        spoofs = ((cfg.spoof_start_s, cfg.spoof_start_s + cfg.spoof_s, cfg.spoof_m),)
    elif scenario == "no_gps":
        outages = ((0.0, cfg.duration_s + 1.0),)
    trajectory = "lawnmower" if cfg.trajectory == "auto" else cfg.trajectory
    speed = DEFAULT_SPEED_MPS if cfg.speed_mps is None else float(cfg.speed_mps)
    return _flight_config(cfg, ortho, out, trajectory, speed, gps_outages=outages, gps_spoofs=spoofs)


def replay(package, encoder, bag_path, out_jsonl, *, localizer: dict | None = None, imu: bool = True):
    """Run the loop over a bag (without its IMU when ``imu`` is False); returns (records, Localizer). Writes
    ``out_jsonl``."""
    from ..bags import BagReader
    from ..localizer import Localizer, LocalizerConfig
    from ..outputs import TrackWriter
    from ..feed import ROLES, run_events

    loop = Localizer(package, encoder, config=LocalizerConfig.from_dict(dict(localizer or {})))
    with BagReader(bag_path) as bag, TrackWriter(out_jsonl, overwrite=True) as w:
        records = run_events(loop, bag.events(roles=[r for r in ROLES if imu or r != "imu"]), w)
    return records, loop


def run_scenario(scenario: str, ortho_path, package, encoder, out_dir, cfg: ScenarioConfig) -> dict:
    """Simulate, replay and evaluate one scenario; returns a JSON-ready dict of the measured numbers (with the
    ``trajectory`` and ``speed_mps`` flown: ``cfg`` is resolved by :func:`choose_flight` unless it names both)."""
    from .evaluation import evaluate_track
    from ..sim.flight import simulate

    if scenario not in SCENARIOS:
        from ..localizer import LocalizerError

        raise LocalizerError(f"unknown scenario {scenario!r}; expected one of {SCENARIOS}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bag = out / f"{scenario}.bag"
    if cfg.trajectory == "auto" or cfg.speed_mps is None:
        cfg = choose_flight(ortho_path, cfg)
    t0 = time.perf_counter()
    simulate(_sim_config(cfg, scenario, str(ortho_path), str(bag)))
    t_sim = time.perf_counter() - t0
    loc = dict(cfg.localizer)
    if scenario == "no_gps":
        loc.setdefault("height_m", cfg.altitude_m)
    records, loop = replay(package, encoder, bag, out / f"{scenario}.jsonl", localizer=loc, imu=cfg.imu)
    t_replay = time.perf_counter() - t0 - t_sim
    res = evaluate_track(records, bag)
    est, gps = res.estimate, res.gps
    row = {"scenario": scenario, "trajectory": cfg.trajectory, "speed_mps": float(cfg.speed_mps),
           "frames": loop.counts["frames"], "visual_fixes": loop.counts["frames_used"],
           "median_m": est["all"].median_m, "p95_m": est["all"].p95_m, "max_m": est["all"].max_m,
           "gps_median_m": gps["all"].median_m, "gps_p95_m": gps["all"].p95_m,
           "sim_s": round(t_sim, 1), "replay_s": round(t_replay, 1),
           "total_ms_median": float(np.median([r.latency_ms["total"] for r in records if r.latency_ms["total"] > 0]
                                              or [math.nan]))}
    t_ns = np.array([r.t_ns for r in records], np.int64)
    start_ns = int(t_ns[0]) if len(t_ns) else 0
    # integrity: estimates that said OK while more than 10 m off
    status = {r.t_ns: r.status for r in records}
    row["ok_over_10m"] = int(sum(1 for t, e in zip(res.series.t_ns, res.series.err_m)
                                 if status.get(int(t)) == "OK" and np.isfinite(e) and e > 10.0))
    if scenario == "outage":
        row["outage_p95_m"] = est["outage"].p95_m
        row["outage_median_m"] = est["outage"].median_m
        row["outage_max_m"] = est["outage"].max_m
    if scenario == "spoof":
        row["spoof_max_m"] = est["spoof"].max_m
        row["spoof_median_m"] = est["spoof"].median_m
        s_ns = res.series.t_ns
        spoof_t = [int(t) for t, p in zip(s_ns, res.series.phase) if p == "spoof"]
        first_spoof = min(spoof_t) if spoof_t else None
        rejected = [r.t_ns for r in records if r.gps == "rejected" and first_spoof is not None
                    and r.t_ns >= first_spoof - int(0.5e9)]
        row["spoof_rejected_after_s"] = ((rejected[0] - first_spoof) / 1e9 if rejected and first_spoof else None)
        # error during the spoof and the 5 s after it (the filter must not follow the jump)
        if first_spoof is not None:
            win = (s_ns >= first_spoof) & (s_ns <= first_spoof + int((cfg.spoof_s + 5.0) * 1e9))
            row["spoof_window_max_m"] = float(np.nanmax(res.series.err_m[win])) if win.any() else None
    if scenario == "no_gps":
        err = res.series.err_m
        ok = np.isfinite(err) & (err <= 6.0)
        bad = np.flatnonzero(~ok)
        first_good = int(bad[-1] + 1) if len(bad) else 0
        good = np.flatnonzero(ok)
        row["frames_to_first_fix"] = int(good[0]) + 1 if len(good) else None  # first within 6 m
        row["frames_to_converge"] = first_good + 1 if first_good < len(err) else None
        row["converged_s"] = (float((res.series.t_ns[first_good] - start_ns) / 1e9) if first_good < len(err)
                              else None)
    row["eval"] = res.to_dict()
    return row


def build_area_map(ortho, encoder, map_dir):
    """Build (replacing) the map of ``ortho`` (a path, or a loaded :class:`maps.ortho.Orthophoto`) with ``encoder``
    into ``map_dir`` and load it; returns the :class:`maps.package.MapPackage`."""
    from maps.build import build_map
    from maps.geotiff import load_orthophoto
    from maps.package import MapPackage

    if isinstance(ortho, (str, Path)):
        ortho = load_orthophoto(ortho)
    return MapPackage.load(build_map(ortho, encoder, encoder.contract, Path(map_dir), overwrite=True))


def run_all(orthos, model, out_dir, cfg: ScenarioConfig, scenarios=SCENARIOS, *, progress=None) -> list[dict]:
    """Build a map per orthophoto with ``model`` and run every scenario over it."""
    from maps.geotiff import load_orthophoto

    from ..encoder import load_encoder

    encoder = load_encoder(model)
    rows = []
    for path in orthos:
        name = Path(path).stem if Path(path).is_file() else Path(path).name
        area = Path(out_dir) / name
        ortho = load_orthophoto(path)
        flight = choose_flight(path, cfg, ortho)
        if progress:
            progress(f"{name}: flying a {flight.trajectory} at {flight.speed_mps:g} m/s, {flight.altitude_m:g} m")
        package = build_area_map(ortho, encoder, area / "map")
        for sc in scenarios:
            if progress:
                progress(f"{name}: {sc}")
            row = run_scenario(sc, path, package, encoder, area, flight)
            row["area"] = name
            row["model"] = encoder.name
            row["imu"] = cfg.imu
            row["localizer"] = dict(cfg.localizer)
            rows.append(row)
            if progress:
                progress(format_row(row))
    return rows


def _f(v, nd=1) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{nd}f}"


def format_row(r: dict) -> str:
    extra = {"outage": f"outage p95 {_f(r.get('outage_p95_m'))} m",
             "spoof": f"rejected after {_f(r.get('spoof_rejected_after_s'))} s, max in spoof+5 s "
                      f"{_f(r.get('spoof_window_max_m'))} m",
             "no_gps": f"within 6 m from frame {r.get('frames_to_first_fix') or '-'}, stays from "
                       f"{r.get('frames_to_converge') or '-'}"}.get(r["scenario"], "")
    flight = f"{r.get('trajectory', '?')} {r.get('speed_mps', math.nan):g} m/s"
    return (f"{r['area']:28s} {flight:17s} {r['scenario']:7s} median {_f(r['median_m'], 2):>6s} p95 {_f(r['p95_m'], 2):>6s} "
            f"max {_f(r['max_m']):>6s} | GPS median {_f(r['gps_median_m']):>5s} p95 {_f(r['gps_p95_m']):>6s} | "
            f"{r['total_ms_median']:.1f} ms/frame | OK >10 m off: {r.get('ok_over_10m', '-')} | {extra}")


def register(subparsers) -> None:
    p = subparsers.add_parser("scenarios", help="accuracy protocol: simulated flights with noisy GPS, outage, spoof "
                              "and no GPS over held-out orthophotos (table + JSON)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ortho", nargs="+", metavar="ORTHO", help="held-out orthophoto GeoTIFF(s)")
    p.add_argument("--model", default="default", help="encoder (default: the shipped default model)")
    p.add_argument("--out", default="scenarios", metavar="DIR", help="output folder (default ./scenarios)")
    p.add_argument("--only", nargs="*", choices=SCENARIOS, default=list(SCENARIOS), help="scenarios to run")
    p.add_argument("--duration", type=float, default=120.0, help="flight duration, seconds (default 120)")
    p.add_argument("--seed", type=int, default=1, help="simulation seed (default 1)")
    p.add_argument("--trajectory", choices=TRAJECTORY_CHOICES, default="auto",
                   help="flight path (default auto: a lawnmower, or a racetrack where the lawnmower does not fit)")
    p.add_argument("--waypoints", metavar="FILE", default=None,
                   help="route for --trajectory waypoints (CSV 'lat,lon' or header 'x,y' local metres, or YAML/JSON)")
    p.add_argument("--speed", type=float, metavar="M/S", default=None,
                   help="ground speed (default: 8, or the fastest of 8, 6, 5, 4 m/s that fits the area)")
    p.add_argument("--max-outside", type=float, metavar="M", default=0.0,
                   help="metres of a frame's footprint allowed on nodata, rendered as nodata (default 0)")
    p.add_argument("--likelihood", default=None, metavar="FILE.json",
                   help="visual likelihood: 'default', 'softmax' (uncalibrated) or a `runtime likelihood fit` file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a localizer setting for every replay (YAML value; tracker.KEY for the tracker), repeatable")
    p.add_argument("--no-imu", action="store_true", help="replay without the IMU (heading from the images)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the rows as JSON")
    p.set_defaults(handler=_run)


def localizer_settings(pairs, likelihood: str | None = None) -> dict:
    """``KEY=VALUE`` strings (values parsed as YAML; ``tracker.KEY`` for tracker fields) -> a localizer mapping,
    checked by :meth:`LocalizerConfig.from_dict` (unknown keys name the known ones)."""
    import yaml

    from ..localizer import LocalizerConfig, LocalizerError

    out: dict = {}
    for item in pairs:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise LocalizerError(f"--set expects KEY=VALUE (e.g. align_min_score=0.4 or tracker.n_particles=2000), "
                                 f"got {item!r}")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise LocalizerError(f"--set {item!r}: the value is not valid YAML: {exc}") from None
        if key.startswith("tracker."):
            out.setdefault("tracker", {})[key[len("tracker."):]] = value
        else:
            out[key] = value
    if likelihood is not None:
        out["likelihood"] = likelihood
    LocalizerConfig.from_dict(out)
    from ..tracking import TrackerConfig

    TrackerConfig.from_dict(dict(out.get("tracker", {})))
    return out


def _run(args: argparse.Namespace) -> int:
    from ..errors import SimulationError

    if args.waypoints and args.trajectory == "auto":
        args.trajectory = "waypoints"
    if args.trajectory == "waypoints" and not args.waypoints:
        raise SimulationError("--trajectory waypoints needs a route: --waypoints FILE")
    if args.waypoints and args.trajectory != "waypoints":
        raise SimulationError(f"--waypoints is the route of --trajectory waypoints, not of {args.trajectory}; "
                              "drop one of them")
    if args.speed is not None and not (math.isfinite(args.speed) and args.speed > 0):
        raise SimulationError(f"--speed must be a ground speed > 0 m/s, got {args.speed:g}")
    cfg = scaled_config(args.duration, seed=args.seed, trajectory=args.trajectory, waypoints=args.waypoints,
                        speed_mps=args.speed, max_outside_m=args.max_outside,
                        localizer=localizer_settings(args.set, args.likelihood), imu=not args.no_imu)
    rows = run_all(args.ortho, args.model, args.out, cfg, args.only,
                   progress=lambda s: print(s, file=sys.stderr, flush=True))
    print("\n".join(format_row(r) for r in rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0
