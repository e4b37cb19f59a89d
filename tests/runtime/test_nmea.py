"""runtime.nmea: parsing real receiver logs (parity with pynmea2), fix assembly, counters, output round trips."""

from __future__ import annotations

import glob
import math
import os
import random
import re
import time
from pathlib import Path

import numpy as np
import pynmea2
import pytest

from runtime.events import STATUS_FIX, STATUS_GBAS_FIX, STATUS_SBAS_FIX
from runtime.nmea import (
    KNOT_MPS,
    NmeaError,
    NmeaParser,
    format_gga,
    format_rmc,
    nmea_checksum,
    parse_nmea_bytes,
    split_sentence,
    utc_ns,
    with_checksum,
)

DATA = Path(os.environ.get("SKYFIX_DATA", "/work/shared/data"))
NMEA_DIR = DATA / "nmea"
LOGS = sorted(glob.glob(str(NMEA_DIR / "*.log")))
needs_logs = pytest.mark.skipif(not LOGS, reason=f"no NMEA logs in {NMEA_DIR}")


def _s(body: str) -> str:
    return with_checksum(body)


def _parser(**kw) -> NmeaParser:
    kw.setdefault("clock_ns", lambda: 123)
    return NmeaParser(**kw)


# ============================================================================================== real logs
@needs_logs
def test_every_real_log_parses_with_sane_counters():
    total = dict(files=0, sentences=0, fixes=0, bad_checksum=0, malformed=0)
    with_fixes = 0
    for path in LOGS:
        data = Path(path).read_bytes()
        fixes, parser = parse_nmea_bytes(data, clock_ns=lambda: 0)
        c = parser.counters
        assert c.sentences == c.parsed + c.bad_checksum + c.malformed + c.ignored, path
        assert c.lines == c.garbage + c.sentences, path
        assert c.fixes == len(fixes), path
        assert sum(c.ignored_types.values()) == c.ignored, path
        for f in fixes:
            assert -90 <= f.lat <= 90 and -180 <= f.lon <= 180, path
            assert f.status >= STATUS_FIX
            if f.cov_enu is not None:
                assert f.sigma_h > 0 and f.sigma_v == pytest.approx(2 * f.sigma_h)
        with_fixes += bool(fixes)
        total["files"] += 1
        for k in ("sentences", "bad_checksum", "malformed"):
            total[k] += getattr(c, k)
        total["fixes"] += len(fixes)
    assert with_fixes >= 30, total
    assert total["fixes"] > 1000, total


# (log, expected lat, lon from the log's "# Location" header, year from its "# Date" header)
KNOWN = [
    ("bn-9015.log", 52.01, 4.36, 2010),
    ("bt451.log", 55.8, 23.6, 2009),
    ("garmin-10x.log", 41.7, -83.6, 2010),
    ("nokia-ld-4w.log", 65.01, 25.47, 2009),  # header: "Oulu, FI, 65N 25E"
    ("bu353s4.log", -37.8, 175.3, 2014),
    ("mt3339.log", 44.06, -121.31, 2015),
]


@needs_logs
@pytest.mark.parametrize("name,lat,lon,year", KNOWN)
def test_real_logs_fix_where_the_header_says(name, lat, lon, year):
    path = NMEA_DIR / name
    if not path.exists():
        pytest.skip(f"{path} absent")
    fixes, parser = parse_nmea_bytes(path.read_bytes())
    assert len(fixes) >= 3
    for f in fixes:
        dn = (f.lat - lat) * 111.0
        de = (f.lon - lon) * 111.0 * math.cos(math.radians(lat))
        assert math.hypot(dn, de) < 20.0, (f.lat, f.lon)
    # RMC gave the date: UTC times in the header's year, mostly increasing at 1 or 2 Hz (some logs are spliced)
    t = np.array([f.t_ns for f in fixes])
    assert all(time.gmtime(x / 1e9).tm_year == year for x in t)
    dt = np.diff(t)
    assert np.mean(dt > 0) >= 0.8 and np.median(dt) in (500_000_000, 1_000_000_000)
    assert parser.counters.host_time_fixes == 0


