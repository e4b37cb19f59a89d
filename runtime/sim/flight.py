"""``simulate(config)``: fly a camera over an orthophoto and write what the sensors would have recorded as a ROS1 bag.

Bag layout (standard messages; header stamp = record time, integer ns from ``config.start_time_ns``)
------------------------------------------------------------------------------------------------------
==============================  ===========================  =======================  ==================================
topic                           type                         rate                     content
==============================  ===========================  =======================  ==================================
/camera/image_raw/compressed    sensor_msgs/CompressedImage  camera_rate_hz (5)      JPEG, RGB frame rendered at the
                                                                                      true pose (distortion, photometry)
/camera/camera_info             sensor_msgs/CameraInfo       one per frame            the camera file's intrinsics
/gps/fix                        sensor_msgs/NavSatFix        gps_rate_hz (5)          truth + noise + bias (+ spoof,
                                                                                      + drag); absent in outages; ENU
                                                                                      diagonal covariance (nominal
                                                                                      sigma); noise white or
                                                                                      Gauss-Markov (gps_noise_tau_s)
/gps/vel                        geometry_msgs/               with every /gps/fix      true velocity (ENU m/s in
                                TwistWithCovarianceStamped   (same stamp)             twist.linear) + white noise of
                                                                                      gps_velocity_sigma_mps (0.3);
                                                                                      covariance diagonal = its
                                                                                      square; absent in outages; a
                                                                                      spoof moves positions only
                                                                                      (velocity stays true + noise);
                                                                                      a drag adds its velocity; no
                                                                                      topic if gps_velocity is False
/imu/data                       sensor_msgs/Imu              imu_rate_hz (50)         orientation = R_body2world (ENU,
                                                                                      FLU body), body rates, specific
                                                                                      force incl. gravity (+ bias,
                                                                                      scale error); imu_frame ned_frd:
                                                                                      R_FRD2NED, FRD rates and force
                                                                                      (frame_id imu_frd); stamps +
                                                                                      imu_time_offset_s
/ground_truth/fix               sensor_msgs/NavSatFix        at every camera frame    true position (covariance 0)
/ground_truth/pose              geometry_msgs/PoseStamped    at every camera frame    true pose in the local ENU frame
                                                                                      named by its frame_id
==============================  ===========================  =======================  ==================================

``/ground_truth/pose`` frame: origin at the first ground-truth fix projected to the ground (its latitude/longitude,
altitude = ground elevation); x east, y north (transverse Mercator centred there), z up = height above ground. Its
``header.frame_id`` is ``enu@LAT0,LON0,ALT0`` (see :mod:`runtime.truth_frame`). Frame ids: ``camera`` (OpenCV
optical frame), ``gps``, ``imu`` (body FLU), ``ground_truth``.

Motion: a C2-smooth constant-speed track (:mod:`runtime.sim.trajectory`) at constant height ``altitude_m`` above the
ground (altitude = ground_elevation_m + altitude_m), kept inside the orthophoto's valid imagery with a margin of the
camera footprint plus ``margin_m`` (planned for a level camera, then widened until every frame's footprint at its true,
banked attitude sees only valid imagery). Attitude: yaw along the velocity; by ``vehicle``: ``multicopter`` the
body z axis along the thrust (banking into turns, ``bank_into_turns``), ``fixed_wing`` a coordinated turn (roll
``atan(v yaw_rate / g)`` into the turn about the velocity axis, :data:`FIXED_WING_PITCH_DEG` nose up), ``ground``
level; all plus a smooth roll/pitch wobble of ``attitude_jitter_deg`` rms. The IMU reports that attitude with smooth
errors, body rates from its derivative and the specific force ``R_body2world^T (a + g e_z)``, with white noise
(rotated by the attitude without the wobble when ``imu_accel_sees_attitude`` is False), scale error
``(1 + e_i)`` per axis and a constant bias (``rng(seed, STREAM_IMU_FAULT)``).

Simulated sensor faults and their SimConfig fields
--------------------------------------------------
=========================  ==========================================================================================
field                      effect
=========================  ==========================================================================================
vehicle                    multicopter (default) / fixed_wing / ground nominal attitude (see above)
imu_accel_bias_mps2        constant accelerometer bias of that magnitude (m/s^2), body frame, random direction
imu_accel_scale_error      accelerometer reports (1 + e_i) f_i, e_i = +-value per axis (signs by seed)
imu_accel_sees_attitude    False: specific force of the attitude without the wobble (gravity leaks g sin(wobble))
imu_frame                  enu_flu (default) or ned_frd: orientation R_FRD2NED, rates and specific force in FRD
imu_time_offset_s          IMU stamps = true sample time + offset (seconds, |offset| <= 1)
gps_drags                  START:END:MPS windows: position pulled away at MPS m/s (and /gps/vel moved), gone at END
gps_velocity               False: no /gps/vel topic
gps_noise_tau_s            > 0: horizontal GPS noise Gauss-Markov with that correlation time (s), same sigma
=========================  ==========================================================================================
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from calibration.rotations import R_FRD2FLU, R_NED2ENU, matrix_to_quaternion, rotation_from_rpy

from ..errors import SimulationError
from .config import SimConfig
from ..truth_frame import TruthFrame
from .gnss import GnssErrorModel, simulate_errors
from .noise import STREAM_ATTITUDE, STREAM_IMU, STREAM_IMU_FAULT, STREAM_TRAJECTORY, SmoothNoise, rng
from .photometric import PhotometricModel
from .trajectory import (
    GRAVITY,
    Area,
    BSplinePath,
    Trajectory,
    densify,
    flight_area,
    lawnmower_polyline,
    load_waypoints,
    loop_polyline,
    max_turn_deg,
    outside_points,
    racetrack_polyline,
    racetrack_radius,
    random_polyline,
    rounding_distance,
    usable_mask,
)

TOPIC_IMAGE = "/camera/image_raw/compressed"
TOPIC_CAMERA_INFO = "/camera/camera_info"
TOPIC_GPS = "/gps/fix"
TOPIC_GPS_VEL = "/gps/vel"
TOPIC_IMU = "/imu/data"
TOPIC_TRUTH_FIX = "/ground_truth/fix"
TOPIC_TRUTH_POSE = "/ground_truth/pose"
TOPICS = (TOPIC_IMAGE, TOPIC_CAMERA_INFO, TOPIC_GPS, TOPIC_IMU, TOPIC_TRUTH_FIX, TOPIC_TRUTH_POSE, TOPIC_GPS_VEL)

FIXED_WING_PITCH_DEG = 3.0  # constant nose-up pitch of a fixed-wing vehicle, degrees
# ENU <-> NED (swap x/y, flip z) and FLU <-> FRD (flip y/z): both symmetric and their own inverse
_ENU_NED = R_NED2ENU
_FLU_FRD = R_FRD2FLU

# order of messages sharing a timestamp
_PRIO = {"truth": 0, "imu": 1, "gps": 2, "info": 3, "image": 4}


# ============================================================================================== attitude
def _log_so3(R: np.ndarray) -> np.ndarray:
    """float64[n, 3] rotation vectors of float[n, 3, 3] rotations (angles well below pi)."""
    cos = np.clip((np.trace(R, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    ang = np.arccos(cos)
    v = np.stack([R[:, 2, 1] - R[:, 1, 2], R[:, 0, 2] - R[:, 2, 0], R[:, 1, 0] - R[:, 0, 1]], axis=1)
    s = np.sin(ang)
    scale = np.where(s > 1e-9, ang / np.maximum(2.0 * s, 1e-300), 0.5)
    return v * scale[:, None]


def _quaternions(R: np.ndarray) -> np.ndarray:
    """float64[n, 4] (x, y, z, w), w >= 0, of float[n, 3, 3] rotations."""
    return np.array([matrix_to_quaternion(r) for r in R])


def yaw_rate(kin) -> np.ndarray:
    """float64[n] d(yaw)/dt, rad/s (counter-clockwise positive) of :class:`Kinematics` ``kin``."""
    v, a = kin.velocity, kin.acceleration
    return (v[:, 0] * a[:, 1] - v[:, 1] * a[:, 0]) / np.maximum(v[:, 0] ** 2 + v[:, 1] ** 2, 1e-12)


def fixed_wing_roll(kin) -> np.ndarray:
    """float64[n] roll (rad, REP-103: positive = right wing down) of a coordinated turn: ``-atan(v yaw_rate / g)``,
    i.e. banked into the turn (a left turn, yaw_rate > 0, lowers the left wing)."""
    speed = np.linalg.norm(kin.velocity[:, :2], axis=1)
    return -np.arctan(speed * yaw_rate(kin) / GRAVITY)


def _fixed_wing(kin) -> np.ndarray:
    """float64[n, 3, 3] R_body2world of a coordinated turn: ``Rz(yaw) Rx(roll) Ry(-pitch)``, the roll about the
    (horizontal) velocity axis, :data:`FIXED_WING_PITCH_DEG` nose up."""
    n = len(kin.t_s)
    zeros = np.zeros(n)
    pitch = np.full(n, -math.radians(FIXED_WING_PITCH_DEG))  # REP-103: positive pitch = nose down
    return rotation_from_rpy(fixed_wing_roll(kin), zeros, kin.yaw) @ rotation_from_rpy(zeros, pitch, zeros)


def to_ned_frd(R_flu2enu: np.ndarray, omega_flu: np.ndarray, accel_flu: np.ndarray):
    """Express an IMU's ENU/FLU output in NED/FRD (PX4): (R_frd2ned float64[n, 3, 3], omega_frd float64[n, 3] rad/s,
    accel_frd float64[n, 3] m/s^2). Exact (signed permutations); :func:`from_ned_frd` inverts it."""
    R = _ENU_NED @ np.asarray(R_flu2enu, dtype=float) @ _FLU_FRD
    return R, np.asarray(omega_flu, dtype=float) @ _FLU_FRD, np.asarray(accel_flu, dtype=float) @ _FLU_FRD


def from_ned_frd(R_frd2ned: np.ndarray, omega_frd: np.ndarray, accel_frd: np.ndarray):
    """The inverse of :func:`to_ned_frd`: (R_flu2enu, omega_flu, accel_flu)."""
    R = _ENU_NED @ np.asarray(R_frd2ned, dtype=float) @ _FLU_FRD
    return R, np.asarray(omega_frd, dtype=float) @ _FLU_FRD, np.asarray(accel_frd, dtype=float) @ _FLU_FRD


def accel_faults(seed: int, bias_mps2: float, scale_error: float) -> tuple[np.ndarray, np.ndarray]:
    """(bias float64[3] m/s^2 body frame, magnitude ``bias_mps2`` in a random direction; scale errors float64[3],
    ``+-scale_error`` per axis), drawn from ``rng(seed, STREAM_IMU_FAULT)``. The accelerometer reports
    ``(1 + scale) * f + bias`` (+ noise)."""
    g = rng(seed, STREAM_IMU_FAULT)
    d = g.standard_normal(3)
    signs = np.where(g.integers(0, 2, size=3) == 1, 1.0, -1.0)
    return bias_mps2 * d / np.linalg.norm(d), scale_error * signs


class FlightModel:
    """The true motion of one flight: trajectory + attitude model, evaluable at any time (seconds from start)."""

    def __init__(self, trajectory: Trajectory, config: SimConfig) -> None:
        self.trajectory = trajectory
        self.config = config
        gen = rng(config.seed, STREAM_ATTITUDE)
        self.jitter = SmoothNoise.make(
            gen, math.radians(config.attitude_jitter_deg), min(0.05, config.attitude_jitter_hz / 2),
            config.attitude_jitter_hz, channels=2,
        )

    def attitude(self, t_s) -> np.ndarray:
        """float64[n, 3, 3] true R_body2world at ``t_s`` float[n]: the vehicle's nominal attitude times the wobble."""
        kin = self.trajectory.sample(t_s)
        n = len(kin.t_s)
        j = self.jitter(kin.t_s)
        R_jit = rotation_from_rpy(j[:, 0], j[:, 1], np.zeros(n))
        return self._nominal(kin) @ R_jit

    def nominal_attitude(self, t_s) -> np.ndarray:
        """float64[n, 3, 3] R_body2world at ``t_s`` float[n] without the wobble (``attitude_jitter_deg``)."""
        return self._nominal(self.trajectory.sample(t_s))

    def _nominal(self, kin) -> np.ndarray:
        n = len(kin.t_s)
        if self.config.vehicle == "fixed_wing":
            return _fixed_wing(kin)
        if self.config.vehicle == "ground":
            zeros = np.zeros(n)
            return rotation_from_rpy(zeros, zeros, kin.yaw)
        if self.config.bank_into_turns:
            thrust = kin.acceleration + np.array([0.0, 0.0, GRAVITY])
        else:
            thrust = np.tile([0.0, 0.0, 1.0], (n, 1))
        z = thrust / np.linalg.norm(thrust, axis=1, keepdims=True)
        xh = np.column_stack([np.cos(kin.yaw), np.sin(kin.yaw), np.zeros(n)])
        y = np.cross(z, xh)
        y /= np.linalg.norm(y, axis=1, keepdims=True)
        x = np.cross(y, z)
        return np.stack([x, y, z], axis=2)  # columns are the body axes in world coordinates

    def body_rates(self, t_s, h: float = 1e-3) -> np.ndarray:
        """float64[n, 3] angular velocity in the body frame, rad/s (central difference of the attitude)."""
        t = np.asarray(t_s, dtype=float)
        Ra, Rb = self.attitude(t - h), self.attitude(t + h)
        return _log_so3(np.transpose(Ra, (0, 2, 1)) @ Rb) / (2.0 * h)


