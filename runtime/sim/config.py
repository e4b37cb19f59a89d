"""Configuration of a simulated flight: one frozen dataclass, loadable from a dict or YAML (unknown keys rejected).

Units: seconds, metres, metres per second, hertz, degrees where the name says ``_deg``. Windows are seconds from
the start of the flight: an outage ``(start, end)`` (written ``START:END``), a spoof ``(start, end, metres)``
(written ``START:END:METRES``), a drag ``(start, end, metres_per_second)`` (written ``START:END:MPS``).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from ..errors import SimulationError
from .gnss import BIAS_MODES
from .photometric import PhotometricConfig
from .trajectory import TRAJECTORIES

OUTAGE_FORM = "START:END (seconds from the start of the flight, e.g. 40:70)"
SPOOF_FORM = "START:END:METRES (seconds from the start, offset in metres, e.g. 90:95:200)"
DRAG_FORM = "START:END:MPS (seconds from the start, drag speed in m/s, e.g. 60:90:2)"
VEHICLES = ("multicopter", "fixed_wing", "ground")
IMU_FRAMES = ("enu_flu", "ned_frd")
_WINDOW_KEYS = {"gps_outages": '["40:70"]', "gps_spoofs": '["90:95:200"]', "gps_drags": '["60:90:2"]'}


def _num(text, spec: str, form: str) -> float:
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise SimulationError(f"malformed window {spec!r}: {text!r} is not a number; expected {form}") from None
    if not math.isfinite(v):
        raise SimulationError(f"malformed window {spec!r}: {text!r} is not finite; expected {form}")
    return v


def _parts(spec, n: int, form: str) -> list[float]:
    if isinstance(spec, str):
        raw = spec.strip().split(":")
    elif isinstance(spec, (list, tuple)):
        raw = list(spec)
    else:
        raise SimulationError(f"malformed window {spec!r}; expected {form}")
    if len(raw) != n:
        raise SimulationError(f"malformed window {spec!r}: {len(raw)} value(s), expected {form}")
    vals = [_num(r, spec, form) for r in raw]
    if vals[0] < 0 or vals[1] <= vals[0]:
        raise SimulationError(f"malformed window {spec!r}: needs 0 <= START < END; expected {form}")
    return vals


def parse_outage(spec) -> tuple[float, float]:
    """``"40:70"`` (or ``[40, 70]``) -> (40.0, 70.0). Raises SimulationError showing ``START:END``."""
    a, b = _parts(spec, 2, OUTAGE_FORM)
    return (a, b)


def parse_spoof(spec) -> tuple[float, float, float]:
    """``"90:95:200"`` (or ``[90, 95, 200]``) -> (90.0, 95.0, 200.0). Raises SimulationError showing
    ``START:END:METRES``."""
    a, b, m = _parts(spec, 3, SPOOF_FORM)
    if m < 0:
        raise SimulationError(f"malformed window {spec!r}: METRES must be >= 0; expected {SPOOF_FORM}")
    return (a, b, m)


def parse_drag(spec) -> tuple[float, float, float]:
    """``"60:90:2"`` (or ``[60, 90, 2]``) -> (60.0, 90.0, 2.0): from START to END seconds the reported GPS position
    is pulled away from the truth at MPS m/s. Raises SimulationError showing ``START:END:MPS``."""
    a, b, mps = _parts(spec, 3, DRAG_FORM)
    if mps < 0:
        raise SimulationError(f"malformed window {spec!r}: MPS must be >= 0; expected {DRAG_FORM}")
    return (a, b, mps)


@dataclass(frozen=True)
class SimConfig:
    """Everything a simulated flight depends on (same config and seed -> byte-identical message payloads).

    Paths: ``ortho`` (any GeoTIFF that maps.geotiff.load_orthophoto reads, or a folder of them), ``out`` (.bag,
    replaced if it exists), ``camera`` (camera file; None = calibration's default camera), ``mount`` (mount YAML;
    None = nadir, image top = body forward), ``waypoints`` (for ``trajectory="waypoints"``).

    Trajectories: ``lawnmower`` (survey legs), ``racetrack`` (an oval along the usable area, turns of radius at least
    ``speed^2 / max_accel_mps2``: for narrow areas), ``random`` legs, or the user's ``waypoints``. Planned ones keep
    the camera footprint (any heading) on valid imagery; waypoints are checked frame by frame with the exact footprint,
    which may reach ``max_outside_m`` metres onto nodata (rendered as nodata; 0 = never).

    Vehicle (``vehicle``, the nominal attitude; the wobble ``attitude_jitter_deg`` applies to all): ``multicopter``
    (body z along the thrust: it tilts into its horizontal acceleration when ``bank_into_turns``), ``fixed_wing``
    (coordinated turns: banked by ``atan(v * yaw_rate / g)`` into the turn about the velocity axis, 3 degrees nose up,
    no tilt into along-track acceleration) or ``ground`` (level body: a camera on a mast or a level platform).

    IMU faults: ``imu_accel_bias_mps2`` (constant accelerometer bias of that magnitude, m/s^2, body frame, random
    direction by seed), ``imu_accel_scale_error`` (per-axis scale error: the accelerometer reports ``(1 + e_i) f_i``
    with ``e_i = +-value``, signs by seed), ``imu_accel_sees_attitude`` (False: a soft mount whose accelerometer does
    not see the wobble; the specific force is that of the attitude without it while the orientation reports the
    attitude with it), ``imu_frame`` (``enu_flu``: orientation R_body(FLU)->world(ENU), rates and specific force in
    FLU; ``ned_frd``: R_body(FRD)->world(NED), rates and specific force in FRD, PX4 style), ``imu_time_offset_s``
    (seconds, |value| <= 1: IMU stamps = true sample time + offset). ``imu_rate_hz = camera_rate_hz`` gives an IMU
    at frame rate only.

    GPS: ``gps_drags`` (windows ``START:END:MPS``: the reported position drifts away from the truth at MPS m/s in a
    random direction by seed, offset ``MPS (t - START)``, gone after END; /gps/vel moves by the drag velocity during
    the window), ``gps_velocity`` (False: no /gps/vel topic), ``gps_noise_tau_s`` (0: white horizontal noise per fix;
    > 0: first-order Gauss-Markov noise with that correlation time, seconds, and the same stationary sigma).
    """

    ortho: str = ""
    out: str = "flight.bag"
    camera: str | None = None
    mount: str | None = None
    # flight
    duration_s: float = 120.0
    altitude_m: float = 60.0  # height above ground
    speed_mps: float = 8.0
    trajectory: str = "lawnmower"
    waypoints: str | None = None
    max_accel_mps2: float = 2.0  # horizontal acceleration the corners are rounded for (sets the bank angle)
    lawnmower_overlap: float = 0.3  # across-track overlap of neighbouring legs' footprints
    margin_m: float = 5.0  # extra distance between the camera footprint and the edge of valid imagery
    max_outside_m: float = 0.0  # how far (m) a frame's footprint may reach onto nodata (rendered as nodata)
    ground_elevation_m: float = 0.0
    seed: int = 1
    start_time_ns: int = 1_700_000_000_000_000_000
    # sensors
    camera_rate_hz: float = 5.0
    gps_rate_hz: float = 5.0
    imu_rate_hz: float = 50.0
    # GNSS errors
    gps_sigma_m: float = 5.0
    gps_bias_m: float = 3.0
    gps_bias_mode: str = "gauss_markov"
    gps_bias_tau_s: float = 300.0
    gps_vertical_sigma_m: float | None = None  # None: 1.5 x gps_sigma_m
    gps_outages: tuple[tuple[float, float], ...] = ()
    gps_spoofs: tuple[tuple[float, float, float], ...] = ()
    gps_drags: tuple[tuple[float, float, float], ...] = ()  # (start s, end s, m/s): position pulled away
    gps_velocity_sigma_mps: float = 0.3  # white noise of the /gps/vel velocity, m/s per axis
    gps_velocity: bool = True  # write /gps/vel
    gps_noise_tau_s: float = 0.0  # correlation time of the horizontal noise, s (0 = white)
    # attitude and IMU
    attitude_jitter_deg: float = 1.0  # rms of the smooth roll/pitch wobble
    attitude_jitter_hz: float = 0.5  # its highest frequency
    bank_into_turns: bool = True  # tilt the body along the thrust (multirotor) in turns
    vehicle: str = "multicopter"  # multicopter, fixed_wing or ground (see the class docstring)
    imu_gyro_sigma_rps: float = 0.002
    imu_accel_sigma_mps2: float = 0.05
    imu_attitude_sigma_deg: float = 0.3  # smooth roll/pitch error of the reported orientation
    imu_yaw_sigma_deg: float = 1.0  # smooth heading error of the reported orientation
    imu_accel_bias_mps2: float = 0.0  # constant accelerometer bias magnitude, body frame, random direction
    imu_accel_scale_error: float = 0.0  # per-axis accelerometer scale error, reported (1 +- value) * f
    imu_accel_sees_attitude: bool = True  # False: the specific force misses the wobble (soft mount)
    imu_frame: str = "enu_flu"  # enu_flu (REP-103) or ned_frd (PX4)
    imu_time_offset_s: float = 0.0  # IMU stamps = true sample time + this, seconds, |value| <= 1
    # photometric
    brightness: float = PhotometricConfig.brightness
    brightness_drift: float = PhotometricConfig.brightness_drift
    color_shift: float = PhotometricConfig.color_shift
    blur_sigma_px: float = PhotometricConfig.blur_sigma_px
    noise_sigma: float = PhotometricConfig.noise_sigma
    jpeg_quality: int = PhotometricConfig.jpeg_quality

    def __post_init__(self) -> None:
        def positive(name: str, allow_zero: bool = False) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 or (
                v == 0 and not allow_zero
            ):
                raise SimulationError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, got {v!r}")
            object.__setattr__(self, name, float(v))

        for name in ("duration_s", "altitude_m", "speed_mps", "max_accel_mps2", "camera_rate_hz", "gps_rate_hz",
                     "imu_rate_hz", "gps_bias_tau_s", "attitude_jitter_hz"):
            positive(name)
        for name in ("margin_m", "max_outside_m", "gps_sigma_m", "gps_bias_m", "gps_velocity_sigma_mps",
                     "attitude_jitter_deg", "imu_gyro_sigma_rps",
                     "imu_accel_sigma_mps2", "imu_attitude_sigma_deg", "imu_yaw_sigma_deg", "brightness",
                     "brightness_drift", "color_shift", "blur_sigma_px", "noise_sigma", "lawnmower_overlap",
                     "imu_accel_bias_mps2", "imu_accel_scale_error", "gps_noise_tau_s"):
            positive(name, allow_zero=True)
        if self.gps_vertical_sigma_m is not None:
            positive("gps_vertical_sigma_m", allow_zero=True)
        if not math.isfinite(float(self.ground_elevation_m)):
            raise SimulationError(f"ground_elevation_m must be finite, got {self.ground_elevation_m!r}")
        object.__setattr__(self, "ground_elevation_m", float(self.ground_elevation_m))
        for name in ("seed", "start_time_ns", "jpeg_quality"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise SimulationError(f"{name} must be a non-negative integer, got {v!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise SimulationError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        if self.lawnmower_overlap >= 1:
            raise SimulationError(f"lawnmower_overlap must be < 1 (a fraction), got {self.lawnmower_overlap}")
        if self.duration_s > 24 * 3600:
            raise SimulationError(f"duration_s must be at most a day (86400 s), got {self.duration_s}")
        if self.trajectory not in TRAJECTORIES:
            raise SimulationError(f"trajectory must be one of {', '.join(TRAJECTORIES)}, got {self.trajectory!r}")
        if self.trajectory == "waypoints" and not self.waypoints:
            raise SimulationError("trajectory 'waypoints' needs a waypoints file (--waypoints FILE)")
        if self.gps_bias_mode not in BIAS_MODES:
            raise SimulationError(f"gps_bias_mode must be one of {', '.join(BIAS_MODES)}, got {self.gps_bias_mode!r}")
        for name in ("bank_into_turns", "imu_accel_sees_attitude", "gps_velocity"):
            if not isinstance(getattr(self, name), bool):
                raise SimulationError(f"{name} must be true or false, got {getattr(self, name)!r}")
        self._check_faults()
        for name in ("ortho", "out", "camera", "mount", "waypoints"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, (str, os.PathLike)):
                raise SimulationError(f"{name} must be a path, got {v!r}")
            if v is not None:
                object.__setattr__(self, name, os.fspath(v))
        outages = tuple(parse_outage(w) for w in self.gps_outages)
        spoofs = tuple(parse_spoof(w) for w in self.gps_spoofs)
        drags = tuple(parse_drag(w) for w in self.gps_drags)
        for w in outages + spoofs + drags:
            if w[0] >= self.duration_s:
                raise SimulationError(
                    f"window {w[0]:g}:{w[1]:g} starts after the flight ends ({self.duration_s:g} s); "
                    "windows are seconds from the start of the flight"
                )
        object.__setattr__(self, "gps_outages", outages)
        object.__setattr__(self, "gps_spoofs", spoofs)
        object.__setattr__(self, "gps_drags", drags)

    def _check_faults(self) -> None:
        """Validate the vehicle, the IMU frame, the scale error and the IMU time offset."""
        if self.vehicle not in VEHICLES:
            raise SimulationError(f"vehicle must be one of {', '.join(VEHICLES)}, got {self.vehicle!r}")
        if self.imu_frame not in IMU_FRAMES:
            raise SimulationError(
                f"imu_frame must be one of {', '.join(IMU_FRAMES)} (enu_flu: REP-103 ENU world, FLU body; ned_frd: "
                f"PX4 NED world, FRD body), got {self.imu_frame!r}"
            )
        if self.imu_accel_scale_error >= 1:
            raise SimulationError(
                f"imu_accel_scale_error must be < 1 (a fraction, e.g. 0.02 for 2%), got {self.imu_accel_scale_error}"
            )
        v = self.imu_time_offset_s
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or abs(v) > 1:
            raise SimulationError(f"imu_time_offset_s must be a finite number of seconds in [-1, 1], got {v!r}")
        object.__setattr__(self, "imu_time_offset_s", float(v))

    @property
    def vertical_sigma_m(self) -> float:
        """The GNSS vertical sigma used: ``gps_vertical_sigma_m`` or 1.5 x ``gps_sigma_m``."""
        return 1.5 * self.gps_sigma_m if self.gps_vertical_sigma_m is None else self.gps_vertical_sigma_m

    # ------------------------------------------------------------------ loading
    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @property
    def photometric(self) -> PhotometricConfig:
        """The photometric part of the flight as the :class:`PhotometricConfig` the renderer takes."""
        return PhotometricConfig(**{f.name: getattr(self, f.name) for f in fields(PhotometricConfig)})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base: "SimConfig | None" = None, source: str = "config") -> "SimConfig":
        """Build from a mapping of field names (on top of ``base`` or the defaults). Unknown keys are rejected."""
        if not isinstance(data, Mapping):
            raise SimulationError(f"{source} must be a mapping of simulation settings, got {type(data).__name__}")
        unknown = sorted(str(k) for k in data if k not in cls.keys())
        if unknown:
            raise SimulationError(
                f"{source} has unknown key(s) {unknown}; valid keys: {', '.join(cls.keys())}"
            )
        values = dict(data)
        for key, example in _WINDOW_KEYS.items():
            if key in values:
                v = values[key]
                if v is None:
                    values[key] = ()
                elif isinstance(v, (str, int, float)) or not isinstance(v, (list, tuple)):
                    raise SimulationError(f"{source}: {key} must be a list of windows like {example}, got {v!r}")
                else:
                    for w in v:
                        if isinstance(w, int) and not isinstance(w, bool):
                            raise SimulationError(
                                f"{source}: {key} holds the number {w}: YAML reads an unquoted window like 40:50 as a "
                                "base-60 number; quote the windows (e.g. ['40:50'])"
                            )
                    values[key] = tuple(tuple(w) if isinstance(w, list) else w for w in v)
        return dataclasses.replace(base or cls(), **values)

    @classmethod
    def from_yaml(cls, path, *, base: "SimConfig | None" = None) -> "SimConfig":
        """Read a YAML mapping of field names. Relative paths in it are relative to the YAML file's folder."""
        import yaml

        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SimulationError(f"cannot read simulation config {p}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise SimulationError(f"simulation config {p} is not valid YAML: {exc}") from exc
        if data is None:
            data = {}
        if isinstance(data, Mapping):
            data = dict(data)
            for key in ("ortho", "out", "camera", "mount", "waypoints"):
                v = data.get(key)
                if isinstance(v, str) and v and not os.path.isabs(os.path.expanduser(v)):
                    data[key] = str(p.parent / v)
        return cls.from_dict(data, base=base, source=f"simulation config {p}")

    def to_dict(self) -> dict:
        """Plain mapping (YAML-friendly: windows as 'START:END[:METRES|:MPS]' strings)."""
        d = dataclasses.asdict(self)
        d["gps_outages"] = [f"{a:g}:{b:g}" for a, b in self.gps_outages]
        d["gps_spoofs"] = [f"{a:g}:{b:g}:{m:g}" for a, b, m in self.gps_spoofs]
        d["gps_drags"] = [f"{a:g}:{b:g}:{m:g}" for a, b, m in self.gps_drags]
        return d
