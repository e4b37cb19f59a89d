"""Particle filter fusing visual retrieval candidates, a gated GPS and optional IMU yaw / velocity.

State per particle: ``(x, y, vx, vy, yaw, bias_x, bias_y)`` in local metres, m/s and ENU radians
(``float64[7, n]``; the last two are the GPS's slow error); weights
``float64[n]`` summing to 1. Motion: constant velocity with white acceleration noise, a small position random walk and
a yaw random walk (or the IMU yaw when :meth:`ParticleTracker.predict` is given one). Measurements:

* GPS: the fix measures position plus the GPS bias (two more state rows per particle, Gauss-Markov with
  ``gps_bias_m`` and ``gps_bias_tau_s``), Gaussian with the fix's own sigma; checked against the GPS's own track
  (:class:`~runtime.tracking.gps_monitor.GpsMonitor`: outliers, jumps), against the belief (NIS gate, absolute jump
  limit), and, while the camera sees the vehicle, for a bias change the model cannot explain (a drag). A continuous
  GPS that only the belief disagrees with wins after ``gps_trust_s`` unless the camera contradicts it; a faulted GPS
  (jump, drag) is used again once a window of its innovations agrees with the belief or the camera (see
  :meth:`ParticleTracker.update_gps`).
* Visual: per particle, a mixture over the candidates of ``N(pos; candidate, sigma^2 + visual_sigma_floor_m^2)``
  (times a wrapped normal on yaw when candidate yaws are known) with weights ``softmax(score / visual_temperature)``,
  mixed with a uniform outlier floor over the searched area (probability ``1 - visual_inlier_prob``), so that a wrong
  retrieval only flattens the update instead of killing the particles near the truth.

No I/O; every call is vectorised numpy over the particles (see :func:`bench_tracker`).
"""

from __future__ import annotations

import math
import time
from collections import deque

import numpy as np

from .config import TrackerConfig
from .errors import TrackingError
from .estimate import Status, TrackEstimate
from .gps_monitor import GpsMonitor
from .measurements import GpsDecision, VisualFix, finite_float, int_ns

_TWO_PI = 2.0 * math.pi
_LOG_TWO_PI = math.log(_TWO_PI)
_MAX_NOTES = 16
_GEMM_BLOCK = 200_000  # m*n*k below OpenBLAS's threading threshold: threads cost more than they save here
NOTE_HOLD_S = 1.0  # an event note (re-initialisation, re-acceptance) is reported by estimate() for this long
_NSTATE = 7  # x, y, vx, vy, yaw, GPS bias east, GPS bias north
_BX, _BY = 5, 6
_CHI2_2_99 = 9.21  # chi-square, 2 dof, 99 %: the mean of a faulted GPS's innovations is consistent again
_DISPLACEMENT_MIN_ESS = 0.05  # a displacement that would leave fewer effective particles than this share redraws them
_DISPLACEMENT_REDRAW_CHI2 = 13.8  # ... when it agrees with the belief's displacement (2 dof, 99.9 %)
_UNDERSAMPLED_ESS = 0.05  # a GPS fix leaving fewer effective particles than this share is checked for undersampling
_UNDERSAMPLED_CHI2 = 9.21  # ... which it is when the weighted mean misses the Gaussian update's (2 dof, 99 %)
_UNDERSAMPLED_MIN_PARTICLES = 10  # ... or when fewer are left effective (a 2-D mean and covariance: 5 numbers)


