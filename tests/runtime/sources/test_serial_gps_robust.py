"""runtime.sources.serial_gps under bad input (issue 12): the reader thread survives any line, reports and restarts on
any exception, says when its port is absent; NMEA out declares each estimate honestly (checked with pynmea2).

Real pseudo-terminals stand for the serial ports (os.openpty + a symlink as the device path), no mocks."""

from __future__ import annotations

import math
import os
import select
import time
from pathlib import Path

import pynmea2
import pytest

from runtime.nmea import (
    KNOT_MPS,
    NmeaParser,
    estimate_sentences,
    hdop_of_sigma,
    nmea_fix_kind,
    speed_course,
    utc_ns,
    with_checksum,
)
from runtime.outputs import EstimateRecord
from runtime.sources.serial_gps import NmeaSerialWriter, SerialGps


class Pty:
    """A pseudo-terminal whose slave is reachable through ``link`` (a path that can vanish and come back)."""

    def __init__(self, link: Path) -> None:
        self.master, self.slave = os.openpty()
        self.link = link
        if link.is_symlink():
            link.unlink()
        link.symlink_to(os.ttyname(self.slave))

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def read_available(self, timeout: float = 1.0) -> bytes:
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.master], [], [], 0.05)
            if r:
                out += os.read(self.master, 65536)
            elif out:
                break
        return out

    def close(self) -> None:
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.link.is_symlink():
            self.link.unlink()


