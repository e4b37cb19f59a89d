"""Fixtures shared by the export tests."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def make_synthetic_ortho():
    """Factory ``(size_m=140, gsd=0.4, seed=0, rectangles=40) -> Orthophoto``: a textured RGB orthophoto (smoothed
    noise at several scales plus rectangular 'buildings'), square, centred on the local frame's origin."""
    import cv2

    from maps.geodesy import LocalFrame
    from maps.ortho import Orthophoto

    def make(size_m: float = 140.0, gsd: float = 0.4, seed: int = 0, rectangles: int = 40) -> Orthophoto:
        rng = np.random.default_rng(seed)
        n = int(round(size_m / gsd))
        img = np.zeros((n, n, 3), np.float32)
        for cell in (4, 16, 48):
            small = rng.random((n // cell + 1, n // cell + 1, 3)).astype(np.float32)
            img += cv2.resize(small, (n, n), interpolation=cv2.INTER_CUBIC)[:n, :n] * (cell / 16.0)
        for _ in range(rectangles):
            x, y = rng.integers(0, n - 20, 2)
            w, h = rng.integers(5, 20, 2)
            img[y:y + h, x:x + w] = rng.random(3) * 3
        img = (255 * (img - img.min()) / (img.max() - img.min())).astype(np.uint8)
        return Orthophoto(image=img, mask=np.ones((n, n), bool), gsd=gsd, x_min=-size_m / 2, y_max=size_m / 2,
                          frame=LocalFrame(47.0, 8.0), sources=("synthetic",))

    return make
