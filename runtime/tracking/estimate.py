"""The tracker's answer: a position/yaw estimate with its covariance, a status and why."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np


class Status(str, enum.Enum):
    """Health of the track.

    * ``OK``: within the 10 m alert limit with 95 % confidence (sigma <= ``ok_sigma_m``, 4.08 m) *and* checked by a
      recent precise camera fix (its own sigma within ``ok_sigma_m``), with the GPS accepted (or no GPS at all): two
      independent sources agree. A GPS alone is never OK: nothing could tell a slow drag from its bias.
    * ``DEGRADED``: usable but unchecked or weaker: GPS alone, GPS outage (visual only or dead reckoning), camera
      fixes too wide to check the GPS (a level camera without IMU), or sigma above ``ok_sigma_m``.
    * ``GPS_REJECTED``: the GPS is rejected by the gate (spoof/jump), from the first rejected fix until it has been
      consistent again for ``gps_reaccept_s``.
    * ``LOST``: not initialised, sigma > ``lost_sigma_m``, or neither accepted GPS nor visual support for
      ``lost_no_support_s``. The caller then searches the whole map (``search_scope() is None``).
    """

    OK = "OK"
    DEGRADED = "DEGRADED"
    GPS_REJECTED = "GPS_REJECTED"
    LOST = "LOST"


@dataclass(frozen=True, eq=False)
class TrackEstimate:
    """Weighted particle mean and spread at ``t_ns``.

    Attributes:
        t_ns: time of the estimate (the tracker's latest time; 0 before any call), integer nanoseconds.
        x, y: local metres (ENU, x east, y north); NaN before initialisation.
        yaw_rad: ENU yaw (0 = east, CCW), circular mean, in (-pi, pi]; NaN before initialisation.
        cov_xy: float64[2, 2] position covariance, m^2 (infinite diagonal before initialisation).
        yaw_sigma_rad: circular std of the yaw, rad (pi when unknown).
        status: :class:`Status`.
        gps_state: ``"ok"`` (fix accepted within ``gps_outage_s``), ``"rejected"`` (gate rejection / probation),
            ``"outage"`` (no fix for more than ``gps_outage_s``), ``"none"`` (no GPS fix ever).
        visual_used: a visual fix gave support within ``visual_timeout_s``.
        n_eff: effective sample size of the particle weights.
        notes: human-readable reasons (outage length, rejection, re-initialisations since the last estimate).
        velocity_xy: (east, north) ground velocity, m/s: the particles' weighted mean velocity; None before
            initialisation.
        velocity_sigma_mps: its std per axis, m/s (sqrt of the mean of the two variances); None before
            initialisation.
    """

    t_ns: int
    x: float
    y: float
    yaw_rad: float
    cov_xy: np.ndarray
    yaw_sigma_rad: float
    status: Status
    gps_state: str
    visual_used: bool
    n_eff: float
    notes: tuple[str, ...] = ()
    velocity_xy: tuple[float, float] | None = None
    velocity_sigma_mps: float | None = None

    @property
    def sigma_m(self) -> float:
        """sqrt of the largest eigenvalue of :attr:`cov_xy`, metres (inf when unknown)."""
        c = np.asarray(self.cov_xy, dtype=np.float64)
        if not np.all(np.isfinite(c)):
            return math.inf
        return float(math.sqrt(max(float(np.linalg.eigvalsh(c)[-1]), 0.0)))

    @property
    def position(self) -> np.ndarray:
        """float64[2] (x, y) metres."""
        return np.array([self.x, self.y])


__all__ = ["Status", "TrackEstimate"]
