"""The classical global image descriptor: the baseline every learned encoder is compared with.

In the spirit of im2gps (Hays & Efros, CVPR 2008: "tiny images" and gist-like gradient-orientation descriptors),
tuned for nadir aerial tiles and exposed behind the same interface as a learned encoder (``docs/DESIGN.md``):
``ClassicalDescriptor()(images: uint8[n, h, w, 3] RGB) -> float32[n, 384]`` with L2-normalised rows, plus its
:class:`~maps.contract.EncoderContract` (:func:`classical_contract`: 128 x 128 px at 0.4 m/px, one tile = 51.2 m).

The descriptor, computed on the greyscale (Rec. 601 luma) tile area-averaged to a 32 x 32 grid (= 1.6 m cells at
0.4 m/px: robust to blur, JPEG, noise and sub-metre misregistration):

* tiny image (256): the 16 x 16 area-averaged tile, zero mean, unit L2 norm (invariant to brightness and contrast);
* gradient-orientation histogram (128): central-difference gradients on the 32 x 32 grid, magnitude-weighted votes
  into 8 signed orientation bins (linear interpolation between bins) and 4 x 4 spatial cells (bilinear
  interpolation between cells, so a shift moves votes smoothly); each cell normalised by its own energy plus the
  mean cell energy of the tile (a regularised per-block normalisation that does not amplify flat cells), then
  L2-normalised, clipped at 0.2 and renormalised (HOG's L2-Hys);
* the two parts weighted ``TINY_WEIGHT`` : ``GRADIENT_WEIGHT`` (as L2 norms) and L2-normalised together.

The weights and the 32 x 32 gradient grid were chosen on tiles cut from the real orthophotos of ``../shared/data``
(queries shifted 2-4 m, rotated up to 6 deg, scaled +-6 %, with brightness/contrast/gamma/colour-balance changes,
blur, noise and JPEG): the gradient part carries the retrieval; the tiny image helps a little at small shifts.
A textureless tile (still water, a flat roof filling the tile) gives an uninformative constant-ish vector; there is
nothing to match there for any descriptor.

Pure numpy (plus cv2 only for input sizes that are not multiples of 32); no import-time work.
"""

from __future__ import annotations

import numpy as np

from .contract import EncoderContract
from .errors import MapError, QueryError

ENCODER_ID = "classical-tinygrad-v1"
TINY_SIZE = 16
GRID = 32
CELLS = 4
BINS = 8
TINY_WEIGHT = 0.3
GRADIENT_WEIGHT = 1.0
HYS_CLIP = 0.2
EMBEDDING_DIM = TINY_SIZE * TINY_SIZE + CELLS * CELLS * BINS  # 384
CHUNK = 256
"""Tiles processed at once (bounds the float32 working memory to ~20 MB)."""

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def classical_contract() -> EncoderContract:
    """The contract of :class:`ClassicalDescriptor`: RGB uint8 128 x 128 px tiles at 0.4 m/px -> 384-d cosine."""
    return EncoderContract(
        encoder_id=ENCODER_ID,
        name="classical tiny-image + gradient-orientation histogram (im2gps-style)",
        input_width=128,
        input_height=128,
        ground_resolution_m=0.4,
        embedding_dim=EMBEDDING_DIM,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        colour_order="RGB",
        metric="cosine",
    )


def _cell_weights(n_in: int, n_cells: int) -> np.ndarray:
    """float32[n_cells, n_in]: bilinear assignment of ``n_in`` samples to ``n_cells`` cells (rows sum per column to 1)."""
    pos = (np.arange(n_in) + 0.5) / n_in * n_cells - 0.5
    w = np.clip(1.0 - np.abs(pos[None, :] - np.arange(n_cells)[:, None]), 0.0, 1.0)
    w[0, pos < 0] = 1.0
    w[-1, pos > n_cells - 1] = 1.0
    return w.astype(np.float32)


_WEIGHTS = _cell_weights(GRID, CELLS)


