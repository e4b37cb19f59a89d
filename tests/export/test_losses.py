"""Losses of export/losses.py against hand computations (numpy) and a gradient sanity check."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from export.errors import LossInputError  # noqa: E402
from export.losses import InfoNCELoss, edbl, info_nce, orientation_loss, soft_margin_triplet  # noqa: E402


def _batch(n=3, d=4, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, d))
    r = q + 0.5 * rng.normal(size=(n, d))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    return q, r


def _t(a):
    return torch.tensor(a, dtype=torch.float64)


def test_info_nce_matches_hand_computation():
    q, r = _batch()
    t = 0.1
    s = q @ r.T / t
    n = len(q)
    rows = np.mean([-s[i, i] + math.log(np.exp(s[i]).sum()) for i in range(n)])
    cols = np.mean([-s[i, i] + math.log(np.exp(s[:, i]).sum()) for i in range(n)])
    assert float(info_nce(_t(q), _t(r), t)) == pytest.approx(0.5 * (rows + cols), rel=1e-10)
    assert float(InfoNCELoss(t)(_t(q), _t(r))) == pytest.approx(0.5 * (rows + cols), rel=1e-6)


@pytest.mark.parametrize("squared", [True, False])
def test_soft_margin_triplet_matches_hand_computation(squared):
    q, r = _batch()
    alpha, n = 10.0, len(q)
    dist = np.array([[np.sum((q[i] - r[j]) ** 2) for j in range(n)] for i in range(n)])
    if not squared:
        dist = np.sqrt(dist)
    q2r = [math.log1p(math.exp(alpha * (dist[i, i] - dist[i, j]))) for i in range(n) for j in range(n) if j != i]
    r2q = [math.log1p(math.exp(alpha * (dist[j, j] - dist[i, j]))) for j in range(n) for i in range(n) if i != j]
    expected = 0.5 * (np.mean(q2r) + np.mean(r2q))
    assert float(soft_margin_triplet(_t(q), _t(r), alpha, squared=squared)) == pytest.approx(expected, rel=1e-8)


@pytest.mark.parametrize("pos_weight", [None, 1.0])
def test_edbl_matches_hand_computation(pos_weight):
    q, r = _batch(n=4)
    alpha, m, n = 10.0, 1.0, 4
    dist = np.array([[np.linalg.norm(q[i] - r[j]) for j in range(n)] for i in range(n)])
    pos = [math.log1p(math.exp(alpha * (dist[i, i] - m))) for i in range(n)]
    neg = [math.log1p(math.exp(-alpha * (dist[i, j] - m))) for i in range(n) for j in range(n) if i != j]
    if pos_weight is None:  # balanced: half positives' mean, half negatives' mean
        expected = 0.5 * np.mean(pos) + 0.5 * np.mean(neg)
    else:
        expected = (sum(pos) + sum(neg)) / (n * n)
    got = float(edbl(_t(q), _t(r), alpha, m, pos_weight=pos_weight))
    assert got == pytest.approx(expected, rel=1e-8)


def test_orientation_loss_hand_value():
    pred = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    angle = torch.tensor([0.0, math.pi])  # perfect, then 90 degrees off (pred at pi/2)
    assert float(orientation_loss(pred, angle)) == pytest.approx((0.0 + 2.0) / 2, abs=1e-6)


@pytest.mark.parametrize("loss_fn", [
    lambda q, r: info_nce(q, r, 0.1),
    lambda q, r: soft_margin_triplet(q, r),
    lambda q, r: edbl(q, r),
], ids=["info_nce", "soft_margin_triplet", "edbl"])
def test_gradient_steps_pull_matches_together(loss_fn):
    torch.manual_seed(0)
    q_raw = torch.randn(6, 8, requires_grad=True)
    r_raw = torch.randn(6, 8, requires_grad=True)
    opt = torch.optim.SGD([q_raw, r_raw], lr=0.5)

    def gap():
        q, r = torch.nn.functional.normalize(q_raw, dim=1), torch.nn.functional.normalize(r_raw, dim=1)
        d = torch.cdist(q, r)
        off = ~torch.eye(6, dtype=torch.bool)
        return float(d.diagonal().mean() - d[off].mean())

    with torch.no_grad():
        before = gap()
    for _ in range(20):
        opt.zero_grad()
        q, r = torch.nn.functional.normalize(q_raw, dim=1), torch.nn.functional.normalize(r_raw, dim=1)
        loss = loss_fn(q, r)
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = gap()
    assert after < before - 0.1, (before, after)


def test_learnable_temperature_gets_a_gradient():
    q, r = _batch()
    loss = InfoNCELoss(0.07, learnable=True)
    loss(_t(q).float(), _t(r).float()).backward()
    assert loss.log_scale.grad is not None and loss.temperature == pytest.approx(0.07, rel=1e-5)
    assert not InfoNCELoss(0.07).log_scale.requires_grad


def test_bad_inputs_raise_typed_errors():
    q = torch.randn(3, 4)
    with pytest.raises(LossInputError, match="same shape"):
        info_nce(q, torch.randn(3, 5))
    with pytest.raises(LossInputError, match="at least 2"):
        edbl(q[:1], q[:1])
    with pytest.raises(LossInputError, match="alpha"):
        soft_margin_triplet(q, q, alpha=-1.0)
    with pytest.raises(LossInputError, match="temperature"):
        info_nce(q, q, 0.0)