@needs_logs
def test_gga_positions_match_pynmea2_on_every_real_log():
    compared = 0
    for path in LOGS:
        for raw in re.split(rb"[\r\n]+", Path(path).read_bytes()):
            line = raw.decode("latin-1")
            split = split_sentence(line)
            if split is None or not split[0].endswith("GGA"):
                continue
            parser = _parser(time_source="host")
            fixes = parser.parse_line(raw)
            sentence = line[line.rfind("$"):]
            try:
                ref = pynmea2.parse(sentence, check=True)
                ref_lat, ref_lon, ref_q = ref.latitude, ref.longitude, int(ref.gps_qual or 0)
            except (pynmea2.ParseError, ValueError, TypeError):
                assert not fixes, sentence  # what pynmea2 cannot read gives no fix here either
                continue
            if ref_q in (1, 2, 3, 4, 5, 9) and ref.lat and ref.lon:
                assert len(fixes) == 1, sentence
                assert fixes[0].lat == pytest.approx(ref_lat, abs=1e-9), sentence
                assert fixes[0].lon == pytest.approx(ref_lon, abs=1e-9), sentence
                if ref.altitude is not None:
                    sep = float(ref.geo_sep) if ref.geo_sep else 0.0
                    assert fixes[0].alt == pytest.approx(ref.altitude + sep), sentence
                compared += 1
            else:
                assert not fixes, sentence
    assert compared > 500


@needs_logs
def test_chunked_feed_equals_whole_file():
    rng = random.Random(3)
    for name in ("bu353s4.log", "ublox-zed-f9p-nmea.log", "greis-binary.log", "ac12_binary.log"):
        path = NMEA_DIR / name
        if not path.exists():
            continue
        data = path.read_bytes()
        ref, ref_parser = parse_nmea_bytes(data, clock_ns=lambda: 0)
        parser = NmeaParser(clock_ns=lambda: 0)
        got, i = [], 0
        while i < len(data):
            n = rng.randint(1, 200)
            got.extend(parser.feed(data[i:i + n]))
            i += n
        got.extend(parser.flush())
        assert [(f.t_ns, f.lat, f.lon, f.alt) for f in got] == [(f.t_ns, f.lat, f.lon, f.alt) for f in ref], name
        assert parser.counters.as_dict() == ref_parser.counters.as_dict(), name


# ============================================================================================== fix assembly
DAY = utc_ns(2024, 5, 17)


def test_gga_then_rmc_gives_utc_time_sigma_and_altitude():
    p = _parser(uere_m=4.0)
    gga = _s("GNGGA,123519.25,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")
    rmc = _s("GNRMC,123519.25,A,4807.038,N,01131.000,E,022.4,084.4,170524,003.1,W,A")
    assert p.parse_line(gga) == []  # held for one epoch waiting for the date
    (fix,) = p.parse_line(rmc)
    assert fix.t_ns == DAY + ((12 * 60 + 35) * 60 + 19) * 10**9 + 250_000_000
    assert fix.lat == pytest.approx(48 + 7.038 / 60) and fix.lon == pytest.approx(11 + 31 / 60)
    assert fix.alt == pytest.approx(545.4 + 46.9)
    assert fix.status == STATUS_FIX and fix.topic == "nmea"
    assert fix.sigma_h == pytest.approx(0.9 * 4.0) and fix.sigma_v == pytest.approx(2 * 0.9 * 4.0)
    assert p.speed_mps == pytest.approx(22.4 * KNOT_MPS) and p.course_deg == pytest.approx(84.4)
    assert p.n_sats == 8 and p.hdop == pytest.approx(0.9)
    assert p.utc_minus_host_ns == fix.t_ns - 123  # the GGA's host receive time (the test clock says 123)
    # this stream sends RMC after GGA: the next GGA waits for its RMC (velocity), then comes out on UTC
    assert p.parse_line(_s("GNGGA,123520.25,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")) == []
    (fix2,) = p.parse_line(_s("GNRMC,123520.25,A,4807.038,N,01131.000,E,022.4,084.4,170524,003.1,W,A"))
    assert fix2.t_ns - fix.t_ns == 10**9
    assert p.counters.host_time_fixes == 0 and p.latest is fix2


