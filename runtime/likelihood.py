"""The visual likelihood's calibration: match scores -> probability that a candidate is at the vehicle.

A frame's visual measurement is a set of candidates (:class:`runtime.localizer.FrameCandidates`): fine-aligned
positions scored by NCC (with the alignment's peak ratio), or, when none passes, retrieved tile centres scored by
embedding cosine. The particle filter weighs them as a mixture (:class:`runtime.tracking.VisualFix`)::

    L(x) = p_in * sum_j pi_j N(x; c_j, sigma_j^2) + (1 - p_in) / area_searched

This module turns scores into ``p_j = P(candidate j is correct | its features)`` with one logistic model per kind,
fitted on simulated flights whose ground truth is known (``runtime likelihood fit``), and checked on other areas
(``runtime likelihood check``: reliability table, expected calibration error, log loss). A candidate is *correct*
when it lies within ``CORRECT_SIGMAS`` of its own stated sigma of the true position (what its Gaussian component
claims). The mixture then uses ``pi_j = p_j / sum_k p_k`` and ``p_in = P(some candidate is correct)`` by the
calibration's ``fix_rule`` (:func:`fix_probability`: the best candidate's probability, or the sum over distinct
places), the rule chosen by ``fit`` as the one that predicts the fixes of the training flights better.

Features (float64[n, f] -> :meth:`ScoreModel.probability` float64[n] in (0, 1)):

* ``aligned``: NCC score, ``log(peak_ratio)`` clipped to [0, log 2] (how much the best peak stands out,
  :class:`runtime.align.AlignResult`; beyond 2 it is unique anyway), and where the alignment started: 0 at the
  belief, else the log scope ratio of the search that retrieved its tile (an alignment that starts at a tile from a
  whole-map search is right less often, at the same NCC, than one that refines a belief).
* ``retrieved``: cosine score, its gap below the best cosine of the same view (rank information), the view's spread
  (best minus k-th best cosine: about 0 where every tile looks alike, as over water), and the log of the searched
  area over the area within which a candidate counts as correct (a prior: a candidate from a search over the whole
  map is right less often than one from a small scope around a good belief).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import OnboardError

__all__ = ["LikelihoodError", "ScoreModel", "VisualLikelihood", "default_likelihood", "DEFAULT_LIKELIHOOD_FILE",
           "CORRECT_SIGMAS",
           "FIX_RULES", "aligned_features", "retrieved_features", "scope_log_ratio", "fit_logistic", "reliability",
           "fix_probability"]

#: a candidate within this many of its stated sigmas of the truth counts as correct
CORRECT_SIGMAS = 3.0
#: how candidate probabilities become the fix's: the best one ("max") or the sum over distinct places ("sum")
FIX_RULES = ("max", "sum")
KINDS = {"aligned": ("ncc", "log_peak_ratio", "seed_log_scope"),
         "retrieved": ("cosine", "gap_to_best", "view_spread", "log_scope_ratio")}


class LikelihoodError(OnboardError):
    """A likelihood calibration file or model is malformed, or there is too little data to fit one."""


def aligned_features(scores, peak_ratios, seed_log_scope) -> np.ndarray:
    """float64[n, 3] features of fine-aligned candidates: NCC in [-1, 1], log of the peak ratio clipped to [1, 2],
    and ``seed_log_scope`` (float[n] or one number: 0 for an alignment started at the belief, else
    :func:`scope_log_ratio` of the search that retrieved its tile)."""
    s = np.asarray(scores, np.float64).reshape(-1)
    pr = np.asarray(peak_ratios, np.float64).reshape(-1)
    seed = np.broadcast_to(np.asarray(seed_log_scope, np.float64).reshape(-1), s.shape)
    return np.stack([s, np.log(np.clip(pr, 1.0, 2.0)), seed], axis=1)


def retrieved_features(scores, view_best, view_spread, log_scope) -> np.ndarray:
    """float64[n, 4] features of retrieval candidates: cosine, how far it is below the best cosine of its view
    (``view_best`` float[n], >= the score), the view's spread (``view_spread`` float[n]: best minus k-th best
    cosine), and ``log_scope`` (float[n] or one number, :func:`scope_log_ratio`)."""
    s = np.asarray(scores, np.float64).reshape(-1)
    b = np.asarray(view_best, np.float64).reshape(-1)
    sp = np.asarray(view_spread, np.float64).reshape(-1)
    ls = np.broadcast_to(np.asarray(log_scope, np.float64).reshape(-1), s.shape)
    return np.stack([s, np.maximum(b - s, 0.0), np.maximum(sp, 0.0), ls], axis=1)


def scope_log_ratio(scope, bounds, sigma_m: float) -> float:
    """log(searched area / area of a disc of ``CORRECT_SIGMAS * sigma_m``), >= 0.

    Args:
        scope: (x, y, radius_m) searched, or None for the whole map. bounds: the map's (x_min, y_min, x_max,
            y_max), local metres. sigma_m: the retrieval candidates' sigma (half a stride), metres.
    """
    if scope is None:
        area = (bounds[2] - bounds[0]) * (bounds[3] - bounds[1])
    else:
        area = math.pi * float(scope[2]) ** 2
    return max(0.0, math.log(max(area, 1.0) / (math.pi * (CORRECT_SIGMAS * sigma_m) ** 2)))


@dataclass(frozen=True)
class ScoreModel:
    """Logistic model ``p = sigmoid(bias + coef . features)`` of one candidate kind.

    Attributes:
        kind: ``"aligned"`` or ``"retrieved"`` (sets the feature names, :data:`KINDS`).
        bias: intercept. coef: one weight per feature.
        n: candidates it was fitted on (0: not fitted from data).
    """

    kind: str
    bias: float
    coef: tuple[float, ...]
    n: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise LikelihoodError(f"score model kind must be one of {sorted(KINDS)}, got {self.kind!r}")
        coef = tuple(float(c) for c in self.coef)
        if len(coef) != len(KINDS[self.kind]) or not all(math.isfinite(c) for c in coef):
            raise LikelihoodError(
                f"{self.kind} score model needs {len(KINDS[self.kind])} finite weights ({', '.join(KINDS[self.kind])}),"
                f" got {list(self.coef)!r}")
        if not math.isfinite(float(self.bias)):
            raise LikelihoodError(f"{self.kind} score model bias must be finite, got {self.bias!r}")
        object.__setattr__(self, "coef", coef)
        object.__setattr__(self, "bias", float(self.bias))

    def probability(self, features: np.ndarray) -> np.ndarray:
        """float64[n] in (0, 1) for ``features`` float64[n, f] (:func:`aligned_features` / :func:`retrieved_features`)."""
        x = np.asarray(features, np.float64).reshape(-1, len(self.coef))
        z = self.bias + x @ np.asarray(self.coef)
        return 1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0)))

    def to_dict(self) -> dict:
        return {"bias": self.bias, "coef": dict(zip(KINDS[self.kind], self.coef)), "n": self.n}

    @classmethod
    def from_dict(cls, kind: str, d) -> "ScoreModel":
        names = KINDS.get(kind)
        if names is None:
            raise LikelihoodError(f"unknown candidate kind {kind!r}; expected one of {sorted(KINDS)}")
        if not isinstance(d, dict) or set(d) - {"bias", "coef", "n"} or not {"bias", "coef"} <= set(d):
            raise LikelihoodError(f"{kind} model must be a mapping with keys bias, coef (and n), got {d!r}")
        coef = d["coef"]
        if not isinstance(coef, dict) or set(coef) != set(names):
            raise LikelihoodError(f"{kind} model coef must name exactly {list(names)}, got {coef!r}")
        try:
            return cls(kind, float(d["bias"]), tuple(float(coef[k]) for k in names), int(d.get("n", 0)))
        except (TypeError, ValueError) as exc:
            raise LikelihoodError(f"{kind} model has a non-numeric value: {exc}") from None


@dataclass(frozen=True)
class VisualLikelihood:
    """The two score models (aligned, retrieved); ``source`` says where they were fitted, ``encoder_id`` which
    encoder's cosines the retrieval model was fitted on ("" unknown: taken to be any map's). The aligned model (NCC)
    does not depend on the encoder."""

    aligned: ScoreModel
    retrieved: ScoreModel
    source: str = ""
    fix_rule: str = "max"
    encoder_id: str = ""

    def __post_init__(self) -> None:
        if self.fix_rule not in FIX_RULES:
            raise LikelihoodError(f"fix_rule must be one of {FIX_RULES}, got {self.fix_rule!r}")

    def fix_probability(self, p, positions, sigma_m) -> float:
        """P(the fix holds the vehicle) by this calibration's ``fix_rule`` (see :func:`fix_probability`)."""
        return fix_probability(p, positions if self.fix_rule == "sum" else None, sigma_m)

    def to_dict(self) -> dict:
        return {"format": "skyfix-likelihood/1", "source": self.source, "correct_sigmas": CORRECT_SIGMAS,
                "fix_rule": self.fix_rule, "encoder_id": self.encoder_id, "aligned": self.aligned.to_dict(),
                "retrieved": self.retrieved.to_dict()}

    @classmethod
    def from_dict(cls, d) -> "VisualLikelihood":
        keys = {"format", "source", "correct_sigmas", "fix_rule", "encoder_id", "aligned", "retrieved", "check"}
        if not isinstance(d, dict):
            raise LikelihoodError(f"a likelihood calibration must be a mapping, got {type(d).__name__}")
        unknown = sorted(set(d) - keys)
        if unknown:
            raise LikelihoodError(f"unknown key(s) {unknown} in the likelihood calibration; expected {sorted(keys)}")
        if d.get("format") != "skyfix-likelihood/1":
            raise LikelihoodError(
                f"likelihood calibration format must be 'skyfix-likelihood/1', got {d.get('format')!r}; write it with "
                "`runtime likelihood fit`")
        for k in ("aligned", "retrieved"):
            if k not in d:
                raise LikelihoodError(f"the likelihood calibration lacks the {k!r} model")
        return cls(ScoreModel.from_dict("aligned", d["aligned"]), ScoreModel.from_dict("retrieved", d["retrieved"]),
                   str(d.get("source", "")), d.get("fix_rule", "max"), str(d.get("encoder_id", "")))

    def save(self, path, extra: dict | None = None) -> None:
        d = self.to_dict()
        if extra:
            d.update(extra)
        Path(path).write_text(json.dumps(d, indent=2) + "\n")

    @classmethod
    def load(cls, path) -> "VisualLikelihood":
        p = Path(path)
        try:
            d = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            raise LikelihoodError(f"cannot read the likelihood calibration {p}: {exc}") from None
        return cls.from_dict(d)


