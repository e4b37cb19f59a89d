"""Retrieval evaluation: metrics on hand-made cases with known answers, and the classical baseline and a learned
model (torch and ONNX) through the same evaluate code on a synthetic held-out orthophoto."""

from __future__ import annotations

import json

import numpy as np
import pytest

from export.evaluate import (
    EvalConfig, EvaluationError, evaluate, evaluate_area, format_table, retrieval_metrics,
)


def _grid(n=10, step=10.0):
    xs, ys = np.meshgrid(np.arange(n) * step, np.arange(n) * step)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def test_identity_similarity_gives_perfect_recall():
    g = _grid()
    q = g + 1.0  # each query 1.4 m from its own tile
    sim = np.eye(len(g))
    m = retrieval_metrics(sim, q, g, radius_m=5.0, prior=q, scopes_m=(20.0, 500.0))
    for k in ("R@1", "R@5", "R@1%", "nearest_R@1", "scope20m_R@1", "scope500m_R@1", "has_positive"):
        assert m[k] == 1.0, k
    assert m["gallery"] == 100 and m["median_error_m"] == pytest.approx(np.hypot(1, 1))
    assert 1 <= m["scope20m_gallery"] < 100 and m["scope500m_gallery"] == 100


def test_shifted_similarity_counts_neighbours_but_not_nearest():
    g = _grid()
    q = g.copy()
    # every query's best tile is the one 10 m east (a neighbour), its own tile second
    sim = np.zeros((100, 100))
    for i in range(100):
        j = i + 1 if (i % 10) < 9 else i - 1
        sim[i, j], sim[i, i] = 2.0, 1.0
    m = retrieval_metrics(sim, q, g, radius_m=10.0)
    assert m["R@1"] == 1.0 and m["nearest_R@1"] == 0.0 and m["nearest_R@5"] == 1.0
    m = retrieval_metrics(sim, q, g, radius_m=5.0)
    assert m["R@1"] == 0.0 and m["R@5"] == 1.0


def test_random_similarity_is_near_chance():
    g = _grid(20, 10.0)  # 400 tiles
    q = g[np.random.default_rng(0).integers(0, 400, 2000)]
    sim = np.random.default_rng(1).random((2000, 400))
    m = retrieval_metrics(sim, q, g, radius_m=1.0)  # exactly one positive per query
    assert m["R@1"] == pytest.approx(1 / 400, abs=0.004)
    assert m["R@5"] == pytest.approx(5 / 400, abs=0.008)
    assert m["R@1%"] == pytest.approx(4 / 400, abs=0.008)  # 1 % of 400 = top 4
    # inside a 50 m scope (~ 80 tiles) chance is higher
    prior = q + np.random.default_rng(2).normal(0, 5, q.shape)
    m = retrieval_metrics(sim, q, g, radius_m=1.0, prior=prior, scopes_m=(50.0,))
    assert m["scope50m_R@1"] == pytest.approx(m["scope50m_has_positive"] / m["scope50m_gallery"], abs=0.01)


def test_metric_errors():
    with pytest.raises(EvaluationError):
        retrieval_metrics(np.zeros((2, 3)), np.zeros((2, 2)), np.zeros((4, 2)), 1.0)
    with pytest.raises(EvaluationError):
        retrieval_metrics(np.zeros((2, 0)), np.zeros((2, 2)), np.zeros((0, 2)), 1.0)
    with pytest.raises(EvaluationError, match="unknown"):
        EvalConfig.from_dict({"querys": 3})
    with pytest.raises(EvaluationError):
        EvalConfig(queries=0)


@pytest.fixture(scope="module")
def held_out(make_synthetic_ortho):
    return make_synthetic_ortho(size_m=96.0, seed=5, rectangles=30)