def test_gga_only_stream_uses_host_time_and_stops_waiting():
    clock = iter(range(1000, 10**6, 1000))
    p = NmeaParser(clock_ns=lambda: next(clock))
    out = p.parse_line(_s("GPGGA,000001,0100.000,S,00200.000,W,1,05,1.0,10,M,,M,,"))
    assert out == []
    out = p.parse_line(_s("GPGGA,000002,0100.000,S,00200.000,W,1,05,1.0,10,M,,M,,"))
    assert [f.t_ns for f in out] == [1000, 2000]  # the held one, then this one (no more waiting)
    assert out[0].lat == pytest.approx(-1.0) and out[0].lon == pytest.approx(-2.0)
    out = p.parse_line(_s("GPGGA,000003,0100.000,S,00200.000,W,1,05,1.0,10,M,,M,,"))
    assert [f.t_ns for f in out] == [3000]
    assert p.counters.host_time_fixes == 3


def test_time_source_host_and_flush_releases_a_held_fix():
    p = _parser(time_source="host")
    rmc = _s("GPRMC,235959.50,A,4807.038,N,01131.000,E,0.0,0.0,170524,,,A")
    gga = _s("GPGGA,235959.50,4807.038,N,01131.000,E,1,08,0.9,545.4,M,,M,,")
    p.parse_line(rmc)
    (fix,) = p.parse_line(gga, recv_ns=42)
    assert fix.t_ns == 42
    q = _parser()
    assert q.parse_line(gga) == []
    (held,) = q.flush()
    assert held.t_ns == 123  # host clock: no RMC came for it


def test_midnight_rollover_between_rmc_and_gga():
    p = _parser()
    p.parse_line(_s("GPRMC,235959.50,A,4807.038,N,01131.000,E,0.0,0.0,170524,,,A"))
    (fix,) = p.parse_line(_s("GPGGA,000000.50,4807.038,N,01131.000,E,1,08,0.9,545.4,M,,M,,"))
    assert fix.t_ns == utc_ns(2024, 5, 18, 0, 0, 0, 500_000_000)


# ---------------------------------------------------------------------------------------------- velocity (RMC)
def _gga(tod: str, talker: str = "GN") -> str:
    return _s(f"{talker}GGA,{tod},4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")


def _rmc(tod: str, speed: str = "019.438", course: str = "090.0", status: str = "A") -> str:
    return _s(f"GNRMC,{tod},{status},4807.038,N,01131.000,E,{speed},{course},170524,,,A")


def test_rmc_before_gga_of_the_same_epoch_gives_the_fix_its_velocity():
    p = _parser()
    assert p.parse_line(_rmc("120000.00", "019.438", "090.0")) == []  # 19.438 kn = 10 m/s, due east
    (fix,) = p.parse_line(_gga("120000.00"))
    np.testing.assert_allclose(fix.velocity_enu, [10.0, 0.0], atol=1e-3)
    assert fix.velocity_sigma_mps is None  # NMEA says nothing about its precision
    p.parse_line(_rmc("120001.00", "019.438", "210.0"))  # south-south-west
    (fix,) = p.parse_line(_gga("120001.00"))
    c = math.radians(210.0)
    np.testing.assert_allclose(fix.velocity_xy, [10.0 * math.sin(c), 10.0 * math.cos(c)], atol=1e-3)
    assert fix.velocity_xy[0] < 0 and fix.velocity_xy[1] < 0


