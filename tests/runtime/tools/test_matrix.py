"""The scenario matrix (runtime.tools.matrix): its rows resolve to valid simulator configurations, the selection
and table, the CLI; and one short row end to end over zurich_a (measured, no rule asserted)."""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pytest

from maps.geodesy import LocalFrame
from maps.geotiff import write_geotiff
from maps.ortho import Orthophoto
from runtime.cli.common import run_handler
from runtime.errors import SimulationError
from runtime.tools.matrix import (
    FAMILIES,
    IMAGERY,
    Area,
    format_families,
    format_row,
    matrix,
    plan_area,
    register,
    resolve,
    select,
)


@pytest.fixture(scope="module")
def area(tmp_path_factory):
    """A textured, all-valid 600 x 600 m GeoTIFF at 0.5 m/px and its planned base flight (60 s)."""
    tmp = tmp_path_factory.mktemp("area")
    gen = np.random.default_rng(0)
    img = gen.integers(0, 255, (1200, 1200, 3), dtype=np.uint8)
    tif = write_geotiff(tmp / "synthetic.tif",
                        Orthophoto(img, np.ones((1200, 1200), bool), 0.5, -300, 300, LocalFrame(47.3, 8.5)))
    return plan_area(tif, 60.0), tmp


def test_rows_are_named_once_in_known_families_and_short_is_a_subset():
    full, short = matrix("full"), matrix("short")
    names = [r.name for r in full]
    assert len(names) == len(set(names)) and {r.family for r in full} == set(FAMILIES)
    assert {r.name for r in short} <= set(names) and 3 <= len(short) <= 8
    assert all(r.imagery in IMAGERY for r in full)
    for must in ("gps.drag_0.5+imu.none", "gps.none", "imu.ned_frd", "camera.survey", "imagery.sat_0.5m_4326"):
        assert must in names
    with pytest.raises(SimulationError, match="matrix must be one of short, full"):
        matrix("medium")
    with pytest.raises(SimulationError, match="at least 20 s"):
        matrix("short", 10.0)


def test_select_by_pattern_or_family():
    full = matrix("full")
    assert [r.name for r in select(full, "gps.drag_0.5*")] == ["gps.drag_0.5", "gps.drag_0.5+imu.none",
                                                               "gps.drag_0.5+imu.accel_bias"]
    assert {r.family for r in select(full, "imu")} == {"imu"}
    assert select(full, None) == full
    with pytest.raises(SimulationError, match="matches no row"):
        select(full, "nope*")


@pytest.mark.parametrize("kind", ["short", "full"])
def test_every_row_resolves_to_a_valid_simconfig(kind, area):
    from runtime.sim.config import SimConfig

    base, tmp = area
    missing, refused = [], []
    for sc in matrix(kind, 60.0):
        if sc.missing():
            missing.append(f"{sc.name}: {sc.missing()}")
            continue
        try:
            sim = resolve(sc, base, tmp / f"{sc.name}.bag", tmp)
        except SimulationError as exc:  # every row must fly over a 600 x 600 m area; list them all
            refused.append(f"{sc.name}: {exc}")
            continue
        assert isinstance(sim, SimConfig) and sim.duration_s == 60.0 and sim.out.endswith(f"{sc.name}.bag")
        for key, value in sc.flight.items():
            if key not in ("gps_outages", "gps_spoofs", "gps_drags"):
                assert getattr(sim, key) == value, (sc.name, key)
        for a, b, *_ in sim.gps_outages + sim.gps_spoofs + getattr(sim, "gps_drags", ()):
            assert 0 <= a < b and a < sim.duration_s
    assert not refused, "rows refused:\n" + "\n".join(refused)
    if missing:
        pytest.skip("rows needing simulator features not installed yet: " + "; ".join(missing))


def test_a_row_the_area_cannot_fly_is_refused_with_the_reasons(area):
    from runtime.tools.matrix import Scenario

    base, tmp = area
    sc = Scenario("camera.too_high", "camera", {"altitude_m": 1500.0})  # the footprint is wider than the area
    with pytest.raises(SimulationError, match="camera.too_high: no flight fits synthetic at 8 m/s: lawnmower: .*; "
                       "racetrack: .*; random: "):
        resolve(sc, base, tmp / "x.bag", tmp)
    bad = Scenario("gps.bad", "gps", {"no_such_field": 1})
    assert bad.missing() == ("no_such_field",)
    with pytest.raises(SimulationError, match="needs no_such_field"):
        resolve(bad, Area("a", "a.tif", {}), tmp / "x.bag", tmp)


