"""maps.geodesy: WGS84 <-> UTM and <-> LocalFrame round trips (< 1 mm), metric correctness, typed errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from maps.errors import MapError
from maps.geodesy import LocalFrame, meters_per_degree, utm_epsg_for, utm_to_wgs84, wgs84_to_utm

A = 6378137.0
F = 1.0 / 298.257223563
E2 = F * (2.0 - F)


def _ground_error_m(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Approximate metres between two (arrays of) nearby points (small differences only)."""
    lat1, lon1, lat2, lon2 = (np.asarray(v, dtype=float) for v in (lat1, lon1, lat2, lon2))
    dlon = (lon2 - lon1 + 180.0) % 360.0 - 180.0
    dn = (lat2 - lat1) * 111_200.0
    de = dlon * 111_400.0 * np.cos(np.radians(lat1))
    return np.hypot(dn, de)


def _meridian_arc(lat_deg: float) -> float:
    """Meridian arc length from the equator (metres) on WGS84, by numerical integration (independent of PROJ)."""
    phi = np.linspace(0.0, math.radians(lat_deg), 200_001)
    m = A * (1.0 - E2) / (1.0 - E2 * np.sin(phi) ** 2) ** 1.5
    return float(np.trapezoid(m, phi) if hasattr(np, "trapezoid") else np.trapz(m, phi))


def test_utm_zone_numbers():
    assert utm_epsg_for(47.37, 8.54) == 32632  # Zurich
    assert utm_epsg_for(33.75, -84.39) == 32616  # Atlanta
    assert utm_epsg_for(-33.87, 151.21) == 32756  # Sydney
    assert utm_epsg_for(-8.6, 115.2) == 32750  # Bali
    assert utm_epsg_for(44.9, -110.7) == 32612  # Yellowstone
    assert utm_epsg_for(0.0, -180.0) == 32601
    assert utm_epsg_for(0.0, 179.999) == 32660


def test_utm_central_meridian_matches_independent_meridian_arc():
    # on the central meridian: E = 500 000 m, N = k0 * meridian arc (k0 = 0.9996)
    e, n, epsg = wgs84_to_utm(47.0, 9.0)
    assert epsg == 32632
    assert abs(e - 500_000.0) < 1e-6
    assert abs(n - 0.9996 * _meridian_arc(47.0)) < 1e-3
    e, n, epsg = wgs84_to_utm(-30.0, 147.0)
    assert epsg == 32755
    assert abs(n - (10_000_000.0 - 0.9996 * _meridian_arc(30.0))) < 1e-3


def test_wgs84_utm_round_trip_below_1mm_many_points():
    rng = np.random.default_rng(1)
    lat = rng.uniform(-80.0, 84.0, 5000)
    lon = rng.uniform(-180.0, 180.0, 5000)
    zones = np.array([utm_epsg_for(a, b) for a, b in zip(lat, lon)])
    worst = 0.0
    for epsg in np.unique(zones):
        sel = zones == epsg
        e, n, got = wgs84_to_utm(lat[sel], lon[sel], epsg=int(epsg))
        assert got == epsg
        assert np.all((np.asarray(e) > 100_000) & (np.asarray(e) < 900_000))
        lat2, lon2 = utm_to_wgs84(e, n, int(epsg))
        worst = max(worst, float(np.max(_ground_error_m(lat[sel], lon[sel], lat2, lon2))))
        e2, n2, _ = wgs84_to_utm(lat2, lon2, epsg=int(epsg))
        assert np.max(np.hypot(np.asarray(e2) - e, np.asarray(n2) - n)) < 1e-3
    assert worst < 1e-3, worst


@pytest.mark.parametrize(
    "lat0, lon0",
    [(47.37, 8.54), (-33.87, 151.21), (14.6, 120.98), (0.0, 0.0), (64.1, -21.9), (-8.6, 115.2), (10.0, 179.95)],
)
def test_local_frame_round_trip_below_1mm(lat0, lon0):
    frame = LocalFrame(lat0, lon0)
    rng = np.random.default_rng(abs(hash((lat0, lon0))) % 2**32)
    mlat, mlon = meters_per_degree(lat0)
    # random points within +-20 km of the origin
    lat = lat0 + rng.uniform(-20e3, 20e3, 2000) / mlat
    lon = lon0 + rng.uniform(-20e3, 20e3, 2000) / mlon
    lon = (lon + 180.0) % 360.0 - 180.0
    x, y = frame.to_local(lat, lon)
    assert np.all(np.abs(x) < 21e3) and np.all(np.abs(y) < 21e3)
    lat2, lon2 = frame.to_wgs84(x, y)
    assert np.max(_ground_error_m(lat, lon, lat2, lon2)) < 1e-3
    # and the other way: local metres -> WGS84 -> local metres
    xs, ys = rng.uniform(-20e3, 20e3, (2, 2000))
    la, lo = frame.to_wgs84(xs, ys)
    x2, y2 = frame.to_local(la, lo)
    assert np.max(np.hypot(np.asarray(x2) - xs, np.asarray(y2) - ys)) < 1e-3


def test_local_frame_axes_and_metric():
    from pyproj import Geod

    frame = LocalFrame(47.37, 8.54)
    x, y = frame.to_local(47.37, 8.54)
    assert abs(x) < 1e-9 and abs(y) < 1e-9
    x, y = frame.to_local(47.38, 8.54)  # north
    assert abs(x) < 1e-6 and 1100 < y < 1115
    x, y = frame.to_local(47.37, 8.55)  # east
    assert 750 < x < 760 and abs(y) < 0.1
    # distances in the frame equal geodesic distances (relative error < 1e-5 within 10 km)
    geod = Geod(ellps="WGS84")
    rng = np.random.default_rng(3)
    mlat, mlon = meters_per_degree(47.37)
    lat = 47.37 + rng.uniform(-7e3, 7e3, (2, 500)) / mlat
    lon = 8.54 + rng.uniform(-7e3, 7e3, (2, 500)) / mlon
    x, y = frame.to_local(lat, lon)
    d_local = np.hypot(x[0] - x[1], y[0] - y[1])
    _, _, d_geod = geod.inv(lon[0], lat[0], lon[1], lat[1])
    assert np.max(np.abs(d_local - d_geod) / d_geod) < 1e-5


def test_local_frame_from_crs_agrees_with_wgs84_path():
    from pyproj import Transformer

    frame = LocalFrame(47.3767, 8.4884)
    e, n = np.array([2679062.5, 2679500.0, 2690000.0]), np.array([1247700.0, 1248000.0, 1234000.0])
    x, y = frame.from_crs("EPSG:2056")(e, n)
    lon, lat = Transformer.from_crs("EPSG:2056", "EPSG:4326", always_xy=True).transform(e, n)
    x2, y2 = frame.to_local(lat, lon)
    assert np.max(np.hypot(np.asarray(x) - x2, np.asarray(y) - y2)) < 1e-3


def test_local_frame_dict_round_trip_and_errors():
    frame = LocalFrame(-8.585, 115.16)
    assert LocalFrame.from_dict(frame.to_dict()) == frame
    with pytest.raises(MapError, match="lat0"):
        LocalFrame.from_dict({"lat": 1.0})
    with pytest.raises(MapError, match=r"\[-90, 90\]"):
        LocalFrame(100.0, 8.0)
    with pytest.raises(MapError, match="finite"):
        LocalFrame(float("nan"), 8.0)
    with pytest.raises(MapError, match="projected CRS"):
        wgs84_to_utm(2679062.5, 1247700.0)
