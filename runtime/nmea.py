"""NMEA 0183 in and out: GGA/GNS/RMC sentences -> :class:`runtime.events.GpsFix`, and GGA/RMC for an autopilot.

Pure code, no I/O: :class:`NmeaParser` takes bytes or lines (from a serial port, a log file, a socket) and returns
fixes; :func:`format_gga` / :func:`format_rmc` build the sentences an autopilot takes as a GPS.

Input
-----
* Any talker (``GP``, ``GN``, ``GL``, ``GA``, ``BD``, ``GB``, ``QZ``, ...). ``GGA`` and ``GNS`` give the position,
  altitude, fix quality, satellites and HDOP; ``RMC`` gives the date and the speed / course (the latest also in
  :attr:`NmeaParser.speed_mps` / :attr:`NmeaParser.course_deg`). Only GGA/GNS produce fixes; a stream of RMC alone
  gives none (no altitude, no HDOP).
* Velocity: a fix carries ``GpsFix.velocity_enu = (speed sin(course), speed cos(course))`` m/s (east, north) when a
  valid RMC (status ``A``) with a speed and a course has the **same UTC time of day** as its GGA/GNS (a speed of 0
  with no course gives (0, 0)); ``velocity_sigma_mps`` stays None (NMEA gives no precision). An RMC of another
  epoch is never attached. Receivers send the RMC before the GGA (u-blox, Garmin) or after it (SiRF, MediaTek): in
  the second case, once the stream has shown it (an RMC for an epoch whose fix was already out), each fix is held
  until its RMC (milliseconds later, same burst) and released with the velocity, or, when its RMC does not come,
  released without one at the next epoch's sentence (and the parser stops holding until the order shows again).
* Every line is checked: the ``*hh`` checksum is required and verified; bad checksum, truncated sentences, unknown
  fields, binary data and other protocols are counted (:class:`NmeaCounters`) and skipped, never raised.
* Time (``t_ns``): with ``time_source="gps"`` (default) the UTC date (from the latest RMC; midnight roll-over
  handled) + the sentence's UTC time of day, in integer nanoseconds since the Unix epoch. Until a date is known the
  host receive time (``clock_ns()``, default :func:`time.time_ns`) is used; the first GGA is held back for one epoch
  waiting for its RMC so that a stream with RMC does not begin on the host clock. With ``time_source="host"`` every
  fix carries its host receive time (use this when the host clock, which stamps camera frames, is not disciplined
  to UTC).
* Altitude: ``GpsFix.alt`` is the height above the WGS84 ellipsoid as in ``NavSatFix.altitude`` = the GGA/GNS
  altitude (mean sea level) + the geoid separation field (0 when empty).
* Covariance: ``sigma_h = HDOP * uere_m`` per horizontal axis, ``sigma_v = vertical_factor * sigma_h``; ENU diagonal,
  ``COVARIANCE_TYPE_APPROXIMATED``. No HDOP -> ``cov_enu`` None.
* Status: GGA quality 1 -> STATUS_FIX, 2 (DGPS), 3 (PPS), 9 (WAAS) -> STATUS_SBAS_FIX, 4/5 (RTK fixed/float) ->
  STATUS_GBAS_FIX; 0 (invalid), 6 (dead reckoning), 7 (manual) and 8 (simulator) give no fix (counted in
  ``no_fix``). GNS mode letters: R/F -> GBAS, D/P -> SBAS, A -> FIX, only N/E/M/S -> no fix.
* Several position sentences for one epoch (GNGGA + GNGNS, or one per talker) give one fix: the first; the others
  are counted in ``duplicates``.

Output
------
:func:`format_gga` and :func:`format_rmc` write ``$GPGGA`` / ``$GPRMC`` (talker configurable) with latitude
``ddmm.mmmmm`` and longitude ``dddmm.mmmmm`` (``minute_decimals``, default 5 = 2 cm), UTC time ``hhmmss.ss``, and the
checksum, ending in CRLF.
"""

from __future__ import annotations

import calendar
import datetime as _dt
import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from .errors import OnboardError
from .events import (
    COVARIANCE_TYPE_APPROXIMATED,
    STATUS_FIX,
    STATUS_GBAS_FIX,
    STATUS_SBAS_FIX,
    GpsFix,
)

KNOT_MPS = 1852.0 / 3600.0  # one knot in metres per second
NS_PER_S = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_S
MAX_LINE_BYTES = 1024  # longer runs without a line end are binary data (NMEA allows 82 characters)
MAX_SENTENCE_CHARS = 256  # a longer sentence (from the '$') is malformed ("too long"); NMEA allows 82
MAX_NUMBER_CHARS = 24  # a longer numeric field is malformed
# plausibility bounds of what a receiver sends (a value outside is a corrupt field: the sentence is skipped)
MAX_HDOP = 100.0  # receivers send at most 99.99 (often 99.99 = "unknown")
ALT_MSL_RANGE_M = (-1_000.0, 100_000.0)
GEOID_SEP_RANGE_M = (-200.0, 200.0)  # the geoid is within about -107..+86 m of the ellipsoid
MAX_SPEED_KNOTS = 2_000.0  # ~1000 m/s; civilian receivers stop at 1000 knots (COCOM)
MAX_SATELLITES = 255

POSITION_TYPES = ("GGA", "GNS")
HANDLED_TYPES = ("GGA", "GNS", "RMC")

# GGA quality indicator -> NavSatStatus.status (None: no usable fix)
GGA_QUALITY_STATUS = {
    0: None,  # invalid
    1: STATUS_FIX,  # GPS / autonomous
    2: STATUS_SBAS_FIX,  # DGPS
    3: STATUS_SBAS_FIX,  # PPS
    4: STATUS_GBAS_FIX,  # RTK fixed
    5: STATUS_GBAS_FIX,  # RTK float
    6: None,  # dead reckoning (estimated)
    7: None,  # manual input
    8: None,  # simulator
    9: STATUS_SBAS_FIX,  # WAAS/SBAS (some receivers)
}
_GNS_MODE_RANK = {"R": STATUS_GBAS_FIX, "F": STATUS_GBAS_FIX, "D": STATUS_SBAS_FIX, "P": STATUS_SBAS_FIX,
                  "A": STATUS_FIX}