def _weighted_moments(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean float64[2] and covariance float64[2, 2] (plus 1e-9 I, invertible) of points ``x`` float64[2, n]
    with weights ``w`` float64[n] summing to 1."""
    mu = x @ w
    d = x - mu[:, None]
    return mu, (d * w) @ d.T + 1e-9 * np.eye(2)


def _wrap(a):
    """Angles wrapped into [-pi, pi)."""
    return (np.asarray(a) + math.pi) % _TWO_PI - math.pi


def _vec2(value, what: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64).reshape(-1) if value is not None else None
    if arr is None or arr.shape != (2,) or not np.all(np.isfinite(arr)):
        raise TrackingError(f"{what} must be 2 finite numbers (east, north) in m/s, got {value!r}")
    return arr


def _check_bounds(bounds) -> tuple[float, float, float, float] | None:
    if bounds is None:
        return None
    arr = np.asarray(bounds, dtype=np.float64).reshape(-1) if not isinstance(bounds, str) else np.zeros(0)
    if arr.shape != (4,) or not np.all(np.isfinite(arr)) or arr[0] >= arr[2] or arr[1] >= arr[3]:
        raise TrackingError(
            f"bounds must be the map extent (x_min, y_min, x_max, y_max) in local metres with x_min < x_max and "
            f"y_min < y_max, got {bounds!r}"
        )
    return (float(arr[0]), float(arr[1]), float(arr[2]), float(arr[3]))


class ParticleTracker:
    """Pure tracking core: feed it motion, GPS fixes and visual fixes in time order; read :meth:`estimate`.

    Args:
        config: tuning (default :class:`TrackerConfig`).
        bounds: map extent ``(x_min, y_min, x_max, y_max)`` in local metres, or None. Sets the outlier-floor area of
            whole-map visual fixes and lets :meth:`search_scope` answer None when a circle would cover the map.

    Time: every call carries ``t_ns``; the particles are propagated to it first (without inputs when it is an update).
    A timestamp up to ``max_backstep_s`` older than the tracker's time is applied at the tracker's time; an older one
    raises :class:`TrackingError`.
    """

    def __init__(self, config: TrackerConfig | None = None, *, bounds: tuple[float, float, float, float] | None = None):
        if config is None:
            config = TrackerConfig()
        if not isinstance(config, TrackerConfig):
            raise TrackingError(
                f"config must be a TrackerConfig (use TrackerConfig.from_dict for a mapping), got {type(config).__name__}"
            )
        self.config = config
        self.bounds = _check_bounds(bounds)
        self.reset()

    # -- state -----------------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget everything (uninitialised, no time, generator re-seeded from the config)."""
        n = self.config.n_particles
        self._rng = np.random.default_rng(self.config.seed)
        self._s = np.zeros((_NSTATE, n))
        self._w = np.full(n, 1.0 / n)
        self._init = False
        self._monitor = GpsMonitor(self.config.gps_monitor_accel_sigma, self.config.gps_gate_chi2,
                                   self.config.gps_outage_s)
        self._gps_fault = ""  # why the GPS is not trusted until it agrees with the belief again ("" = no fault)
        self._rejected_since: int | None = None  # first fix of the current run of belief-gate rejections
        self._probe: list[tuple] = []  # a faulted GPS's recent (t_ns, innovation, camera residual or None)
        self._bias_hist: deque = deque()  # (t_ns, GPS bias mean, its covariance) while the camera supports
        self._last_vis: tuple | None = None  # the last confident visual fix's (t_ns, best candidate, its sigma)
        self._bias_seen: tuple | None = None  # (t_ns, GPS bias mean) when the camera last supported the belief
        self._contra_t: int | None = None  # the last time a supporting visual fix contradicted a rejected GPS fix
        #: GPS faults found (jumps of its own track, drags against the camera) and belief re-anchorings on the GPS
        self.gps_faults = {"jump": 0, "drag": 0, "overruled": 0}
        self._t: int | None = None
        self._ever_gps = False
        self._last_gps_t: int | None = None  # last fix received
        self._last_gps_ok_t: int | None = None  # last fix used
        self._gps_rejected = False
        self._reject_reason = ""
        self._last_support_t: int | None = None
        self._last_precise_t: int | None = None  # the last supporting fix precise enough to check the belief
        self._last_precise_fix: tuple | None = None  # (t_ns, position, sigma) of the last precise supporting fix
        self._streak = 0  # consecutive visual fixes with support >= visual_support_min
        #: (t_ns of the visual fix that initialised the particles, t_ns where the displacements measured from it, one
        #: or a chain, ended, or None) until the next visual fix: that fix's agreement then counts the initialising
        #: one (update_visual)
        self._init_fix: tuple[int, int | None] | None = None
        self._last_init_t: int | None = None
        self._yaw_hint: tuple[float, float] | None = None
        self._vel_hint: tuple[np.ndarray, float] | None = None
        self._notes: list[tuple[int, str]] = []  # (t_ns, text) of events
        #: precise visual fixes where the particles were sparse (particles drawn around them)
        self.injections = 0
        self._kidnap: tuple | None = None  # LOST: (first t, last t, place, belief mean, sigma) of agreeing fixes
        self._vel_conflict: tuple | None = None  # (count, last t, last velocity, its sigma) of conflicting velocities
        #: measured velocities that re-anchored the particle velocities (update_velocity "reanchored")
        self.velocity_reanchors = 0
        #: GPS fixes that moved the particles as an ensemble Kalman update (the weights would have missed the fix)
        self.gps_undersampled = 0
        self._anchor: np.ndarray | None = None  # float64[2, n]: each particle's position at _anchor_t (mark_anchor)
        self._anchor_t: int | None = None
        self._hoff: np.ndarray | None = None  # float64[n]: each particle's heading offset of measured displacements, rad
        self._hoff_t: int | None = None

    @property
    def initialized(self) -> bool:
        """Whether the particles hold a belief (after the first GPS fix or the first visual fix with candidates)."""
        return self._init

    @property
    def t_ns(self) -> int | None:
        """The tracker's time (latest timestamp seen), or None before any call."""
        return self._t

    def particles(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the particle states ``float64[n, 5]`` (x, y, vx, vy, yaw) and weights ``float64[n]``."""
        return self._s[:5].T.copy(), self._w.copy()

    def gps_bias(self) -> tuple[np.ndarray, np.ndarray]:
        """The GPS bias the particles hold: mean float64[2] (east, north, metres) and covariance float64[2, 2] m^2
        (the prior, ``gps_bias_m`` per axis, until the camera has seen where the vehicle is)."""
        w, b = self._w, self._s[_BX:]
        m = b @ w
        d = b - m[:, None]
        return m, (d * w) @ d.T

    def _note(self, text: str) -> None:
        self._notes.append((self._t if self._t is not None else 0, text))
        del self._notes[:-_MAX_NOTES]

    # -- time and motion -------------------------------------------------------------------------------------------
    def _advance(self, t_ns, what: str) -> float:
        t = int_ns(t_ns, what)
        if self._t is None:
            self._t = t
            return 0.0
        dt = (t - self._t) * 1e-9
        if dt < -self.config.max_backstep_s:
            raise TrackingError(
                f"{what} {t} is {-dt:.3f} s before the tracker's time {self._t}; timestamps may go back at most "
                f"max_backstep_s = {self.config.max_backstep_s:g} s (tracker: max_backstep_s in --config; replaying from the start "
                "needs a new run, or from Python the tracker's reset())"
            )
        if dt <= 0:
            return 0.0
        self._t = t
        return dt

    def predict(
        self,
        t_ns: int,
        *,
        velocity_xy=None,
        velocity_sigma: float | None = None,
        yaw: float | None = None,
        yaw_sigma: float | None = None,
        yaw_rate: float | None = None,
        delta_v=None,
    ) -> None:
        """Propagate the particles to ``t_ns``.

        Args:
            velocity_xy: measured (east, north) velocity, m/s (GPS/visual odometry): replaces the particle velocities
                with ``N(velocity_xy, velocity_sigma^2)`` before moving them.
            velocity_sigma: its std per axis, m/s (default ``config.velocity_sigma_mps``).
            yaw: IMU yaw, ENU rad: pins the particle yaws to ``N(yaw, yaw_sigma^2)``.
            yaw_sigma: its std, rad (default ``config.imu_yaw_sigma_rad``).
            yaw_rate: yaw rate, rad/s, integrated when no yaw is given.
            delta_v: (east, north) velocity change over the step measured by an IMU (world-frame acceleration
                integrated since the last predict), m/s: added to the particle velocities (positions move by the mean
                of the old and new velocity), with ``config.imu_accel_sigma`` as the remaining acceleration noise
                instead of ``accel_sigma``. Ignored when ``velocity_xy`` is given.
        """
        c = self.config
        vel = None if velocity_xy is None else _vec2(velocity_xy, "predict velocity_xy")
        vsig = c.velocity_sigma_mps if velocity_sigma is None else finite_float(
            velocity_sigma, "predict velocity_sigma", positive=True)
        yaw_v = None if yaw is None else finite_float(yaw, "predict yaw")
        ysig = c.imu_yaw_sigma_rad if yaw_sigma is None else finite_float(yaw_sigma, "predict yaw_sigma", positive=True)
        rate = 0.0 if yaw_rate is None else finite_float(yaw_rate, "predict yaw_rate")
        dv = None if delta_v is None or vel is not None else _vec2(delta_v, "predict delta_v")
        dt = self._advance(t_ns, "predict t_ns")
        if not self._init:
            self._yaw_hint = None if yaw_v is None else (yaw_v, ysig)
            self._vel_hint = None if vel is None else (vel, vsig)
            return
        self._propagate(dt, vel, vsig, yaw_v, ysig, rate, dv)

    def _propagate(self, dt: float, vel, vsig: float, yaw, ysig: float, rate: float, dv=None) -> None:
        if dt <= 0 and vel is None and yaw is None and dv is None:
            return
        c, s = self.config, self._s
        n = s.shape[1]
        z = self._rng.standard_normal((_NSTATE, n))
        sq = math.sqrt(dt) if dt > 0 else 0.0
        v0 = None
        if dt > 0:  # the GPS bias: Gauss-Markov, stationary std gps_bias_m per axis, time constant gps_bias_tau_s
            a = math.exp(-dt / c.gps_bias_tau_s)
            s[_BX:] = a * s[_BX:] + (c.gps_bias_m * math.sqrt(1.0 - a * a)) * z[_BX:]
        if vel is not None:
            s[2] = vel[0] + vsig * z[2]
            s[3] = vel[1] + vsig * z[3]
        elif dv is not None:
            v0 = s[2:4].copy()
            s[2] += dv[0] + (c.imu_accel_sigma * sq) * z[2]
            s[3] += dv[1] + (c.imu_accel_sigma * sq) * z[3]
        elif dt > 0:
            s[2] += (c.accel_sigma * sq) * z[2]
            s[3] += (c.accel_sigma * sq) * z[3]
        speed = np.hypot(s[2], s[3])
        over = speed > c.max_speed_mps
        if over.any():
            scale = c.max_speed_mps / speed[over]
            s[2, over] *= scale
            s[3, over] *= scale
        if dt > 0 and v0 is not None:  # the IMU measured the change: move by the mean velocity over the step
            s[0] += 0.5 * (v0[0] + s[2]) * dt + (c.position_sigma * sq) * z[0]
            s[1] += 0.5 * (v0[1] + s[3]) * dt + (c.position_sigma * sq) * z[1]
        elif dt > 0:
            s[0] += s[2] * dt + (c.position_sigma * sq) * z[0]
            s[1] += s[3] * dt + (c.position_sigma * sq) * z[1]
        if yaw is not None:
            s[4] = _wrap(yaw + ysig * z[4])
        elif dt > 0:
            s[4] = _wrap(s[4] + rate * dt + (c.yaw_rate_sigma * sq) * z[4])

    def _sync(self, t_ns, what: str) -> None:
        dt = self._advance(t_ns, what)
        if self._init and dt > 0:
            self._propagate(dt, None, 0.0, None, 0.0, 0.0)

    # -- weights -----------------------------------------------------------------------------------------------------
    def _reweight(self, log_l: np.ndarray) -> None:
        with np.errstate(divide="ignore"):
            lw = np.log(self._w) + log_l
        m = lw.max()
        if not math.isfinite(m):
            return  # no particle can explain it: keep the prior
        w = np.exp(lw - m)
        w /= w.sum()
        self._w = w
        n = w.size
        if 1.0 / float(w @ w) < self.config.resample_ess_fraction * n:
            self._select(self._systematic())
            self._w = np.full(n, 1.0 / n)

    def _select(self, idx: np.ndarray) -> None:
        """Keep particles ``idx`` (int[n]): their states and what travels with them (anchors, heading offsets)."""
        self._s = self._s[:, idx]
        if self._anchor is not None:
            self._anchor = self._anchor[:, idx]
        if self._hoff is not None:
            self._hoff = self._hoff[idx]

    def _resample_if_weighted(self) -> np.ndarray | None:
        """Resample (systematic) unless the weights are already (near) equal; the indices kept (int[n]) or None."""
        w = self._w
        if 1.0 / float(w @ w) >= 0.999 * w.size:
            return None
        idx = self._systematic()
        self._select(idx)
        self._w = np.full(w.size, 1.0 / w.size)
        return idx

    def _systematic(self) -> np.ndarray:
        """int[n] particle indices drawn by systematic resampling of the current weights."""
        n = self._w.size
        cum = np.cumsum(self._w)
        cum[-1] = 1.0
        return np.searchsorted(cum, (self._rng.random() + np.arange(n)) / n)

    def _velocity_spread(self) -> tuple[float, float, float]:
        """(weighted mean east, north velocity, their std per axis: sqrt of the mean of the two variances), m/s."""
        s, w = self._s, self._w
        vx, vy = float(w @ s[2]), float(w @ s[3])
        return vx, vy, math.sqrt(max(float(w @ ((s[2] - vx) ** 2 + (s[3] - vy) ** 2)) / 2.0, 0.0))

    def _mean_cov(self) -> tuple[float, float, np.ndarray]:
        w, s = self._w, self._s
        mx, my = float(w @ s[0]), float(w @ s[1])
        dx, dy = s[0] - mx, s[1] - my
        cxy = float(w @ (dx * dy))
        cov = np.array([[float(w @ (dx * dx)), cxy], [cxy, float(w @ (dy * dy))]])
        return mx, my, cov

    def _yaw_stats(self) -> tuple[float, float]:
        cs = float(self._w @ np.cos(self._s[4]))
        sn = float(self._w @ np.sin(self._s[4]))
        r = math.hypot(cs, sn)
        mean = math.atan2(sn, cs)
        sigma = math.pi if r < 1e-12 else min(math.pi, math.sqrt(max(-2.0 * math.log(min(r, 1.0)), 0.0)))
        return mean, sigma

    @staticmethod
    def _sigma(cov: np.ndarray) -> float:
        """sqrt of the largest eigenvalue of a symmetric 2x2 (closed form)."""
        a, b, c = float(cov[0, 0]), float(cov[0, 1]), float(cov[1, 1])
        return math.sqrt(max(0.5 * (a + c) + math.hypot(0.5 * (a - c), b), 0.0))

    # -- initialisation --------------------------------------------------------------------------------------------
    def _init_velocity_yaw(self, z: np.ndarray, gps_vel=None) -> None:
        c, s = self.config, self._s
        n = s.shape[1]
        self._vel_conflict = None
        if gps_vel is not None:
            vel, vsig = gps_vel, c.gps_velocity_sigma_mps
        elif self._vel_hint is not None:
            vel, vsig = self._vel_hint
        else:
            vel, vsig = np.zeros(2), c.init_speed_sigma_mps
        s[2] = vel[0] + vsig * z[2]
        s[3] = vel[1] + vsig * z[3]
        if self._yaw_hint is not None:
            s[4] = _wrap(self._yaw_hint[0] + self._yaw_hint[1] * z[4])
        else:
            s[4] = self._rng.uniform(-math.pi, math.pi, n)

    def _init_at(self, x: float, y: float, sigma: float, gps_vel=None) -> None:
        """Particles at a GPS fix ``x, y`` of white noise ``sigma`` (metres): the GPS bias drawn from its prior and
        the positions at the fix minus it, so the belief is as wide as the GPS's whole error."""
        c = self.config
        n = c.n_particles
        z = self._rng.standard_normal((_NSTATE, n))
        self._s = np.empty((_NSTATE, n))
        self._s[_BX:] = c.gps_bias_m * z[_BX:]
        self._s[0] = x - self._s[_BX] + sigma * z[0]
        self._s[1] = y - self._s[_BY] + sigma * z[1]
        self._init_velocity_yaw(z, gps_vel)
        self._drop_anchor()
        self._bias_hist.clear()
        self._bias_seen = None
        self._w = np.full(n, 1.0 / n)
        self._init = True
        self._last_init_t = self._t
        self._init_fix = None  # not initialised by a visual fix

    def _init_from_candidates(self, fix: VisualFix) -> None:
        c = self.config
        n, k = c.n_particles, fix.k
        pi = np.exp(self._log_softmax(fix.scores))
        p = 0.5 * pi + 0.5 / k  # half by score, half uniform: the right candidate may not score best
        cum = np.cumsum(p)
        cum[-1] = 1.0
        j = np.searchsorted(cum, self._rng.random(n))
        z = self._rng.standard_normal((_NSTATE, n))
        sd = np.sqrt(fix.sigma_m[j] ** 2 + c.visual_sigma_floor_m**2)
        self._s = np.empty((_NSTATE, n))
        self._s[_BX:] = c.gps_bias_m * z[_BX:]
        self._drop_anchor()
        self._bias_hist.clear()
        self._bias_seen = None
        self._s[0] = fix.positions[j, 0] + sd * z[0]
        self._s[1] = fix.positions[j, 1] + sd * z[1]
        self._init_velocity_yaw(z)
        if fix.yaws is not None:
            yj = fix.yaws[j]
            known = np.isfinite(yj)
            if self._yaw_hint is None or known.any():
                self._s[4] = np.where(known, _wrap(np.where(known, yj, 0.0) + fix.yaw_sigma_rad * z[4]), self._s[4])
        self._w = np.full(n, 1.0 / n)
        self._init = True
        self._last_init_t = self._t

    def _log_softmax(self, scores: np.ndarray) -> np.ndarray:
        a = scores / self.config.visual_temperature
        a = a - a.max()
        return a - math.log(float(np.exp(a).sum()))

    # -- status ------------------------------------------------------------------------------------------------------
    def _age(self, t_ref: int | None) -> float:
        if t_ref is None or self._t is None:
            return math.inf
        return (self._t - t_ref) * 1e-9

    def _gps_state(self) -> str:
        if not self._ever_gps:
            return "none"
        if self._age(self._last_gps_t) > self.config.gps_outage_s:
            return "outage"
        if self._gps_rejected:
            return "rejected"
        return "ok" if self._age(self._last_gps_ok_t) <= self.config.gps_outage_s else "outage"

    def _visual_recent(self) -> bool:
        return self._age(self._last_support_t) <= self.config.visual_timeout_s

    def _unsupported_s(self) -> float:
        return min(self._age(self._last_support_t), self._age(self._last_gps_ok_t))

    def _status(self, sigma: float, gps_state: str, visual: bool) -> Status:
        c = self.config
        if not self._init:
            return Status.LOST
        if sigma > c.lost_sigma_m or (gps_state != "ok" and not visual and self._unsupported_s() > c.lost_no_support_s):
            return Status.LOST
        if gps_state == "rejected":
            return Status.GPS_REJECTED
        checked = self._age(self._last_precise_t) <= c.visual_timeout_s
        if sigma <= c.ok_sigma_m and checked and gps_state in ("ok", "none"):
            return Status.OK  # two sources agree (camera and GPS), or the camera alone where there is no GPS
        return Status.DEGRADED

    def _is_lost(self) -> bool:
        if not self._init:
            return True
        _, _, cov = self._mean_cov()
        return self._status(self._sigma(cov), self._gps_state(), self._visual_recent()) is Status.LOST

    # -- measurements ------------------------------------------------------------------------------------------------
    def update_gps(self, t_ns: int, x: float, y: float, sigma_m: float, *, velocity_xy=None,
                   velocity_sigma: float | None = None) -> GpsDecision:
        """Check and fuse one GPS fix.

        Args:
            t_ns: fix time, integer ns. x, y: fix position, local metres. sigma_m: its reported horizontal std per
                axis, metres (> 0): the white part of its error; the slow part (the bias) is a state of the filter
                (Gauss-Markov, ``gps_bias_m`` per axis, ``gps_bias_tau_s``). velocity_xy: optional (east, north)
                velocity, m/s: weights the particle velocities (and centres them when the particles are drawn at the
                fix). velocity_sigma: its reported std per axis, m/s (None: ``config.gps_velocity_sigma_mps``).

        Returns:
            :class:`GpsDecision`. In order:

            * the first fix initialises an uninitialised tracker (positions = fix minus a bias drawn from its prior);
            * a fix that does not fit the GPS's own track (:class:`~runtime.tracking.gps_monitor.GpsMonitor`) is
              rejected; when the next fix confirms it, the GPS jumped: it is *faulted* (status GPS_REJECTED);
            * while the belief is LOST without recent visual support, a fix re-initialises the particles there;
            * a faulted GPS is used again once the mean of its innovations over ``gps_reaccept_s`` is consistent
              with the belief (chi-square 99 %), or when the belief is LOST;
            * a fix inconsistent with the belief (NIS over ``gps_gate_chi2``, or farther than ``gps_max_jump_m``)
              is rejected; but when the GPS track has stayed continuous through ``gps_trust_s`` of such rejections
              and no confident camera fix has contradicted the GPS in the last ``gps_trust_s``, the belief is what
              moved: the particles are re-drawn at the fix ("overruled");
            * a used fix weights the particles (position through the bias, velocity); while the camera supports
              the belief, the GPS bias it implies is watched: a change over ``gps_drag_window_s`` (or a size) that
              the bias model cannot explain (chi-square ``gps_drag_chi2``) is a drag spoof: the GPS is faulted and
              the bias set back to what it was before.
        """
        c = self.config
        xf, yf = finite_float(x, "update_gps x"), finite_float(y, "update_gps y")
        sig = finite_float(sigma_m, "update_gps sigma_m", positive=True)
        vel = None if velocity_xy is None else _vec2(velocity_xy, "update_gps velocity_xy")
        vsig = c.gps_velocity_sigma_mps if velocity_sigma is None else finite_float(
            velocity_sigma, "update_gps velocity_sigma", positive=True)
        self._sync(t_ns, "update_gps t_ns")
        t = self._t
        prev = self._last_gps_t
        self._ever_gps = True
        self._last_gps_t = t
        chk = self._monitor.update(t, xf, yf, sig, vel, vsig)
        sig *= self._monitor.noise_scale  # a receiver that understates its noise
        if not self._init:
            self._init_at(xf, yf, sig, vel)
            self._last_gps_ok_t = t
            self._gps_rejected, self._gps_fault = False, ""
            self._note("initialised at the first GPS fix")
            return GpsDecision(True, f"init: particles drawn around the fix with sigma {math.hypot(sig, c.gps_bias_m):.1f}"
                               " m (noise and bias)", math.nan, math.nan)
        if chk.jump:
            self.gps_faults["jump"] += 1
            self._gps_fault = f"the GPS track jumped {chk.distance_m:.0f} m"
            self._probe.clear()
            self._note(f"gps fault: {self._gps_fault}")
        z = np.array([xf, yf])
        mz, cz = self._gps_prediction()
        d = z - mz
        dist = float(math.hypot(d[0], d[1]))
        nis = self._nis(d, cz, sig)
        if self._is_lost() and not self._visual_recent() and not chk.suspect:
            self._init_at(xf, yf, sig, vel)
            self._clear_rejection()
            self._last_gps_ok_t = t
            self._note("belief lost without visual support: re-initialised at the GPS fix")
            return GpsDecision(True, "reinit: belief lost without visual support, particles drawn around the fix",
                               dist, nis)
        if chk.suspect:
            why = f"the fix is {chk.distance_m:.1f} m off the GPS's own track (NIS {chk.nis:.1f})"
            return self._reject("jump" if chk.jump else "outlier", why, dist, nis)
        if self._gps_fault:
            belief_ok, agreed = self._probation(t, prev, d, cz, sig, self._camera_residual(z))
            if agreed and nis > c.gps_gate_chi2:  # ... and the belief is elsewhere: the belief is what is wrong
                fault = self._gps_fault
                self._init_at(xf, yf, sig, vel if vel is not None else self._monitor.velocity)
                self._clear_rejection()
                self._last_gps_ok_t = t
                self._note(f"gps re-accepted after {fault}: the camera agrees with it, not with the belief")
                return GpsDecision(True, f"reaccepted: the camera has agreed with the GPS for {c.gps_reaccept_s:g} s "
                                   f"(fix {dist:.1f} m from the belief): particles re-drawn at it", dist, nis)
            if not (belief_ok or agreed):
                held = (t - self._probe[0][0]) * 1e-9 if self._probe else 0.0
                return GpsDecision(False, f"probation: {self._gps_fault}; innovations followed for {held:.1f} s of "
                                   f"gps_reaccept_s {c.gps_reaccept_s:g} s (fix {dist:.1f} m from the belief)",
                                   dist, nis)
            self._note(f"gps re-accepted: consistent with the belief again after {self._gps_fault}")
            reason = f"reaccepted: its innovations agree with the belief again (fix {dist:.1f} m away)"
            self._clear_rejection()
        elif nis > c.gps_gate_chi2 or (dist > c.gps_max_jump_m and dist > 3.0 * self._sigma(cz)):
            why = (f"fix {dist:.1f} m from the belief, NIS {nis:.1f} > gps_gate_chi2 {c.gps_gate_chi2:g}"
                   if nis > c.gps_gate_chi2 else f"fix {dist:.1f} m from the belief > gps_max_jump_m "
                   f"{c.gps_max_jump_m:g} m")
            if self._rejected_since is None:
                self._rejected_since = t
            run = (t - self._rejected_since) * 1e-9
            cam = self._camera_residual(z)
            if cam is not None and float(cam[0] @ cam[0]) / (cam[1] + sig**2) > c.gps_gate_chi2:
                self._contra_t = t  # a confident camera fix puts the vehicle where this fix cannot be
            seen = self._contra_t is not None and self._age(self._contra_t) < c.gps_trust_s
            if run >= c.gps_trust_s and chk.continuous_s >= run and not seen:
                v = vel if vel is not None else self._monitor.velocity
                self._init_at(xf, yf, sig, v)
                self._clear_rejection()
                self._last_gps_ok_t = t
                self.gps_faults["overruled"] += 1
                self._note(f"the belief disagreed with a continuous GPS for {run:.1f} s without visual support: "
                           "re-drawn at the GPS")
                return GpsDecision(True, f"overruled: {why}; the GPS stayed continuous for {run:.1f} s and the camera "
                                   "did not support the belief", dist, nis)
            return self._reject("", why, dist, nis)
        else:
            reason = f"consistent: fix {dist:.1f} m from the belief, NIS {nis:.1f}"
            if self._gps_rejected:
                self._note("gps consistent with the belief again")
            self._clear_rejection()
        s = self._s
        log_l = -0.5 * ((s[0] + s[_BX] - xf) ** 2 + (s[1] + s[_BY] - yf) ** 2) / sig**2
        if self._undersampled_gps(log_l, z, sig):
            self._ensemble_gps(z, sig)
            s = self._s
            log_l = np.zeros(s.shape[1])
            self.gps_undersampled += 1
        if vel is not None:
            vx, vy, spread = self._velocity_spread()
            far = ((vel[0] - vx) ** 2 + (vel[1] - vy) ** 2) / (vsig**2 + spread**2) > c.velocity_conflict_nis
            if far or spread > 3.0 * vsig:
                # the cloud's velocities are far wider than this measurement, or lie far out in its tail: weighting
                # them would keep a handful of particles (a belief collapsed to 0.7 m while 13 m off after dead
                # reckoning without IMU); the velocities are drawn from the measurement instead
                z2 = self._rng.standard_normal((2, s.shape[1]))
                s[2] = vel[0] + vsig * z2[0]
                s[3] = vel[1] + vsig * z2[1]
            else:
                log_l -= 0.5 * ((s[2] - vel[0]) ** 2 + (s[3] - vel[1]) ** 2) / vsig**2
        self._reweight(log_l)
        self._last_gps_ok_t = t
        self._hold_unseen_bias(t)
        drag = self._drag_check(t)
        if drag:
            self.gps_faults["drag"] += 1
            self._gps_fault = drag
            self._probe.clear()
            self._gps_rejected, self._reject_reason = True, drag
            self._note(f"gps fault: {drag}")
            return GpsDecision(False, f"drag: {drag}", dist, nis)
        return GpsDecision(True, reason, dist, nis)

    def _undersampled_gps(self, log_l: np.ndarray, z: np.ndarray, sig: float) -> bool:
        """Whether weighting the particles by a GPS fix (``log_l``, float64[n]) would miss where it puts them: under
        :data:`_UNDERSAMPLED_ESS` of them effective, and either under :data:`_UNDERSAMPLED_MIN_PARTICLES` (too few
        to stand for a mean and a covariance) or their weighted mean of position plus bias more than
        :data:`_UNDERSAMPLED_CHI2` (the Gaussian posterior's covariance) off the Gaussian update's mean. Weighted,
        a belief much wider than the fix with the fix far in its tail (dead reckoning through a turn between photos
        6 s apart: 70 m off and 20 m wide against a 7 m fix, 1.7 particles effective) collapsed onto the particles
        of its edge: on Seneca 20 m from the truth with a sigma of 5 m, where the fix was 8 m off."""
        w = self._w
        with np.errstate(divide="ignore"):
            lw = np.log(w) + log_l
        pw = np.exp(lw - lw.max())
        pw /= pw.sum()
        ess = 1.0 / float(pw @ pw)
        if ess >= _UNDERSAMPLED_ESS * w.size:
            return False
        if ess < _UNDERSAMPLED_MIN_PARTICLES:
            return True
        g = self._s[0:2] + self._s[_BX:]
        m, cov = self._gps_prediction()
        gain = cov @ np.linalg.inv(cov + sig * sig * np.eye(2))
        post = cov - gain @ cov + 1e-9 * np.eye(2)
        d = g @ pw - (m + gain @ (z - m))
        return float(d @ np.linalg.solve(post, d)) > _UNDERSAMPLED_CHI2

    def _ensemble_gps(self, z: np.ndarray, sig: float) -> None:
        """Move the particles by a GPS fix as an ensemble Kalman update with perturbed measurements (Evensen 2003):
        each state (position, velocity, GPS bias) by the gain of its weighted covariance with the measured
        position plus bias, towards the fix plus its own draw of the fix's noise. Weighted particles are resampled
        first; the anchors (:meth:`mark_anchor`) keep their positions, which the update does not concern."""
        self._resample_if_weighted()
        s, w = self._s, self._w
        rows = [0, 1, 2, 3, _BX, _BY]
        x = s[rows]
        g = s[0:2] + s[_BX:]
        dx = x - (x @ w)[:, None]
        dg = g - (g @ w)[:, None]
        cxg = (dx * w) @ dg.T  # float64[6, 2]
        cgg = (dg * w) @ dg.T
        gain = cxg @ np.linalg.inv(cgg + sig * sig * np.eye(2))
        innov = z[:, None] + sig * self._rng.standard_normal((2, w.size)) - g
        s[rows] = x + gain @ innov

    def _camera_residual(self, z: np.ndarray) -> tuple[np.ndarray, float] | None:
        """Where the last confident visual fix (inlier probability >= ``visual_support_min``, within
        ``visual_timeout_s``, moved to now with the belief's velocity) puts the vehicle, minus where the GPS fix
        ``z`` does (less the bias the particles hold): (float64[2] metres, its variance per axis without the fix's
        white noise, m^2). None without such a fix. A wide fix (a level camera in a turn) agrees with a GPS and a
        belief alike: it says nothing against either."""
        c, lv = self.config, self._last_vis
        if lv is None or self._age(lv[0]) > c.visual_timeout_s:
            return None
        vx, vy, _ = self._velocity_spread()
        b, cb = self.gps_bias()
        dt = self._age(lv[0])
        d = lv[1] + np.array([vx, vy]) * dt - (z - b)
        return d, lv[2] ** 2 + c.visual_sigma_floor_m**2 + 0.5 * float(np.trace(cb))

    def _confirms(self, p: np.ndarray, sigma: float) -> bool:
        """Whether a precise camera position ``p`` (its sigma, metres) is confirmed by the previous precise fix:
        at most ``ok_confirm_s`` before, and where the belief's velocity moves it, at ``ok_check_chi2``."""
        c = self.config
        prev = self._last_precise_fix
        if prev is None or self._age(prev[0]) > c.ok_confirm_s:
            return False
        vx, vy, vs = self._velocity_spread()
        dt = self._age(prev[0])
        d = p - (prev[1] + np.array([vx, vy]) * dt)
        var = sigma**2 + prev[2] ** 2 + 2.0 * c.visual_sigma_floor_m**2 + (vs * dt) ** 2
        return float(d @ d) / var <= c.ok_check_chi2

    def _hold_unseen_bias(self, t: int) -> None:
        """Without the camera the GPS bias is not observable: its mean is what the camera last saw, decayed by the
        Gauss-Markov model (the prior's 0 when it never saw it). Resampling on GPS fixes alone lets the particles'
        mean bias wander off that (a random walk of sampling noise, metres over a minute); it is put back, moving the
        positions with it so that position plus bias -- what the GPS measured -- stays."""
        c = self.config
        if self._visual_recent():
            self._bias_seen = (t, self.gps_bias()[0])
            return
        t_seen, b_seen = self._bias_seen if self._bias_seen is not None else (t, np.zeros(2))
        want = b_seen * math.exp(-max(t - t_seen, 0) * 1e-9 / c.gps_bias_tau_s)
        shift = self._s[_BX:] @ self._w - want
        self._s[_BX:] -= shift[:, None]
        self._s[0:2] += shift[:, None]
        if self._anchor is not None:  # the same reinterpretation of position against bias at the anchor's time
            self._anchor += shift[:, None]

    def _gps_prediction(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean float64[2] and covariance float64[2, 2] of what the particles predict a GPS fix to be (position plus
        GPS bias), without the fix's white noise."""
        w, s = self._w, self._s
        p = s[0:2] + s[_BX:]
        m = p @ w
        dp = p - m[:, None]
        return m, (dp * w) @ dp.T

    @staticmethod
    def _nis(d: np.ndarray, cov: np.ndarray, sig: float) -> float:
        """Normalised innovation squared of ``d`` against ``cov + sig^2 I`` (2x2, inverted in closed form)."""
        sa, sb, sc = cov[0, 0] + sig**2, cov[0, 1], cov[1, 1] + sig**2
        return float((sc * d[0] ** 2 - 2.0 * sb * d[0] * d[1] + sa * d[1] ** 2) / (sa * sc - sb * sb))

    def _reject(self, fault: str, why: str, dist: float, nis: float) -> GpsDecision:
        self._gps_rejected = True
        self._reject_reason = why
        if fault == "jump":
            self._reject_reason = f"{self._gps_fault}: {why}"
        return GpsDecision(False, f"jump: {self._reject_reason}" if fault == "jump" else f"gate: {why}", dist, nis)

    def _clear_rejection(self) -> None:
        self._gps_rejected = False
        self._gps_fault = ""
        self._rejected_since = None
        self._probe.clear()

    def _probation(self, t: int, prev: int | None, d: np.ndarray, cz: np.ndarray, sig: float,
                   cam: tuple[np.ndarray, float] | None) -> tuple[bool, bool]:
        """A faulted GPS's innovations over the last ``gps_reaccept_s`` (no gap over ``gps_outage_s``): (their mean is
        consistent with the belief, their camera residuals' mean is consistent with the camera -- every fix of the
        window had a confident camera fix), each chi-square 99 % with the fixes' white noise averaged over the
        window. One fix cannot tell a drag of a few metres from the GPS's noise; the mean of a window can."""
        c = self.config
        if prev is None or (t - prev) * 1e-9 > c.gps_outage_s:
            self._probe.clear()
        self._probe.append((t, d, cam))
        while len(self._probe) > 1 and (t - self._probe[1][0]) * 1e-9 >= c.gps_reaccept_s:
            self._probe.pop(0)
        if (t - self._probe[0][0]) * 1e-9 < c.gps_reaccept_s:
            return False, False
        n = len(self._probe)
        mean = np.mean([p[1] for p in self._probe], axis=0)
        belief_ok = self._nis(mean, cz, sig / math.sqrt(n)) <= _CHI2_2_99
        cams = [p[2] for p in self._probe]
        if any(r is None for r in cams):
            return belief_ok, False
        m = np.mean([r[0] for r in cams], axis=0)
        var = max(r[1] for r in cams) + sig**2 / n
        return belief_ok, float(m @ m) / var <= _CHI2_2_99

    def _drag_check(self, t: int) -> str:
        """While the camera supports the belief, the GPS bias is observable. It is kept about once a second for
        ``gps_drag_window_s``; a change since any of those times that the Gauss-Markov bias model cannot explain
        (chi-square ``gps_drag_chi2``, 2 dof, against the model's change over that span plus both estimates'
        uncertainty) is a drag -- when the bias moved away from its prior. When it moved back towards it, the old
        bias was the fault and the GPS has returned (the spoofer stopped): nothing is faulted. Returns why ("" when
        none); on a drag the bias is set back to what it was at the start of that span."""
        c = self.config
        if not self._visual_recent():
            self._bias_hist.clear()
            return ""
        b, cb = self.gps_bias()
        h = self._bias_hist
        if not h or (t - h[-1][0]) * 1e-9 >= 1.0:
            h.append((t, b, cb))
        while (t - h[0][0]) * 1e-9 > c.gps_drag_window_s:
            h.popleft()
        worst, b0, span = 0.0, None, 0.0
        for t0, b_then, c_then in h:
            dt = (t - t0) * 1e-9
            if dt < 1.0:
                break
            v = np.eye(2) * (2.0 * c.gps_bias_m**2 * (1.0 - math.exp(-dt / c.gps_bias_tau_s))) + cb + c_then
            chi2 = float((b - b_then) @ np.linalg.solve(v, b - b_then))
            if chi2 > worst:
                worst, b0, span = chi2, b_then, dt
        if worst <= c.gps_drag_chi2:
            return ""
        h.clear()
        if float(b @ b) <= float(b0 @ b0):
            return ""  # back towards the prior: the GPS returned
        self._s[_BX] -= b[0] - b0[0]
        self._s[_BY] -= b[1] - b0[1]
        return (f"the GPS moved {math.hypot(*(b - b0)):.1f} m against the camera in {span:.0f} s (more than its bias "
                f"model, {c.gps_bias_m:g} m over {c.gps_bias_tau_s:g} s, allows: a drag)")

    def update_velocity(self, t_ns: int, velocity_xy, sigma_mps: float, *, inlier_prob: float = 0.95) -> str:
        """Weight the particle velocities by a measured ground velocity (east, north) m/s with std ``sigma_mps`` per
        axis (ground odometry, :mod:`runtime.ground_odometry`). No position information: it neither supports nor
        re-initialises the belief.

        The likelihood is ``inlier_prob * N(v; velocity_xy, sigma^2) + (1 - inlier_prob) / (pi max_speed^2)`` (a
        wrong measurement cannot wipe the velocities out). When the particles' velocity spread is wider than 3
        sigma (just initialised, velocity unknown), reweighting would leave a handful of particles: their velocities
        are redrawn from the measurement instead. When ``velocity_conflict_count`` measurements in a row conflict
        with the belief (NIS over ``velocity_conflict_nis``) but agree with each other, the belief's velocity is
        the wrong one (its spread too tight for the floor-weighted measurements ever to move it): the particle
        velocities are re-anchored on the measurement, keeping their spread about it. Returns ``"weighted"``,
        ``"redrawn"``, ``"reanchored"`` or ``"uninitialised"``.
        """
        vel = _vec2(velocity_xy, "update_velocity velocity_xy")
        sig = finite_float(sigma_mps, "update_velocity sigma_mps", positive=True)
        p_in = finite_float(inlier_prob, "update_velocity inlier_prob")
        if not 0.0 < p_in < 1.0:
            raise TrackingError(f"update_velocity inlier_prob must be in (0, 1), got {inlier_prob!r}")
        self._sync(t_ns, "update_velocity t_ns")
        if not self._init:
            return "uninitialised"
        c, s = self.config, self._s
        vx, vy, spread = self._velocity_spread()
        if spread > 3.0 * sig and math.hypot(vel[0] - vx, vel[1] - vy) < 3.0 * spread:
            z = self._rng.standard_normal((2, s.shape[1]))
            s[2] = vel[0] + sig * z[0]
            s[3] = vel[1] + sig * z[1]
            self._vel_conflict = None
            return "redrawn"
        if self._velocity_conflicts(vel, sig, vx, vy, spread):
            s[2] += vel[0] - vx  # the cloud moved onto the measurement, its shape (and its spread) kept
            s[3] += vel[1] - vy
            self._vel_conflict = None
            self.velocity_reanchors += 1
            self._note(f"ground velocity ({vel[0]:.1f}, {vel[1]:.1f}) m/s measured {c.velocity_conflict_count} "
                       f"times against the belief's ({vx:.1f}, {vy:.1f}) m/s: velocities re-anchored")
            return "reanchored"
        log_in = (-0.5 * ((s[2] - vel[0]) ** 2 + (s[3] - vel[1]) ** 2) / sig**2 - math.log(_TWO_PI * sig**2)
                  + math.log(p_in))
        log_out = math.log(1.0 - p_in) - math.log(math.pi * c.max_speed_mps**2)
        self._reweight(np.logaddexp(log_in, log_out))
        return "weighted"

    # -- relative motion (delayed state) -----------------------------------------------------------------------------
    def _drop_anchor(self) -> None:
        """New particles (an initialisation): no positions held, no heading offsets drawn."""
        self._anchor = None
        self._anchor_t = None
        self._hoff = None
        self._hoff_t = None

    def heading_offset(self) -> tuple[float, float] | None:
        """(weighted mean, std) of the particles' heading offsets of measured displacements, radians (a
        displacement measured at heading ``h`` is taken as ``h + offset``); None before the first one."""
        if self._hoff is None:
            return None
        m = float(self._w @ self._hoff)
        return m, math.sqrt(max(float(self._w @ (self._hoff - m) ** 2), 0.0))

    def _heading_offsets(self, sigma: float) -> np.ndarray:
        """float64[n] each particle's heading offset of the displacements measured, at the tracker's time: drawn
        from ``N(0, sigma^2)`` the first time, then Gauss-Markov (stationary ``sigma``, time constant
        ``motion_heading_tau_s``) since the last measurement."""
        n = self._w.size
        if self._hoff is None:
            self._hoff = sigma * self._rng.standard_normal(n)
        elif self._t > self._hoff_t:
            a = math.exp(-(self._t - self._hoff_t) * 1e-9 / self.config.motion_heading_tau_s)
            self._hoff = a * self._hoff + (sigma * math.sqrt(1.0 - a * a)) * self._rng.standard_normal(n)
        self._hoff_t = self._t
        return self._hoff

    def mark_anchor(self) -> None:
        """Remember each particle's position at the tracker's current time (a camera frame's): a later
        :meth:`update_displacement` measured from this time weighs each particle by how far it has moved since (the
        positions travel with their particles through resampling; a re-initialisation forgets them)."""
        if not self._init:
            self._drop_anchor()
            return
        self._anchor = self._s[0:2].copy()
        self._anchor_t = self._t

    @property
    def anchor_t_ns(self) -> int | None:
        """The time :meth:`mark_anchor` last remembered the positions at (None: none held)."""
        return self._anchor_t

    def update_displacement(self, t_ns: int, t_ref_ns: int, displacement_xy, sigma_m: float, *,
                            heading_sigma_rad: float = 0.0, inlier_prob: float = 0.95) -> str:
        """Weight the particles by a measured displacement (east, north, metres) from ``t_ref_ns`` to ``t_ns``
        (e.g. two overlapping photos' homography, :class:`runtime.events.GroundMotion`), against each particle's own
        displacement since the anchor (:meth:`mark_anchor` at ``t_ref_ns``).

        The error model: ``sigma_m`` per axis, and the whole vector turned by the error of the heading it was
        measured with, ``heading_sigma_rad``. That error is no white noise (a compass's or a recorded heading's
        error holds for a while: on Seneca a flight line's photos share most of theirs), so each particle carries
        its own heading offset, drawn from ``N(0, heading_sigma^2)`` and wandering with time constant
        ``motion_heading_tau_s``, and is weighed against the measurement turned by its offset: consecutive
        displacements then teach the belief the offset instead of pulling it sideways, each as if independent.

        The likelihood is ``inlier_prob * N + (1 - inlier_prob) / (pi (max_speed dt)^2)`` (a wrong registration
        cannot wipe out the particles). A belief so much wider than the measurement that the weights would leave
        under :data:`_DISPLACEMENT_MIN_ESS` of the particles effective, or with none near it (under the particles
        the measurement is more likely an outlier than not, while a Gaussian check of the belief's own displacement
        against it says it agrees), draws each particle's displacement from the Gaussian product of the belief's
        and the measurement (turned by its offset) instead; its velocity then is the mean over the step, with the
        spread white acceleration leaves of the end velocity given the mean (``accel_sigma sqrt(dt / 3)``). Returns
        ``"weighted"``, ``"redrawn"``, ``"uninitialised"``, or ``"no anchor"`` when the positions at ``t_ref_ns`` are
        not held (not marked then, or the belief was re-initialised since).
        """
        d = _vec2(displacement_xy, "update_displacement displacement_xy")
        sig = finite_float(sigma_m, "update_displacement sigma_m", positive=True)
        hsig = finite_float(heading_sigma_rad, "update_displacement heading_sigma_rad")
        p_in = finite_float(inlier_prob, "update_displacement inlier_prob")
        if hsig < 0.0:
            raise TrackingError(f"update_displacement heading_sigma_rad must be >= 0, got {heading_sigma_rad!r}")
        if not 0.0 < p_in < 1.0:
            raise TrackingError(f"update_displacement inlier_prob must be in (0, 1), got {inlier_prob!r}")
        t_ref = int_ns(t_ref_ns, "update_displacement t_ref_ns")
        self._sync(t_ns, "update_displacement t_ns")
        if not self._init:
            return "uninitialised"
        if self._anchor is None or self._anchor_t != t_ref:
            return "no anchor"
        c, s, w = self.config, self._s, self._w
        dt = max((self._t - t_ref) * 1e-9, 1e-3)
        off = self._heading_offsets(hsig)
        cs, sn = np.cos(off), np.sin(off)
        dp = np.stack([cs * d[0] - sn * d[1], sn * d[0] + cs * d[1]])  # float64[2, n]: d turned by each offset
        moved = s[0:2] - self._anchor  # float64[2, n]: each particle's displacement since the anchor
        r2 = ((moved - dp) ** 2).sum(axis=0)
        var = sig * sig
        log_in = -0.5 * r2 / var - math.log(_TWO_PI * var) + math.log(p_in)
        log_out = math.log(1.0 - p_in) - math.log(math.pi * (c.max_speed_mps * dt) ** 2)
        log_l = np.logaddexp(log_in, log_out)
        with np.errstate(divide="ignore"):
            lw = np.log(w) + log_l
        pw = np.exp(lw - lw.max())
        pw /= pw.sum()
        # the particles' own say on whether the measurement is an inlier: its posterior probability under them
        p_in_particles = float(pw @ np.exp(log_in - log_l))
        if 1.0 / float(pw @ pw) < _DISPLACEMENT_MIN_ESS * w.size or p_in_particles < 0.5:
            # weights that would keep a handful of particles, or none near the measurement (all of them explained
            # as an outlier): the particles do not sample where it says they moved. When it agrees with the
            # belief's own displacement (Gaussian check), they are redrawn from the product of the two instead.
            mu, cov_p = _weighted_moments(moved, w)
            r = dp @ w - mu
            spread = (dp - (dp @ w)[:, None])
            cov_m = var * np.eye(2) + (spread * w) @ spread.T
            if float(r @ np.linalg.solve(cov_p + cov_m, r)) <= _DISPLACEMENT_REDRAW_CHI2:
                idx = self._resample_if_weighted()  # weighted: resample first (the anchors keep their weight)
                if idx is not None:
                    s, w, dp = self._s, self._w, dp[:, idx]
                    moved = s[0:2] - self._anchor
                    mu, cov_p = _weighted_moments(moved, w)
                info_p = np.linalg.inv(cov_p)
                cov = np.linalg.inv(info_p + np.eye(2) / var)
                mean = cov @ ((info_p @ mu)[:, None] + dp / var)  # float64[2, n]: per particle (its offset)
                new = mean + np.linalg.cholesky(cov) @ self._rng.standard_normal((2, w.size))
                s[0:2] = self._anchor + new
                # the velocity at the end: the mean velocity over the step, and what white acceleration
                # (accel_sigma) leaves unknown of the end velocity given the mean: std accel_sigma sqrt(dt / 3)
                # (the constant-velocity step had made them equal: photos 6 s apart then held the velocity of the
                # last step to 0.5 m/s through the turns between flight lines)
                z = self._rng.standard_normal((2, w.size))
                s[2:4] = new / dt + (c.accel_sigma * math.sqrt(dt / 3.0)) * z
                self._moved_from_init(t_ref)
                return "redrawn"
        self._reweight(log_l)
        self._moved_from_init(t_ref)
        return "weighted"

    def _moved_from_init(self, t_ref: int) -> None:
        """A displacement from ``t_ref`` to now was used: when ``t_ref`` is the initialising visual fix's time, or the
        end of the displacements measured since it (frames without candidates between), and no visual fix came
        since, the next fix (now) may count the initialising one (:meth:`update_visual`)."""
        if self._init_fix is not None and t_ref in self._init_fix:
            self._init_fix = (self._init_fix[0], self._t)

    def _velocity_conflicts(self, vel: np.ndarray, sig: float, vx: float, vy: float, spread: float) -> bool:
        """Track runs of measured velocities that conflict with the belief (mean ``vx, vy``, std ``spread`` per
        axis) and agree with each other; True when the run reaches ``velocity_conflict_count``."""
        c, t = self.config, self._t
        nis = ((vel[0] - vx) ** 2 + (vel[1] - vy) ** 2) / (sig**2 + spread**2)
        if nis <= c.velocity_conflict_nis or self._age(self._last_gps_ok_t) <= c.gps_outage_s:
            # (a GPS in use holds the belief's velocity -- directly, or through its positions: then the images are
            # what is wrong, e.g. static wave patterns on water measured 0.5 m/s for 6 m/s)
            self._vel_conflict = None
            return False
        run = self._vel_conflict
        if run is not None:
            n, t_last, v_last, sig_last = run
            dt = (t - t_last) * 1e-9
            agree = float(np.hypot(*(vel - v_last))) <= 3.0 * math.hypot(sig, sig_last) + c.accel_sigma * dt
            if dt <= 3.0 and agree:
                self._vel_conflict = (n + 1, t, vel, sig)
                return n + 1 >= c.velocity_conflict_count
        self._vel_conflict = (1, t, vel, sig)
        return c.velocity_conflict_count <= 1

    def _fix_inlier_prob(self, fix: VisualFix) -> float:
        """The fix's inlier probability: calibrated (``inlier_prob``, else ``max(probs)``, within
        ``visual_inlier_min .. visual_inlier_max``) or the constant ``visual_inlier_prob``."""
        c = self.config
        if fix.inlier_prob is not None:
            p_in = fix.inlier_prob
        elif fix.probs is not None:
            p_in = float(fix.probs.max())
        else:
            return c.visual_inlier_prob
        return min(max(p_in, c.visual_inlier_min), c.visual_inlier_max)

    def _log_mixture_weights(self, fix: VisualFix) -> np.ndarray:
        """float64[k] log weights of the fix's candidates in its mixture: ``probs / sum(probs)`` (uniform when all
        are 0; -inf for a candidate of probability 0), else the softmax of the scores."""
        if fix.probs is None:
            return self._log_softmax(fix.scores)
        tot = float(fix.probs.sum())
        if not tot > 0:
            return np.full(fix.k, -math.log(fix.k))
        with np.errstate(divide="ignore"):
            return np.log(fix.probs / tot)

    def _floor_log_density(self, fix: VisualFix) -> float:
        if fix.scope is not None:
            area = math.pi * fix.scope[2] ** 2
        elif self.bounds is not None:
            b = self.bounds
            area = (b[2] - b[0]) * (b[3] - b[1])
        else:
            area = self.config.visual_floor_area_m2
        return -math.log(max(area, 1.0))

    def _visual_log_terms(self, fix: VisualFix) -> tuple[np.ndarray, np.ndarray]:
        """(log inlier term, log total likelihood), each float64[n].

        Candidates farther than 10 sigma from the particles' bounding box contribute nothing (exp(-50)) and are
        skipped; the softmax is over all candidates. The yaw factor uses the von Mises form
        ``(cos(d) - 1) / sigma^2`` (= -d^2 / (2 sigma^2) for small d, periodic).
        """
        c, s = self.config, self._s
        n = s.shape[1]
        log_pi = self._log_mixture_weights(fix)
        p_in = self._fix_inlier_prob(fix)
        log_floor = math.log(1.0 - p_in) + self._floor_log_density(fix)
        var = fix.sigma_m**2 + c.visual_sigma_floor_m**2  # [k]
        px, py = fix.positions[:, 0], fix.positions[:, 1]
        gx = np.maximum(np.maximum(s[0].min() - px, px - s[0].max()), 0.0)
        gy = np.maximum(np.maximum(s[1].min() - py, py - s[1].max()), 0.0)
        keep = np.flatnonzero(((gx * gx + gy * gy) * (0.5 / var) < 50.0) & np.isfinite(log_pi))  # probs 0: no say
        yaw_known = None
        if fix.yaws is not None:
            log_floor -= _LOG_TWO_PI
            yaw_known = np.isfinite(fix.yaws)
        if keep.size == 0:
            return np.full(n, -np.inf), np.full(n, log_floor)
        var, log_pi, px, py = var[keep], log_pi[keep], px[keep], py[keep]
        # a[j, i] = log pi_j + log N(p_i; c_j, var_j) (+ log of the yaw factor) as one matmul G[k, 6] @ F[6, n], with
        # F = (|p|^2, x, y, cos yaw, sin yaw, 1) in coordinates centred on the particles (no cancellation); the
        # log-sum-exp over candidates exponentiates in float32 (values in [0, 1] after the shift).
        ox, oy = float(s[0].mean()), float(s[1].mean())
        qx, qy = s[0] - ox, s[1] - oy
        cx, cy = px - ox, py - oy
        inv = 1.0 / var
        feats = np.empty((6, n))
        feats[0] = qx * qx + qy * qy
        feats[1] = qx
        feats[2] = qy
        feats[5] = 1.0
        g = np.zeros((keep.size, 6))
        g[:, 0] = -0.5 * inv
        g[:, 1] = cx * inv
        g[:, 2] = cy * inv
        g[:, 5] = -0.5 * (cx * cx + cy * cy) * inv + log_pi - np.log(_TWO_PI * var)
        if yaw_known is not None:
            known = yaw_known[keep]
            ys2 = fix.yaw_sigma_rad**2
            yk = np.where(known, fix.yaws[keep], 0.0)
            feats[3] = np.cos(s[4])
            feats[4] = np.sin(s[4])
            g[:, 3] = np.where(known, np.cos(yk) / ys2, 0.0)
            g[:, 4] = np.where(known, np.sin(yk) / ys2, 0.0)
            g[:, 5] += np.where(known, -1.0 / ys2 - 0.5 * math.log(_TWO_PI * ys2), -_LOG_TWO_PI)
        else:
            feats[3] = 0.0
            feats[4] = 0.0
        a = np.empty((keep.size, n))
        step = max(1, _GEMM_BLOCK // (6 * n))  # blocks small enough that BLAS stays single-threaded
        for i in range(0, keep.size, step):
            np.matmul(g[i:i + step], feats, out=a[i:i + step])
        if keep.size == 1:
            log_in = a[0] + math.log(p_in)
        else:
            m = a.max(axis=0)
            a -= m
            e = a.astype(np.float32)
            np.exp(e, out=e)
            log_in = m + np.log(e.sum(axis=0)) + math.log(p_in)
        return log_in, np.logaddexp(log_in, log_floor)

    def _undersampled_fix(self, fix: VisualFix) -> tuple[int, float] | None:
        """(candidate, posterior mass) when the fix's best candidate is precise, no particle lies within
        ``inject_gap_sigmas`` of its sigma, and, with the belief's density there estimated by a kernel over the
        particles, the posterior still puts more than ``inject_min_mass`` on it: the particles do not sample where
        the fix says the vehicle is (a wide belief meeting a precise fix). None otherwise."""
        c, s = self.config, self._s
        log_pi = self._log_mixture_weights(fix)
        j = int(np.argmax(log_pi))
        sd2 = float(fix.sigma_m[j]) ** 2 + c.visual_sigma_floor_m**2
        if sd2 > c.inject_max_sigma_m**2:
            return None
        cx, cy = float(fix.positions[j, 0]), float(fix.positions[j, 1])
        d2 = (s[0] - cx) ** 2 + (s[1] - cy) ** 2
        if float(d2.min()) <= c.inject_gap_sigmas**2 * sd2:
            return None
        # the belief's density at the candidate, smoothed by a kernel (Silverman's bandwidth for 2-D), convolved with
        # the candidate's sigma: as a Gaussian of the whole cloud would be, but a gap between two modes stays empty
        _, _, cov = self._mean_cov()
        det = float(np.linalg.det(cov))
        h2 = math.sqrt(max(det, 0.0)) * self._w.size ** (-1.0 / 3.0)
        var = h2 + sd2
        dens = float(self._w @ np.exp(-0.5 * d2 / var)) / (_TWO_PI * var)
        if not dens > 0:
            return None
        p_in = self._fix_inlier_prob(fix)
        log_in = math.log(p_in) + float(log_pi[j]) + math.log(dens)
        log_out = math.log(1.0 - p_in) + self._floor_log_density(fix)
        mass = 1.0 / (1.0 + math.exp(min(log_out - log_in, 700.0)))
        return (j, mass) if mass > c.inject_min_mass else None

    def _draw_at_fix(self, fix: VisualFix, j: int, mass: float) -> None:
        """Resample the (just weighted) particles and move ``mass`` of them to ``N(candidate j, sigma^2)``, keeping
        their velocities (and taking the candidate's yaw when it has one)."""
        c = self.config
        n = self._w.size
        self._select(self._rng.permutation(self._systematic()))
        s = self._s
        k = int(round(mass * n))
        before = s[0:2, :k].copy()
        sd = math.sqrt(float(fix.sigma_m[j]) ** 2 + c.visual_sigma_floor_m**2)
        z = self._rng.standard_normal((3, k))
        s[0, :k] = fix.positions[j, 0] + sd * z[0]
        s[1, :k] = fix.positions[j, 1] + sd * z[1]
        if fix.yaws is not None and math.isfinite(float(fix.yaws[j])):
            s[4, :k] = _wrap(float(fix.yaws[j]) + fix.yaw_sigma_rad * z[2])
        if self._anchor is not None:  # a drawn particle keeps the displacement it had made since the anchor
            self._anchor[:, :k] += s[0:2, :k] - before
        self._w = np.full(n, 1.0 / n)
        self.injections += 1
        self._note(f"a precise visual fix where the particles were sparse: {k} of {n} drawn around it")

    def _kidnap_confirmed(self, fix: VisualFix) -> bool:
        """Whether the LOST belief may be replaced by this unsupported fix's candidates (see :meth:`update_visual`)."""
        c = self.config
        mx, my, cov = self._mean_cov()
        if self._sigma(cov) > c.lost_sigma_m:
            return True
        score = fix.probs if fix.probs is not None else fix.scores
        j = int(np.argmax(score))
        p = fix.positions[j].astype(np.float64)
        sd = float(fix.sigma_m[j])
        k, t = self._kidnap, self._t
        if k is not None:
            t_first, t_last, p_last, m_last, sd_last = k
            dt = (t - t_last) * 1e-9
            # where that place is now, moved as the belief moved (within what its velocity spread allows)
            expect = p_last + (np.array([mx, my]) - m_last)
            vstd = math.sqrt(2.0) * self._velocity_spread()[2]  # of the speed vector (both axes)
            tol = 3.0 * math.hypot(sd, sd_last) + 2.0 + (1.0 + 3.0 * vstd) * dt
            if dt <= 2.0 and float(np.hypot(*(p - expect))) <= tol:
                self._kidnap = (t_first, t, p, np.array([mx, my]), sd)
                return (t - t_first) * 1e-9 >= c.reinit_confirm_s
            if dt <= 1.0:
                return False  # one disagreeing fix (an outlier frame) does not break a recent run of agreeing ones
        self._kidnap = (t, t, p, np.array([mx, my]), sd)
        return False

    def update_visual(self, fix: VisualFix) -> float:
        """Weight the particles by one visual fix; returns its support in [0, 1].

        The support is the posterior probability that the fix's candidates (not the outlier floor) explain the
        belief: ``p_in * E_w[mixture] / E_w[likelihood]``. ``visual_confirm_frames`` consecutive fixes with support
        >= ``visual_support_min`` count as visual support (``visual_used``, status, LOST timer); a fix below it breaks
        the streak. The particles are weighted in every case. The first fix with candidates of an uninitialised
        tracker initialises the particles from its candidates (multi-modal) and returns 0.0 (it cannot support
        itself; it counts as the first of the streak when the next fix supports the belief and the displacement
        between the two was measured, directly or step by step across frames without candidates); while LOST,
        unsupported fixes re-initialise them (at most every ``reinit_interval_s``) once their
        best candidates have agreed with each other, moved by the belief's own motion, for ``reinit_confirm_s``
        (at once when the belief is wider than ``lost_sigma_m``): one look-alike place seen for a moment does not
        replace a belief that dead reckoning over water still holds. A fix without candidates changes nothing and
        returns 0.0.
        """
        if not isinstance(fix, VisualFix):
            raise TrackingError(f"update_visual expects a VisualFix, got {type(fix).__name__}")
        self._sync(fix.t_ns, "VisualFix.t_ns")
        if fix.k == 0:
            return 0.0
        if not self._init:
            self._init_from_candidates(fix)
            self._streak = 0
            self._init_fix = (self._t, None)
            self._note(f"initialised from {fix.k} visual candidates")
            return 0.0
        init_fix, self._init_fix = self._init_fix, None
        log_in, log_l = self._visual_log_terms(fix)
        m = float(log_l.max())
        w = self._w
        support = float(w @ np.exp(log_in - m)) / max(float(w @ np.exp(log_l - m)), 1e-300)
        support = min(max(support, 0.0), 1.0)
        if support < self.config.visual_support_min and self._is_lost():
            if self._kidnap_confirmed(fix) and self._age(self._last_init_t) >= self.config.reinit_interval_s:
                self._init_from_candidates(fix)
                self._streak = 0
                self._init_fix = (self._t, None)
                self._kidnap = None
                self._note(f"belief lost: re-initialised from {fix.k} visual candidates")
                return support
        else:
            self._kidnap = None
        inject = self._undersampled_fix(fix)
        self._reweight(log_l)
        if inject is not None:
            self._draw_at_fix(fix, *inject)
        j = int(np.argmax(self._log_mixture_weights(fix)))  # the fix's best candidate
        if self._fix_inlier_prob(fix) >= self.config.visual_support_min:
            self._last_vis = (self._t, fix.positions[j].copy(), float(fix.sigma_m[j]))
        if support >= self.config.visual_support_min:
            if self._streak == 0 and init_fix is not None and init_fix[1] == self._t:
                # the fix right after an initialising one, with the displacement between the two measured (directly
                # or step by step): it was checked against the initialising candidates moved by that displacement (a
                # prediction as tight as the measurement), so the initialising fix is the first of the agreeing ones
                self._streak = 1
            self._streak += 1
            if self._streak >= self.config.visual_confirm_frames:
                self._last_support_t = self._t
                p, sg = fix.positions[j], float(fix.sigma_m[j])
                if math.hypot(sg, self.config.visual_sigma_floor_m) <= self.config.ok_sigma_m:
                    if self._confirms(p, sg):
                        self._last_precise_t = self._t
                    self._last_precise_fix = (self._t, p.copy(), sg)
        else:
            self._streak = 0
        return support

    # -- outputs -----------------------------------------------------------------------------------------------------
    def estimate(self) -> TrackEstimate:
        """The current estimate (weighted mean, covariance, circular yaw statistics, status, notes). No side effects.

        Notes describe the current condition (outage length, rejection reason, why LOST, dead reckoning) and events
        (initialisation, re-initialisation, GPS re-acceptance) of the last ``NOTE_HOLD_S`` = 1 s.
        """
        c = self.config
        t = self._t if self._t is not None else 0
        gps_state = self._gps_state()
        visual = self._visual_recent() if self._init else False
        notes = [text for t_note, text in self._notes if (t - t_note) * 1e-9 <= NOTE_HOLD_S]
        if not self._init:
            cov = np.full((2, 2), np.inf)
            cov[0, 1] = cov[1, 0] = 0.0
            notes.append("not initialised: waiting for a GPS fix or a visual fix with candidates")
            return TrackEstimate(t, math.nan, math.nan, math.nan, cov, math.pi, Status.LOST, gps_state, False,
                                 0.0, tuple(notes))
        mx, my, cov = self._mean_cov()
        sigma = self._sigma(cov)
        yaw, ysig = self._yaw_stats()
        status = self._status(sigma, gps_state, visual)
        if gps_state == "outage":
            notes.append(f"gps outage: no fix used for {self._age(self._last_gps_ok_t):.1f} s")
        elif gps_state == "rejected":
            notes.append(f"gps rejected: {self._reject_reason}")
        if status is Status.LOST:
            if sigma > c.lost_sigma_m:
                notes.append(f"lost: spread {sigma:.0f} m > lost_sigma_m {c.lost_sigma_m:g} m")
            else:
                notes.append(f"lost: no accepted GPS and no visual support for {self._unsupported_s():.1f} s")
        elif not visual and gps_state != "ok":
            notes.append("dead reckoning: no accepted GPS and no recent visual support")
        elif status is Status.DEGRADED and self._age(self._last_precise_t) > c.visual_timeout_s:
            notes.append("not checked by a precise camera fix (OK needs one within ok_sigma_m, recent): a GPS no "
                         "camera checks may be dragged unseen")
        n_eff = 1.0 / float(self._w @ self._w)
        cov.setflags(write=False)
        vx, vy, vsig = self._velocity_spread()
        return TrackEstimate(t, mx, my, yaw, cov, ysig, status, gps_state, visual, n_eff, tuple(notes), (vx, vy), vsig)

    def search_scope(self, min_radius_m: float = 60.0) -> tuple[float, float, float] | None:
        """(x, y, radius_m) for ``MapPackage.search(prior=...)`` covering the belief, or None = search the whole map.

        radius = max(min_radius_m, 3 sigma + scope_margin_m). None when uninitialised, LOST, the radius exceeds
        ``wide_search_radius_m``, or the circle covers the whole of ``bounds``.
        """
        rmin = finite_float(min_radius_m, "search_scope min_radius_m", positive=True)
        if not self._init or self._is_lost():
            return None
        mx, my, cov = self._mean_cov()
        radius = max(rmin, 3.0 * self._sigma(cov) + self.config.scope_margin_m)
        if radius > self.config.wide_search_radius_m:
            return None
        if self.bounds is not None:
            x0, y0, x1, y1 = self.bounds
            far = math.hypot(max(abs(mx - x0), abs(mx - x1)), max(abs(my - y0), abs(my - y1)))
            if far <= radius:
                return None
        return (mx, my, radius)

    def yaw_hypotheses(self, n: int = 8) -> list[float] | None:
        """None when the yaw is known (sigma < ``yaw_known_sigma_rad``); else ``n`` yaws (ENU rad, in [-pi, pi))
        covering the belief: evenly over mean +- 2.5 sigma, or evenly over the circle when that span exceeds it or the
        tracker is uninitialised."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise TrackingError(f"yaw_hypotheses n must be an integer >= 1, got {n!r}")
        n = int(n)
        if self._init:
            mean, sig = self._yaw_stats()
            if sig < self.config.yaw_known_sigma_rad:
                return None
            if 5.0 * sig < _TWO_PI:
                offsets = np.linspace(-2.5 * sig, 2.5 * sig, n) if n > 1 else np.zeros(1)
                return [float(v) for v in _wrap(mean + offsets)]
        return [float(v) for v in _wrap(np.arange(n) * (_TWO_PI / n))]


def bench_tracker(n_particles: int = 1500, k: int = 10, steps: int = 200, seed: int = 0) -> dict[str, float]:
    """Mean wall time per call, microseconds, of predict / update_gps / update_visual / estimate on a straight flight
    (5 Hz GPS and camera, ``k`` candidates per visual fix)."""
    cfg = TrackerConfig(n_particles=n_particles, seed=seed)
    trk = ParticleTracker(cfg)
    rng = np.random.default_rng(seed)
    times = {"predict": 0.0, "update_gps": 0.0, "update_visual": 0.0, "estimate": 0.0}
    for i in range(steps):
        t = i * 200_000_000
        truth = np.array([10.0 * i * 0.2, 0.0])
        a = time.perf_counter()
        trk.predict(t, yaw=0.0)
        b = time.perf_counter()
        trk.update_gps(t, truth[0] + rng.normal(0, 5), truth[1] + rng.normal(0, 5), 5.0)
        c = time.perf_counter()
        pos = truth + rng.normal(0, 1.0, (k, 2))
        pos[1:] += rng.uniform(-300, 300, (k - 1, 2))
        trk.update_visual(VisualFix(t, pos, rng.uniform(0.6, 0.8, k), np.ones(k), np.zeros(k)))
        d = time.perf_counter()
        trk.estimate()
        e = time.perf_counter()
        times["predict"] += b - a
        times["update_gps"] += c - b
        times["update_visual"] += d - c
        times["estimate"] += e - d
    return {name: 1e6 * v / steps for name, v in times.items()}


__all__ = ["ParticleTracker", "bench_tracker"]
