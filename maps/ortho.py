"""An orthophoto resampled into a :class:`~maps.geodesy.LocalFrame`: north-up, square pixels, metres.

Pixel (col u, row v) has its centre at local ``x = x_min + (u + 0.5) * gsd``, ``y = y_max - (v + 0.5) * gsd``.
The same fields (``image``, ``mask``, ``gsd``, ``x_min``, ``y_max``) are what :mod:`calibration.view` takes as a
ground raster, so an :class:`Orthophoto` can be rendered from directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import MapError
from .geodesy import LocalFrame


@dataclass(frozen=True, eq=False)
class Orthophoto:
    """A georeferenced RGB raster in a local metric frame.

    Attributes:
        image: uint8[h, w, 3], RGB.
        mask: bool[h, w], True where the pixel holds imagery (nodata/alpha/outside the source are False).
        gsd: ground sampling distance, metres per pixel (square pixels).
        x_min: local x (east, metres) of the left edge of column 0.
        y_max: local y (north, metres) of the top edge of row 0.
        frame: the local frame the coordinates are in.
        sources: paths (or names) the raster was built from.
    """

    image: np.ndarray
    mask: np.ndarray
    gsd: float
    x_min: float
    y_max: float
    frame: LocalFrame
    sources: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise MapError(f"orthophoto image must be uint8[h, w, 3] RGB, got {self.image.dtype}{list(self.image.shape)}")
        if self.mask.shape != self.image.shape[:2] or self.mask.dtype != bool:
            raise MapError(f"orthophoto mask must be bool{list(self.image.shape[:2])}, got {self.mask.dtype}{list(self.mask.shape)}")
        if not (np.isfinite(self.gsd) and self.gsd > 0):
            raise MapError(f"ground sampling distance must be > 0 m/px, got {self.gsd}")

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(x_min, y_min, x_max, y_max) in local metres."""
        return (self.x_min, self.y_max - self.height * self.gsd, self.x_min + self.width * self.gsd, self.y_max)

    def to_pixel(self, x, y):
        """Local metres -> fractional pixel coordinates (u, v) of pixel centres."""
        return (np.asarray(x) - self.x_min) / self.gsd - 0.5, (self.y_max - np.asarray(y)) / self.gsd - 0.5

    def to_local(self, u, v):
        """Pixel coordinates (u, v) -> local metres (x, y)."""
        return self.x_min + (np.asarray(u) + 0.5) * self.gsd, self.y_max - (np.asarray(v) + 0.5) * self.gsd
