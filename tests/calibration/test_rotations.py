"""calibration.rotations: the one home of rotation helpers (here: the smallest rotation between two directions)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calibration.errors import GeometryError
from calibration.rotations import rotation_between


@pytest.mark.parametrize("u, v", [((0, 0, 1), (0, 0.1, 1)), ((1, 2, 3), (-3, 1, 0.5)), ((1, 0, 0), (0, 1, 0)),
                                  ((0.2, -0.1, -1.0), (0, 0, -1))])
def test_the_rotation_takes_u_to_v_about_their_common_normal(u, v):
    R = rotation_between(u, v)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    un, vn = np.array(u, float) / np.linalg.norm(u), np.array(v, float) / np.linalg.norm(v)
    np.testing.assert_allclose(R @ un, vn, atol=1e-12)
    axis = np.cross(un, vn)
    np.testing.assert_allclose(R @ axis, axis, atol=1e-12)  # about the common normal: the smallest one
    angle = math.acos(np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0))
    assert angle == pytest.approx(math.acos(float(np.clip(un @ vn, -1.0, 1.0))), abs=1e-9)


def test_parallel_directions_need_no_rotation_and_bad_ones_are_typed_errors():
    np.testing.assert_allclose(rotation_between((0, 0, 2), (0, 0, 5)), np.eye(3))
    with pytest.raises(GeometryError, match="opposite directions"):
        rotation_between((0, 0, 1), (0, 0, -3))
    with pytest.raises(GeometryError, match="two finite non-zero directions"):
        rotation_between((0, 0, 0), (0, 0, 1))
    with pytest.raises(GeometryError, match="two finite non-zero directions"):
        rotation_between((math.nan, 0, 1), (0, 0, 1))
