"""SkyFix estimates as MAVLink: ``GPS_INPUT`` (ArduPilot ``GPS1_TYPE = 14``, MAV), ``VISION_POSITION_ESTIMATE`` or
``ODOMETRY`` (PX4 EKF2 external vision), at a ceiling rate.

The encoders are pure (:func:`gps_input_fields`, :func:`vision_position_fields`, :func:`odometry_fields`: a
:class:`MavEstimate` -> a dict of the message's fields); :class:`MavlinkSink` turns estimates into messages on a
:class:`~runtime.mavlink.link.MavlinkLink`, no faster than ``rate_hz`` (an estimate that comes earlier is skipped and
counted; an old estimate is never repeated to fill the rate).

Frames: SkyFix works in ENU (x east, y north, z up, REP-103); MAVLink in NED (x north, y east, z down). Positions
``p_ned = R_NED2ENU @ p_enu`` and covariances ``C_ned = R @ C_enu @ R.T`` with ``R = R_NED2ENU`` of
:mod:`calibration.rotations` (its own inverse). So NED ``xx`` is SkyFix's north-north variance, ``xy`` the
east-north covariance, ``yy`` the east-east variance.

Status policy (GPS_INPUT ``fix_type``): ``OK`` -> 3 (3D fix). ``DEGRADED``, ``GPS_REJECTED`` and ``GPS_ONLY`` ->
``degraded_fix_type`` (default 3, a 3D fix whose horizontal accuracy is the estimate's own sigma, so the autopilot's
EKF weighs it down by itself; set 1 to send no fix while unchecked). ``LOST``, any other status and an estimate
without a position -> 1 (``GPS_FIX_TYPE_NO_FIX``) with zero lat/lon and every ignore flag set. VISION_POSITION_ESTIMATE
and ODOMETRY are not sent for those (nothing to say in a local frame); the next estimate with a position after one
increments ``reset_counter``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from calibration.rotations import R_NED2ENU, matrix_to_quaternion, rotation_from_rpy

from .link import MavlinkError

__all__ = ["MESSAGES", "MavEstimate", "MavlinkSink", "SinkConfig", "VelocityFromTrack", "cov6_upper",
           "estimate_from_record", "gps_input_fields", "gps_time", "odometry_fields", "vision_position_fields"]

MESSAGES = ("gps_input", "vision", "odometry")
"""Message kinds :class:`MavlinkSink` sends: GPS_INPUT, VISION_POSITION_ESTIMATE, ODOMETRY."""

GPS_UNIX_EPOCH_OFFSET_S = 315_964_800  # 1980-01-06T00:00:00Z - 1970-01-01T00:00:00Z
SECONDS_PER_WEEK = 604_800
GPS_LEAP_SECONDS = 18  # GPS - UTC since 2017-01-01 (IERS Bulletin C: none announced since)

# MAVLink constants (common.xml); kept here so the encoders need no pymavlink.
GPS_FIX_TYPE_NO_FIX = 1
GPS_FIX_TYPE_2D_FIX = 2
GPS_FIX_TYPE_3D_FIX = 3
IGNORE_ALT = 1
IGNORE_HDOP = 2
IGNORE_VDOP = 4
IGNORE_VEL_HORIZ = 8
IGNORE_VEL_VERT = 16
IGNORE_SPEED_ACCURACY = 32
IGNORE_HORIZONTAL_ACCURACY = 64
IGNORE_VERTICAL_ACCURACY = 128
IGNORE_ALL = 255
DOP_UNKNOWN = 65535.0  # GPS_INPUT hdop/vdop: "If unknown, set to: UINT16_MAX"
MAV_FRAME_LOCAL_NED = 1
MAV_ESTIMATOR_TYPE_VISION = 2

_POSITION_STATUSES_OK = ("OK",)
_POSITION_STATUSES_DEGRADED = ("DEGRADED", "GPS_REJECTED", "GPS_ONLY")


# ============================================================================================== estimate
@dataclass(frozen=True)
class MavEstimate:
    """What the encoders need of one SkyFix estimate (built by :func:`estimate_from_record`).

    Attributes:
        t_ns: estimate time, integer ns since the UNIX epoch (the loop's host wall clock).
        status: the loop's status string (OK, DEGRADED, GPS_REJECTED, LOST, GPS_ONLY, ...).
        lat, lon: WGS84 degrees, NaN without a position.
        cov_en: float64[2, 2] east/north covariance, m^2, or None when unknown.
        sigma_m: horizontal 1-sigma, metres (largest axis; inf when unknown).
        x_m, y_m: position in the run's local frame (metres, x east, y north; north-aligned transverse Mercator
            centred on the map), None when unknown.
        alt_amsl_m: altitude above mean sea level, metres, or None when unknown.
        height_agl_m: height above the map's ground, metres, or None when unknown (local z = -height in NED).
        vert_sigma_m: vertical 1-sigma, metres, or None when unknown.
        velocity_en: (east, north) ground velocity m/s, or None when unknown.
        velocity_up: vertical velocity m/s, or None when unknown.
        velocity_sigma_mps: 1-sigma of each horizontal velocity component, m/s, or None when unknown.
        attitude_rpy_ned: (roll, pitch, yaw) radians of body FRD in NED (as MAVLink ATTITUDE gives it), or None
            when unknown (VISION_POSITION_ESTIMATE then carries NaN angles, ODOMETRY a NaN quaternion).
        heading_deg: compass heading of the vehicle, degrees clockwise from north, or None.
    """

    t_ns: int
    status: str
    lat: float
    lon: float
    cov_en: np.ndarray | None = None
    sigma_m: float = math.inf
    x_m: float | None = None
    y_m: float | None = None
    alt_amsl_m: float | None = None
    height_agl_m: float | None = None
    vert_sigma_m: float | None = None
    velocity_en: tuple[float, float] | None = None
    velocity_up: float | None = None
    velocity_sigma_mps: float | None = None
    attitude_rpy_ned: tuple[float, float, float] | None = None
    heading_deg: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.t_ns, bool) or not isinstance(self.t_ns, (int, np.integer)) or self.t_ns < 0:
            raise MavlinkError(f"MavEstimate.t_ns must be integer ns since the UNIX epoch (>= 0), got {self.t_ns!r}")
        if self.cov_en is not None:
            c = np.array(self.cov_en, dtype=float).reshape(2, 2)
            if not np.all(np.isfinite(c)):
                c = None
            else:
                c = 0.5 * (c + c.T)
                c.setflags(write=False)
            object.__setattr__(self, "cov_en", c)
        for name in ("x_m", "y_m", "alt_amsl_m", "height_agl_m", "vert_sigma_m", "velocity_up", "velocity_sigma_mps",
                     "heading_deg"):
            v = getattr(self, name)
            if v is not None and not math.isfinite(float(v)):
                object.__setattr__(self, name, None)
        for name, n in (("velocity_en", 2), ("attitude_rpy_ned", 3)):
            v = getattr(self, name)
            if v is not None:
                arr = np.asarray(v, dtype=float).ravel()
                object.__setattr__(self, name, tuple(float(a) for a in arr)
                                   if arr.shape == (n,) and np.all(np.isfinite(arr)) else None)

    @property
    def has_position(self) -> bool:
        return math.isfinite(self.lat) and math.isfinite(self.lon)

    @property
    def horizontal_sigma_m(self) -> float:
        """1-sigma along the covariance's major axis (metres), else ``sigma_m``; inf when unknown."""
        if self.cov_en is not None:
            return float(math.sqrt(max(float(np.linalg.eigvalsh(self.cov_en)[-1]), 0.0)))
        return float(self.sigma_m) if math.isfinite(self.sigma_m) else math.inf


