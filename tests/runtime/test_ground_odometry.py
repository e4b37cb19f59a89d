"""GroundOdometry: ground velocity from phase correlation of north-up ground views; refusals and error messages."""

from __future__ import annotations

import math

import numpy as np
import pytest

from runtime.ground_odometry import GroundOdometry, GroundVelocity, OdometryError

NS = 1_000_000_000
GSD = 0.4


@pytest.fixture(scope="module")
def world():
    """A textured ground (blurred noise, RGB) of 600 x 600 px at GSD metres per pixel."""
    import cv2

    rng = np.random.default_rng(0)
    return cv2.GaussianBlur((rng.random((600, 600, 3)) * 255).astype(np.uint8), (5, 5), 0)


def _view(world, east_m: float, north_m: float, size: int = 128):
    """The north-up view (x right = east, y down = south) centred on the nadir point at (east_m, north_m) from the
    world's centre; sub-pixel positions are interpolated."""
    import cv2

    cx = 300.0 + east_m / GSD
    cy = 300.0 - north_m / GSD
    M = np.float32([[1, 0, -(cx - size / 2)], [0, 1, -(cy - size / 2)]])
    img = cv2.warpAffine(world, M, (size, size), flags=cv2.INTER_LINEAR)
    return img, np.ones((size, size), bool)


def test_velocity_of_a_vehicle_flying_over_textured_ground(world):
    od = GroundOdometry()
    v = np.array([6.3, -2.1])  # m/s east, north
    out = []
    for k in range(11):  # 5 Hz, 2 s
        t = k * NS // 5
        img, mask = _view(world, *(v * t / NS))
        r = od.measure(t, img, mask, GSD, tag=k)
        if r is not None:
            out.append(r)
    assert [r.t_ns for r in out] == [NS, 2 * NS]  # one per baseline: the reference moves on
    for r, ref in zip(out, (0, 5)):
        assert isinstance(r, GroundVelocity) and r.ref_tag == ref and r.dt_s == pytest.approx(1.0)
        assert r.velocity_xy == pytest.approx(v, abs=0.05)
        assert r.response > 0.5
        assert r.sigma_mps == pytest.approx(0.4 * GSD * math.sqrt(2.0))
    assert od.measured == 2 and od.refused == 0


def test_featureless_ground_and_invalid_pixels_give_nothing(world):
    rng = np.random.default_rng(1)
    od = GroundOdometry()
    flat = lambda: (np.full((128, 128, 3), 90) + rng.integers(0, 3, (128, 128, 3))).astype(np.uint8)  # noqa: E731
    m = np.ones((128, 128), bool)
    assert od.measure(0, flat(), m, GSD) is None
    assert od.measure(NS, flat(), m, GSD) is None  # water-like: no clear peak
    assert od.refused == 1 and od.measured == 0
    img, _ = _view(world, 0.0, 0.0)
    half = m.copy()
    half[:, :40] = False
    od2 = GroundOdometry()
    assert od2.measure(0, img, half, GSD) is None and od2.measure(NS, img, half, GSD) is None  # 69 % valid
    assert od2.refused == 0  # not even tried


def test_stale_reference_and_change_of_resolution_start_again(world):
    od = GroundOdometry(max_baseline_s=2.0)
    img, m = _view(world, 0.0, 0.0)
    assert od.measure(0, img, m, GSD) is None
    assert od.measure(3 * NS, img, m, GSD) is None  # 3 s: too old, becomes the new reference
    img2, _ = _view(world, 4.0, 0.0)
    assert od.measure(4 * NS, img2, m, GSD).velocity_xy == pytest.approx([4.0, 0.0], abs=0.05)
    assert od.measure(5 * NS, img2, m, 0.5) is None  # another gsd: a new reference
    od.reset()
    assert od.measure(6 * NS, img2, m, GSD) is None


@pytest.mark.parametrize("kwargs, message", [
    ({"baseline_s": 0}, "ground odometry baseline_s must be a number > 0, got 0"),
    ({"max_baseline_s": 0.5}, "ground odometry max_baseline_s (0.5) must be >= baseline_s (1.0)"),
    ({"min_response": 1.5}, "ground odometry min_response must be in [0, 1], got 1.5"),
    ({"px_sigma": float("nan")}, "ground odometry px_sigma must be a number > 0, got nan"),
])
def test_settings_are_checked(kwargs, message):
    with pytest.raises(OdometryError) as e:
        GroundOdometry(**kwargs)
    assert str(e.value) == message


def test_view_shapes_are_checked():
    with pytest.raises(OdometryError, match=r"square RGB view uint8\[s, s, 3\] and its bool\[s, s\] mask, got "
                                            r"\(128, 64, 3\) and \(128, 64\)"):
        GroundOdometry().measure(0, np.zeros((128, 64, 3), np.uint8), np.ones((128, 64), bool), GSD)