def test_classical_and_learned_through_the_same_evaluation(held_out, tmp_path):
    torch = pytest.importorskip("torch")
    from export.checkpoint import contract_for
    from export.evaluate import classical_embed, onnx_embed, torch_embed
    from export.models.encoder import build_encoder
    from export.onnx_export import export_onnx
    from export.train import Area, get_preset

    from export.checkpoint import save_checkpoint

    cfg = EvalConfig(queries=12, batch=32)
    embed, contract = classical_embed()
    r = evaluate_area(embed, contract, held_out, name="synthetic", config=cfg, encoder_name="classical")
    assert r.queries == 12 and r.gallery == ((96 - 51.2) // 12.8 + 1) ** 2
    assert all(0.0 <= r.metrics[k] <= 1.0 for k in ("R@1", "R@5", "R@1%", "scope200m_R@1", "scope500m_R@5"))
    assert r.metrics["has_positive"] == 1.0
    # the classical descriptor finds textured synthetic places above chance (~5 of 16 tiles are positives)
    assert r.metrics["R@1"] > 0.4

    torch.manual_seed(0)
    preset = get_preset("tiny", input_size=128)
    config = preset.encoder_config()
    model = build_encoder(config).eval()
    c = contract_for(model, config, 0.4, "skyfix-test")
    path = save_checkpoint(tmp_path / "m.pt", model, config, ground_resolution_m=0.4, name="skyfix-test")
    (exported,) = export_onnx(path, tmp_path / "m.onnx")
    onnx_path = exported.path
    oembed, ocontract = onnx_embed(onnx_path)
    assert ocontract == c
    report = evaluate({"classical": (embed, contract), "learned": (torch_embed(model), c),
                       "onnx": (oembed, ocontract)},
                      [Area("synthetic", ortho=held_out)], config=cfg)
    assert [x.encoder for x in report.results] == ["classical", "learned", "onnx"]
    by = {x.encoder: x.metrics for x in report.results}
    assert by["classical"] == r.metrics  # same queries, same code
    assert by["onnx"]["R@1"] == pytest.approx(by["learned"]["R@1"], abs=1 / 12 + 1e-9)
    table = format_table(report)
    assert "MEAN" in table and "200m R@1" in table and "classical" in table
    data = json.loads(report.to_json())
    assert data["mean"]["learned"]["R@1"] == by["learned"]["R@1"]


def test_rotation_averaged_embed_is_invariant_to_quarter_turns():
    torch = pytest.importorskip("torch")
    from export.evaluate import torch_embed
    from export.models.encoder import build_encoder

    torch.manual_seed(0)
    model = build_encoder({"dim": 16, "input_size": 64}).eval()
    imgs = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    e = torch_embed(model, rotations=4)
    a, b = e(imgs), e(np.ascontiguousarray(np.rot90(imgs, 1, axes=(1, 2))))
    assert a.shape == (2, 16) and np.abs(a - b).max() < 1e-4


def test_bad_embed_is_typed_error(held_out):
    from export.evaluate import classical_embed

    _, contract = classical_embed()
    with pytest.raises(EvaluationError, match="embed returned"):
        evaluate_area(lambda x: np.zeros((1, 4), np.float32), contract, held_out, config=EvalConfig(queries=3))


def test_a_satellite_like_gallery_of_the_same_area(held_out, tmp_path):
    """--gallery: map tiles cut from another copy of the area while the queries come from the orthophoto. The same
    orthophoto as gallery gives the same metrics as none; a coarser copy reprojected through Web Mercator (1 m/px,
    EPSG:3857, loaded back into the area's frame) keeps its tiles on the same ground (every query still has a
    positive) and, being blurred, scores no better; a gallery in another frame is refused."""
    from dataclasses import replace

    from maps.geodesy import LocalFrame
    from maps.geotiff import load_orthophoto, write_geotiff
    from runtime.sim.imagery import resample_ortho
    from export.evaluate import classical_embed
    from export.train import Area

    src = write_geotiff(tmp_path / "o.tif", held_out)
    sat = resample_ortho(src, tmp_path / "sat.tif", gsd_m=1.0, crs="EPSG:3857")
    enc = {"classical": classical_embed()}
    cfg = EvalConfig(queries=12, batch=32)
    area = Area("synthetic", str(src))
    plain = evaluate(enc, [area], config=cfg).results[0].metrics
    same = evaluate(enc, [area], config=cfg, galleries={"synthetic": str(src)}).results[0].metrics
    assert same == plain
    blurred = evaluate(enc, [area], config=cfg, galleries={"synthetic": sat}).results[0].metrics
    assert blurred["has_positive"] == 1.0 and blurred["R@1"] <= plain["R@1"]
    embed, contract = enc["classical"]
    other = replace(load_orthophoto(sat), frame=LocalFrame(47.5, 8.5))
    with pytest.raises(EvaluationError, match="gallery orthophoto is in another local frame"):
        evaluate_area(embed, contract, load_orthophoto(src), config=cfg, gallery_ortho=other)
