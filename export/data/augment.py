"""Photometric augmentation of rendered camera frames: what makes a real frame differ from the orthophoto besides
geometry (exposure, contrast, gamma, white balance, lens blur, sensor noise, JPEG), and of maps in the field from the sharp
orthophoto (:class:`FieldAugment`: satellite resampling, scale, season, haze, shadows, NIR false colour, JPEG).

``export`` must not import ``runtime`` (``docs/DESIGN.md``), so this is a small, self-contained counterpart of the
simulator's photometric model, drawn per sample from a caller-supplied ``numpy.random.Generator`` (deterministic by
seed). Images are RGB uint8[h, w, 3].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from . import DataError

__all__ = ["FieldAugment", "PhotometricAugment", "PhotometricDraw", "jpeg"]


def _jpeg_range(value) -> tuple[int, int]:
    """A (low, high) JPEG quality range, 1 <= low <= high <= 100, or (0, 0) for none; else :class:`DataError`."""
    try:
        lo, hi = (int(q) for q in value)
    except (TypeError, ValueError):
        raise DataError(f"jpeg_quality must be (low, high) integers in [1, 100] or (0, 0), got {value!r}") from None
    if (lo, hi) != (0, 0) and not (1 <= lo <= hi <= 100):
        raise DataError(f"jpeg_quality must be (low, high) with 1 <= low <= high <= 100, or (0, 0) for none; "
                        f"got {value!r}")
    return lo, hi


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
        object.__setattr__(self, "jpeg_quality", _jpeg_range(self.jpeg_quality))

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

    def draw(self, rng: np.random.Generator) -> "PhotometricDraw":
        """One random draw of every effect's parameters from ``rng`` (what :meth:`apply` uses; a device
        implementation, ``export.data.gpu_pairs``, takes the same draw)."""
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
        return PhotometricDraw(gain=gain, contrast=contrast, gamma=gamma, colour_gains=cg, blur_sigma_px=sigma,
                               noise_sigma=noise, jpeg_quality=quality, noise_seed=noise_seed)

    def apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """RGB uint8[h, w, 3] -> RGB uint8[h, w, 3] with one random draw of every effect (from ``rng``)."""
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DataError(f"photometric augmentation needs RGB uint8[h, w, 3], got "
                            f"{getattr(image, 'dtype', type(image).__name__)}{list(getattr(image, 'shape', []))}")
        return self.draw(rng).apply(image)


@dataclass(frozen=True, eq=False)
class PhotometricDraw:
    """The parameters of one photometric change (:meth:`PhotometricAugment.draw`).

    Attributes:
        gain: exposure gain (relative). contrast: contrast factor about the image mean. gamma: power on [0, 1].
        colour_gains: float64[3] per-channel (RGB) white-balance gains. blur_sigma_px: Gaussian blur sigma,
            pixels (<= 0.05: none). noise_sigma: sensor noise sigma, DN. jpeg_quality: 0 (none) or 1..100.
        noise_seed: seed of the noise field (``numpy.random.default_rng(noise_seed)``).
    """

    gain: float
    contrast: float
    gamma: float
    colour_gains: np.ndarray
    blur_sigma_px: float
    noise_sigma: float
    jpeg_quality: int
    noise_seed: int

    def apply(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8[h, w, 3] -> RGB uint8[h, w, 3]: blur, gamma, contrast, gains, noise, rounding, JPEG, in this
        order (float32 arithmetic)."""
        import cv2

        sigma, gamma, contrast, noise = self.blur_sigma_px, self.gamma, self.contrast, self.noise_sigma
        img = image.astype(np.float32) * np.float32(1.0 / 255.0)
        if sigma > 0.05:
            img = cv2.GaussianBlur(img, (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REFLECT)
        if gamma != 1.0:
            np.power(img, np.float32(gamma), out=img)
        mean = float(img.mean())
        img = (img - mean) * np.float32(contrast) + np.float32(mean)
        img *= (self.gain * self.colour_gains).astype(np.float32)
        img *= np.float32(255.0)
        if noise > 0.0:
            img += np.random.default_rng(self.noise_seed).standard_normal(img.shape, dtype=np.float32) * np.float32(noise)
        out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
        return jpeg(out, self.jpeg_quality)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """RGB uint8[h, w, 3] through a JPEG encode/decode at ``quality`` (1..100; 0: unchanged)."""
    import cv2

    if quality > 0:
        ok, buf = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])
    return image