def estimate_from_record(rec, *, alt_amsl_m=None, height_agl_m=None, vert_sigma_m=None, velocity_en=None,
                         velocity_up=None, velocity_sigma_mps=None, attitude_rpy_ned=None) -> MavEstimate:
    """A :class:`MavEstimate` of a :class:`runtime.outputs.EstimateRecord` plus what the record does not carry.

    A record that carries the filter's ground velocity (``ve_mps``/``vn_mps``, ``v_sigma_mps``) gives
    ``velocity_en``/``velocity_sigma_mps`` unless they are passed; otherwise :class:`MavlinkSink` differences the
    track (:class:`VelocityFromTrack`).
    """
    if velocity_en is None:
        ve, vn = getattr(rec, "ve_mps", None), getattr(rec, "vn_mps", None)
        if ve is not None and vn is not None:
            velocity_en = (ve, vn)
            if velocity_sigma_mps is None:
                velocity_sigma_mps = getattr(rec, "v_sigma_mps", None)
    return MavEstimate(
        t_ns=int(rec.t_ns), status=str(rec.status), lat=float(rec.lat), lon=float(rec.lon),
        cov_en=None if rec.cov_en is None else np.asarray(rec.cov_en, dtype=float), sigma_m=float(rec.sigma_m),
        x_m=rec.x_m, y_m=rec.y_m, alt_amsl_m=alt_amsl_m, height_agl_m=height_agl_m, vert_sigma_m=vert_sigma_m,
        velocity_en=velocity_en, velocity_up=velocity_up, velocity_sigma_mps=velocity_sigma_mps,
        attitude_rpy_ned=attitude_rpy_ned, heading_deg=rec.heading_deg)