_LINE_SPLIT = re.compile(rb"[\r\n]+")
_PRINTABLE = re.compile(r"^[\x20-\x7e]*$")
_ADDRESS = re.compile(r"[A-Z0-9]{2,}[,*]")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)\Z")
_HEX2 = re.compile(r"[0-9A-Fa-f]{2}\Z")
_UNSIGNED = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)\Z")


class NmeaError(OnboardError):
    """Bad arguments to the NMEA formatter or parser (values out of range, unknown options)."""


class _Malformed(Exception):
    """Internal: a sentence whose checksum is right but whose fields cannot be read.

    ``reason`` is the short key counted in :attr:`NmeaCounters.malformed_reasons` (``"hdop"``, ``"time"``, ...)."""

    def __init__(self, reason: str, value: str | None = None) -> None:
        super().__init__(reason if value is None else f"{reason} {value[:40]!r}")
        self.reason = reason


# ============================================================================================== checksum
def nmea_checksum(body: str) -> int:
    """XOR of the characters of ``body`` (the text between ``$`` and ``*``)."""
    value = 0
    for ch in body.encode("ascii"):
        value ^= ch
    return value


def with_checksum(body: str) -> str:
    """``$`` + body + ``*hh`` + CRLF."""
    return f"${body}*{nmea_checksum(body):02X}\r\n"


# ============================================================================================== counters
@dataclass
class NmeaCounters:
    """What a parser has seen.

    Attributes:
        lines: non-empty lines (or over-long runs of bytes without a line end).
        garbage: lines with no ``$`` + address (binary data, other protocols, comments) and over-long runs.
        sentences: lines with a ``$`` followed by an address (``GPGGA,``): every one ends in exactly one of ``parsed``, ``bad_checksum``, ``malformed``
            or ``ignored``, so ``sentences == parsed + bad_checksum + malformed + ignored``.
        parsed: GGA/GNS/RMC sentences read successfully.
        bad_checksum: the ``*hh`` checksum does not match.
        malformed: truncated (no ``*hh``), non-ASCII, unreadable fields or impossible values (time 32:25, lat 95).
        ignored: well-formed sentences of other types; ``ignored_types`` counts them by type (``GSV``, ``PGRME``).
        fixes: GpsFix produced. no_fix: GGA/GNS without a usable fix. duplicates: second position sentence of an
            epoch. host_time_fixes: fixes stamped with the host receive time (no date known or time_source host).
        malformed_reasons: ``malformed`` by reason (``"no checksum"``, ``"non-printable"``, ``"too long"``,
            ``"hdop"``, ``"hdop out of range"``, ``"time"``, ``"coordinate"``, ``"internal error"``, ...).
        internal_errors: exceptions of the parser's own code caught by its safety net (a bug, never expected: the
            line is counted as malformed with reason ``"internal error"`` and skipped). ``last_skip``: why the
            latest line was skipped (``"malformed hdop '1e308'"``), for notes and status lines.
    """

    lines: int = 0
    garbage: int = 0
    sentences: int = 0
    parsed: int = 0
    bad_checksum: int = 0
    malformed: int = 0
    ignored: int = 0
    fixes: int = 0
    no_fix: int = 0
    duplicates: int = 0
    host_time_fixes: int = 0
    internal_errors: int = 0
    ignored_types: Counter = field(default_factory=Counter)
    malformed_reasons: Counter = field(default_factory=Counter)
    last_skip: str = ""

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("ignored_types", "malformed_reasons")}
        d["ignored_types"] = dict(self.ignored_types)
        d["malformed_reasons"] = dict(self.malformed_reasons)
        return d

    def skips(self) -> dict:
        """Every line skipped, by reason: ``garbage``, ``bad checksum``, ``malformed: <reason>``, ``ignored: <type>``,
        ``no fix``, ``duplicate``."""
        out = {}
        if self.garbage:
            out["garbage"] = self.garbage
        if self.bad_checksum:
            out["bad checksum"] = self.bad_checksum
        for k, v in sorted(self.malformed_reasons.items()):
            out[f"malformed: {k}"] = v
        for k, v in sorted(self.ignored_types.items()):
            out[f"ignored: {k}"] = v
        if self.no_fix:
            out["no fix"] = self.no_fix
        if self.duplicates:
            out["duplicate"] = self.duplicates
        return out


# ============================================================================================== field helpers
def _time_of_day_ns(text: str) -> int:
    """``hhmmss[.sss]`` -> nanoseconds since midnight (exact decimal arithmetic)."""
    if len(text) < 6 or not text[:6].isdigit():
        raise _Malformed("time", text)
    hh, mm, ss = int(text[0:2]), int(text[2:4]), int(text[4:6])
    frac_ns = 0
    if len(text) > 6:
        if text[6] != "." or not (text[7:].isdigit() or text[7:] == "") or len(text) > 20:
            raise _Malformed("time", text)
        digits = (text[7:] + "000000000")[:9]
        frac_ns = int(digits)
    if hh > 23 or mm > 59 or ss > 60:
        raise _Malformed("time", text)
    return ((hh * 60 + mm) * 60 + ss) * NS_PER_S + frac_ns


def _date_days(text: str) -> int:
    """``ddmmyy`` -> days since 1970-01-01 (yy < 80 -> 20yy, else 19yy)."""
    if len(text) != 6 or not text.isdigit():
        raise _Malformed("date", text)
    dd, mo, yy = int(text[0:2]), int(text[2:4]), int(text[4:6])
    year = 2000 + yy if yy < 80 else 1900 + yy
    try:
        return (_dt.date(year, mo, dd) - _dt.date(1970, 1, 1)).days
    except ValueError as exc:
        raise _Malformed("date", text) from exc


