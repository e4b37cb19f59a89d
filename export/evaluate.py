"""Retrieval evaluation of an encoder on held-out orthophotos (cross-view geo-localization metrics).

Protocol (:func:`evaluate_area`), for one held-out orthophoto and any ``embed(uint8[n, h, w, 3]) -> float32[n, d]``
(the learned encoder via :func:`torch_embed` / :func:`onnx_embed`, or :class:`maps.descriptors.ClassicalDescriptor`):

* queries: ``count`` rendered + rectified camera views (:func:`export.data.pairs.evaluation_pairs`, fixed seed,
  default :class:`EvalConfig`: 50-150 m height, +-15 deg tilt, heading known up to N(0, 5 deg)) drawn inside the
  held-out area (``boxes``);
* gallery: ALL map tiles of the orthophoto on the contract's :class:`maps.tiling.TileGrid` (tile = input size x
  ground resolution, stride ``stride_m``, default tile / 4), cut with :func:`maps.tiling.cut_tiles`, kept where
  >= 90 % valid imagery (:func:`maps.tiling.plan_tiles`);
  for a held-out BLOCK of an orthophoto trained elsewhere (no shared data: NEON block split) the gallery is still the
  whole orthophoto, so the training blocks' tiles act as distractors;
* ranking by inner product of unit rows;
* a query is correct at k when one of its top-k tiles has its centre within ``radius_m`` of the true position
  (default = the stride, i.e. the nearest grid tile or a direct neighbour; the nearest tile is always within
  stride * sqrt(2) / 2). ``nearest`` metrics (VIGOR "positive = nearest tile") count only the nearest tile;
* R@1, R@5 and R@1% (k = ceil(1 % of the gallery), at least 1);
* the same inside a prior scope: the gallery is restricted to tiles whose centre is within 200 m / 500 m of a
  noisy prior (true position + N(0, ``prior_sigma_m``) per axis, default 20 m, fixed seed) — the noisy-GPS protocol
  of VIGOR; R@1% there uses 1 % of the scoped gallery. With sigma 20 m the true tile lies in the 200 m scope
  unless the noise exceeds ~180 m (p < 1e-17).

:func:`evaluate` runs several areas and :func:`format_table` / :meth:`EvalReport.to_json` report them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .errors import ExportError

__all__ = ["EvaluationError", "EvalConfig", "AreaResult", "EvalReport", "retrieval_metrics", "evaluate_area",
           "evaluate", "format_table", "torch_embed", "onnx_embed", "classical_embed"]

SCOPES_M = (200.0, 500.0)


class EvaluationError(ExportError):
    """Evaluation cannot run: bad embed output, empty gallery, bad arguments, unreadable model."""


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation protocol (see the module docstring).

    Attributes:
        queries: queries per held-out area.
        seed: seed of the query poses (distinct from training seeds).
        stride_m: gallery stride, metres; None: tile / 4.
        radius_m: a tile is correct when its centre is within this of the true position, metres; None: the stride.
        prior_sigma_m: standard deviation per axis of the prior's noise, metres.
        scopes_m: prior-scope radii, metres.
        heading_noise_deg: query heading error (N(0, this)), degrees. heading_dropped: random heading instead.
        altitude_m, max_tilt_deg: query poses.
        batch: images per embed call.
    """

    queries: int = 200
    seed: int = 1_000_003
    stride_m: float | None = None
    radius_m: float | None = None
    prior_sigma_m: float = 20.0
    scopes_m: tuple = SCOPES_M
    heading_noise_deg: float = 5.0
    heading_dropped: bool = False
    altitude_m: tuple = (50.0, 150.0)
    max_tilt_deg: float = 15.0
    batch: int = 64

    def __post_init__(self) -> None:
        if isinstance(self.queries, bool) or not isinstance(self.queries, int) or self.queries < 1:
            raise EvaluationError(f"queries must be a positive integer, got {self.queries!r}")
        for key in ("stride_m", "radius_m"):
            v = getattr(self, key)
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise EvaluationError(f"{key} must be > 0 metres or None, got {v!r}")
        if not (isinstance(self.prior_sigma_m, (int, float)) and self.prior_sigma_m >= 0):
            raise EvaluationError(f"prior_sigma_m must be >= 0 metres, got {self.prior_sigma_m!r}")
        object.__setattr__(self, "scopes_m", tuple(float(s) for s in self.scopes_m))
        if any(not (s > 0) for s in self.scopes_m):
            raise EvaluationError(f"scopes_m must be radii > 0 metres, got {self.scopes_m!r}")
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise EvaluationError(f"batch must be a positive integer, got {self.batch!r}")

    def pair_config(self):
        from .data.pairs import PairConfig

        return PairConfig(altitude_m=tuple(self.altitude_m), max_tilt_deg=self.max_tilt_deg,
                          heading_noise_deg=0.0 if self.heading_dropped else self.heading_noise_deg,
                          heading_dropped=self.heading_dropped)

    @classmethod
    def from_dict(cls, d: dict) -> "EvalConfig":
        """Strict construction from a mapping: unknown keys are rejected with the list of known ones."""
        from maps.config import strict_from_dict

        return strict_from_dict(cls, d, "evaluation", error=EvaluationError)


