"""Geographic train / held-out splits: accuracy is measured on held-out AREAS, never on the data trained on.

Two ways to split, both checked for overlap:

* by orthophoto: :func:`split_by_orthophoto` — whole orthophotos are held out; their WGS84 footprints must not
  overlap (nor come within ``buffer_m`` of) any training orthophoto's. Two files can cover the same ground (e.g.
  ``swissimage_strip_0.5m`` starts at ``swissimage_zurich_a_0.5m``'s top-left corner), so names are not enough:
  :func:`check_disjoint` compares the footprints and raises :class:`SplitOverlapError`.
* by region blocks inside one orthophoto: :func:`block_split` — square blocks of the orthophoto's local frame are
  assigned to training or held-out by seed, and training blocks lose a ``buffer_m`` margin towards held-out ones.

A footprint (:class:`GeoArea`) is a polygon of (lat, lon) degrees. Overlap is computed in a transverse Mercator
frame centred between the two areas (metres), so areas from different files and CRSs compare exactly enough.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from maps.geodesy import LocalFrame
from maps.ortho import Orthophoto

from . import DataError

__all__ = ["GeoArea", "GeoSplit", "BlockSplit", "SplitOverlapError", "area_of", "overlap", "check_disjoint",
           "split_by_orthophoto", "block_split"]


class SplitOverlapError(DataError):
    """A held-out area overlaps (or lies within the buffer of) a training area."""


@dataclass(frozen=True)
class GeoArea:
    """A named ground area: ``polygon`` is a tuple of (lat, lon) degrees (WGS84), counter-clockwise or clockwise,
    not closed (the last vertex connects to the first)."""

    name: str
    polygon: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        try:
            poly = tuple((float(a), float(b)) for a, b in self.polygon)
        except (TypeError, ValueError):
            raise DataError(f"area {self.name!r}: polygon must be (lat, lon) pairs in degrees, got {self.polygon!r}") from None
        if len(poly) < 3:
            raise DataError(f"area {self.name!r}: a polygon needs at least 3 (lat, lon) vertices, got {len(poly)}")
        for lat, lon in poly:
            if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
                raise DataError(f"area {self.name!r}: vertex ({lat}, {lon}) is not a WGS84 (lat, lon) in degrees")
        object.__setattr__(self, "polygon", poly)

    @property
    def centroid(self) -> tuple[float, float]:
        """Mean vertex (lat, lon), degrees."""
        a = np.array(self.polygon)
        return float(a[:, 0].mean()), float(a[:, 1].mean())

    def local(self, frame: LocalFrame) -> np.ndarray:
        """float64[k, 2] vertices (x east, y north) in ``frame``, metres."""
        a = np.array(self.polygon)
        x, y = frame.to_local(a[:, 0], a[:, 1])
        return np.stack([np.asarray(x, float), np.asarray(y, float)], axis=1)


def area_of(name: str, ortho: Orthophoto, *, valid_only: bool = True, points_per_edge: int = 8) -> GeoArea:
    """The WGS84 footprint of an orthophoto: its bounding rectangle in the local frame (of the valid pixels when
    ``valid_only``, else of the whole raster), densified to ``points_per_edge`` points per edge."""
    if not isinstance(ortho, Orthophoto):
        raise DataError(f"area_of needs a maps.ortho.Orthophoto, got {type(ortho).__name__}")
    x0, y0, x1, y1 = ortho.bounds
    if valid_only:
        rows, cols = np.flatnonzero(ortho.mask.any(axis=1)), np.flatnonzero(ortho.mask.any(axis=0))
        if rows.size == 0:
            raise DataError(f"orthophoto {name!r} has no valid pixel; it has no footprint")
        x0, x1 = ortho.x_min + cols[0] * ortho.gsd, ortho.x_min + (cols[-1] + 1) * ortho.gsd
        y1, y0 = ortho.y_max - rows[0] * ortho.gsd, ortho.y_max - (rows[-1] + 1) * ortho.gsd
    return _box_area(name, ortho.frame, (x0, y0, x1, y1), points_per_edge)


def _box_area(name: str, frame: LocalFrame, box, points_per_edge: int = 8) -> GeoArea:
    x0, y0, x1, y1 = box
    t = np.linspace(0.0, 1.0, points_per_edge, endpoint=False)
    xs = np.concatenate([x0 + t * (x1 - x0), np.full_like(t, x1), x1 - t * (x1 - x0), np.full_like(t, x0)])
    ys = np.concatenate([np.full_like(t, y0), y0 + t * (y1 - y0), np.full_like(t, y1), y1 - t * (y1 - y0)])
    lat, lon = frame.to_wgs84(xs, ys)
    return GeoArea(name, tuple(zip(np.asarray(lat).tolist(), np.asarray(lon).tolist())))


def _seg_point_dist(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distances from points p[n, 2] to segments a[m, 2]-b[m, 2] -> float64[n, m]."""
    ab = b - a
    L = np.maximum((ab * ab).sum(1), 1e-18)
    ap = p[:, None, :] - a[None, :, :]
    t = np.clip((ap * ab[None]).sum(2) / L[None], 0.0, 1.0)
    d = ap - t[:, :, None] * ab[None]
    return np.sqrt((d * d).sum(2))


