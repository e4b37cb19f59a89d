"""The visual likelihood's calibration: logistic fit, reliability figures, the calibration file, the tracker's use
of calibrated probabilities, and `runtime likelihood fit|check` on simulated flights."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from runtime.likelihood import (LikelihoodError, default_likelihood, ScoreModel, VisualLikelihood, aligned_features,
                                fit_logistic, fix_probability, reliability, retrieved_features,
                                scope_log_ratio)
from runtime.tracking import ParticleTracker, TrackerConfig, TrackingError, VisualFix


def _synthetic(n=4000, bias=-3.0, coef=(6.0, -2.0), seed=0):
    g = np.random.default_rng(seed)
    x = np.column_stack([g.uniform(0, 1, n), g.normal(0, 1, n)])
    p = 1 / (1 + np.exp(-(bias + x @ np.array(coef))))
    return x, g.random(n) < p, p


def test_fit_logistic_recovers_the_generating_model():
    x, y, _ = _synthetic()
    b, w = fit_logistic(x, y)
    assert b == pytest.approx(-3.0, abs=0.35)
    assert w == pytest.approx([6.0, -2.0], abs=0.5)


def test_fit_logistic_refuses_too_little_or_one_class():
    with pytest.raises(LikelihoodError, match="too little data to fit: 10 candidates"):
        fit_logistic(np.zeros((10, 2)), np.arange(10) % 2)
    with pytest.raises(LikelihoodError, match="30 candidates, 0 correct"):
        fit_logistic(np.zeros((30, 2)), np.zeros(30))
    with pytest.raises(LikelihoodError, match="features must be float"):
        fit_logistic(np.zeros(30), np.arange(30) % 2)


def test_reliability_of_true_probabilities_is_small_and_of_a_constant_is_its_bias():
    x, y, p = _synthetic(n=20000, seed=1)
    good = reliability(p, y)
    assert good["ece"] < 0.02 and good["n"] == 20000
    assert sum(r[2] for r in good["bins"]) == 20000
    for lo, hi, n, pm, om in good["bins"]:
        assert lo <= pm <= hi
    const = reliability(np.full(len(y), 0.9), y)
    assert const["ece"] == pytest.approx(abs(0.9 - y.mean()), abs=1e-9)
    assert len(const["bins"]) == 1
    assert const["log_loss"] > good["log_loss"] and const["brier"] > good["brier"]
    with pytest.raises(LikelihoodError, match="3 probabilities for 2 outcomes"):
        reliability([0.1, 0.2, 0.3], [1, 0])
    assert math.isnan(reliability([], [])["ece"])


def test_features():
    f = aligned_features([0.9, 0.3], [1.5, 0.5], [0.0, 4.0])
    assert f[:, 0].tolist() == [0.9, 0.3] and f[:, 2].tolist() == [0.0, 4.0]
    assert f[:, 1] == pytest.approx([math.log(1.5), 0.0])  # ratios below 1 floored
    r = retrieved_features([0.8, 0.6], [0.8, 0.8], [0.3, 0.3], 2.0)
    assert r[:, 1] == pytest.approx([0.0, 0.2]) and r[:, 2].tolist() == [0.3, 0.3] and r[:, 3].tolist() == [2.0, 2.0]
    assert aligned_features([0.5], [7.0], 0.0)[0, 1] == pytest.approx(math.log(2.0))  # saturates at 2
    sigma = 6.4
    assert scope_log_ratio((0, 0, 3 * sigma), (0, 0, 1, 1), sigma) == pytest.approx(0.0)
    assert scope_log_ratio((0, 0, 30 * sigma), (0, 0, 1, 1), sigma) == pytest.approx(math.log(100.0))
    assert scope_log_ratio(None, (0, 0, 400, 300), sigma) == pytest.approx(math.log(120000 / (math.pi * 19.2**2)))
    assert fix_probability(np.array([0.2, 0.7])) == 0.7 and fix_probability(np.array([])) == 0.0
    # with positions: one place counts once (its best), distinct places add up, capped at 1
    pos = [[0.0, 0.0], [3.0, 0.0], [100.0, 0.0]]
    assert fix_probability([0.5, 0.4, 0.3], pos, 2.0) == pytest.approx(0.8)
    assert fix_probability([0.5, 0.4, 0.3], pos, 20.0) == pytest.approx(0.5)
    assert fix_probability([0.9, 0.4, 0.8], pos, 2.0) == 1.0


def test_calibration_file_round_trip_and_errors(tmp_path):
    path = tmp_path / "lik.json"
    lik = VisualLikelihood(ScoreModel("aligned", -5.0, (9.0, 1.5, -0.5), 100),
                           ScoreModel("retrieved", -1.0, (3.0, -8.0, 9.0, -1.0), 50), "test", "sum")
    lik.save(path, {"check": {"note": "kept"}})
    back = VisualLikelihood.load(path)
    assert back == lik
    x = aligned_features([0.2, 0.9], [1.0, 4.0], 0.0)
    assert back.aligned.probability(x) == pytest.approx(lik.aligned.probability(x))
    assert back.aligned.probability(x)[1] > back.aligned.probability(x)[0]

    d = json.loads(path.read_text())
    for change, msg in (
        ({"extra": 1}, r"unknown key\(s\) \['extra'\]"),
        ({"format": "v0"}, "format must be 'skyfix-likelihood/1', got 'v0'"),
        ({"fix_rule": "mean"}, r"fix_rule must be one of \('max', 'sum'\), got 'mean'"),
        ({"aligned": {"bias": 0, "coef": {"ncc": 1}}},
         r"aligned model coef must name exactly \['ncc', 'log_peak_ratio', 'seed_log_scope'\]"),
        ({"retrieved": {"bias": 0}}, "retrieved model must be a mapping with keys bias, coef"),
        ({"aligned": {"bias": "x", "coef": {"ncc": 1, "log_peak_ratio": 0, "seed_log_scope": 0}}},
         "aligned model has a non-numeric value"),
    ):
        bad = {**d, **change}
        p = tmp_path / "bad.json"
        p.write_text(json.dumps(bad))
        with pytest.raises(LikelihoodError, match=msg):
            VisualLikelihood.load(p)
    d.pop("retrieved")
    (tmp_path / "bad.json").write_text(json.dumps(d))
    with pytest.raises(LikelihoodError, match="lacks the 'retrieved' model"):
        VisualLikelihood.load(tmp_path / "bad.json")
    with pytest.raises(LikelihoodError, match="cannot read the likelihood calibration"):
        VisualLikelihood.load(tmp_path / "missing.json")
    with pytest.raises(LikelihoodError, match="needs 3 finite weights"):
        ScoreModel("aligned", 0.0, (1.0,))
    with pytest.raises(LikelihoodError, match="kind must be one of"):
        ScoreModel("cosine", 0.0, (1.0, 2.0))


def test_default_calibration_rises_with_the_score():
    a = default_likelihood().aligned.probability(aligned_features([0.2, 0.5, 0.9], [1.2, 1.2, 1.2], 0.0))
    assert a[0] < a[1] < a[2] and a[2] - a[0] > 0.3 and a[2] > 0.95
    seeded = default_likelihood().aligned.probability(aligned_features([0.65, 0.65], [1.3, 1.3], [0.0, 6.0]))
    assert seeded[1] < seeded[0]  # the same NCC from a whole-map search's tile is less often right
    r = default_likelihood().retrieved.probability(retrieved_features([0.7, 0.7], [0.75, 0.75], [0.2, 0.005], 3.0))
    assert r[0] > 0.3 > r[1]  # where every tile looks alike (water), a high cosine means little
    assert default_likelihood().aligned.n > 0 and default_likelihood().retrieved.n > 0  # fitted from data


def _tracker(**cfg):
    t = ParticleTracker(TrackerConfig(n_particles=2000, seed=3, **cfg), bounds=(-500, -500, 500, 500))
    t.update_gps(0, 0.0, 0.0, 30.0)
    return t


def _fix(probs, t_ns=100_000_000):
    return VisualFix(t_ns=t_ns, positions=[[20.0, 0.0], [-20.0, 0.0]], scores=[0.9, 0.9], sigma_m=2.0,
                     scope=(0.0, 0.0, 100.0), probs=probs)


def test_tracker_weighs_candidates_by_calibrated_probability():
    sure = _tracker()
    sure.update_visual(_fix([0.95, 0.05]))
    assert sure.estimate().x > 15.0  # the likely candidate wins although both scores are equal
    doubt = _tracker()
    support = doubt.update_visual(_fix([0.02, 0.01]))
    soft = _tracker()
    support_soft = soft.update_visual(_fix(None))  # softmax of equal scores, inlier prob 0.8
    assert support < 0.2 < support_soft
    # an unlikely fix leaves more particles where they were than the uncalibrated one does
    pd, ps = doubt.particles()[0], soft.particles()[0]
    near = lambda s: float(np.mean(np.abs(np.abs(s[:, 0]) - 20.0) > 6.0))  # noqa: E731
    assert near(pd) > near(ps)


def test_tracker_uses_the_fix_inlier_probability():
    low, high = _tracker(), _tracker()
    f = dict(t_ns=100_000_000, positions=[[20.0, 0.0]], scores=[0.9], sigma_m=2.0, scope=(0.0, 0.0, 100.0), probs=[0.9])
    s_low = low.update_visual(VisualFix(**f, inlier_prob=0.05))
    s_high = high.update_visual(VisualFix(**f, inlier_prob=0.95))
    assert s_low < s_high
    assert high.estimate().x > low.estimate().x


def test_tracker_caps_calibrated_inlier_probability():
    t = _tracker(visual_inlier_max=0.9)
    t.update_visual(_fix([1.0, 0.0]))  # a certain fix still keeps the floor; a zero-probability candidate has no say
    assert t.estimate().x > 15.0
    assert np.all(np.isfinite(t.particles()[1]))


def test_visual_fix_probs_are_checked():
    with pytest.raises(TrackingError, match=r"VisualFix.probs must be float\[2\] probabilities in \[0, 1\]"):
        _fix([0.5])
    with pytest.raises(TrackingError, match=r"VisualFix.inlier_prob must be a probability in \[0, 1\]"):
        VisualFix(t_ns=0, positions=[[0.0, 0.0]], scores=[0.9], sigma_m=1.0, inlier_prob=1.5)
    with pytest.raises(TrackingError, match="probabilities in"):
        _fix([0.5, 1.5])
    with pytest.raises(TrackingError, match="visual_inlier_min .* must be below visual_inlier_max"):
        TrackerConfig(visual_inlier_min=0.5, visual_inlier_max=0.4)


def test_localizer_likelihood_setting(tmp_path):
    from runtime.localizer import Localizer, LocalizerConfig, LocalizerError

    assert Localizer(None, None).likelihood is default_likelihood()
    assert Localizer(None, None, config=LocalizerConfig(likelihood="softmax")).likelihood is None
    p = tmp_path / "lik.json"
    default_likelihood().save(p)
    assert Localizer(None, None, config=LocalizerConfig(likelihood=str(p))).likelihood == default_likelihood()
    with pytest.raises(LocalizerError, match="localizer likelihood: cannot read the likelihood calibration"):
        Localizer(None, None, config=LocalizerConfig(likelihood=str(tmp_path / "nope.json")))
    with pytest.raises(LocalizerError, match="localizer likelihood must be 'default', 'softmax' or a calibration"):
        LocalizerConfig(likelihood="")
    with pytest.raises(LocalizerError, match="localizer min_fix_prob must be a probability in"):
        LocalizerConfig(min_fix_prob=1.0)
    with pytest.raises(LocalizerError, match="localizer align_min_peak_ratio must be a number >= 1, got 0.9"):
        LocalizerConfig(align_min_peak_ratio=0.9)
    with pytest.raises(LocalizerError, match="localizer align_max_sigma_m must be a number > 0 metres, got 0"):
        LocalizerConfig(align_max_sigma_m=0)
    with pytest.raises(LocalizerError, match="localizer imu_accel must be true or false"):
        LocalizerConfig(imu_accel="yes")
    with pytest.raises(LocalizerError, match="localizer gps_velocity must be 'no_imu', 'always' or 'never', got 'x'"):
        LocalizerConfig(gps_velocity="x")


def test_fit_and_check_commands_on_simulated_flights(shared_data, tmp_path, capsys):
    pytest.importorskip("rasterio")
    from runtime.cli.onboard import main

    ortho = shared_data("ortho/swissimage_zurich_a_0.5m.tif")
    out = tmp_path / "lik.json"
    ortho = str(ortho)
    common = ["--model", "classical", "--flights", "no_gps-noimu", "noisy", "--seeds", "1", "--duration", "16",
              "--out", str(tmp_path / "work")]
    assert main(["likelihood", "fit", ortho, "-o", str(out), "--json", str(tmp_path / "fit.json"), *common]) == 0
    text = capsys.readouterr().out
    assert "calibrated aligned per candidate" in text and "softmax retrieved_wide per fix" in text
    lik = VisualLikelihood.load(out)
    assert lik.aligned.n > 20 and lik.retrieved.n >= 20
    assert lik.aligned.coef[0] > 0  # a higher NCC is more often right
    assert "zurich_a" in lik.source
    rel = json.loads((tmp_path / "fit.json").read_text())
    assert 0.0 <= rel["calibrated"]["aligned"]["candidate"]["ece"] <= 1.0
    assert rel["sigma"]["n"] > 0
    assert not list((tmp_path / "work").rglob("*.bag"))  # bags are removed as they are used
    assert main(["likelihood", "check", str(out), ortho, *common, "--seed", "5"]) == 0
    assert "calibrated aligned per fix" in capsys.readouterr().out


def test_candidate_data_round_trip_and_errors(tmp_path):
    from runtime.cli.likelihood import LikelihoodError as CliError
    from runtime.cli.likelihood import fit, labelled, load_data, merge, save_data

    g = np.random.default_rng(0)

    def part(n=60, m=200):
        a = np.column_stack([g.normal(0, 50, (n, 2)), g.uniform(0, 1, n), np.full(n, 1.5), g.uniform(1, 3, n),
                             np.ones(n), g.uniform(0, 5, n)])
        r = np.column_stack([g.normal(0, 50, (m, 2)), g.uniform(0.3, 0.9, m), np.full(m, 6.4), np.full(m, 0.95),
                             g.uniform(0, 0.3, m), np.full(m, 3.0)])
        return {"aligned": a, "aligned_dist": 20.0 * (1.0 - a[:, 2]) * g.uniform(0, 1, n),
                "aligned_frame": np.arange(n) // 2, "retrieved": r, "retrieved_dist": 60.0 * (1.0 - r[:, 2]),
                "retrieved_frame": np.arange(m) // 8, "retrieved_used": np.zeros(m, bool),
                "retrieved_probe": np.arange(m) % 16 >= 8}

    data = merge([part(), part()])
    assert data["aligned_frame"].max() == 59 and len(data["retrieved"]) == 400
    path = tmp_path / "cands.npz"
    save_data(path, data)
    back = load_data(path)
    assert set(back) == set(data) and all(np.array_equal(back[k], data[k]) for k in data)
    lab = labelled(back)
    assert lab["aligned_y"].dtype == bool and lab["retrieved_x"].shape == (400, 4)
    lik = fit(back, "synthetic")
    assert lik.aligned.coef[0] > 0 and lik.retrieved.coef[0] > 0  # higher scores were closer to the truth
    assert lik.fix_rule in ("max", "sum")
    bad = dict(data)
    bad.pop("retrieved_probe")
    save_data(tmp_path / "bad.npz", bad)
    with pytest.raises(CliError, match=r"lacks \['retrieved_probe'\]; write it with --save-data"):
        load_data(tmp_path / "bad.npz")
    bad = dict(data, retrieved=data["retrieved"][:, :5])
    save_data(tmp_path / "bad.npz", bad)
    with pytest.raises(CliError, match=r"retrieved must be float\[n, 7\], got \[400, 5\]"):
        load_data(tmp_path / "bad.npz")
    with pytest.raises(CliError, match="cannot read candidate data"):
        load_data(tmp_path / "none.npz")

