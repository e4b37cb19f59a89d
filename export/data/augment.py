"""Photometric augmentation of rendered camera frames: what makes a real frame differ from the orthophoto besides
geometry (exposure, contrast, gamma, white balance, lens blur, sensor noise, JPEG).

``export`` must not import ``runtime`` (``docs/DESIGN.md``), so this is a small, self-contained counterpart of the
simulator's photometric model, drawn per sample from a caller-supplied ``numpy.random.Generator`` (deterministic by
seed). Images are RGB uint8[h, w, 3].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from . import DataError

__all__ = ["PhotometricAugment"]


@dataclass(frozen=True)
class PhotometricAugment:
    """Ranges of the per-sample photometric change. Zeros switch an effect off.

    Attributes:
        brightness: exposure gain ``1 + U(-brightness, brightness)`` (relative, < 1).
        contrast: contrast about the image mean ``1 + U(-contrast, contrast)`` (relative, < 1).
        gamma: ``exp(U(-gamma, gamma))`` power on [0, 1] intensities.
        color_shift: per-channel white-balance gains ``N(1, color_shift)`` normalised to mean 1.
        blur_sigma_px: Gaussian lens blur, sigma ``U(0, blur_sigma_px)`` pixels.
        noise_sigma: sensor noise, ``N(0, U(0, noise_sigma))`` digital numbers.
        jpeg_quality: (low, high) JPEG quality drawn uniformly; (0, 0) switches JPEG off.
    """

    brightness: float = 0.25
    contrast: float = 0.2
    gamma: float = 0.2
    color_shift: float = 0.05
    blur_sigma_px: float = 1.0
    noise_sigma: float = 3.0
    jpeg_quality: tuple[int, int] = (60, 95)

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name == "jpeg_quality":
                continue
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise DataError(f"photometric {f.name} must be a number >= 0, got {v!r}")
            object.__setattr__(self, f.name, float(v))
        for name in ("brightness", "contrast"):
            if getattr(self, name) >= 1.0:
                raise DataError(f"photometric {name} must be < 1 (a relative change), got {getattr(self, name)}")
        try:
            lo, hi = (int(q) for q in self.jpeg_quality)
        except (TypeError, ValueError):
            raise DataError(f"jpeg_quality must be (low, high) integers in [1, 100] or (0, 0), got {self.jpeg_quality!r}") from None
        if (lo, hi) != (0, 0) and not (1 <= lo <= hi <= 100):
            raise DataError(f"jpeg_quality must be (low, high) with 1 <= low <= high <= 100, or (0, 0) for none; "
                            f"got {self.jpeg_quality!r}")
        object.__setattr__(self, "jpeg_quality", (lo, hi))

    @classmethod
    def off(cls) -> "PhotometricAugment":
        """No photometric change at all."""
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, (0, 0))

    @classmethod
    def from_dict(cls, d: dict) -> "PhotometricAugment":
        """Strict construction from a mapping: unknown keys are rejected."""
        from maps.config import strict_from_dict

        if isinstance(d, dict) and "jpeg_quality" in d:
            d = {**d, "jpeg_quality": tuple(d["jpeg_quality"])}
        return strict_from_dict(cls, d, "photometric augmentation", error=DataError)

    def to_dict(self) -> dict:
        return {f.name: (list(getattr(self, f.name)) if f.name == "jpeg_quality" else getattr(self, f.name))
                for f in fields(self)}

    def apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """RGB uint8[h, w, 3] -> RGB uint8[h, w, 3] with one random draw of every effect (from ``rng``)."""
        import cv2

        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DataError(f"photometric augmentation needs RGB uint8[h, w, 3], got "
                            f"{getattr(image, 'dtype', type(image).__name__)}{list(getattr(image, 'shape', []))}")
        # draw every parameter, always in the same order, so one setting does not shift the others' randomness
        gain = 1.0 + rng.uniform(-self.brightness, self.brightness)
        contrast = 1.0 + rng.uniform(-self.contrast, self.contrast)
        gamma = math.exp(rng.uniform(-self.gamma, self.gamma))
        cg = 1.0 + rng.standard_normal(3) * self.color_shift
        cg = np.clip(cg / cg.mean(), 0.5, 1.5)
        sigma = rng.uniform(0.0, self.blur_sigma_px)
        noise = rng.uniform(0.0, self.noise_sigma)
        lo, hi = self.jpeg_quality
        quality = int(rng.integers(lo, hi + 1)) if hi > 0 else 0
        noise_seed = int(rng.integers(0, 2**63 - 1))

        img = image.astype(np.float32) * np.float32(1.0 / 255.0)
        if sigma > 0.05:
            img = cv2.GaussianBlur(img, (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REFLECT)
        if gamma != 1.0:
            np.power(img, np.float32(gamma), out=img)
        mean = float(img.mean())
        img = (img - mean) * np.float32(contrast) + np.float32(mean)
        img *= (gain * cg).astype(np.float32)
        img *= np.float32(255.0)
        if noise > 0.0:
            img += np.random.default_rng(noise_seed).standard_normal(img.shape, dtype=np.float32) * np.float32(noise)
        out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
        if quality > 0:
            ok, buf = cv2.imencode(".jpg", out[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok:
                out = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])
        return out
