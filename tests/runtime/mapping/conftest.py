"""A rendered flat ground that photo pairs are taken of (runtime.mapping's attitude check and photo motion)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calibration.camera import CameraModel
from calibration.geometry import NADIR_MOUNT
from maps.geodesy import LocalFrame
from maps.ortho import Orthophoto

FRAME = LocalFrame(41.0, -83.0)
HEIGHT = 60.0
CAMERA = CameraModel.from_fov(640, 480, 70.0)


class Ground:
    """A 180 x 150 m flat ground at 0.2 m/px (``ortho``) with texture at several scales (fields, tracks, speckle);
    :meth:`shot` photographs it."""

    def __init__(self) -> None:
        import cv2

        rng = np.random.default_rng(5)
        h, w = 750, 900
        img = np.zeros((h, w), np.float32)
        for sigma, amp in ((1.5, 40.0), (5.0, 60.0), (15.0, 80.0)):
            img += amp * cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), sigma) * sigma
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
        rgb = np.repeat(img[:, :, None], 3, axis=2)
        self.ortho = Orthophoto(rgb, np.ones((h, w), bool), 0.2, -90.0, 75.0, FRAME)

    def shot(self, name, xy, att, recorded, t_s):
        """(PhotoMeta at local ``xy`` with the ``recorded`` attitude, HEIGHT m above the ground, grey image rendered
        at the true ``att``)."""
        import cv2

        from calibration.view import render
        from runtime.sources.photos import PhotoMeta

        img, mask = render(self.ortho, CAMERA, xy, HEIGHT, att, mount=NADIR_MOUNT)
        assert mask.mean() > 0.99
        lat, lon = FRAME.to_wgs84(*xy)
        meta = PhotoMeta(Path(name), int(t_s * 1e9), float(lat), float(lon), HEIGHT, HEIGHT, CAMERA, recorded,
                         NADIR_MOUNT, "sensefly")
        return meta, cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


@pytest.fixture(scope="session")
def ground() -> Ground:
    return Ground()
