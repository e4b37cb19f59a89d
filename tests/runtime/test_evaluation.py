"""runtime.tools.evaluation and ``runtime eval``: errors in metres against interpolated truth, GPS phases (ok / outage /
spoof) per estimate, the same numbers for GPS alone, convergence, heading, the PNG, and the CLI end to end on a
small bag written with BagWriter."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from maps.geodesy import LocalFrame
from maps.ortho import Orthophoto
from runtime.bags import BagWriter
from runtime.cli import onboard
from runtime.tools.evaluation import (
    ErrorStats,
    EvaluationError,
    evaluate_events,
    evaluate_track,
    plot_track,
    read_truth_and_gps,
)
from runtime.events import STATUS_NO_FIX, GpsFix, TruthPose
from runtime.outputs import EstimateRecord, OutputError, TrackWriter
from runtime.truth_frame import truth_frame_id

T0 = 1_700_000_000_000_000_000
STEP = 200_000_000                 # 5 Hz
N = 101                            # 0 .. 20 s
FRAME = LocalFrame(47.0, 8.0)      # the first truth sample is its origin
VEL = (10.0, 5.0)                  # m/s east, north: a straight line, so linear interpolation is exact
HEADING = (90.0 - math.degrees(math.atan2(VEL[1], VEL[0]))) % 360.0   # compass, 63.43 deg
OUTAGE = (5.0, 8.0)                # s: no fix for start <= t < end
SPOOF = (12.0, 15.0, 150.0)        # s, s, metres east
GPS_OFFSET = (0.0, 2.0)            # honest fixes: 2 m north of the truth
# estimate error (east offset, metres) per phase: 71 gps_ok, 15 outage, 15 spoof estimates
EST_ERR = {"gps_ok": 0.5, "outage": 4.0, "spoof": 12.0}


def _rel(i: int) -> float:
    return i * STEP / 1e9


def _truth_xy(t_s: float):
    return VEL[0] * t_s, VEL[1] * t_s


def _ll(x, y):
    lat, lon = FRAME.to_wgs84(x, y)
    return float(lat), float(lon)


def _phase(t_s: float) -> str:
    if OUTAGE[0] <= t_s < OUTAGE[1]:
        return "outage"
    if SPOOF[0] <= t_s < SPOOF[1]:
        return "spoof"
    return "gps_ok"


def _yaw_quat():
    yaw = math.atan2(VEL[1], VEL[0])
    return (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2))


def _truth_events() -> list[TruthPose]:
    out = []
    for i in range(N):
        x, y = _truth_xy(_rel(i))
        lat, lon = _ll(x, y)
        out.append(TruthPose(T0 + i * STEP, lat, lon, 100.0, x, y, 100.0, _yaw_quat()))
    return out


def _gps_events() -> list[GpsFix]:
    """Honest fixes 2 m north, none in the outage, 150 m east in the spoof, plus one NO_FIX inside the outage."""
    out = []
    for i in range(N):
        t = _rel(i)
        x, y = _truth_xy(t)
        if OUTAGE[0] <= t < OUTAGE[1]:
            if i == 30:
                out.append(GpsFix(T0 + i * STEP, *_ll(x, y), 100.0, 5.0, status=STATUS_NO_FIX))
            continue
        if SPOOF[0] <= t < SPOOF[1]:
            x += SPOOF[2]
        else:
            x, y = x + GPS_OFFSET[0], y + GPS_OFFSET[1]
        out.append(GpsFix(T0 + i * STEP, *_ll(x, y), 100.0, 5.0))
    return out


def _records(err=None, heading_offset: float = 3.0) -> list[EstimateRecord]:
    """One estimate per truth sample, ``err(i)`` metres east of the truth (default: EST_ERR by phase)."""
    out = []
    for i in range(N):
        t = _rel(i)
        x, y = _truth_xy(t)
        e = EST_ERR[_phase(t)] if err is None else err(i)
        out.append(EstimateRecord(T0 + i * STEP, *_ll(x + e, y), HEADING + heading_offset, 2.0, None,
                                  "OK" if _phase(t) != "outage" else "DEGRADED",
                                  {"encode": 10.0 + i % 5, "total": 30.0 + i % 11},
                                  gps="ok" if _phase(t) == "gps_ok" else "outage"))
    return out


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    """A 20 s bag: /ground_truth/fix + /ground_truth/pose at 5 Hz, /gps/fix at 5 Hz with the outage and spoof."""
    path = tmp_path_factory.mktemp("eval") / "flight.bag"
    fid = truth_frame_id(FRAME.lat0, FRAME.lon0, 0.0)
    with BagWriter(path) as w:
        for p in _truth_events():
            w.write_navsatfix("/ground_truth/fix", p.t_ns, p.lat, p.lon, p.alt, cov_enu=0.0, frame_id="ground_truth")
            w.write_pose("/ground_truth/pose", p.t_ns, (p.x, p.y, p.z), p.attitude, frame_id=fid)
        for f in _gps_events():
            w.write_navsatfix("/gps/fix", f.t_ns, f.lat, f.lon, f.alt, cov_enu=5.0, status=f.status)
    return path


# ============================================================================================== numbers
def test_error_stats_exact():
    s = ErrorStats.of([1.0, 2.0, 3.0, 4.0, 20.0, np.nan])
    assert (s.n, s.median_m, s.max_m) == (5, 3.0, 20.0)
    assert s.p95_m == pytest.approx(4.0 + 0.8 * 16.0)
    assert s.mean_m == pytest.approx(6.0) and s.rmse_m == pytest.approx(math.sqrt(430 / 5))
    assert (s.within_1m, s.within_3m, s.within_10m) == (0.2, 0.6, 0.8)
    assert ErrorStats.of([]).to_dict() == {"n": 0, "median_m": None, "p95_m": None, "max_m": None, "mean_m": None,
                                           "rmse_m": None, "within_1m": None, "within_3m": None, "within_10m": None}


def test_phases_errors_and_gps_alone_from_the_bag(bag):
    truth, gps = read_truth_and_gps(bag)
    assert len(truth) == N and all(p.attitude is not None for p in truth)
    assert len(gps) == 87 and sum(not f.has_fix for f in gps) == 1
    res = evaluate_track(_records(), bag, track="t.jsonl")
    assert (res.n_estimates, res.n_evaluated, res.n_unmatched, res.n_gps, res.n_gps_evaluated) == (N, N, 0, 86, 86)
    expected = [_phase(_rel(i)) for i in range(N)]
    assert list(res.series.phase) == expected
    assert expected.count("gps_ok") == 71 and expected.count("outage") == 15 and expected.count("spoof") == 15

    est = res.estimate
    for phase, n in (("gps_ok", 71), ("outage", 15), ("spoof", 15)):
        s = est[phase]
        e = EST_ERR[phase]
        assert s.n == n
        assert (s.median_m, s.p95_m, s.max_m) == pytest.approx((e, e, e), abs=1e-6)
        assert (s.within_1m, s.within_3m, s.within_10m) == (float(e <= 1), float(e <= 3), float(e <= 10))
    a = est["all"]
    assert a.n == N
    assert a.median_m == pytest.approx(0.5, abs=1e-6)
    assert a.p95_m == pytest.approx(12.0, abs=1e-6) and a.max_m == pytest.approx(12.0, abs=1e-6)
    assert a.mean_m == pytest.approx((71 * 0.5 + 15 * 4 + 15 * 12) / N, abs=1e-6)
    assert (a.within_1m, a.within_3m, a.within_10m) == (71 / N, 71 / N, 86 / N)

    g = res.gps
    assert g["outage"].n == 0 and g["outage"].median_m is None
    assert g["gps_ok"].n == 71 and g["gps_ok"].median_m == pytest.approx(2.0, abs=1e-6)
    assert g["gps_ok"].max_m == pytest.approx(2.0, abs=1e-6)
    assert g["spoof"].n == 15 and g["spoof"].median_m == pytest.approx(150.0, abs=1e-5)
    assert g["all"].n == 86 and g["all"].median_m == pytest.approx(2.0, abs=1e-6)
    assert g["all"].max_m == pytest.approx(150.0, abs=1e-5)
    assert (g["all"].within_1m, g["all"].within_3m, g["all"].within_10m) == (0.0, 71 / 86, 71 / 86)
    assert list(res.series.gps_phase).count("spoof") == 15

    c = res.convergence
    assert (c.threshold_m, c.first_within_s, c.converged_s) == (6.0, 0.0, 15.0)
    assert c.converged_t_ns == T0 + 75 * STEP and c.max_after_m == pytest.approx(0.5, abs=1e-6)
    assert res.heading.n == N and res.heading.median_deg == pytest.approx(3.0, abs=1e-6)
    assert res.status_counts == {"OK": 86, "DEGRADED": 15}
    assert res.latency_ms["encode"] == {"n": N, "median": 12.0, "p95": 14.0, "max": 14.0}
    assert res.params["outage_gap_s"] == 1.0

    d = json.loads(res.to_json())
    assert d["estimate"]["spoof"]["n"] == 15 and d["gps"]["outage"]["n"] == 0
    assert d["convergence"]["converged_s"] == 15.0 and d["bag"] == str(bag)

    table = res.format_table()
    lines = table.splitlines()
    assert lines[0].startswith("t.jsonl vs ") and "101 estimates, 101 with truth; 86 GPS fixes" in lines[0]
    header = lines[2]
    assert header.split() == ["phase", "n", "median", "p95", "max", "<1m", "<3m", "<10m"]
    spoof_row = next(r for r in lines if r.split()[:1] == ["spoof"])
    assert spoof_row.split() == ["spoof", "15", "12.00", "12.00", "12.00", "0%", "0%", "0%"]
    gps_rows = lines[lines.index("") + 1:]
    assert gps_rows[0].split()[:4] == ["GPS", "alone", "all", "86"]
    assert gps_rows[2].split() == ["outage", "0", "-", "-", "-", "-", "-", "-"]
    # right-aligned numeric columns: the "max" column ends at the same place in every row
    ends = {len(r.rstrip()) for r in lines[2:3 + 4]}
    assert len(ends) == 1
    assert "stays within from 15.0 s" in table and "status: OK 86, DEGRADED 15" in table


def test_truth_is_interpolated_in_metres_and_unmatched_estimates_are_counted():
    truth, gps = _truth_events(), _gps_events()
    recs = []
    for t_ns in (T0 + 1_100_000_000, T0 + 3_050_000_000, T0 - 500_000_000, T0 + 25 * 10**9):
        t = (t_ns - T0) / 1e9
        x, y = _truth_xy(t)
        recs.append(EstimateRecord(t_ns, *_ll(x, y + 0.75), None, 1.0, None, "OK", {}))
    res = evaluate_events(recs, truth, gps)
    assert (res.n_estimates, res.n_evaluated, res.n_unmatched) == (4, 2, 2)
    assert np.isnan(res.series.err_m).sum() == 2
    assert res.estimate["all"].max_m == pytest.approx(0.75, abs=1e-6)
    assert res.estimate["all"].median_m == pytest.approx(0.75, abs=1e-6)
    assert res.heading is None   # the estimates carry no heading
    assert list(res.series.phase) == ["", "gps_ok", "gps_ok", ""]   # series are in time order
    assert "(2 outside the truth's time span)" in res.format_table()


def test_truth_gaps_are_not_interpolated_across():
    truth = [p for p in _truth_events() if not 20 <= (p.t_ns - T0) // STEP < 40]   # 4 s without truth
    res = evaluate_events(_records(), truth, _gps_events(), max_truth_gap_s=2.0)
    assert res.n_evaluated == N - 20
    res = evaluate_events(_records(), truth, _gps_events(), max_truth_gap_s=5.0)
    assert res.n_evaluated == N


def test_convergence_and_outage_rules():
    errs = [30.0, 20.0, 5.0, 8.0, 7.0] + [1.0] * (N - 5)
    res = evaluate_events(_records(lambda i: errs[i]), _truth_events(), [])
    c = res.convergence
    assert c.first_within_s == pytest.approx(0.4) and c.converged_s == pytest.approx(1.0)
    assert c.max_after_m == pytest.approx(1.0, abs=1e-6)
    # no GPS at all: every estimate is in an outage, GPS alone has nothing
    assert set(res.series.phase) == {"outage"} and res.gps["all"].n == 0
    assert res.estimate["outage"].n == N and res.estimate["gps_ok"].n == 0

    never = evaluate_events(_records(lambda i: 7.0 if i == N - 1 else 1.0), _truth_events(), [])
    assert never.convergence.converged_s is None and never.convergence.first_within_s == 0.0
    assert "never stays within" in never.format_table()

    # a 1 Hz receiver with jitter: gaps of 1.1 s are no outage (2.5 x its median interval), a 4 s gap is
    fixes = []
    t = 0.0
    while t <= 20.0:
        if not 9.0 < t < 13.5:
            x, y = _truth_xy(t)
            fixes.append(GpsFix(T0 + int(round(t * 1e9)), *_ll(x, y), 100.0, 3.0))
        t += 1.0 if len(fixes) % 2 else 1.1
    res = evaluate_events(_records(), _truth_events(), fixes)
    assert res.params["outage_gap_s"] == pytest.approx(2.5 * 1.1, rel=0.1)
    ph = dict(zip(((res.series.t_ns - T0) // STEP).tolist(), res.series.phase))
    assert ph[0] == "gps_ok" and ph[25] == "gps_ok" and ph[55] == "outage" and ph[90] == "gps_ok"
    assert res.gps["all"].median_m == pytest.approx(0.0, abs=1e-6)


def test_heading_error_wraps_around_north():
    truth = [TruthPose(p.t_ns, p.lat, p.lon, p.alt, p.x, p.y, p.z, (0.0, 0.0, math.sin(math.pi / 4 - 0.01),
                                                                    math.cos(math.pi / 4 - 0.01)))
             for p in _truth_events()]   # yaw just under 90 deg: heading 1.146 deg east of north
    recs = [EstimateRecord(r.t_ns, r.lat, r.lon, 359.0, 1.0, None, "OK", {}) for r in _records()]
    res = evaluate_events(recs, truth, _gps_events())
    assert res.heading.median_deg == pytest.approx(1.0 + math.degrees(0.02), abs=1e-6)


def test_evaluation_errors(tmp_path, bag):
    with pytest.raises(EvaluationError, match="has no estimates"):
        evaluate_events([], _truth_events(), [])
    late = [EstimateRecord(T0 + 100 * 10**9, 47.0, 8.0, None, 1.0, None, "OK", {})]
    with pytest.raises(EvaluationError, match="none of the 1 estimates .* is the track from this bag"):
        evaluate_track(late, bag)
    with pytest.raises(EvaluationError, match="spoof_m must be a positive number"):
        evaluate_events(_records(), _truth_events(), [], spoof_m=0)
    no_truth = tmp_path / "nt.bag"
    with BagWriter(no_truth) as w:
        w.write_navsatfix("/gps/fix", T0, 47.0, 8.0, 100.0, cov_enu=3.0)
    with pytest.raises(EvaluationError, match="has no ground truth"):
        evaluate_track(_records(), no_truth)


# ============================================================================================== plot
def _ortho(mask_west: bool = False) -> Orthophoto:
    gen = np.random.default_rng(1)
    h, w = 400, 500                          # 0.5 m/px: x -25 .. 225 m, y -50 .. 150 m
    noise = cv2.GaussianBlur(gen.standard_normal((h, w, 3)).astype(np.float32), (0, 0), 3)
    img = np.clip(128 + 60 * noise / noise.std(), 0, 255).astype(np.uint8)
    mask = np.ones((h, w), bool)
    if mask_west:
        mask[:, :100] = False
    return Orthophoto(img, mask, 0.5, -25.0, 150.0, FRAME)


def _colour_pixels(img, bgr, tol=40):
    return int((np.abs(img.astype(int) - np.array(bgr)).sum(axis=2) < tol).sum())


def test_plot_without_and_with_imagery(tmp_path):
    recs, truth, gps = _records(), _truth_events(), _gps_events()
    out = plot_track(recs, truth, gps, tmp_path / "plain.png", width=600, map_height=400, panel_height=200)
    img = cv2.imread(str(out))
    assert img.shape == (600, 600, 3)
    assert _colour_pixels(img[:400], (40, 160, 40)) > 200        # truth line
    assert _colour_pixels(img[:400], (200, 70, 20)) > 200        # estimate line
    assert _colour_pixels(img[:400], (0, 140, 255)) > 50         # GPS dots
    assert _colour_pixels(img[400:], (160, 235, 255), 10) > 1000  # outage shading in the error panel
    assert _colour_pixels(img[400:], (200, 200, 255), 10) > 1000  # spoof shading
    assert _colour_pixels(img[400:], (200, 70, 20)) > 100        # error curve
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20

    out2 = plot_track(recs, truth, gps, tmp_path / "map.png", _ortho(mask_west=True), width=600, map_height=400,
                      panel_height=200)
    img2 = cv2.imread(str(out2))
    assert img2.shape == (600, 600, 3)
    # imagery texture under the tracks where the plain plot had a flat background (the map panel's right half,
    # away from the legend); no imagery where the mask is False (west of x = 25 m)
    plain_std = img[150:350, 450:580].reshape(-1, 3).std(axis=0).mean()
    map_std = img2[150:350, 450:580].reshape(-1, 3).std(axis=0).mean()
    assert map_std > plain_std + 10
    assert _colour_pixels(img2[:400], (40, 160, 40)) > 200
    assert not np.array_equal(img[:400], img2[:400])
    assert np.array_equal(img[400:], img2[400:])                   # same error panel


def test_plot_errors(tmp_path):
    with pytest.raises(OutputError, match="ending in .png"):
        plot_track(_records(), _truth_events(), [], tmp_path / "x.jpg")
    with pytest.raises(OutputError, match="does not exist"):
        plot_track(_records(), _truth_events(), [], tmp_path / "no" / "x.png")


# ============================================================================================== CLI
def _map_package(path, store_imagery=True):
    from maps.build import build_map
    from maps.descriptors import ClassicalDescriptor, classical_contract

    return build_map(_ortho(), ClassicalDescriptor(), classical_contract(), path, stride_m=25.0,
                     store_imagery=store_imagery)


@pytest.mark.parametrize("kind", ["geotiff", "map package"])
def test_cli_end_to_end(tmp_path, bag, capsys, kind):
    from maps.geotiff import write_geotiff

    track = tmp_path / "track.jsonl"
    with TrackWriter(track) as w:
        for r in _records():
            w.write(r)
    if kind == "geotiff":
        map_path = write_geotiff(tmp_path / "ortho.tif", _ortho())
    else:
        map_path = _map_package(tmp_path / "map")
    png, js = tmp_path / "eval.png", tmp_path / "eval.json"
    code = onboard.main(["eval", str(track), "--truth", str(bag), "--map", str(map_path), "--plot", str(png),
                         "--json", str(js)])
    out = capsys.readouterr().out
    assert code == 0
    assert "horizontal error, metres" in out and f"wrote {png}" in out
    d = json.loads(js.read_text())
    assert d["estimate"]["all"]["median_m"] == pytest.approx(0.5, abs=1e-6)
    assert d["gps"]["spoof"]["median_m"] == pytest.approx(150.0, abs=1e-4)
    assert d["estimate"]["outage"]["n"] == 15
    img = cv2.imread(str(png))
    assert img.shape == (1000, 1000, 3)
    assert img[200:700, 600:950].reshape(-1, 3).std(axis=0).mean() > 15   # the map imagery under the tracks


def test_cli_errors_are_one_line(tmp_path, bag, capsys):
    track = tmp_path / "bad.jsonl"
    good = _records()[0].to_json()
    track.write_text(good + "\n" + good.replace('"lat"', '"latitude"') + "\n")
    assert onboard.main(["eval", str(track), "--truth", str(bag)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {track}:2: unknown estimate record key(s) ['latitude']") and err.count("\n") == 1

    track.write_text(good + "\n")
    assert onboard.main(["eval", str(track), "--truth", str(tmp_path / "none.bag")]) == 2
    assert capsys.readouterr().err.startswith("error: bag ")
    assert onboard.main(["eval", str(track), "--truth", str(bag), "--map", str(tmp_path / "nomap")]) == 2
    assert "--map" in capsys.readouterr().err
    bare = _map_package(tmp_path / "bare", store_imagery=False)
    assert onboard.main(["eval", str(track), "--truth", str(bag), "--map", str(bare), "--plot",
                         str(tmp_path / "x.png")]) == 2
    assert "stores no imagery" in capsys.readouterr().err
    assert onboard.main(["eval", str(track), "--truth", str(bag), "--spoof-m", "-1"]) == 2
    assert "--spoof-m must be > 0" in capsys.readouterr().err


# ============================================================================================== simulator
CAMERA_YAML = """%YAML:1.0
---
image_width: 64
image_height: 48
camera_matrix: !!opencv-matrix
   rows: 3
   cols: 3
   dt: d
   data: [ 47.0, 0., 31.5, 0., 47.0, 23.5, 0., 0., 1. ]