def test_rmc_after_gga_holds_the_fix_until_its_rmc():
    p = _parser()
    assert p.parse_line(_gga("120000.00")) == []  # first fix: held for the date
    (first,) = p.parse_line(_rmc("120000.00", "009.719", "000.0"))  # 5 m/s north
    np.testing.assert_allclose(first.velocity_xy, [0.0, 5.0], atol=1e-3)
    # the stream has shown that its RMC follows: the next fix waits for it (same burst) and gets its velocity
    assert p.parse_line(_gga("120001.00")) == []
    assert p.parse_line(_s("GNGSA,A,3,01,02,03,,,,,,,,,,1.5,0.9,1.2")) == []  # other sentences in between
    (fix,) = p.parse_line(_rmc("120001.00", "009.719", "180.0"))
    np.testing.assert_allclose(fix.velocity_xy, [0.0, -5.0], atol=1e-3)
    assert fix.t_ns - first.t_ns == 10**9 and p.counters.host_time_fixes == 0
    # an epoch whose RMC never comes: released (no velocity) by the next epoch's GGA, and holding stops
    assert p.parse_line(_gga("120002.00")) == []
    late, now = p.parse_line(_gga("120003.00"))  # the held one, then this one at once (no more holding)
    assert late.t_ns - first.t_ns == 2 * 10**9 and late.velocity_enu is None
    assert now.t_ns - first.t_ns == 3 * 10**9 and now.velocity_enu is None
    assert p.parse_line(_rmc("120003.00")) == []  # an RMC after its epoch's fix: the order shows again
    assert p.parse_line(_gga("120004.00")) == []
    (again,) = p.parse_line(_rmc("120004.00", "0.0", ""))
    np.testing.assert_allclose(again.velocity_xy, [0.0, 0.0])
    assert p.parse_line(_gga("120005.00")) == []
    (held,) = p.flush()  # end of stream releases a held fix
    assert held.velocity_enu is None and held.t_ns - first.t_ns == 5 * 10**9


def test_an_rmc_of_another_epoch_is_never_attached():
    p = _parser()
    p.parse_line(_rmc("120000.00"))
    (fix,) = p.parse_line(_gga("120001.00"))  # the RMC of 12:00:00 gave the date, not this epoch's velocity
    assert fix.velocity_enu is None and fix.t_ns == DAY + 12 * 3600 * 10**9 + 10**9
    (fix,) = p.parse_line(_gga("120002.00"))
    assert fix.velocity_enu is None
    p.parse_line(_rmc("120002.50"))  # a fraction off is another epoch too
    assert p.flush() == []
    q = _parser()
    q.parse_line(_rmc("120003.00"))
    (fix,) = q.parse_line(_gga("120003.00"))
    assert fix.velocity_enu is not None


@pytest.mark.parametrize(
    "speed, course, status, expected",
    [
        ("", "090.0", "A", None),  # no speed
        ("010.0", "", "A", None),  # moving but no course (u-blox leaves it empty below a speed threshold)
        ("0.000", "", "A", (0.0, 0.0)),  # standing still: no course needed
        ("010.0", "090.0", "V", None),  # void RMC: nothing from it
    ],
)
def test_missing_speed_or_course_or_a_void_rmc_gives_no_velocity(speed, course, status, expected):
    p = _parser()
    p.parse_line(_rmc("120000.00", speed, course, status))
    (fix,) = p.parse_line(_gga("120000.00")) or p.flush()
    if expected is None:
        assert fix.velocity_enu is None
    else:
        np.testing.assert_allclose(fix.velocity_xy, expected)


@needs_logs
@pytest.mark.parametrize("name, rmc_first", [("nl2008u.log", True), ("haicom-305N.log", False)])
def test_real_moving_logs_give_velocities_that_match_the_positions(name, rmc_first):
    """Velocity from RMC vs the displacement between consecutive fixes, on real receivers (both sentence orders)."""
    from maps.geodesy import LocalFrame

    path = NMEA_DIR / name
    if not path.exists():
        pytest.skip(f"{path} is absent")
    fixes, parser = parse_nmea_bytes(path.read_bytes(), clock_ns=lambda: 0)
    with_v = [f for f in fixes if f.velocity_enu is not None]
    assert len(with_v) >= 0.8 * len(fixes) and len(fixes) >= 9
    speed = np.array([math.hypot(*f.velocity_xy) for f in with_v])
    assert speed.max() < 50.0 and speed.max() > 2.0  # a walk/drive, not garbage
    assert parser.counters.host_time_fixes <= 1
    frame = LocalFrame(fixes[0].lat, fixes[0].lon)
    xy = np.array([frame.to_local(f.lat, f.lon) for f in fixes], dtype=float)
    t = np.array([f.t_ns for f in fixes]) / 1e9
    v = np.array([f.velocity_xy if f.velocity_enu is not None else (np.nan, np.nan) for f in fixes])
    disp = np.diff(xy, axis=0) / np.diff(t)[:, None]
    mid = 0.5 * (v[1:] + v[:-1])  # the mean velocity over each interval
    ok = np.all(np.isfinite(mid), axis=1)
    assert np.median(np.linalg.norm(disp[ok] - mid[ok], axis=1)) < 1.0  # m/s


