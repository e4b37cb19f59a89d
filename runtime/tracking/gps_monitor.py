"""Self-consistency of the GPS alone: does its track jump, and for how long has it been continuous?

The belief gate of :meth:`runtime.tracking.ParticleTracker.update_gps` compares a fix with the belief; it cannot tell
a GPS that jumped (a spoofer taking over, multipath) from a belief that drifted (dead reckoning, a wrong visual
lock). :class:`GpsMonitor` looks at the GPS track by itself: a constant-velocity Kalman filter over the fixes (and
their ground velocity when given), with a stated vehicle model (white acceleration of ``accel_sigma`` m/s^2 per
sqrt(Hz)) and the receiver's stated noise, scaled up by what the innovations show when the receiver understates it.

Per fix it answers a :class:`GpsCheck`:

* ``suspect``: the fix does not fit the GPS's own track (normalised innovation squared, 2 dof, above ``jump_chi2``):
  it is not used. A lone outlier is dropped and the track goes on;
* ``jump``: the next fix confirmed the suspect one (it continues from there, not from the old track): the GPS
  jumped. Whoever uses the GPS should stop trusting it until it agrees with an independent belief again;
* ``continuous_s``: how long the track has been continuous (since the first fix, the last gap over ``gap_s`` or the
  last jump), seconds: a GPS that disagrees with the belief but has stayed continuous since they last agreed has not
  jumped -- the belief moved.

Units: local metres (x east, y north), m/s, integer nanoseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["GpsCheck", "GpsMonitor"]


@dataclass(frozen=True)
class GpsCheck:
    """What :meth:`GpsMonitor.update` found for one fix (see the module docstring).

    Attributes:
        nis: normalised innovation squared (2 dof) of the fix against the GPS's own predicted track (NaN at a reset).
        suspect: the fix does not fit the GPS's own track (not to be used).
        jump: the track jumped (this fix confirmed the previous suspect one).
        continuous_s: how long the GPS track has been continuous, seconds.
        distance_m: distance of the fix from the predicted track, metres (NaN at a reset).
    """

    nis: float
    suspect: bool
    jump: bool
    continuous_s: float
    distance_m: float


class GpsMonitor:
    """Constant-velocity Kalman filter over the GPS fixes alone (see the module docstring).

    Args:
        accel_sigma: white acceleration of the vehicle model, m/s^2 per sqrt(Hz).
        jump_chi2: a fix whose normalised innovation squared (2 dof) exceeds this does not fit the track.
        gap_s: no fix for longer than this (seconds) restarts the track (its continuity is unknown across the gap).
        noise_window: fixes over which the receiver's stated sigma is checked against the innovations (the noise
            scale moves so that the consistent fixes' mean normalised innovation squared is 2; never below 1).
    """

    def __init__(self, accel_sigma: float = 3.0, jump_chi2: float = 25.0, gap_s: float = 2.0,
                 noise_window: int = 50) -> None:
        self.accel_sigma = float(accel_sigma)
        self.jump_chi2 = float(jump_chi2)
        self.gap_s = float(gap_s)
        self._alpha = 1.0 / max(int(noise_window), 1)
        self.reset()

    def reset(self) -> None:
        """Forget the track."""
        self._x: np.ndarray | None = None  # x, y, vx, vy
        self._P = np.zeros((4, 4))
        self._t: int | None = None
        self._since: int | None = None
        self._pending: tuple | None = None  # a suspect fix: (t_ns, xy, sigma)
        self._scale2 = 1.0  # squared factor on the stated sigma that makes the consistent fixes' mean NIS 2
        #: confirmed jumps of the track
        self.jumps = 0

    @property
    def noise_scale(self) -> float:
        """Factor on the receiver's stated sigma that the innovations show (>= 1)."""
        return math.sqrt(self._scale2)

    @property
    def velocity(self) -> np.ndarray | None:
        """float64[2] the track's ground velocity (east, north) m/s, None before a track."""
        return None if self._x is None else self._x[2:].copy()

    @property
    def velocity_sigma(self) -> float:
        """Std of the track's velocity per axis, m/s (inf before a track)."""
        return math.inf if self._x is None else math.sqrt(max(0.5 * (self._P[2, 2] + self._P[3, 3]), 0.0))

    def _start(self, t: int, xy: np.ndarray, sigma: float, vel, vsig: float) -> None:
        self._x = np.array([xy[0], xy[1], 0.0, 0.0])
        self._P = np.diag([sigma**2, sigma**2, 100.0, 100.0])
        if vel is not None:
            self._x[2:] = vel
            self._P[2, 2] = self._P[3, 3] = vsig**2
        self._t = t

    def _predict(self, dt: float) -> tuple[np.ndarray, np.ndarray]:
        F = np.eye(4)
        F[0, 2] = F[1, 3] = dt
        q = self.accel_sigma**2
        Q = np.zeros((4, 4))
        for i in (0, 1):
            Q[i, i] = q * dt**3 / 3.0
            Q[i, i + 2] = Q[i + 2, i] = q * dt**2 / 2.0
            Q[i + 2, i + 2] = q * dt
        return F @ self._x, F @ self._P @ F.T + Q

    def update(self, t_ns: int, x: float, y: float, sigma_m: float, velocity_xy=None,
               velocity_sigma: float | None = None) -> GpsCheck:
        """Check one fix (position ``x, y`` metres with its stated ``sigma_m`` per axis; optional ground velocity
        with its std ``velocity_sigma`` m/s) against the GPS's own track, then add it to the track."""
        t = int(t_ns)
        xy = np.array([float(x), float(y)])
        sig = float(sigma_m) * self.noise_scale
        vel = None if velocity_xy is None else np.asarray(velocity_xy, np.float64).reshape(2)
        vsig = 1.0 if velocity_sigma is None else float(velocity_sigma)
        if self._x is None or self._t is None or (t - self._t) * 1e-9 > self.gap_s:
            self._start(t, xy, sig, vel, vsig)
            self._since, self._pending = t, None
            return GpsCheck(math.nan, False, False, 0.0, math.nan)
        dt = max((t - self._t) * 1e-9, 0.0)
        xp, Pp = self._predict(dt)
        d = xy - xp[:2]
        S = Pp[:2, :2] + np.eye(2) * sig**2
        nis = float(d @ np.linalg.solve(S, d))
        dist = float(math.hypot(d[0], d[1]))
        if nis > self.jump_chi2:
            pend = self._pending
            if pend is not None and (t - pend[0]) * 1e-9 <= self.gap_s:
                # a second fix off the old track: does it continue from the suspect one? then the track jumped
                gap = xy - pend[1]
                tol2 = 2.0 * sig**2 + pend[2] ** 2 + (self.accel_sigma * (t - pend[0]) * 1e-9) ** 2
                moved = float(gap @ gap) - float(np.sum((xp[2:] * (t - pend[0]) * 1e-9) ** 2))
                if moved <= self.jump_chi2 * tol2:
                    self._start(pend[0], pend[1], pend[2], None, vsig)
                    self._x[2:] = xp[2:]
                    self._P[2, 2] = self._P[3, 3] = Pp[2, 2]
                    self._step(t, xy, sig, vel, vsig)
                    self._since, self._pending = pend[0], None
                    self.jumps += 1
                    return GpsCheck(nis, True, True, (t - self._since) * 1e-9, dist)
            self._pending = (t, xy, sig)
            return GpsCheck(nis, True, False, (t - self._since) * 1e-9, dist)
        self._pending = None
        self._scale2 = max(1.0, self._scale2 * (1.0 + self._alpha * (nis / 2.0 - 1.0)))
        self._x, self._P = xp, Pp
        self._t = t
        self._step(t, xy, sig, vel, vsig, predicted=True)
        return GpsCheck(nis, False, False, (t - self._since) * 1e-9, dist)

    def _step(self, t: int, xy: np.ndarray, sig: float, vel, vsig: float, predicted: bool = False) -> None:
        """Kalman update of the track with one fix (predicting it to ``t`` first unless ``predicted``)."""
        if not predicted:
            dt = max((t - self._t) * 1e-9, 0.0)
            self._x, self._P = self._predict(dt)
            self._t = t
        H = np.zeros((4 if vel is not None else 2, 4))
        H[0, 0] = H[1, 1] = 1.0
        z = xy
        R = np.eye(2) * sig**2
        if vel is not None:
            H[2, 2] = H[3, 3] = 1.0
            z = np.concatenate([xy, vel])
            R = np.diag([sig**2, sig**2, vsig**2, vsig**2])
        S = H @ self._P @ H.T + R
        K = np.linalg.solve(S, H @ self._P).T
        self._x = self._x + K @ (z - H @ self._x)
        self._P = (np.eye(4) - K @ H) @ self._P
