"""runtime.outputs: EstimateRecord validation and JSON round trip, TrackWriter (line-by-line, crash-safe), read_track
errors with line numbers, GeoJSON and GPX parsed back."""

from __future__ import annotations

import datetime as dt
import json
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from runtime.errors import OnboardError
from runtime.outputs import (
    GPX_NS,
    EstimateRecord,
    OutputError,
    TrackWriter,
    iso_utc,
    read_track,
    write_geojson,
    write_gpx,
)

T0 = 1_700_000_000_123_456_789


def _rec(i: int = 0, **kw) -> EstimateRecord:
    base = dict(
        t_ns=T0 + i * 200_000_000,
        lat=47.0 + i * 1e-5,
        lon=8.0 + i * 2e-5,
        heading_deg=45.0 + i,
        sigma_m=1.5 + 0.1 * i,
        cov_en=((2.0, 0.25), (0.25, 2.5)),
        status="OK" if i % 3 else "DEGRADED",
        latency_ms={"decode": 3.25, "encode": 11.0, "total": 20.5 + i},
        gps="ok",
        x_m=10.0 * i,
        y_m=-5.0 * i,
    )
    base.update(kw)
    return EstimateRecord(**base)


# ============================================================================================== record
def test_record_velocity_round_trips_and_old_tracks_without_it_still_read():
    r = _rec(2, ve_mps=3.0, vn_mps=-4.0, v_sigma_mps=0.5)
    assert r.speed_mps == pytest.approx(5.0) and r.course_deg == pytest.approx(143.13010235415598)
    back = EstimateRecord.from_dict(json.loads(r.to_json()))
    assert (back.ve_mps, back.vn_mps, back.v_sigma_mps) == (3.0, -4.0, 0.5)
    old = json.loads(_rec(2).to_json())
    for k in ("ve_mps", "vn_mps", "v_sigma_mps"):
        del old[k]
    rec = EstimateRecord.from_dict(old)  # a track written before the velocity was recorded
    assert rec.ve_mps is None and rec.speed_mps is None and rec.course_deg is None
    assert _rec(1, ve_mps=0.0, vn_mps=0.0).course_deg is None
    with pytest.raises(OutputError, match=r"ve_mps and vn_mps go together"):
        _rec(1, ve_mps=1.0)
    with pytest.raises(OutputError, match=r"v_sigma_mps must be >= 0 m/s or None, got -1.0"):
        _rec(1, ve_mps=1.0, vn_mps=1.0, v_sigma_mps=-1.0)


def test_record_json_round_trip_is_exact_and_one_line():
    r = _rec(4)
    line = r.to_json()
    assert "\n" not in line
    d = json.loads(line)
    assert list(d) == ["t_ns", "lat", "lon", "heading_deg", "sigma_m", "cov_en", "status", "latency_ms", "gps",
                       "x_m", "y_m", "ve_mps", "vn_mps", "v_sigma_mps"]
    assert d["cov_en"] == [[2.0, 0.25], [0.25, 2.5]] and d["t_ns"] == T0 + 800_000_000
    back = EstimateRecord.from_dict(d)
    assert back == r
    assert back.lat == r.lat and back.lon == r.lon  # repr-exact floats


def test_record_nullable_fields_and_unknown_sigma():
    r = _rec(1, heading_deg=None, cov_en=None, sigma_m=math.inf, gps="", x_m=None, y_m=None)
    d = json.loads(r.to_json())
    assert d["heading_deg"] is None and d["cov_en"] is None and d["sigma_m"] is None and d["x_m"] is None
    back = EstimateRecord.from_dict(d)
    assert back == r and back.sigma_m == math.inf
    # optional keys may be absent
    d2 = {k: v for k, v in d.items() if k not in ("gps", "x_m", "y_m")}
    assert EstimateRecord.from_dict(d2) == r


def test_record_without_a_position_as_the_tracker_gives_before_initialisation(tmp_path):
    """NaN position/heading/x/y and an infinite covariance: written as nulls, read back, left out of GeoJSON/GPX."""
    cov = np.full((2, 2), np.inf)
    cov[0, 1] = cov[1, 0] = 0.0
    r = _rec(0, lat=math.nan, lon=math.nan, heading_deg=math.nan, sigma_m=math.inf, cov_en=cov, status="LOST",
             gps="none", x_m=math.nan, y_m=math.nan)
    assert not r.has_position and _rec(0).has_position
    assert (r.heading_deg, r.cov_en, r.x_m, r.y_m, r.sigma_m) == (None, None, None, None, math.inf)
    d = json.loads(r.to_json())
    assert (d["lat"], d["lon"], d["heading_deg"], d["cov_en"], d["sigma_m"]) == (None, None, None, None, None)
    back = EstimateRecord.from_dict(d)
    assert not back.has_position and back.to_dict() == r.to_dict()
    path = tmp_path / "t.jsonl"
    with TrackWriter(path, geojson=True, gpx=True) as w:
        for rec in (r, _rec(1), _rec(2)):
            w.write(rec)
    got = read_track(path)
    assert len(got) == 3 and not got[0].has_position and got[1:] == [_rec(1), _rec(2)]
    gj = json.loads(path.with_suffix(".geojson").read_text())
    assert gj["features"][0]["geometry"]["coordinates"] == [[_rec(i).lon, _rec(i).lat] for i in (1, 2)]
    assert len(gj["features"]) == 3
    assert len(ET.parse(path.with_suffix(".gpx")).getroot().findall(f".//{{{GPX_NS}}}trkpt")) == 2