# ============================================================================================== summary
@dataclass(frozen=True)
class SimSummary:
    """What :func:`simulate` wrote. Distances metres, times seconds, sizes bytes."""

    out: str
    duration_s: float
    counts: dict = field(default_factory=dict)
    bag_bytes: int = 0
    wall_s: float = 0.0
    trajectory: str = ""
    path_length_m: float = 0.0
    max_accel_mps2: float = 0.0
    area: tuple = ()
    footprint_radius_m: float = 0.0
    start_lat: float = 0.0
    start_lon: float = 0.0
    truth_frame_id: str = ""
    camera: str = ""
    invalid_pixel_fraction: float = 0.0
    gps_outage_fixes: int = 0
    gps_spoofed_fixes: int = 0
    gps_dragged_fixes: int = 0
    vehicle: str = "multicopter"

    def to_text(self) -> str:
        lines = [
            f"wrote {self.out} ({self.bag_bytes / 1e6:.1f} MB) in {self.wall_s:.1f} s",
            f"  flight: {self.trajectory}, {self.duration_s:g} s, {self.path_length_m:.0f} m, max acceleration "
            f"{self.max_accel_mps2:.2f} m/s^2, start {self.start_lat:.7f}, {self.start_lon:.7f}",
            f"  camera: {self.camera}, footprint radius {self.footprint_radius_m:.1f} m"
            + (f", {100 * self.invalid_pixel_fraction:.2f}% pixels outside imagery" if self.invalid_pixel_fraction else ""),
            f"  GPS: {self.gps_outage_fixes} fixes dropped in outages, {self.gps_spoofed_fixes} spoofed"
            + (f", {self.gps_dragged_fixes} dragged" if self.gps_dragged_fixes else ""),
            f"  truth frame: {self.truth_frame_id}",
        ]
        lines += [f"  {topic:32s} {n:6d} msgs" for topic, n in self.counts.items()]
        return "\n".join(lines)


