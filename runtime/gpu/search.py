"""Exact prior-scoped search over a map's embeddings held on a torch device.

The map's float16 embeddings (``MapPackage.embeddings``, float16[n, d] unit rows) are uploaded once. Per query batch:
the queries are checked and normalised as ``maps.search`` does (``check_queries``/``check_k``/``check_prior``, and a
prior that misses the map raises :class:`maps.errors.PriorOutsideMapError` as ``MapPackage.search`` does); the tile
ids in the prior's circle come from ``MapPackage.scope_ids`` (the map's own spatial grid: one implementation of the
scope); those rows are gathered on the device, converted to float32 and scored against the float32 queries
(``q @ e.T``, full float32: TF32 off), and the top k are taken there. Only the k best (plus, rarely, the tied
scores at the cut) come back, and their final order is ``maps.search.topk_rows``'s: score descending, then tile id
ascending -- the order of the CPU's exact search, ties included (identical embeddings, e.g. textureless water, give
identical scores and the smallest ids win in both).

Parity with ``MapPackage.search(..., prior=scope, exact=True)``: the same ids, scores within a few 1e-7 (float32
products summed in another order). Without a prior the whole map is scored (the CPU path answers with HNSW then;
compare with ``exact=True``).
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np

from maps.search import check_k, check_prior, check_queries, topk_rows

from . import ieee_fp32, import_torch

__all__ = ["TorchSearcher"]

#: float32 values of gathered embeddings scored at once (bounds the device memory of a whole-map query: 256 MiB)
_CHUNK_FLOATS = 1 << 26


class TorchSearcher:
    """Exact search of a :class:`maps.package.MapPackage` on a torch device.

    Args:
        package: the map (its ``embeddings`` float16[n, d] go to the device once: 2 d bytes per tile).
        device: the ``torch.device`` (or its name).
        clock: optional :class:`runtime.gpu.timing.StageClock` (stage ``"search"``).
    """

    def __init__(self, package, device="cpu", clock=None) -> None:
        torch = import_torch()
        self.package = package
        self.device = torch.device(device)
        self.clock = clock
        emb = package.embeddings  # memory-mapped, read-only: copied up in chunks (no host copy of the whole)
        self.n, self.dim = int(emb.shape[0]), int(emb.shape[1])
        self._emb = torch.empty((self.n, self.dim), dtype=torch.float16, device=self.device)
        step = max(1, _CHUNK_FLOATS // max(1, self.dim))
        for s in range(0, self.n, step):
            chunk = np.array(emb[s:s + step], dtype=np.float16)  # a writable copy of one chunk
            self._emb[s:s + chunk.shape[0]] = torch.from_numpy(chunk).to(self.device)
        self._all = None  # int64[n] on the device: the ids of a whole-map query

    def search(self, queries, k: int = 10, prior=None):
        """Top-k tiles per query, exact, inside ``prior``'s circle (the whole map when None).

        Args:
            queries: float[n, d] (or [d]) embeddings of the map's encoder (normalised here).
            k: results per query.
            prior: None or (x, y, radius_m) local metres.
        Returns:
            (scores float32[n, k] cosine similarity descending, ids int64[n, k]); padded with -inf / -1 when the
            circle holds fewer than k tiles.
        Raises:
            maps.errors.QueryError: bad queries, k or prior. maps.errors.PriorOutsideMapError: the circle misses
            the map.
        """
        k = check_k(k)
        q = check_queries(queries, self.dim)
        prior = check_prior(prior)
        nq = q.shape[0]
        empty = (np.zeros((nq, 0), np.float32), np.zeros(0, np.int64))
        if self.n == 0:
            return topk_rows(*empty, k)
        if prior is not None:
            self.package.searcher.check_overlap(prior)
            scope = np.ascontiguousarray(self.package.scope_ids(prior), dtype=np.int64)
            if scope.size == 0:
                return topk_rows(*empty, k)
        else:
            scope = None
        torch = import_torch()
        ctx = self.clock.stage("search") if self.clock is not None else nullcontext()
        with ctx, ieee_fp32(torch, self.device):
            q_t = torch.from_numpy(q).to(self.device)
            if scope is None:
                if self._all is None:
                    self._all = torch.arange(self.n, dtype=torch.int64, device=self.device)
                ids_t = self._all
            else:
                ids_t = torch.from_numpy(scope).to(self.device)
            m = int(ids_t.shape[0])
            step = max(1, _CHUNK_FLOATS // max(1, self.dim))
            parts_s, parts_i = [], []
            for s in range(0, m, step):
                sel = ids_t[s:s + step]
                scores = q_t @ self._emb.index_select(0, sel).to(torch.float32).T  # float32[nq, m_chunk]
                sc, ic = _topk_with_ties(torch, scores, sel, k)
                parts_s.append(sc)
                parts_i.append(ic)
        sc = np.concatenate(parts_s, axis=1) if len(parts_s) > 1 else parts_s[0]
        ic = np.concatenate(parts_i, axis=1) if len(parts_i) > 1 else parts_i[0]
        return topk_rows(sc, ic, k)


def _topk_with_ties(torch, scores, ids, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` columns of ``scores`` float32[nq, m] (tile ids ``ids`` int64[m], ascending) per row, on the
    host as (float32[nq, c], int64[nq, c]), c >= min(k, m), such that ``topk_rows`` of them is the exact top k:
    where scores tie at the cut (more columns reach the k-th best score than k), every tied column comes back, so
    the smallest ids among them can win. Rows padded with -inf / -1 to a common width."""
    nq, m = scores.shape
    kk = min(k, m)
    vals, idx = torch.topk(scores, kk, dim=1, largest=True, sorted=True)
    n_ge = (scores >= vals[:, -1:]).sum(dim=1)
    vals_h = vals.cpu().numpy().astype(np.float32, copy=False)
    ids_h = ids[idx.reshape(-1)].reshape(nq, kk).cpu().numpy()
    n_ge_h = n_ge.cpu().numpy()
    rows = np.flatnonzero(n_ge_h > kk)
    if rows.size == 0:
        return vals_h, ids_h
    # ties at the cut (identical embeddings): these rows bring back every column that reaches the cut
    width = int(n_ge_h.max())
    out_s = np.full((nq, width), -np.inf, np.float32)
    out_i = np.full((nq, width), -1, np.int64)
    out_s[:, :kk], out_i[:, :kk] = vals_h, ids_h
    for r in rows.tolist():
        cols = torch.nonzero(scores[r] >= vals[r, -1]).reshape(-1)
        out_s[r] = -np.inf
        out_i[r] = -1
        out_s[r, :cols.numel()] = scores[r, cols].cpu().numpy()
        out_i[r, :cols.numel()] = ids[cols].cpu().numpy()
    return out_s, out_i