def _coord(value: str, hemi: str, is_lat: bool) -> float:
    """``ddmm.mmmm`` / ``dddmm.mmmm`` + hemisphere -> signed degrees."""
    if hemi not in (("N", "S") if is_lat else ("E", "W")):
        raise _Malformed("hemisphere", hemi)
    if len(value) > MAX_NUMBER_CHARS or not _UNSIGNED.match(value):
        raise _Malformed("coordinate", value)
    raw = float(value)
    if not math.isfinite(raw):
        raise _Malformed("coordinate", value)
    deg = math.floor(raw / 100.0)
    minutes = raw - 100.0 * deg
    if minutes >= 60.0:
        raise _Malformed("coordinate", value)
    out = deg + minutes / 60.0
    if out > (90.0 if is_lat else 180.0):
        raise _Malformed("coordinate", value)
    return -out if hemi in ("S", "W") else out


def _float(value: str, what: str, default: float | None = None, lo: float = -math.inf,
           hi: float = math.inf) -> float | None:
    """A decimal field (NMEA writes plain decimals: no exponent, no ``inf``/``nan``, no ``_``) within [lo, hi]."""
    if value == "":
        return default
    if len(value) > MAX_NUMBER_CHARS or not _DECIMAL.match(value):
        raise _Malformed(what, value)
    out = float(value)
    if not lo <= out <= hi:  # also false for a non-finite value
        raise _Malformed(f"{what} out of range", value)
    return out


def _int(value: str, what: str, default: int | None = None, hi: int = 10**6) -> int | None:
    if value == "":
        return default
    if len(value) > MAX_NUMBER_CHARS or not value.isascii() or not value.isdigit():
        raise _Malformed(what, value)
    out = int(value)
    if out > hi:
        raise _Malformed(f"{what} out of range", value)
    return out


def split_sentence(line: str) -> tuple[str, list[str]] | None:
    """Check a sentence and split it (no counting; see :meth:`NmeaParser.parse_line` for the full path).

    Returns:
        (address, fields) where address is e.g. ``"GPGGA"``, or None when ``line`` is not a sentence with a
        correct checksum.
    """
    start = line.rfind("$")
    if start < 0:
        return None
    s = line[start + 1:].strip()
    star = s.rfind("*")
    if star < 0 or len(s) - star != 3:
        return None
    body, cks = s[:star], s[star + 1:]
    try:
        if int(cks, 16) != nmea_checksum(body):
            return None
    except (ValueError, UnicodeEncodeError):
        return None
    parts = body.split(",")
    return parts[0], parts[1:]


# ============================================================================================== parser
@dataclass
class _Position:
    tod_ns: int
    lat: float
    lon: float
    alt: float
    status: int
    n_sats: int | None
    hdop: float | None
    recv_ns: int
    talker: str


