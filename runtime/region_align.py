"""Fine alignment over a region map: each candidate is aligned against the shard whose core holds it.

A region's imagery is per shard (:meth:`maps.region.RegionMap.shard_imagery`: grey, one byte per pixel, decoded in
the shard loader's thread) and reaches ``imagery_margin_m`` beyond each core, so the search window of a candidate
in a core lies inside that shard's imagery and the result equals a single map's. One
:class:`~runtime.align.FineAligner` per shard in memory; those of evicted shards are dropped.
"""

from __future__ import annotations

import numpy as np

from .align import AlignResult, FineAligner, _wrap_pi


class ShardedAligner:
    """The :class:`~runtime.align.FineAligner` interface (``align``, ``search_m``, ``gsd``) over a region's shards.

    Args:
        region: the :class:`maps.region.RegionMap`.
        **kwargs: :class:`~runtime.align.FineAligner` settings, the same for every shard.
    """

    def __init__(self, region, **kwargs) -> None:
        self.region = region
        self.kwargs = dict(kwargs)
        self.search_m = float(self.kwargs.get("search_m", 16.0))
        self.gsd = float(region.tile_grid.gsd)
        self._aligners: dict[str, tuple[object, FineAligner]] = {}  # shard id -> (its imagery, aligner)

    def _aligner(self, sid: str, imagery) -> FineAligner:
        have = self._aligners.get(sid)
        if have is None or have[0] is not imagery:
            have = (imagery, FineAligner(imagery, **self.kwargs))
            self._aligners[sid] = have
        return have[1]

    def align(self, view, candidates) -> list:
        """:meth:`runtime.align.FineAligner.align` per candidate, each against its shard's imagery; a candidate
        over no loaded shard with imagery gets score -1 (as one outside a map's imagery)."""
        cand = FineAligner._check_candidates(candidates)
        loaded = set(self.region.loaded_ids())
        for sid in [s for s in self._aligners if s not in loaded]:
            del self._aligners[sid]  # the shard was evicted: its imagery goes with it
        out: list = [None] * len(cand)
        groups: dict[str, list[int]] = {}
        images = {}
        for i, (x, y) in enumerate(cand):
            hit = self.region.shard_imagery(float(x), float(y))
            if hit is None:
                out[i] = AlignResult(float(x), float(y), _wrap_pi(float(view.yaw_rad)), -1.0, self.search_m, 1.0)
                continue
            groups.setdefault(hit[0], []).append(i)
            images[hit[0]] = hit[1]
        for sid, idx in groups.items():
            res = self._aligner(sid, images[sid]).align(view, np.asarray(cand[idx]))
            for i, r in zip(idx, res):
                out[i] = r
        return out