# ============================================================================================== config
@dataclass(frozen=True)
class SinkConfig:
    """Settings of the encoders.

    Attributes:
        gps_id: GPS_INPUT ``gps_id`` (0: the first MAV GPS instance).
        degraded_fix_type: GPS_INPUT ``fix_type`` for DEGRADED / GPS_REJECTED / GPS_ONLY: 3 (3D fix, default), 2
            (2D fix) or 1 (no fix).
        satellites: GPS_INPUT ``satellites_visible`` with a fix. SkyFix is not a GNSS receiver: this is a nominal
            count (ArduPilot's EKF3 pre-arm check ``EK3_GPS_CHECK`` wants >= 6); 0 is sent without a fix.
        uere_m: HDOP/VDOP = 1-sigma / ``uere_m`` (the user equivalent range error; 5 m as in SkyFix's NMEA out).
        leap_seconds: GPS - UTC seconds for GPS week/ms (18 since 2017-01-01).
        send_yaw: put the heading into GPS_INPUT ``yaw`` (centidegrees, 36000 = north); off by default because the
            heading usually comes from the autopilot's own attitude.
        odometry_frame: ODOMETRY ``frame_id`` and ``child_frame_id`` (MAV_FRAME_LOCAL_NED = 1: pose and velocity
            in a north-aligned NED frame).
        estimator_type: ODOMETRY ``estimator_type`` (MAV_ESTIMATOR_TYPE_VISION = 2).
    """

    gps_id: int = 0
    degraded_fix_type: int = GPS_FIX_TYPE_3D_FIX
    satellites: int = 10
    uere_m: float = 5.0
    leap_seconds: int = GPS_LEAP_SECONDS
    send_yaw: bool = False
    odometry_frame: int = MAV_FRAME_LOCAL_NED
    estimator_type: int = MAV_ESTIMATOR_TYPE_VISION

    def __post_init__(self) -> None:
        def _int(name, lo, hi):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise MavlinkError(f"SinkConfig.{name} must be an integer in {lo}-{hi}, got {v!r}")
        _int("gps_id", 0, 255)
        _int("satellites", 0, 255)
        _int("leap_seconds", 0, 100)
        _int("odometry_frame", 0, 255)
        _int("estimator_type", 0, 255)
        if self.degraded_fix_type not in (1, 2, 3):
            raise MavlinkError(f"SinkConfig.degraded_fix_type must be 1 (no fix), 2 (2D) or 3 (3D), got "
                               f"{self.degraded_fix_type!r}")
        if not isinstance(self.uere_m, (int, float)) or not (math.isfinite(self.uere_m) and self.uere_m > 0):
            raise MavlinkError(f"SinkConfig.uere_m must be a number of metres > 0, got {self.uere_m!r}")