def _embed(embed: Callable, images: np.ndarray, batch: int) -> np.ndarray:
    out = []
    for s in range(0, len(images), batch):
        e = np.asarray(embed(np.ascontiguousarray(images[s:s + batch])), dtype=np.float32)
        if e.ndim != 2 or e.shape[0] != min(batch, len(images) - s):
            raise EvaluationError(f"embed returned shape {e.shape} for {min(batch, len(images) - s)} images; "
                                  "expected float32[n, d]")
        out.append(e)
    if not out:
        raise EvaluationError("nothing to embed")
    e = np.concatenate(out)
    if not np.all(np.isfinite(e)):
        raise EvaluationError("embed returned non-finite values")
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def retrieval_metrics(sim: np.ndarray, query_pos: np.ndarray, gallery_pos: np.ndarray, radius_m: float,
                      prior: np.ndarray | None = None, scopes_m: Sequence[float] = SCOPES_M) -> dict:
    """Recall metrics from a similarity matrix.

    Args:
        sim: float[n, m] query-to-tile similarity (higher = better).
        query_pos: float[n, 2] true positions, metres. gallery_pos: float[m, 2] tile centres, metres.
        radius_m: a tile is correct when its centre is within this distance of the true position, metres.
        prior: float[n, 2] noisy prior positions for the scoped metrics (None: no scoped metrics).
        scopes_m: scope radii, metres.
    Returns:
        dict: ``R@1``, ``R@5``, ``R@1%`` (fractions in [0, 1]), ``nearest_R@1``, ``nearest_R@5``, ``nearest_R@1%``
        (VIGOR: only the nearest tile counts), ``has_positive`` (fraction of queries with a correct tile in the
        gallery), ``gallery`` (m), ``median_error_m`` (distance of the top-1 tile), and per scope
        ``scope{R}m_R@1`` etc., ``scope{R}m_gallery`` (mean scoped gallery size), ``scope{R}m_has_positive``.
    """
    sim = np.asarray(sim, np.float64)
    qp, gp = np.asarray(query_pos, np.float64), np.asarray(gallery_pos, np.float64)
    n, m = sim.shape
    if qp.shape != (n, 2) or gp.shape != (m, 2):
        raise EvaluationError(f"positions must be [n, 2] and [m, 2] for sim [{n}, {m}], got {qp.shape} and {gp.shape}")
    if m == 0 or n == 0:
        raise EvaluationError(f"empty evaluation: {n} queries, {m} gallery tiles")
    dist = np.hypot(qp[:, None, 0] - gp[None, :, 0], qp[:, None, 1] - gp[None, :, 1])  # [n, m]
    correct = dist <= radius_m
    nearest = np.zeros_like(correct)
    nearest[np.arange(n), dist.argmin(axis=1)] = True

    def recalls(valid: np.ndarray | None, prefix: str) -> dict:
        s = sim if valid is None else np.where(valid, sim, -np.inf)
        size = np.full(n, m) if valid is None else valid.sum(axis=1)
        order = np.argsort(-s, axis=1, kind="stable")
        out = {}
        for label, pos in (("", correct), ("nearest_", nearest)):
            pos_v = pos if valid is None else pos & valid
            hit_rank = np.where(np.take_along_axis(pos_v, order, axis=1), np.arange(m)[None, :], m).min(axis=1)
            for k_label, k in (("1", np.ones(n)), ("5", np.full(n, 5)),
                               ("1%", np.maximum(1, np.ceil(0.01 * size)))):
                out[f"{prefix}{label}R@{k_label}"] = float(np.mean(hit_rank < k))
        out[f"{prefix}has_positive"] = float(np.mean((correct if valid is None else correct & valid).any(axis=1)))
        out[f"{prefix}gallery"] = float(size.mean())
        return out

    res = recalls(None, "")
    res["median_error_m"] = float(np.median(dist[np.arange(n), sim.argmax(axis=1)]))
    if prior is not None:
        pr = np.asarray(prior, np.float64)
        dprior = np.hypot(pr[:, None, 0] - gp[None, :, 0], pr[:, None, 1] - gp[None, :, 1])
        for r in scopes_m:
            res.update(recalls(dprior <= r, f"scope{r:g}m_"))
    return res


