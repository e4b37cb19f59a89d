"""Photometric model of the simulated camera: what makes a frame differ from the orthophoto besides geometry.

Per flight (drawn once by seed): an exposure gain ``1 + U(-brightness, brightness)``, per-channel colour gains
``N(1, color_shift)`` (white balance, normalised to mean 1) and a lens blur ``U(0.5, 1) * blur_sigma_px`` (Gaussian,
pixels). Slowly varying (smooth noise, periods of 10-100 s): the gain drifts by ``brightness_drift`` rms and the
colour gains by a quarter of ``color_shift`` rms (clouds, auto exposure). Per frame: sensor noise
``N(0, noise_sigma)`` digital numbers, then JPEG encoding at ``jpeg_quality``.

Images are RGB uint8[h, w, 3]; times in seconds from the start of the flight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import SimulationError
from .noise import STREAM_PHOTO_FRAME, STREAM_PHOTOMETRIC, SmoothNoise, rng


@dataclass(frozen=True)
class PhotometricConfig:
    """Parameters (see the module docstring). Zeros switch an effect off."""

    brightness: float = 0.15
    brightness_drift: float = 0.05
    color_shift: float = 0.04
    blur_sigma_px: float = 0.8
    noise_sigma: float = 2.0
    jpeg_quality: int = 85

    def __post_init__(self) -> None:
        for name in ("brightness", "brightness_drift", "color_shift", "blur_sigma_px", "noise_sigma"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise SimulationError(f"photometric {name} must be a number >= 0, got {v!r}")
        if self.brightness >= 1:
            raise SimulationError(f"photometric brightness must be < 1 (a relative gain change), got {self.brightness}")
        if not (isinstance(self.jpeg_quality, int) and 1 <= self.jpeg_quality <= 100):
            raise SimulationError(f"jpeg_quality must be an integer in [1, 100], got {self.jpeg_quality!r}")


class PhotometricModel:
    """The per-flight draw of a :class:`PhotometricConfig` for one seed."""

    def __init__(self, config: PhotometricConfig, seed: int) -> None:
        self.config = config
        self.seed = int(seed)
        gen = rng(seed, STREAM_PHOTOMETRIC)
        self.gain = 1.0 + gen.uniform(-config.brightness, config.brightness)
        cg = 1.0 + gen.standard_normal(3) * config.color_shift
        self.color_gains = np.clip(cg / cg.mean(), 0.5, 1.5)
        self.blur_sigma_px = gen.uniform(0.5, 1.0) * config.blur_sigma_px
        self._gain_drift = SmoothNoise.make(gen, config.brightness_drift, 0.01, 0.1)
        self._color_drift = SmoothNoise.make(gen, config.color_shift / 4, 0.01, 0.1, channels=3)

    def gains_at(self, t_s: float) -> np.ndarray:
        """float64[3] total per-channel gain (exposure x white balance) at time ``t_s``."""
        g = self.gain * (1.0 + float(self._gain_drift([t_s])[0, 0]))
        c = self.color_gains * (1.0 + self._color_drift([t_s])[0])
        return np.clip(g * c, 0.05, 5.0)

    def apply(self, image: np.ndarray, t_s: float, frame_index: int) -> np.ndarray:
        """RGB uint8[h, w, 3] as rendered -> RGB uint8[h, w, 3] as the camera records it (before JPEG)."""
        import cv2

        img = image.astype(np.float32)
        if self.blur_sigma_px > 0.05:
            img = cv2.GaussianBlur(img, (0, 0), sigmaX=float(self.blur_sigma_px), borderType=cv2.BORDER_REFLECT)
        img *= self.gains_at(t_s).astype(np.float32)
        if self.config.noise_sigma > 0:
            gen = rng(self.seed, STREAM_PHOTO_FRAME, frame_index)
            img += gen.standard_normal(img.shape, dtype=np.float32) * np.float32(self.config.noise_sigma)
        return np.clip(img + 0.5, 0, 255).astype(np.uint8)