def test_record_normalises_numpy_values_and_heading():
    r = _rec(0, t_ns=np.int64(T0), lat=np.float64(47.5), heading_deg=-90.0, cov_en=np.eye(2) * 4.0)
    assert type(r.t_ns) is int and type(r.lat) is float
    assert r.heading_deg == 270.0
    assert r.cov_en == ((4.0, 0.0), (0.0, 4.0))
    json.loads(r.to_json())  # serialisable


@pytest.mark.parametrize(
    "kw,needle",
    [
        ({"t_ns": 1.5}, "t_ns must be an integer"),
        ({"t_ns": True}, "t_ns must be an integer"),
        ({"lat": 91.0}, "lat must be in [-90, 90]"),
        ({"lon": math.nan}, "lat and lon go together"),
        ({"lon": math.inf}, "lon must be a finite number"),
        ({"heading_deg": math.inf}, "heading_deg must be a finite number"),
        ({"sigma_m": -1.0}, "sigma_m must be a number of metres >= 0"),
        ({"sigma_m": "2"}, "sigma_m must be a number of metres >= 0"),
        ({"cov_en": ((1.0, "0"), (0.0, 1.0))}, "cov_en must be a 2x2"),
        ({"cov_en": ((1.0, 0.0),)}, "cov_en must be a 2x2"),
        ({"cov_en": ((-1.0, 0.0), (0.0, 1.0))}, "non-negative diagonal"),
        ({"status": ""}, "status must be a non-empty string"),
        ({"latency_ms": {"total": -1.0}}, "latency_ms['total'] must be >= 0"),
        ({"latency_ms": [1.0]}, "latency_ms must be a mapping"),
        ({"gps": "spoofed"}, "gps must be one of"),
        ({"x_m": 1.0, "y_m": None}, "x_m and y_m go together"),
    ],
)
def test_record_rejects_bad_values_with_a_message(kw, needle):
    with pytest.raises(OutputError) as info:
        _rec(0, **kw)
    assert needle in str(info.value)
    assert isinstance(info.value, OnboardError)


def test_from_dict_rejects_unknown_and_missing_keys():
    d = json.loads(_rec(0).to_json())
    with pytest.raises(OutputError, match=r"unknown estimate record key\(s\) \['speed'\]"):
        EstimateRecord.from_dict({**d, "speed": 3.0})
    del d["status"]
    with pytest.raises(OutputError, match=r"lacks key\(s\) \['status'\]"):
        EstimateRecord.from_dict(d)
    with pytest.raises(OutputError, match="must be a JSON object, got list"):
        EstimateRecord.from_dict([1, 2])


# ============================================================================================== writer / reader
def test_track_writer_flushes_each_line_and_writes_geojson_gpx_at_close(tmp_path):
    path = tmp_path / "track.jsonl"
    recs = [_rec(i) for i in range(5)]
    with TrackWriter(path, geojson=True, gpx=True) as w:
        for r in recs[:3]:
            w.write(r)
        # a crash now would keep what was written: the file is complete line by line already
        assert read_track(path) == recs[:3]
        assert not (tmp_path / "track.geojson").exists()
        for r in recs[3:]:
            w.write(r)
    assert w.count == 5
    assert read_track(path) == recs
    assert path.read_text().count("\n") == 5

    gj = json.loads((tmp_path / "track.geojson").read_text())
    assert gj["type"] == "FeatureCollection"
    line, points = gj["features"][0], gj["features"][1:]
    assert line["geometry"]["type"] == "LineString"
    assert line["geometry"]["coordinates"] == [[r.lon, r.lat] for r in recs]
    assert line["properties"]["n"] == 5 and line["properties"]["t_start_ns"] == recs[0].t_ns
    assert [p["geometry"]["coordinates"] for p in points] == [[r.lon, r.lat] for r in recs]
    assert [p["properties"]["status"] for p in points] == [r.status for r in recs]
    assert [p["properties"]["t_ns"] for p in points] == [r.t_ns for r in recs]
    assert points[2]["properties"]["time"] == iso_utc(recs[2].t_ns)

    root = ET.parse(tmp_path / "track.gpx").getroot()
    ns = {"g": GPX_NS}
    assert root.tag == f"{{{GPX_NS}}}gpx" and root.get("version") == "1.1"
    pts = root.findall("g:trk/g:trkseg/g:trkpt", ns)
    assert len(pts) == 5
    for p, r in zip(pts, recs):
        assert float(p.get("lat")) == r.lat and float(p.get("lon")) == r.lon
        when = dt.datetime.fromisoformat(p.find("g:time", ns).text.replace("Z", "+00:00"))
        assert when.tzinfo is not None
        assert int(round(when.timestamp() * 1000)) == r.t_ns // 1_000_000
        assert p.find("g:type", ns).text == r.status