# ============================================================================================== helpers
def gps_time(t_ns: int, leap_seconds: int = GPS_LEAP_SECONDS) -> tuple[int, int]:
    """UNIX time (integer ns, UTC) -> (GPS week, milliseconds into the week); GPS time = UTC + leap seconds."""
    gps_ms = (int(t_ns) // 1_000_000) - GPS_UNIX_EPOCH_OFFSET_S * 1000 + int(leap_seconds) * 1000
    if gps_ms < 0:
        return 0, 0
    week, ms = divmod(gps_ms, SECONDS_PER_WEEK * 1000)
    return int(week), int(ms)


def enu_to_ned_cov(cov_enu: np.ndarray) -> np.ndarray:
    """3x3 (or 2x2 horizontal) covariance ENU -> NED: ``R @ C @ R.T`` (2x2: the upper-left block of R)."""
    c = np.asarray(cov_enu, dtype=float)
    R = R_NED2ENU if c.shape == (3, 3) else R_NED2ENU[:2, :2]
    return R @ c @ R.T


def cov6_upper(cov6: np.ndarray) -> list[float]:
    """float[6, 6] -> the 21 floats of its upper-right triangle, row-major (MAVLink covariance arrays)."""
    c = np.asarray(cov6, dtype=float)
    return [float(c[i, j]) for i in range(6) for j in range(i, 6)]


def _status_fix_type(est: MavEstimate, cfg: SinkConfig) -> int:
    if not est.has_position:
        return GPS_FIX_TYPE_NO_FIX
    if est.status in _POSITION_STATUSES_OK:
        return GPS_FIX_TYPE_3D_FIX
    if est.status in _POSITION_STATUSES_DEGRADED:
        return cfg.degraded_fix_type
    return GPS_FIX_TYPE_NO_FIX


def _has_local_position(est: MavEstimate, cfg: SinkConfig) -> bool:
    """A local position worth sending: x/y known and a status that GPS_INPUT would send as a fix."""
    return est.x_m is not None and est.y_m is not None and _status_fix_type(est, cfg) >= GPS_FIX_TYPE_2D_FIX


def _deg_e7(v: float) -> int:
    return int(round(v * 1e7))


# ============================================================================================== encoders
def gps_input_fields(est: MavEstimate, cfg: SinkConfig = SinkConfig()) -> dict:
    """GPS_INPUT (#232) fields of an estimate.

    ``time_usec`` = ``t_ns`` / 1000 (UNIX epoch), ``time_week``/``time_week_ms`` its GPS time; ``lat``/``lon``
    degE7; ``alt`` m AMSL; ``vn``/``ve``/``vd`` m/s NED; ``horiz_accuracy`` = 1-sigma along the covariance's major
    axis; ``hdop`` = that / ``uere_m``; ``vert_accuracy``/``vdop`` from ``vert_sigma_m``; ``speed_accuracy`` =
    ``velocity_sigma_mps``. Whatever is unknown is flagged in ``ignore_flags`` (and its value set to 0, or
    UINT16_MAX for a DOP).
    """
    fix = _status_fix_type(est, cfg)
    week, week_ms = gps_time(est.t_ns, cfg.leap_seconds)
    f = dict(time_usec=int(est.t_ns) // 1000, gps_id=cfg.gps_id, time_week_ms=week_ms, time_week=week,
             fix_type=fix, lat=0, lon=0, alt=0.0, hdop=DOP_UNKNOWN, vdop=DOP_UNKNOWN, vn=0.0, ve=0.0, vd=0.0,
             speed_accuracy=0.0, horiz_accuracy=0.0, vert_accuracy=0.0, satellites_visible=0, yaw=0)
    if fix < GPS_FIX_TYPE_2D_FIX:
        f["ignore_flags"] = IGNORE_ALL
        return f
    flags = 0
    f["lat"], f["lon"] = _deg_e7(est.lat), _deg_e7(est.lon)
    f["satellites_visible"] = cfg.satellites
    if est.alt_amsl_m is not None:
        f["alt"] = float(est.alt_amsl_m)
    else:
        flags |= IGNORE_ALT
    sh = est.horizontal_sigma_m
    if math.isfinite(sh):
        f["horiz_accuracy"] = sh
        f["hdop"] = sh / cfg.uere_m
    else:
        flags |= IGNORE_HORIZONTAL_ACCURACY | IGNORE_HDOP
    if est.vert_sigma_m is not None:
        f["vert_accuracy"] = float(est.vert_sigma_m)
        f["vdop"] = float(est.vert_sigma_m) / cfg.uere_m
    else:
        flags |= IGNORE_VERTICAL_ACCURACY | IGNORE_VDOP
    if est.velocity_en is not None:
        f["ve"], f["vn"] = est.velocity_en
    else:
        flags |= IGNORE_VEL_HORIZ
    if est.velocity_up is not None and est.velocity_en is not None:
        f["vd"] = -float(est.velocity_up)
    else:
        flags |= IGNORE_VEL_VERT
    if est.velocity_sigma_mps is not None and est.velocity_en is not None:
        f["speed_accuracy"] = float(est.velocity_sigma_mps)
    else:
        flags |= IGNORE_SPEED_ACCURACY
    if cfg.send_yaw and est.heading_deg is not None:
        cdeg = int(round(est.heading_deg * 100.0)) % 36000
        f["yaw"] = 36000 if cdeg == 0 else cdeg
    f["ignore_flags"] = flags
    return f


def _pose_cov6(est: MavEstimate) -> np.ndarray:
    """6x6 pose covariance (x, y, z NED; roll, pitch, yaw): NaN where unknown."""
    c = np.full((6, 6), math.nan)
    c[:3, :3] = 0.0
    if est.cov_en is not None:
        c[:2, :2] = enu_to_ned_cov(est.cov_en)
    else:
        s2 = est.horizontal_sigma_m ** 2
        c[0, 0] = c[1, 1] = s2 if math.isfinite(s2) else math.nan
    c[2, 2] = math.nan if est.vert_sigma_m is None else float(est.vert_sigma_m) ** 2
    return c


def _local_ned(est: MavEstimate) -> tuple[float, float, float]:
    n, e, d = R_NED2ENU @ np.array([est.x_m, est.y_m, 0.0 if est.height_agl_m is None else est.height_agl_m])
    return float(n), float(e), float(d)


def vision_position_fields(est: MavEstimate, cfg: SinkConfig = SinkConfig(), *, reset_counter: int = 0) -> dict | None:
    """VISION_POSITION_ESTIMATE (#102) fields, or None for an estimate without a usable position.

    ``x``/``y``/``z``: NED metres in the run's local frame (x north = SkyFix y, y east = SkyFix x, z down =
    -height above the map's ground, 0 when unknown); ``roll``/``pitch``/``yaw``: ``attitude_rpy_ned`` or NaN;
    ``covariance``: the 21-float upper triangle of the 6x6 pose covariance (x, y, z, roll, pitch, yaw), the
    horizontal block rotated to NED, NaN where unknown (z without ``vert_sigma_m``, the angles).
    """
    if not _has_local_position(est, cfg):
        return None
    x, y, z = _local_ned(est)
    rpy = est.attitude_rpy_ned or (math.nan, math.nan, math.nan)
    return dict(usec=int(est.t_ns) // 1000, x=x, y=y, z=z, roll=rpy[0], pitch=rpy[1], yaw=rpy[2],
                covariance=cov6_upper(_pose_cov6(est)), reset_counter=int(reset_counter) % 256)


def odometry_fields(est: MavEstimate, cfg: SinkConfig = SinkConfig(), *, reset_counter: int = 0) -> dict | None:
    """ODOMETRY (#331) fields, or None for an estimate without a usable position.

    ``frame_id`` = ``child_frame_id`` = ``cfg.odometry_frame`` (MAV_FRAME_LOCAL_NED): pose and velocity in the
    north-aligned local NED frame; ``q`` = (w, x, y, z) of body FRD -> NED from ``attitude_rpy_ned`` (NaN when
    unknown); ``vx``/``vy``/``vz`` NED m/s (NaN when unknown); body rates NaN; ``pose_covariance`` as in
    :func:`vision_position_fields`, ``velocity_covariance`` the diagonal ``velocity_sigma_mps^2`` on vx, vy (NaN
    when unknown, first element NaN without velocity); ``estimator_type`` VISION; ``quality`` -1 unless OK (100)
    or degraded (50).
    """
    if not _has_local_position(est, cfg):
        return None
    x, y, z = _local_ned(est)
    if est.attitude_rpy_ned is not None:
        qx, qy, qz, qw = matrix_to_quaternion(rotation_from_rpy(*est.attitude_rpy_ned))
        q = [qw, qx, qy, qz]
    else:
        q = [math.nan] * 4
    nan = math.nan
    vel_cov = np.full((6, 6), nan)
    if est.velocity_en is not None:
        vx, vy = est.velocity_en[1], est.velocity_en[0]
        vz = nan if est.velocity_up is None else -float(est.velocity_up)
        s2 = nan if est.velocity_sigma_mps is None else float(est.velocity_sigma_mps) ** 2
        vel_cov[:3, :3] = 0.0
        vel_cov[0, 0] = vel_cov[1, 1] = s2
        vel_cov[2, 2] = nan
    else:
        vx = vy = vz = nan
    quality = 100 if est.status in _POSITION_STATUSES_OK else 50
    return dict(time_usec=int(est.t_ns) // 1000, frame_id=cfg.odometry_frame, child_frame_id=cfg.odometry_frame,
                x=x, y=y, z=z, q=q, vx=vx, vy=vy, vz=vz, rollspeed=nan, pitchspeed=nan, yawspeed=nan,
                pose_covariance=cov6_upper(_pose_cov6(est)), velocity_covariance=cov6_upper(vel_cov),
                reset_counter=int(reset_counter) % 256, estimator_type=cfg.estimator_type, quality=quality)


# ============================================================================================== velocity
class VelocityFromTrack:
    """Ground velocity of a track by differences of local positions ``window_s`` apart (when the estimate carries
    none). The sigma is ``sqrt(var_now + var_then) / dt`` per axis from the horizontal sigmas: an upper bound
    (the filter's positions are correlated, so their difference is steadier than that)."""

    def __init__(self, window_s: float = 1.0, max_age_s: float = 3.0) -> None:
        if not (0 < window_s < max_age_s):
            raise MavlinkError(f"velocity window_s must be > 0 and below max_age_s, got {window_s!r}, {max_age_s!r}")
        self.window_ns = int(window_s * 1e9)
        self.max_age_ns = int(max_age_s * 1e9)
        self._hist: list[tuple[int, float, float, float]] = []  # t_ns, x, y, sigma

    def reset(self) -> None:
        self._hist.clear()

    def update(self, est: MavEstimate) -> tuple[tuple[float, float], float] | None:
        """Add one estimate; ((east, north) m/s, sigma m/s) or None while there is no base ``window_s`` back."""
        if est.x_m is None or est.y_m is None or not est.has_position:
            self.reset()
            return None
        s = est.horizontal_sigma_m
        self._hist = [h for h in self._hist if 0 <= est.t_ns - h[0] <= self.max_age_ns]
        self._hist.append((est.t_ns, float(est.x_m), float(est.y_m), s))
        base = None
        for h in self._hist:
            if est.t_ns - h[0] >= self.window_ns:
                base = h  # the newest one at least window_s back
        if base is None:
            return None
        dt = (est.t_ns - base[0]) * 1e-9
        v = ((est.x_m - base[1]) / dt, (est.y_m - base[2]) / dt)
        sig = math.sqrt(s * s + base[3] * base[3]) / dt
        return v, sig


# ============================================================================================== sink
@dataclass
class SinkCounters:
    offered: int = 0
    sent: int = 0
    rate_skipped: int = 0
    withheld: int = 0  # VISION/ODOMETRY estimates without a usable position
    send_errors: int = 0
    resets: int = 0
    by_fix_type: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dict(offered=self.offered, sent=self.sent, rate_skipped=self.rate_skipped, withheld=self.withheld,
                    send_errors=self.send_errors, resets=self.resets, by_fix_type=dict(self.by_fix_type))


class MavlinkSink:
    """Send estimates as one MAVLink message kind, at most ``rate_hz`` times a second.

    Args:
        link: a :class:`~runtime.mavlink.link.MavlinkLink` (or anything with ``encode(name, fields)`` and ``send``).
        message: ``"gps_input"``, ``"vision"`` (VISION_POSITION_ESTIMATE) or ``"odometry"``.
        rate_hz: ceiling rate (> 0): an estimate offered less than ``1/rate_hz`` after the last one sent is skipped
            (``rate_skipped``). Measured on ``clock_ns`` (monotonic by default; inject a fake clock in tests).
        config: :class:`SinkConfig`.
        velocity: a :class:`VelocityFromTrack` for estimates without a velocity (default one; None: none).
        heartbeat: send the link's heartbeat when due at each :meth:`offer`.
    """

    def __init__(self, link, message: str = "gps_input", *, rate_hz: float = 5.0, config: SinkConfig = SinkConfig(),
                 clock_ns: Callable[[], int] = time.monotonic_ns, velocity: VelocityFromTrack | None = None,
                 heartbeat: bool = True, reset_jump_m: float = 50.0) -> None:
        if message not in MESSAGES:
            raise MavlinkError(f"unknown MAVLink output message {message!r}; expected one of {', '.join(MESSAGES)} "
                               "(gps_input: ArduPilot GPS_TYPE=MAV; vision/odometry: PX4 EKF2 external vision)")
        if isinstance(rate_hz, bool) or not isinstance(rate_hz, (int, float)) or not (0 < rate_hz <= 1000):
            raise MavlinkError(f"MAVLink output rate must be a number of Hz in (0, 1000], got {rate_hz!r}")
        self.link = link
        self.message = message
        self.rate_hz = float(rate_hz)
        self.period_ns = int(round(1e9 / self.rate_hz))
        self.config = config
        self.clock_ns = clock_ns
        self.velocity = velocity if velocity is not None else VelocityFromTrack()
        self.heartbeat = heartbeat
        self.reset_jump_m = float(reset_jump_m)
        self.counters = SinkCounters()
        self.reset_counter = 0
        self._last_sent_ns: int | None = None
        self._last_local: tuple[float, float] | None = None
        self._had_gap = False

    def encode(self, est: MavEstimate):
        """(message name, fields dict) of one estimate, or None when this message kind has nothing to say."""
        if est.velocity_en is None and self.velocity is not None:
            v = self.velocity.update(est)
            if v is not None:
                from dataclasses import replace

                est = replace(est, velocity_en=v[0], velocity_sigma_mps=est.velocity_sigma_mps or v[1])
        if self.message == "gps_input":
            return "GPS_INPUT", gps_input_fields(est, self.config)
        if not _has_local_position(est, self.config):
            self._had_gap = True
            self._last_local = None
            return None
        jump = (self._last_local is not None and math.hypot(est.x_m - self._last_local[0],
                                                            est.y_m - self._last_local[1]) > self.reset_jump_m)
        if self._had_gap or jump:
            if self._last_sent_ns is not None:
                self.reset_counter = (self.reset_counter + 1) % 256
                self.counters.resets += 1
            self._had_gap = False
        self._last_local = (float(est.x_m), float(est.y_m))
        if self.message == "vision":
            return "VISION_POSITION_ESTIMATE", vision_position_fields(est, self.config,
                                                                      reset_counter=self.reset_counter)
        return "ODOMETRY", odometry_fields(est, self.config, reset_counter=self.reset_counter)

    def offer(self, est: MavEstimate) -> bool:
        """Send ``est`` if the rate allows; True when a message went out."""
        if not isinstance(est, MavEstimate):
            raise MavlinkError(f"MavlinkSink.offer takes a MavEstimate (estimate_from_record), got "
                               f"{type(est).__name__}")
        c = self.counters
        c.offered += 1
        if self.heartbeat and hasattr(self.link, "heartbeat_if_due"):
            self.link.heartbeat_if_due()
        now = self.clock_ns()
        if self._last_sent_ns is not None and now - self._last_sent_ns < self.period_ns:
            c.rate_skipped += 1
            if self.velocity is not None and est.velocity_en is None:
                self.velocity.update(est)  # keep the difference base fresh
            return False
        encoded = self.encode(est)
        if encoded is None:
            c.withheld += 1
            return False
        name, fields = encoded
        if not self.link.send(self.link.encode(name, fields)):
            c.send_errors += 1
            return False
        self._last_sent_ns = now
        c.sent += 1
        if name == "GPS_INPUT":
            c.by_fix_type[fields["fix_type"]] = c.by_fix_type.get(fields["fix_type"], 0) + 1
        return True