@dataclass(frozen=True)
class AreaResult:
    """Metrics of one encoder on one held-out area (see :func:`retrieval_metrics`)."""

    area: str
    encoder: str
    metrics: dict
    queries: int
    gallery: int
    seconds: float


@dataclass(frozen=True)
class EvalReport:
    """Results over several areas; ``mean`` = query-weighted mean of each metric over areas."""

    results: tuple[AreaResult, ...]
    config: dict = field(default_factory=dict)

    def mean(self, encoder: str) -> dict:
        rows = [r for r in self.results if r.encoder == encoder]
        if not rows:
            return {}
        w = np.array([r.queries for r in rows], float)
        keys = rows[0].metrics.keys()
        return {k: float(np.average([r.metrics[k] for r in rows], weights=w)) for k in keys}

    def to_json(self) -> str:
        encs = list(dict.fromkeys(r.encoder for r in self.results))
        return json.dumps({"config": self.config,
                           "results": [{"area": r.area, "encoder": r.encoder, "queries": r.queries,
                                        "gallery": r.gallery, "seconds": round(r.seconds, 2), "metrics": r.metrics}
                                       for r in self.results],
                           "mean": {e: self.mean(e) for e in encs}}, indent=2)


def evaluate_area(embed: Callable, contract, ortho, *, name: str = "area", boxes=None,
                  config: EvalConfig | None = None, embed_gallery: Callable | None = None,
                  encoder_name: str = "encoder", queries=None, gallery_ortho=None) -> AreaResult:
    """Evaluate ``embed`` on one held-out orthophoto (see the module docstring).

    Args:
        embed: ``uint8[n, h, w, 3] RGB -> float[n, d]`` for the queries (and the gallery unless ``embed_gallery``).
        contract: the encoder's :class:`maps.contract.EncoderContract` (input size, ground resolution).
        ortho: the held-out :class:`maps.ortho.Orthophoto`.
        boxes: (x_min, y_min, x_max, y_max) local-metre boxes where queries lie (None: anywhere in the orthophoto).
        queries: a precomputed :class:`export.data.pairs.PairBatch` (to share queries between encoders).
        gallery_ortho: the map's imagery when it is not the queries' (a satellite-like copy of the same area: the
            camera sees the sharp ground, the map is coarser or reprojected), an Orthophoto in ``ortho``'s frame;
            None: the queries' own orthophoto.
    """
    import time

    from maps.tiling import TileGrid, cut_tiles, plan_tiles, resample_to_gsd

    from .data.pairs import evaluation_pairs

    cfg = EvalConfig() if config is None else config
    t0 = time.monotonic()
    grid = TileGrid.from_contract(contract, stride_m=cfg.stride_m)
    if queries is None:
        queries = evaluation_pairs(ortho, contract, cfg.queries, cfg.seed, cfg.pair_config(), areas=boxes)
    gal = ortho if gallery_ortho is None else gallery_ortho
    if gal is not ortho and gal.frame.proj4 != ortho.frame.proj4:
        raise EvaluationError(f"area {name!r}: the gallery orthophoto is in another local frame than the queries' "
                              "one; load it with frame=the queries' orthophoto's frame")
    centres = plan_tiles(gal, grid, 0.9)
    if len(centres) == 0:
        raise EvaluationError(f"area {name!r}: no {grid.tile_size_m:g} m tile with >= 90 % valid imagery")
    src = resample_to_gsd(gal, grid.gsd)
    tiles = cut_tiles(src, centres, grid)
    q = _embed(embed, queries.query, cfg.batch)
    g = _embed(embed_gallery or embed, tiles, cfg.batch)
    if q.shape[1] != g.shape[1]:
        raise EvaluationError(f"query embeddings are {q.shape[1]}-d but gallery ones {g.shape[1]}-d")
    rng = np.random.default_rng([cfg.seed, 7])
    prior = queries.position + rng.normal(0.0, cfg.prior_sigma_m, queries.position.shape)
    radius = cfg.radius_m if cfg.radius_m is not None else grid.stride_m
    metrics = retrieval_metrics(q @ g.T, queries.position, centres, radius, prior, cfg.scopes_m)
    return AreaResult(name, encoder_name, metrics, len(queries), len(centres), time.monotonic() - t0)


