"""ParticleTracker: initialisation, motion, gating and visual mechanics on small hand-made inputs; error messages."""

from __future__ import annotations

import math

import numpy as np
import pytest

from runtime.tracking import ParticleTracker, Status, TrackerConfig, TrackingError, VisualFix, bench_tracker

NS = 1_000_000_000


def _tracker(**cfg) -> ParticleTracker:
    return ParticleTracker(TrackerConfig(**cfg) if cfg else None)


def test_uninitialised_tracker_is_lost_and_asks_for_a_wide_search():
    trk = _tracker()
    assert not trk.initialized and trk.t_ns is None
    e = trk.estimate()
    assert e.status is Status.LOST and e.gps_state == "none" and not e.visual_used
    assert math.isnan(e.x) and math.isnan(e.y) and math.isinf(e.sigma_m) and e.n_eff == 0.0
    assert any("not initialised" in n for n in e.notes)
    assert trk.search_scope() is None
    hyp = trk.yaw_hypotheses(4)
    assert hyp == pytest.approx([0.0, math.pi / 2, -math.pi, -math.pi / 2])


def test_first_gps_fix_initialises_around_it():
    trk = _tracker()
    d = trk.update_gps(3 * NS, 100.0, -50.0, 5.0)
    assert d.accepted and d.reason.startswith("init:") and math.isnan(d.distance_m)
    e = trk.estimate()
    assert trk.initialized and e.t_ns == 3 * NS
    assert abs(e.x - 100.0) < 1.0 and abs(e.y + 50.0) < 1.0
    # sigma = sqrt(5^2 + gps_bias_m^2) = sqrt(50): the fix's noise and the bias prior
    assert e.sigma_m == pytest.approx(math.sqrt(50.0), rel=0.1)
    b, cb = trk.gps_bias()
    assert np.hypot(*b) < 0.5 and np.sqrt(np.diag(cb)) == pytest.approx([5.0, 5.0], rel=0.1)
    # no camera has checked the GPS: DEGRADED, and the note says why
    assert e.status is Status.DEGRADED and e.gps_state == "ok" and "initialised at the first GPS fix" in e.notes
    assert any(n.startswith("not checked by a precise camera fix") for n in e.notes)
    assert e.n_eff == pytest.approx(1500.0)
    assert trk.estimate().notes == e.notes  # estimate() has no side effects
    trk.update_gps(3 * NS + NS + NS // 5, 100.0, -50.0, 5.0)
    assert not any("initialised" in n for n in trk.estimate().notes)  # event notes are held for 1 s


def test_predict_with_velocity_moves_the_belief_and_yaw_pins_it():
    trk = _tracker()
    trk.update_gps(0, 0.0, 0.0, 1.0)
    for i in range(1, 11):
        trk.predict(i * NS // 10, velocity_xy=(10.0, -5.0), velocity_sigma=0.1, yaw=1.0, yaw_sigma=0.01)
    e = trk.estimate()
    assert e.x == pytest.approx(10.0, abs=0.6) and e.y == pytest.approx(-5.0, abs=0.6)
    assert e.yaw_rad == pytest.approx(1.0, abs=0.01) and e.yaw_sigma_rad < 0.02
    assert trk.yaw_hypotheses() is None


def test_yaw_rate_is_integrated_without_an_imu_yaw():
    trk = _tracker(yaw_rate_sigma=0.01)
    trk.predict(0, yaw=0.0, yaw_sigma=0.01)
    trk.update_gps(0, 0.0, 0.0, 1.0)
    trk.predict(0, yaw=0.0, yaw_sigma=0.01)
    for i in range(1, 11):
        trk.predict(i * NS // 10, yaw_rate=0.5)
    assert trk.estimate().yaw_rad == pytest.approx(0.5, abs=0.02)


def test_yaw_hypotheses_cover_a_partly_known_yaw():
    trk = _tracker()
    trk.predict(0, yaw=2.0, yaw_sigma=0.5)  # remembered for the initialisation
    trk.update_gps(0, 0.0, 0.0, 1.0)
    mean, sig = trk.estimate().yaw_rad, trk.estimate().yaw_sigma_rad
    assert mean == pytest.approx(2.0, abs=0.1) and 0.4 < sig < 0.6
    hyp = trk.yaw_hypotheses(5)
    assert len(hyp) == 5 and hyp[2] == pytest.approx(mean)
    assert hyp[0] == pytest.approx(mean - 2.5 * sig) and hyp[4] == pytest.approx(mean + 2.5 * sig - 2 * math.pi)


def test_search_scope_covers_the_belief_and_widens_to_none():
    trk = _tracker()
    trk.update_gps(0, 10.0, 20.0, 5.0)
    x, y, r = trk.search_scope()
    assert (abs(x - 10) < 1 and abs(y - 20) < 1)
    sigma = trk.estimate().sigma_m
    assert r == pytest.approx(max(60.0, 3 * sigma + 25.6))
    assert trk.search_scope(min_radius_m=200.0)[2] == 200.0
    assert trk.search_scope(min_radius_m=2000.0) is None  # above wide_search_radius_m
    small = ParticleTracker(bounds=(0.0, 0.0, 50.0, 50.0))
    small.update_gps(0, 25.0, 25.0, 5.0)
    assert small.search_scope() is None  # the circle holds the whole map


def test_a_lone_outlier_is_dropped_and_the_next_fix_used():
    trk = _tracker()
    for i in range(6):
        assert trk.update_gps(i * NS // 5, 0.0, 0.0, 2.0).accepted
    d = trk.update_gps(NS + NS // 5, 200.0, 0.0, 2.0)
    assert not d.accepted and d.reason.startswith("gate: the fix is 200.0 m off the GPS's own track (NIS ")
    assert d.distance_m == pytest.approx(200.0, abs=1.0) and d.nis > 25
    e = trk.estimate()
    assert e.status is Status.GPS_REJECTED and e.gps_state == "rejected" and abs(e.x) < 2.0
    d = trk.update_gps(NS + 2 * NS // 5, 0.0, 0.0, 2.0)  # back on its own track: the jump was not confirmed
    assert d.accepted and d.reason.startswith("consistent:") and trk.gps_faults["jump"] == 0
    assert trk.estimate().gps_state == "ok"


def test_a_confirmed_jump_faults_the_gps_until_its_innovations_agree_again():
    trk = _tracker()
    for i in range(6):
        assert trk.update_gps(i * NS // 5, 0.0, 0.0, 2.0).accepted
    t = NS
    first = trk.update_gps(t + NS // 5, 200.0, 0.0, 2.0)
    second = trk.update_gps(t + 2 * NS // 5, 200.0, 0.0, 2.0)
    assert not first.accepted and not second.accepted
    assert second.reason.startswith("jump: the GPS track jumped 200 m") and trk.gps_faults["jump"] == 1
    e = trk.estimate()
    assert e.status is Status.GPS_REJECTED and abs(e.x) < 2.0  # the belief did not move
    assert any(n.startswith("gps rejected: the GPS track jumped 200 m") for n in e.notes)
    more = [trk.update_gps(t + k * NS // 5, 200.0, 0.0, 2.0) for k in range(3, 10)]  # continuous, but faulted
    assert not any(d.accepted for d in more) and all(d.reason.startswith("probation:") for d in more)
    # the GPS comes back (a second jump); it is used once its innovations over gps_reaccept_s agree with the belief
    times = [t + k * NS // 5 for k in range(10, 30)]
    decisions = [trk.update_gps(tk, 0.0, 0.0, 2.0) for tk in times]
    first_ok = next(i for i, d in enumerate(decisions) if d.accepted)
    assert decisions[first_ok].reason.startswith("reaccepted: its innovations agree with the belief again")
    assert 2.0 <= (times[first_ok] - times[0]) / NS <= 2.5
    assert all(d.accepted for d in decisions[first_ok:]) and trk.estimate().gps_state == "ok"


def test_absolute_jump_limit_applies_even_when_nis_is_small():
    trk = _tracker(gps_gate_chi2=1e6, gps_max_jump_m=50.0)
    trk.update_gps(0, 0.0, 0.0, 1.0)
    d = trk.update_gps(NS // 5, 80.0, 0.0, 1.0)
    assert not d.accepted and "> gps_max_jump_m 50 m" in d.reason


def test_outage_is_noted_and_degrades():
    trk = _tracker()
    trk.update_gps(0, 0.0, 0.0, 5.0)
    trk.predict(3 * NS)
    e = trk.estimate()
    assert e.gps_state == "outage" and e.status is Status.DEGRADED
    assert "gps outage: no fix used for 3.0 s" in e.notes
    assert any(n.startswith("dead reckoning") for n in e.notes)


def test_lost_without_support_then_gps_reinitialises():
    trk = _tracker(lost_no_support_s=5.0)
    trk.update_gps(0, 0.0, 0.0, 5.0)
    trk.predict(6 * NS)
    e = trk.estimate()
    assert e.status is Status.LOST and trk.search_scope() is None
    assert any(n.startswith("lost: no accepted GPS and no visual support for 6.0 s") for n in e.notes)
    d = trk.update_gps(6 * NS, 500.0, 500.0, 5.0)  # far from the old belief, but the belief is lost
    assert d.accepted and d.reason.startswith("reinit:")
    e = trk.estimate()
    assert abs(e.x - 500) < 2 and abs(e.y - 500) < 2 and e.status is Status.DEGRADED  # no camera checks it


def test_spread_beyond_lost_sigma_is_lost():
    trk = _tracker(lost_sigma_m=20.0, ok_sigma_m=5.0)
    trk.update_gps(0, 0.0, 0.0, 30.0)
    e = trk.estimate()
    assert e.status is Status.LOST and "lost: spread" in " ".join(e.notes)


def _visual(t, pos, scores=None, sigma=1.0, yaws=None, scope=None):
    pos = np.atleast_2d(np.asarray(pos, dtype=float))
    k = len(pos)
    return VisualFix(t, pos, np.full(k, 0.8) if scores is None else scores, np.full(k, sigma), yaws, 0.1, scope)


def test_consistent_visual_fix_supports_and_sharpens():
    trk = _tracker()
    trk.update_gps(0, 0.0, 0.0, 5.0)
    sup = trk.update_visual(_visual(0, [[2.0, 1.0], [300.0, 0.0]]))
    assert sup > 0.9
    e = trk.estimate()
    assert math.hypot(e.x - 2.0, e.y - 1.0) < 0.7 and e.sigma_m < 2.0
    assert not e.visual_used  # needs visual_confirm_frames consecutive supporting fixes
    trk.update_visual(_visual(0, [[2.0, 1.0]]))
    trk.update_visual(_visual(0, [[2.0, 1.0]]))
    assert trk.estimate().visual_used


def test_a_confident_wrong_retrieval_does_not_kill_the_filter():
    trk = _tracker()
    trk.update_gps(0, 0.0, 0.0, 5.0)
    before = trk.estimate()
    sup = trk.update_visual(_visual(0, [[150.0, 40.0]], scores=np.array([0.99]), scope=(0.0, 0.0, 200.0)))
    after = trk.estimate()
    assert sup < 0.01
    assert math.hypot(after.x - before.x, after.y - before.y) < 0.01
    assert after.n_eff == pytest.approx(before.n_eff)


def test_empty_visual_fix_changes_nothing():
    trk = _tracker()
    assert trk.update_visual(_visual(0, np.zeros((0, 2)))) == 0.0
    assert not trk.initialized


def test_visual_yaw_informs_the_particle_yaw():
    trk = _tracker()
    trk.update_gps(0, 0.0, 0.0, 1.0)  # yaw unknown: uniform
    assert trk.estimate().yaw_sigma_rad > 2.0
    for i in range(8):
        trk.update_visual(_visual(i * NS // 5, [[0.0, 0.0]], yaws=np.array([-2.0])))
    e = trk.estimate()
    assert e.yaw_rad == pytest.approx(-2.0, abs=0.1) and e.yaw_sigma_rad < 0.3


def test_visual_initialisation_is_multimodal():
    trk = _tracker()
    cands = np.array([[0.0, 0.0], [200.0, 0.0], [0.0, 300.0]])
    assert trk.update_visual(_visual(0, cands, scores=np.array([0.8, 0.79, 0.78]))) == 0.0
    assert trk.initialized
    states, w = trk.particles()
    near = [np.sum(np.hypot(states[:, 0] - c[0], states[:, 1] - c[1]) < 5.0) for c in cands]
    assert all(n > 200 for n in near) and sum(near) == 1500
    e = trk.estimate()
    assert e.status is Status.LOST and "initialised from 3 visual candidates" in e.notes
    assert trk.search_scope() is None


def test_same_seed_same_result_and_reset():
    def run(seed):
        trk = _tracker(seed=seed)
        trk.update_gps(0, 0.0, 0.0, 5.0)
        trk.predict(NS)
        trk.update_visual(_visual(NS, [[1.0, 1.0]]))
        return trk, trk.estimate()

    (a, ea), (_, eb), (_, ec) = run(1), run(1), run(2)
    assert (ea.x, ea.y, ea.yaw_rad) == (eb.x, eb.y, eb.yaw_rad)
    assert ea.x != ec.x
    a.reset()
    assert not a.initialized and a.t_ns is None and a.estimate().status is Status.LOST
    a.update_gps(0, 0.0, 0.0, 5.0)
    a.predict(NS)
    a.update_visual(_visual(NS, [[1.0, 1.0]]))
    assert a.estimate().x == ea.x


def test_small_time_steps_back_are_tolerated_large_ones_raise():
    trk = _tracker()
    trk.update_gps(10 * NS, 0.0, 0.0, 5.0)
    trk.update_visual(_visual(10 * NS - NS // 2, [[0.0, 0.0]]))  # 0.5 s late: applied now
    assert trk.t_ns == 10 * NS
    with pytest.raises(TrackingError) as e:
        trk.predict(8 * NS)
    assert str(e.value) == (
        f"predict t_ns {8 * NS} is 2.000 s before the tracker's time {10 * NS}; timestamps may go back at most "
        "max_backstep_s = 1 s (tracker: max_backstep_s in --config; replaying from the start needs a new run, or from Python the "
        "tracker's reset())"
    )


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda t: t.predict(1.0), "predict t_ns must be an integer number of nanoseconds, got 1.0 (float)"),
        (lambda t: t.predict(0, velocity_xy=(1.0,)), "predict velocity_xy must be 2 finite numbers (east, north) in m/s, got (1.0,)"),
        (lambda t: t.predict(0, velocity_xy=(1.0, 2.0), velocity_sigma=0), "predict velocity_sigma must be a finite number > 0, got 0"),
        (lambda t: t.predict(0, yaw=float("nan")), "predict yaw must be a finite number, got nan"),
        (lambda t: t.predict(0, yaw=0.0, yaw_sigma=-1), "predict yaw_sigma must be a finite number > 0, got -1"),
        (lambda t: t.predict(0, yaw_rate="fast"), "predict yaw_rate must be a number, got 'fast' (str)"),
        (lambda t: t.update_gps(0, float("inf"), 0.0, 5.0), "update_gps x must be a finite number, got inf"),
        (lambda t: t.update_gps(0, 0.0, None, 5.0), "update_gps y must be a number, got None (NoneType)"),
        (lambda t: t.update_gps(0, 0.0, 0.0, 0.0), "update_gps sigma_m must be a finite number > 0, got 0.0"),
        (lambda t: t.update_gps(0, 0.0, 0.0, 5.0, velocity_xy=[1, 2, 3]),
         "update_gps velocity_xy must be 2 finite numbers (east, north) in m/s, got [1, 2, 3]"),
        (lambda t: t.update_gps(0, 0.0, 0.0, 5.0, velocity_xy=[1, 2], velocity_sigma=0.0),
         "update_gps velocity_sigma must be a finite number > 0, got 0.0"),
        (lambda t: t.update_gps(np.float64(1.0), 0.0, 0.0, 5.0),
         "update_gps t_ns must be an integer number of nanoseconds, got np.float64(1.0) (float64)"),
        (lambda t: t.update_visual((0, [[0, 0]])), "update_visual expects a VisualFix, got tuple"),
        (lambda t: t.update_velocity(0, (1.0, math.nan), 0.3),
         "update_velocity velocity_xy must be 2 finite numbers (east, north) in m/s, got (1.0, nan)"),
        (lambda t: t.update_velocity(0, (1.0, 0.0), -0.3), "update_velocity sigma_mps must be a finite number > 0, got -0.3"),
        (lambda t: t.update_velocity(0, (1.0, 0.0), 0.3, inlier_prob=1.0),
         "update_velocity inlier_prob must be in (0, 1), got 1.0"),
        (lambda t: t.search_scope(min_radius_m=0), "search_scope min_radius_m must be a finite number > 0, got 0"),
        (lambda t: t.yaw_hypotheses(0), "yaw_hypotheses n must be an integer >= 1, got 0"),
        (lambda t: t.yaw_hypotheses(2.0), "yaw_hypotheses n must be an integer >= 1, got 2.0"),
    ],
)
def test_call_error_messages(call, message):
    with pytest.raises(TrackingError) as e:
        call(_tracker())
    assert str(e.value) == message


@pytest.mark.parametrize("bounds", [(0, 0, 10), (0, 0, -10, 10), (0, 0, 10, float("nan")), "0 0 10 10"])
def test_bad_bounds(bounds):
    with pytest.raises(TrackingError, match=r"bounds must be the map extent \(x_min, y_min, x_max, y_max\)"):
        ParticleTracker(bounds=bounds)


def test_config_must_be_a_tracker_config():
    with pytest.raises(TrackingError) as e:
        ParticleTracker({"n_particles": 100})
    assert str(e.value) == (
        "config must be a TrackerConfig (use TrackerConfig.from_dict for a mapping), got dict"
    )


def test_bench_tracker_reports_each_call():
    out = bench_tracker(n_particles=100, k=4, steps=3)
    assert set(out) == {"predict", "update_gps", "update_visual", "estimate"}
    assert all(v > 0 for v in out.values())


def test_gps_velocity_sets_the_particle_velocities():
    trk = _tracker()
    trk.update_gps(0, 0.0, 0.0, 2.0, velocity_xy=(6.0, -3.0))
    states, w = trk.particles()
    assert w @ states[:, 2] == pytest.approx(6.0, abs=0.2) and w @ states[:, 3] == pytest.approx(-3.0, abs=0.2)
    for i in range(1, 6):
        trk.update_gps(i * NS // 5, 6.0 * i / 5, -3.0 * i / 5, 2.0, velocity_xy=(6.0, -3.0))
    e = trk.estimate()
    assert e.x == pytest.approx(6.0, abs=1.5) and e.y == pytest.approx(-3.0, abs=1.5)
    states, w = trk.particles()
    assert w @ states[:, 2] == pytest.approx(6.0, abs=0.5)


def test_gps_velocity_makes_the_particle_velocities_converge_to_it():
    """Started at rest (no velocity at the first fix), the particles learn (6, -3) m/s from the fixes' velocity; the
    positions alone (sigma 5 m) leave the velocity far less certain, and a smaller velocity_sigma pins it tighter."""

    def run(velocity_sigma=None, with_velocity=True):
        trk = _tracker(seed=3)
        trk.update_gps(0, 0.0, 0.0, 5.0)  # no velocity: particles start around 0 m/s
        for i in range(1, 26):  # 5 s at 5 Hz, fixes exactly on the moving truth
            t = i * NS // 5
            trk.update_gps(t, 6.0 * t / NS, -3.0 * t / NS, 5.0,
                           velocity_xy=(6.0, -3.0) if with_velocity else None, velocity_sigma=velocity_sigma)
        states, w = trk.particles()
        v = states[:, 2:4]  # (n, 5) states: x, y, vx, vy, yaw
        mean = w @ v
        spread = math.sqrt(float(w @ np.sum((v - mean) ** 2, axis=1)))
        return mean, spread

    m_default, s_default = run()  # config.gps_velocity_sigma_mps (1 m/s)
    m_tight, s_tight = run(velocity_sigma=0.2)
    _, s_none = run(with_velocity=False)
    np.testing.assert_allclose(m_default, [6.0, -3.0], atol=0.4)
    np.testing.assert_allclose(m_tight, [6.0, -3.0], atol=0.15)
    assert s_tight < s_default < s_none
    assert s_tight < 0.35 and s_default < 1.3 and s_none > 2.0  # m/s, 2-D rms about the mean


def test_ground_velocity_redraws_unknown_velocities_then_weights_known_ones():
    """After a visual initialisation (velocity unknown, 8 m/s per axis) a measured ground velocity replaces the
    particle velocities; once they are known, a wild measurement is mostly explained by the outlier floor."""
    trk = _tracker()
    assert trk.update_velocity(0, (5.0, -2.0), 0.3) == "uninitialised"
    trk.update_visual(_visual(0, [[0.0, 0.0]]))
    assert trk.update_velocity(NS // 5, (5.0, -2.0), 0.3) == "redrawn"
    states, w = trk.particles()
    assert w @ states[:, 2] == pytest.approx(5.0, abs=0.05) and w @ states[:, 3] == pytest.approx(-2.0, abs=0.05)
    assert trk.update_velocity(2 * NS // 5, (5.1, -2.0), 0.3) == "weighted"
    assert trk.update_velocity(3 * NS // 5, (-20.0, 15.0), 0.3) == "weighted"  # 30 m/s off: not redrawn
    states, w = trk.particles()
    assert w @ states[:, 2] == pytest.approx(5.0, abs=0.3) and w @ states[:, 3] == pytest.approx(-2.0, abs=0.3)
    assert trk.estimate().x == pytest.approx(0.4 * 5.0, abs=0.5)  # moved by it since the redraw, 0.4 s


def test_ground_velocities_that_keep_contradicting_a_tight_belief_re_anchor_it():
    """A belief that picked up a wrong velocity (10 m/s off, spread 0.3 m/s: no particle near the truth) is not
    moved by floor-weighted measurements; two in a row that conflict with it and agree with each other re-anchor the
    particle velocities on the measurement, spread kept -- once no GPS fix is in use (a GPS holds the velocity:
    then the images are what is wrong). A lone conflicting one, or two that disagree, do not."""

    def wrong_belief():
        trk = _tracker(seed=5, accel_sigma=0.1, gps_velocity_sigma_mps=0.3)
        trk.update_gps(0, 0.0, 0.0, 2.0, velocity_xy=(-15.0, 1.0))
        return trk

    def spread(trk):
        states, w = trk.particles()
        v = states[:, 2:4]
        return w @ v, math.sqrt(float(w @ np.sum((v - w @ v) ** 2, axis=1)) / 2.0)

    trk = wrong_belief()
    assert trk.update_velocity(NS, (-5.0, -3.0), 0.35) == "weighted"
    assert trk.update_velocity(2 * NS, (-5.3, -2.8), 0.35) == "weighted"  # the GPS fix of t=0 is still in use
    trk = wrong_belief()
    trk.predict(2 * NS)  # the GPS is gone (gps_outage_s)
    _, s0 = spread(trk)
    assert trk.update_velocity(3 * NS, (-5.0, -3.0), 0.35) == "weighted"
    m1, _ = spread(trk)
    np.testing.assert_allclose(m1, [-15.0, 1.0], atol=0.3)  # one measurement: the floor explains it
    assert trk.update_velocity(4 * NS, (-5.3, -2.8), 0.35) == "reanchored"
    m2, s2 = spread(trk)
    np.testing.assert_allclose(m2, [-5.3, -2.8], atol=1e-6)
    assert s0 < 0.4 and s2 < 0.5 and trk.velocity_reanchors == 1  # moved, not redrawn wide
    assert any("re-anchored" in n for n in trk.estimate().notes)
    assert trk.update_velocity(5 * NS, (-5.2, -2.9), 0.35) == "weighted"  # consistent now

    trk = wrong_belief()
    trk.predict(2 * NS)
    assert trk.update_velocity(3 * NS, (-5.0, -3.0), 0.35) == "weighted"
    assert trk.update_velocity(4 * NS, (-15.0, 1.0), 0.35) == "weighted"  # agrees with the belief: run broken
    assert trk.update_velocity(5 * NS, (-5.0, -3.0), 0.35) == "weighted"
    assert trk.update_velocity(6 * NS, (5.0, 8.0), 0.35) == "weighted"  # conflicts, but not with the last one
    assert trk.update_velocity(10 * NS, (5.0, 8.0), 0.35) == "weighted"  # agrees, but 4 s later: a new run
    m, _ = spread(trk)
    np.testing.assert_allclose(m, [-15.0, 1.0], atol=0.3)
    assert trk.velocity_reanchors == 0
    with pytest.raises(TrackingError, match="velocity_conflict_count must be >= 1"):
        TrackerConfig(velocity_conflict_count=0)


def _sparse_spot(states, w, centre, radius):
    """The grid point within ``radius`` of ``centre`` farthest from every particle."""
    g = np.linspace(-radius, radius, 41)
    pts = np.array([(centre[0] + a, centre[1] + b) for a in g for b in g if a * a + b * b <= radius * radius])
    d = np.min(np.hypot(pts[:, None, 0] - states[None, :, 0], pts[:, None, 1] - states[None, :, 1]), axis=1)
    return pts[int(np.argmax(d))], float(d.max())


def test_precise_fix_where_the_particles_are_sparse_draws_particles_there():
    """A wide belief (GPS sigma 15 m, 200 particles) meets a precise, confident fix in a gap between particles:
    particles are drawn around the fix instead of collapsing onto the few nearest ones, metres away."""
    errs = {}
    for mass in (0.5, 0.999999):  # the default, and injection effectively off
        trk = _tracker(n_particles=200, inject_min_mass=mass)
        trk.update_gps(0, 0.0, 0.0, 15.0)
        states, w = trk.particles()
        spot, gap = _sparse_spot(states, w, (0.0, 0.0), 15.0)
        assert gap > 2.5
        fix = VisualFix(0, spot[None, :], np.array([0.9]), np.array([0.5]), None, 0.1, (0.0, 0.0, 100.0),
                        probs=np.array([0.97]))
        trk.update_visual(fix)
        e = trk.estimate()
        errs[mass] = math.hypot(e.x - spot[0], e.y - spot[1])
        if mass == 0.5:
            assert trk.injections == 1 and any("drawn around it" in n for n in e.notes)
        else:
            assert trk.injections == 0
    assert errs[0.5] < 0.5 < 1.5 < errs[0.999999]


def test_no_particles_are_drawn_for_a_fix_the_belief_rules_out():
    """A precise fix 60 m from a belief of sigma 3 m (and one in the gap between two modes) is left to the outlier
    floor: the kernel density of the particles there is nil."""
    trk = _tracker()
    trk.update_gps(0, 0.0, 0.0, 3.0)
    trk.update_visual(VisualFix(0, np.array([[60.0, 0.0]]), np.array([0.9]), np.array([0.5]), None, 0.1,
                                (0.0, 0.0, 100.0), probs=np.array([0.97])))
    assert trk.injections == 0 and abs(trk.estimate().x) < 1.0
    trk = _tracker()
    trk.update_visual(_visual(0, [[-40.0, 0.0], [40.0, 0.0]]))  # two modes
    trk.update_visual(VisualFix(0, np.array([[0.0, 0.0]]), np.array([0.9]), np.array([0.5]), None, 0.1, None,
                                probs=np.array([0.97])))
    assert trk.injections == 0


def test_lost_belief_is_replaced_only_by_fixes_that_agree_for_reinit_confirm_s():
    """LOST (no support for lost_no_support_s) but still narrow: a look-alike place seen in one frame does not
    re-initialise; the same place seen for reinit_confirm_s (moving as the belief moves) does."""
    trk = _tracker()
    trk.update_gps(0, 0.0, 0.0, 2.0, velocity_xy=(0.0, 0.0))
    t = 16 * NS
    trk.predict(t, velocity_xy=(0.0, 0.0), velocity_sigma=0.05)
    assert trk.estimate().status is Status.LOST and trk.estimate().sigma_m < trk.config.lost_sigma_m
    far = [[300.0, 100.0]]
    trk.update_visual(_visual(t, far, scope=(0.0, 0.0, 500.0)))
    assert abs(trk.estimate().x) < 5.0  # one frame: kept
    # one frame elsewhere (an outlier) does not break the run
    trk.update_visual(_visual(t + NS // 5, [[-200.0, 50.0]], scope=(0.0, 0.0, 500.0)))
    for i in range(2, 13):
        trk.update_visual(_visual(t + i * NS // 5, far, scope=(0.0, 0.0, 500.0)))
        if i / 5 < trk.config.reinit_confirm_s:
            assert abs(trk.estimate().x) < 5.0, i
    e = trk.estimate()
    assert math.hypot(e.x - 300.0, e.y - 100.0) < 3.0
    assert any("re-initialised from 1 visual candidates" in n for n in e.notes)


def _belief_unknown_velocity(**cfg):
    """A tracker initialised at (0, 0) by a visual fix (2 m), velocity unknown (init_speed_sigma_mps per axis)."""
    trk = _tracker(**cfg)
    trk.update_visual(_visual(0, [[0.0, 0.0]], sigma=2.0))
    return trk


def test_displacement_carries_a_fix_over_a_long_gap():
    """Velocity unknown (8 m/s per axis): 6 s later the belief is ~50 m wide, too wide for its particles to
    represent a 1 m measurement: a displacement measured from the anchored frame (30 m east) redraws them, the
    belief back to the anchor's 2 m with the measurement's 1 m around (30, 0), the velocities to ~5 m/s east. A
    second one 6 s later, as wide as what the velocity noise lets the belief wander (accel_sigma 1.5: ~13 m),
    weights it."""
    trk = _belief_unknown_velocity()
    trk.mark_anchor()
    assert trk.anchor_t_ns == 0
    trk.predict(6 * NS)
    wide = trk.estimate()
    assert wide.sigma_m > 30.0
    assert trk.update_displacement(6 * NS, 0, (30.0, 0.0), 1.0) == "redrawn"
    e = trk.estimate()
    assert e.sigma_m == pytest.approx(math.hypot(2.06, 1.0), rel=0.15)
    assert abs(e.x - 30.0) < 0.5 and abs(e.y) < 0.5
    np.testing.assert_allclose(e.velocity_xy, [5.0, 0.0], atol=0.5)
    trk.mark_anchor()
    trk.predict(12 * NS)
    assert trk.update_displacement(12 * NS, 6 * NS, (30.0, 0.0), 6.0) == "weighted"
    e = trk.estimate()
    assert abs(e.x - 60.0) < 3.0 and abs(e.y) < 3.0 and e.sigma_m < 7.0


def test_displacement_far_in_the_beliefs_tail_redraws_rather_than_being_explained_away():
    """The belief 6 s after a fix, velocity unknown (~50 m wide); the measured displacement lies 100 m east, two of
    its sigmas out, where no particle within the measurement's 1 m sits: weighted, every particle would be
    explained as an outlier and the displacement ignored. The Gaussian check agrees with it, so the particles are
    redrawn: at the anchor's 2 m around (100, 0). Their velocity is the mean over the step with what the white
    acceleration leaves unknown of the end velocity: accel_sigma sqrt(dt / 3) = 1.5 sqrt(2) m/s."""
    trk = _belief_unknown_velocity(seed=4)
    trk.mark_anchor()
    trk.predict(6 * NS)
    assert trk.update_displacement(6 * NS, 0, (100.0, 0.0), 1.0) == "redrawn"
    e = trk.estimate()
    assert math.hypot(e.x - 100.0, e.y) < 1.0 and e.sigma_m < 3.0
    np.testing.assert_allclose(e.velocity_xy, [100.0 / 6.0, 0.0], atol=0.5)
    assert e.velocity_sigma_mps == pytest.approx(1.5 * math.sqrt(2.0), rel=0.15)


def test_a_gps_fix_far_in_a_wide_beliefs_tail_moves_the_particles_as_an_ensemble():
    """Dead reckoning 6 s from a first GPS fix with the velocity unknown leaves the belief ~50 m wide; a 2 m GPS fix
    100 m east of its centre is consistent with it (NIS ~3.5) but only a particle or two lie near it: weighted, the
    belief would collapse onto them. Moved as an ensemble Kalman update instead, the belief is where the fix and
    the GPS bias prior put it (the fix, sigma sqrt(2^2 + 5^2) m) and the velocities follow (100 m in 6 s). A fix
    inside a belief that samples it well is weighted as before."""
    trk = _tracker(seed=5)
    trk.update_gps(0, 0.0, 0.0, 2.0)  # velocity unknown: init_speed_sigma_mps per axis
    trk.predict(6 * NS)
    assert trk.estimate().sigma_m > 40.0
    d = trk.update_gps(6 * NS, 100.0, 0.0, 2.0)
    assert d.accepted and trk.gps_undersampled == 1
    e = trk.estimate()
    assert math.hypot(e.x - 100.0, e.y) < 2.0
    assert e.sigma_m == pytest.approx(math.hypot(2.0, 5.0), rel=0.25)
    assert e.velocity_xy[0] == pytest.approx(100.0 / 6.0, abs=3.0)
    assert trk.update_gps(7 * NS, 100.0 + e.velocity_xy[0], 0.0, 5.0).accepted
    assert trk.gps_undersampled == 1


def test_displacement_heading_error_widens_across_the_track_only():
    """A heading sigma of 17 degrees: 30 m east measured leaves the belief ~9 m wide north-south, still tight
    east-west."""
    trk = _belief_unknown_velocity(seed=3)
    trk.mark_anchor()
    trk.predict(6 * NS)
    trk.update_displacement(6 * NS, 0, (30.0, 0.0), 1.0, heading_sigma_rad=math.radians(17.0))
    e = trk.estimate()
    sx, sy = math.sqrt(e.cov_xy[0, 0]), math.sqrt(e.cov_xy[1, 1])
    assert sx < 3.0 and 5.0 < sy < 14.0


def test_displacement_needs_the_anchor_of_its_reference_time():
    """Measured from a time the tracker holds no positions for: not used (returns why); re-initialising forgets the
    anchor; uninitialised: nothing to weigh."""
    trk = _tracker()
    assert trk.update_displacement(NS, 0, (1.0, 0.0), 1.0) == "uninitialised"
    trk = _belief_unknown_velocity()
    trk.predict(NS)
    trk.mark_anchor()
    assert trk.update_displacement(2 * NS, 0, (1.0, 0.0), 1.0) == "no anchor"  # anchored at 1 s, not 0
    trk.mark_anchor()
    assert trk.anchor_t_ns == 2 * NS
    trk._init_from_candidates(_visual(3 * NS, [[50.0, 0.0]]))  # what a LOST belief's re-initialisation does
    assert trk.anchor_t_ns is None
    assert trk.update_displacement(4 * NS, 2 * NS, (1.0, 0.0), 1.0) == "no anchor"


def test_displacement_anchor_travels_with_its_particles_through_resampling():
    """No process noise: each particle's displacement since the anchor is its own velocity x dt; weights that force
    resampling (a visual fix) must keep each particle paired with its own anchor."""
    trk = _belief_unknown_velocity(accel_sigma=1e-9, position_sigma=1e-9, resample_ess_fraction=0.99)
    trk.mark_anchor()
    trk.predict(2 * NS)
    trk.update_visual(_visual(2 * NS, [[3.0, 1.0]], sigma=4.0))  # reweights and (ESS < 99 %) resamples
    s, _ = trk.particles()
    moved = s[:, 0:2] - trk._anchor.T
    np.testing.assert_allclose(moved, 2.0 * s[:, 2:4], atol=1e-6)


@pytest.mark.parametrize("kw, match", [
    (dict(displacement_xy=(1.0,)), "displacement_xy must be 2 finite numbers"),
    (dict(sigma_m=0.0), "sigma_m"),
    (dict(heading_sigma_rad=-0.1), "heading_sigma_rad must be >= 0"),
    (dict(inlier_prob=1.0), "inlier_prob must be in"),
])
def test_displacement_rejects_bad_arguments(kw, match):
    trk = _belief_unknown_velocity()
    args = dict(displacement_xy=(1.0, 0.0), sigma_m=1.0)
    args.update(kw)
    d = args.pop("displacement_xy")
    s = args.pop("sigma_m")
    with pytest.raises(TrackingError, match=match):
        trk.update_displacement(NS, 0, d, s, **args)


def test_a_heading_error_shared_by_consecutive_displacements_is_learnt_not_followed():
    """The vehicle flies 30 m east every 6 s; the displacements are measured with a heading 20 degrees off (all of
    them: a recorded heading's error holds along a flight line), stated as 17 degrees. Visual fixes (3 m) at the
    truth: the particles' heading offsets converge on -20 degrees and the belief stays on the truth, where
    measurements taken as independent would each pull it ~10 m sideways."""
    trk = _tracker(seed=2)
    trk.update_visual(_visual(0, [[0.0, 0.0]], sigma=3.0))
    bias = math.radians(20.0)
    meas = (30.0 * math.cos(bias), 30.0 * math.sin(bias))
    errs = []
    for k in range(1, 9):
        trk.mark_anchor()
        t = 6 * k * NS
        trk.update_displacement(t, t - 6 * NS, meas, 1.5, heading_sigma_rad=math.radians(17.0))
        e = trk.estimate()  # where the displacement alone puts it, before this frame's fix
        errs.append(math.hypot(e.x - 30.0 * k, e.y))
        trk.update_visual(_visual(t, [[30.0 * k, 0.0]], sigma=3.0))
    mean, sd = trk.heading_offset()
    assert math.degrees(mean) == pytest.approx(-20.0, abs=6.0) and math.degrees(sd) < 8.0
    assert errs[0] > 8.0  # the first: 30 m x sin(20 deg) sideways, nothing learnt yet
    assert max(errs[2:]) < 3.5  # then the offset is known (white heading errors: ~11 m every time)


def _visual_start(motion_from_init: bool | None, confirm: int = 2):
    """Initialised at t=0 by a visual fix with two candidates 200 m apart (velocity unknown), anchored there; 6 s
    later a fix at the first candidate moved 30 m east, after the displacement from the initialising frame was
    measured (True), from another frame (None), or not at all (False). Returns the tracker and that fix's support."""
    trk = _tracker(visual_confirm_frames=confirm)
    trk.update_visual(_visual(0, [[0.0, 0.0], [200.0, 50.0]], sigma=2.0, scope=(100.0, 0.0, 500.0)))
    trk.mark_anchor()
    if motion_from_init is None:
        trk.predict(3 * NS)
        trk.mark_anchor()
    trk.predict(6 * NS)
    if motion_from_init is not False:
        assert trk.update_displacement(6 * NS, 3 * NS if motion_from_init is None else 0, (30.0, 0.0), 1.0) in (
            "weighted", "redrawn")
    sup = trk.update_visual(_visual(6 * NS, [[30.0, 0.0]], sigma=2.0, scope=(100.0, 0.0, 500.0)))
    return trk, sup


def test_the_initialising_fix_counts_once_the_motion_to_the_next_one_is_measured():
    """visual_confirm_frames = 2: with the displacement from the initialising photo measured, the next photo's fix
    is checked against a tight prediction of one of the initialising candidates, so the two photos are the two
    agreeing fixes: support counts at once (and the belief holds the candidate that agreed)."""
    trk, sup = _visual_start(True)
    e = trk.estimate()
    assert sup > 0.9 and e.visual_used and e.status is not Status.LOST
    assert math.hypot(e.x - 30.0, e.y) < 2.0


@pytest.mark.parametrize("motion", [False, None], ids=["motion unknown", "motion from another frame"])
def test_without_the_motion_from_the_initialising_fix_two_more_fixes_must_agree(motion):
    """Velocity unknown over 6 s (or the displacement measured from a later frame): the initialising candidates
    spread ~50 m by the next fix, within which a wrong candidate agrees by chance; the two fixes after it must
    support the belief."""
    trk, sup = _visual_start(motion)
    assert sup > 0.5 and not trk.estimate().visual_used
    trk.predict(12 * NS)
    trk.update_visual(_visual(12 * NS, [[trk.estimate().x, trk.estimate().y]], sigma=2.0, scope=(100.0, 0.0, 500.0)))
    assert trk.estimate().visual_used


def test_the_initialising_fix_counts_only_for_the_fix_right_after_it():
    """A fix that does not support the belief comes between: the streak starts again from the next supporting
    fix, the initialising one forgotten; with visual_confirm_frames 3, init + 1 still falls one short."""
    trk = _tracker(visual_confirm_frames=2)
    trk.update_visual(_visual(0, [[0.0, 0.0]], sigma=2.0, scope=(0.0, 0.0, 500.0)))
    trk.mark_anchor()
    trk.predict(6 * NS)
    trk.update_displacement(6 * NS, 0, (30.0, 0.0), 1.0)
    sup = trk.update_visual(_visual(6 * NS, [[-400.0, 300.0]], sigma=2.0, scope=(0.0, 0.0, 500.0)))
    assert sup < 0.5
    trk.predict(7 * NS)
    trk.update_visual(_visual(7 * NS, [[trk.estimate().x, trk.estimate().y]], sigma=2.0, scope=(0.0, 0.0, 500.0)))
    assert not trk.estimate().visual_used
    trk3, sup3 = _visual_start(True, confirm=3)
    assert sup3 > 0.9 and not trk3.estimate().visual_used


@pytest.mark.parametrize("chained", [True, False], ids=["both steps measured", "second step not measured"])
def test_the_initialising_fix_counts_across_a_frame_without_candidates_when_every_step_was_measured(chained):
    """The photo after the initialising one gives no candidates (a uniform field): its displacement from the
    initialising photo, then the next photo's from it, chain the prediction to the next fix, which then counts the
    initialising one (visual_confirm_frames 2); one step unmeasured and the two fixes after it must agree."""
    trk = _tracker(visual_confirm_frames=2)
    scope = (100.0, 0.0, 500.0)
    trk.update_visual(_visual(0, [[0.0, 0.0], [200.0, 50.0]], sigma=2.0, scope=scope))
    trk.mark_anchor()
    trk.predict(6 * NS)
    assert trk.update_displacement(6 * NS, 0, (30.0, 0.0), 1.0) in ("weighted", "redrawn")
    assert trk.update_visual(VisualFix(6 * NS, np.zeros((0, 2)), np.zeros(0), np.zeros(0))) == 0.0
    trk.mark_anchor()
    trk.predict(12 * NS)
    if chained:
        assert trk.update_displacement(12 * NS, 6 * NS, (30.0, 0.0), 1.0) in ("weighted", "redrawn")
    sup = trk.update_visual(_visual(12 * NS, [[60.0, 0.0]], sigma=2.0, scope=scope))
    assert sup > 0.5 and trk.estimate().visual_used is chained