distortion_coefficients: !!opencv-matrix
   rows: 5
   cols: 1
   dt: d
   data: [ 0., 0., 0., 0., 0. ]
"""


def test_phases_match_a_simulated_flight(tmp_path):
    """The simulator's outage (5-8 s) and 150 m spoof (12-15 s) windows come out as the outage and spoof phases."""
    from maps.geotiff import write_geotiff
    from runtime.sim.config import SimConfig
    from runtime.sim.flight import simulate

    gen = np.random.default_rng(0)
    noise = cv2.GaussianBlur(gen.standard_normal((300, 400, 3)).astype(np.float32), (0, 0), 4)
    img = np.clip(128 + 60 * noise / noise.std(), 0, 255).astype(np.uint8)
    tif = write_geotiff(tmp_path / "o.tif", Orthophoto(img, np.ones((300, 400), bool), 1.0, -200.0, 150.0, FRAME))
    (tmp_path / "cam.yaml").write_text(CAMERA_YAML)
    out = tmp_path / "sim.bag"
    simulate(SimConfig(ortho=str(tif), camera=str(tmp_path / "cam.yaml"), out=str(out), duration_s=20.0,
                       altitude_m=40.0, gps_sigma_m=3.0, gps_bias_m=2.0, gps_outages=((5.0, 8.0),),
                       gps_spoofs=((12.0, 15.0, 150.0),), seed=3))
    truth, _ = read_truth_and_gps(out)
    frame = LocalFrame(truth[0].lat, truth[0].lon)
    recs = []
    for p in truth:                       # the truth 1.5 m north at every camera frame
        x, y = frame.to_local(p.lat, p.lon)
        recs.append(EstimateRecord(p.t_ns, *map(float, frame.to_wgs84(x, y + 1.5)), None, 1.0, None, "OK", {}))
    res = evaluate_track(recs, out)
    t_s = (res.series.t_ns - res.series.t_ns[0]) / 1e9
    expected = ["outage" if 5.0 <= t < 8.0 else "spoof" if 12.0 <= t < 15.0 else "gps_ok" for t in t_s]
    assert list(res.series.phase) == expected
    assert (res.estimate["outage"].n, res.estimate["spoof"].n, res.estimate["gps_ok"].n) == (15, 15, 70)
    assert res.estimate["all"].median_m == pytest.approx(1.5, abs=1e-6)
    assert res.gps["outage"].n == 0 and res.gps["spoof"].n == 15 and res.gps["gps_ok"].n == 70
    assert 130 < res.gps["spoof"].median_m < 170 and res.gps["gps_ok"].max_m < 50


