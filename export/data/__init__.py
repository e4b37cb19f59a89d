"""Training data for the learned encoders: rendered camera/map pairs, geographic splits, public dataset layouts.

* :mod:`export.data.pairs` — :class:`~export.data.pairs.RenderedPairs`: (rectified render of a simulated frame,
  north-up map tile at that place) pairs from an orthophoto, with heading labels and VIGOR-style semi-positives.
* :mod:`export.data.augment` — the photometric augmentation of rendered frames.
* :mod:`export.data.splits` — train / held-out splits by geographic area, with an overlap check.
* :mod:`export.data.layouts` — University-1652, VIGOR and CSV folder layouts as (query, reference, position) records.

Importing this package imports nothing heavy (no torch, no cv2); the submodules import torch only inside functions.
"""

from __future__ import annotations

from ..errors import ExportError

__all__ = ["DataError", "ExportError"]


class DataError(ExportError):
    """Base class of the errors of :mod:`export.data` (bad configuration, unusable inputs, malformed layouts)."""