# ============================================================================================== set-up
def _times_ns(config: SimConfig, rate_hz: float) -> np.ndarray:
    n = max(1, int(math.ceil(config.duration_s * rate_hz - 1e-9)))
    return config.start_time_ns + np.round(np.arange(n) * (1e9 / rate_hz)).astype(np.int64)


def footprint_radius(camera, mount, height_m: float, tilt_rad: float) -> tuple[float, float]:
    """(largest distance from the nadir point to the ground footprint over roll/pitch up to ``tilt_rad``,
    across-track width of the level footprint), metres."""
    from calibration.errors import GeometryError
    from calibration.geometry import Attitude
    from calibration.view import ground_footprint

    radius = 0.0
    try:
        level = ground_footprint(camera, Attitude(0.0, 0.0, 0.0), height_m, mount)
        for r, p in ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1)):
            s = 1.0 if r == 0 or p == 0 else math.sqrt(0.5)
            fp = ground_footprint(camera, Attitude(r * s * tilt_rad, p * s * tilt_rad, 0.0), height_m, mount)
            radius = max(radius, float(np.max(np.linalg.norm(fp, axis=1))))
    except GeometryError as exc:
        raise SimulationError(f"the camera does not see the ground properly from {height_m:g} m: {exc}") from exc
    radius = max(radius, float(np.max(np.linalg.norm(level, axis=1))))
    width_across = float(np.ptp(level[:, 1]))  # yaw 0: body left = north
    return radius, width_across


