"""Degrade the GPS of a recording on purpose: added noise and bias, and cuts (outages).

For measuring what the loop does when the GPS is worse than the one recorded (the real-frame protocol: a photo
survey's own GPS is the reference, and the loop is fed a noisier copy of it, or none for a while). Applies to any
event stream (a bag's, a photo folder's); everything that is not a :class:`~runtime.events.GpsFix` passes
unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterable, Iterator

import numpy as np

from ..events import Event, GpsFix
from . import SourceError


@dataclass(frozen=True)
class GpsDegradation:
    """What to do to the GPS.

    Attributes:
        sigma_m: white noise added per horizontal axis, metres (>= 0), independent per fix.
        bias_m: a constant offset of this length added to every fix, metres (>= 0), in a direction drawn once.
        cuts_s: ``(start, end)`` windows, seconds after the stream's first event, in which fixes are dropped.
        seed: of the noise and of the bias direction.
    The reported covariance grows by the added noise and bias (``sigma_m^2 + bias_m^2 / 2`` per axis): the fixes
    stay honest about the error they now carry.
    """

    sigma_m: float = 0.0
    bias_m: float = 0.0
    cuts_s: tuple[tuple[float, float], ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("sigma_m", "bias_m"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v >= 0):
                raise SourceError(f"GPS degradation {key} must be a number of metres >= 0, got {v!r}")
        for cut in self.cuts_s:
            if (not isinstance(cut, tuple) or len(cut) != 2
                    or not all(isinstance(c, (int, float)) and math.isfinite(c) for c in cut) or not cut[0] < cut[1]):
                raise SourceError(f"a GPS cut must be (start, end) seconds with start < end, got {cut!r}")

    @classmethod
    def parse(cls, noise: str | None = None, cuts: Iterable[str] = (), seed: int = 0) -> "GpsDegradation":
        """From command-line text: ``noise`` ``"SIGMA"`` or ``"SIGMA:BIAS"`` (metres), each cut ``"START:END"``
        (seconds from the start of the recording)."""
        sigma = bias = 0.0
        if noise:
            try:
                parts = [float(p) for p in str(noise).split(":")]
            except ValueError:
                parts = []
            if len(parts) not in (1, 2):
                raise SourceError(f"--gps-noise takes SIGMA or SIGMA:BIAS in metres (e.g. 5:3), got {noise!r}")
            sigma, bias = parts[0], (parts[1] if len(parts) == 2 else 0.0)
        windows = []
        for c in cuts:
            try:
                a, b = (float(p) for p in str(c).split(":"))
            except ValueError:
                raise SourceError(f"--gps-cut takes START:END in seconds from the start (e.g. 60:120), got {c!r}") \
                    from None
            windows.append((a, b))
        return cls(sigma, bias, tuple(windows), int(seed))

    @property
    def active(self) -> bool:
        return self.sigma_m > 0 or self.bias_m > 0 or bool(self.cuts_s)

    def describe(self) -> str:
        parts = []
        if self.sigma_m or self.bias_m:
            parts.append(f"noise sigma {self.sigma_m:g} m + bias {self.bias_m:g} m (seed {self.seed})")
        parts += [f"cut {a:g}-{b:g} s" for a, b in self.cuts_s]
        return "GPS degraded: " + ", ".join(parts) if parts else "GPS as recorded"


def degrade_gps(events: Iterable[Event], deg: GpsDegradation) -> Iterator[Event]:
    """``events`` with every GpsFix moved by ``deg``'s noise and bias (local east/north metres converted at the
    fix's latitude) or dropped inside a cut. The time origin of the cuts is the first event's ``t_ns``."""
    rng = np.random.default_rng(deg.seed)
    ang = rng.uniform(0.0, 2.0 * math.pi)
    bias = deg.bias_m * np.array([math.cos(ang), math.sin(ang)])
    extra = deg.sigma_m**2 + 0.5 * deg.bias_m**2
    t0 = None
    for ev in events:
        if t0 is None:
            t0 = ev.t_ns
        if not isinstance(ev, GpsFix) or not deg.active:
            yield ev
            continue
        t = (ev.t_ns - t0) * 1e-9
        if any(a <= t < b for a, b in deg.cuts_s):
            continue
        if deg.sigma_m or deg.bias_m:
            d = bias + rng.normal(0.0, deg.sigma_m, 2) if deg.sigma_m else bias
            lat = ev.lat + math.degrees(d[1] / 6_371_000.0)
            lon = ev.lon + math.degrees(d[0] / (6_371_000.0 * max(1e-6, math.cos(math.radians(ev.lat)))))
            cov = None
            if ev.cov_enu is not None:
                cov = np.array(ev.cov_enu, dtype=float)
                cov[0, 0] += extra
                cov[1, 1] += extra
            ev = replace(ev, lat=lat, lon=lon, cov_enu=cov)
        yield ev
