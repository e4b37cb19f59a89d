"""What the onboard loop writes: one :class:`EstimateRecord` per estimate, as JSON lines, plus GeoJSON and GPX.

Files
-----
``track.jsonl``
    One JSON object per line (:meth:`EstimateRecord.to_json`), written and flushed line by line by
    :class:`TrackWriter`, so a crash keeps every estimate written before it. Keys (all always present)::

        t_ns         int     estimate time, integer nanoseconds (the camera frame's stamp)
        lat, lon     float?  WGS84 degrees; both null for an estimate without a position (tracker not initialised)
        heading_deg  float?  compass heading, degrees clockwise from north in [0, 360), or null
        sigma_m      float?  horizontal 1-sigma, metres; null = unknown (read back as +inf)
        cov_en       float?  [[ee, en], [ne, nn]] horizontal covariance, m^2, east/north; or null
        status       str     OK | DEGRADED | GPS_REJECTED | LOST | GPS_ONLY | ... (see STATUSES)
        latency_ms   object  stage -> milliseconds (decode, rectify, encode, search, align, filter, total)
        gps          str     "" | ok | rejected | outage | none: what the filter did with GPS at this estimate
        x_m, y_m     float?  the position in the run's local frame (metres, x east, y north), or null
        ve_mps, vn_mps float? the filter's ground velocity, m/s east and north, or null (optional: older tracks lack
                             them; ``speed_mps`` / ``course_deg`` of the record are derived from them)
        v_sigma_mps  float?  its 1-sigma per axis, m/s, or null (optional)

``track.geojson`` (RFC 7946, ``[lon, lat]`` order; estimates without a position are left out, as from the GPX)
    A FeatureCollection: one LineString feature (``properties.kind = "track"``) through every estimate, then one
    Point feature per estimate with ``t_ns``, ``time`` (ISO-8601 UTC), ``status``, ``sigma_m``, ``heading_deg``,
    ``gps``.

``track.gpx`` (GPX 1.1)
    ``gpx/trk/trkseg/trkpt`` with ``lat``/``lon`` attributes, ``<time>`` (ISO-8601 UTC, milliseconds, ``Z``) and
    ``<type>`` = the status.

:func:`read_track` reads a ``track.jsonl`` back (:class:`OutputError` naming the file and line number on a bad
line); :func:`write_geojson` and :func:`write_gpx` convert a list of records.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import OnboardError


class OutputError(OnboardError):
    """A track record or file that cannot be written or read (bad values, malformed line, unwritable path)."""


#: Statuses the onboard loop reports (others are accepted: the set may grow).
STATUSES = ("OK", "DEGRADED", "GPS_REJECTED", "LOST", "GPS_ONLY")
#: Values of :attr:`EstimateRecord.gps` ("" = not stated).
GPS_STATES = ("", "ok", "rejected", "outage", "none")
#: Latency stages the onboard loop reports (others are accepted).
LATENCY_STAGES = ("decode", "rectify", "encode", "search", "align", "filter", "total")

_REQUIRED = ("t_ns", "lat", "lon", "heading_deg", "sigma_m", "cov_en", "status", "latency_ms")
_OPTIONAL = ("gps", "x_m", "y_m", "ve_mps", "vn_mps", "v_sigma_mps")


# ============================================================================================== value checks
def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _finite(v, what: str) -> float:
    if not _is_number(v) or not math.isfinite(float(v)):
        raise OutputError(f"{what} must be a finite number, got {v!r}")
    return float(v)


def _opt_finite(v, what: str) -> float | None:
    return None if v is None else _finite(v, what)


def _unknown_or_finite(v, what: str) -> float | None:
    """None or NaN -> None (unknown); a finite number -> float; anything else raises."""
    if v is None or (_is_number(v) and math.isnan(float(v))):
        return None
    return _finite(v, what)


def _cov_en(value) -> tuple[tuple[float, float], tuple[float, float]] | None:
    if value is None:
        return None
    what = "cov_en"
    try:
        rows = [list(r) for r in value]
    except TypeError:
        rows = None
    if rows is None or len(rows) != 2 or any(len(r) != 2 for r in rows) or not all(
            _is_number(x) for r in rows for x in r):
        raise OutputError(f"{what} must be a 2x2 east/north covariance [[ee, en], [ne, nn]] in m^2 or null, got {value!r}")
    if not all(math.isfinite(float(x)) for r in rows for x in r):
        return None  # unknown (e.g. infinite before the tracker is initialised)
    (ee, en), (ne, nn) = ((float(x) for x in r) for r in rows)
    if ee < 0 or nn < 0:
        raise OutputError(f"{what} must have a non-negative diagonal (variances, m^2), got {[[ee, en], [ne, nn]]}")
    return ((ee, en), (ne, nn))


def iso_utc(t_ns: int) -> str:
    """Integer nanoseconds since the UNIX epoch -> ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (UTC, milliseconds truncated)."""
    sec, rem = divmod(int(t_ns), 1_000_000_000)
    dt = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc) + _dt.timedelta(seconds=sec)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{rem // 1_000_000:03d}Z"


# ============================================================================================== record
@dataclass(frozen=True)
class EstimateRecord:
    """One estimate of the onboard loop (one line of ``track.jsonl``).

    Attributes:
        t_ns: estimate time, integer nanoseconds.
        lat, lon: WGS84 degrees; both NaN (or None) = no position yet (e.g. the tracker is not initialised; see
            :attr:`has_position`; written as null, read back as NaN). Such records compare unequal (NaN).
        heading_deg: compass heading, degrees clockwise from north (normalised to [0, 360)); None (or NaN) = unknown.
        sigma_m: horizontal 1-sigma in metres (>= 0); ``math.inf`` (or NaN/None) = unknown (written as null).
        cov_en: ((ee, en), (ne, nn)) horizontal covariance in m^2 (east/north); None = unknown, as is a matrix with
            a non-finite entry (the tracker's infinite covariance before initialisation becomes None).
        status: what the loop reports (:data:`STATUSES`, others accepted): a non-empty string.
        latency_ms: stage -> milliseconds spent (finite, >= 0); stages as in :data:`LATENCY_STAGES`.
        gps: one of :data:`GPS_STATES`: how GPS was used at this estimate ("" = not stated).
        x_m, y_m: the position in the run's local frame (metres, x east, y north): both or neither (None/NaN).
        ve_mps, vn_mps: the filter's ground velocity east / north, m/s: both or neither (None/NaN = unknown).
        v_sigma_mps: its 1-sigma per axis, m/s (>= 0), or None.

    Raises:
        OutputError: a value of the wrong type or out of range (the message names the field).
    """

    t_ns: int
    lat: float
    lon: float
    heading_deg: float | None
    sigma_m: float
    cov_en: tuple[tuple[float, float], tuple[float, float]] | None
    status: str
    latency_ms: dict
    gps: str = ""
    x_m: float | None = None
    y_m: float | None = None
    ve_mps: float | None = None
    vn_mps: float | None = None
    v_sigma_mps: float | None = None

    def __post_init__(self) -> None:
        s = object.__setattr__
        t = self.t_ns
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, np.integer)):
            raise OutputError(f"t_ns must be an integer number of nanoseconds, got {t!r} ({type(t).__name__})")
        s(self, "t_ns", int(t))
        lat, lon = _unknown_or_finite(self.lat, "lat"), _unknown_or_finite(self.lon, "lon")
        if (lat is None) != (lon is None):
            raise OutputError(f"lat and lon go together (both numbers, or both NaN for no position), got "
                              f"lat={self.lat!r}, lon={self.lon!r}")
        if lat is not None and (abs(lat) > 90 or abs(lon) > 180):
            raise OutputError(f"lat must be in [-90, 90] and lon in [-180, 180] degrees, got lat={lat}, lon={lon}")
        s(self, "lat", math.nan if lat is None else lat)
        s(self, "lon", math.nan if lon is None else lon)
        h = _unknown_or_finite(self.heading_deg, "heading_deg")
        s(self, "heading_deg", None if h is None else h % 360.0)
        sig = self.sigma_m
        if sig is None or (_is_number(sig) and math.isnan(float(sig))):
            sig = math.inf
        if not _is_number(sig) or float(sig) < 0:
            raise OutputError(f"sigma_m must be a number of metres >= 0 (math.inf when unknown), got {sig!r}")
        s(self, "sigma_m", float(sig))
        s(self, "cov_en", _cov_en(self.cov_en))
        if not isinstance(self.status, str) or not self.status.strip():
            raise OutputError(f"status must be a non-empty string such as {', '.join(STATUSES)}, got {self.status!r}")
        if not isinstance(self.latency_ms, dict):
            raise OutputError(f"latency_ms must be a mapping stage -> milliseconds, got {type(self.latency_ms).__name__}")
        lat_ms = {}
        for k, v in self.latency_ms.items():
            if not isinstance(k, str):
                raise OutputError(f"latency_ms keys must be stage names (str), got {k!r}")
            ms = _finite(v, f"latency_ms[{k!r}]")
            if ms < 0:
                raise OutputError(f"latency_ms[{k!r}] must be >= 0 ms, got {ms}")
            lat_ms[k] = ms
        s(self, "latency_ms", lat_ms)
        if self.gps not in GPS_STATES:
            raise OutputError(f"gps must be one of {', '.join(repr(g) for g in GPS_STATES)}, got {self.gps!r}")
        x, y = _unknown_or_finite(self.x_m, "x_m"), _unknown_or_finite(self.y_m, "y_m")
        if (x is None) != (y is None):
            raise OutputError(f"x_m and y_m go together (both numbers or both None), got x_m={x!r}, y_m={y!r}")
        s(self, "x_m", x)
        s(self, "y_m", y)
        ve, vn = _unknown_or_finite(self.ve_mps, "ve_mps"), _unknown_or_finite(self.vn_mps, "vn_mps")
        if (ve is None) != (vn is None):
            raise OutputError(f"ve_mps and vn_mps go together (both numbers or both None), got ve_mps={ve!r}, "
                              f"vn_mps={vn!r}")
        s(self, "ve_mps", ve)
        s(self, "vn_mps", vn)
        vs = _unknown_or_finite(self.v_sigma_mps, "v_sigma_mps")
        if vs is not None and vs < 0:
            raise OutputError(f"v_sigma_mps must be >= 0 m/s or None, got {vs}")
        s(self, "v_sigma_mps", vs)

    @property
    def speed_mps(self) -> float | None:
        """Ground speed from (ve_mps, vn_mps), m/s; None when unknown."""
        return None if self.ve_mps is None else math.hypot(self.ve_mps, self.vn_mps)

    @property
    def course_deg(self) -> float | None:
        """Course over ground, degrees clockwise from true north in [0, 360); None when unknown or not moving."""
        if self.ve_mps is None or (self.ve_mps == 0.0 and self.vn_mps == 0.0):
            return None
        return math.degrees(math.atan2(self.ve_mps, self.vn_mps)) % 360.0

    @property
    def has_position(self) -> bool:
        """False for a record without a position (lat/lon NaN: e.g. the tracker not initialised yet)."""
        return not math.isnan(self.lat)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        """A JSON-ready dict (every key; None as null; NaN lat/lon and an infinite ``sigma_m`` as null)."""
        return {
            "t_ns": self.t_ns,
            "lat": self.lat if self.has_position else None,
            "lon": self.lon if self.has_position else None,
            "heading_deg": self.heading_deg,
            "sigma_m": self.sigma_m if math.isfinite(self.sigma_m) else None,
            "cov_en": None if self.cov_en is None else [list(r) for r in self.cov_en],
            "status": self.status,
            "latency_ms": dict(self.latency_ms),
            "gps": self.gps,
            "x_m": self.x_m,
            "y_m": self.y_m,
            "ve_mps": self.ve_mps,
            "vn_mps": self.vn_mps,
            "v_sigma_mps": self.v_sigma_mps,
        }

    def to_json(self) -> str:
        """One line of strict JSON (no NaN/Infinity), no trailing newline."""
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(cls, d) -> "EstimateRecord":
        """Inverse of :meth:`to_dict`; unknown or missing keys and wrongly typed values raise :class:`OutputError`."""
        if not isinstance(d, dict):
            raise OutputError(f"an estimate record must be a JSON object, got {type(d).__name__}")
        unknown = sorted(set(d) - set(_REQUIRED) - set(_OPTIONAL))
        if unknown:
            raise OutputError(f"unknown estimate record key(s) {unknown}; expected {', '.join(_REQUIRED + _OPTIONAL)}")
        missing = [k for k in _REQUIRED if k not in d]
        if missing:
            raise OutputError(f"estimate record lacks key(s) {missing}; required: {', '.join(_REQUIRED)}")
        kw = {k: d[k] for k in _REQUIRED + _OPTIONAL if k in d}
        if kw["sigma_m"] is None:
            kw["sigma_m"] = math.inf
        if kw["lat"] is None and kw["lon"] is None:
            kw["lat"] = kw["lon"] = math.nan
        if kw.get("gps") is None:
            kw["gps"] = ""
        return cls(**kw)


# ============================================================================================== JSONL
def read_track(path) -> list[EstimateRecord]:
    """Read a ``track.jsonl`` written by :class:`TrackWriter`.

    Blank lines are skipped. A last line without its newline that does not parse is the remnant of a crash while
    writing it and is dropped; any other bad line raises.

    Raises:
        OutputError: the file is missing, or ``PATH:LINE: what is wrong`` for a malformed line.
    """
    path = Path(path)
    if not path.is_file():
        raise OutputError(f"track {path} does not exist (expected a track.jsonl written by the onboard loop)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise OutputError(f"cannot read track {path}: {exc}") from exc
    lines = text.split("\n")
    records: list[EstimateRecord] = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        last_unterminated = i == len(lines)  # text after the final newline
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            if last_unterminated:
                break
            raise OutputError(
                f"{path}:{i}: not valid JSON ({exc.msg} at column {exc.colno}); expected one estimate record object "
                "per line as TrackWriter writes them"
            ) from None
        try:
            records.append(EstimateRecord.from_dict(obj))
        except OutputError as exc:
            raise OutputError(f"{path}:{i}: {exc}") from None
        except TypeError as exc:  # pragma: no cover - from_dict checks keys first
            raise OutputError(f"{path}:{i}: {exc}") from None
    return records


class TrackWriter:
    """Write estimate records to ``track.jsonl``, one flushed line each; GeoJSON / GPX next to it at close.

    Args:
        path: the ``.jsonl`` file (its folder must exist).
        geojson: True to write ``PATH`` with suffix ``.geojson`` at close, or a path; False for none.
        gpx: True to write ``PATH`` with suffix ``.gpx`` at close, or a path; False for none.
        overwrite: replace an existing file (otherwise :class:`OutputError`).
        fsync: also ``os.fsync`` after every line (survives a power loss, costs a disk sync per estimate).

    Use as a context manager (or call :meth:`open` / :meth:`close`). Records must come in non-decreasing ``t_ns``.

    What a run leaves behind:

    * it ends normally: all three files, also with no estimate at all (an empty track is this run's answer);
    * it ends with an exception after its first estimate: the JSONL holds every estimate written until then (each
      line is flushed as it comes) and the GeoJSON and GPX are written from them at close;
    * it ends with an exception before its first estimate: no file is created (the JSONL is only created by the
      first record), and with ``overwrite`` the files of an earlier run are left as they were.
    """

    def __init__(self, path, *, geojson=False, gpx=False, overwrite: bool = False, fsync: bool = False) -> None:
        self.path = Path(path)
        self.geojson_path = self._side(geojson, ".geojson")
        self.gpx_path = self._side(gpx, ".gpx")
        self.overwrite = overwrite
        self.fsync = fsync
        self.count = 0
        self._file = None
        self._open = False
        self._records: list[EstimateRecord] = []
        self._last_t: int | None = None

    def _side(self, value, suffix: str) -> Path | None:
        if value is True:
            return self.path.with_suffix(suffix)
        if value is False or value is None:
            return None
        return Path(value)

    def _outputs(self) -> list[Path]:
        return [p for p in (self.path, self.geojson_path, self.gpx_path) if p is not None]

    def open(self) -> "TrackWriter":
        """Check the outputs can be written (folder exists and is writable, no file replaced without ``overwrite``).

        Nothing is created yet: the JSONL file appears with the first record (see the class docstring)."""
        for p in self._outputs():
            if not p.parent.is_dir():
                raise OutputError(f"cannot write {p}: folder {p.parent} does not exist; create it first")
            if p.is_dir():
                raise OutputError(f"cannot write {p}: it is a folder; choose a file path")
            if p.exists() and not self.overwrite:
                raise OutputError(f"{p} exists already; remove it, choose another output path or pass --overwrite")
            if not os.access(p.parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
                raise OutputError(f"cannot write {p}: permission denied")
        self._open = True
        return self

    def _create(self) -> None:
        try:
            self._file = open(self.path, "w", encoding="utf-8", newline="\n")
        except OSError as exc:
            raise OutputError(f"cannot write track {self.path}: {exc}") from exc

    def write(self, record: EstimateRecord) -> None:
        """Append one record as a line and flush it to the operating system (the first one creates the file)."""
        if not self._open:
            raise OutputError("the track writer is not open; use it as a context manager: with TrackWriter(p) as w: ...")
        if not isinstance(record, EstimateRecord):
            raise OutputError(f"TrackWriter.write takes an EstimateRecord, got {type(record).__name__}")
        if self._last_t is not None and record.t_ns < self._last_t:
            raise OutputError(
                f"estimate records must come in time order: t_ns {record.t_ns} after {self._last_t} "
                f"({(self._last_t - record.t_ns) / 1e6:.3f} ms earlier)"
            )
        if self._file is None:
            self._create()
        self._file.write(record.to_json() + "\n")
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())
        self._last_t = record.t_ns
        self.count += 1
        if self.geojson_path is not None or self.gpx_path is not None:
            self._records.append(record)

    def close(self, *, failed: bool = False) -> None:
        """Close the JSONL file and write the GeoJSON / GPX files asked for.

        ``failed``: the run ended with an error (``__exit__`` passes it): with no record written, no file is created.
        """
        if not self._open:
            return
        self._open = False
        f, self._file = self._file, None
        if f is None:
            if failed:
                return
            self._create()  # a run that ended normally without an estimate: an empty track
            f, self._file = self._file, None
        f.close()
        if self.geojson_path is not None:
            write_geojson(self._records, self.geojson_path)
        if self.gpx_path is not None:
            write_gpx(self._records, self.gpx_path)

    def __enter__(self) -> "TrackWriter":
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(failed=exc_type is not None)


# ============================================================================================== GeoJSON / GPX
def _atomic_write(path: Path, data: str) -> None:
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {path.parent} does not exist; create it first")
    tmp = path.with_name(path.name + ".partial")
    try:
        tmp.write_text(data, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc}") from exc


def _check_records(records) -> list[EstimateRecord]:
    records = list(records)
    for i, r in enumerate(records):
        if not isinstance(r, EstimateRecord):
            raise OutputError(f"record {i} is a {type(r).__name__}, expected an EstimateRecord")
    return records


def geojson_dict(records: Sequence[EstimateRecord]) -> dict:
    """The GeoJSON FeatureCollection :func:`write_geojson` writes (a dict); records without a position are left out."""
    records = [r for r in _check_records(records) if r.has_position]
    features = []
    if len(records) >= 2:
        features.append({
            "type": "Feature",
            "geometry": {"type": "LineString", "coordinates": [[r.lon, r.lat] for r in records]},
            "properties": {"kind": "track", "n": len(records), "t_start_ns": records[0].t_ns,
                           "t_end_ns": records[-1].t_ns, "start": iso_utc(records[0].t_ns),
                           "end": iso_utc(records[-1].t_ns)},
        })
    for r in records:
        features.append({
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [r.lon, r.lat]},
            "properties": {"kind": "estimate", "t_ns": r.t_ns, "time": iso_utc(r.t_ns), "status": r.status,
                           "sigma_m": r.sigma_m if math.isfinite(r.sigma_m) else None,
                           "heading_deg": r.heading_deg, "gps": r.gps},
        })
    return {"type": "FeatureCollection", "features": features}


def write_geojson(records: Iterable[EstimateRecord], path) -> Path:
    """Write the records as GeoJSON (a LineString, then one Point per estimate with its status); returns the path.

    Records without a position are left out (as from :func:`write_gpx`)."""
    _atomic_write(Path(path), json.dumps(geojson_dict(list(records)), allow_nan=False) + "\n")
    return Path(path)


GPX_NS = "http://www.topografix.com/GPX/1/1"


def write_gpx(records: Iterable[EstimateRecord], path, *, name: str = "SkyFix track") -> Path:
    """Write the records as a GPX 1.1 track (one trkseg; trkpt lat/lon, time ISO-8601 UTC, type = status).

    Records without a position are left out."""
    from xml.sax.saxutils import escape, quoteattr

    records = [r for r in _check_records(records) if r.has_position]
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<gpx version="1.1" creator="SkyFix" xmlns="{GPX_NS}">',
        "  <trk>",
        f"    <name>{escape(name)}</name>",
        "    <trkseg>",
    ]
    for r in records:
        out.append(
            f"      <trkpt lat={quoteattr(repr(r.lat))} lon={quoteattr(repr(r.lon))}>"
            f"<time>{iso_utc(r.t_ns)}</time><type>{escape(r.status)}</type></trkpt>"
        )
    out += ["    </trkseg>", "  </trk>", "</gpx>", ""]
    _atomic_write(Path(path), "\n".join(out))
    return Path(path)


__all__ = [
    "EstimateRecord",
    "GPS_STATES",
    "GPX_NS",
    "LATENCY_STAGES",
    "OutputError",
    "STATUSES",
    "TrackWriter",
    "geojson_dict",
    "iso_utc",
    "read_track",
    "write_geojson",
    "write_gpx",
]