def evaluate(encoders: dict, areas: Sequence, *, config: EvalConfig | None = None,
             galleries: dict | None = None) -> EvalReport:
    """Evaluate several encoders on several areas with the SAME queries per area.

    Args:
        encoders: name -> (embed, contract) or (embed, contract, embed_gallery). All must share input size and
            ground resolution (else each gets its own queries).
        areas: :class:`export.train.Area` objects (held-out areas).
        galleries: area name -> a GeoTIFF of the same area to cut the map tiles from (a satellite-like copy),
            loaded into the area's frame; areas not in it use their own orthophoto.
    """
    from .data.pairs import evaluation_pairs

    cfg = EvalConfig() if config is None else config
    results = []
    for area in areas:
        ortho = area.load()
        gallery = None
        if galleries and area.name in galleries:
            from maps.geotiff import load_orthophoto

            gallery = load_orthophoto(galleries[area.name], frame=ortho.frame)
        cache = {}
        for enc_name, spec in encoders.items():
            embed, contract = spec[0], spec[1]
            gal = spec[2] if len(spec) > 2 else None
            key = (contract.input_width, contract.ground_resolution_m)
            if key not in cache:
                cache[key] = evaluation_pairs(ortho, contract, cfg.queries, cfg.seed, cfg.pair_config(),
                                              areas=area.boxes)
            results.append(evaluate_area(embed, contract, ortho, name=area.name, boxes=area.boxes, config=cfg,
                                         embed_gallery=gal, encoder_name=enc_name, queries=cache[key],
                                         gallery_ortho=gallery))
    d = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    d["scopes_m"] = list(cfg.scopes_m)
    d["altitude_m"] = list(cfg.altitude_m)
    return EvalReport(tuple(results), d)