def _unit_rows(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(norm, 1e-12)


class ClassicalDescriptor:
    """Callable encoder: ``uint8[n, h, w, 3]`` RGB tiles (h, w = contract input size) -> ``float32[n, 384]``.

    Rows are L2-normalised (cosine similarity = inner product). Deterministic; a tile's descriptor does not depend
    on the other tiles of the batch (up to float rounding).

    Args:
        contract: defaults to :func:`classical_contract`. Another contract may change the input size (at least
            32 x 32 px) and ground resolution, but must keep ``embedding_dim`` 384 and RGB order.
    """

    def __init__(self, contract: EncoderContract | None = None) -> None:
        if contract is None:
            contract = classical_contract()
        if not isinstance(contract, EncoderContract):
            raise MapError(f"contract must be a maps.contract.EncoderContract, got {type(contract).__name__}")
        if contract.embedding_dim != EMBEDDING_DIM:
            raise MapError(
                f"the classical descriptor is {EMBEDDING_DIM}-d, the contract says embedding_dim="
                f"{contract.embedding_dim}; use classical_contract() or set embedding_dim={EMBEDDING_DIM}"
            )
        if contract.colour_order != "RGB":
            raise MapError(f"the classical descriptor takes RGB input, the contract says {contract.colour_order}")
        if contract.input_width < GRID or contract.input_height < GRID:
            raise MapError(
                f"the classical descriptor needs tiles of at least {GRID} x {GRID} px, the contract says "
                f"{contract.input_width} x {contract.input_height}"
            )
        self.contract = contract

    @property
    def embedding_dim(self) -> int:
        return EMBEDDING_DIM

    def __repr__(self) -> str:
        c = self.contract
        return f"ClassicalDescriptor({c.encoder_id}, {c.input_width}x{c.input_height} px @ {c.ground_resolution_m} m/px)"

    def _check(self, images) -> np.ndarray:
        c = self.contract
        want = f"uint8[n, {c.input_height}, {c.input_width}, 3] RGB"
        if not isinstance(images, np.ndarray):
            raise QueryError(f"expected a numpy array {want}, got {type(images).__name__}")
        if images.dtype != np.uint8:
            raise QueryError(
                f"expected {want}, got dtype {images.dtype}; convert 0..1 floats with (x * 255).round().astype(np.uint8)"
            )
        if images.ndim == 3 and images.shape[-1] == 3:
            raise QueryError(f"expected a batch {want}, got one image {list(images.shape)}; pass images[None]")
        if images.ndim != 4 or images.shape[3] != 3:
            raise QueryError(f"expected {want}, got shape {list(images.shape)}")
        if images.shape[1:3] != (c.input_height, c.input_width):
            raise QueryError(
                f"expected {want} ({c.input_width * c.ground_resolution_m:g} x {c.input_height * c.ground_resolution_m:g} m "
                f"at {c.ground_resolution_m:g} m/px), got tiles of {images.shape[2]} x {images.shape[1]} px; cut tiles "
                f"at the contract's resolution and size"
            )
        return images

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """``images`` uint8[n, h, w, 3] RGB -> float32[n, 384] unit rows. Raises QueryError on a wrong input."""
        images = self._check(images)
        n = images.shape[0]
        out = np.empty((n, EMBEDDING_DIM), dtype=np.float32)
        for s in range(0, n, CHUNK):
            out[s:s + CHUNK] = self._describe(images[s:s + CHUNK])
        return out

    # -------------------------------------------------------------------------------------------- internals

    def _grey_grid(self, images: np.ndarray) -> np.ndarray:
        """uint8[n, h, w, 3] -> float32[n, 32, 32] area-averaged luma (0..255)."""
        n, h, w, _ = images.shape
        if h % GRID == 0 and w % GRID == 0:
            fy, fx = h // GRID, w // GRID
            rgb = images.reshape(n, GRID, fy, GRID, fx, 3).sum(axis=(2, 4), dtype=np.float32)
            return (rgb @ _LUMA) * np.float32(1.0 / (fy * fx))
        import cv2

        rgb = np.stack([cv2.resize(im.astype(np.float32), (GRID, GRID), interpolation=cv2.INTER_AREA) for im in images])
        return rgb @ _LUMA

    def _describe(self, images: np.ndarray) -> np.ndarray:
        n = images.shape[0]
        g = self._grey_grid(images)  # [n, 32, 32]

        # tiny image: 16 x 16, zero mean, unit norm
        f = GRID // TINY_SIZE
        tiny = g.reshape(n, TINY_SIZE, f, TINY_SIZE, f).mean(axis=(2, 4)).reshape(n, -1)
        tiny = _unit_rows(tiny - tiny.mean(axis=1, keepdims=True))

        # gradients (x right = east, y up = north), central differences, one-sided at the border
        gx = np.empty_like(g)
        gy = np.empty_like(g)
        gx[:, :, 1:-1] = g[:, :, 2:] - g[:, :, :-2]
        gx[:, :, 0] = 2.0 * (g[:, :, 1] - g[:, :, 0])
        gx[:, :, -1] = 2.0 * (g[:, :, -1] - g[:, :, -2])
        gy[:, 1:-1, :] = g[:, :-2, :] - g[:, 2:, :]
        gy[:, 0, :] = 2.0 * (g[:, 0, :] - g[:, 1, :])
        gy[:, -1, :] = 2.0 * (g[:, -2, :] - g[:, -1, :])
        mag = np.sqrt(gx * gx + gy * gy)
        pos = (np.arctan2(gy, gx) % np.float32(2.0 * np.pi)) * np.float32(BINS / (2.0 * np.pi))
        lower = np.floor(pos)
        frac = (pos - lower).astype(np.float32)
        b0 = lower.astype(np.int64) % BINS
        b1 = (b0 + 1) % BINS
        w_lo = (1.0 - frac) * mag
        w_hi = frac * mag
        votes = np.empty((n, BINS, GRID, GRID), dtype=np.float32)
        for k in range(BINS):
            votes[:, k] = np.where(b0 == k, w_lo, 0.0) + np.where(b1 == k, w_hi, 0.0)
        # bilinear spatial pooling into 4 x 4 cells: W @ votes @ W.T
        pooled = _WEIGHTS @ (votes @ _WEIGHTS.T)  # [n, BINS, CELLS, CELLS]
        hist = pooled.transpose(0, 2, 3, 1).reshape(n, CELLS * CELLS, BINS)
        energy = np.linalg.norm(hist, axis=2, keepdims=True)
        hist = hist / (energy + energy.mean(axis=1, keepdims=True) + 1e-6)
        hist = _unit_rows(hist.reshape(n, -1))
        hist = _unit_rows(np.minimum(hist, HYS_CLIP))

        desc = np.concatenate([TINY_WEIGHT * tiny, GRADIENT_WEIGHT * hist], axis=1)
        norm = np.linalg.norm(desc, axis=1, keepdims=True)
        flat = norm[:, 0] < 1e-9
        desc = desc / np.maximum(norm, 1e-12)
        if flat.any():  # a perfectly uniform tile: the (constant) uniform gradient histogram
            desc[flat] = 0.0
            desc[flat, TINY_SIZE * TINY_SIZE:] = 1.0 / np.sqrt(CELLS * CELLS * BINS)
        return desc.astype(np.float32, copy=False)