def _probability(name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and 0.0 <= v <= 1.0):
        raise DataError(f"field augmentation {name} must be a probability in [0, 1], got {v!r}")
    return float(v)


@dataclass(frozen=True)
class FieldAugment:
    """What makes a map (or a camera frame) met in the field differ from the sharp orthophoto the training pairs are
    cut from: a coarser source (satellite imagery at 0.3-1 m/px resampled to the encoder's resolution), a slightly
    wrong scale (web-mercator and georeferencing scale errors), colour and season (dry vegetation), haze, soft
    shadows, NIR false colour (colour-infrared orthophotos and cameras: NIR, red, green shown as R, G, B) and JPEG
    (web tile servers). Zeros switch an effect off; ``p_*`` are the probabilities of the effects drawn per image.

    Attributes:
        p_resample: probability of a coarser source; its resolution is log-uniform in ``source_gsd_m``.
        source_gsd_m: (low, high) metres per pixel of the simulated source; a source finer than the image's own
            resolution changes nothing.
        scale_jitter: zoom ``U(1, 1 + scale_jitter)`` about the centre (relative).
        hue_deg: hue rotation ``U(-hue_deg, hue_deg)`` degrees.
        saturation: saturation gain ``exp(U(-saturation, saturation))``.
        p_season: probability of turning green vegetation towards dry yellow-brown (by ``U(0.3, 0.8)`` of the way).
        p_haze, haze: probability and largest blend ``U(0, haze)`` towards a bright airlight.
        p_shadow, shadow: probability and largest depth ``U(0.2, 1) * shadow`` of soft, low-frequency darkening.
        p_false_colour: probability of NIR false colour, the NIR band approximated from the visible bands
            (vegetation bright: ``clip(luminance + 2.5 max(0, G - (R + B) / 2))``).
        jpeg_quality: (low, high) JPEG quality; (0, 0) switches JPEG off.
    """

    p_resample: float = 0.0
    source_gsd_m: tuple[float, float] = (0.3, 1.0)
    scale_jitter: float = 0.0
    hue_deg: float = 0.0
    saturation: float = 0.0
    p_season: float = 0.0
    p_haze: float = 0.0
    haze: float = 0.35
    p_shadow: float = 0.0
    shadow: float = 0.5
    p_false_colour: float = 0.0
    jpeg_quality: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        for name in ("p_resample", "p_season", "p_haze", "p_shadow", "p_false_colour", "haze", "shadow"):
            object.__setattr__(self, name, _probability(name, getattr(self, name)))
        for name, hi in (("scale_jitter", 0.5), ("hue_deg", 180), ("saturation", 2)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and 0.0 <= v <= hi):
                raise DataError(f"field augmentation {name} must be a number in [0, {hi}], got {v!r}")
            object.__setattr__(self, name, float(v))
        try:
            lo, hi = (float(v) for v in self.source_gsd_m)
        except (TypeError, ValueError):
            raise DataError(f"source_gsd_m must be (low, high) metres per pixel, got {self.source_gsd_m!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 < lo <= hi <= 100.0):
            raise DataError(f"source_gsd_m must satisfy 0 < low <= high <= 100 (metres per pixel), got "
                            f"{self.source_gsd_m!r}")
        object.__setattr__(self, "source_gsd_m", (lo, hi))
        object.__setattr__(self, "jpeg_quality", _jpeg_range(self.jpeg_quality))

    @classmethod
    def off(cls) -> "FieldAugment":
        """No change at all (the default)."""
        return cls()

    @property
    def is_off(self) -> bool:
        return self == FieldAugment()

    @classmethod
    def satellite_map(cls) -> "FieldAugment":
        """Map tiles as satellite and web-tile imagery gives them (the ``field`` training preset's map side)."""
        return cls(p_resample=0.7, source_gsd_m=(0.3, 1.0), scale_jitter=0.05, hue_deg=10.0, saturation=0.3,
                   p_season=0.25, p_haze=0.3, haze=0.35, p_shadow=0.2, shadow=0.5, p_false_colour=0.1,
                   jpeg_quality=(40, 90))

    @classmethod
    def field_camera(cls) -> "FieldAugment":
        """Camera frames of another day and camera (the ``field`` training preset's camera side)."""
        return cls(hue_deg=8.0, saturation=0.3, p_season=0.15, p_haze=0.15, haze=0.25, p_shadow=0.3, shadow=0.5,
                   p_false_colour=0.2)

    @classmethod
    def from_dict(cls, d: dict) -> "FieldAugment":
        """Strict construction from a mapping: unknown keys are rejected."""
        from maps.config import strict_from_dict

        if isinstance(d, dict):
            d = {**d, **{k: tuple(d[k]) for k in ("jpeg_quality", "source_gsd_m") if k in d}}
        return strict_from_dict(cls, d, "field augmentation", error=DataError)

    def to_dict(self) -> dict:
        return {f.name: (list(getattr(self, f.name)) if isinstance(getattr(self, f.name), tuple) else getattr(self, f.name))
                for f in fields(self)}

    def apply(self, image: np.ndarray, rng: np.random.Generator, gsd_m: float,
              mask: np.ndarray | None = None) -> np.ndarray:
        """RGB uint8[s, s, 3] at ``gsd_m`` metres per pixel -> RGB uint8[s, s, 3], one draw of every effect from
        ``rng``; pixels outside ``mask`` (bool[s, s], invalid imagery) stay 0."""
        import cv2

        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DataError(f"field augmentation needs RGB uint8[h, w, 3], got "
                            f"{getattr(image, 'dtype', type(image).__name__)}{list(getattr(image, 'shape', []))}")
        if not (isinstance(gsd_m, (int, float)) and math.isfinite(gsd_m) and gsd_m > 0):
            raise DataError(f"gsd_m must be metres per pixel > 0, got {gsd_m!r}")
        h, w = image.shape[:2]
        # every draw, always in the same order (one setting does not shift the others' randomness)
        u = rng.uniform(size=5)  # resample, season, haze, shadow, false colour
        lo, hi = self.source_gsd_m
        src_gsd = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        zoom = 1.0 + rng.uniform(0.0, self.scale_jitter)
        hue = rng.uniform(-self.hue_deg, self.hue_deg)
        sat = math.exp(rng.uniform(-self.saturation, self.saturation))
        season = rng.uniform(0.3, 0.8)
        haze = rng.uniform(0.0, self.haze)
        air = rng.uniform(0.75, 0.95)
        depth = rng.uniform(0.2, 1.0) * self.shadow
        cells = int(rng.integers(3, 7))
        field = rng.uniform(size=(cells, cells)).astype(np.float32)
        cut = rng.uniform(0.4, 0.8)
        qlo, qhi = self.jpeg_quality
        quality = int(rng.integers(qlo, qhi + 1)) if qhi > 0 else 0

        img = image
        if u[0] < self.p_resample and src_gsd > gsd_m * 1.05:
            f = gsd_m / src_gsd
            small = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
            img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        if zoom > 1.0005:
            m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), 0.0, zoom)
            img = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        x = img.astype(np.float32) * np.float32(1.0 / 255.0)
        if hue != 0.0 or sat != 1.0 or u[1] < self.p_season:
            hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)  # H in degrees [0, 360), S and V in [0, 1]
            hh = hsv[:, :, 0]
            if u[1] < self.p_season:  # green (60-170 degrees) towards dry yellow-brown (40 degrees)
                green = np.clip(1.0 - np.abs(hh - 115.0) / 55.0, 0.0, 1.0) * np.float32(season)
                hh += (np.float32(40.0) - hh) * green
                hsv[:, :, 1] *= 1.0 - 0.3 * green
            hsv[:, :, 0] = np.mod(hh + np.float32(hue), 360.0)
            hsv[:, :, 1] = np.clip(hsv[:, :, 1] * np.float32(sat), 0.0, 1.0)
            x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        if u[3] < self.p_shadow and depth > 0:
            soft = cv2.resize(field, (w, h), interpolation=cv2.INTER_CUBIC)
            shade = 1.0 / (1.0 + np.exp(-(soft - np.float32(cut)) / np.float32(0.05)))
            x = x * (1.0 - np.float32(depth) * shade)[:, :, None]
        if u[4] < self.p_false_colour:
            r, g, b = x[:, :, 0], x[:, :, 1], x[:, :, 2]
            nir = np.clip((r + g + b) / 3.0 + 2.5 * np.maximum(g - 0.5 * (r + b), 0.0), 0.0, 1.0)
            x = np.stack([nir, r, g], axis=2)
        if u[2] < self.p_haze and haze > 0:
            airlight = np.array([air, air, min(1.0, air * 1.05)], np.float32)
            x = x * np.float32(1.0 - haze) + airlight * np.float32(haze)
        out = np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)
        if quality > 0:
            ok, buf = cv2.imencode(".jpg", out[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok:
                out = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])
        if mask is not None:
            out[~np.asarray(mask, bool)] = 0
        return out