class NmeaParser:
    """Stateful NMEA 0183 parser: lines or byte chunks in, :class:`~runtime.events.GpsFix` out.

    Args:
        uere_m: user equivalent range error (m); horizontal sigma = HDOP * uere_m (default 5 m).
        vertical_factor: vertical sigma = vertical_factor * horizontal sigma (default 2).
        time_source: ``"gps"`` (UTC from the sentences, host time until a date is known) or ``"host"``.
        clock_ns: host receive time in integer ns (default :func:`time.time_ns`); called once per line.
        topic, frame_id: copied into every GpsFix (default ``"nmea"`` / ``"gps"``).

    Not thread-safe: one parser per stream.
    """

    def __init__(self, *, uere_m: float = 5.0, vertical_factor: float = 2.0, time_source: str = "gps",
                 clock_ns: Callable[[], int] = time.time_ns, topic: str = "nmea", frame_id: str = "gps") -> None:
        if not (isinstance(uere_m, (int, float)) and math.isfinite(uere_m) and uere_m > 0):
            raise NmeaError(f"uere_m must be a positive number of metres (typically 3 to 7), got {uere_m!r}")
        if not (isinstance(vertical_factor, (int, float)) and math.isfinite(vertical_factor) and vertical_factor > 0):
            raise NmeaError(f"vertical_factor must be a positive number (typically 1.5 to 2), got {vertical_factor!r}")
        if time_source not in ("gps", "host"):
            raise NmeaError(f"time_source must be 'gps' or 'host', got {time_source!r}")
        self.uere_m = float(uere_m)
        self.vertical_factor = float(vertical_factor)
        self.time_source = time_source
        self.clock_ns = clock_ns
        self.topic = topic
        self.frame_id = frame_id
        self.counters = NmeaCounters()
        self.date_days: int | None = None  # UTC date of the latest RMC (days since 1970-01-01)
        self.date_tod_ns: int | None = None  # time of day of that RMC
        self.speed_mps: float | None = None  # from the latest valid RMC
        self.course_deg: float | None = None  # true course, clockwise from north, from the latest valid RMC
        self.n_sats: int | None = None  # from the latest position sentence
        self.hdop: float | None = None
        self.geoid_sep_m: float | None = None  # geoid separation of the latest position sentence that gave one
        self.latest: GpsFix | None = None
        # UTC fix time - host receive time of the latest UTC-stamped fix: about minus the receiver's output latency
        # when the host clock is on UTC; seconds or years off when it is not (then use time_source="host")
        self.utc_minus_host_ns: int | None = None
        self._buf = bytearray()
        self._last_epoch_tod: int | None = None  # time of day of the last fix emitted (duplicate detection)
        self._pending: _Position | None = None  # first fix held back waiting for its RMC (date unknown)
        self._rmc_seen = False
        self._gave_up_waiting = False
        # velocity of the latest valid RMC and its time of day (attached only to the fix of that epoch)
        self._rmc_vel: tuple[int, float, float] | None = None
        self._rmc_follows = False  # the stream sends RMC after the position sentence of the same epoch
        self._held: _Position | None = None  # fix held back waiting for the RMC of its epoch (velocity)

    # ------------------------------------------------------------------ input
    def feed(self, data: bytes, recv_ns: int | None = None) -> list[GpsFix]:
        """Add a chunk of bytes (any split); parse each complete line. Returns the fixes completed.

        Never raises on what the bytes hold (see :meth:`parse_line`); a ``str`` is taken as its UTF-8 bytes."""
        try:
            return self._feed(data, recv_ns)
        except Exception as exc:  # noqa: BLE001 - the safety net: a parser bug must not end the stream
            self._internal_error(exc)
            self._buf.clear()
            return []

    def _internal_error(self, exc: BaseException) -> None:
        self.counters.internal_errors += 1
        self.counters.last_skip = f"internal error {type(exc).__name__}: {str(exc)[:120]}"

    def _feed(self, data, recv_ns: int | None) -> list[GpsFix]:
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogatepass")
        self._buf += data
        out: list[GpsFix] = []
        cut = max(self._buf.rfind(b"\n"), self._buf.rfind(b"\r"))
        if cut >= 0:
            complete = bytes(self._buf[: cut + 1])
            del self._buf[: cut + 1]
            for raw in _LINE_SPLIT.split(complete):
                if raw:
                    out.extend(self.parse_line(raw, recv_ns))
        if len(self._buf) > MAX_LINE_BYTES:  # binary data with no line end: drop it, keep the tail
            self.counters.lines += 1
            self.counters.garbage += 1
            dollar = self._buf.rfind(b"$")
            del self._buf[: dollar if dollar > len(self._buf) - 100 else len(self._buf)]
        return out

    def flush(self, recv_ns: int | None = None) -> list[GpsFix]:
        """End of stream (or disconnect): parse the unterminated tail and release a held-back fix."""
        out: list[GpsFix] = []
        if self._buf:
            tail, self._buf = bytes(self._buf), bytearray()
            out.extend(self.parse_line(tail, recv_ns))
        if self._pending is not None:
            out.extend(self._emit(self._pending, use_date=False))
            self._pending = None
        if self._held is not None:
            held, self._held = self._held, None
            out.extend(self._emit(held, use_date=self.date_days is not None))
        return out

    def parse_lines(self, lines: Iterable[bytes | str]) -> list[GpsFix]:
        """Parse whole lines (e.g. a log file's lines), then :meth:`flush`. Returns every fix."""
        out: list[GpsFix] = []
        for line in lines:
            out.extend(self.parse_line(line))
        out.extend(self.flush())
        return out

    def parse_line(self, line: bytes | str, recv_ns: int | None = None) -> list[GpsFix]:
        """Parse one line (with or without CR/LF). Returns 0, 1 or 2 fixes (a held-back one may come out too).

        Never raises on what the line holds: every line ends in a counter (:class:`NmeaCounters`, with the reason
        in ``malformed_reasons`` and :attr:`NmeaCounters.last_skip`). An exception of the parser's own code is
        caught too (``internal_errors``; the sentence counted as malformed, reason ``"internal error"``)."""
        c = self.counters
        sentences = c.sentences
        try:
            return self._parse_line(line, recv_ns)
        except Exception as exc:  # noqa: BLE001 - the safety net: a parser bug must not end the stream
            self._internal_error(exc)
            if c.sentences > sentences and c.sentences > c.parsed + c.bad_checksum + c.malformed + c.ignored:
                self._malformed("internal error")  # keep sentences == parsed + bad_checksum + malformed + ignored
            return []

    def _malformed(self, reason: str, detail: str = "") -> list[GpsFix]:
        c = self.counters
        c.malformed += 1
        c.malformed_reasons[reason] += 1
        if reason != "internal error":
            c.last_skip = f"malformed {detail or reason}"
        return []

    def _parse_line(self, line: bytes | str, recv_ns: int | None) -> list[GpsFix]:
        c = self.counters
        if isinstance(line, (bytes, bytearray, memoryview)):
            text = bytes(line).decode("latin-1")
        else:
            text = str(line)
        text = text.strip()
        if not text:
            return []
        c.lines += 1
        start = text.rfind("$")
        if start < 0 or not _ADDRESS.match(text, start + 1):  # no '$', or binary data that holds a '$' byte
            c.garbage += 1
            c.last_skip = "garbage (no NMEA sentence)"
            return []
        c.sentences += 1
        s = text[start + 1:]
        if len(s) > MAX_SENTENCE_CHARS:
            return self._malformed("too long", f"too long ({len(s)} characters)")
        if not _PRINTABLE.match(s):
            return self._malformed("non-printable")
        star = s.rfind("*")
        if star < 0 or len(s) - star != 3:
            return self._malformed("no checksum")
        body, cks = s[:star], s[star + 1:]
        if not _HEX2.match(cks):
            return self._malformed("checksum unreadable", f"checksum {cks!r}")
        if int(cks, 16) != nmea_checksum(body):
            c.bad_checksum += 1
            c.last_skip = "bad checksum"
            return []
        parts = body.split(",")
        address, fields = parts[0], parts[1:]
        if len(address) < 3 or not address.isalnum():
            return self._malformed("address", f"address {address[:20]!r}")
        kind = address[-3:] if not address.startswith("P") else address
        if kind not in HANDLED_TYPES or len(address) != 5:
            c.ignored += 1
            c.ignored_types[kind] += 1
            return []
        if recv_ns is None:
            recv_ns = int(self.clock_ns())
        try:
            if kind == "RMC":
                out = self._rmc(fields)
            else:
                out = self._position(kind, address[:2], fields, recv_ns)
        except _Malformed as exc:
            return self._malformed(exc.reason, f"{kind} {exc}")
        c.parsed += 1
        return out

    # ------------------------------------------------------------------ sentences
    def _rmc(self, f: list[str]) -> list[GpsFix]:
        if len(f) < 9:
            raise _Malformed("RMC fields")
        tod = _time_of_day_ns(f[0]) if f[0] else None
        if f[1] not in ("A", "V"):
            raise _Malformed("RMC status")
        days = _date_days(f[8]) if f[8] else None
        valid = f[1] == "A"
        speed = _float(f[6], "speed", lo=0.0, hi=MAX_SPEED_KNOTS)
        course = _float(f[7], "course", lo=-360.0, hi=360.0)
        if valid and f[2] and f[3]:  # validate the position fields too (a garbled RMC must not give its date)
            _coord(f[2], f[3], True)
            _coord(f[4], f[5], False)
        self._rmc_seen = True
        if valid:
            self.speed_mps = None if speed is None else speed * KNOT_MPS
            self.course_deg = course
        self._rmc_vel = None
        if valid and tod is not None and speed is not None and speed >= 0 and (course is not None or speed == 0):
            v = speed * KNOT_MPS
            c = math.radians(course or 0.0)
            self._rmc_vel = (tod, v * math.sin(c), v * math.cos(c))
        out: list[GpsFix] = []
        if days is not None and tod is not None:
            self.date_days, self.date_tod_ns = days, tod
            p = self._pending
            if p is not None and p.tod_ns == tod:
                self._pending = None
                out.extend(self._emit(p, use_date=True))
        h = self._held
        if h is not None:  # the RMC of the held fix's epoch (velocity attached) or of a later one (none attached)
            self._held = None
            out.extend(self._emit(h, use_date=self.date_days is not None))
        elif tod is not None and tod == self._last_epoch_tod:
            self._rmc_follows = True  # this RMC came after its epoch's fix: hold the next fixes for their RMC
        return out

    def _position(self, kind: str, talker: str, f: list[str], recv_ns: int) -> list[GpsFix]:
        if kind == "GGA":
            if len(f) < 9:
                raise _Malformed("GGA fields")
            quality = _int(f[5], "quality", 0)
            status = GGA_QUALITY_STATUS.get(quality)
            n_sats = _int(f[6], "satellites", hi=MAX_SATELLITES)
            hdop = _float(f[7], "hdop", lo=0.0, hi=MAX_HDOP)
            msl = f[8]
            sep = f[10] if len(f) > 10 else ""
        else:  # GNS: time, lat, N, lon, E, mode, sats, hdop, alt, sep, age, station[, nav status]
            if len(f) < 9:
                raise _Malformed("GNS fields")
            mode = f[5].upper()
            if not mode.isalpha() and mode != "":
                raise _Malformed("GNS mode")
            ranks = [_GNS_MODE_RANK[m] for m in mode if m in _GNS_MODE_RANK]
            status = max(ranks) if ranks else None
            n_sats = _int(f[6], "satellites", hi=MAX_SATELLITES)
            hdop = _float(f[7], "hdop", lo=0.0, hi=MAX_HDOP)
            msl = f[8]
            sep = f[9] if len(f) > 9 else ""
        tod = _time_of_day_ns(f[0]) if f[0] else None
        if status is None or not f[1] or not f[3]:
            self.counters.no_fix += 1
            return []
        lat = _coord(f[1], f[2], True)
        lon = _coord(f[3], f[4], False)
        alt_msl = _float(msl, "altitude", math.nan, *ALT_MSL_RANGE_M)
        sep_m = _float(sep, "geoid separation", None, *GEOID_SEP_RANGE_M)
        alt = alt_msl + (sep_m or 0.0)
        if hdop is not None and hdop <= 0:
            hdop = None
        if tod is None:
            raise _Malformed("position without a time")
        self.n_sats, self.hdop = n_sats, hdop
        if sep_m is not None:
            self.geoid_sep_m = sep_m
        pos = _Position(tod, lat, lon, alt, status, n_sats, hdop, recv_ns, talker)
        out: list[GpsFix] = []
        if self._last_epoch_tod == tod:
            self.counters.duplicates += 1
            return out
        h = self._held
        if h is not None:
            if h.tod_ns == tod:
                self.counters.duplicates += 1
                return out
            # a new epoch came before the held fix's RMC: release it without velocity, stop holding
            self._held = None
            self._rmc_follows = False
            out.extend(self._emit(h, use_date=self.date_days is not None))
        p = self._pending
        if p is not None:
            if p.tod_ns == tod:
                self.counters.duplicates += 1
                return out
            # a new epoch came before any RMC for the held one: release it on the host clock
            self._pending = None
            out.extend(self._emit(p, use_date=False))
            if not self._rmc_seen:
                self._gave_up_waiting = True
        if (self.time_source == "gps" and self.date_days is None and not self._gave_up_waiting
                and not self._rmc_seen):
            self._pending = pos  # wait one epoch for the RMC carrying the date
            return out
        if self._rmc_follows and (self._rmc_vel is None or self._rmc_vel[0] != tod):
            self._held = pos  # its RMC (velocity) follows within the epoch
            return out
        out.extend(self._emit(pos, use_date=self.date_days is not None))
        return out

    def _emit(self, p: _Position, use_date: bool) -> list[GpsFix]:
        if self.time_source == "gps" and use_date and self.date_days is not None:
            days = self.date_days
            if self.date_tod_ns is not None:  # the date belongs to the RMC's time of day: handle midnight
                if p.tod_ns < self.date_tod_ns - NS_PER_DAY // 2:
                    days += 1
                elif p.tod_ns > self.date_tod_ns + NS_PER_DAY // 2:
                    days -= 1
            t_ns = days * NS_PER_DAY + p.tod_ns
            self.utc_minus_host_ns = t_ns - p.recv_ns
        else:
            t_ns = p.recv_ns
            self.counters.host_time_fixes += 1
        cov = None
        if p.hdop is not None:
            sh = p.hdop * self.uere_m
            sv = self.vertical_factor * sh
            cov = np.diag([sh * sh, sh * sh, sv * sv])
        vel = None
        if self._rmc_vel is not None and self._rmc_vel[0] == p.tod_ns:  # same epoch only
            vel = np.array(self._rmc_vel[1:])
        fix = GpsFix(t_ns, p.lat, p.lon, p.alt, cov, p.status, self.topic, COVARIANCE_TYPE_APPROXIMATED,
                     self.frame_id, vel)
        self._last_epoch_tod = p.tod_ns
        self.latest = fix
        self.counters.fixes += 1
        return [fix]