def wait_for(cond, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def _gga(second: int, hdop: str = "0.9") -> bytes:
    return with_checksum(f"GPGGA,1200{second:02d}.00,4807.038,N,01131.000,E,1,08,{hdop},545.4,M,46.9,M,,").encode()


# ============================================================================================== reader thread
def test_hdop_1e308_with_a_valid_checksum_does_not_stop_the_fixes(tmp_path):
    dev = Pty(tmp_path / "gps")
    gps = SerialGps(str(dev.link), 9600, queue_size=50, time_source="host", reconnect_s=0.1)
    try:
        assert gps.wait_connected(5)
        dev.send(_gga(0) + _gga(1, "1e308") + _gga(2) + _gga(3, "nan") + _gga(4))
        assert wait_for(lambda: gps.fixes >= 3)
        assert [round(f.sigma_h, 3) for f in gps.drain()] == [4.5, 4.5, 4.5]
        c = gps.counters
        assert c["malformed_reasons"] == {"hdop": 2} and c["thread_errors"] == 0 and gps.running
        assert "2 lines skipped (last: malformed GGA hdop 'nan')" in gps.status_line()
        assert gps.warning == ""
    finally:
        gps.close()
        dev.close()


class _FailingParser(NmeaParser):
    """A parser with a bug that raises on one input (stands for any exception in the reader thread)."""

    def feed(self, data, recv_ns=None):
        if b"!" in data:  # one byte: whatever chunks the port reads in
            raise RuntimeError("a bug in the reader")
        return super().feed(data, recv_ns)


def test_the_reader_thread_reports_and_restarts_on_any_exception(tmp_path):
    dev = Pty(tmp_path / "gps")
    gps = SerialGps(str(dev.link), 9600, queue_size=50, parser=_FailingParser(time_source="host"),
                    reconnect_s=0.1)
    try:
        assert gps.wait_connected(5)
        dev.send(_gga(0))
        assert wait_for(lambda: gps.fixes == 1)
        dev.send(b"!\r\n")
        assert wait_for(lambda: gps.thread_errors == 1)
        assert gps.last_thread_error == "RuntimeError: a bug in the reader"
        assert "GPS reader restarted 1 time(s); last: RuntimeError: a bug in the reader" in gps.warning
        assert wait_for(lambda: gps.connected and gps.connects == 2)  # the port reopened by the restarted reader
        assert gps.running
        time.sleep(0.1)
        dev.send(_gga(5) + _gga(6))
        assert wait_for(lambda: gps.fixes >= 2)  # fixes flow again
        assert gps.counters["thread_errors"] == 1
        assert "reader restarted 1x (last: RuntimeError: a bug in the reader)" in gps.status_line()
    finally:
        gps.close()
        dev.close()
    assert not gps.running


def test_an_absent_port_is_said_and_retried_until_it_appears(tmp_path):
    link = tmp_path / "ttyUSB7"
    gps = SerialGps(str(link), 9600, queue_size=10, time_source="host", reconnect_s=0.05)
    dev = None
    try:
        assert wait_for(lambda: gps.open_failures >= 2)
        assert not gps.connected and gps.running
        assert gps.warning.startswith(f"GPS port '{link}' is not open (")
        assert "cannot open serial port" in gps.warning and "retrying every 0.05 s" in gps.warning
        assert gps.status_line().startswith(f"GPS {link} NOT OPEN (")
        dev = Pty(link)  # plugged in late
        assert gps.wait_connected(5)
        dev.send(_gga(0) + _gga(1))
        assert wait_for(lambda: gps.fixes >= 1)
        assert gps.warning == "" and gps.status_line().startswith(f"GPS {link} open, ")
    finally:
        gps.close()
        if dev is not None:
            dev.close()


# ============================================================================================== NMEA out
T = utc_ns(2025, 6, 7, 8, 9, 10, 120_000_000)


def _rec(status="OK", gps="ok", lat=47.3769, lon=8.5417, sigma=2.5, ve=3.0, vn=4.0):
    return EstimateRecord(t_ns=T, lat=lat, lon=lon, heading_deg=10.0, sigma_m=sigma, cov_en=None, status=status,
                          latency_ms={}, gps=gps, ve_mps=ve, vn_mps=vn, v_sigma_mps=0.3)


@pytest.mark.parametrize("status,gps,quality,rmc_status,mode", [
    ("OK", "ok", 1, "A", "A"),
    ("OK", "none", 1, "A", "A"),
    ("DEGRADED", "ok", 1, "A", "A"),
    ("GPS_ONLY", "ok", 1, "A", "A"),
    ("DEGRADED", "outage", 6, "A", "E"),
    ("DEGRADED", "none", 6, "A", "E"),
    ("GPS_REJECTED", "rejected", 6, "A", "E"),
    ("LOST", "outage", 0, "V", "N"),
])
def test_estimate_sentences_parse_back_with_pynmea2_field_by_field(status, gps, quality, rmc_status, mode):
    rec = _rec(status, gps)
    text = estimate_sentences(rec.t_ns, rec.lat, rec.lon, status=rec.status, gps_state=rec.gps, sigma_m=rec.sigma_m,
                              alt_m=612.345, geoid_sep_m=47.5, ve_mps=rec.ve_mps, vn_mps=rec.vn_mps, n_sats=9)
    gga_line, rmc_line, rest = text.split("\r\n")
    assert rest == ""
    gga = pynmea2.parse(gga_line, check=True)
    rmc = pynmea2.parse(rmc_line, check=True)
    assert gga.sentence_type == "GGA" and rmc.sentence_type == "RMC"
    assert int(gga.gps_qual) == quality and rmc.status == rmc_status and rmc.mode_indicator == mode
    assert gga.timestamp.strftime("%H%M%S.%f") == "080910.120000" and rmc.datestamp.isoformat() == "2025-06-07"
    assert int(gga.num_sats) == 9
    if quality == 0:  # LOST: no position, no precision, no altitude, no velocity
        assert (gga.lat, gga.lon, gga.horizontal_dil, gga.altitude, rmc.lat, rmc.spd_over_grnd) == (
            "", "", "", None, "", None)
        return
    assert gga.latitude == pytest.approx(47.3769, abs=2e-7) and gga.longitude == pytest.approx(8.5417, abs=2e-7)
    assert rmc.latitude == pytest.approx(47.3769, abs=2e-7) and rmc.longitude == pytest.approx(8.5417, abs=2e-7)
    assert float(gga.horizontal_dil) == 0.5  # 2.5 m / 5 m
    assert gga.altitude == pytest.approx(612.345 - 47.5, abs=5e-4) and float(gga.geo_sep) == 47.5
    assert gga.altitude_units == "M"
    assert rmc.spd_over_grnd == pytest.approx(5.0 / KNOT_MPS, abs=5e-4)  # |(3, 4)| m/s in knots
    assert rmc.true_course == pytest.approx(math.degrees(math.atan2(3.0, 4.0)), abs=5e-3)
    # and SkyFix's own parser reads back the altitude (ellipsoid), the sigma and the velocity
    if quality == 1:
        (fix,) = NmeaParser(time_source="gps").parse_lines(text.split("\r\n")[::-1])  # RMC first: its date
        assert fix.t_ns == T and fix.alt == pytest.approx(612.345, abs=5e-4)
        assert fix.sigma_h == pytest.approx(2.5) and fix.velocity_xy == pytest.approx((3.0, 4.0), abs=1e-3)


def test_unknown_altitude_geoid_velocity_and_sigma_leave_fields_empty():
    rec = _rec("DEGRADED", "none", sigma=math.inf, ve=None, vn=None)
    text = estimate_sentences(rec.t_ns, rec.lat, rec.lon, status=rec.status, gps_state=rec.gps, sigma_m=rec.sigma_m)
    gga, rmc = (pynmea2.parse(x, check=True) for x in text.split("\r\n")[:2])
    assert gga.altitude is None and gga.geo_sep == "" and float(gga.horizontal_dil) == 99.99
    assert int(gga.num_sats) == 0  # no GPS in use: no satellites invented
    assert rmc.spd_over_grnd is None and rmc.true_course is None and rmc.mode_indicator == "E"
    # altitude given, geoid separation unknown: the altitude field carries the value itself, separation empty
    text = estimate_sentences(T, 1.0, 2.0, status="OK", alt_m=80.25, ve_mps=0.0, vn_mps=0.0)
    gga, rmc = (pynmea2.parse(x, check=True) for x in text.split("\r\n")[:2])
    assert gga.altitude == 80.25 and gga.geo_sep == ""
    assert rmc.spd_over_grnd == 0.0 and rmc.true_course is None  # standing still: no course


def test_mapping_helpers():
    assert nmea_fix_kind("OK").quality == 1 and nmea_fix_kind("OK", "ok", has_position=False).quality == 0
    assert nmea_fix_kind("SOMETHING_NEW", "ok").quality == 6  # an unknown status is not claimed as a GPS fix
    assert hdop_of_sigma(None) is None and hdop_of_sigma(math.nan) is None
    assert hdop_of_sigma(0.0) == 0.01 and hdop_of_sigma(4.08) == 0.82 and hdop_of_sigma(1e9) == 99.99
    assert hdop_of_sigma(3.0, uere_m=3.0) == 1.0
    assert speed_course(None, 1.0) == (None, None) and speed_course(0.0, 0.0) == (0.0, None)
    sp, crs = speed_course(-1.0, 0.0)
    assert sp == 1.0 and crs == pytest.approx(270.0)


def test_write_estimate_reaches_a_pty_and_old_defaults_invent_nothing(tmp_path):
    dev = Pty(tmp_path / "ap")
    try:
        with NmeaSerialWriter(str(dev.link), 57600, talker="GN") as w:
            assert w.write_estimate(_rec("DEGRADED", "outage"), alt_m=100.0, n_sats=150)
            assert w.write(T, 1.0, 2.0, 3.0)  # the plain writer: no sats, speed or HDOP given -> 0 / empty
            raw = dev.read_available()
        lines = [x for x in raw.decode("ascii").split("\r\n") if x]
        msgs = [pynmea2.parse(x, check=True) for x in lines]
        assert [m.sentence_type for m in msgs] == ["GGA", "RMC", "GGA", "RMC"]
        assert int(msgs[0].gps_qual) == 6 and int(msgs[0].num_sats) == 99 and msgs[1].mode_indicator == "E"
        assert int(msgs[2].num_sats) == 0 and msgs[2].horizontal_dil == "" and msgs[3].spd_over_grnd is None
    finally:
        dev.close()
