"""The local ENU frame of the simulator's ground truth (``/ground_truth/pose``).

Origin: the first ground-truth fix projected to the ground, i.e. latitude/longitude of the vehicle at the first truth
message and altitude = the ground elevation there. Axes: x east, y north (a transverse Mercator projection centred on
the origin, :class:`maps.geodesy.LocalFrame`: true north and scale 1 at the origin, < 1e-5 distortion within 10 km),
z up = altitude - origin altitude (for a flat ground, the height above ground).

The pose messages carry the origin in their ``header.frame_id`` as ``enu@LAT0,LON0,ALT0`` (degrees, degrees, metres),
e.g. ``enu@47.376716106,8.488427057,0.000``, so a reader can convert poses back to WGS84 without other metadata.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from maps.geodesy import LocalFrame

_FRAME_RE = re.compile(r"^enu@([-+0-9.eE]+),([-+0-9.eE]+),([-+0-9.eE]+)$")


@dataclass(frozen=True)
class TruthFrame:
    """Local ENU frame with origin (lat0, lon0) degrees at altitude alt0 metres."""

    lat0: float
    lon0: float
    alt0: float = 0.0

    @property
    def local(self) -> LocalFrame:
        return LocalFrame(self.lat0, self.lon0)

    @property
    def frame_id(self) -> str:
        """``enu@LAT0,LON0,ALT0`` (9 decimals of degree ~ 0.1 mm, millimetres of altitude)."""
        return f"enu@{self.lat0:.9f},{self.lon0:.9f},{self.alt0:.3f}"

    def to_local(self, lat, lon, alt):
        """WGS84 degrees and altitude (m) -> (x east, y north, z up) metres in this frame (scalars or arrays)."""
        x, y = self.local.to_local(lat, lon)
        z = np.asarray(alt, dtype=float) - self.alt0 if np.ndim(alt) else float(alt) - self.alt0
        return x, y, z

    def to_wgs84(self, x, y, z):
        """(x, y, z) metres in this frame -> (lat, lon, alt)."""
        lat, lon = self.local.to_wgs84(x, y)
        alt = np.asarray(z, dtype=float) + self.alt0 if np.ndim(z) else float(z) + self.alt0
        return lat, lon, alt


def truth_frame_id(lat0: float, lon0: float, alt0: float) -> str:
    """The ``header.frame_id`` naming a :class:`TruthFrame`."""
    return TruthFrame(lat0, lon0, alt0).frame_id


def parse_truth_frame_id(frame_id: str) -> TruthFrame | None:
    """The :class:`TruthFrame` a ``frame_id`` names, or None when it is not of the form ``enu@LAT0,LON0,ALT0``."""
    m = _FRAME_RE.match(frame_id.strip())
    if not m:
        return None
    try:
        lat0, lon0, alt0 = (float(g) for g in m.groups())
    except ValueError:
        return None
    if not (-90 <= lat0 <= 90 and -180 <= lon0 <= 180 and np.isfinite(alt0)):
        return None
    return TruthFrame(lat0, lon0, alt0)
