"""GNSS error model of the simulator.

Per fix, the reported position is the truth plus, in local ENU metres:

* noise: N(0, sigma^2) on east and north, N(0, sigma_v^2) up, independent between fixes (``noise_tau_s = 0``);
  with ``noise_tau_s > 0`` the horizontal noise is a first-order Gauss-Markov process with that correlation time
  (seconds) and the same stationary sigma, ``x_i = phi x_(i-1) + sqrt(1 - phi^2) sigma w_i``, ``phi = exp(-dt /
  tau)``, from the same draws ``w_i`` (up stays white);
* a horizontal bias of magnitude ``bias_m``: ``bias_m * (cos theta, sin theta)`` with a random initial direction
  (by seed). ``bias_mode="constant"`` keeps theta; ``"gauss_markov"`` lets it wander as a first-order Gauss-Markov
  process (time constant ``bias_tau_s``, 45 degrees rms), so the magnitude stays exactly ``bias_m``;
* during a spoof window ``(start, end, metres)``: a jump of ``metres`` in a random direction (by seed, one per
  window), constant over the window;
* during a drag window ``(start, end, mps)``: an offset ``mps * (t - start)`` growing in a random direction (by seed,
  one per window, ``rng(seed, STREAM_DRAG, k)``), gone from ``end`` on (the spoofer stops). A careful spoofer also
  moves the velocity: ``/gps/vel`` carries the drag velocity (``mps`` in that direction) inside the window.

No fix is reported during an outage window ``(start, end)`` (``start <= t < end``, seconds from the flight's start).

Velocity (``/gps/vel``, one per fix): the true horizontal velocity plus white noise N(0, ``velocity_sigma_mps``^2)
per axis (east, north; up is reported as the true vertical velocity plus the same noise), independent between fixes
and drawn from its own stream (``rng(seed, STREAM_GNSS, 1)``), so positions do not change with it. A receiver
measures velocity from Doppler, not from positions: the bias does not enter it, and a spoof here is position-only
(the velocity stays the true one + noise). None during an outage, like the fix.
The covariance reported (``NavSatFix.position_covariance``, ENU diagonal, ``COVARIANCE_TYPE_DIAGONAL_KNOWN``) is the
nominal ``diag(sigma^2, sigma^2, sigma_v^2)`` at all times: like a real receiver it reports its precision, not its
bias, and during a spoof it claims the nominal sigma as a spoofer would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import SimulationError
from .noise import STREAM_DRAG, STREAM_GNSS, STREAM_SPOOF, rng

_VELOCITY_SUBSTREAM = 1  # rng(seed, STREAM_GNSS, 1): the velocity noise (the positions keep rng(seed, STREAM_GNSS))

BIAS_MODES = ("gauss_markov", "constant")
_THETA_RMS = math.radians(45.0)


@dataclass(frozen=True)
class GnssErrorModel:
    """Parameters (metres, seconds from the start of the flight; ``velocity_sigma_mps`` m/s per axis)."""

    sigma_m: float = 5.0
    bias_m: float = 3.0
    vertical_sigma_m: float = 7.5
    bias_mode: str = "gauss_markov"
    bias_tau_s: float = 300.0
    outages: tuple[tuple[float, float], ...] = ()
    spoofs: tuple[tuple[float, float, float], ...] = ()
    velocity_sigma_mps: float = 0.3
    drags: tuple[tuple[float, float, float], ...] = ()
    noise_tau_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("sigma_m", "bias_m", "vertical_sigma_m"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise SimulationError(f"GNSS {name} must be a number of metres >= 0, got {v!r}")
        v = self.velocity_sigma_mps
        if isinstance(v, bool) or not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise SimulationError(f"GNSS velocity_sigma_mps must be a number of m/s >= 0 (e.g. 0.3), got {v!r}")
        if self.bias_mode not in BIAS_MODES:
            raise SimulationError(f"GNSS bias mode must be one of {BIAS_MODES}, got {self.bias_mode!r}")
        v = self.noise_tau_s
        if isinstance(v, bool) or not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise SimulationError(f"GNSS noise_tau_s must be a number of seconds >= 0 (0 = white), got {v!r}")
        if not (math.isfinite(self.bias_tau_s) and self.bias_tau_s > 0):
            raise SimulationError(f"GNSS bias time constant must be > 0 s, got {self.bias_tau_s!r}")

    @property
    def covariance_enu(self) -> np.ndarray:
        """float64[3, 3] the nominal covariance reported with every fix, m^2 ENU."""
        return np.diag([self.sigma_m**2, self.sigma_m**2, self.vertical_sigma_m**2])


@dataclass(frozen=True, eq=False)
class GnssErrors:
    """Errors at the fix times.

    Attributes:
        t_s: float64[n] fix times, seconds from the start (every fix slot, outages included).
        available: bool[n], False inside an outage (no message).
        spoofed: bool[n], True inside a spoof window.
        error_enu: float64[n, 3] reported minus true position, metres ENU (noise + bias + spoof jump).
        bias_enu: float64[n, 3] the bias part; jump_enu: float64[n, 3] the spoof part.
        velocity_error_enu: float64[n, 3] reported minus true velocity, m/s ENU (white noise, plus the drag velocity
            inside a drag window).
        dragged: bool[n], True inside a drag window; drag_enu: float64[n, 2] the drag part of ``error_enu``, metres
            east, north (0 outside the windows).
    """

    t_s: np.ndarray
    available: np.ndarray
    spoofed: np.ndarray
    error_enu: np.ndarray
    bias_enu: np.ndarray
    jump_enu: np.ndarray
    velocity_error_enu: np.ndarray | None = None
    dragged: np.ndarray | None = None
    drag_enu: np.ndarray | None = None


def in_windows(t_s: np.ndarray, windows) -> np.ndarray:
    """bool[n]: ``start <= t < end`` for any (start, end, ...) window."""
    t = np.asarray(t_s, dtype=float)
    out = np.zeros(t.shape, dtype=bool)
    for w in windows:
        out |= (t >= w[0]) & (t < w[1])
    return out


def simulate_errors(model: GnssErrorModel, t_s, seed: int) -> GnssErrors:
    """Draw the GNSS errors at fix times ``t_s`` (float[n] seconds from the start, increasing) for ``seed``."""
    t = np.asarray(t_s, dtype=float).ravel()
    n = len(t)
    gen = rng(seed, STREAM_GNSS)
    theta0 = gen.uniform(-math.pi, math.pi)
    white = gen.standard_normal((n, 3)) * np.array([model.sigma_m, model.sigma_m, model.vertical_sigma_m])
    if model.noise_tau_s > 0:
        white[:, :2] = _gauss_markov(t, white[:, :2], model.noise_tau_s)
    theta = np.full(n, theta0)
    if model.bias_mode == "gauss_markov" and n > 1:
        steps = gen.standard_normal(n)
        dev = 0.0
        prev = t[0]
        for i in range(n):
            dt = max(t[i] - prev, 0.0)
            phi = math.exp(-dt / model.bias_tau_s)
            dev = phi * dev + math.sqrt(max(1.0 - phi * phi, 0.0)) * _THETA_RMS * steps[i]
            theta[i] = theta0 + dev
            prev = t[i]
    bias = np.zeros((n, 3))
    bias[:, 0] = model.bias_m * np.cos(theta)
    bias[:, 1] = model.bias_m * np.sin(theta)
    jump = np.zeros((n, 3))
    spoofed = np.zeros(n, dtype=bool)
    for k, (start, end, metres) in enumerate(model.spoofs):
        ang = rng(seed, STREAM_SPOOF, k).uniform(-math.pi, math.pi)
        sel = (t >= start) & (t < end)
        jump[sel, 0] += metres * math.cos(ang)
        jump[sel, 1] += metres * math.sin(ang)
        spoofed |= sel
    available = ~in_windows(t, model.outages)
    vel_err = rng(seed, STREAM_GNSS, _VELOCITY_SUBSTREAM).standard_normal((n, 3)) * model.velocity_sigma_mps
    error = white + bias + jump
    dragged, drag, drag_vel = drag_offsets(model.drags, t, seed)
    if model.drags:
        error[:, :2] += drag
        vel_err[:, :2] += drag_vel
    return GnssErrors(t, available, spoofed, error, bias, jump, vel_err, dragged, drag)


def _gauss_markov(t: np.ndarray, white: np.ndarray, tau_s: float) -> np.ndarray:
    """float64[n, k]: white noise ``white`` (float[n, k], stationary sigma per column) at times ``t`` (s) turned into
    first-order Gauss-Markov noise of correlation time ``tau_s`` (s) with the same stationary sigma."""
    out = np.empty_like(white)
    out[0] = white[0]
    for i in range(1, len(t)):
        phi = math.exp(-max(t[i] - t[i - 1], 0.0) / tau_s)
        out[i] = phi * out[i - 1] + math.sqrt(max(1.0 - phi * phi, 0.0)) * white[i]
    return out


def drag_offsets(drags, t_s, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The drag part of the GNSS error at times ``t_s`` (float[n], seconds from the start).

    Returns:
        (dragged bool[n]: inside a drag window, offset float64[n, 2] metres east/north, velocity float64[n, 2] m/s
        east/north). Window ``k`` pulls along the angle ``rng(seed, STREAM_DRAG, k).uniform(-pi, pi)``.
    """
    t = np.asarray(t_s, dtype=float).ravel()
    dragged = np.zeros(len(t), dtype=bool)
    offset, velocity = np.zeros((len(t), 2)), np.zeros((len(t), 2))
    for k, (start, end, mps) in enumerate(drags):
        ang = rng(seed, STREAM_DRAG, k).uniform(-math.pi, math.pi)
        sel = (t >= start) & (t < end)
        u = np.array([math.cos(ang), math.sin(ang)])
        offset[sel] += mps * (t[sel, None] - start) * u
        velocity[sel] += mps * u
        dragged |= sel
    return dragged, offset, velocity
