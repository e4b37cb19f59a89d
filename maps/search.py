"""Retrieval over a map's tile embeddings: exact search scoped by a position prior, HNSW for the whole map.

Tiles of a map package are stored ordered by the cell of a coarse square :class:`SpatialGrid` (cell-major, CSR
``offsets``), so the tiles of one cell are one contiguous row range of the float16 embeddings. A prior
``(x, y, radius_m)`` selects the cells that touch its circle; each cell's rows are converted to float32 once and
kept in a bounded LRU cache (:class:`CellCache`), scored with a float32 matrix product (numpy has no float16 BLAS).
Of the cells crossing the circle's edge only the rows whose tile centre is inside the circle are converted (or a
contiguous span of them, when that is cheaper than gathering) and scored; later frames nearby convert only the rows
they add. The conversion (exact, OpenCV's vectorised loop) dominates the first query in a new area.

Without a prior, or when the circle holds more than half of the map, the HNSW index (hnswlib, inner product)
answers instead: for a large circle it is asked for extra neighbours and those outside the circle are dropped,
falling back to the exact path when too few remain. Tiles whose embeddings are identical (textureless water, roofs)
are indexed once and expanded in the results; those groups are also scored exactly with every HNSW query, since a
near-constant descriptor gives the graph search nothing to follow.

The HNSW graph may be built over a p-dimensional projection of the embeddings (``projection`` float32[p, d],
orthonormal rows: an uncentred PCA, p = 64 by default): queries are projected, the graph is asked for
``max(4 k, ef or 64, 64)`` candidates, and those are re-ranked exactly in float32 against the full-dimension float16
embeddings (gathered rows), so returned scores are the exact cosine similarities.

Scores are cosine similarities (inner products of unit vectors), best first; ids are tile indices (rows of
``positions``/``embeddings``); rows with fewer tiles in scope than ``k`` are padded with id -1 and score -inf.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from .errors import MapError, PriorOutsideMapError, QueryError
from .config import strict_from_dict

#: Fraction of the map a prior's circle must hold before HNSW (with extra k and filtering) replaces exact search.
HNSW_SCOPE_FRACTION = 0.5
#: Columns of scores accumulated before a running top-k reduction (bounds memory for whole-map exact search).
_CHUNK_COLUMNS = 1 << 16
#: A boundary cell's whole row range (or the contiguous span of its rows inside the circle) is converted instead of
#: gathering just the rows inside when it holds at most this many times as many rows (gathering a row costs about half
#: of converting it).
GATHER_SPAN_RATIO = 1.5
#: float32 values gathered at once when re-ranking HNSW candidates with the full embeddings (16 MiB).
_RERANK_FLOATS = 1 << 22


@dataclass(frozen=True)
class SpatialGrid:
    """A coarse square grid over tile centres; cell ``(cx, cy)`` has id ``cy * nx + cx``.

    Attributes:
        x0, y0: local metres of the grid's south-west corner (x east, y north).
        cell_size_m: side of a cell, metres.
        nx, ny: cells along x and y.
    """

    x0: float
    y0: float
    cell_size_m: float
    nx: int
    ny: int

    def __post_init__(self) -> None:
        for name in ("x0", "y0", "cell_size_m"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise MapError(f"spatial grid {name} must be a finite number of metres, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not self.cell_size_m > 0:
            raise MapError(f"spatial grid cell_size_m must be > 0, got {self.cell_size_m}")
        for name in ("nx", "ny"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise MapError(f"spatial grid {name} must be a positive integer, got {value!r}")

    @property
    def n_cells(self) -> int:
        return self.nx * self.ny

    @classmethod
    def for_positions(cls, positions: np.ndarray, cell_size_m: float) -> "SpatialGrid":
        """The smallest grid of ``cell_size_m`` cells holding every position (float[n, 2] local metres)."""
        pos = np.asarray(positions, dtype=np.float64)
        if pos.shape[0] == 0:
            return cls(0.0, 0.0, float(cell_size_m), 1, 1)
        lo, hi = pos.min(axis=0), pos.max(axis=0)
        nx = int(math.floor((hi[0] - lo[0]) / cell_size_m)) + 1
        ny = int(math.floor((hi[1] - lo[1]) / cell_size_m)) + 1
        return cls(float(lo[0]), float(lo[1]), float(cell_size_m), nx, ny)

    def cell_ids(self, positions: np.ndarray) -> np.ndarray:
        """int64[n] cell id of each position (float[n, 2]); positions outside are clamped to the border cells."""
        pos = np.asarray(positions, dtype=np.float64)
        cx = np.clip(np.floor((pos[:, 0] - self.x0) / self.cell_size_m), 0, self.nx - 1).astype(np.int64)
        cy = np.clip(np.floor((pos[:, 1] - self.y0) / self.cell_size_m), 0, self.ny - 1).astype(np.int64)
        return cy * self.nx + cx

    def order(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cell-major order of tiles: (perm int64[n], offsets int64[n_cells + 1]).

        ``positions[perm]`` puts the tiles of cell c at rows ``offsets[c]:offsets[c + 1]`` (stable within a cell).
        """
        cells = self.cell_ids(positions)
        perm = np.argsort(cells, kind="stable").astype(np.int64)
        counts = np.bincount(cells, minlength=self.n_cells)
        offsets = np.zeros(self.n_cells + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return perm, offsets

    def to_dict(self) -> dict:
        return {"x0": self.x0, "y0": self.y0, "cell_size_m": self.cell_size_m, "nx": self.nx, "ny": self.ny}

    @classmethod
    def from_dict(cls, d: dict) -> "SpatialGrid":
        """Inverse of :meth:`to_dict`; unknown or missing keys are rejected."""
        return strict_from_dict(cls, d, "spatial grid")


# ----------------------------------------------------------------------------------------------------------------
# float16 -> float32


def _numpy_f16_to_f32(block: np.ndarray) -> np.ndarray:
    return np.asarray(block, dtype=np.float32)


def _numpy_f16_to_f32_into(block: np.ndarray, out: np.ndarray) -> None:
    np.copyto(out, block, casting="safe")


def _cv_into(op):
    """An OpenCV conversion ``op(src, scalar, dst=, dtype=CV_32F)`` as ``(block, out) -> None``.

    ``cv2.add(x, -0.0)`` (x + -0.0 is exactly x in IEEE arithmetic, -0.0 included) runs OpenCV's vectorised
    float16 -> float32 conversion loop, about 2.4x faster than ``cv2.multiply(x, 1.0)`` (~37 vs ~90 us per 1k rows
    of d = 256 on the benchmark VM).
    """

    def convert_into(block: np.ndarray, out: np.ndarray) -> None:
        res = op(np.ascontiguousarray(block), dst=out)
        if not (res is out or np.shares_memory(res, out)):
            out[...] = res

    return convert_into


def _cv_candidates():
    import cv2

    return (
        ("cv2.add(-0.0)", _cv_into(lambda x, dst: cv2.add(x, -0.0, dst=dst, dtype=cv2.CV_32F))),
        ("cv2.multiply(1.0)", _cv_into(lambda x, dst: cv2.multiply(x, 1.0, dst=dst, dtype=cv2.CV_32F))),
    )


_converter = None  # (name, convert_into(float16[m, d], float32[m, d] out) -> None)
_converter_lock = threading.Lock()


def _get_converter():
    global _converter
    if _converter is None:
        with _converter_lock:
            if _converter is None:
                _converter = _pick_converter()
    return _converter[1]


def converter_name() -> str:
    """Which float16 -> float32 conversion this process uses (e.g. "cv2.add(-0.0)", or "numpy")."""
    _get_converter()
    return _converter[0]


def f16_to_f32(block: np.ndarray) -> np.ndarray:
    """float16[m, d] -> new float32[m, d], exact.

    numpy's float16 cast is scalar code (about 1.2 ns per element here); OpenCV's vectorised conversion is up to
    ~8x faster. The first OpenCV conversion that reproduces numpy's cast of a probe bit for bit is used (see
    :func:`_pick_converter`), numpy otherwise.
    """
    block = np.asarray(block)
    if block.ndim != 2 or block.shape[0] == 0 or block.shape[1] == 0:
        return _numpy_f16_to_f32(block)
    out = np.empty(block.shape, dtype=np.float32)
    _get_converter()(block, out)
    return out


def f16_to_f32_into(block: np.ndarray, out: np.ndarray) -> None:
    """Convert float16[m, d] into the preallocated C-contiguous float32[m, d] ``out`` (exact)."""
    if block.shape[0] == 0 or block.shape[1] == 0:
        return
    _get_converter()(block, out)


def _pick_converter():
    """(name, convert_into): the first OpenCV candidate whose output equals numpy's cast bit for bit on a probe
    holding zeros of both signs, subnormals, extremes, infinities and NaN; numpy's cast otherwise."""
    probe = np.random.default_rng(0).standard_normal((7, 33)).astype(np.float16)
    probe[0, :9] = [0.0, -0.0, 6e-8, -3e-5, 65504.0, -1.0, -65504.0, np.inf, -np.inf]
    probe[1, 0] = np.nan
    want = probe.astype(np.float32).view(np.uint32)
    try:
        candidates = _cv_candidates()
    except Exception:  # noqa: BLE001 - no usable OpenCV: the numpy path
        candidates = ()
    for name, convert_into in candidates:
        try:
            out = np.full(probe.shape, 7.0, dtype=np.float32)
            convert_into(probe, out)
            if np.array_equal(out.view(np.uint32), want):
                return name, convert_into
        except Exception:  # noqa: BLE001 - any OpenCV problem just means the next candidate
            continue
    return "numpy", _numpy_f16_to_f32_into


class CellCache:
    """Bounded LRU cache of float32 copies of cells' embedding rows, in one preallocated arena (thread-safe).

    Fresh anonymous memory costs a page fault per 4 KiB on first write (about 0.6 ms per MiB on the benchmark VM,
    more than the float16 conversion itself), so converted cells go into fixed-size slots of one arena that is
    reserved once (pages are faulted on first use, with transparent huge pages where the kernel allows) and reused
    after eviction, instead of a new array per cell.

    A slot holds either the whole cell in row order (:meth:`get`, or :meth:`get_rows` without a row mask), or only
    the rows asked for so far (:meth:`get_rows` with a mask: the cells crossing a prior circle's edge), packed in the
    order they were converted, with their local row indices; later lookups convert only rows not yet held and append
    them. Converting a boundary cell's inside rows only is what makes the first query in a new area cheap (the
    float16 -> float32 conversion is memory-bandwidth bound, ~90 us per 1k rows of d = 256).

    Args:
        embeddings: float16[n, d] (typically memory-mapped), cell-major.
        offsets: int64[n_cells + 1] CSR row offsets of the cells.
        max_bytes: bound on the float32 bytes reserved (a slot per cell, sized for the largest cell); 0 disables
            caching (every lookup converts).

    Counters: ``hits`` (lookups that converted nothing), ``misses`` (lookups that converted rows), ``rows_converted``
    (float16 rows converted in all).

    :meth:`get` / :meth:`get_rows` return views into the arena: hold :attr:`lock` while using them (another thread's
    lookup may reuse the slot once the lock is released).
    """

    def __init__(self, embeddings: np.ndarray, offsets: np.ndarray, max_bytes: int) -> None:
        self._emb = embeddings
        self._offsets = offsets
        self._dim = int(embeddings.shape[1])
        counts = np.diff(offsets)
        self._slot_rows = int(counts.max()) if counts.size else 0
        self._slot_bytes = max(1, self._slot_rows * self._dim * 4)
        self.slots = int(max(0, int(max_bytes)) // self._slot_bytes) if self._slot_rows else 0
        self.max_bytes = self.slots * self._slot_bytes
        self._arena = None
        self._free = list(range(self.slots - 1, -1, -1))
        self._lru: OrderedDict[int, int] = OrderedDict()  # cell -> slot
        # Per slot: rows held (int) and whether they are the whole cell in row order; for packed slots the local
        # row index of each held row (int32[slots, slot_rows]) and which rows are held (bool[slots, slot_rows]).
        self._held = [0] * self.slots
        self._ordered = [True] * self.slots
        self._row_idx = None
        self._row_mask = None
        self._scratch = None  # float16[slot_rows, d] gather buffer
        self.lock = threading.RLock()
        self.hits = 0
        self.misses = 0
        self.rows_converted = 0

    @property
    def nbytes(self) -> int:
        """float32 bytes held by cached rows."""
        with self.lock:
            return sum(self._held[slot] for slot in self._lru.values()) * self._dim * 4

    def clear(self) -> None:
        """Forget every cached cell (the arena stays allocated for reuse)."""
        with self.lock:
            self._lru.clear()
            self._free = list(range(self.slots - 1, -1, -1))
            self._held = [0] * self.slots
            self._ordered = [True] * self.slots

    def _arena_view(self) -> np.ndarray:
        if self._arena is None:
            import mmap

            buf = mmap.mmap(-1, self.slots * self._slot_bytes)
            try:
                buf.madvise(mmap.MADV_HUGEPAGE)
            except (AttributeError, OSError, ValueError):  # not Linux, or no THP: plain pages
                pass
            self._arena = np.frombuffer(buf, dtype=np.float32).reshape(self.slots, self._slot_rows, self._dim)
            self._row_idx = np.zeros((self.slots, self._slot_rows), dtype=np.int32)
            self._row_mask = np.zeros((self.slots, self._slot_rows), dtype=bool)
            self._scratch = np.empty((self._slot_rows, self._dim), dtype=np.float16)
        return self._arena

    def _new_slot(self, cell: int) -> int:
        if self._free:
            slot = self._free.pop()
        else:
            _, slot = self._lru.popitem(last=False)
        self._lru[cell] = slot
        return slot

    def _convert_rows(self, start: int, rows: np.ndarray, out: np.ndarray) -> None:
        """Convert float16 rows ``start + rows`` (int[r] ascending local indices) into float32[r, d] ``out``."""
        r = rows.size
        self.rows_converted += r
        a, b = int(rows[0]), int(rows[-1]) + 1
        if b - a == r:  # one contiguous run: no gather
            f16_to_f32_into(self._emb[start + a:start + b], out)
            return
        if self._scratch is None:
            block = np.take(self._emb[start:start + b], rows, axis=0)
        else:
            block = self._scratch[:r]
            np.take(self._emb[start + a:start + b], rows - a, axis=0, out=block)
        f16_to_f32_into(block, out)

    def get(self, cell: int) -> np.ndarray:
        """float32[m, d] rows of ``cell`` in row order (a view into the arena when cached: use it while holding
        :attr:`lock`). A cell held only in part (packed) is converted again whole."""
        start, end = int(self._offsets[cell]), int(self._offsets[cell + 1])
        m = end - start
        with self.lock:
            slot = self._lru.get(cell)
            if slot is not None and self._ordered[slot]:
                self._lru.move_to_end(cell)
                self.hits += 1
                return self._arena[slot, :m]
            self.misses += 1
            self.rows_converted += m
            if self.slots == 0:
                return f16_to_f32(self._emb[start:end])
            arena = self._arena_view()
            if slot is None:
                slot = self._new_slot(cell)
            else:
                self._lru.move_to_end(cell)
            out = arena[slot, :m]
            f16_to_f32_into(self._emb[start:end], out)
            self._held[slot], self._ordered[slot] = m, True
            return out

    def get_rows(self, cell: int, inside: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """float32 rows of ``cell`` covering at least the rows ``inside`` (bool[m]; None: every row).

        Returns ``(block float32[h, d], rows)``: ``rows`` None means ``block`` is the whole cell in row order;
        otherwise int32[h] local row index (0..m-1) of each block row, in no particular order (a superset of the
        rows asked for: rows converted for earlier lookups are kept). Only rows not held yet are converted.
        The block is a view into the arena when cached: use it while holding :attr:`lock`.
        """
        start, end = int(self._offsets[cell]), int(self._offsets[cell + 1])
        m = end - start
        with self.lock:
            slot = self._lru.get(cell)
            if slot is not None and self._ordered[slot]:
                self._lru.move_to_end(cell)
                self.hits += 1
                return self._arena[slot, :m], None
            if slot is None and (inside is None or self.slots == 0):
                if inside is None or inside.all():
                    return self.get(cell), None
                rows = np.flatnonzero(inside).astype(np.int32)
                self.misses += 1
                out = np.empty((rows.size, self._dim), dtype=np.float32)
                self._convert_rows(start, rows, out)
                return out, rows
            arena = self._arena_view()
            if slot is None:
                slot = self._new_slot(cell)
                self._held[slot], self._ordered[slot] = 0, False
                self._row_mask[slot, :m] = False
            else:
                self._lru.move_to_end(cell)
            held = self._held[slot]
            mask = self._row_mask[slot, :m]
            need = ~mask if inside is None else inside & ~mask
            rows = np.flatnonzero(need)
            if rows.size:
                if held == 0 and rows.size < m:
                    # Gathering scattered rows costs about half as much per row as converting them (memcpy vs
                    # conversion), so a contiguous span (or the whole cell, kept in row order) is converted
                    # instead when it holds at most GATHER_SPAN_RATIO times the rows asked for.
                    span = int(rows[-1]) + 1 - int(rows[0])
                    if m <= GATHER_SPAN_RATIO * rows.size:
                        rows = np.arange(m)
                    elif span <= GATHER_SPAN_RATIO * rows.size:
                        rows = np.arange(int(rows[0]), int(rows[-1]) + 1)
                if held == 0 and rows.size == m:  # the whole cell after all: keep it in row order
                    f16_to_f32_into(self._emb[start:end], arena[slot, :m])
                    self.rows_converted += m
                    self.misses += 1
                    self._held[slot], self._ordered[slot] = m, True
                    return arena[slot, :m], None
                self.misses += 1
                self._convert_rows(start, rows, arena[slot, held:held + rows.size])
                self._row_idx[slot, held:held + rows.size] = rows
                mask[rows] = True
                held += rows.size
                self._held[slot] = held
            else:
                self.hits += 1
            return arena[slot, :held], self._row_idx[slot, :held]


# ----------------------------------------------------------------------------------------------------------------
# query validation and top-k


def check_queries(queries, dim: int) -> np.ndarray:
    """float[d] or float[n, d] -> float32[n, d] C-contiguous unit rows; QueryError on wrong shape, NaN, zero rows."""
    try:
        q = np.asarray(queries, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise QueryError(f"queries must be a float array [n, {dim}], got {type(queries).__name__}") from exc
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2:
        raise QueryError(f"queries must be float[n, {dim}] (or one float[{dim}]), got shape {list(q.shape)}")
    if q.shape[1] != dim:
        raise QueryError(
            f"query dimension {q.shape[1]} does not match the map's embedding dimension {dim}; "
            "embed queries with the encoder that built the map (see `skyfix maps info`)"
        )
    if q.shape[0] == 0:
        raise QueryError(f"no queries: got shape {list(q.shape)}, expected at least one row of {dim} values")
    if not np.all(np.isfinite(q)):
        bad = np.flatnonzero(~np.all(np.isfinite(q), axis=1))
        raise QueryError(f"queries contain NaN or infinite values (rows {bad[:10].tolist()})")
    norms = np.linalg.norm(q, axis=1)
    if np.any(norms < 1e-12):
        raise QueryError(f"query rows {np.flatnonzero(norms < 1e-12)[:10].tolist()} are all zeros: no direction to compare")
    return np.ascontiguousarray(q / norms[:, None], dtype=np.float32)


def check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise QueryError(f"k must be a positive integer (number of results per query), got {k!r}")
    return int(k)


def check_prior(prior) -> tuple[float, float, float] | None:
    """None or (x, y, radius_m) local metres -> validated floats."""
    if prior is None:
        return None
    try:
        x, y, r = (float(v) for v in prior)
    except (TypeError, ValueError) as exc:
        raise QueryError(f"a prior must be (x, y, radius_m) in local metres, got {prior!r}") from exc
    if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(r)):
        raise QueryError(f"prior values must be finite, got x={x}, y={y}, radius_m={r}")
    if r <= 0:
        raise QueryError(f"prior radius_m must be > 0 metres, got {r}")
    return x, y, r


def topk_rows(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` per row, ordered by score descending then id ascending (a total order, so chunked merges agree).

    Args:
        scores: float32[nq, m].
        ids: int64[m] (shared by all rows) or int64[nq, m].
        k: results per row; rows are padded with score -inf and id -1 when m < k.

    Returns:
        (float32[nq, k], int64[nq, k]).
    """
    nq, m = scores.shape
    kk = min(k, m)
    ids2 = np.broadcast_to(ids, scores.shape) if ids.ndim == 1 else ids
    if kk == 0:
        sc = np.zeros((nq, 0), dtype=np.float32)
        ic = np.zeros((nq, 0), dtype=np.int64)
    elif kk < m:
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        sc = np.take_along_axis(scores, part, axis=1)
        ic = np.take_along_axis(ids2, part, axis=1)
        thr = sc.min(axis=1)
        n_ge = np.count_nonzero(scores >= thr[:, None], axis=1)
        for r in np.flatnonzero(n_ge > kk):  # ties at the cut: keep the smallest ids among equal scores
            cand = np.flatnonzero(scores[r] >= thr[r])
            order = np.lexsort((ids2[r, cand], -scores[r, cand]))[:kk]
            sc[r], ic[r] = scores[r, cand[order]], ids2[r, cand[order]]
    else:
        sc, ic = scores, ids2
    order = np.lexsort((ic, -sc), axis=-1)
    sc = np.take_along_axis(sc, order, axis=1).astype(np.float32, copy=False)
    ic = np.take_along_axis(ic, order, axis=1).astype(np.int64, copy=False)
    if kk < k:
        sc = np.concatenate([sc, np.full((nq, k - kk), -np.inf, dtype=np.float32)], axis=1)
        ic = np.concatenate([ic, np.full((nq, k - kk), -1, dtype=np.int64)], axis=1)
    return np.ascontiguousarray(sc), np.ascontiguousarray(ic)


# ----------------------------------------------------------------------------------------------------------------
# HNSW handle


class HnswHandle:
    """An hnswlib index loaded eagerly, lazily or in a background thread.

    Modes: ``"eager"`` loads now; ``"lazy"`` loads on first use; ``"background"`` starts a daemon thread (hnswlib
    0.8's ``load_index`` holds the GIL, so every Python thread stalls while it reads: measured, a background load
    delays the caller as much as an eager one; the mode is kept for a future hnswlib that releases the GIL);
    ``"off"`` never loads (whole-map queries then run exact). ``loader`` is a no-argument callable returning the
    index. While a load is pending, :attr:`ready` is False; prior-scoped search never waits for it.
    """

    MODES = ("eager", "background", "lazy", "off")

    def __init__(self, loader, mode: str = "eager") -> None:
        if mode not in self.MODES:
            raise MapError(f"hnsw load mode must be one of {self.MODES}, got {mode!r}")
        self.mode = mode
        self._loader = loader
        self._index = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._ef = None
        self._thread = None
        if mode == "eager":
            self._load()
        elif mode == "background":
            self._thread = threading.Thread(target=self._load, name="skyfix-hnsw-load", daemon=True)
            self._thread.start()
        elif mode == "off":
            self._done.set()

    def _load(self) -> None:
        try:
            self._index = self._loader()
        except BaseException as exc:  # noqa: BLE001 - re-raised to the caller that needs the index
            self._error = exc
        finally:
            self._done.set()
        if self.mode == "eager" and self._error is not None:
            raise self._error

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    @property
    def ready(self) -> bool:
        """True when the index is loaded (a failed or disabled load is not ready)."""
        return self._done.is_set() and self._index is not None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a background load ends (or ``timeout`` seconds); True when the index is ready."""
        if self.mode == "lazy" and not self._done.is_set():
            with self._lock:
                if not self._done.is_set():
                    self._load()
        self._done.wait(timeout)
        if self._error is not None:
            raise self._error
        return self.ready

    def get(self):
        """The loaded index (waiting for / triggering the load), or None when disabled."""
        if self.mode == "off":
            return None
        self.wait()
        return self._index

    def knn(self, queries: np.ndarray, k: int, ef: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores float32[nq, k], ids int64[nq, k]) from the index; ``ef`` >= k."""
        index = self.get()
        with self._lock:
            if self._ef != ef:
                index.set_ef(int(ef))
                self._ef = ef
        labels, dist = index.knn_query(queries, k=k)
        return (1.0 - dist).astype(np.float32), labels.astype(np.int64)


# ----------------------------------------------------------------------------------------------------------------
# the searcher


class Searcher:
    """Exact prior-scoped and HNSW search over one map's tiles.

    Args:
        embeddings: float16[n, d] unit rows, cell-major (memory-mapped is fine).
        positions: float64[n, 2] tile centres, local metres, same order.
        grid: the spatial grid; ``offsets`` int64[grid.n_cells + 1] its CSR row offsets.
        bounds: (x_min, y_min, x_max, y_max) local metres of the map (tile footprints).
        hnsw: the :class:`HnswHandle` of the index (labels = tile ids).
        duplicates: int64[m, 2] rows (representative id, duplicate id), sorted: tiles whose embedding is identical
            to an earlier tile's. The HNSW index holds only representatives (exact duplicates degrade HNSW graphs:
            textureless water or roofs give identical descriptors); results are expanded with their duplicates.
        cache_bytes: bound of the float32 cell cache.
        describe_point: optional callable (x, y) -> str used in error messages (e.g. adds lat/lon).
        projection: None (the index holds the d-dimensional embeddings) or float32[p, d] orthonormal rows: the index
            holds ``embeddings @ projection.T`` and its candidates are re-ranked exactly (see the module docstring).
    """

    def __init__(self, embeddings, positions, grid: SpatialGrid, offsets, bounds, hnsw: HnswHandle,
                 duplicates=None, cache_bytes: int = 256 << 20, describe_point=None, projection=None) -> None:
        self.embeddings = embeddings
        self.positions = positions
        self.grid = grid
        self.offsets = offsets
        self.bounds = tuple(float(b) for b in bounds)
        self.hnsw = hnsw
        self.cache = CellCache(embeddings, offsets, cache_bytes)
        self.n, self.dim = int(embeddings.shape[0]), int(embeddings.shape[1])
        if projection is not None:
            projection = np.ascontiguousarray(projection, dtype=np.float32)
            if projection.ndim != 2 or projection.shape[1] != self.dim or not 1 <= projection.shape[0] <= self.dim:
                raise MapError(f"the HNSW projection must be float32[p, {self.dim}] with 1 <= p <= {self.dim}, "
                               f"got shape {list(projection.shape)}")
        self.projection = projection
        self.hnsw_dim = self.dim if projection is None else int(projection.shape[0])
        dups = np.zeros((0, 2), np.int64) if duplicates is None else np.asarray(duplicates, dtype=np.int64)
        self._dup_rep, self._dup_member = dups[:, 0], dups[:, 1]
        self.hnsw_elements = self.n - int(dups.shape[0])
        # Representatives of duplicate groups are scored exactly with every HNSW query: a group is typically the
        # constant descriptor of textureless tiles, nearly orthogonal to everything else, so the graph search has no
        # gradient towards it and would miss it (measured on real imagery); a few rows make that exact.
        self._group_reps = np.unique(self._dup_rep)
        self._group_emb = f16_to_f32(embeddings[self._group_reps]) if self._group_reps.size else None
        self._counts = np.diff(offsets)
        self._describe = describe_point or (lambda x, y: f"x={x:.1f} m, y={y:.1f} m")
        cs = grid.cell_size_m
        cx, cy = np.arange(grid.nx), np.arange(grid.ny)
        self._cell_x0 = grid.x0 + cx * cs
        self._cell_y0 = grid.y0 + cy * cs
        self.last_path = None  # "exact", "hnsw" or "hnsw+filter" (for tests and benchmarks)

    # -- scope -----------------------------------------------------------------------------------------------------

    def check_overlap(self, prior) -> None:
        """Raise :class:`PriorOutsideMapError` when the prior circle (x, y, radius_m), validated, misses the map's
        tiles entirely (what :meth:`search` refuses; other searchers of the same map, e.g. ``runtime.gpu``, too)."""
        x, y, r = prior
        x0, y0, x1, y1 = self.bounds
        dx = max(x0 - x, 0.0, x - x1)
        dy = max(y0 - y, 0.0, y - y1)
        if dx * dx + dy * dy > r * r:
            raise PriorOutsideMapError(
                f"the prior circle (centre {self._describe(x, y)}, radius {r:.1f} m) lies entirely outside the map, "
                f"whose tiles cover x [{x0:.1f}, {x1:.1f}] m, y [{y0:.1f}, {y1:.1f}] m "
                f"({self._describe(x0, y0)} to {self._describe(x1, y1)}), "
                f"{math.hypot(dx, dy) - r:.1f} m beyond the circle's edge; check the GPS prior or use a map of this area"
            )

    def cells_in(self, prior) -> tuple[np.ndarray, np.ndarray]:
        """(cell ids int64[c], fully_inside bool[c]) of non-empty cells touching the prior's circle (all if None)."""
        g = self.grid
        if prior is None:
            cells = np.flatnonzero(self._counts > 0).astype(np.int64)
            return cells, np.ones(cells.size, dtype=bool)
        x, y, r = prior
        cs = g.cell_size_m
        ix0 = max(int(math.floor((x - r - g.x0) / cs)), 0)
        ix1 = min(int(math.floor((x + r - g.x0) / cs)), g.nx - 1)
        iy0 = max(int(math.floor((y - r - g.y0) / cs)), 0)
        iy1 = min(int(math.floor((y + r - g.y0) / cs)), g.ny - 1)
        if ix1 < ix0 or iy1 < iy0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
        cx0 = self._cell_x0[ix0:ix1 + 1]
        cy0 = self._cell_y0[iy0:iy1 + 1]
        dx_near = np.maximum(np.maximum(cx0 - x, 0.0), x - (cx0 + cs))
        dy_near = np.maximum(np.maximum(cy0 - y, 0.0), y - (cy0 + cs))
        dx_far = np.maximum(np.abs(cx0 - x), np.abs(cx0 + cs - x))
        dy_far = np.maximum(np.abs(cy0 - y), np.abs(cy0 + cs - y))
        near = dy_near[:, None] ** 2 + dx_near[None, :] ** 2 <= r * r
        full = dy_far[:, None] ** 2 + dx_far[None, :] ** 2 <= r * r
        ids = (np.arange(iy0, iy1 + 1)[:, None] * g.nx + np.arange(ix0, ix1 + 1)[None, :])
        keep = near & (self._counts[ids] > 0)
        return ids[keep].astype(np.int64), full[keep]

    def scope_ids(self, prior) -> np.ndarray:
        """int64[m] ids of the tiles whose centre lies inside the prior's circle (all tiles if None), ascending."""
        prior = check_prior(prior)
        cells, full = self.cells_in(prior)
        parts = []
        for c, f in zip(cells.tolist(), full.tolist()):
            s, e = int(self.offsets[c]), int(self.offsets[c + 1])
            ids = np.arange(s, e, dtype=np.int64)
            if not f:
                ids = ids[self._inside(s, e, prior)]
            parts.append(ids)
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)

    def _inside(self, s: int, e: int, prior) -> np.ndarray:
        x, y, r = prior
        p = self.positions[s:e]
        return (p[:, 0] - x) ** 2 + (p[:, 1] - y) ** 2 <= r * r

    # -- search ----------------------------------------------------------------------------------------------------

    def search(self, queries, k: int = 10, prior=None, *, exact: bool = False, ef: int | None = None):
        """Top-k tiles for each query.

        Args:
            queries: float[n, d] (or float[d]) embeddings; normalised here.
            k: results per query.
            prior: None (whole map) or (x, y, radius_m) local metres: only tiles whose centre lies in the circle.
            exact: force exact search (never HNSW).
            ef: HNSW search breadth (default max(64, 4 k)).

        Returns:
            (scores float32[n, k] cosine similarity descending, ids int64[n, k]); padded with -inf / -1.
        """
        k = check_k(k)
        q = check_queries(queries, self.dim)
        prior = check_prior(prior)
        if ef is not None and (isinstance(ef, bool) or not isinstance(ef, (int, np.integer)) or ef <= 0):
            raise QueryError(f"ef must be a positive integer, got {ef!r}")
        if self.n == 0:
            return topk_rows(np.zeros((q.shape[0], 0), np.float32), np.zeros(0, np.int64), k)
        if prior is not None:
            self.check_overlap(prior)
        use_hnsw = not exact and self.hnsw.enabled
        if prior is None:
            if use_hnsw:
                return self._hnsw(q, k, ef)
            return self._exact(q, k, None)
        cells, full = self.cells_in(prior)
        upper = int(self._counts[cells].sum())
        # A large circle: HNSW with extra neighbours, dropping those outside; a background load in progress never
        # blocks a prior-scoped query (exact meanwhile); a lazy index is loaded now.
        if use_hnsw and upper > HNSW_SCOPE_FRACTION * self.n and (self.hnsw.ready or self.hnsw.mode == "lazy"):
            inside = upper - sum(
                int(np.count_nonzero(~self._inside(int(self.offsets[c]), int(self.offsets[c + 1]), prior)))
                for c in cells[~full].tolist()
            )
            if inside > HNSW_SCOPE_FRACTION * self.n:
                return self._hnsw_in_circle(q, k, ef, prior, inside)
        return self._exact(q, k, prior, cells, full)

    def _ef(self, k: int, ef: int | None) -> int:
        return max(int(ef or 0), 64, 4 * k, k)

    def _graph_knn(self, q: np.ndarray, kq: int, ef: int | None):
        """Top ``kq`` of the HNSW graph: (float32[nq, kq] cosine, int64[nq, kq]) of representatives.

        Without a projection, hnswlib's own scores. With one, ``max(4 kq, ef or 64, 64)`` candidates (capped at the
        indexed tiles) of the projected queries, re-ranked exactly: float16 rows gathered, converted to float32 and
        dotted with the full-dimension queries (never a float16 product); hnswlib's padding (-1) is dropped.
        """
        if self.projection is None:
            return self.hnsw.knn(q, kq, self._ef(kq, ef))
        kc = min(max(4 * kq, int(ef or 64), 64), self.hnsw_elements)
        _, cand = self.hnsw.knn(np.ascontiguousarray(q @ self.projection.T), kc, max(kc, int(ef or 0)))
        valid = cand >= 0
        cand = np.where(valid, cand, -1)
        sc = np.full(cand.shape, -np.inf, dtype=np.float32)
        step = max(1, _RERANK_FLOATS // max(1, kc * self.dim))  # queries per gather (bounds the float32 block)
        for s in range(0, q.shape[0], step):
            c = cand[s:s + step]
            uniq, inv = np.unique(np.maximum(c, 0), return_inverse=True)
            rows = f16_to_f32(self.embeddings[uniq])  # float32[u, d], ascending ids (file order)
            block = rows[np.ravel(inv).reshape(c.shape)]  # float32[m, kc, d]
            sc[s:s + step] = np.matmul(block, q[s:s + step, :, None])[..., 0]
        sc[~valid] = -np.inf
        return topk_rows(sc, cand, kq)

    def _knn(self, q: np.ndarray, want: int, ef: int | None):
        """HNSW neighbours expanded with duplicates: (float32[nq, want], int64[nq, want]) padded with -inf / -1."""
        kq = min(want, self.hnsw_elements)
        scores, ids = self._graph_knn(q, kq, ef)
        nq = q.shape[0]
        if self._group_emb is not None:
            g_scores = q @ self._group_emb.T  # float32[nq, groups]
            g_scores[(ids[:, :, None] == self._group_reps[None, None, :]).any(axis=1)] = -np.inf  # already found
            scores, ids = topk_rows(np.concatenate([scores, g_scores], axis=1),
                                    np.concatenate([ids, np.broadcast_to(self._group_reps, g_scores.shape)], axis=1), kq)
        out_s = np.full((nq, want), -np.inf, dtype=np.float32)
        out_i = np.full((nq, want), -1, dtype=np.int64)
        out_s[:, :kq], out_i[:, :kq] = scores, ids
        if self._dup_rep.size == 0:
            return out_s, out_i
        has = np.isin(ids, self._dup_rep)
        for row in np.flatnonzero(has.any(axis=1)):
            row_s, row_i = [], []
            for j in range(kq):
                row_s.append(scores[row, j])
                row_i.append(ids[row, j])
                if has[row, j]:
                    a, b = np.searchsorted(self._dup_rep, ids[row, j], "left"), np.searchsorted(self._dup_rep, ids[row, j], "right")
                    row_i.extend(self._dup_member[a:b].tolist())
                    row_s.extend([scores[row, j]] * (b - a))
                if len(row_i) >= want:
                    break
            m = min(want, len(row_i))
            out_s[row, :m], out_i[row, :m] = row_s[:m], row_i[:m]
        return out_s, out_i

    def _hnsw(self, q: np.ndarray, k: int, ef: int | None):
        try:
            scores, ids = self._knn(q, k, ef)
        except RuntimeError:  # hnswlib could not return kq results (tiny/degenerate graph): exact is always right
            return self._exact(q, k, None)
        self.last_path = "hnsw"
        return scores, ids

    def _hnsw_in_circle(self, q: np.ndarray, k: int, ef: int | None, prior, inside: int):
        x, y, r = prior
        want = min(k, inside)
        kq = min(self.n, int(math.ceil(2.0 * k * self.n / max(inside, 1))) + 8)
        try:
            scores, ids = self._knn(q, kq, ef)
        except RuntimeError:
            return self._exact(q, k, prior)
        p = self.positions[np.maximum(ids, 0)]
        ok = ((p[..., 0] - x) ** 2 + (p[..., 1] - y) ** 2 <= r * r) & (ids >= 0)
        out_s = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
        out_i = np.full((q.shape[0], k), -1, dtype=np.int64)
        short = []
        for row in range(q.shape[0]):
            sel = np.flatnonzero(ok[row])[:k]
            if sel.size < want:
                short.append(row)
                continue
            out_s[row, :sel.size], out_i[row, :sel.size] = scores[row, sel], ids[row, sel]
        if short:
            es, ei = self._exact(q[short], k, prior)
            out_s[short], out_i[short] = es, ei
        self.last_path = "hnsw+filter" if not short else "hnsw+filter+exact"
        return out_s, out_i

    def _exact(self, q: np.ndarray, k: int, prior, cells=None, full=None):
        if cells is None:
            cells, full = self.cells_in(prior)
        nq = q.shape[0]
        best_s = np.zeros((nq, 0), dtype=np.float32)
        best_i = np.zeros((nq, 0), dtype=np.int64)
        pend_s, pend_i, pend_cols = [], [], 0
        for c, f in zip(cells.tolist(), full.tolist()):
            s, e = int(self.offsets[c]), int(self.offsets[c + 1])
            inside = None
            if not f:  # a cell crossing the circle's edge: only its rows inside are converted and scored
                inside = self._inside(s, e, prior)
                if not inside.any():
                    continue
                if inside.all():
                    inside = None
            with self.cache.lock:  # the cached block is a view into a reusable slot
                block, rows = self.cache.get_rows(c, inside)
                sc = q @ block.T  # float32[nq, h]
            if rows is None:  # the whole cell, in row order
                ids = np.arange(s, e, dtype=np.int64)
                if inside is not None:
                    sc, ids = sc[:, inside], ids[inside]
            else:  # packed rows: a superset of those inside
                ids = rows + np.int64(s)
                if inside is not None:
                    keep = inside[rows]
                    if not keep.all():
                        sc, ids = sc[:, keep], ids[keep]
            pend_s.append(sc)
            pend_i.append(ids)
            pend_cols += ids.size
            if pend_cols >= _CHUNK_COLUMNS:
                best_s, best_i = self._merge(best_s, best_i, pend_s, pend_i, k)
                pend_s, pend_i, pend_cols = [], [], 0
        if pend_s or best_s.shape[1] == 0:
            best_s, best_i = self._merge(best_s, best_i, pend_s, pend_i, k)
        self.last_path = "exact"
        if best_s.shape[1] < k:
            best_s, best_i = topk_rows(best_s, best_i, k)  # pads
        return best_s, best_i

    @staticmethod
    def _merge(best_s, best_i, pend_s, pend_i, k):
        nq = best_s.shape[0]
        if not pend_s:
            return topk_rows(best_s, best_i, k) if best_s.shape[1] else (best_s, best_i)
        s = np.concatenate(pend_s, axis=1) if len(pend_s) > 1 else pend_s[0]
        i = np.concatenate(pend_i) if len(pend_i) > 1 else pend_i[0]
        if best_s.shape[1]:
            s = np.concatenate([best_s, s], axis=1)
            i = np.concatenate([best_i, np.broadcast_to(i, (nq, i.size))], axis=1)
        s, i = topk_rows(s, i, k)
        valid = i[0] >= 0 if nq else np.zeros(0, bool)
        if nq and not valid.all():  # keep only real results in the running best (padding is re-added at the end)
            n_valid = int(valid.sum())
            s, i = s[:, :n_valid], i[:, :n_valid]
        return s, i