def parse_nmea_bytes(data: bytes, **parser_kwargs) -> tuple[list[GpsFix], NmeaParser]:
    """Parse a whole NMEA log held in memory. Returns (fixes, the parser with its counters)."""
    parser = NmeaParser(**parser_kwargs)
    fixes = parser.feed(data)
    fixes.extend(parser.flush())
    return fixes, parser


# ============================================================================================== output
def _utc_parts(t_ns: int) -> tuple[str, str]:
    """t_ns -> (``hhmmss.ss``, ``ddmmyy``), rounded to the centisecond."""
    if isinstance(t_ns, bool) or not isinstance(t_ns, (int, np.integer)) or t_ns < 0:
        raise NmeaError(f"t_ns must be a non-negative integer number of nanoseconds since 1970 (UTC), got {t_ns!r}")
    cs = (int(t_ns) + 5_000_000) // 10_000_000  # centiseconds since the epoch
    secs, frac = divmod(cs, 100)
    tm = time.gmtime(secs)
    return (f"{tm.tm_hour:02d}{tm.tm_min:02d}{tm.tm_sec:02d}.{frac:02d}",
            f"{tm.tm_mday:02d}{tm.tm_mon:02d}{tm.tm_year % 100:02d}")


def _ddmm(value: float, is_lat: bool, decimals: int) -> tuple[str, str]:
    limit = 90.0 if is_lat else 180.0
    if not (isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value)
            and -limit <= value <= limit):
        what = "latitude" if is_lat else "longitude"
        raise NmeaError(f"{what} must be finite degrees in [-{limit:g}, {limit:g}], got {value!r}")
    hemi = ("N" if value >= 0 else "S") if is_lat else ("E" if value >= 0 else "W")
    scale = 10**decimals
    total = int(round(abs(float(value)) * 60.0 * scale))  # minutes * scale, rounded once (no 60.0000 minutes)
    deg, rem = divmod(total, 60 * scale)
    width = 2 if is_lat else 3
    mins = f"{rem // scale:02d}.{rem % scale:0{decimals}d}" if decimals > 0 else f"{rem:02d}"
    return f"{deg:0{width}d}{mins}", hemi


