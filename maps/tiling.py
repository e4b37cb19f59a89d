"""Map tiles on a regular metric grid: planning (which tile centres) and cutting (the pixels an encoder sees).

A tile is a square ground patch of ``tile_size_m`` metres, north-up, centred on a point of a regular grid with
spacing ``stride_m`` in the orthophoto's :class:`~maps.geodesy.LocalFrame`. The encoder sees it as
``size_px x size_px`` pixels at ``gsd`` metres/pixel (``size_px = tile_size_m / gsd``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from .contract import EncoderContract
from .errors import MapError
from .config import strict_from_dict
from .ortho import Orthophoto


@dataclass(frozen=True)
class TileGrid:
    """Geometry of the tiles of a map.

    Attributes:
        tile_size_m: side of a (square) tile's ground footprint, metres.
        stride_m: spacing of tile centres along x (east) and y (north), metres.
        gsd: metres per pixel of the tiles fed to the encoder; ``tile_size_m / gsd`` must be a whole number of pixels.
    """

    tile_size_m: float
    stride_m: float
    gsd: float

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise MapError(f"tile grid {f.name} must be a number (metres), got {value!r}")
            value = float(value)
            if not (math.isfinite(value) and value > 0):
                raise MapError(f"tile grid {f.name} must be a finite number > 0, got {value!r}")
            object.__setattr__(self, f.name, value)
        px = self.tile_size_m / self.gsd
        if abs(px - round(px)) > 1e-6 * max(1.0, px) or round(px) < 1:
            raise MapError(
                f"tile_size_m / gsd must be a whole number of pixels, got {self.tile_size_m} m / {self.gsd} m/px = {px:g}"
            )

    @property
    def size_px(self) -> int:
        """Side of a tile in pixels at :attr:`gsd`."""
        return int(round(self.tile_size_m / self.gsd))

    @classmethod
    def from_contract(
        cls, contract: EncoderContract, tile_size_m: float | None = None, stride_m: float | None = None
    ) -> "TileGrid":
        """Defaults from an encoder contract: tile = input size x ground resolution, stride = tile / 4.

        A ``tile_size_m`` other than the contract's footprint keeps the encoder's input size in pixels and changes
        the tile resolution to ``tile_size_m / input_width`` m/px (recorded in the map; the onboard side rectifies
        camera frames at the map's ``tile_grid.gsd``).
        """
        if not isinstance(contract, EncoderContract):
            raise MapError(f"expected an EncoderContract, got {type(contract).__name__}")
        if contract.input_width != contract.input_height:
            raise MapError(
                f"map tiles are square but encoder {contract.encoder_id!r} takes "
                f"{contract.input_width}x{contract.input_height} px inputs; use an encoder with square inputs"
            )
        if tile_size_m is None:
            tile_size_m = contract.input_width * contract.ground_resolution_m
            gsd = contract.ground_resolution_m
        else:
            tile_size_m = _positive("tile_size_m", tile_size_m)
            gsd = tile_size_m / contract.input_width
        stride = tile_size_m / 4.0 if stride_m is None else _positive("stride_m", stride_m)
        return cls(tile_size_m=tile_size_m, stride_m=stride, gsd=gsd)

    def to_dict(self) -> dict:
        return {"tile_size_m": self.tile_size_m, "stride_m": self.stride_m, "gsd": self.gsd}

    @classmethod
    def from_dict(cls, d: dict) -> "TileGrid":
        """Inverse of :meth:`to_dict`; unknown or missing keys are rejected."""
        return strict_from_dict(cls, d, "tile grid")


def _positive(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise MapError(f"{name} must be a number of metres, got {value!r}") from exc
    if not (math.isfinite(v) and v > 0):
        raise MapError(f"{name} must be > 0 metres, got {value!r}")
    return v


def _axis_centres(lo: float, hi: float, tile: float, stride: float) -> np.ndarray:
    """Centres of tiles (side ``tile``) spaced ``stride`` that fit in [lo, hi], with equal margins both sides."""
    span = hi - lo
    if span + 1e-9 < tile:
        return np.zeros(0)
    count = int(math.floor((span - tile) / stride + 1e-9)) + 1
    margin = (span - tile - (count - 1) * stride) / 2.0
    return lo + margin + tile / 2.0 + stride * np.arange(count)


def axis_centres(lo: float, hi: float, grid: "TileGrid") -> np.ndarray:
    """float64[m] centres, ascending, of the tiles of ``grid`` that fit in [lo, hi] metres with equal margins both
    sides (what :func:`plan_tiles` uses along each axis of an orthophoto's extent)."""
    return _axis_centres(float(lo), float(hi), grid.tile_size_m, grid.stride_m)


def plan_tiles(ortho: Orthophoto, grid: TileGrid, min_valid_fraction: float = 0.9, *, centres=None) -> np.ndarray:
    """Tile centres on a regular metric grid over ``ortho`` whose footprint is mostly valid imagery.

    The grid has spacing ``grid.stride_m`` along x and y and is centred on the orthophoto's extent (equal margins),
    or is ``centres`` = (xs float[a] ascending, ys float[b] descending), metres: the columns and rows of a grid
    planned over a larger area (a region's shards take their part of one grid). A tile is kept when at least
    ``min_valid_fraction`` of the orthophoto pixels inside its footprint are valid (``ortho.mask``; outside the
    orthophoto counts as invalid).

    Returns:
        float64[n, 2] tile centres (x east, y north) in local metres, rows north to south, west to east in a row.
    """
    if not isinstance(ortho, Orthophoto):
        raise MapError(f"plan_tiles needs an Orthophoto, got {type(ortho).__name__}")
    if not isinstance(grid, TileGrid):
        raise MapError(f"plan_tiles needs a TileGrid, got {type(grid).__name__}")
    try:
        frac = float(min_valid_fraction)
    except (TypeError, ValueError) as exc:
        raise MapError(f"min_valid_fraction must be a number in (0, 1], got {min_valid_fraction!r}") from exc
    if not (0.0 < frac <= 1.0):
        raise MapError(f"min_valid_fraction must be in (0, 1], got {min_valid_fraction!r}")
    x0, y0, x1, y1 = ortho.bounds
    if centres is None:
        xs = _axis_centres(x0, x1, grid.tile_size_m, grid.stride_m)
        ys = _axis_centres(y0, y1, grid.tile_size_m, grid.stride_m)[::-1]
    else:
        xs, ys = (np.asarray(c, dtype=np.float64).reshape(-1) for c in centres)
    if xs.size == 0 or ys.size == 0:
        return np.zeros((0, 2), dtype=np.float64)
    # Footprint of every tile in ortho pixel edges (integral image of the mask => valid pixel count per tile).
    half = grid.tile_size_m / 2.0
    u0 = np.clip(np.round((xs - half - ortho.x_min) / ortho.gsd).astype(np.int64), 0, ortho.width)
    u1 = np.clip(np.round((xs + half - ortho.x_min) / ortho.gsd).astype(np.int64), 0, ortho.width)
    v0 = np.clip(np.round((ortho.y_max - (ys + half)) / ortho.gsd).astype(np.int64), 0, ortho.height)
    v1 = np.clip(np.round((ortho.y_max - (ys - half)) / ortho.gsd).astype(np.int64), 0, ortho.height)
    valid = _window_counts(ortho.mask, u0, u1, v0, v1)
    V0, U0 = np.meshgrid(v0, u0, indexing="ij")
    V1, U1 = np.meshgrid(v1, u1, indexing="ij")
    area = (V1 - V0) * (U1 - U0)
    if centres is not None:  # footprints may reach beyond this raster: what lies outside counts as invalid
        side = int(round(grid.tile_size_m / ortho.gsd))
        area = np.maximum(area, side * side)
    keep = (area > 0) & (valid >= frac * np.maximum(area, 1) - 1e-9)
    X, Y = np.meshgrid(xs, ys, indexing="xy")
    return np.stack([X[keep], Y[keep]], axis=1).astype(np.float64)


def _window_counts(mask: np.ndarray, u0, u1, v0, v1) -> np.ndarray:
    """True pixels of ``mask`` in every window [v0[i]:v1[i], u0[j]:u1[j]] -> int64[len(v0), len(u0)].

    A summed-area table restricted to the columns where windows start or end (memory O(h * windows), not
    O(h * w), so huge orthophotos do not need an integral image of their own size).
    """
    h, w = mask.shape
    if mask.all():
        return (v1 - v0)[:, None] * (u1 - u0)[None, :]
    starts = np.unique(np.concatenate([[0], u0, u1]))
    starts = starts[starts < w]
    seg = np.add.reduceat(mask, starts, axis=1, dtype=np.int64)  # [h, m]: sums over [starts[j], starts[j+1])
    cum = np.zeros((h + 1, starts.size + 1), dtype=np.int64)
    np.cumsum(np.cumsum(seg, axis=1), axis=0, out=cum[1:, 1:])
    edges = np.append(starts, w)  # cum[:, j] = count of mask[:, :edges[j]]
    j0, j1 = np.searchsorted(edges, u0), np.searchsorted(edges, u1)
    return cum[v1][:, j1] - cum[v0][:, j1] - cum[v1][:, j0] + cum[v0][:, j0]


def resample_to_gsd(ortho: Orthophoto, gsd: float) -> Orthophoto:
    """The orthophoto resampled once to ``gsd`` m/px over the same extent (area interpolation when shrinking).

    The resampled raster keeps ``x_min``/``y_max``; its pixel size is exactly ``gsd`` (it may cover up to half a
    pixel more or less than the source at the right/bottom edges). The mask becomes True where at least half of the
    source pixels under a target pixel are valid. Returns ``ortho`` itself when the resolution already matches.
    """
    gsd = _positive("gsd", gsd)
    if abs(ortho.gsd - gsd) <= 1e-9 * gsd:
        return ortho
    import cv2

    scale = ortho.gsd / gsd
    if min(ortho.width, ortho.height) * scale < 1.0:
        raise MapError(f"resampling a {ortho.width}x{ortho.height} px orthophoto from {ortho.gsd:g} to {gsd:g} m/px "
                       "leaves less than one pixel")
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    # dsize (0, 0) with fx/fy: OpenCV maps pixels with exactly this scale (with an explicit dsize it would use
    # dsize / source size instead) and rounds the output size.
    image = cv2.resize(ortho.image, (0, 0), fx=scale, fy=scale, interpolation=interp)
    mask = cv2.resize(ortho.mask.astype(np.float32), (0, 0), fx=scale, fy=scale, interpolation=interp) >= 0.5
    return Orthophoto(
        image=np.ascontiguousarray(image), mask=mask, gsd=gsd, x_min=ortho.x_min, y_max=ortho.y_max,
        frame=ortho.frame, sources=ortho.sources,
    )


def cut_tiles(ortho: Orthophoto, positions, grid: TileGrid, size_px: int | None = None) -> np.ndarray:
    """Crop north-up tiles centred on ``positions`` at the grid's resolution.

    The orthophoto is resampled once to ``grid.gsd`` (area interpolation, see :func:`resample_to_gsd`; no work when
    it already has that resolution, so callers cutting many batches should resample first), then each tile is a
    plain crop. Pixels outside the orthophoto are black (0).

    Args:
        ortho: the source raster.
        positions: float[n, 2] tile centres (x east, y north), local metres.
        grid: the tile geometry; crops are at ``grid.gsd`` m/px.
        size_px: side of each crop in pixels (default ``grid.size_px``: exactly the tile footprint).

    Returns:
        uint8[n, size_px, size_px, 3] RGB.
    """
    if not isinstance(ortho, Orthophoto):
        raise MapError(f"cut_tiles needs an Orthophoto, got {type(ortho).__name__}")
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 2:
        raise MapError(f"tile positions must be float[n, 2] (x, y metres), got shape {list(pos.shape)}")
    if not np.all(np.isfinite(pos)):
        raise MapError("tile positions must be finite numbers (metres)")
    size = grid.size_px if size_px is None else int(size_px)
    if size <= 0:
        raise MapError(f"size_px must be a positive number of pixels, got {size_px!r}")
    src = resample_to_gsd(ortho, grid.gsd)
    out = np.zeros((pos.shape[0], size, size, 3), dtype=np.uint8)
    # Column/row of each crop's top-left pixel: the centre sits at pixel-edge coordinate (x - x_min) / gsd.
    cu = (pos[:, 0] - src.x_min) / src.gsd
    cv = (src.y_max - pos[:, 1]) / src.gsd
    u0 = np.round(cu - size / 2.0).astype(np.int64)
    v0 = np.round(cv - size / 2.0).astype(np.int64)
    h, w = src.height, src.width
    for i in range(pos.shape[0]):
        a, b = int(u0[i]), int(v0[i])
        sa, sb = max(a, 0), max(b, 0)
        ea, eb = min(a + size, w), min(b + size, h)
        if ea <= sa or eb <= sb:
            continue
        out[i, sb - b:eb - b, sa - a:ea - a] = src.image[sb:eb, sa:ea]
    return out
