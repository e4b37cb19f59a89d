"""Constants and helpers shared by the torch-stage parity tests (fixtures are in conftest.py)."""

from __future__ import annotations

ORTHO = "ortho/swissimage_zurich_a_0.5m.tif"
GSD = 0.4  # the views' and the aligner imagery's metres per pixel (as tests/runtime/test_align.py)
SIZE = 128  # encoder input; context views are 2 x SIZE (clipped to what the camera sees)
