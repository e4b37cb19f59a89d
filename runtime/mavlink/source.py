"""IMU and GPS from the flight controller over MAVLink: ATTITUDE (+ HIGHRES_IMU) -> :class:`ImuSample`,
GPS_RAW_INT -> :class:`GpsFix`, so that ``runtime run`` needs no separate NMEA receiver.

:class:`MavlinkDecoder` is pure (a pymavlink message object and the host receive time in, events out);
:class:`MavlinkSource` runs it in a reader thread on a :class:`~runtime.mavlink.link.MavlinkLink` and queues the
events for :meth:`MavlinkSource.drain`. A malformed message (NaN attitude or acceleration, latitude outside
[-90, 90], a CRC failure ...) is skipped, counted in ``bad`` and noted (message, time, reason); an exception in the
thread is counted in ``errors`` and the thread goes on. Nothing here dies on one message.

Conversions
-----------
* ATTITUDE: ``roll``/``pitch``/``yaw`` are body FRD in NED (``R_frd2ned = Rz(yaw) Ry(pitch) Rx(roll)``), the rates
  body FRD rad/s. The specific force is the latest HIGHRES_IMU ``xacc``/``yacc``/``zacc`` (FRD, m/s^2) when one came
  within ``accel_max_age_s``; otherwise gravity alone, ``R_frd2ned.T @ (0, 0, -g)`` (an unaccelerated vehicle),
  counted in ``gravity_only``. The NED/FRD sample is converted once, by :func:`runtime.imu_frame.ned_frd_to_enu_flu`.
* GPS_RAW_INT: ``lat``/``lon`` degE7; altitude ``alt_ellipsoid`` (mm, WGS84, NavSatFix's datum) when set, else
  ``alt`` (mm above MSL, noted once); horizontal sigma from ``h_acc`` (mm, MAVLink 2) when set,
  else ``eph`` (HDOP x 100) x ``uere_m``; vertical from ``v_acc``, else ``epv`` x ``uere_m``, else
  ``vertical_factor`` x horizontal; velocity from ``vel`` (cm/s) and ``cog`` (cdeg) unless UINT16_MAX, its sigma from
  ``vel_acc`` (mm/s). ``fix_type`` < 2 is no fix: counted (``no_fix``), no event. 4 (DGPS) -> SBAS status, 5/6 (RTK)
  -> GBAS, others with a fix -> FIX.
* Time stamps: the host wall clock at receipt (``time_source="host"``, default: the same clock as the camera frames);
  ``"autopilot"`` uses GPS_RAW_INT ``time_usec`` when it is UNIX time (the autopilot's GPS time) and the host clock
  otherwise.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections import deque
from typing import Callable

import numpy as np

from calibration.rotations import matrix_to_quaternion, rotation_from_rpy

from ..events import (COVARIANCE_TYPE_APPROXIMATED, COVARIANCE_TYPE_DIAGONAL_KNOWN, STATUS_FIX, STATUS_GBAS_FIX,
                      STATUS_SBAS_FIX, GpsFix, ImuSample)
from ..imu_frame import GRAVITY_MPS2, ned_frd_to_enu_flu
from .link import MavlinkError

__all__ = ["MavlinkDecoder", "MavlinkSource", "TIME_SOURCES"]

TIME_SOURCES = ("host", "autopilot")
UINT16_MAX = 65535
_UNIX_US_MIN = 1_000_000_000 * 1_000_000  # 2001-09-09 in microseconds: smaller values are time since boot
_MAX_NOTES = 50
_ACCEL_LIMIT = 16 * GRAVITY_MPS2 * 10  # beyond any IMU's range: garbage
_RATE_LIMIT = 100.0  # rad/s


def _finite(*values) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


class MavlinkDecoder:
    """Turns MAVLink messages into SkyFix events (pure; see the module docstring).

    Args:
        uere_m: metres per unit of HDOP when GPS_RAW_INT has no ``h_acc`` (5 m, as the NMEA parser).
        vertical_factor: vertical sigma = this x horizontal when neither ``v_acc`` nor ``epv`` is known.
        accel_max_age_s: how old a HIGHRES_IMU may be to give an ATTITUDE sample its specific force.
        time_source: ``"host"`` or ``"autopilot"`` (GPS fixes only).
        system_id: take messages from this system only (None: any); our own (``ignore_system``/``ignore_component``)
            are always left out.
        imu, gps: produce IMU samples / GPS fixes.
    """

    def __init__(self, *, uere_m: float = 5.0, vertical_factor: float = 1.5, accel_max_age_s: float = 0.2,
                 time_source: str = "host", system_id: int | None = None, ignore_system: int | None = None,
                 ignore_component: int | None = None, imu: bool = True, gps: bool = True,
                 topic_prefix: str = "mavlink") -> None:
        if time_source not in TIME_SOURCES:
            raise MavlinkError(f"MAVLink time source must be one of {', '.join(TIME_SOURCES)}, got {time_source!r}")
        for name, v in (("uere_m", uere_m), ("vertical_factor", vertical_factor), ("accel_max_age_s", accel_max_age_s)):
            if not _finite(v) or v <= 0:
                raise MavlinkError(f"{name} must be a finite number > 0, got {v!r}")
        self.uere_m = float(uere_m)
        self.vertical_factor = float(vertical_factor)
        self.accel_max_age_ns = int(accel_max_age_s * 1e9)
        self.time_source = time_source
        self.system_id = system_id
        self.ignore = (ignore_system, ignore_component)
        self.imu = imu
        self.gps = gps
        self.prefix = topic_prefix
        self.counters = dict(messages=0, attitude=0, highres_imu=0, gps_raw_int=0, imu_samples=0, fixes=0, no_fix=0,
                             gravity_only=0, bad=0, other=0, foreign=0)
        self.notes: deque[str] = deque(maxlen=_MAX_NOTES)
        self._accel: tuple[int, tuple[float, float, float]] | None = None  # host ns, FRD specific force
        self.latest_attitude_rpy_ned: tuple[float, float, float] | None = None
        self.geoid_sep_m: float | None = None  # WGS84 ellipsoid height - MSL altitude, from GPS_RAW_INT
        self._msl_noted = False

    def _bad(self, mtype: str, now_ns: int, reason: str) -> list:
        self.counters["bad"] += 1
        self.notes.append(f"{self.prefix}/{mtype} at t={now_ns} ns skipped: {reason}")
        return []

    def handle(self, msg, now_ns: int) -> list:
        """Events (0 or 1) of one pymavlink message received at host time ``now_ns`` (integer ns, wall clock)."""
        mtype = msg.get_type()
        self.counters["messages"] += 1
        if mtype == "BAD_DATA":
            reason = getattr(msg, "reason", "unparsable bytes")
            return self._bad(mtype, now_ns, f"{reason} ({len(getattr(msg, 'data', b''))} bytes)")
        try:
            src = (msg.get_srcSystem(), msg.get_srcComponent())
        except Exception:  # noqa: BLE001 - a message built locally has no header
            src = (None, None)
        if src == self.ignore or (self.system_id is not None and src[0] != self.system_id):
            self.counters["foreign"] += 1
            return []
        if mtype == "ATTITUDE":
            self.counters["attitude"] += 1
            return self._attitude(msg, now_ns)
        if mtype == "HIGHRES_IMU":
            self.counters["highres_imu"] += 1
            return self._highres(msg, now_ns)
        if mtype == "GPS_RAW_INT":
            self.counters["gps_raw_int"] += 1
            return self._gps(msg, now_ns)
        self.counters["other"] += 1
        return []

    # ------------------------------------------------------------------ IMU
    def _highres(self, msg, now_ns: int) -> list:
        acc = (msg.xacc, msg.yacc, msg.zacc)
        if not _finite(*acc) or max(abs(a) for a in acc) > _ACCEL_LIMIT:
            return self._bad("HIGHRES_IMU", now_ns, f"acceleration {acc} is not finite or beyond "
                                                    f"{_ACCEL_LIMIT:.0f} m/s^2")
        self._accel = (now_ns, tuple(float(a) for a in acc))
        return []

    def _attitude(self, msg, now_ns: int) -> list:
        rpy = (msg.roll, msg.pitch, msg.yaw)
        rates = (msg.rollspeed, msg.pitchspeed, msg.yawspeed)
        if not _finite(*rpy, *rates) or max(abs(a) for a in rpy) > 2 * math.pi + 1e-3 \
                or max(abs(r) for r in rates) > _RATE_LIMIT:
            return self._bad("ATTITUDE", now_ns, f"roll/pitch/yaw {rpy} or rates {rates} not finite or out of range")
        self.latest_attitude_rpy_ned = tuple(float(a) for a in rpy)
        if not self.imu:
            return []
        R_frd2ned = rotation_from_rpy(*rpy)
        if self._accel is not None and 0 <= now_ns - self._accel[0] <= self.accel_max_age_ns:
            f_frd = self._accel[1]
        else:
            self.counters["gravity_only"] += 1
            f_frd = tuple(R_frd2ned.T @ np.array([0.0, 0.0, -GRAVITY_MPS2]))
        ned = ImuSample(int(now_ns), matrix_to_quaternion(R_frd2ned), angular_velocity=rates,
                        linear_acceleration=f_frd, topic=f"{self.prefix}/ATTITUDE", frame_id="")
        self.counters["imu_samples"] += 1
        return [ned_frd_to_enu_flu(ned)]

    # ------------------------------------------------------------------ GPS
    def _gps(self, msg, now_ns: int) -> list:
        if not self.gps:
            return []
        if msg.fix_type < 2:
            self.counters["no_fix"] += 1
            return []
        lat, lon, alt = msg.lat * 1e-7, msg.lon * 1e-7, msg.alt * 1e-3
        alt_ell = getattr(msg, "alt_ellipsoid", 0) or 0
        if alt_ell:  # MAVLink 2: the WGS84 height, NavSatFix's datum; their difference is the geoid separation
            self.geoid_sep_m = (alt_ell - msg.alt) * 1e-3
            alt = alt_ell * 1e-3
        elif not self._msl_noted:
            self._msl_noted = True
            self.notes.append(f"{self.prefix}/GPS_RAW_INT has no alt_ellipsoid: fix altitudes are above mean sea "
                              "level, not the WGS84 ellipsoid")
        if not (abs(lat) <= 90 and abs(lon) <= 180):
            return self._bad("GPS_RAW_INT", now_ns, f"lat {lat:.7f} / lon {lon:.7f} outside [-90, 90] / [-180, 180]")
        if msg.lat == 0 and msg.lon == 0:
            return self._bad("GPS_RAW_INT", now_ns, "lat/lon exactly 0/0 with a fix (an unset position)")
        h_acc = getattr(msg, "h_acc", 0) or 0
        v_acc = getattr(msg, "v_acc", 0) or 0
        if h_acc > 0:
            sh, ctype = h_acc * 1e-3, COVARIANCE_TYPE_DIAGONAL_KNOWN
        elif msg.eph not in (0, UINT16_MAX):
            sh, ctype = msg.eph * 1e-2 * self.uere_m, COVARIANCE_TYPE_APPROXIMATED
        else:
            sh, ctype = None, None
        cov = None
        if sh is not None:
            if v_acc > 0:
                sv = v_acc * 1e-3
            elif msg.epv not in (0, UINT16_MAX):
                sv = msg.epv * 1e-2 * self.uere_m
            else:
                sv = self.vertical_factor * sh
            cov = np.diag([sh * sh, sh * sh, sv * sv])
        vel = vel_sigma = None
        if msg.vel != UINT16_MAX and msg.cog != UINT16_MAX:
            speed, course = msg.vel * 1e-2, math.radians(msg.cog * 1e-2)
            vel = (speed * math.sin(course), speed * math.cos(course))
            vel_acc = getattr(msg, "vel_acc", 0) or 0
            vel_sigma = vel_acc * 1e-3 if vel_acc > 0 else None
        status = {4: STATUS_SBAS_FIX, 5: STATUS_GBAS_FIX, 6: STATUS_GBAS_FIX}.get(msg.fix_type, STATUS_FIX)
        t_ns = int(now_ns)
        if self.time_source == "autopilot" and msg.time_usec >= _UNIX_US_MIN:
            t_ns = int(msg.time_usec) * 1000
        fix = GpsFix(t_ns, lat, lon, alt, cov, status, f"{self.prefix}/GPS_RAW_INT",
                     ctype if ctype is not None else COVARIANCE_TYPE_APPROXIMATED, "", vel, vel_sigma)
        self.counters["fixes"] += 1
        return [fix]


class MavlinkSource:
    """A reader thread on a MAVLink link that queues the decoder's events (see the module docstring).

    Args:
        link: a :class:`~runtime.mavlink.link.MavlinkLink` (not closed by :meth:`close` unless ``own_link``).
        decoder: a :class:`MavlinkDecoder` (default: one that leaves out the link's own system/component).
        queue_size: events kept for :meth:`drain` (the oldest is dropped, and counted, when the consumer falls
            behind).
        clock_ns: host wall clock for receive times (integer ns; default :func:`time.time_ns`, the frames' clock).
        start: start the thread now.
    """

    def __init__(self, link, *, decoder: MavlinkDecoder | None = None, queue_size: int = 1024,
                 clock_ns: Callable[[], int] = time.time_ns, own_link: bool = False, start: bool = True) -> None:
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise MavlinkError(f"queue_size must be an integer >= 1, got {queue_size!r}")
        self.link = link
        self.decoder = decoder if decoder is not None else MavlinkDecoder(
            ignore_system=getattr(link, "source_system", None), ignore_component=getattr(link, "source_component", None))
        self.clock_ns = clock_ns
        self.own_link = own_link
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.errors = 0
        self.last_error = ""
        self.last_rx_ns: int | None = None
        if start:
            self.start()

    def start(self) -> "MavlinkSource":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"MavlinkSource({self.link})", daemon=True)
            self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _put(self, ev) -> None:
        from ..sources import put_newest

        self.dropped += put_newest(self._queue, ev)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self.link.recv(timeout=0.1)
                if msg is None:
                    continue
                now = self.clock_ns()
                self.last_rx_ns = now
                for ev in self.decoder.handle(msg, now):
                    self._put(ev)
            except Exception as exc:  # noqa: BLE001 - one bad message or a port hiccup must not end the thread
                if self._stop.is_set():
                    break
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.decoder.notes.append(f"MAVLink reader: {self.last_error} (going on)")
                self._stop.wait(0.05)

    def drain(self) -> list:
        """Every queued event (ImuSample / GpsFix), oldest first, without waiting."""
        out = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out

    @property
    def counters(self) -> dict:
        d = dict(self.decoder.counters)
        d.update(dropped=self.dropped, errors=self.errors)
        return d

    @property
    def notes(self) -> list[str]:
        return list(self.decoder.notes)

    def close(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self.own_link:
            self.link.close()

    def __enter__(self) -> "MavlinkSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
