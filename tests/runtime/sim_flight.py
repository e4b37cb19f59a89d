"""A short simulated flight for bad-input tests: the project's simulator and bag writer over a small synthetic map
(shared by ``test_localizer_bad_input`` and ``test_bad_input_corpus``; import the ``flight`` fixture from here)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from maps.geodesy import LocalFrame
from maps.ortho import Orthophoto
from runtime.bags import BagReader
from runtime.feed import ROLES

FRAME = LocalFrame(47.0, 8.0)
CAMERA_YAML = """%YAML:1.0
---
image_width: 160
image_height: 120
camera_matrix: !!opencv-matrix
   rows: 3
   cols: 3
   dt: d
   data: [ 120.0, 0., 79.5, 0., 120.0, 59.5, 0., 0., 1. ]
distortion_coefficients: !!opencv-matrix
   rows: 5
   cols: 1
   dt: d
   data: [ 0., 0., 0., 0., 0. ]
"""


@pytest.fixture(scope="module")
def flight(tmp_path_factory):
    """(map dir, flight bag, camera yaml, events of the bag, root): a 12 s simulated flight at 40 m over a
    400 x 300 m textured synthetic orthophoto, and a classical map of it."""
    pytest.importorskip("rasterio")
    from maps.build import build_map
    from maps.descriptors import ClassicalDescriptor, classical_contract
    from maps.geotiff import write_geotiff
    from runtime.sim.config import SimConfig
    from runtime.sim.flight import simulate

    root = tmp_path_factory.mktemp("bad_input")
    gen = np.random.default_rng(0)
    noise = cv2.GaussianBlur(gen.standard_normal((300, 400, 3)).astype(np.float32), (0, 0), 3)
    img = np.clip(128 + 60 * noise / noise.std(), 0, 255).astype(np.uint8)
    ortho = Orthophoto(img, np.ones((300, 400), bool), 1.0, -200.0, 150.0, FRAME)
    tif = write_geotiff(root / "o.tif", ortho)
    map_dir = build_map(ortho, ClassicalDescriptor(), classical_contract(), root / "map", stride_m=20.0)
    cam = root / "cam.yaml"
    cam.write_text(CAMERA_YAML)
    bag = root / "flight.bag"
    simulate(SimConfig(ortho=str(tif), camera=str(cam), out=str(bag), duration_s=12.0, altitude_m=40.0,
                       gps_sigma_m=2.0, gps_bias_m=1.0, seed=3))
    with BagReader(bag) as r:
        events = list(r.events(roles=ROLES))
    return map_dir, bag, cam, events, root


