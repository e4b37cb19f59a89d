"""``runtime matrix``: the scenario matrix. Each row is a simulated flight, a map variant and loop options, replayed
through the onboard loop and measured against the product rules (:mod:`runtime.tools.integrity`); rows that break
a rule are flagged.

Families
--------
=========  ==========================================================================================================
gps        noisy (sigma 5 m, bias 3 m), correlated noise (tau 30 s), outage (30 s, at most a quarter of the flight),
           jump spoofs of 200 m and 50 m, drags of 0.2 / 0.5 / 1 m/s, no GPS at all, no GPS velocity; and the faults
           combined with the worst IMU cases (``+imu.none``: replayed without the IMU; ``+imu.accel_bias``)
imu        with the outage (dead reckoning is where the IMU matters): none (replayed without it), at frame rate only,
           accelerometer bias 0.1 m/s^2, scale error 2 %, accelerometer not seeing the attitude wobble, NED/FRD
           frame, 50 ms time offset
camera     randomised draws (:func:`runtime.sim.randomize.draw_flight`: camera, height, speed, vehicle, path; seeds
           1-3), fixed wing (15 m/s, 40 m), ground vehicle (level body, camera 30 m up, 5 m/s), fast (16 m/s, turns
           at 5 m/s^2, 40 m), photo survey (camera at 0.17 Hz)
imagery    the map built from a satellite-like copy of the orthophoto (:func:`runtime.sim.imagery.resample_ortho`):
           0.5 and 1 m/px in EPSG:3857 and EPSG:4326; the camera still sees the orthophoto
=========  ==========================================================================================================

``short``: a handful of rows over one area (the first ORTHO), 60 s flights, for the test suite; ``full``: every row
over every ORTHO (the held-out areas), 120 s flights. One map per (area, imagery variant) per run, built with the
encoder (:func:`runtime.tools.scenarios.build_area_map`) and reused by every row that needs it. The flight of each area
is the one :func:`runtime.tools.scenarios.choose_flight` picks (the held-out strip flies its route,
``docs/routes/swissimage_strip_south.csv``); rows that change the speed, path or vehicle are re-planned.

Printed: one line per row (name, family, area; healthy median / p95 next to GPS alone's; outage p95; spoof rejection
delay; drag offset at detection; OK > 10 m count; slowest recovery; 95 % ellipse coverage; broken rules), then the
ellipse coverage per family (rule R2b). ``--json``: everything. Rows whose simulator options are not available are
reported as skipped with the reason. Nothing here asserts: it measures and flags.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

MATRICES = ("short", "full")
FAMILIES = ("gps", "imu", "camera", "imagery")
SHORT_DURATION_S = 60.0
FULL_DURATION_S = 120.0
REPO = Path(__file__).resolve().parents[2]
#: per-area flight settings (areas the default flights do not fit), by the area's name
AREA_FLIGHTS = {
    "swissimage_strip_0.5m": {"trajectory": "waypoints", "max_outside_m": 5.0,
                              "waypoints": str(REPO / "docs" / "routes" / "swissimage_strip_south.csv")},
}
#: SimConfig fields whose change needs the flight re-planned
PLAN_KEYS = ("trajectory", "speed_mps", "max_accel_mps2", "altitude_m", "vehicle", "camera", "waypoints")


# ============================================================================================== definitions
@dataclass(frozen=True)
class Imagery:
    """A map variant: the orthophoto as is (``gsd_m`` None) or resampled to ``gsd_m`` m/px in ``crs``."""

    name: str
    gsd_m: float | None = None
    crs: str | None = None


IMAGERY = {i.name: i for i in (Imagery("ortho"), Imagery("sat_0.5m_3857", 0.5, "EPSG:3857"),
                               Imagery("sat_1m_3857", 1.0, "EPSG:3857"), Imagery("sat_0.5m_4326", 0.5, "EPSG:4326"),
                               Imagery("sat_1m_4326", 1.0, "EPSG:4326"))}


@dataclass(frozen=True)
class Scenario:
    """One row of the matrix.

    Attributes:
        name: unique, ``family.case`` (e.g. ``gps.drag_0.5``, ``gps.outage+imu.none``).
        family: one of :data:`FAMILIES` (the rule R2b is judged per family).
        flight: :class:`runtime.sim.config.SimConfig` overrides on top of the area's flight (windows in seconds
            from the start).
        imagery: a key of :data:`IMAGERY` (the map variant).
        imu: replay with the IMU (False: without the ``imu`` role).
        localizer: :class:`runtime.localizer.LocalizerConfig` settings.
        draw_seed: draw the flight with :func:`runtime.sim.randomize.draw_flight` (this seed), ``flight`` on top.
    """

    name: str
    family: str
    flight: dict = field(default_factory=dict)
    imagery: str = "ortho"
    imu: bool = True
    localizer: dict = field(default_factory=dict)
    draw_seed: int | None = None

    def missing(self) -> tuple[str, ...]:
        """What this row needs that the installed simulator lacks (SimConfig fields, modules); () when none."""
        from runtime.sim.config import SimConfig

        out = sorted(k for k in self.flight if k not in SimConfig.keys())
        for need, module in ((self.draw_seed is not None, "runtime.sim.randomize"),
                             (self.imagery != "ortho", "runtime.sim.imagery")):
            if need and not _importable(module):
                out.append(module)
        return tuple(out)


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def _windows(d: float) -> dict:
    """Fault windows for a flight of ``d`` seconds (START:END strings, seconds from the start)."""
    o0, o1 = d / 3.0, d / 3.0 + min(30.0, d / 4.0)
    s0 = 2.0 * d / 3.0
    g0, g1 = d / 4.0, d / 4.0 + min(40.0, d / 2.0)
    return {"outage": f"{o0:g}:{o1:g}", "spoof": f"{s0:g}:{s0 + 5:g}", "drag": f"{g0:g}:{g1:g}", "none": f"0:{d + 1:g}"}


def matrix(kind: str = "full", duration_s: float | None = None) -> tuple[Scenario, ...]:
    """The scenarios of the ``short`` or ``full`` matrix for flights of ``duration_s`` (default 60 s / 120 s).

    Raises:
        SimulationError: an unknown kind or a duration under 20 s.
    """
    from runtime.errors import SimulationError

    if kind not in MATRICES:
        raise SimulationError(f"matrix must be one of {', '.join(MATRICES)}, got {kind!r}")
    d = float(duration_s if duration_s is not None else (SHORT_DURATION_S if kind == "short" else FULL_DURATION_S))
    if not (math.isfinite(d) and d >= 20.0):
        raise SimulationError(f"matrix flights must last at least 20 s, got {d:g}")
    w = _windows(d)
    outage = {"gps_outages": (w["outage"],)}
    no_gps = {"gps_outages": (w["none"],)}

    def drag(v):
        return {"gps_drags": (f"{w['drag']}:{v:g}",)}

    def spoof(m):
        return {"gps_spoofs": (f"{w['spoof']}:{m:g}",)}

    gps = [Scenario("gps.noisy", "gps"), Scenario("gps.correlated", "gps", {"gps_noise_tau_s": 30.0}),
           Scenario("gps.outage", "gps", outage), Scenario("gps.spoof_200m", "gps", spoof(200)),
           Scenario("gps.spoof_50m", "gps", spoof(50)), Scenario("gps.drag_0.2", "gps", drag(0.2)),
           Scenario("gps.drag_0.5", "gps", drag(0.5)), Scenario("gps.drag_1", "gps", drag(1.0)),
           Scenario("gps.none", "gps", no_gps), Scenario("gps.no_velocity", "gps", {"gps_velocity": False})]
    bias = {"imu_accel_bias_mps2": 0.1}
    gps += [Scenario("gps.outage+imu.none", "gps", outage, imu=False),
            Scenario("gps.outage+imu.accel_bias", "gps", {**outage, **bias}),
            Scenario("gps.spoof_200m+imu.none", "gps", spoof(200), imu=False),
            Scenario("gps.spoof_50m+imu.none", "gps", spoof(50), imu=False),
            Scenario("gps.drag_0.2+imu.none", "gps", drag(0.2), imu=False),
            Scenario("gps.drag_0.5+imu.none", "gps", drag(0.5), imu=False),
            Scenario("gps.drag_0.5+imu.accel_bias", "gps", {**drag(0.5), **bias}),
            Scenario("gps.none+imu.none", "gps", no_gps, imu=False),
            Scenario("gps.none+imu.accel_bias", "gps", {**no_gps, **bias}),
            Scenario("gps.no_velocity+imu.none", "gps", {"gps_velocity": False, **outage}, imu=False)]
    imu = [Scenario("imu.none", "imu", outage, imu=False),
           Scenario("imu.frame_rate", "imu", {**outage, "imu_rate_hz": 5.0}),
           Scenario("imu.accel_bias", "imu", {**outage, **bias}),
           Scenario("imu.scale_2pct", "imu", {**outage, "imu_accel_scale_error": 0.02}),
           Scenario("imu.no_attitude", "imu", {**outage, "imu_accel_sees_attitude": False}),
           Scenario("imu.ned_frd", "imu", {**outage, "imu_frame": "ned_frd"}),
           Scenario("imu.offset_50ms", "imu", {**outage, "imu_time_offset_s": 0.05})]
    camera = [Scenario(f"camera.draw_{s}", "camera", outage, draw_seed=s) for s in (1, 2, 3)]
    # fast and fixed wing at 40 m: at 60 m their banked footprints do not fit the ~440 x 300 m held-out areas
    camera += [Scenario("camera.fixed_wing", "camera", {**outage, "vehicle": "fixed_wing", "speed_mps": 15.0,
                                                         "max_accel_mps2": 3.0, "altitude_m": 40.0}),
               Scenario("camera.ground", "camera", {**outage, "vehicle": "ground", "speed_mps": 5.0,
                                                     "altitude_m": 30.0}),
               Scenario("camera.fast", "camera", {**outage, "speed_mps": 16.0, "max_accel_mps2": 5.0,
                                                   "altitude_m": 40.0}),
               Scenario("camera.survey", "camera", {**outage, "camera_rate_hz": 0.17})]
    imagery = [Scenario(f"imagery.{k}", "imagery", outage, imagery=k) for k in IMAGERY if k != "ortho"]
    rows = tuple(gps + imu + camera + imagery)
    if kind == "short":
        keep = ("gps.noisy", "gps.spoof_200m", "gps.drag_0.5", "gps.outage+imu.none", "gps.spoof_200m+imu.none",
                "imu.accel_bias", "imagery.sat_1m_3857")
        rows = tuple(r for r in rows if r.name in keep)
    return rows


def select(rows, pattern: str | None) -> tuple[Scenario, ...]:
    """The rows whose name matches one of the comma-separated shell patterns (``gps.*,imu.none``); all when None.

    Raises:
        SimulationError: nothing matches (the message lists the names).
    """
    from runtime.errors import SimulationError

    if not pattern:
        return tuple(rows)
    pats = [p.strip() for p in pattern.split(",") if p.strip()]
    out = tuple(r for r in rows if any(fnmatch.fnmatchcase(r.name, p) or r.family == p for p in pats))
    if not out:
        raise SimulationError(f"--rows {pattern!r} matches no row; rows: {', '.join(r.name for r in rows)}")
    return out


# ============================================================================================== flights
@dataclass(frozen=True)
class Area:
    """A held-out area: ``name`` (file stem or folder name), ``path`` (GeoTIFF or folder) and ``flight``, the
    SimConfig fields of its flight (trajectory, speed, ... as :func:`runtime.tools.scenarios.choose_flight` fits them)."""

    name: str
    path: str
    flight: dict


def area_name(path) -> str:
    p = Path(path)
    return p.stem if p.is_file() else p.name


def plan_area(path, duration_s: float, *, seed: int = 1, ortho=None) -> Area:
    """The area's base flight: :data:`AREA_FLIGHTS` settings where it has some, else the flight
    :func:`runtime.tools.scenarios.choose_flight` fits (60 m, GPS sigma 5 m, bias 3 m).

    Raises:
        SimulationError: no flight fits.
    """
    from runtime.tools.scenarios import ScenarioConfig, choose_flight

    name = area_name(path)
    extra = dict(AREA_FLIGHTS.get(name, {}))
    cfg = ScenarioConfig(duration_s=float(duration_s), seed=seed, trajectory=extra.get("trajectory", "auto"),
                         waypoints=extra.get("waypoints"), max_outside_m=extra.get("max_outside_m", 0.0))
    cfg = choose_flight(path, cfg, ortho)
    flight = {"duration_s": cfg.duration_s, "altitude_m": cfg.altitude_m, "speed_mps": float(cfg.speed_mps),
              "trajectory": cfg.trajectory, "waypoints": cfg.waypoints, "max_outside_m": cfg.max_outside_m,
              "gps_sigma_m": cfg.gps_sigma_m, "gps_bias_m": cfg.gps_bias_m, "seed": cfg.seed}
    return Area(name, str(path), flight)


def _plans(sim, ortho) -> str:
    """'' when the simulator can plan ``sim`` over ``ortho``, else the reason."""
    from calibration.camera_io import default_camera, load_camera
    from calibration.geometry import NADIR_MOUNT, load_mount

    from runtime.errors import SimulationError
    from runtime.sim.flight import plan_flight

    try:
        plan_flight(sim, ortho, load_camera(sim.camera) if sim.camera else default_camera(),
                    load_mount(sim.mount) if sim.mount else NADIR_MOUNT)
    except SimulationError as exc:
        return str(exc)
    return ""


def resolve(scenario: Scenario, area: Area, out, workdir, *, ortho=None):
    """The :class:`runtime.sim.config.SimConfig` of ``scenario`` over ``area``, writing the bag ``out``.

    A drawn row comes from :func:`runtime.sim.randomize.draw_flight` (the area's duration, GPS and route, and the
    row's overrides, win over the draw). A row that changes the path, speed or vehicle is re-planned: its trajectory,
    else a racetrack, else random legs at its speed.

    Args:
        ortho: the area's loaded orthophoto (loaded here when a re-plan needs it and it is None).
    Raises:
        SimulationError: the row needs what the simulator lacks (:meth:`Scenario.missing`), a bad override, or no
            flight fits.
    """
    from runtime.errors import SimulationError
    from runtime.sim.config import SimConfig

    missing = scenario.missing()
    if missing:
        raise SimulationError(f"{scenario.name} needs {', '.join(missing)}, which this simulator does not have yet")
    base = {**area.flight, "ortho": area.path, "out": str(out)}
    if scenario.draw_seed is not None:
        from runtime.sim.randomize import draw_flight

        fixed = {k: area.flight[k] for k in ("duration_s", "gps_sigma_m", "gps_bias_m")}
        if area.flight["trajectory"] == "waypoints":
            fixed.update({k: area.flight[k] for k in ("trajectory", "waypoints", "max_outside_m")})
        from calibration.errors import CalibrationError

        try:
            return draw_flight(scenario.draw_seed, ortho=area.path, out=str(out), workdir=str(workdir),
                               **{**fixed, **scenario.flight})
        except CalibrationError as exc:  # a drawn camera the geometry cannot use
            raise SimulationError(f"draw_flight(seed={scenario.draw_seed}) over {area.name} failed: "
                                  f"{type(exc).__name__}: {exc}") from exc
    sim = SimConfig.from_dict({**base, **scenario.flight}, source=f"scenario {scenario.name}")
    if not any(k in scenario.flight for k in PLAN_KEYS):
        return sim
    if ortho is None:
        from maps.geotiff import load_orthophoto

        ortho = load_orthophoto(area.path)
    tries = [sim.trajectory] + [t for t in ("racetrack", "random") if t != sim.trajectory and
                                sim.trajectory != "waypoints"]
    refused = []
    for traj in tries:
        cand = replace(sim, trajectory=traj)
        why = _plans(cand, ortho)
        if not why:
            return cand
        refused.append(f"{traj}: {why}")
    raise SimulationError(f"{scenario.name}: no flight fits {area.name} at {sim.speed_mps:g} m/s: "
                          + "; ".join(refused))


# ============================================================================================== maps
class MapCache:
    """One map per (area, imagery variant) per run, built on first use under ``out_dir/maps`` with ``encoder``."""

    def __init__(self, encoder, out_dir) -> None:
        self.encoder = encoder
        self.root = Path(out_dir) / "maps"
        self._maps: dict = {}
        self.build_s: dict = {}

    def get(self, area: Area, imagery: str):
        """The :class:`maps.package.MapPackage` of ``area`` in the ``imagery`` variant (:data:`IMAGERY`)."""
        from runtime.tools.scenarios import build_area_map

        key = (area.name, imagery)
        if key not in self._maps:
            t0 = time.perf_counter()
            folder = self.root / f"{area.name}.{imagery}"
            folder.mkdir(parents=True, exist_ok=True)
            src = area.path
            var = IMAGERY[imagery]
            if var.gsd_m is not None:
                from runtime.sim.imagery import resample_ortho

                src = resample_ortho(area.path, folder / "imagery.tif", gsd_m=var.gsd_m, crs=var.crs)
            self._maps[key] = build_area_map(src, self.encoder, folder / "map")
            self.build_s[key] = round(time.perf_counter() - t0, 1)
        return self._maps[key]


# ============================================================================================== running
def _flight_summary(sim) -> dict:
    keys = ("duration_s", "altitude_m", "speed_mps", "trajectory", "vehicle", "camera_rate_hz", "imu_rate_hz", "seed",
            "camera", "gps_outages", "gps_spoofs", "gps_drags")
    d = sim.to_dict()
    return {k: d[k] for k in keys if k in d}


def run_row(scenario: Scenario, area: Area, maps: MapCache, out_dir, *, ortho=None, rules=None) -> dict:
    """Simulate, replay and measure one row; returns a JSON-ready dict (``status`` ok / skipped / error with the
    ``reason``; ``metrics`` = :meth:`IntegrityReport.to_dict`; ``flags`` = the broken rules)."""
    from calibration.errors import CalibrationError
    from maps.errors import MapError

    from runtime.errors import OnboardError, SimulationError
    from runtime.tools.scenarios import replay
    from runtime.sim.flight import simulate

    from .integrity import FlightWindows, Rules, integrity_of_bag

    row = {"name": scenario.name, "family": scenario.family, "area": area.name, "imagery": scenario.imagery,
           "imu": scenario.imu, "localizer": dict(scenario.localizer), "status": "ok", "reason": "", "flags": []}
    folder = Path(out_dir) / area.name / scenario.name
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        sim = resolve(scenario, area, folder / "flight.bag", folder, ortho=ortho)
    except SimulationError as exc:
        return {**row, "status": "skipped", "reason": str(exc)}
    row["flight"] = _flight_summary(sim)
    try:
        package = maps.get(area, scenario.imagery)
        t1 = time.perf_counter()
        simulate(sim)
        t2 = time.perf_counter()
        loc = dict(scenario.localizer)
        windows = FlightWindows.from_sim(sim)
        if any(a <= 0 and b >= sim.duration_s for a, b in windows.outages):
            loc.setdefault("height_m", sim.altitude_m)  # no GPS at all: the flight height is given
        records, loop = replay(package, maps.encoder, folder / "flight.bag", folder / "track.jsonl", localizer=loc,
                               imu=scenario.imu)
        t3 = time.perf_counter()
        report = integrity_of_bag(records, folder / "flight.bag", windows, rules or Rules())
    except (OnboardError, MapError, CalibrationError) as exc:
        return {**row, "status": "error", "reason": f"{type(exc).__name__}: {exc}"}
    row.update(metrics=report.to_dict(), flags=list(report.broken), frames=loop.counts["frames"],
               visual_fixes=loop.counts["frames_used"], sim_s=round(t2 - t1, 1), replay_s=round(t3 - t2, 1),
               row_s=round(time.perf_counter() - t0, 1))
    return row


def run_matrix(orthos, kind: str = "short", *, model: str = "default", out_dir="matrix", rows: str | None = None,
               duration_s: float | None = None, progress=None) -> dict:
    """Run the ``kind`` matrix (``short``: over the first of ``orthos`` only) with encoder ``model``.

    Returns:
        {"matrix", "model", "duration_s", "rows": [row dicts], "families": {family: FamilyCoverage dict},
        "maps": {"area.imagery": build seconds}}.
    Raises:
        SimulationError: a bad kind, pattern or duration, or an area no flight fits; MissingExtraError etc. from
        loading the encoder.
    """
    from maps.geotiff import load_orthophoto

    from runtime.encoder import load_encoder
    from runtime.errors import SimulationError

    from .integrity import family_coverage

    scenarios = select(matrix(kind, duration_s), rows)
    d = float(duration_s if duration_s is not None else (SHORT_DURATION_S if kind == "short" else FULL_DURATION_S))
    orthos = list(orthos)
    if not orthos:
        raise SimulationError("give at least one orthophoto (ORTHO): the held-out areas to fly over")
    if kind == "short":
        orthos = orthos[:1]
    encoder = load_encoder(model)
    maps = MapCache(encoder, out_dir)
    out_rows = []
    for path in orthos:
        ortho = load_orthophoto(path)
        try:
            area = plan_area(path, d, ortho=ortho)
        except SimulationError as exc:  # the area fits no base flight: its rows are skipped, the others run
            for sc in scenarios:
                out_rows.append({"name": sc.name, "family": sc.family, "area": area_name(path),
                                 "imagery": sc.imagery, "imu": sc.imu, "status": "skipped", "reason": str(exc),
                                 "flags": [], "model": encoder.name})
            if progress:
                progress(f"{area_name(path)}: skipped: {exc}")
            continue
        if progress:
            progress(f"{area.name}: {area.flight['trajectory']} at {area.flight['speed_mps']:g} m/s, "
                     f"{area.flight['altitude_m']:g} m, {d:g} s")
        for sc in scenarios:
            row = run_row(sc, area, maps, out_dir, ortho=ortho)
            row["model"] = encoder.name
            out_rows.append(row)
            if progress:
                progress(format_row(row))
    fams = family_coverage((r["family"], r["metrics"]["coverage_inside"], r["metrics"]["coverage_n"])
                           for r in out_rows if r["status"] == "ok")
    return {"matrix": kind, "model": encoder.name, "duration_s": d, "rows": out_rows,
            "families": {k: v.to_dict() for k, v in fams.items()},
            "maps": {f"{a}.{i}": s for (a, i), s in maps.build_s.items()}}


# ============================================================================================== table
def _f(v, nd: int = 1) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{nd}f}"


def _inf(v, nd: int = 1) -> str:
    """A number as :func:`_f` formats it; a string (e.g. 'never') as is."""
    return v if isinstance(v, str) else _f(v, nd)


HEADER = (f"{'scenario':30s} {'family':8s} {'area':24s} {'med':>5s} {'p95':>5s} | {'GPS med':>7s} {'p95':>5s} | "
          f"{'out95':>5s} {'spoof s':>7s} {'drag@det':>8s} {'OK>10':>5s} {'rec s':>5s} {'ell95':>5s} | flags")


def format_row(r: dict) -> str:
    """One table line of a row dict from :func:`run_row`."""
    head = f"{r['name']:30s} {r['family']:8s} {r['area']:24s}"
    if r.get("status") != "ok":
        return f"{head} {r.get('status', '?')}: {r.get('reason', '')}"
    m = r["metrics"]
    spoof = "never" if any(s["checked"] and s["rejected_after_s"] is None for s in m["spoofs"]) else \
        m["spoof_rejected_after_s"]
    drag = "never" if any(x["detected_after_s"] is None for x in m["drags"]) else m["drag_at_detection_m"]
    rec = "never" if any(x["measured"] and x["recovery_s"] is None for x in m["recoveries"]) else m["recovery_s"]
    h, g = m["healthy"], m["gps_healthy"]
    return (f"{head} {_f(h['median_m']):>5s} {_f(h['p95_m']):>5s} | {_f(g['median_m']):>7s} {_f(g['p95_m']):>5s} | "
            f"{_f(m['outage']['p95_m']):>5s} {_inf(spoof):>7s} {_inf(drag):>8s} {m['ok_over_limit']:>5d} "
            f"{_inf(rec):>5s} {_f(m['coverage'], 2):>5s} | {'; '.join(r['flags']) or 'ok'}")


def format_families(families: dict) -> str:
    """The per-family ellipse coverage lines (R2b)."""
    lines = ["95 % ellipse coverage per family (R2b: within [0.90, 0.99])"]
    for fam, c in families.items():
        lines.append(f"  {fam:8s} {_f(c['share'], 3):>6s} ({c['inside']}/{c['n']}) {c['flag'] or 'ok'}")
    return "\n".join(lines)


def markdown(rows: list[dict]) -> str:
    """The rows (of one or several runs) as a Markdown table, then the ellipse coverage per family pooled over
    them (R2b). Metres and seconds; "-" where a row has nothing to measure."""
    from .integrity import family_coverage

    out = ["| row | area | median / p95 (GPS) | outage p95 | spoof rejected after | drag at detection | OK > 10 m | "
           "recovery | ellipse 95 % | broken rules |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("status") != "ok":
            out.append(f"| {r['name']} | {r['area']} | {r.get('status')}: {r.get('reason', '')[:120]} |||||||| |")
            continue
        m = r["metrics"]
        h, g = m["healthy"], m["gps_healthy"]
        spoof = "never" if any(x["checked"] and x["rejected_after_s"] is None for x in m["spoofs"]) else \
            _f(m["spoof_rejected_after_s"])
        drag = "-" if not m["drags"] else ("not needed (never off while OK)" if all(
            x["detected_after_s"] is None and x["passed"] for x in m["drags"]) else _inf(
            "never" if any(x["detected_after_s"] is None for x in m["drags"]) else m["drag_at_detection_m"]))
        rec = "never" if any(x["measured"] and x["recovery_s"] is None for x in m["recoveries"]) else \
            _f(m["recovery_s"])
        out.append(f"| {r['name']} | {r['area'].replace('swissimage_', '').replace('_0.5m', '')} | "
                   f"{_f(h['median_m'])} / {_f(h['p95_m'])} ({_f(g['median_m'])} / {_f(g['p95_m'])}) | "
                   f"{_f(m['outage']['p95_m'])} | {spoof} | {drag} | {m['ok_over_limit']} | {rec} | "
                   f"{_f(m['coverage'], 2)} | {'; '.join(r['flags']) or 'none'} |")
    fams = family_coverage((r["family"], r["metrics"]["coverage_inside"], r["metrics"]["coverage_n"])
                           for r in rows if r.get("status") == "ok")
    out += ["", "| family | 95 % ellipse coverage (R2b: 0.90-0.99) |", "|---|---|"]
    out += [f"| {k} | {_f(v.share, 3)} ({v.inside} of {v.n}){'' if v.passed else ' **' + v.flag + '**'} |"
            for k, v in fams.items()]
    return "\n".join(out)


# ============================================================================================== CLI
def register(subparsers) -> None:
    p = subparsers.add_parser("matrix", help="scenario matrix: GPS faults, IMU faults, cameras/vehicles, satellite "
                              "imagery; rows that break the product rules are flagged (table + JSON)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ortho", nargs="*", metavar="ORTHO", help="held-out orthophoto GeoTIFF(s) or tile folders")
    p.add_argument("--matrix", choices=MATRICES, default="short",
                   help="short: a handful of rows over the first ORTHO, 60 s flights; full: every row over every "
                   "ORTHO, 120 s flights (default short)")
    p.add_argument("--model", default="default", help="encoder (default: the shipped default model)")
    p.add_argument("--rows", default=None, metavar="PATTERN",
                   help="only rows whose name matches these comma-separated shell patterns or family names "
                   "(e.g. 'gps.drag*,imu')")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="flight duration, seconds")
    p.add_argument("--out", default="matrix", metavar="DIR", help="output folder (default ./matrix)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write everything as JSON")
    p.add_argument("--list", action="store_true", help="list the rows (and what each needs) without running")
    p.add_argument("--report", nargs="+", default=None, metavar="JSON",
                   help="no run: merge the JSON files of earlier runs (--json) into one Markdown table, with the "
                   "ellipse coverage per family pooled over them")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from runtime.errors import SimulationError

    if args.report:
        rows = []
        for path in args.report:
            try:
                rows += json.loads(Path(path).read_text())["rows"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise SimulationError(f"cannot read matrix results {path}: {exc}; expected the JSON written by "
                                      "`runtime matrix ... --json OUT`") from None
        print(markdown(rows))
        return 0
    if args.list:
        for sc in select(matrix(args.matrix, args.duration), args.rows):
            need = sc.missing()
            extra = [f"imagery {sc.imagery}"] if sc.imagery != "ortho" else []
            extra += ["no IMU"] if not sc.imu else []
            extra += [f"draw seed {sc.draw_seed}"] if sc.draw_seed is not None else []
            print(f"{sc.name:30s} {sc.family:8s} {json.dumps(sc.flight)} {' '.join(extra)}"
                  + (f"  [needs {', '.join(need)}]" if need else ""))
        return 0
    if not args.ortho:
        raise SimulationError("give the orthophoto(s) to fly over: runtime matrix ORTHO... (or --list)")
    res = run_matrix(args.ortho, args.matrix, model=args.model, out_dir=args.out, rows=args.rows,
                     duration_s=args.duration, progress=lambda s: print(s, file=sys.stderr, flush=True))
    print(HEADER)
    print("\n".join(format_row(r) for r in res["rows"]))
    print(format_families(res["families"]))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, allow_nan=False))
    return 0


__all__ = ["AREA_FLIGHTS", "Area", "FAMILIES", "IMAGERY", "Imagery", "MATRICES", "MapCache", "Scenario",
           "format_families", "format_row", "markdown", "matrix", "plan_area", "register", "resolve", "run_matrix", "run_row",
           "select"]