def test_status_from_quality_and_gns_mode():
    def status_of(sentence):
        p = _parser(time_source="host")
        out = p.parse_line(_s(sentence))
        return out[0].status if out else None

    base = "GPGGA,120000,4807.038,N,01131.000,E,{q},08,0.9,545.4,M,,M,,"
    assert [status_of(base.format(q=q)) for q in range(10)] == [
        None, STATUS_FIX, STATUS_SBAS_FIX, STATUS_SBAS_FIX, STATUS_GBAS_FIX, STATUS_GBAS_FIX, None, None, None,
        STATUS_SBAS_FIX]
    gns = "GNGNS,120000,4807.038,N,01131.000,E,{m},08,0.9,545.4,40.0,,,V"
    assert status_of(gns.format(m="AN")) == STATUS_FIX
    assert status_of(gns.format(m="NR")) == STATUS_GBAS_FIX
    assert status_of(gns.format(m="DA")) == STATUS_SBAS_FIX
    assert status_of(gns.format(m="NN")) is None
    p = _parser(time_source="host")
    (fix,) = p.parse_line(_s(gns.format(m="AA")))
    assert fix.alt == pytest.approx(585.4)


def test_no_fix_duplicates_and_missing_hdop():
    p = _parser(time_source="host")
    assert p.parse_line(_s("GPGGA,,,,,,0,,,,M,,M,,")) == []
    assert p.counters.no_fix == 1 and p.counters.parsed == 1
    (fix,) = p.parse_line(_s("GNGGA,120000,4807.038,N,01131.000,E,1,08,,545.4,M,,M,,"))
    assert fix.cov_enu is None and fix.sigma_h is None
    assert p.parse_line(_s("GNGNS,120000,4807.038,N,01131.000,E,AA,08,0.9,545.4,0,,,V")) == []
    assert p.parse_line(_s("GLGGA,120000,4807.038,N,01131.000,E,1,08,0.9,545.4,M,,M,,")) == []
    assert p.counters.duplicates == 2 and p.counters.fixes == 1


def test_garbage_truncated_bad_checksum_and_ignored_are_counted_never_raised():
    p = _parser(time_source="host")
    good = _s("GPGGA,120000,4807.038,N,01131.000,E,1,08,0.9,545.4,M,,M,,").strip()
    bad = good[:-2] + ("00" if good[-2:] != "00" else "11")
    lines = [
        bad,  # bad checksum
        good[:40],  # truncated: no checksum
        "$GPGGA,120000,4807.038,N,01131.000,E,1,08,0.9,545.4,M,,M,,*ZZ",  # unreadable checksum
        _s("GPGGA,326060,4807.038,N,01131.000,E,1,08,0.9,545.4,M,,M,,"),  # time 32:60:60
        _s("GPGGA,120000,9507.038,N,01131.000,E,1,08,0.9,545.4,M,,M,,"),  # latitude 95
        _s("GPGGA,120000,4807.038,Q,01131.000,E,1,08,0.9,545.4,M,,M,,"),  # hemisphere Q
        _s("GPRMC,120000,A,4807.038,N"),  # too few fields
        _s("GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00"),
        _s("PGRME,15.0,M,45.0,M,25.0,M"),
        "\x00\xb5b\x01\x07$\x00\x01\x02\xff",  # binary holding a '$'
        "# a comment",
        "!AIVDM,1,1,,B,13nUgBWP01PkHvDU7<kC4wvJ2>`<,0*27",
    ]
    for line in lines:
        assert p.parse_line(line) == []
    c = p.counters
    assert (c.bad_checksum, c.malformed, c.ignored, c.garbage) == (1, 6, 2, 3)
    assert dict(c.ignored_types) == {"GSV": 1, "PGRME": 1}
    assert c.sentences == c.parsed + c.bad_checksum + c.malformed + c.ignored
    # a long binary run with no line end is dropped; the buffer stays bounded; parsing resumes after it
    out = p.feed(bytes(range(256)) * 40)
    assert out == [] and len(p._buf) <= 1024
    out = p.feed(b"\r\n" + good.encode() + b"\r\n")
    assert len(out) == 1
    # lower-case hex checksums (some receivers) are accepted
    assert p.parse_line(good[:-2] + good[-2:].lower()) == []  # same epoch: a duplicate, but parsed
    assert p.counters.duplicates == 1


