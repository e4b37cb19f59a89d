"""WGS84 <-> UTM and a local metric frame (ENU-aligned) for maps and the onboard loop.

Inside SkyFix positions are metres in a :class:`LocalFrame`: a transverse Mercator projection centred on the
map (scale 1 and true north at its origin), so x = east, y = north with sub-millimetre round trips and distortion
below 1e-5 within 10 km. WGS84 latitude/longitude (degrees) appear only at the edges (GPS in, estimates out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .errors import MapError

WGS84 = "EPSG:4326"


@lru_cache(maxsize=64)
def _transformer(src: str, dst: str):
    from pyproj import Transformer

    return Transformer.from_crs(src, dst, always_xy=True)


def _check_latlon(lat, lon) -> None:
    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    if lat.size == 0 or lat.shape != lon.shape:
        raise MapError(f"latitude and longitude need the same non-empty shape, got {lat.shape} and {lon.shape}")
    if not (np.all(np.isfinite(lat)) and np.all(np.isfinite(lon))):
        raise MapError("latitude/longitude must be finite numbers (degrees)")
    bad = (np.abs(lat) > 90.0) | (np.abs(lon) > 180.0)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise MapError(
            f"latitude must be within [-90, 90] and longitude within [-180, 180] degrees, got lat={lat.ravel()[i]}, "
            f"lon={lon.ravel()[i]} ({int(bad.sum())} such points); were they swapped or given in a projected CRS?"
        )


def utm_epsg_for(lat: float, lon: float) -> int:
    """EPSG code of the WGS84 / UTM zone containing (lat, lon) degrees: 326xx north, 327xx south."""
    _check_latlon(lat, lon)
    zone = int((lon + 180.0) // 6.0) % 60 + 1
    return (32600 if lat >= 0 else 32700) + zone


def wgs84_to_utm(lat, lon, epsg: int | None = None):
    """(lat, lon) degrees -> (easting, northing, epsg) metres in UTM.

    The zone is chosen from the first point if not given (standard 6-degree zones; the Norway/Svalbard
    exceptions are not applied), and every point is projected in that one zone.
    """
    _check_latlon(lat, lon)
    if epsg is None:
        epsg = utm_epsg_for(float(np.ravel(lat)[0]), float(np.ravel(lon)[0]))
    e, n = _transformer(WGS84, f"EPSG:{epsg}").transform(lon, lat)
    return e, n, epsg


def utm_to_wgs84(easting, northing, epsg: int):
    """UTM (easting, northing) metres in zone ``epsg`` -> (lat, lon) degrees."""
    lon, lat = _transformer(f"EPSG:{epsg}", WGS84).transform(easting, northing)
    return lat, lon


@dataclass(frozen=True)
class LocalFrame:
    """A local metric frame: x east, y north (metres), origin at (lat0, lon0) on the WGS84 ellipsoid."""

    lat0: float
    lon0: float

    def __post_init__(self) -> None:
        _check_latlon(self.lat0, self.lon0)
        object.__setattr__(self, "lat0", float(self.lat0))
        object.__setattr__(self, "lon0", float(self.lon0))

    @property
    def proj4(self) -> str:
        """PROJ string of the frame's transverse Mercator projection."""
        return (
            f"+proj=tmerc +lat_0={self.lat0!r} +lon_0={self.lon0!r} +k=1 +x_0=0 +y_0=0 "
            "+ellps=WGS84 +towgs84=0,0,0,0,0,0,0 +units=m +no_defs +type=crs"
        )

    @property
    def crs(self):
        """The frame as a ``pyproj.CRS``."""
        from pyproj import CRS

        return CRS.from_proj4(self.proj4)

    def to_local(self, lat, lon):
        """(lat, lon) degrees (scalars or arrays) -> (x east, y north) metres."""
        _check_latlon(lat, lon)
        return _transformer(WGS84, self.proj4).transform(lon, lat)

    def to_wgs84(self, x, y):
        """(x east, y north) metres -> (lat, lon) degrees."""
        lon, lat = _transformer(self.proj4, WGS84).transform(x, y)
        return lat, lon

    def from_crs(self, crs) -> "callable":
        """A function (x, y) in ``crs`` (anything pyproj accepts) -> (x, y) in this frame, metres."""
        from pyproj import CRS

        src = CRS.from_user_input(crs).to_wkt()
        t = _transformer(src, self.proj4)
        return lambda x, y: t.transform(x, y)

    def to_dict(self) -> dict:
        return {"lat0": self.lat0, "lon0": self.lon0, "proj4": self.proj4}

    @classmethod
    def from_dict(cls, d: dict) -> "LocalFrame":
        """Inverse of :meth:`to_dict`; unknown keys are rejected and a stored ``proj4`` must match the origin."""
        if not isinstance(d, dict):
            raise MapError(f"a local frame must be a mapping with 'lat0' and 'lon0', got {type(d).__name__}")
        unknown = sorted(set(d) - {"lat0", "lon0", "proj4"})
        if unknown:
            raise MapError(f"unknown local frame keys {unknown}; expected 'lat0', 'lon0' and optionally 'proj4'")
        try:
            frame = cls(float(d["lat0"]), float(d["lon0"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise MapError(f"a local frame needs numeric 'lat0' and 'lon0' (degrees), got {d!r}") from exc
        if "proj4" in d and d["proj4"] != frame.proj4:
            raise MapError(f"local frame proj4 {d['proj4']!r} does not match its origin, expected {frame.proj4!r}")
        return frame


def meters_per_degree(lat: float) -> tuple[float, float]:
    """Approximate metres per degree of (latitude, longitude) at ``lat`` (for sanity checks and messages)."""
    phi = math.radians(lat)
    m_lat = 111132.92 - 559.82 * math.cos(2 * phi) + 1.175 * math.cos(4 * phi)
    m_lon = 111412.84 * math.cos(phi) - 93.5 * math.cos(3 * phi)
    return m_lat, m_lon