def _check_decimals(minute_decimals: int) -> int:
    if isinstance(minute_decimals, bool) or not isinstance(minute_decimals, int) or not 0 <= minute_decimals <= 8:
        raise NmeaError(f"minute_decimals must be an integer in 0..8 (4 or 5 usual), got {minute_decimals!r}")
    return minute_decimals


def _check_talker(talker: str) -> str:
    if not (isinstance(talker, str) and len(talker) == 2 and talker.isalpha() and talker.isupper()):
        raise NmeaError(f"talker must be two capital letters such as 'GP' or 'GN', got {talker!r}")
    return talker


def format_gga(t_ns: int, lat: float | None, lon: float | None, alt_m: float | None, quality: int = 1,
               n_sats: int = 12, hdop: float | None = 1.0, *, geoid_sep_m: float | None = 0.0, talker: str = "GP",
               minute_decimals: int = 5) -> str:
    """A GGA sentence (with ``$``, checksum and CRLF).

    Args:
        t_ns: UTC time, integer ns since 1970 (the time of day is written, to the centisecond).
        lat, lon: WGS84 degrees; both None leave the position fields empty (no position: quality 0).
        alt_m: height above the ellipsoid (m), as :attr:`GpsFix.alt`; the sentence carries ``alt_m - geoid_sep_m``
            (mean sea level) and ``geoid_sep_m``, so that parsing gives alt_m back. None: altitude fields empty.
        quality: GGA fix quality 0..9 (1 GPS, 2 DGPS, 4 RTK fixed, 5 RTK float, 6 estimated). n_sats: 0..99.
        hdop: >= 0, or None (empty field).
        geoid_sep_m: geoid separation (m); None: unknown, the field is left empty and the altitude field carries
            ``alt_m`` itself (which is then not mean sea level: readers take it as such).
    Raises:
        NmeaError: a value out of range.
    """
    hhmmss, _ = _utc_parts(t_ns)
    decimals = _check_decimals(minute_decimals)
    la, ns, lo, ew = _position_fields(lat, lon, decimals)
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 0 <= quality <= 9:
        raise NmeaError(f"quality must be a GGA fix quality 0..9 (1 GPS, 2 DGPS, 4 RTK fixed), got {quality!r}")
    if isinstance(n_sats, bool) or not isinstance(n_sats, (int, np.integer)) or not 0 <= n_sats <= 99:
        raise NmeaError(f"n_sats must be an integer 0..99, got {n_sats!r}")
    if hdop is not None and not (isinstance(hdop, (int, float, np.floating, np.integer)) and math.isfinite(hdop)
                                 and 0 <= hdop < 100):
        raise NmeaError(f"hdop must be a finite number in [0, 100), got {hdop!r}")
    for name, v in (("alt_m", alt_m), ("geoid_sep_m", geoid_sep_m)):
        if v is not None and not (isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(v)):
            raise NmeaError(f"{name} must be a finite number of metres (or None: field left empty), got {v!r}")
    sep = "" if geoid_sep_m is None else f"{float(geoid_sep_m):.3f}"
    msl = "" if alt_m is None else f"{float(alt_m) - float(geoid_sep_m or 0.0):.3f}"
    hd = "" if hdop is None else f"{float(hdop):.2f}"
    body = (f"{_check_talker(talker)}GGA,{hhmmss},{la},{ns},{lo},{ew},{int(quality)},{int(n_sats):02d},"
            f"{hd},{msl},M,{sep},M,,")
    return with_checksum(body)