def overlap(a: GeoArea, b: GeoArea) -> tuple[float, float]:
    """(intersection area in m^2, distance in metres between the areas: 0 when they touch or overlap).

    The polygons are taken as their convex hulls (footprints of rasters are convex)."""
    import cv2

    la, lb = a.centroid, b.centroid
    frame = LocalFrame((la[0] + lb[0]) / 2.0, (la[1] + lb[1]) / 2.0)
    pa = cv2.convexHull(a.local(frame).astype(np.float32)).reshape(-1, 2).astype(np.float64)
    pb = cv2.convexHull(b.local(frame).astype(np.float32)).reshape(-1, 2).astype(np.float64)
    inter, _ = cv2.intersectConvexConvex(pa.astype(np.float32), pb.astype(np.float32))
    inter = max(float(inter), 0.0)
    if inter > 0.0 or _inside(pa, pb) or _inside(pb, pa):
        return inter, 0.0
    d = min(float(_seg_point_dist(pa, pb, np.roll(pb, -1, 0)).min()), float(_seg_point_dist(pb, pa, np.roll(pa, -1, 0)).min()))
    return 0.0, d


def _inside(points: np.ndarray, poly: np.ndarray) -> bool:
    import cv2

    c = poly.astype(np.float32).reshape(-1, 1, 2)
    return any(cv2.pointPolygonTest(c, (float(x), float(y)), False) >= 0 for x, y in points[:1])


def check_disjoint(train: Sequence[GeoArea], held_out: Sequence[GeoArea], buffer_m: float = 0.0) -> None:
    """Raise :class:`SplitOverlapError` when any held-out area overlaps a training area or comes within
    ``buffer_m`` metres of one (the message lists every offending pair with the overlap in m^2 / the gap in m)."""
    buffer_m = float(buffer_m)
    if not (math.isfinite(buffer_m) and buffer_m >= 0):
        raise DataError(f"buffer_m must be a number >= 0 (metres), got {buffer_m!r}")
    bad = []
    for h in held_out:
        for t in train:
            inter, gap = overlap(h, t)
            if inter > 0.0 or gap < buffer_m or (buffer_m == 0.0 and gap == 0.0):
                bad.append(f"held-out {h.name!r} vs training {t.name!r}: "
                           + (f"{inter:.0f} m^2 in common" if inter > 0 else f"{gap:.1f} m apart (< buffer {buffer_m:g} m)"))
    if bad:
        raise SplitOverlapError(
            "held-out areas must be disjoint from the training areas (accuracy is measured on ground never trained "
            f"on), but {len(bad)} pair(s) overlap: " + "; ".join(bad)
            + ". Move the overlapping orthophoto to the same side of the split, or split by region blocks "
            "(export.data.splits.block_split) with a buffer")


@dataclass(frozen=True)
class GeoSplit:
    """Names of the training and held-out orthophotos and their footprints (checked disjoint)."""

    train: tuple[str, ...]
    held_out: tuple[str, ...]
    areas: tuple[GeoArea, ...]


def split_by_orthophoto(orthos: Mapping[str, Orthophoto], held_out: Sequence[str], buffer_m: float = 0.0) -> GeoSplit:
    """Hold out whole orthophotos by name; every other one is for training. Checks the footprints
    (:func:`check_disjoint`, ``buffer_m``) and raises :class:`SplitOverlapError` when they overlap."""
    names = list(orthos)
    unknown = sorted(set(held_out) - set(names))
    if unknown:
        raise DataError(f"held-out names {unknown} are not among the orthophotos {names}")
    if not held_out:
        raise DataError("held_out is empty: name at least one orthophoto to evaluate on")
    areas = {n: area_of(n, o) for n, o in orthos.items()}
    train = [n for n in names if n not in set(held_out)]
    check_disjoint([areas[n] for n in train], [areas[n] for n in held_out], buffer_m)
    return GeoSplit(tuple(train), tuple(held_out), tuple(areas[n] for n in names))