def test_table_lines():
    from runtime.tools.integrity import Rules, family_coverage

    skipped = {"name": "gps.drag_0.5", "family": "gps", "area": "zurich_a", "status": "skipped", "reason": "why"}
    assert format_row(skipped).endswith("skipped: why")
    stats = {"median_m": 1.0, "p95_m": 2.0}
    row = {"name": "gps.spoof_200m", "family": "gps", "area": "zurich_a", "status": "ok", "flags": ["R2a OK>10m: 2"],
           "metrics": {"healthy": stats, "gps_healthy": {"median_m": 5.0, "p95_m": 9.0}, "outage": {"p95_m": None},
                       "spoofs": [{"checked": True, "rejected_after_s": None}], "drags": [], "recoveries": [],
                       "spoof_rejected_after_s": None, "drag_at_detection_m": None, "recovery_s": None,
                       "ok_over_limit": 2, "coverage": 0.93}}
    line = format_row(row)
    assert "never" in line and line.endswith("R2a OK>10m: 2") and "0.93" in line
    fams = {k: v.to_dict() for k, v in family_coverage([("gps", 93, 100), ("imu", 5, 10)], Rules()).items()}
    text = format_families(fams)
    assert "gps" in text and "0.930 (93/100) ok" in text and "R2b ellipse 0.50 outside [0.90, 0.99]" in text


def _cli(argv):
    parser = argparse.ArgumentParser(prog="runtime")
    register(parser.add_subparsers(dest="command", required=True))
    return run_handler(parser.parse_args(argv))


def test_cli_list_help_and_errors(capsys):
    assert _cli(["matrix", "--list", "--matrix", "full", "--rows", "imu"]) == 0
    out = capsys.readouterr().out
    assert "imu.ned_frd" in out and "gps.noisy" not in out
    assert _cli(["matrix"]) == 2
    assert "give the orthophoto(s)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _cli(["matrix", "--help"])
    assert "--matrix {short,full}" in capsys.readouterr().out
    from runtime.cli import onboard

    assert "matrix" in onboard.build_parser()._subparsers._group_actions[0].choices


def test_one_short_row_end_to_end_over_zurich_a(shared_data, tmp_path, capsys):
    """``runtime matrix --rows gps.spoof_200m`` over zurich_a (held out): the row runs and is measured (the rules
    are asserted on the short matrix in test_matrix_rules.py); ``--report`` turns its JSON into the README's table."""
    pytest.importorskip("rasterio")
    tif = shared_data("ortho/swissimage_zurich_a_0.5m.tif")
    t0 = time.perf_counter()
    code = _cli(["matrix", str(tif), "--rows", "gps.spoof_200m", "--duration", "40", "--out", str(tmp_path / "m"),
                 "--json", str(tmp_path / "m.json")])
    elapsed = time.perf_counter() - t0
    out = capsys.readouterr().out
    assert code == 0, out
    res = json.loads((tmp_path / "m.json").read_text())
    (row,) = res["rows"]
    assert row["status"] == "ok", row["reason"]
    m = row["metrics"]
    assert m["healthy"]["n"] > 50 and m["gps_healthy"]["n"] > 50 and m["coverage_n"] > 0
    assert len(m["spoofs"]) == 1 and m["spoofs"][0]["checked"]
    assert "gps.spoof_200m" in out and "ellipse coverage per family" in out
    assert set(res["families"]) == {"gps"}
    print(f"one short row end to end: {elapsed:.1f} s")
    # the README's table: merged from the JSON of runs, families pooled
    assert _cli(["matrix", "--report", str(tmp_path / "m.json"), str(tmp_path / "m.json")]) == 0
    table = capsys.readouterr().out
    assert table.count("| gps.spoof_200m | zurich_a |") == 2 and "| gps | " in table
    assert f"({2 * m['coverage_inside']} of {2 * m['coverage_n']})" in table
    (tmp_path / "bad.json").write_text("{}")
    assert _cli(["matrix", "--report", str(tmp_path / "bad.json")]) == 2
    assert "expected the JSON written by `runtime matrix ... --json OUT`" in capsys.readouterr().err
