"""Domain randomisation: draw flights unlike the default one (camera, height, vehicle, speed, turns, wobble).

:func:`draw_flight` draws one :class:`~runtime.sim.config.SimConfig` from :class:`DomainRanges` deterministically by
seed (``rng(seed, STREAM_RANDOMIZE, attempt)``), writes the drawn camera with :func:`write_camera_file` and keeps
only flights the planner (:func:`runtime.sim.flight.plan_flight`) accepts over the given orthophoto: when it refuses,
the height and speed are redrawn lower / slower and the focal length longer (a narrower view), all inside the ranges,
a bounded number of times.

Units: pixels for the camera, metres, m/s, m/s^2, degrees where the name says ``_deg``, hertz.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SimulationError
from .config import VEHICLES, SimConfig
from .noise import STREAM_RANDOMIZE, rng

MAX_ATTEMPTS = 8  # draws of height/speed before draw_flight gives up


def write_camera_file(path, *, width: int, height: int, fx: float, k1: float = 0.0, k2: float = 0.0,
                      fy: float | None = None, cx: float | None = None, cy: float | None = None) -> str:
    """Write a pinhole camera file (OpenCV FileStorage YAML, :func:`calibration.camera_io.save_camera`) that
    :func:`calibration.camera_io.load_camera` reads.

    Args:
        path: the file to write (its folder must exist).
        width, height: image size, pixels. fx, fy: focal lengths, pixels (``fy`` None: ``fx``, square pixels).
        k1, k2: radial distortion (OpenCV); both 0 writes no distortion.
        cx, cy: principal point, pixels (None: the image centre, ``(width - 1) / 2``, ``(height - 1) / 2``).
    Returns:
        The path written, as a string.
    Raises:
        SimulationError: values the camera model refuses, or the file cannot be written.
    """
    from calibration.camera import CameraModel
    from calibration.camera_io import save_camera
    from calibration.errors import CalibrationError

    dist = (float(k1), float(k2), 0.0, 0.0) if (k1 or k2) else ()
    try:
        cam = CameraModel(width, height, fx, fx if fy is None else fy, (width - 1) / 2.0 if cx is None else cx,
                          (height - 1) / 2.0 if cy is None else cy, dist)
        return str(save_camera(cam, path))
    except CalibrationError as exc:
        raise SimulationError(f"cannot write camera file {os.fspath(path)!r}: {exc}") from exc


def _range(name: str, lo_hi) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in lo_hi)
    except (TypeError, ValueError):
        raise SimulationError(f"DomainRanges.{name} must be a (low, high) pair of numbers, got {lo_hi!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi) and name != "k1":
        raise SimulationError(f"DomainRanges.{name} must be finite with 0 <= low <= high, got {lo_hi!r}")
    if name == "k1" and not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise SimulationError(f"DomainRanges.k1 must be finite with low <= high, got {lo_hi!r}")
    return (lo, hi)


@dataclass(frozen=True)
class DomainRanges:
    """The ranges :func:`draw_flight` draws from (uniform in each ``(low, high)``, uniform choice in each tuple).

    Attributes:
        fx: focal length, pixels (square pixels, principal point at the centre). k1: radial distortion.
        resolution: image sizes (width, height) pixels. height_m: above ground. vehicle: of ``VEHICLES``.
        speed_mps, max_accel_mps2 (sharper turns at higher values), attitude_jitter_deg: the wobble's rms.
        camera_rate_hz: fixed. trajectories: the path shapes drawn from.
    """

    fx: tuple[float, float] = (300.0, 1200.0)
    k1: tuple[float, float] = (-0.3, 0.1)
    resolution: tuple[tuple[int, int], ...] = ((640, 480), (1280, 720), (1920, 1080))
    height_m: tuple[float, float] = (40.0, 150.0)
    vehicle: tuple[str, ...] = VEHICLES
    speed_mps: tuple[float, float] = (3.0, 20.0)
    max_accel_mps2: tuple[float, float] = (1.0, 4.0)
    attitude_jitter_deg: tuple[float, float] = (0.5, 2.0)
    camera_rate_hz: float = 5.0
    trajectories: tuple[str, ...] = ("lawnmower", "random", "racetrack")

    def __post_init__(self) -> None:
        for name in ("fx", "k1", "height_m", "speed_mps", "max_accel_mps2", "attitude_jitter_deg"):
            object.__setattr__(self, name, _range(name, getattr(self, name)))
        for name in ("fx", "height_m", "speed_mps", "max_accel_mps2"):
            if getattr(self, name)[0] <= 0:
                raise SimulationError(f"DomainRanges.{name} must be > 0, got {getattr(self, name)!r}")
        if not self.resolution or any(len(r) != 2 or min(r) <= 0 for r in self.resolution):
            raise SimulationError(
                f"DomainRanges.resolution must be a non-empty tuple of (width, height) pixels, got {self.resolution!r}"
            )
        bad = [v for v in self.vehicle if v not in VEHICLES]
        if not self.vehicle or bad:
            raise SimulationError(
                f"DomainRanges.vehicle must be a non-empty subset of {VEHICLES}, got {self.vehicle!r}"
            )
        if not self.trajectories or "waypoints" in self.trajectories:
            raise SimulationError(
                f"DomainRanges.trajectories must name planned paths (lawnmower, random, racetrack), got "
                f"{self.trajectories!r}"
            )


def _draw_camera(g: np.random.Generator, ranges: DomainRanges) -> dict:
    w, h = ranges.resolution[int(g.integers(len(ranges.resolution)))]
    return {"width": int(w), "height": int(h), "fx": float(g.uniform(*ranges.fx)), "k1": float(g.uniform(*ranges.k1))}


def _draw_flight_values(g: np.random.Generator, ranges: DomainRanges) -> dict:
    return {
        "altitude_m": float(g.uniform(*ranges.height_m)),
        "speed_mps": float(g.uniform(*ranges.speed_mps)),
        "vehicle": str(ranges.vehicle[int(g.integers(len(ranges.vehicle)))]),
        "max_accel_mps2": float(g.uniform(*ranges.max_accel_mps2)),
        "attitude_jitter_deg": float(g.uniform(*ranges.attitude_jitter_deg)),
        "trajectory": str(ranges.trajectories[int(g.integers(len(ranges.trajectories)))]),
        "camera_rate_hz": float(ranges.camera_rate_hz),
    }


def draw_flight(seed: int, ranges: DomainRanges | None = None, *, ortho, out, workdir, **overrides) -> SimConfig:
    """Draw one randomized flight over ``ortho`` that the planner accepts (deterministic by ``seed``).

    Args:
        seed: draws the flight and becomes the flight's ``seed``.
        ranges: :class:`DomainRanges` (None: the defaults).
        ortho: orthophoto path (file or folder of tiles), out: the .bag path of the config, workdir: an existing
            folder where the camera file ``camera_seed{seed}.yaml`` is written (not written when ``camera`` is
            overridden).
        overrides: SimConfig fields that win over the drawn values (e.g. ``duration_s=10``). The camera file holds
            the camera of the accepted draw.
    Returns:
        The :class:`SimConfig` (checked with :func:`runtime.sim.flight.plan_flight`).
    Raises:
        SimulationError: bad ranges or overrides, or no flight the planner accepts after :data:`MAX_ATTEMPTS`
        draws of a lower height and slower speed (the message gives the planner's last reason).
    """
    from calibration.camera_io import load_camera
    from calibration.errors import CalibrationError
    from calibration.geometry import NADIR_MOUNT, load_mount
    from maps.geotiff import load_orthophoto

    from .flight import plan_flight

    ranges = DomainRanges() if ranges is None else ranges
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SimulationError(f"seed must be a non-negative integer, got {seed!r}")
    if not Path(workdir).is_dir():
        raise SimulationError(f"workdir {os.fspath(workdir)!r} is not a folder; create it first")
    g = rng(seed, STREAM_RANDOMIZE, 0)
    cam_values, values = _draw_camera(g, ranges), _draw_flight_values(g, ranges)
    base = dict(values, ortho=os.fspath(ortho), out=os.fspath(out), seed=seed)
    ortho_img = load_orthophoto(os.fspath(ortho))
    reason = ""
    for attempt in range(MAX_ATTEMPTS):
        camera = overrides.get("camera")
        if camera is None:
            camera = write_camera_file(Path(workdir) / f"camera_seed{seed}.yaml", **cam_values)
        config = SimConfig.from_dict(dict(base, camera=camera, **overrides), source="draw_flight")
        mount = load_mount(config.mount) if config.mount else NADIR_MOUNT
        try:
            plan_flight(config, ortho_img, load_camera(camera), mount)
            return config
        except (SimulationError, CalibrationError) as exc:  # no room, or the camera does not see the ground
            reason = str(exc)
        g = rng(seed, STREAM_RANDOMIZE, attempt + 1)  # lower, slower, narrower: inside the ranges
        base["altitude_m"] = float(g.uniform(ranges.height_m[0], base["altitude_m"]))
        base["speed_mps"] = float(g.uniform(ranges.speed_mps[0], base["speed_mps"]))
        cam_values["fx"] = float(g.uniform(cam_values["fx"], ranges.fx[1]))
    raise SimulationError(
        f"draw_flight(seed={seed}): the planner refused {MAX_ATTEMPTS} draws over {os.fspath(ortho)} down to "
        f"{base['altitude_m']:.0f} m at {base['speed_mps']:.1f} m/s with a {cam_values['width']}x"
        f"{cam_values['height']} camera, fx {cam_values['fx']:.0f} px; last reason: {reason}; use a larger "
        "orthophoto or narrower ranges"
    )


__all__ = ["DomainRanges", "MAX_ATTEMPTS", "draw_flight", "write_camera_file"]
