"""Configuration of the particle tracker: one frozen dataclass, strict ``from_dict`` (unknown keys rejected).

Units: metres, seconds, metres per second, radians; ``*_per_sqrt_s`` noise terms are random-walk densities (the std
after ``t`` seconds is ``value * sqrt(t)``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields

import numpy as np

from maps.config import strict_from_dict

from .errors import TrackingError


#: the largest value of every numeric setting (the least is in ``__post_init__``: > 0, integers >= 1, n_particles >= 10,
#: seed >= 0). Generous (tens to thousands of times the defaults), they refuse what would exhaust the computer:
#: n_particles <= 100,000 keeps the tracker's arrays and temporaries under 50 MB (18 MB measured with tracemalloc over
#: predict, GPS and visual updates) and a step within tens of milliseconds.
MAXIMA = {
    "n_particles": 100_000, "seed": 2**32 - 1, "velocity_conflict_count": 1000, "visual_confirm_frames": 1000,
    "accel_sigma": 100.0, "position_sigma": 100.0, "yaw_rate_sigma": 10.0, "max_speed_mps": 1000.0,
    "init_speed_sigma_mps": 1000.0, "velocity_sigma_mps": 100.0, "imu_yaw_sigma_rad": 2.0 * math.pi,
    "imu_accel_sigma": 100.0, "velocity_conflict_nis": 1e6, "motion_heading_tau_s": 1e6,
    "gps_bias_m": 1000.0, "gps_bias_tau_s": 1e6, "gps_gate_chi2": 1e6, "gps_monitor_accel_sigma": 100.0,
    "gps_trust_s": 3600.0, "gps_drag_window_s": 3600.0, "gps_drag_chi2": 1e6, "gps_max_jump_m": 1e6,
    "gps_reaccept_s": 3600.0, "gps_outage_s": 3600.0, "gps_velocity_sigma_mps": 100.0,
    "visual_temperature": 100.0, "visual_inlier_prob": 1.0, "visual_inlier_min": 1.0, "visual_inlier_max": 1.0,
    "visual_sigma_floor_m": 1000.0, "visual_floor_area_m2": 1e8, "visual_support_min": 1.0,
    "visual_timeout_s": 3600.0,
    "ok_sigma_m": 1000.0, "ok_confirm_s": 3600.0, "ok_check_chi2": 1e6, "lost_sigma_m": 1e6,
    "lost_no_support_s": 86400.0, "reinit_interval_s": 3600.0, "reinit_confirm_s": 3600.0,
    "scope_margin_m": 1e5, "wide_search_radius_m": 1e7, "yaw_known_sigma_rad": 2.0 * math.pi,
    "resample_ess_fraction": 1.0, "inject_max_sigma_m": 1000.0, "inject_gap_sigmas": 100.0, "inject_min_mass": 1.0,
    "max_backstep_s": 3600.0,
}


@dataclass(frozen=True)
class TrackerConfig:
    """Every tuning value of :class:`~runtime.tracking.ParticleTracker`. Every number has a range: at least the
    least stated below (most: > 0), at most :data:`MAXIMA`; out of it, :class:`TrackingError` names the key, the value
    and the range.

    Particles and randomness:
        n_particles: particles (int >= 10). seed: seed of the tracker's ``np.random.Generator`` (int >= 0).
    Motion model (constant velocity, state x, y, vx, vy, yaw per particle):
        accel_sigma: white acceleration noise, m/s^2 per sqrt(Hz) (velocity std grows by ``accel_sigma*sqrt(dt)``).
        position_sigma: extra position random walk, m per sqrt(s) (unmodelled motion, keeps particles diverse).
        yaw_rate_sigma: yaw random walk, rad per sqrt(s), when no IMU yaw pins it.
        max_speed_mps: horizontal speed the particle velocities are clipped to.
        motion_heading_tau_s: time constant of the heading error of measured displacements
            (:meth:`ParticleTracker.update_displacement`), seconds: a recorded heading's error holds for a while (on
            Seneca most of it is shared by a flight line's photos, ~30 s; between lines it changes).
        init_speed_sigma_mps: std of the initial velocity (each axis) when it is unknown.
        velocity_sigma_mps: default std of a velocity given to ``predict`` without its own sigma.
        imu_yaw_sigma_rad: default std of a yaw given to ``predict`` without its own sigma.
        imu_accel_sigma: acceleration noise left when an IMU's measured velocity change (``predict(delta_v=...)``)
            moves the particles, m/s^2 per sqrt(Hz) (accelerometer noise and what is left of its bias and of the
            attitude error leaking gravity). 0.3: the particle velocities spread by ~1 m/s in 10 s without fixes,
            about what a 0.3 degree attitude error does; 1.0 spread them three times wider than the IMU's error, and
            a wrong visual fix 4 belief sigmas out then found particles whose velocity was 5 m/s off.
        velocity_conflict_nis: a measured ground velocity (``update_velocity``) whose normalised innovation squared
            (2 dof) against the particles' mean velocity and spread exceeds this conflicts with the belief.
        velocity_conflict_count: that many conflicting measurements in a row that agree with each other (no
            gap over 3 s) re-anchor the particle velocities on the last one: the belief's velocity is wrong, not
            the measurements (a velocity picked up from two early fixes, with a spread too tight for the fixes that
            follow to correct it). Not while a GPS fix is in use (within ``gps_outage_s``): it holds the velocity.
    GPS:
        gps_bias_m: std per axis of the GPS bias (metres), a state of every particle: the slow part of a receiver's
            error that its reported sigma leaves out (atmosphere, multipath). A first-order Gauss-Markov process
            with time constant ``gps_bias_tau_s`` (seconds). Fixes constrain position plus bias; the camera
            constrains the position, so with it the bias is seen and a drag spoof shows as a bias change the model
            cannot explain.
        gps_gate_chi2: a fix is inconsistent when its normalised innovation squared (2 dof) exceeds this (against the
            belief, and against the GPS's own track in :class:`~runtime.tracking.gps_monitor.GpsMonitor`).
        gps_monitor_accel_sigma: white acceleration of the vehicle model of the GPS's own track (m/s^2 per sqrt(Hz));
            sets how far a fix may leave that track before it counts as a jump.
        gps_trust_s: a GPS whose own track stays continuous while the belief keeps rejecting it for this long
            (seconds), with no confident camera fix contradicting the GPS in the last ``gps_trust_s``, overrules the
            belief (re-drawn at the GPS): the belief is what moved (dead reckoning, a wrong visual lock).
        gps_drag_window_s, gps_drag_chi2: while the camera supports the belief, the change of the GPS bias over
            any span up to this (seconds, kept once a second) is tested against the bias model (chi-square, 2 dof):
            beyond it, moving away from the prior, the GPS is being dragged and is faulted.
        gps_max_jump_m: a fix farther than this from the belief mean (and farther than 3 belief sigmas) is
            inconsistent whatever the NIS.
        gps_reaccept_s: a faulted GPS (its track jumped, or it was dragged) is used again once the mean of its
            innovations over this long (seconds) is consistent with the belief.
        gps_outage_s: no fix for longer than this -> ``gps_state == "outage"`` (and a note).
        gps_velocity_sigma_mps: std of a velocity given to ``update_gps``.
    Visual likelihood:
        visual_temperature: softmax temperature over candidate scores (cosine or NCC units).
        visual_inlier_prob: prior probability that a fix's candidates contain the vehicle (fixes without calibrated
            ``probs``).
        visual_inlier_min, visual_inlier_max: bounds on a calibrated fix's inlier probability (``inlier_prob`` or
            ``max(probs)``): a fix is never taken as certain (the outlier floor keeps the particles alive when it is
            wrong).
        visual_sigma_floor_m: added in quadrature to each candidate's sigma.
        visual_floor_area_m2: area the outlier floor is spread over when the fix has no scope and the tracker no
            bounds (the floor density is 1 / area of the searched scope, else of the bounds, else this).
        visual_support_min: a fix whose posterior inlier probability is at least this supports the belief.
        visual_confirm_frames: visual support counts (``visual_used``, status, LOST timer) only after this many
            consecutive supporting fixes, so that a chance coincidence of one wrong candidate with the belief does not.
            A visual fix that initialised the particles counts as the first of them when the displacement from it to
            the next fix was measured (:meth:`ParticleTracker.update_displacement`, e.g. two overlapping photos; or
            step by step across frames without candidates): that fix is then checked against the initialising
            candidates moved by it, a prediction as tight as the measurement; with the motion unknown (seconds
            between photos, no IMU) the belief's velocity is not, and a wrong pair of candidates agrees by chance
            within it.
        visual_timeout_s: visual support older than this no longer counts as recent.
    Status:
        ok_confirm_s, ok_check_chi2: a precise camera fix is the check OK needs only when the previous precise fix
            came at most ``ok_confirm_s`` seconds before it and the two agree: the normalised squared difference (2
            dof) of the new position and the previous one moved by the belief's velocity, over their variances and
            the velocity spread times the gap, at most ``ok_check_chi2`` (9.21: 99 %). One camera match alone is no
            check: on real survey photos 6 s apart a single wrong match with a 3.2 m sigma made an estimate OK 25 m
            off. Frames further apart than ``ok_confirm_s`` are therefore never OK.
        ok_sigma_m: OK needs the belief sigma (sqrt of the largest eigenvalue of cov_xy) at most this: 4.08 m puts
            the 95 % ellipse (2.45 sigma) inside the 10 m alert limit. OK also needs recent visual support from fixes this
            precise themselves (best candidate's sigma, with ``visual_sigma_floor_m``): a GPS no camera checks may be
            dragged unseen, and a fix too wide to tell a drag (a level camera without IMU: its unseen tilt) cannot
            check it either.
        lost_sigma_m: belief sigma above this -> LOST.
        lost_no_support_s: without accepted GPS and without visual support for this long -> LOST.
        reinit_confirm_s: while LOST (belief sigma within ``lost_sigma_m``), unsupported visual fixes re-initialise
            only after their best candidates have agreed (moved as the belief moved) for this long, seconds.
        reinit_interval_s: while LOST, a visual fix without support re-initialises the particles from its
            candidates at most this often.
    Search scope:
        scope_margin_m: added to 3 sigma for :meth:`search_scope`.
        wide_search_radius_m: a scope radius above this is answered with None (search the whole map).
        yaw_known_sigma_rad: :meth:`yaw_hypotheses` returns None when the yaw sigma is below this.
    Resampling:
        inject_max_sigma_m, inject_gap_sigmas, inject_min_mass: a visual fix whose best candidate is this precise
            (sigma, metres), with no particle within ``inject_gap_sigmas`` of its sigma, draws particles around it
            (the share its posterior mass says, when above ``inject_min_mass``; the belief's density there from a
            kernel over the particles):
            a wide belief meeting a precise fix otherwise collapses onto the few particles nearest to it, metres off.
        resample_ess_fraction: resample (systematic) when the effective sample size falls below this x n_particles.
        max_backstep_s: a timestamp earlier than the tracker's time by more than this raises TrackingError (smaller
            steps back are applied at the tracker's current time).
    """

    n_particles: int = 1500
    seed: int = 0
    # motion
    accel_sigma: float = 1.5
    position_sigma: float = 0.5
    yaw_rate_sigma: float = 0.3
    max_speed_mps: float = 40.0
    init_speed_sigma_mps: float = 8.0
    velocity_sigma_mps: float = 0.5
    imu_yaw_sigma_rad: float = 0.05
    imu_accel_sigma: float = 0.3
    velocity_conflict_nis: float = 16.0
    velocity_conflict_count: int = 2
    motion_heading_tau_s: float = 60.0
    # gps
    gps_bias_m: float = 5.0
    gps_bias_tau_s: float = 300.0
    gps_gate_chi2: float = 25.0
    gps_monitor_accel_sigma: float = 3.0
    gps_trust_s: float = 1.0
    gps_drag_window_s: float = 60.0
    gps_drag_chi2: float = 13.8
    gps_max_jump_m: float = 100.0
    gps_reaccept_s: float = 2.0
    gps_outage_s: float = 2.0
    gps_velocity_sigma_mps: float = 1.0
    # visual
    visual_temperature: float = 0.05
    visual_inlier_prob: float = 0.8
    visual_inlier_min: float = 0.01
    visual_inlier_max: float = 0.99
    visual_sigma_floor_m: float = 0.5
    visual_floor_area_m2: float = 250_000.0
    visual_support_min: float = 0.5
    visual_confirm_frames: int = 3
    visual_timeout_s: float = 2.0
    # status
    ok_sigma_m: float = 4.08
    ok_confirm_s: float = 2.0
    ok_check_chi2: float = 9.21
    lost_sigma_m: float = 100.0
    lost_no_support_s: float = 15.0
    reinit_interval_s: float = 1.0
    reinit_confirm_s: float = 2.0
    # search scope
    scope_margin_m: float = 25.6
    wide_search_radius_m: float = 1000.0
    yaw_known_sigma_rad: float = 0.35
    # resampling / time
    resample_ess_fraction: float = 0.5
    inject_max_sigma_m: float = 3.0
    inject_gap_sigmas: float = 2.0
    inject_min_mass: float = 0.5
    max_backstep_s: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("n_particles", "seed", "visual_confirm_frames", "velocity_conflict_count"):
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                    raise TrackingError(f"tracker config {f.name} must be an integer, got {v!r} ({type(v).__name__})")
                v = int(v)
                low = {"n_particles": 10, "seed": 0}.get(f.name, 1)
                if v < low:
                    raise TrackingError(f"tracker config {f.name} must be >= {low}, got {v}")
                object.__setattr__(self, f.name, v)
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise TrackingError(f"tracker config {f.name} must be a number, got {v!r} ({type(v).__name__})")
            if not (math.isfinite(float(v)) and float(v) > 0):
                raise TrackingError(f"tracker config {f.name} must be a finite number > 0, got {v!r}")
            object.__setattr__(self, f.name, float(v))
        for name, top_ok in (("visual_inlier_prob", False), ("visual_inlier_min", False), ("visual_inlier_max", False),
                             ("visual_support_min", True), ("resample_ess_fraction", True),
                             ("inject_min_mass", False)):
            v = getattr(self, name)
            if v > 1.0 or (v == 1.0 and not top_ok):
                span = "(0, 1]" if top_ok else "(0, 1)"
                raise TrackingError(f"tracker config {name} must be in {span}, got {v!r}")
        if self.visual_inlier_min >= self.visual_inlier_max:
            raise TrackingError(f"tracker config visual_inlier_min ({self.visual_inlier_min}) must be below "
                                f"visual_inlier_max ({self.visual_inlier_max})")
        for f in fields(self):
            v, top = getattr(self, f.name), MAXIMA[f.name]
            if v > top:
                low = {"n_particles": "10", "seed": "0"}.get(f.name, "1" if isinstance(v, int) else "0 (excluded)")
                raise TrackingError(f"tracker config {f.name} = {v!r} is out of range: allowed {low} to {top:g}")
        if self.ok_sigma_m >= self.lost_sigma_m:
            raise TrackingError(
                f"tracker config ok_sigma_m ({self.ok_sigma_m} m) must be below lost_sigma_m ({self.lost_sigma_m} m)"
            )

    @classmethod
    def from_dict(cls, d) -> "TrackerConfig":
        """Build from a mapping (YAML section); unknown keys raise :class:`TrackingError` naming them."""
        return strict_from_dict(cls, d, "tracker config", error=TrackingError)

    def to_dict(self) -> dict:
        """Plain dict (round-trips through :meth:`from_dict`)."""
        return dataclasses.asdict(self)


__all__ = ["TrackerConfig"]
