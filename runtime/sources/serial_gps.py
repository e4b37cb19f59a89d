"""NMEA GPS on a serial port: a reader thread (:class:`SerialGps`) and a writer for an autopilot (:class:`NmeaSerialWriter`).

:class:`SerialGps` reads bytes with pyserial in its own daemon thread, splits lines and parses them with
:class:`runtime.nmea.NmeaParser`; the frame-processing loop never blocks it and it never blocks the loop: fixes go to
:attr:`SerialGps.latest`, to a bounded queue (oldest dropped and counted when full) and/or to a callback run in the
reader thread. When the port fails (USB unplugged: the path vanishes, reads raise ``SerialException``) it closes it,
flushes the parser and retries every ``reconnect_s`` (counted), so a re-plugged receiver (same path, e.g. a
``/dev/serial/by-id/...`` link) is picked up again. A port absent at start is retried the same way, and said:
:attr:`SerialGps.warning` / :meth:`SerialGps.status_line` name the port and why it cannot be opened. Any other
exception in the thread (a parser or consumer bug) is reported (``thread_errors``, :attr:`SerialGps.last_thread_error`)
and the reader restarts on a freshly opened port after ``reconnect_s``: the thread never dies silently.

:class:`NmeaSerialWriter` writes one GGA and one RMC per estimate (see :func:`runtime.nmea.format_gga`), the way an
autopilot's NMEA GPS driver takes them; write errors are counted and the port reopened at most every ``reconnect_s``.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from typing import Callable

from ..events import GpsFix
from ..nmea import NmeaError, NmeaParser, estimate_sentences, format_gga, format_rmc
from . import SourceError, put_newest

_HINT = ("check that the receiver is plugged in, the path (ls /dev/serial/by-id/ /dev/ttyUSB* /dev/ttyACM*), "
         "that no other program holds it, and that this user may open it (group dialout)")


def _check_port_baud(port, baud) -> None:
    if not isinstance(port, str) or not port:
        raise SourceError(f"port must be a serial device path such as '/dev/ttyUSB0', got {port!r}")
    if isinstance(baud, bool) or not isinstance(baud, int) or baud <= 0:
        raise SourceError(f"baud must be a positive integer such as 9600, 38400 or 115200, got {baud!r}")


def _check_seconds(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise SourceError(f"{what} must be a positive number of seconds, got {value!r}")
    return float(value)


def _open_serial(port: str, baud: int, **kwargs):
    import serial

    try:
        return serial.Serial(port, baud, **kwargs)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise SourceError(f"cannot open serial port {port!r} at {baud} baud: {exc}; {_HINT}") from exc


class SerialGps:
    """An NMEA receiver on a serial port, read in a background thread.

    Args:
        port: device path (``/dev/ttyUSB0``, ``/dev/serial/by-id/...``, a pty slave path).
        baud: baud rate (default 9600; u-blox modules are often 38400 or 115200).
        on_fix: called with each :class:`~runtime.events.GpsFix` **in the reader thread** (keep it short; an
            exception it raises is counted in ``callback_errors`` and kept in :attr:`last_error`).
        queue_size: > 0 keeps up to that many fixes for :meth:`get` (the oldest is dropped, and counted in
            ``dropped``, when the consumer falls behind); 0 (default) keeps none.
        parser: an :class:`~runtime.nmea.NmeaParser` to use (default: one built with ``uere_m``, ``time_source``
            and ``clock_ns``).
        reconnect_s: wait between attempts to (re)open the port (default 1 s).
        read_timeout_s: pyserial read timeout: how quickly :meth:`close` is noticed (default 0.1 s).
        start: start the thread now (default); otherwise call :meth:`start`.

    The port need not exist at start: the thread keeps trying (``open_failures``). :attr:`last_error` says why the
    last attempt or read failed; :attr:`last_disconnect` keeps why the port was last lost (it is set before
    ``disconnects`` counts up, and later failed reopen attempts do not overwrite it). An unexpected exception in the
    thread is counted in ``thread_errors`` (:attr:`last_thread_error` says what) and the reader restarts.
    """

    def __init__(self, port: str, baud: int = 9600, *, on_fix: Callable[[GpsFix], None] | None = None,
                 queue_size: int = 0, parser: NmeaParser | None = None, uere_m: float = 5.0,
                 time_source: str = "gps", clock_ns: Callable[[], int] = time.time_ns, reconnect_s: float = 1.0,
                 read_timeout_s: float = 0.1, start: bool = True) -> None:
        _check_port_baud(port, baud)
        if on_fix is not None and not callable(on_fix):
            raise SourceError(f"on_fix must be a callable taking a GpsFix, or None; got {type(on_fix).__name__}")
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 0:
            raise SourceError(f"queue_size must be an integer >= 0 (0: no queue), got {queue_size!r}")
        self.port = port
        self.baud = baud
        self.reconnect_s = _check_seconds(reconnect_s, "reconnect_s")
        self.read_timeout_s = _check_seconds(read_timeout_s, "read_timeout_s")
        self.clock_ns = clock_ns
        try:
            self.parser = parser if parser is not None else NmeaParser(uere_m=uere_m, time_source=time_source,
                                                                        clock_ns=clock_ns)
        except NmeaError as exc:
            raise SourceError(str(exc)) from exc
        self._on_fix = on_fix
        self._queue: queue.Queue | None = queue.Queue(maxsize=queue_size) if queue_size > 0 else None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._serial = None
        self._thread: threading.Thread | None = None
        self.latest: GpsFix | None = None
        self.last_error: str = ""
        self.last_rx_ns: int | None = None  # host time (clock_ns) of the last bytes received
        self.connects = 0
        self.disconnects = 0
        self.last_disconnect: str = ""
        self.open_failures = 0
        self.dropped = 0
        self.callback_errors = 0
        self.bytes_read = 0
        self.thread_errors = 0
        self.last_thread_error: str = ""
        self.fixes = 0
        self.last_fix_rx_ns: int | None = None  # host time (clock_ns) when the latest fix came out of the parser
        if start:
            self.start()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "SerialGps":
        """Start the reader thread (once)."""
        if self._thread is not None:
            return self
        if self._stop.is_set():
            raise SourceError(f"SerialGps({self.port!r}) was closed; create a new one")
        self._thread = threading.Thread(target=self._run, name=f"SerialGps({self.port})", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread and close the port (idempotent)."""
        self._stop.set()
        ser = self._serial
        if ser is not None:
            try:
                ser.cancel_read()
            except Exception:  # noqa: BLE001 - cancel_read is best effort (not every platform has it)
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> "SerialGps":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        """Whether the port is open now."""
        return self._connected.is_set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Block until the port is open (True) or the timeout passes (False)."""
        return self._connected.wait(timeout)

    # ------------------------------------------------------------------ consumer side
    def get(self, timeout: float | None = None) -> GpsFix | None:
        """The oldest queued fix, waiting up to ``timeout`` seconds (None: forever); None when none came.

        Raises:
            SourceError: the SerialGps was built without a queue (queue_size=0).
        """
        if self._queue is None:
            raise SourceError("this SerialGps has no queue; build it with queue_size > 0, or use .latest / on_fix")
        try:
            return self._queue.get(timeout=timeout) if timeout is None or timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None

    def drain(self) -> list[GpsFix]:
        """Every queued fix, oldest first, without waiting."""
        out = []
        while self._queue is not None:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return out

    @property
    def counters(self) -> dict:
        """Snapshot: the parser's counters (:class:`~runtime.nmea.NmeaCounters`) plus connects, disconnects,
        open_failures, dropped (queue overflow), callback_errors, thread_errors (reader restarts) and bytes_read."""
        d = self.parser.counters.as_dict()
        d.update(connects=self.connects, disconnects=self.disconnects, open_failures=self.open_failures,
                 dropped=self.dropped, callback_errors=self.callback_errors, thread_errors=self.thread_errors,
                 bytes_read=self.bytes_read)
        return d

    @property
    def warning(self) -> str:
        """What is wrong now, in one line ("" when nothing is): the port cannot be opened (absent, busy, no
        permission), it was lost, or the reader thread failed and restarted."""
        if not self.connected and self.open_failures:
            return (f"GPS port {self.port!r} is not open ({self.open_failures} attempts): {self.last_error}; "
                    f"retrying every {self.reconnect_s:g} s; {_HINT}")
        if not self.connected and self.disconnects:
            return f"GPS port {self.port!r} lost: {self.last_disconnect}"
        if self.thread_errors:
            return f"GPS reader restarted {self.thread_errors} time(s); last: {self.last_thread_error}"
        return ""

    def status_line(self, now_ns: int | None = None) -> str:
        """A short state for a periodic status line: ``GPS /dev/ttyUSB0 open, 120 fixes, last 0.2 s ago`` or
        ``GPS /dev/ttyUSB7 NOT OPEN (5 attempts: ...)``; skips and reader restarts are named when there are any."""
        if not self.connected:
            why = self.last_error or "not opened yet"
            text = f"GPS {self.port} NOT OPEN ({self.open_failures} attempts: {why})"
        else:
            text = f"GPS {self.port} open, {self.fixes} fixes"
            if self.last_fix_rx_ns is not None:
                now = self.clock_ns() if now_ns is None else now_ns
                text += f", last {(now - self.last_fix_rx_ns) / 1e9:.1f} s ago"
            elif self.bytes_read == 0:
                text += ", no data yet"
        c = self.parser.counters
        skipped = c.garbage + c.bad_checksum + c.malformed
        if skipped:
            text += f", {skipped} lines skipped (last: {c.last_skip})"
        if self.thread_errors:
            text += f", reader restarted {self.thread_errors}x (last: {self.last_thread_error})"
        return text

    # ------------------------------------------------------------------ reader thread
    def _deliver(self, fixes: list[GpsFix]) -> None:
        for fix in fixes:
            self.latest = fix
            self.fixes += 1
            self.last_fix_rx_ns = self.clock_ns()
            if self._queue is not None:
                with self._lock:
                    self.dropped += put_newest(self._queue, fix)
            if self._on_fix is not None:
                try:
                    self._on_fix(fix)
                except Exception as exc:  # noqa: BLE001 - a consumer bug must not kill the GPS thread
                    self.callback_errors += 1
                    self.last_error = f"on_fix raised {type(exc).__name__}: {exc}"

    def _drop_port(self, reason: str) -> None:
        self.last_error = reason
        ser, self._serial = self._serial, None
        self._connected.clear()
        if ser is not None:
            try:
                ser.close()
            except Exception:  # noqa: BLE001 - the device may already be gone
                pass
        self.last_error = reason
        self._deliver(self.parser.flush(self.clock_ns()))

    def _run(self) -> None:
        """The thread: the reader loop, restarted (after ``reconnect_s``, on a reopened port) when anything raises."""
        while not self._stop.is_set():
            try:
                self._read_loop()
                return
            except Exception as exc:  # noqa: BLE001 - report and restart: the GPS thread must never die silently
                self.thread_errors += 1
                self.last_thread_error = f"{type(exc).__name__}: {str(exc)[:200]}"
                self.last_error = (f"GPS reader thread failed ({self.last_thread_error}); restarting in "
                                   f"{self.reconnect_s:g} s")
                ser, self._serial = self._serial, None
                self._connected.clear()
                if ser is not None:
                    try:
                        ser.close()
                    except Exception:  # noqa: BLE001 - the device may be gone
                        pass
                self._stop.wait(self.reconnect_s)

    def _read_loop(self) -> None:
        import serial

        try:
            while not self._stop.is_set():
                if self._serial is None:
                    try:
                        self._serial = serial.Serial(self.port, self.baud, timeout=self.read_timeout_s)
                    except (serial.SerialException, OSError, ValueError) as exc:
                        self.open_failures += 1
                        self.last_error = f"cannot open serial port {self.port!r} at {self.baud} baud: {exc}"
                        self._stop.wait(self.reconnect_s)
                        continue
                    self.connects += 1
                    self._connected.set()
                ser = self._serial
                try:
                    n = ser.in_waiting
                    data = ser.read(n if n > 0 else 1)
                except (serial.SerialException, OSError) as exc:
                    if self._stop.is_set():
                        break
                    reason = f"serial port {self.port!r} failed: {exc}; reconnecting every {self.reconnect_s:g} s"
                    # the reason is published before the counter, so whoever sees the disconnect sees why
                    self.last_error = self.last_disconnect = reason
                    self.disconnects += 1
                    self._drop_port(reason)
                    self._stop.wait(self.reconnect_s)
                    continue
                if data:
                    now = self.clock_ns()
                    self.last_rx_ns = now
                    self.bytes_read += len(data)
                    self._deliver(self.parser.feed(data, now))
        finally:
            if self._serial is not None:
                self._drop_port(self.last_error)


class NmeaSerialWriter:
    """Write GGA + RMC sentences to a serial port, one pair per estimate (an autopilot's "NMEA GPS" input).

    :meth:`write_estimate` writes a SkyFix estimate as :func:`runtime.nmea.estimate_sentences` declares it (fix
    quality and RMC status/mode from the status, HDOP from the sigma, speed and course from the filter's velocity,
    the satellites of the GPS in use or 0); :meth:`write` / :meth:`write_fix` write given values.

    Args:
        port, baud: the serial device and rate the autopilot expects (ArduPilot: SERIALn_PROTOCOL=5, GPS_TYPE=5).
        talker: talker id of the sentences (default ``"GP"``).
        uere_m: converts a horizontal sigma to the HDOP written (``hdop = sigma_h_m / uere_m``).
        reconnect_s: after a write error the port is reopened at most this often.
        write_timeout_s: pyserial write timeout (a stalled port must not stall the loop).

    Raises:
        SourceError: the port cannot be opened now (at construction; later failures are counted, not raised).
    """

    def __init__(self, port: str, baud: int = 9600, *, talker: str = "GP", uere_m: float = 5.0,
                 reconnect_s: float = 1.0, write_timeout_s: float = 0.5, minute_decimals: int = 5) -> None:
        _check_port_baud(port, baud)
        if not (isinstance(uere_m, (int, float)) and math.isfinite(uere_m) and uere_m > 0):
            raise SourceError(f"uere_m must be a positive number of metres, got {uere_m!r}")
        self.port, self.baud, self.talker = port, baud, talker
        self.uere_m = float(uere_m)
        self.minute_decimals = minute_decimals
        self.reconnect_s = _check_seconds(reconnect_s, "reconnect_s")
        self.write_timeout_s = _check_seconds(write_timeout_s, "write_timeout_s")
        # validate talker/decimals now rather than at the first estimate
        try:
            format_gga(0, 0.0, 0.0, 0.0, talker=talker, minute_decimals=minute_decimals)
        except NmeaError as exc:
            raise SourceError(str(exc)) from exc
        self.sentences_written = 0
        self.write_errors = 0
        self.opens = 0
        self.last_error = ""
        self._last_open_try = -math.inf
        self._serial = _open_serial(port, baud, timeout=0, write_timeout=self.write_timeout_s)
        self.opens = 1

    def sentences(self, t_ns: int, lat: float, lon: float, alt_m: float | None, *, speed_mps: float | None = None,
                  course_deg: float | None = None, sigma_h_m: float | None = None, hdop: float | None = None,
                  n_sats: int = 0, quality: int = 1, valid: bool = True, geoid_sep_m: float | None = 0.0) -> bytes:
        """The GGA + RMC bytes for one estimate (see :meth:`write`).

        Raises:
            SourceError: a value out of range (the message names it).
        """
        if hdop is None and sigma_h_m is not None:
            hdop = float(sigma_h_m) / self.uere_m
        if isinstance(hdop, (int, float)) and math.isfinite(hdop):
            hdop = min(max(float(hdop), 0.0), 99.99)  # a huge sigma still gives a valid sentence
        elif isinstance(hdop, float) and math.isinf(hdop):
            hdop = 99.99  # an infinite sigma: no usable precision
        try:
            gga = format_gga(t_ns, lat, lon, alt_m, quality if valid else 0, n_sats, hdop, geoid_sep_m=geoid_sep_m,
                             talker=self.talker, minute_decimals=self.minute_decimals)
            rmc = format_rmc(t_ns, lat, lon, speed_mps, course_deg, valid, talker=self.talker,
                             minute_decimals=self.minute_decimals)
        except NmeaError as exc:
            raise SourceError(f"cannot write an NMEA estimate: {exc}") from exc
        return (gga + rmc).encode("ascii")

    def write(self, t_ns: int, lat: float, lon: float, alt_m: float, **kwargs) -> bool:
        """Write GGA + RMC for one estimate.

        Args:
            t_ns: UTC time, integer ns since 1970. lat, lon: WGS84 degrees. alt_m: ellipsoidal height (m).
            speed_mps, course_deg (clockwise from north; None: empty fields), sigma_h_m (-> HDOP) or hdop (None:
            empty), n_sats (default 0: unknown), quality (GGA), valid (False writes quality 0 and RMC status V),
            geoid_sep_m: see :func:`runtime.nmea.format_gga`.
        Returns:
            True when written; False when the port failed (counted in ``write_errors``, reopened later).
        Raises:
            SourceError: a value out of range.
        """
        return self._write_bytes(self.sentences(t_ns, lat, lon, alt_m, **kwargs))

    def estimate_bytes(self, rec, *, alt_m: float | None = None, geoid_sep_m: float | None = None,
                       n_sats: int = 0) -> bytes:
        """GGA + RMC bytes of an :class:`~runtime.outputs.EstimateRecord` (see :meth:`write_estimate`)."""
        try:
            text = estimate_sentences(
                rec.t_ns, rec.lat, rec.lon, status=rec.status, gps_state=rec.gps, sigma_m=rec.sigma_m, alt_m=alt_m,
                geoid_sep_m=geoid_sep_m, ve_mps=getattr(rec, "ve_mps", None), vn_mps=getattr(rec, "vn_mps", None),
                n_sats=min(max(int(n_sats), 0), 99), uere_m=self.uere_m, talker=self.talker,
                minute_decimals=self.minute_decimals)
        except NmeaError as exc:
            raise SourceError(f"cannot write an NMEA estimate: {exc}") from exc
        return text.encode("ascii")

    def write_estimate(self, rec, *, alt_m: float | None = None, geoid_sep_m: float | None = None,
                       n_sats: int = 0) -> bool:
        """Write one SkyFix estimate as GGA + RMC, declared honestly (:func:`runtime.nmea.nmea_fix_kind`).

        Args:
            rec: the :class:`~runtime.outputs.EstimateRecord` (its status, gps state, sigma and velocity are used).
            alt_m: altitude above the ellipsoid: height above ground + the map's ground elevation (None: unknown,
                empty field). geoid_sep_m: the GPS receiver's geoid separation when known (else the field is empty
                and the altitude field carries alt_m). n_sats: satellites of the GPS fix in use (0 when none).
        Returns:
            True when written; False when the port failed (counted, reopened later).
        """
        return self._write_bytes(self.estimate_bytes(rec, alt_m=alt_m, geoid_sep_m=geoid_sep_m, n_sats=n_sats))

    def _write_bytes(self, data: bytes) -> bool:
        import serial

        if self._serial is None:
            now = time.monotonic()
            if now - self._last_open_try < self.reconnect_s:
                self.write_errors += 1
                return False
            self._last_open_try = now
            try:
                self._serial = serial.Serial(self.port, self.baud, timeout=0, write_timeout=self.write_timeout_s)
                self.opens += 1
            except (serial.SerialException, OSError, ValueError) as exc:
                self.write_errors += 1
                self.last_error = f"cannot reopen serial port {self.port!r}: {exc}"
                return False
        try:
            self._serial.write(data)
        except (serial.SerialException, serial.SerialTimeoutException, OSError) as exc:
            self.write_errors += 1
            self.last_error = f"writing to serial port {self.port!r} failed: {exc}"
            ser, self._serial = self._serial, None
            self._last_open_try = time.monotonic()
            try:
                ser.close()
            except Exception:  # noqa: BLE001 - the device may be gone
                pass
            return False
        self.sentences_written += 2
        return True

    def write_fix(self, fix: GpsFix, *, speed_mps: float | None = None, course_deg: float | None = None,
                  n_sats: int = 0) -> bool:
        """Write a :class:`~runtime.events.GpsFix` (HDOP from its horizontal sigma; quality from its status)."""
        quality = {0: 1, 1: 2, 2: 4}.get(fix.status, 0)
        return self.write(fix.t_ns, fix.lat, fix.lon, fix.alt, speed_mps=speed_mps, course_deg=course_deg,
                          sigma_h_m=fix.sigma_h, n_sats=n_sats, quality=quality or 1, valid=fix.has_fix)

    def close(self) -> None:
        ser, self._serial = self._serial, None
        if ser is not None:
            try:
                ser.close()
            except Exception:  # noqa: BLE001
                pass

    def __enter__(self) -> "NmeaSerialWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["NmeaSerialWriter", "SerialGps"]