def test_parser_argument_errors():
    with pytest.raises(NmeaError, match=r"uere_m must be a positive number of metres \(typically 3 to 7\), got 0"):
        NmeaParser(uere_m=0)
    with pytest.raises(NmeaError, match=r"vertical_factor must be a positive number .*got -1"):
        NmeaParser(vertical_factor=-1)
    with pytest.raises(NmeaError, match=r"time_source must be 'gps' or 'host', got 'utc'"):
        NmeaParser(time_source="utc")


# ============================================================================================== output
def test_checksum_of_a_textbook_sentence():
    body = "GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"
    assert nmea_checksum(body) == 0x47
    assert with_checksum(body) == f"${body}*47\r\n"


@pytest.mark.parametrize("lat,lon", [(48.1173, 11.516667), (-33.8688, 151.2093), (0.0, -0.000001),
                                     (-89.999999, -179.999999), (59.99999999, 9.999999999), (45.5, 0.0)])
def test_gga_rmc_round_trip_through_our_parser_and_pynmea2(lat, lon):
    t = utc_ns(2024, 12, 31, 23, 59, 58, 730_000_000)
    gga = format_gga(t, lat, lon, 123.456, 4, 17, 0.87, geoid_sep_m=47.2, talker="GN")
    rmc = format_rmc(t, lat, lon, 12.5, 271.25, True, talker="GN")
    for s in (gga, rmc):
        assert s.endswith("\r\n") and s.startswith("$GN")
        assert split_sentence(s) is not None
    assert re.match(r"\$GNGGA,235958\.73,\d{4}\.\d{5},[NS],\d{5}\.\d{5},[EW],4,17,0\.87,", gga)
    p = _parser()
    assert p.parse_line(gga) == []
    (fix,) = p.parse_line(rmc)
    assert fix.t_ns == t
    assert fix.lat == pytest.approx(lat, abs=2e-7) and fix.lon == pytest.approx(lon, abs=2e-7)
    assert fix.alt == pytest.approx(123.456, abs=1e-3)
    assert fix.status == STATUS_GBAS_FIX and fix.sigma_h == pytest.approx(0.87 * 5)
    assert p.speed_mps == pytest.approx(12.5, abs=1e-3) and p.course_deg == pytest.approx(271.25)
    ref = pynmea2.parse(gga.strip(), check=True)
    assert ref.latitude == pytest.approx(lat, abs=2e-7) and ref.longitude == pytest.approx(lon, abs=2e-7)
    assert int(ref.gps_qual) == 4 and int(ref.num_sats) == 17 and float(ref.horizontal_dil) == pytest.approx(0.87)
    assert ref.altitude + float(ref.geo_sep) == pytest.approx(123.456, abs=1e-3)
    ref = pynmea2.parse(rmc.strip(), check=True)
    assert ref.datestamp.isoformat() == "2024-12-31" and ref.status == "A"
    assert ref.timestamp.strftime("%H:%M:%S.%f") == "23:59:58.730000"
    assert ref.spd_over_grnd * KNOT_MPS == pytest.approx(12.5, abs=1e-3) and ref.true_course == pytest.approx(271.25)
    assert ref.latitude == pytest.approx(lat, abs=2e-7) and ref.longitude == pytest.approx(lon, abs=2e-7)