COLUMNS = (("R@1", "R@1"), ("R@5", "R@5"), ("R@1%", "R@1%"), ("nearest_R@1", "nR@1"),
           ("scope200m_R@1", "200m R@1"), ("scope200m_R@5", "200m R@5"), ("scope200m_R@1%", "200m R@1%"),
           ("scope500m_R@1", "500m R@1"), ("scope500m_R@5", "500m R@5"), ("scope500m_R@1%", "500m R@1%"),
           ("median_error_m", "med err m"))


def format_table(report: EvalReport) -> str:
    """A plain-text table (percentages; one row per area and encoder, plus the query-weighted mean)."""
    head = ["area", "encoder", "q", "gallery"] + [c[1] for c in COLUMNS]
    rows = []
    for r in report.results:
        rows.append([r.area, r.encoder, str(r.queries), str(r.gallery)] + [_fmt(k, r.metrics.get(k)) for k, _ in COLUMNS])
    for enc in dict.fromkeys(r.encoder for r in report.results):
        m = report.mean(enc)
        n = sum(r.queries for r in report.results if r.encoder == enc)
        rows.append(["MEAN", enc, str(n), "-"] + [_fmt(k, m.get(k)) for k, _ in COLUMNS])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def _fmt(key: str, v) -> str:
    if v is None:
        return "-"
    return f"{v:.1f}" if key.endswith("_m") else f"{100 * v:.1f}"


# ---------------------------------------------------------------------------------------------------- embeds
def classical_embed():
    """``(ClassicalDescriptor(), classical_contract())``: the baseline."""
    from maps.descriptors import ClassicalDescriptor, classical_contract

    return ClassicalDescriptor(), classical_contract()


def torch_embed(model, branch: str = "camera", rotations: int = 1, threads: int | None = None) -> Callable:
    """Wrap one branch of a :class:`~export.models.encoder.TwoBranchEncoder` (or an ``Encoder``) as
    ``uint8[n, h, w, 3] -> float32[n, d]`` (ImageNet preprocessing; ``rotations`` > 1: test-time rotation
    averaging over ``rotations`` equally spaced angles, :func:`~export.models.encoder.rotation_averaged`)."""
    import torch

    from .models.encoder import preprocess, rotation_averaged

    if branch not in ("camera", "aerial"):
        raise EvaluationError(f"branch must be 'camera' or 'aerial', got {branch!r}")
    enc = getattr(model, branch, model) if hasattr(model, "camera") else model
    enc.eval()
    if threads is not None:
        torch.set_num_threads(threads)

    def embed(images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = preprocess(images)
            e = rotation_averaged(enc, x, k=rotations) if rotations > 1 else enc(x)
        return e.numpy().astype(np.float32)

    return embed


def onnx_embed(path) -> tuple:
    """``(embed, contract)`` of an exported encoder file (``skyfix export onnx``; any file
    :func:`runtime.encoder.load_encoder` opens), run on ONE ONNX Runtime CPU thread. For a camera-branch file
    ``STEM.camera.onnx`` whose ``STEM.aerial.onnx`` sits next to it, ``(embed, contract, embed_gallery)``: the
    gallery (map tiles) is embedded with the aerial branch, as maps are."""
    from runtime.encoder import load_encoder
    from runtime.errors import OnboardError

    p = Path(path)
    try:
        enc = load_encoder(p, threads=1)
        if p.name.endswith(".camera.onnx") and p.with_name(p.name[:-len(".camera.onnx")] + ".aerial.onnx").exists():
            aerial = load_encoder(p.with_name(p.name[:-len(".camera.onnx")] + ".aerial.onnx"), threads=1)
            if aerial.contract.encoder_id != enc.contract.encoder_id:
                raise EvaluationError(f"{p} and its aerial sibling have different encoder ids "
                                      f"({enc.contract.encoder_id} vs {aerial.contract.encoder_id}); export them together")
            return enc, enc.contract, aerial
    except OnboardError as exc:
        raise EvaluationError(f"cannot load encoder {p}: {exc}") from exc
    return enc, enc.contract