def _position_fields(lat, lon, decimals: int) -> tuple[str, str, str, str]:
    if lat is None and lon is None:
        return "", "", "", ""
    la, ns = _ddmm(lat, True, decimals)
    lo, ew = _ddmm(lon, False, decimals)
    return la, ns, lo, ew


def format_rmc(t_ns: int, lat: float | None, lon: float | None, speed_mps: float | None = 0.0,
               course_deg: float | None = 0.0, valid: bool = True, *, mode: str | None = None, talker: str = "GP",
               minute_decimals: int = 5) -> str:
    """An RMC sentence (NMEA 2.3, with the mode indicator; ``$``, checksum, CRLF).

    Args:
        t_ns: UTC time, integer ns since 1970 (date and time of day are written).
        lat, lon: WGS84 degrees (both None: position fields empty). speed_mps: ground speed m/s (written in
            knots; None: empty). course_deg: true course, clockwise from north (wrapped into [0, 360); None: empty).
            valid: status A (valid) or V (void).
        mode: NMEA 2.3 mode indicator: ``A`` autonomous, ``D`` differential, ``E`` estimated (dead reckoning),
            ``N`` not valid (default: ``A`` when valid, else ``N``).
    Raises:
        NmeaError: a value out of range.
    """
    hhmmss, ddmmyy = _utc_parts(t_ns)
    decimals = _check_decimals(minute_decimals)
    la, ns, lo, ew = _position_fields(lat, lon, decimals)
    if speed_mps is not None and not (isinstance(speed_mps, (int, float, np.floating, np.integer))
                                      and math.isfinite(speed_mps) and speed_mps >= 0):
        raise NmeaError(f"speed_mps must be a finite ground speed >= 0 in m/s (or None), got {speed_mps!r}")
    if course_deg is not None and not (isinstance(course_deg, (int, float, np.floating, np.integer))
                                       and math.isfinite(course_deg)):
        raise NmeaError(f"course_deg must be finite degrees clockwise from north (or None), got {course_deg!r}")
    if mode is None:
        mode = "A" if valid else "N"
    if mode not in RMC_MODES:
        raise NmeaError(f"mode must be one of {', '.join(RMC_MODES)} (NMEA 2.3 mode indicator), got {mode!r}")
    crs = ""
    if course_deg is not None:
        course = float(course_deg) % 360.0
        if round(course, 2) >= 360.0:
            course = 0.0
        crs = f"{course:.2f}"
    spd = "" if speed_mps is None else f"{float(speed_mps) / KNOT_MPS:.3f}"
    body = (f"{_check_talker(talker)}RMC,{hhmmss},{'A' if valid else 'V'},{la},{ns},{lo},{ew},"
            f"{spd},{crs},{ddmmyy},,,{mode}")
    return with_checksum(body)


# ============================================================================================== estimates out
#: NMEA 2.3 RMC mode indicators SkyFix writes: A autonomous, D differential, E estimated (dead reckoning), N invalid.
RMC_MODES = ("A", "D", "E", "N")
#: HDOP = horizontal sigma / this (m): the inverse of the parser's ``uere_m`` default, so SkyFix reading its own
#: sentences gets the sigma back.
DEFAULT_UERE_M = 5.0
MAX_HDOP_OUT = 99.99  # the largest HDOP the GGA field holds (x.xx): "no usable precision"
MIN_HDOP_OUT = 0.01  # the smallest non-zero HDOP written (an HDOP of 0 reads as "unknown")


@dataclass(frozen=True)
class NmeaFixKind:
    """How an estimate is declared in NMEA: GGA fix quality, RMC status (valid A / void V) and RMC mode."""

    quality: int
    valid: bool
    mode: str
    position: bool  # the position fields are written (False: left empty)


#: status (and what the filter did with GPS) -> GGA quality / RMC status + mode. See :func:`nmea_fix_kind`.
FIX_KIND_GPS = NmeaFixKind(1, True, "A", True)
FIX_KIND_ESTIMATED = NmeaFixKind(6, True, "E", True)
FIX_KIND_INVALID = NmeaFixKind(0, False, "N", False)


def nmea_fix_kind(status: str, gps_state: str = "", has_position: bool = True) -> NmeaFixKind:
    """The honest NMEA declaration of one SkyFix estimate.

    ===============================================  =============  =========================  ===================
    estimate                                          GGA quality    RMC status / mode          position fields
    ===============================================  =============  =========================  ===================
    ``OK`` (two sources agree within the alert        1 (GPS fix)    A / A (autonomous)         written
    limit)
    ``DEGRADED`` with ``gps == "ok"`` (a GPS fix in   1 (GPS fix)    A / A                      written
    use, not checked by the camera), ``GPS_ONLY``
    ``DEGRADED`` otherwise (GPS outage or none:       6 (estimated,  A / E (estimated)          written
    camera alone or dead reckoning), ``GPS_REJECTED``  dead reckon.)
    (the GPS is being rejected), any other status
    ``LOST``, or no position                          0 (invalid)    V / N (not valid)          empty
    ===============================================  =============  =========================  ===================

    Quality 1 is not a claim of a GNSS-only solution: it says "a valid fix as good as its HDOP", which is what an
    autopilot's NMEA driver acts on; 2 (DGPS) and 4/5 (RTK) would overstate it. Quality 6 is the standard code for a
    position not fixed by satellites now: ArduPilot's NMEA driver takes 6 (like 0) as NO_FIX, so an autopilot stops
    using SkyFix's position while it is dead reckoning or on the camera alone (use MAVLink GPS_INPUT with its
    accuracy fields to hand that position over on purpose).
    """
    if status == "LOST" or not has_position:
        return FIX_KIND_INVALID
    if status == "OK" or status == "GPS_ONLY" or (status == "DEGRADED" and gps_state == "ok"):
        return FIX_KIND_GPS
    return FIX_KIND_ESTIMATED