def test_estimates_without_a_position_are_counted_apart(tmp_path):
    """Records from before the tracker initialised (lat/lon NaN) are no error sample but delay convergence."""
    recs = _records(lambda i: 1.0)
    for i in range(5):
        r = recs[i]
        recs[i] = EstimateRecord(r.t_ns, math.nan, math.nan, None, math.inf, None, "LOST", {}, gps="none")
    res = evaluate_events(recs, _truth_events(), _gps_events())
    assert (res.n_estimates, res.n_evaluated, res.n_no_position, res.n_unmatched) == (N, N - 5, 5, 5)
    assert res.estimate["all"].n == N - 5 and res.estimate["all"].max_m == pytest.approx(1.0, abs=1e-6)
    assert res.convergence.first_within_s == pytest.approx(1.0) and res.convergence.converged_s == pytest.approx(1.0)
    assert "(5 without a position)" in res.format_table() and json.loads(res.to_json())["n_no_position"] == 5
    out = plot_track(recs, _truth_events(), _gps_events(), tmp_path / "p.png", width=400, map_height=300,
                     panel_height=150)
    assert cv2.imread(str(out)).shape == (450, 400, 3)
    lost = [EstimateRecord(r.t_ns, math.nan, math.nan, None, math.inf, None, "LOST", {}) for r in recs]
    with pytest.raises(EvaluationError, match="none of the 101 estimates has a position"):
        evaluate_events(lost, _truth_events(), [])