def build_trajectory(config: SimConfig, ortho, margin_m: float, across_m: float, *, check_area: bool = True):
    """The flight's :class:`Trajectory`, its largest acceleration (m/s^2) and the usable area (:class:`Area` or None).

    ``check_area=False`` skips the (conservative) check of waypoints against the circular usable area; the caller then
    checks every frame's footprint exactly (:func:`footprint_overshoot`).

    Raises:
        SimulationError: the orthophoto's valid area is too small for the footprint, a racetrack's turns do not fit
        at this speed (the message names the speed that fits), waypoints outside it or with hairpin turns.
    """
    area, allowed = flight_area(ortho, margin_m)
    v, T = config.speed_mps, config.duration_s
    need = v * T
    d0 = rounding_distance(v, config.max_accel_mps2)
    x0, y0, x1, y1 = ortho.bounds
    if config.trajectory != "waypoints":
        min_size = 10.0
        if area is None or area.width < min_size or area.height < min_size:
            raise SimulationError(
                f"the orthophoto ({x1 - x0:.0f} x {y1 - y0:.0f} m, {100 * ortho.mask.mean():.0f}% valid) leaves no room "
                f"for this flight: the camera footprint at {config.altitude_m:g} m reaches {margin_m:.0f} m from the "
                "vehicle (more when it banks in turns; plus margin_m), so the vehicle must stay that far inside valid "
                f"imagery, and turning at {v:g} m/s takes a radius of about {v * v / config.max_accel_mps2:.0f} m; "
                "fly lower (--altitude), slower (--speed), use a narrower camera or a larger orthophoto"
            )
    if config.trajectory == "racetrack":
        turn_radius = racetrack_radius(area, v, config.max_accel_mps2, margin_m)

    def polyline(length: float) -> np.ndarray:
        g = rng(config.seed, STREAM_TRAJECTORY)
        if config.trajectory == "lawnmower":
            spacing = across_m * (1.0 - config.lawnmower_overlap)
            min_spacing = 2.5 * v * v / config.max_accel_mps2  # U-turn radius v^2/a, with room for the spline
            return lawnmower_polyline(area, spacing, length, corner=int(g.integers(4)), min_spacing=min_spacing)
        if config.trajectory == "random":
            return random_polyline(area, g, length, min_leg=d0)
        if config.trajectory == "racetrack":
            return racetrack_polyline(area, turn_radius, length, clockwise=bool(g.integers(2)),
                                      step=min(2.0, turn_radius / 8.0))
        poly = loop_polyline(pts, length)
        turn, k = max_turn_deg(poly)
        if turn > 150.0:
            where = (
                f"at waypoint {k}" if k < len(pts) - 1 else
                "where the path loops back to its first waypoint (waypoints are flown again while the flight lasts)"
            )
            raise SimulationError(
                f"the waypoint path turns by {turn:.0f} degrees {where}: a hairpin that a vehicle at constant speed "
                "cannot follow; add a waypoint to make a wider turn"
            )
        return poly

    if config.trajectory == "waypoints":
        pts = load_waypoints(config.waypoints, ortho.frame)
        bad = outside_points(ortho, allowed, pts)
        if bad.any() and check_area:
            i = int(np.flatnonzero(bad)[0])
            raise SimulationError(
                f"waypoint {i} ({pts[i, 0]:.0f}, {pts[i, 1]:.0f} m from the map centre) is outside the usable "
                f"area: the camera footprint needs {margin_m:.0f} m of valid imagery around the vehicle "
                f"(orthophoto extent x {x0:.0f}..{x1:.0f}, y {y0:.0f}..{y1:.0f} m)"
            )
    length = need * 1.05 + 20.0
    poly = polyline(length)
    # round the corners; widen the rounding where the acceleration exceeds the limit
    best = None
    d = d0
    t_check = np.arange(0.0, T, 0.1)
    for _ in range(4):
        path = BSplinePath(densify(poly, d))
        while path.length < need * 1.01 + 5.0:  # the rounded corners are shorter than the polyline
            length *= 1.5
            poly = polyline(length)
            path = BSplinePath(densify(poly, d))
        traj = Trajectory(path, v, config.altitude_m, T, config.trajectory)
        amax = float(np.max(np.linalg.norm(traj.sample(t_check).acceleration, axis=1)))
        if best is None or amax < best[1]:
            best = (traj, amax)
        if amax <= 1.05 * config.max_accel_mps2:
            break
        d *= min(2.0, amax / config.max_accel_mps2)
    traj, amax = best
    kin = traj.sample(np.arange(0.0, T + 1e-9, min(0.2, 1.0 / v)))
    bad = outside_points(ortho, allowed, kin.position[:, :2])
    if bad.any() and check_area:
        i = int(np.flatnonzero(bad)[0])
        x, y = kin.position[i, :2]
        raise SimulationError(
            f"the {config.trajectory} path leaves the usable area at t = {kin.t_s[i]:.1f} s ({x:.0f}, {y:.0f} m from "
            f"the map centre): the camera footprint needs {margin_m:.0f} m of valid imagery around the vehicle; "
            "move the waypoints inwards, fly lower or shorten the flight"
        )
    return traj, amax, area