def test_output_rounding_and_invalid_rmc():
    t = utc_ns(2024, 1, 1, 23, 59, 59, 996_000_000)  # rounds to the next day at the centisecond
    s = format_rmc(t, 10.999999999, -0.5, 0.0, 359.999, False)
    fields = s.split(",")
    assert fields[1] == "000000.00" and fields[9] == "020124"
    assert fields[2] == "V" and fields[3] == "1100.00000" and fields[5] == "00030.00000" and fields[6] == "W"
    assert fields[8] == "0.00" and s.split("*")[0].endswith(",N")
    assert format_gga(0, 1.0, 2.0, 3.0, minute_decimals=4).split(",")[2] == "0100.0000"
    p = _parser()
    p.parse_line(s)
    assert p.speed_mps is None  # a void RMC gives no velocity


def test_output_errors():
    t = utc_ns(2024, 1, 1)
    cases = [
        (lambda: format_gga(-1, 0, 0, 0), r"t_ns must be a non-negative integer number of nanoseconds .* got -1"),
        (lambda: format_gga(1.5, 0, 0, 0), r"t_ns must be .* got 1\.5"),
        (lambda: format_gga(t, 91, 0, 0), r"latitude must be finite degrees in \[-90, 90\], got 91"),
        (lambda: format_gga(t, 0, float("nan"), 0), r"longitude must be finite degrees in \[-180, 180\], got nan"),
        (lambda: format_gga(t, 0, 0, 0, quality=10), r"quality must be a GGA fix quality 0\.\.9 .*got 10"),
        (lambda: format_gga(t, 0, 0, 0, n_sats=100), r"n_sats must be an integer 0\.\.99, got 100"),
        (lambda: format_gga(t, 0, 0, 0, hdop=-1), r"hdop must be a finite number in \[0, 100\), got -1"),
        (lambda: format_gga(t, 0, 0, float("inf")),
         r"alt_m must be a finite number of metres \(or None: field left empty\), got inf"),
        (lambda: format_gga(t, 0, 0, 0, talker="gp"), r"talker must be two capital letters .* got 'gp'"),
        (lambda: format_gga(t, 0, 0, 0, minute_decimals=9), r"minute_decimals must be an integer in 0\.\.8 .*got 9"),
        (lambda: format_rmc(t, 0, 0, -1.0),
         r"speed_mps must be a finite ground speed >= 0 in m/s \(or None\), got -1\.0"),
        (lambda: format_rmc(t, 0, 0, 1.0, float("nan")), r"course_deg must be finite degrees .* got nan"),
        (lambda: format_rmc(t, 0, 0, mode="X"),
         r"mode must be one of A, D, E, N \(NMEA 2\.3 mode indicator\), got 'X'"),
        (lambda: format_gga(t, 0, None, 0), r"longitude must be finite degrees .* got None"),
    ]
    for fn, pattern in cases:
        with pytest.raises(NmeaError, match=pattern):
            fn()


# ============================================================================================== never raise (issue 12)
HOSTILE_GGA = [
    # (field index in the GGA body, value, reason counted)
    (7, "1e308", "hdop"),  # the reported bug: valid checksum, HDOP 1e308 -> infinite covariance -> raised
    (7, "100000", "hdop out of range"),
    (7, "NaN", "hdop"),
    (7, "inf", "hdop"),
    (7, "-1", "hdop out of range"),
    (7, "1_0", "hdop"),
    (7, " 1.0", "hdop"),
    (8, "9" * 40, "altitude"),
    (8, "9" * 400, "too long"),
    (8, "1e5", "altitude"),
    (8, "123456789", "altitude out of range"),
    (10, "-999", "geoid separation out of range"),
    (6, "99999999", "satellites out of range"),
    (6, "-3", "satellites"),
    (1, "4807.038e0", "coordinate"),
    (1, "inf", "coordinate"),
    (0, "1200", "time"),
    (0, "120000." + "1" * 30, "time"),
]
GGA_BODY = "GPGGA,120000.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"


@pytest.mark.parametrize("index,value,reason", HOSTILE_GGA)
def test_a_hostile_field_with_a_valid_checksum_is_a_counted_skip(index, value, reason):
    parts = GGA_BODY.split(",")
    parts[index + 1] = value
    line = _s(",".join(parts))
    p = _parser(time_source="host")
    assert p.parse_line(line) == [] and p.feed(line.encode()) == [] and p.flush() == []
    c = p.counters
    assert (c.malformed, c.parsed, c.internal_errors) == (2, 0, 0)
    assert dict(c.malformed_reasons) == {reason: 2}
    expected = "too long" if reason == "too long" else "GGA " + reason.split(" out of")[0]
    assert c.last_skip.startswith("malformed " + expected)
    assert c.skips() == {f"malformed: {reason}": 2}
    # the same sentence with a sane value still gives its fix
    assert len(_parser(time_source="host").parse_line(_s(GGA_BODY))) == 1


