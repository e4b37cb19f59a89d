"""Metric-learning losses for cross-view (camera view <-> aerial tile) retrieval.

All losses take a batch of ``n`` aligned pairs: ``query float[n, d]`` (camera views) and ``reference float[n, d]``
(aerial tiles), row ``i`` of each being the same place (the positive pair); every other row of the batch is a
negative (in-batch / exhaustive mini-batch negatives). Embeddings are expected L2-normalised. Each returns a
scalar tensor. torch is imported on first use (docs/DESIGN.md: no torch at import time).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .errors import LossInputError


def _check_pair(query, reference, who: str) -> None:
    if query.ndim != 2 or query.shape != reference.shape:
        raise LossInputError(
            f"{who} needs query and reference of the same shape [n, d], got {tuple(query.shape)} and "
            f"{tuple(reference.shape)}"
        )
    if query.shape[0] < 2:
        raise LossInputError(f"{who} needs a batch of at least 2 pairs (in-batch negatives), got {query.shape[0]}")


def _check_positive(value: float, name: str) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise LossInputError(f"{name} must be a finite number > 0, got {value!r}")


def pairwise_distance(query, reference, squared: bool = True):
    """Distances between unit rows: ``[n, d], [m, d] -> [n, m]``; squared Euclidean ``2 - 2 q.r`` or Euclidean."""

    d2 = (2.0 - 2.0 * query @ reference.T).clamp(min=0.0)
    return d2 if squared else torch.sqrt(d2 + 1e-12)


def info_nce(query, reference, temperature=0.07):
    """Symmetric InfoNCE (Sample4Geo, Deuser et al. ICCV 2023; CLIP, Radford et al. 2021).

    ``logits = query @ reference.T / temperature`` (``[n, n]``); the loss is the mean of the cross-entropy over
    rows (query -> reference) and over columns (reference -> query), the target being the diagonal.

    Args:
        query, reference: ``float[n, d]`` unit rows, row i of each a positive pair.
        temperature: float > 0, or a scalar tensor (e.g. ``exp(-log_scale)`` of a learnable scale).
    Returns:
        scalar tensor.
    """

    _check_pair(query, reference, "info_nce")
    if not isinstance(temperature, torch.Tensor):
        _check_positive(temperature, "temperature")
    logits = query @ reference.T / temperature
    labels = torch.arange(query.shape[0], device=query.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def soft_margin_triplet(query, reference, alpha: float = 10.0, squared: bool = True):
    """Weighted soft-margin triplet loss over the whole batch (CVM-Net, Hu et al. CVPR 2018; exhaustive
    mini-batch of Vo & Hays ECCV 2016).

    For every anchor and every in-batch negative: ``ln(1 + exp(alpha * (d_pos - d_neg)))``, averaged over the
    ``n (n - 1)`` triplets of each direction (query anchors against reference negatives, and reference anchors
    against query negatives), then over the two directions. Distances are squared Euclidean between unit vectors
    ``2 - 2 cos`` as in CVM-Net's code (``squared=False``: Euclidean).

    Args:
        query, reference: ``float[n, d]`` unit rows, row i of each a positive pair.
        alpha: weight of the soft margin (10 in CVM-Net).
    Returns:
        scalar tensor.
    """

    _check_pair(query, reference, "soft_margin_triplet")
    _check_positive(alpha, "alpha")
    n = query.shape[0]
    d = pairwise_distance(query, reference, squared)  # d[i, j] = dist(query i, reference j)
    pos = torch.diagonal(d)
    off = ~torch.eye(n, dtype=torch.bool, device=d.device)
    q2r = F.softplus(alpha * (pos[:, None] - d))[off].mean()  # anchor query i, negative reference j
    r2q = F.softplus(alpha * (pos[None, :] - d))[off].mean()  # anchor reference j, negative query i
    return 0.5 * (q2r + r2q)


def edbl(query, reference, alpha: float = 10.0, margin: float = 1.0, pos_weight: float | None = None):
    """Exhaustive distance-based logistic loss, eDBL (Vo & Hays, ECCV 2016 "Localizing and Orienting Street
    Views Using Overhead Imagery"; Vo 2019).

    Every pair of the batch is used: the ``n`` positives (i, i) and the ``n (n - 1)`` negatives (i, j != i). With
    ``D`` the Euclidean distance between unit rows, a logistic loss on the distance to a margin ``m``::

        positive:  ln(1 + exp( alpha * (D - m)))     (pushes D below m)
        negative:  ln(1 + exp(-alpha * (D - m)))     (pushes D above m)

    Balancing: negatives outnumber positives n-1 to 1, so each positive term is weighted ``pos_weight`` (default
    ``n - 1``) against 1 for each negative; the loss is the weighted mean
    ``(w * sum_pos + sum_neg) / (w * n + n (n - 1))`` (for the default: half positives' mean, half negatives').

    Args:
        query, reference: ``float[n, d]`` unit rows, row i of each a positive pair.
        alpha: logistic sharpness. margin: distance threshold m (unit vectors: orthogonal is sqrt(2)).
        pos_weight: weight of each positive term; None = n - 1 (balanced).
    Returns:
        scalar tensor.
    """

    _check_pair(query, reference, "edbl")
    _check_positive(alpha, "alpha")
    _check_positive(margin, "margin")
    n = query.shape[0]
    w = float(n - 1) if pos_weight is None else pos_weight
    _check_positive(w, "pos_weight")
    d = pairwise_distance(query, reference, squared=False)
    eye = torch.eye(n, dtype=torch.bool, device=d.device)
    pos = F.softplus(alpha * (torch.diagonal(d) - margin)).sum()
    neg = F.softplus(-alpha * (d[~eye] - margin)).sum()
    return (w * pos + neg) / (w * n + n * (n - 1))


def orientation_loss(prediction, angle):
    """Orientation regression loss (Vo & Hays 2016): squared error between predicted ``(cos, sin)`` ``float[n, 2]``
    and the true relative heading ``angle`` (radians, ``float[n]``), summed over the 2 components, mean over n.
    For unit predictions this is ``2 - 2 cos(angle error)``."""

    if prediction.ndim != 2 or prediction.shape[1] != 2 or angle.shape != prediction.shape[:1]:
        raise LossInputError(
            f"orientation_loss needs prediction [n, 2] and angle [n], got {tuple(prediction.shape)} and "
            f"{tuple(angle.shape)}"
        )
    target = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1).to(prediction.dtype)
    return (prediction - target).pow(2).sum(dim=1).mean()


class InfoNCELoss(nn.Module):
    """Symmetric InfoNCE (see :func:`info_nce`) with a fixed or learnable temperature.

    Learnable: a log-scale parameter ``log(1 / temperature)`` as in CLIP / Sample4Geo, scale clamped to
    at most 100. ``forward(query [n, d], reference [n, d]) -> scalar``.
    """

    def __init__(self, temperature: float = 0.07, learnable: bool = False) -> None:
        super().__init__()
        _check_positive(temperature, "temperature")
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)), requires_grad=learnable)

    @property
    def temperature(self) -> float:
        return float(1.0 / self.log_scale.detach().exp().clamp(max=100.0))

    def forward(self, query, reference):
        return info_nce(query, reference, 1.0 / self.log_scale.exp().clamp(max=100.0))