@dataclass(frozen=True)
class BlockSplit:
    """Region blocks of one orthophoto: boxes (x_min, y_min, x_max, y_max) in its local metres (pass ``train`` /
    ``held_out`` as ``areas`` to :class:`export.data.pairs.RenderedPairs`). Training boxes are already shrunk by
    the buffer towards held-out blocks."""

    train: tuple[tuple[float, float, float, float], ...]
    held_out: tuple[tuple[float, float, float, float], ...]
    buffer_m: float

    def check(self, frame: LocalFrame) -> None:
        """Re-check disjointness in WGS84 (:func:`check_disjoint`)."""
        check_disjoint([_box_area(f"train block {i}", frame, b, 2) for i, b in enumerate(self.train)],
                       [_box_area(f"held-out block {i}", frame, b, 2) for i, b in enumerate(self.held_out)],
                       self.buffer_m * (1 - 1e-6))


def block_split(ortho: Orthophoto, block_m: float, held_out_fraction: float = 0.2, buffer_m: float = 60.0,
                seed: int = 0) -> BlockSplit:
    """Cut the orthophoto's extent into ``block_m`` square blocks (aligned to its top-left corner), hold out
    ``round(held_out_fraction * blocks)`` of them (at least one) chosen by ``seed``, and shrink every training
    block by ``buffer_m`` on each side facing a held-out block (also diagonally). A good buffer is at least a
    tile's side, so no tile straddles the two sets."""
    if not isinstance(ortho, Orthophoto):
        raise DataError(f"block_split needs a maps.ortho.Orthophoto, got {type(ortho).__name__}")
    block_m, buffer_m, frac = float(block_m), float(buffer_m), float(held_out_fraction)
    if not (math.isfinite(block_m) and block_m > 0):
        raise DataError(f"block_m must be > 0 metres, got {block_m!r}")
    if not (math.isfinite(buffer_m) and 0 <= buffer_m < block_m / 2):
        raise DataError(f"buffer_m must be in [0, block_m / 2) metres, got {buffer_m!r} with block_m {block_m:g}")
    if not (0.0 < frac < 1.0):
        raise DataError(f"held_out_fraction must be in (0, 1), got {held_out_fraction!r}")
    x0, y0, x1, y1 = ortho.bounds
    nx, ny = max(1, int(math.ceil((x1 - x0) / block_m))), max(1, int(math.ceil((y1 - y0) / block_m)))
    n = nx * ny
    if n < 2:
        raise DataError(f"the orthophoto ({x1 - x0:.0f} x {y1 - y0:.0f} m) holds a single {block_m:g} m block; "
                        "use smaller blocks to split it")
    k = min(n - 1, max(1, int(round(frac * n))))
    held = set(np.random.default_rng(seed).permutation(n)[:k].tolist())

    def box(i: int, j: int):
        return (x0 + i * block_m, max(y1 - (j + 1) * block_m, y0), min(x0 + (i + 1) * block_m, x1), y1 - j * block_m)

    train, held_out = [], []
    for j in range(ny):
        for i in range(nx):
            b = box(i, j)
            if j * nx + i in held:
                held_out.append(b)
                continue
            near = lambda di, dj: 0 <= i + di < nx and 0 <= j + dj < ny and (j + dj) * nx + (i + di) in held  # noqa: E731
            bx0, by0, bx1, by1 = b
            if any(near(-1, dj) for dj in (-1, 0, 1)):
                bx0 += buffer_m
            if any(near(1, dj) for dj in (-1, 0, 1)):
                bx1 -= buffer_m
            if any(near(di, -1) for di in (-1, 0, 1)):  # the block above (north)
                by1 -= buffer_m
            if any(near(di, 1) for di in (-1, 0, 1)):
                by0 += buffer_m
            if bx1 > bx0 and by1 > by0:
                train.append((bx0, by0, bx1, by1))
    return BlockSplit(tuple(train), tuple(held_out), buffer_m)