def test_hostile_rmc_speed_and_course_and_other_skips_have_reasons():
    p = _parser(time_source="host")
    rmc = "GPRMC,120000.00,A,4807.038,N,01131.000,E,{},{},230394,,,A"
    for speed, course in (("1e308", "0"), ("5000", "10"), ("1", "nan"), ("1", "720")):
        assert p.parse_line(_s(rmc.format(speed, course))) == []
    assert dict(p.counters.malformed_reasons) == {"speed": 1, "speed out of range": 1, "course": 1,
                                                  "course out of range": 1}
    p = _parser(time_source="host")
    lines = ["$GPGGA," + "9," * 5000 + "*00", "$GPGGA,1\u00e9*00", "$GPGGA,1*G0", "$GPGGA,1", "\xff\xfe$x",
             "$GP-GA,1*00"]
    for line in lines:
        assert p.parse_line(line) == []
    assert p.feed("$GPGGA,\u4e2d*00\r\n") == []  # a str is taken as its UTF-8 bytes
    assert p.parse_line(b"$GPGGA," + bytes(range(128, 256)) + b"*00") == []
    c = p.counters
    assert c.internal_errors == 0
    assert dict(c.malformed_reasons) == {"too long": 1, "non-printable": 3, "checksum unreadable": 1,
                                         "no checksum": 1}
    assert c.garbage == 2  # '\xff\xfe$x' and '$GP-GA' (no address after the '$')
    assert c.sentences == c.parsed + c.bad_checksum + c.malformed + c.ignored


def test_a_bug_inside_the_parser_is_caught_counted_and_the_stream_goes_on():
    p = _parser(time_source="host")

    def broken(*args):
        raise ZeroDivisionError("a bug")

    p._position = broken  # stands for any bug in the sentence code
    assert p.parse_line(_s(GGA_BODY)) == [] and p.feed((_s(GGA_BODY)).encode()) == []
    c = p.counters
    assert c.internal_errors == 2 and c.malformed_reasons == {"internal error": 2}
    assert c.last_skip == "internal error ZeroDivisionError: a bug"
    assert c.sentences == c.parsed + c.bad_checksum + c.malformed + c.ignored
    del p._position
    assert len(p.parse_line(_s(GGA_BODY.replace("120000.00", "120001.00")))) == 1


def test_small_fuzz_lets_nothing_escape():
    """The CI share of ``skyfix bench nmea-fuzz`` (1M inputs there): 20k random and mutated inputs."""
    from runtime.tools.nmea_fuzz import format_report, run_fuzz

    r = run_fuzz(20_000, seed=12)
    assert r["escaped_exceptions"] == 0, r["escaped_examples"]
    assert r["internal_errors"] == 0, r["internal_examples"]
    assert r["bad_fixes"] == 0
    assert r["fixes"] > 1000 and r["parsed"] > 5000  # the valid share is still taken
    assert r["skips_by_reason"]["malformed: hdop"] > 50  # the hostile HDOPs reached the field parser
    assert set(r["inputs_by_kind"]) == {"valid", "field", "mutate", "long", "binary", "unicode"}
    assert "escaped exceptions" in format_report(r)


def test_bench_nmea_fuzz_command_prints_a_table_and_json(tmp_path, capsys):
    import json

    from runtime.cli.skyfix import main

    out = tmp_path / "fuzz.json"
    assert main(["bench", "nmea-fuzz", "--inputs", "3000", "--seed", "4", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert re.search(r"escaped exceptions\s+0\n", text) and "counted skips by reason" in text
    report = json.loads(out.read_text())
    assert report["inputs"] == 3000 and report["escaped_exceptions"] == 0 and report["inputs_per_s_parser"] > 0
