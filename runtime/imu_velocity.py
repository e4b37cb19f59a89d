"""IMU acceleration as the filter's motion input, with the tilt/accelerometer bias estimated from ground velocity.

:class:`ImuVelocity` integrates an IMU's horizontal acceleration into the velocity change between two filter steps
(:meth:`runtime.tracking.ParticleTracker.predict` ``delta_v``). Each sample's specific force is rotated to the world
(ENU) by its orientation; gravity is vertical, so the horizontal part is the vehicle's horizontal acceleration --
plus what an error of the reported roll/pitch leaks of gravity (0.3 degrees: 0.05 m/s^2, 9 m after 20 s) and the
accelerometer's own bias. Both sit in the body frame and change slowly, so they turn with the vehicle.

With ``estimate_bias`` a small Kalman filter estimates that bias while ground velocity arrives (GPS, or the ground
odometry of :mod:`runtime.ground_odometry`; :meth:`ImuVelocity.update_velocity`)::

    state   x = (v_e, v_n, b_x, b_y): world horizontal velocity, m/s; bias along the body x/y axes, m/s^2
    predict v += (a_world - A b) dt,  b <- exp(-dt/tau) b + w   (A = R_body2world[:2, :2], per sample)
    update  z = ground velocity (e, n) with its sigma

and the velocity changes handed to the tracker are integrated from ``a_world - A b`` (the bias taken out). The bias
is a first-order Gauss-Markov process (stationary std ``bias_sigma``, time constant ``bias_tau_s``): an attitude
error wanders over tens of seconds, so without ground velocity (an outage) the estimate fades back to zero over
``bias_tau_s`` instead of being extrapolated stale. On simulated flights (attitude error 0.3 degrees rms, wandering
over 20-200 s) it halves the dead-reckoning drift of the first 10 s of a GPS outage (about 5 m to 2-3 m); over 30 s
the attitude error has changed and the gain is smaller.
"""

from __future__ import annotations

import math

import numpy as np

from .events import ImuSample

__all__ = ["ImuVelocity"]


class ImuVelocity:
    """Integrates an IMU's horizontal acceleration into velocity changes between filter steps.

    Args:
        max_gap_s: samples further apart than this (seconds) are not integrated across, and :meth:`take` answers
            None when the last sample is older than this.
        estimate_bias: estimate the body-frame horizontal acceleration bias from GPS ground velocity and take it
            out (False: raw integration, :attr:`bias` stays zero).
        accel_noise: white acceleration noise of the integration, m/s^2 per sqrt(Hz) (accelerometer noise, yaw error
            on turns).
        bias_sigma: the bias's stationary std, m/s^2 (0.07: a 0.4 degree tilt error).
        bias_tau_s: its correlation time, seconds (how long an attitude error lasts).
    """

    def __init__(self, max_gap_s: float, *, estimate_bias: bool = False, accel_noise: float = 0.05,
                 bias_sigma: float = 0.07, bias_tau_s: float = 15.0) -> None:
        self.max_gap_s = float(max_gap_s)
        self.estimate_bias = bool(estimate_bias)
        self._q_v = float(accel_noise) ** 2
        self._b_var = float(bias_sigma) ** 2
        self._tau = float(bias_tau_s)
        self._dv = np.zeros(2)
        self._t: int | None = None
        self._x = np.zeros(4)  # v_e, v_n, b_x, b_y
        self._P = np.diag([0.0, 0.0, self._b_var, self._b_var])
        self._v_known = False
        #: ground-velocity updates used / refused by the innovation gate
        self.updates = 0
        self.rejected = 0

    @property
    def bias(self) -> np.ndarray:
        """float64[2] the estimated horizontal acceleration bias along the body x (forward) and y (left) axes,
        m/s^2 (zero without ground velocity)."""
        return self._x[2:].copy()

    @property
    def bias_sigma(self) -> float:
        """Std of the bias estimate, m/s^2 (larger of the two axes)."""
        return float(math.sqrt(max(self._P[2, 2], self._P[3, 3])))

    def add(self, sample: ImuSample) -> None:
        """Integrate one sample (with orientation) over the interval since the previous one."""
        R = sample.R_body2world
        if R is None:
            return
        prev, self._t = self._t, sample.t_ns
        dt = 0.0 if prev is None else (sample.t_ns - prev) * 1e-9
        if not 0.0 < dt <= self.max_gap_s:
            return
        a = (R @ np.asarray(sample.linear_acceleration, np.float64))[:2]
        if not self.estimate_bias:
            self._dv += a * dt
            return
        A = R[:2, :2]
        a = a - A @ self._x[2:]
        self._dv += a * dt
        # x <- F x (+ a dt on v), P <- F P F^T + Q with F = [[I, -A dt], [0, phi I]]
        phi = math.exp(-dt / self._tau)
        if self._v_known:
            self._x[:2] += a * dt
        self._x[2:] *= phi
        F = np.eye(4)
        F[:2, 2:] = -A * dt
        F[2, 2] = F[3, 3] = phi
        P = F @ self._P @ F.T
        q_b = self._b_var * (1.0 - phi * phi)
        P[0, 0] += self._q_v * dt
        P[1, 1] += self._q_v * dt
        P[2, 2] += q_b
        P[3, 3] += q_b
        self._P = P

    def update_velocity(self, velocity_xy, sigma_mps: float) -> bool:
        """One GPS ground velocity (east, north) in m/s with its std per axis: corrects the velocity and, through
        their correlation, the bias. The first one sets the velocity. An innovation beyond chi^2 = 20 (2 dof) is
        refused (a glitch); returns whether it was used."""
        if not self.estimate_bias:
            return False
        z = np.asarray(velocity_xy, np.float64).reshape(2)
        r = float(sigma_mps) ** 2
        if not (np.all(np.isfinite(z)) and math.isfinite(r) and r > 0):
            return False
        if not self._v_known:
            self._x[:2] = z
            self._P[:2, :2] = np.eye(2) * r
            self._P[:2, 2:] = 0.0
            self._P[2:, :2] = 0.0
            self._v_known = True
            self.updates += 1
            return True
        y = z - self._x[:2]
        S = self._P[:2, :2] + np.eye(2) * r
        S_inv = np.linalg.inv(S)
        if float(y @ S_inv @ y) > 20.0:
            self.rejected += 1
            return False
        K = self._P[:, :2] @ S_inv  # [4, 2]
        self._x += K @ y
        self._P = self._P - K @ self._P[:2, :]
        self._P = 0.5 * (self._P + self._P.T)
        self.updates += 1
        return True

    def take(self, t_ns: int) -> np.ndarray | None:
        """float64[2] (east, north) velocity change since the last take, m/s, and start again from zero; None when
        no sample within ``max_gap_s`` of ``t_ns``."""
        dv, self._dv = self._dv, np.zeros(2)
        if self._t is None or abs(t_ns - self._t) > self.max_gap_s * 1e9:
            return None
        return dv