def fix_probability(p, positions=None, sigma_m=None) -> float:
    """Probability that a fix holds the vehicle, from its candidates' probabilities ``p`` float[k].

    Without positions: the best candidate's. With ``positions`` float[k, 2] (metres) and ``sigma_m`` (float[k] or
    one number): candidates closer to a better one than ``2 * CORRECT_SIGMAS`` times the larger sigma are the same
    place (only the best counts); distinct places cannot both hold the vehicle, so their probabilities add (capped
    at 1).
    """
    p = np.asarray(p, np.float64).reshape(-1)
    if p.size == 0:
        return 0.0
    if positions is None:
        return float(p.max())
    pos = np.asarray(positions, np.float64).reshape(-1, 2)
    sig = np.broadcast_to(np.asarray(sigma_m, np.float64).reshape(-1), p.shape)
    reps: list[int] = []
    total = 0.0
    for j in np.argsort(-p, kind="stable"):
        if any(math.hypot(*(pos[j] - pos[i])) < 2.0 * CORRECT_SIGMAS * max(sig[i], sig[j]) for i in reps):
            continue
        reps.append(int(j))
        total += float(p[j])
    return min(1.0, total)


def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1e-3, iters: int = 50) -> tuple[float, np.ndarray]:
    """Logistic regression by Newton's method (IRLS) with a small L2 penalty on the weights (not the bias).

    Args:
        x: float64[n, f] features. y: bool/0-1[n] labels.
    Returns:
        (bias, weights float64[f]).
    Raises:
        LikelihoodError: fewer than 20 samples, or only one class.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64).reshape(-1)
    if x.ndim != 2 or len(x) != len(y):
        raise LikelihoodError(f"features must be float[n, f] with n = {len(y)} labels, got shape {list(x.shape)}")
    if len(y) < 20 or y.min() == y.max():
        raise LikelihoodError(
            f"too little data to fit: {len(y)} candidates, {int(y.sum())} correct; fly longer or more flights")
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = np.column_stack([np.ones(len(y)), (x - mu) / sd])
    w = np.zeros(z.shape[1])
    pen = np.full(z.shape[1], l2 * len(y))
    pen[0] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -30, 30)))
        g = z.T @ (p - y) + pen * w
        h = (z * (p * (1 - p))[:, None]).T @ z + np.diag(pen + 1e-9)
        step = np.linalg.solve(h, g)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    coef = w[1:] / sd
    bias = float(w[0] - coef @ mu)
    return bias, coef


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> dict:
    """How well probabilities ``p`` float[n] match outcomes ``y`` bool[n].

    Returns:
        dict with ``ece`` (expected calibration error: bin-weighted mean |observed - predicted|), ``log_loss``
        (nats per sample), ``brier``, ``n`` and ``bins``: rows ``(lo, hi, n, mean predicted, observed)`` over equal
        widths of [0, 1] (empty bins left out).
    """
    p = np.clip(np.asarray(p, np.float64).reshape(-1), 1e-6, 1 - 1e-6)
    y = np.asarray(y, np.float64).reshape(-1)
    if len(p) != len(y):
        raise LikelihoodError(f"{len(p)} probabilities for {len(y)} outcomes")
    if len(p) == 0:
        return {"n": 0, "ece": math.nan, "log_loss": math.nan, "brier": math.nan, "bins": []}
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            pm, om = float(p[m].mean()), float(y[m].mean())
            ece += m.mean() * abs(om - pm)
            rows.append((float(edges[b]), float(edges[b + 1]), int(m.sum()), pm, om))
    ll = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return {"n": int(len(p)), "ece": float(ece), "log_loss": ll, "brier": float(np.mean((p - y) ** 2)), "bins": rows}


#: the shipped calibration (``runtime/models/likelihood-default.json``; its ``source`` gives the command that fitted it)
DEFAULT_LIKELIHOOD_FILE = Path(__file__).resolve().parent / "models" / "likelihood-default.json"


@functools.lru_cache(maxsize=1)
def default_likelihood() -> VisualLikelihood:
    """The shipped calibration, read on first use (:data:`DEFAULT_LIKELIHOOD_FILE`)."""
    return VisualLikelihood.load(DEFAULT_LIKELIHOOD_FILE)
