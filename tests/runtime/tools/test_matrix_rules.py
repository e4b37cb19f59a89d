"""The product's rules, enforced on the short scenario matrix over a held-out orthophoto (zurich_a): simulated
flights with GPS faults (jump spoof, drag, outage without IMU), an IMU fault and a satellite-like map, replayed
through the onboard loop with the shipped encoder and measured by runtime.tools.integrity.

R1 never worse than a healthy GPS (median and p95 in healthy phases), R2a no estimate OK while > 10 m off, R2b the
95 % ellipse holds 90-99 % of the errors (per family), R3 back within max(10 m, GPS p95) 3 s after a fault ends,
R4 a jump of >= 50 m rejected within 1 s, a drag detected before the estimate moved 10 m (or never OK while off).
The full matrix (every row, every held-out area) is a benchmark: `runtime matrix --matrix full ORTHO...`.
"""

from __future__ import annotations

import pytest

from runtime.tools.matrix import matrix, run_matrix

ORTHO = "ortho/swissimage_zurich_a_0.5m.tif"
SHORT = [r.name for r in matrix("short")]


@pytest.fixture(scope="module")
def short(shared_data, tmp_path_factory):
    pytest.importorskip("rasterio")
    return run_matrix([shared_data(ORTHO)], "short", out_dir=tmp_path_factory.mktemp("matrix"))


@pytest.mark.parametrize("name", SHORT)
def test_every_rule_holds_on_the_row(short, name):
    row = next(r for r in short["rows"] if r["name"] == name)
    assert row["status"] == "ok", row["reason"]
    assert row["flags"] == [], f"{name}: {row['flags']}"
    m = row["metrics"]
    assert m["ok_over_limit"] == 0
    assert m["healthy"]["p95_m"] <= m["gps_healthy"]["p95_m"]


def test_the_faults_were_there_and_were_seen(short):
    rows = {r["name"]: r for r in short["rows"]}
    spoof = rows["gps.spoof_200m"]["metrics"]
    assert spoof["spoofs"] and spoof["spoof_rejected_after_s"] is not None and spoof["spoof_rejected_after_s"] <= 1.0
    drag = rows["gps.drag_0.5"]["metrics"]
    assert drag["drags"] and all(d["passed"] for d in drag["drags"])
    assert all(d["max_error_ok_m"] is None or d["max_error_ok_m"] <= 10.0 for d in drag["drags"])


def test_ellipse_coverage_per_family(short):
    for fam, cov in short["families"].items():
        assert cov["passed"], f"{fam}: {cov['flag']} ({cov['inside']} of {cov['n']})"