def test_iso_utc():
    assert iso_utc(0) == "1970-01-01T00:00:00.000Z"
    assert iso_utc(T0) == "2023-11-14T22:13:20.123Z"


def test_track_writer_writes_side_files_also_after_an_exception(tmp_path):
    path = tmp_path / "run" / "t.jsonl"
    path.parent.mkdir()
    with pytest.raises(RuntimeError):
        with TrackWriter(path, geojson=tmp_path / "x.geojson", gpx=True) as w:
            w.write(_rec(0))
            w.write(_rec(1))
            raise RuntimeError("tracker crashed")
    assert len(read_track(path)) == 2
    assert len(json.loads((tmp_path / "x.geojson").read_text())["features"]) == 3
    assert len(ET.parse(path.with_suffix(".gpx")).getroot().findall(f".//{{{GPX_NS}}}trkpt")) == 2


def test_track_writer_errors(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("")
    with pytest.raises(OutputError, match="exists already; remove it"):
        TrackWriter(path).open()
    with pytest.raises(OutputError, match="folder .*nope does not exist"):
        TrackWriter(tmp_path / "nope" / "t.jsonl").open()
    with TrackWriter(path, overwrite=True) as w:
        w.write(_rec(2))
        with pytest.raises(OutputError, match=r"time order: t_ns .* \(200.000 ms earlier\)"):
            w.write(_rec(1))
        with pytest.raises(OutputError, match="takes an EstimateRecord, got dict"):
            w.write({"t_ns": 1})
    with pytest.raises(OutputError, match="not open"):
        w.write(_rec(3))
    assert read_track(path) == [_rec(2)]


def test_read_track_names_the_bad_line(tmp_path):
    good = [_rec(i).to_json() for i in range(3)]
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join([good[0], good[1][:-5], good[2]]) + "\n")
    with pytest.raises(OutputError) as info:
        read_track(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}:2: not valid JSON") and "one estimate record object per line" in msg

    d = json.loads(good[2])
    d["lat"] = "47.0"
    path.write_text("\n".join([good[0], "", good[1], json.dumps(d)]) + "\n")
    with pytest.raises(OutputError, match=rf"^{path}:4: lat must be a finite number, got '47.0'"):
        read_track(path)

    d = json.loads(good[2])
    d["extra"] = 1
    path.write_text("\n".join([good[0], json.dumps(d)]) + "\n")
    with pytest.raises(OutputError, match=rf"^{path}:2: unknown estimate record key"):
        read_track(path)

    with pytest.raises(OutputError, match="does not exist"):
        read_track(tmp_path / "missing.jsonl")


def test_read_track_drops_a_torn_last_line_only(tmp_path):
    good = [_rec(i).to_json() for i in range(3)]
    path = tmp_path / "t.jsonl"
    path.write_text(good[0] + "\n" + good[1] + "\n" + good[2][:30])  # crash while writing the third line
    assert read_track(path) == [_rec(0), _rec(1)]
    path.write_text("")
    assert read_track(path) == []


def test_geojson_and_gpx_of_short_tracks(tmp_path):
    assert json.loads(write_geojson([], tmp_path / "a.geojson").read_text()) == {
        "type": "FeatureCollection", "features": []}
    one = json.loads(write_geojson([_rec(0)], tmp_path / "b.geojson").read_text())
    assert [f["geometry"]["type"] for f in one["features"]] == ["Point"]
    root = ET.parse(write_gpx([], tmp_path / "c.gpx")).getroot()
    assert root.findall(f".//{{{GPX_NS}}}trkpt") == []
    r = _rec(0, status="LOST<&>")
    text = write_gpx([r], tmp_path / "d.gpx").read_text()
    assert ET.fromstring(text).find(f".//{{{GPX_NS}}}type").text == "LOST<&>"
    with pytest.raises(OutputError, match="record 1 is a str"):
        write_geojson([r, "x"], tmp_path / "e.geojson")
    with pytest.raises(OutputError, match="does not exist"):
        write_gpx([r], tmp_path / "no" / "x.gpx")