def hdop_of_sigma(sigma_m: float | None, uere_m: float = DEFAULT_UERE_M) -> float | None:
    """HDOP written for a horizontal 1-sigma: ``sigma_m / uere_m``, clipped to [0.01, 99.99]; None when unknown
    (None or NaN); an infinite sigma gives 99.99.

    ``sigma_m`` is the estimate's largest horizontal 1-sigma (``EstimateRecord.sigma_m``: square root of the largest
    eigenvalue of the east/north covariance): an elongated ellipse is declared by its worst axis. The inverse is the
    parser's ``sigma_h = HDOP * uere_m`` per axis (same ``uere_m``, 5 m by default), so SkyFix reading its own output
    gets an isotropic covariance that covers the ellipse. A receiver's textbook HDOP is ``sqrt(var_e + var_n) /
    UERE``: for a round error that is sqrt(2) times ours with the same UERE, i.e. ours is the textbook HDOP with a
    UERE of 5 * sqrt(2) = 7.1 m.
    """
    if sigma_m is None or (isinstance(sigma_m, float) and math.isnan(sigma_m)):
        return None
    if not (isinstance(uere_m, (int, float)) and math.isfinite(uere_m) and uere_m > 0):
        raise NmeaError(f"uere_m must be a positive number of metres, got {uere_m!r}")
    h = float(sigma_m) / float(uere_m)
    if not h < MAX_HDOP_OUT:
        return MAX_HDOP_OUT
    return round(max(h, MIN_HDOP_OUT), 2)


def speed_course(ve_mps: float | None, vn_mps: float | None) -> tuple[float | None, float | None]:
    """(ground speed m/s, true course degrees clockwise from north in [0, 360)) of an east/north velocity; (None,
    None) when unknown; the course is None when the speed rounds to 0 in the RMC field (0.001 knot)."""
    if ve_mps is None or vn_mps is None or not (math.isfinite(ve_mps) and math.isfinite(vn_mps)):
        return None, None
    speed = math.hypot(ve_mps, vn_mps)
    if speed / KNOT_MPS < 0.0005:
        return 0.0, None
    return speed, math.degrees(math.atan2(ve_mps, vn_mps)) % 360.0


def estimate_sentences(t_ns: int, lat: float, lon: float, *, status: str, gps_state: str = "",
                       sigma_m: float | None = None, alt_m: float | None = None, geoid_sep_m: float | None = None,
                       ve_mps: float | None = None, vn_mps: float | None = None, n_sats: int = 0,
                       uere_m: float = DEFAULT_UERE_M, talker: str = "GP", minute_decimals: int = 5) -> str:
    """GGA + RMC for one SkyFix estimate, declared as :func:`nmea_fix_kind` says.

    Args:
        t_ns: estimate time, integer ns since 1970 (UTC). lat, lon: WGS84 degrees (NaN: no position).
        status, gps_state: the estimate's status and what the filter did with GPS (``EstimateRecord.status`` /
            ``.gps``). sigma_m: its largest horizontal 1-sigma (-> HDOP, :func:`hdop_of_sigma`).
        alt_m: altitude above the ellipsoid (height above ground + the map's ground elevation), or None (empty).
        geoid_sep_m: geoid separation when known (e.g. from the GPS receiver's own GGA), else None: the field is
            left empty and the altitude field carries ``alt_m``.
        ve_mps, vn_mps: the filter's east/north velocity (-> RMC speed in knots and true course; None: empty).
        n_sats: satellites used (the GPS receiver's count when its fix is in use; 0 otherwise: SkyFix does not
            invent satellites).
    """
    has_pos = lat is not None and lon is not None and math.isfinite(lat) and math.isfinite(lon)
    kind = nmea_fix_kind(status, gps_state, has_pos)
    if not kind.position:
        return (format_gga(t_ns, None, None, None, 0, n_sats, None, geoid_sep_m=None, talker=talker,
                           minute_decimals=minute_decimals)
                + format_rmc(t_ns, None, None, None, None, False, mode="N", talker=talker,
                             minute_decimals=minute_decimals))
    speed, course = speed_course(ve_mps, vn_mps)
    hdop = hdop_of_sigma(sigma_m, uere_m)
    return (format_gga(t_ns, lat, lon, alt_m, kind.quality, n_sats, hdop, geoid_sep_m=geoid_sep_m, talker=talker,
                       minute_decimals=minute_decimals)
            + format_rmc(t_ns, lat, lon, speed, course, kind.valid, mode=kind.mode, talker=talker,
                         minute_decimals=minute_decimals))


def utc_ns(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, ns: int = 0) -> int:
    """Integer ns since 1970 of a UTC date and time (a small helper for callers and tests)."""
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) * NS_PER_S + int(ns)


__all__ = [
    "DEFAULT_UERE_M",
    "FIX_KIND_ESTIMATED",
    "FIX_KIND_GPS",
    "FIX_KIND_INVALID",
    "GGA_QUALITY_STATUS",
    "KNOT_MPS",
    "NmeaCounters",
    "NmeaError",
    "NmeaFixKind",
    "NmeaParser",
    "RMC_MODES",
    "estimate_sentences",
    "format_gga",
    "format_rmc",
    "hdop_of_sigma",
    "nmea_fix_kind",
    "nmea_checksum",
    "parse_nmea_bytes",
    "speed_course",
    "split_sentence",
    "utc_ns",
    "with_checksum",
]