def footprint_overshoot(config: SimConfig, ortho, camera, mount, traj: Trajectory, model: FlightModel):
    """How far the camera footprint (true attitude, every camera frame) reaches beyond valid imagery.

    Returns:
        (metres: the largest distance from a footprint point to the nearest valid pixel, 0 when every frame sees
        only valid imagery; the time in seconds where it happens).
    """
    import cv2
    from calibration.geometry import Attitude
    from calibration.view import ground_footprint

    t = np.arange(0.0, config.duration_s, 1.0 / config.camera_rate_hz)
    kin = traj.sample(t)
    R = model.attitude(t)
    pts = []
    for i in range(len(t)):
        fp = ground_footprint(camera, Attitude.from_matrix(R[i]), float(kin.position[i, 2]), mount, points_per_edge=4)
        pts.append(fp + kin.position[i, :2])
    xy = np.concatenate(pts)
    owner = np.repeat(np.arange(len(t)), [len(p) for p in pts])
    valid = np.asarray(ortho.mask, dtype=bool)
    out = outside_points(ortho, valid, xy)
    if not out.any():
        return 0.0, 0.0
    # distance (pixels) from each invalid pixel to the nearest valid one; beyond the raster add the distance to it
    dist = cv2.distanceTransform((~valid).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    h, w = valid.shape
    u = (xy[out, 0] - ortho.x_min) / ortho.gsd
    v = (ortho.y_max - xy[out, 1]) / ortho.gsd
    uc, vc = np.clip(u, 0, w - 1), np.clip(v, 0, h - 1)
    beyond = np.hypot(u - uc, v - vc)
    d = (dist[vc.astype(int), uc.astype(int)] + beyond) * ortho.gsd
    k = int(np.argmax(d))
    return float(d[k]), float(t[owner[np.flatnonzero(out)[k]]])


# ============================================================================================== planning
def _inner_radius(camera, mount, height_m: float) -> float:
    """Distance (metres) from the nadir point to the nearest edge of the level camera footprint: what every frame sees
    around the vehicle whatever its heading (0 when the camera does not look straight down)."""
    import cv2
    from calibration.geometry import Attitude
    from calibration.view import ground_footprint

    fp = ground_footprint(camera, Attitude(0.0, 0.0, 0.0), height_m, mount)
    d = cv2.pointPolygonTest(np.asarray(fp, dtype=np.float32).reshape(-1, 1, 2), (0.0, 0.0), True)
    return max(0.0, float(d))


@dataclass(frozen=True, eq=False)
class FlightPlan:
    """Where a flight goes: the trajectory, its attitude model, the largest acceleration (m/s^2), the usable area it
    was planned in (:class:`Area`; None when there is none, for waypoints), the camera footprint radius used as margin
    (metres, level camera plus wobble, plus the widening for banked turns) and how far its footprint reaches onto
    invalid imagery (metres, <= ``config.max_outside_m``)."""

    trajectory: Trajectory
    model: FlightModel
    max_accel_mps2: float
    area: Area | None
    footprint_radius_m: float
    outside_m: float = 0.0


def plan_flight(config: SimConfig, ortho, camera, mount) -> FlightPlan:
    """Plan the flight of ``config`` over ``ortho`` (a loaded orthophoto) with ``camera`` and ``mount``.

    Planned trajectories (lawnmower, racetrack, random) stay inside the valid imagery shrunk by the footprint of a
    level camera (plus the wobble and ``margin_m``); every frame's footprint is then checked at its true attitude
    (banked in turns) and the area shrunk further where it overshoots. Waypoints are the user's route, which cannot
    move: the exact per-frame footprint decides, so a straight route down a strip of imagery narrower than the
    footprint's circle is accepted where every frame sees valid imagery (or at most ``max_outside_m`` metres of
    nodata, rendered as such); when refused, the message adds what the circular check found (which waypoint, when).

    Raises:
        SimulationError: no room for the flight (see :func:`build_trajectory`), or the footprint cannot be kept on
        valid imagery.
    """
    wobble = 3.0 * math.radians(config.attitude_jitter_deg)
    radius, across = footprint_radius(camera, mount, config.altitude_m, wobble)
    tol = config.max_outside_m
    if config.trajectory == "waypoints":  # the user's path: it cannot move, the exact footprint decides
        margin = radius + config.margin_m
        traj, amax, area = build_trajectory(config, ortho, margin, across, check_area=False)
        # every waypoint (flown or not) needs valid imagery where any frame over it looks, whatever the heading
        inner = max(0.0, _inner_radius(camera, mount, config.altitude_m) - config.altitude_m * math.tan(wobble) - tol)
        pts = load_waypoints(config.waypoints, ortho.frame)
        bad = outside_points(ortho, usable_mask(np.asarray(ortho.mask, dtype=bool), inner / ortho.gsd), pts)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            x0, y0, x1, y1 = ortho.bounds
            raise SimulationError(
                f"waypoint {i} ({pts[i, 0]:.0f}, {pts[i, 1]:.0f} m from the map centre) is outside the usable area: "
                f"a frame over it sees at least {inner:.0f} m around it at any heading, which must be valid imagery "
                f"(orthophoto extent x {x0:.0f}..{x1:.0f}, y {y0:.0f}..{y1:.0f} m); move it inwards"
            )
        model = FlightModel(traj, config)
        over, t_over = footprint_overshoot(config, ortho, camera, mount, traj, model)
        if over <= tol:
            return FlightPlan(traj, model, amax, area, radius, over)
        exact = (f"the camera footprint reaches {over:.1f} m onto invalid imagery at t = {t_over:.1f} s (checked frame "
                 f"by frame at the true attitude; max_outside_m = {tol:g})")
        try:
            build_trajectory(config, ortho, margin, across)  # the circular check names the waypoint or the time
        except SimulationError as exc:
            raise SimulationError(f"{exc}; {exact}") from None
        raise SimulationError(f"{exact}; move the waypoints inwards, fly lower or allow more (max_outside_m)")
    extra = 0.0
    for _ in range(8):
        margin = radius + config.margin_m + extra
        traj, amax, area = build_trajectory(config, ortho, margin, across)
        model = FlightModel(traj, config)
        over, t_over = footprint_overshoot(config, ortho, camera, mount, traj, model)
        if over <= tol:
            return FlightPlan(traj, model, amax, area, radius + extra, over)
        extra += max(over - tol + 1.0, 5.0)
    raise SimulationError(
        f"could not keep the camera footprint inside valid imagery (at t = {t_over:.1f} s it reaches {over:.0f} m "
        f"beyond it, banking in a turn); fly lower (--altitude), slower (--speed), or use a larger orthophoto"
    )


# ============================================================================================== simulate
def simulate(config: SimConfig, *, progress=None) -> SimSummary:
    """Simulate a flight and write it to ``config.out`` (see the module docstring for the bag layout).

    Args:
        config: the flight (:class:`SimConfig`).
        progress: optional callable ``progress(frames_done, frames_total)``.
    Returns:
        :class:`SimSummary`.
    Raises:
        SimulationError, BagError, and the loaders' errors (maps.errors.GeoTiffError, calibration CameraFileError).
    """
    from calibration.camera_io import default_camera, load_camera
    from calibration.geometry import NADIR_MOUNT, Attitude, load_mount
    from calibration.view import render
    from maps.geotiff import load_orthophoto

    from ..bags import BagWriter, encode_jpeg

    wall0 = time.perf_counter()
    if not config.ortho:
        raise SimulationError("no orthophoto given: pass --ortho ORTHO.tif (any GeoTIFF, any CRS)")
    out = Path(config.out)
    if out.suffix != ".bag":
        raise SimulationError(f"the output must be a ROS1 .bag file, got {str(out)!r}")
    ortho = load_orthophoto(config.ortho)
    camera = load_camera(config.camera) if config.camera else default_camera()
    mount = load_mount(config.mount) if config.mount else NADIR_MOUNT

    # ------------------------------------------------------------------ where to fly (see plan_flight)
    plan = plan_flight(config, ortho, camera, mount)
    traj, model, amax, area = plan.trajectory, plan.model, plan.max_accel_mps2, plan.area

    # ------------------------------------------------------------------ sensor timelines
    t_cam = _times_ns(config, config.camera_rate_hz)
    t_gps = _times_ns(config, config.gps_rate_hz)
    t_imu = _times_ns(config, config.imu_rate_hz)
    s = lambda t_ns: (t_ns - config.start_time_ns) / 1e9  # noqa: E731

    # truth at the camera frames
    kin_cam = traj.sample(s(t_cam))
    R_cam = model.attitude(s(t_cam))
    q_cam = _quaternions(R_cam)
    lat_c, lon_c = ortho.frame.to_wgs84(kin_cam.position[:, 0], kin_cam.position[:, 1])
    lat_c, lon_c = np.asarray(lat_c, dtype=float), np.asarray(lon_c, dtype=float)
    alt_c = config.ground_elevation_m + kin_cam.position[:, 2]
    truth_frame = TruthFrame(float(lat_c[0]), float(lon_c[0]), config.ground_elevation_m)
    tx, ty = truth_frame.local.to_local(lat_c, lon_c)
    truth_xyz = np.column_stack([tx, ty, alt_c - truth_frame.alt0])

    # GPS
    gmodel = GnssErrorModel(
        sigma_m=config.gps_sigma_m, bias_m=config.gps_bias_m, vertical_sigma_m=config.vertical_sigma_m,
        bias_mode=config.gps_bias_mode, bias_tau_s=config.gps_bias_tau_s, outages=config.gps_outages,
        spoofs=config.gps_spoofs, velocity_sigma_mps=config.gps_velocity_sigma_mps, drags=config.gps_drags,
        noise_tau_s=config.gps_noise_tau_s,
    )
    gerr = simulate_errors(gmodel, s(t_gps), config.seed)
    kin_gps = traj.sample(s(t_gps))
    g_xy = kin_gps.position[:, :2] + gerr.error_enu[:, :2]
    lat_g, lon_g = ortho.frame.to_wgs84(g_xy[:, 0], g_xy[:, 1])
    lat_g, lon_g = np.asarray(lat_g, dtype=float), np.asarray(lon_g, dtype=float)
    alt_g = config.ground_elevation_m + kin_gps.position[:, 2] + gerr.error_enu[:, 2]
    gps_cov = gmodel.covariance_enu
    vel_g = kin_gps.velocity + gerr.velocity_error_enu  # Doppler velocity: no bias, no spoof jump (a drag's velocity)

    # IMU
    ti = s(t_imu)
    kin_imu = traj.sample(ti)
    R_imu = model.attitude(ti)
    omega = model.body_rates(ti)
    f_world = kin_imu.acceleration + np.array([0.0, 0.0, GRAVITY])
    R_force = R_imu if config.imu_accel_sees_attitude else model.nominal_attitude(ti)  # soft mount: no wobble
    f_body = np.einsum("nji,nj->ni", R_force, f_world)
    if config.imu_accel_bias_mps2 > 0 or config.imu_accel_scale_error > 0:
        bias, scale = accel_faults(config.seed, config.imu_accel_bias_mps2, config.imu_accel_scale_error)
        f_body = f_body * (1.0 + scale) + bias
    ig = rng(config.seed, STREAM_IMU)
    att_err = SmoothNoise.make(ig, 1.0, 0.005, 0.05, channels=3)(ti) * np.radians(
        [config.imu_attitude_sigma_deg, config.imu_attitude_sigma_deg, config.imu_yaw_sigma_deg]
    )
    zeros = np.zeros(len(ti))
    # reported = Rz(heading error, about world up) @ true @ R(roll, pitch errors, about the body axes)
    R_rep = rotation_from_rpy(zeros, zeros, att_err[:, 2]) @ R_imu @ rotation_from_rpy(att_err[:, 0], att_err[:, 1], zeros)
    gyro = omega + ig.standard_normal(omega.shape) * config.imu_gyro_sigma_rps
    accel = f_body + ig.standard_normal(f_body.shape) * config.imu_accel_sigma_mps2
    imu_frame_id = "imu"
    if config.imu_frame == "ned_frd":
        R_rep, gyro, accel = to_ned_frd(R_rep, gyro, accel)
        imu_frame_id = "imu_frd"
    q_imu = _quaternions(R_rep)
    t_imu_stamp = t_imu + int(round(config.imu_time_offset_s * 1e9))  # the IMU clock's stamps
    q_cov = np.diag(np.radians([config.imu_attitude_sigma_deg, config.imu_attitude_sigma_deg,
                                config.imu_yaw_sigma_deg]) ** 2)
    w_cov = np.eye(3) * config.imu_gyro_sigma_rps**2
    a_cov = np.eye(3) * config.imu_accel_sigma_mps2**2

    photo = PhotometricModel(
        config.photometric,
        config.seed,
    )

    # ------------------------------------------------------------------ write, in time order
    events = [(int(t), _PRIO["truth"], i, "truth") for i, t in enumerate(t_cam)]
    events += [(int(t), _PRIO["imu"], i, "imu") for i, t in enumerate(t_imu_stamp)]
    events += [(int(t), _PRIO["gps"], i, "gps") for i, t in enumerate(t_gps) if gerr.available[i]]
    if config.gps_velocity:  # after the fix
        events += [(int(t), _PRIO["gps"], i, "gps_vel") for i, t in enumerate(t_gps) if gerr.available[i]]
    events += [(int(t), _PRIO["info"], i, "info") for i, t in enumerate(t_cam)]
    events += [(int(t), _PRIO["image"], i, "image") for i, t in enumerate(t_cam)]
    events.sort()
    invalid = 0
    n_frames = len(t_cam)
    with BagWriter(out, overwrite=True) as bag:
        for t, _, i, kind in events:
            if kind == "truth":
                bag.write_navsatfix(TOPIC_TRUTH_FIX, t, lat_c[i], lon_c[i], alt_c[i], cov_enu=np.zeros((3, 3)),
                                    covariance_type=2, frame_id="ground_truth")
                bag.write_pose(TOPIC_TRUTH_POSE, t, truth_xyz[i], q_cam[i], frame_id=truth_frame.frame_id)
            elif kind == "imu":
                bag.write_imu(TOPIC_IMU, t, q_imu[i], gyro[i], accel[i], orientation_cov=q_cov,
                              angular_velocity_cov=w_cov, linear_acceleration_cov=a_cov, frame_id=imu_frame_id)
            elif kind == "gps":
                bag.write_navsatfix(TOPIC_GPS, t, lat_g[i], lon_g[i], alt_g[i], cov_enu=gps_cov, covariance_type=2,
                                    frame_id="gps")
            elif kind == "gps_vel":
                bag.write_velocity(TOPIC_GPS_VEL, t, vel_g[i], sigma_mps=config.gps_velocity_sigma_mps, frame_id="gps")
            elif kind == "info":
                bag.write_camera_info(TOPIC_CAMERA_INFO, t, camera, frame_id="camera")
            else:
                att = Attitude.from_matrix(R_cam[i])
                img, valid = render(ortho, camera, (float(kin_cam.position[i, 0]), float(kin_cam.position[i, 1])),
                                    float(kin_cam.position[i, 2]), att, mount=mount)
                invalid += int(valid.size - np.count_nonzero(valid))
                img = photo.apply(img, float(s(t)), i)
                bag.write_compressed_image(TOPIC_IMAGE, t, encode_jpeg(img, config.jpeg_quality), fmt="jpeg",
                                           frame_id="camera")
                if progress is not None:
                    progress(i + 1, n_frames)
        counts = {topic: bag.counts.get(topic, 0) for topic in TOPICS}
    return SimSummary(
        out=str(out),
        duration_s=config.duration_s,
        counts=counts,
        bag_bytes=out.stat().st_size,
        wall_s=time.perf_counter() - wall0,
        trajectory=config.trajectory,
        path_length_m=config.speed_mps * config.duration_s,
        max_accel_mps2=amax,
        area=(area.x_min, area.y_min, area.x_max, area.y_max) if isinstance(area, Area) else (),
        footprint_radius_m=plan.footprint_radius_m,
        start_lat=float(lat_c[0]),
        start_lon=float(lon_c[0]),
        truth_frame_id=truth_frame.frame_id,
        camera=f"{camera.width}x{camera.height} {camera.model}, hfov {camera.hfov_deg:.1f} deg",
        invalid_pixel_fraction=invalid / max(1, n_frames * camera.width * camera.height),
        gps_outage_fixes=int(np.count_nonzero(~gerr.available)),
        gps_spoofed_fixes=int(np.count_nonzero(gerr.spoofed & gerr.available)),
        gps_dragged_fixes=int(np.count_nonzero(gerr.dragged & gerr.available)),
        vehicle=config.vehicle,
    )
