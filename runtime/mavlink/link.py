"""A MAVLink 2 connection to a flight controller (pymavlink): UDP out/in, TCP or serial, with a heartbeat.

Connection strings (:func:`parse_url`)::

    udpout:HOST:PORT        send to HOST:PORT (replies come back to the same socket), e.g. udpout:127.0.0.1:14550
    udpin:HOST:PORT         listen on HOST:PORT, answer the last sender, e.g. udpin:0.0.0.0:14550
    tcp:HOST:PORT           connect to a TCP server (e.g. ArduPilot SITL on 5760)
    serial:DEVICE[:BAUD]    a serial port, e.g. serial:/dev/ttyTHS1:921600 (default baud 115200)
    DEVICE[:BAUD]           the same for a path starting with /dev/ or COM, e.g. /dev/ttyACM0:57600

The link always speaks MAVLink 2 (the extension fields GPS_INPUT.yaw, ODOMETRY.estimator_type/quality and
GPS_RAW_INT.h_acc exist only there) with the ``ardupilotmega`` dialect (a superset of ``common``, so ArduPilot's own
messages parse instead of counting as bad data). It identifies itself with a HEARTBEAT (``MAV_TYPE_ONBOARD_CONTROLLER``,
``MAV_AUTOPILOT_INVALID``) once a second while :meth:`MavlinkLink.heartbeat_if_due` is called.

pymavlink is imported here only, inside functions: without it importing :mod:`runtime.mavlink` works and opening a
link raises :class:`MavlinkExtraError` naming ``pip install 'skyfix[mavlink]'``.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Callable

from ..errors import MissingExtraError, OnboardError

__all__ = ["DEFAULT_SERIAL_BAUD", "LinkSpec", "MavlinkError", "MavlinkExtraError", "MavlinkLink", "dialect",
           "parse_url", "require_pymavlink"]

DEFAULT_SERIAL_BAUD = 115200
MAV_COMP_ID_ONBOARD_COMPUTER = 191


class MavlinkError(OnboardError):
    """A MAVLink connection string, setting or link that cannot be used."""


class MavlinkExtraError(MissingExtraError, MavlinkError):
    """pymavlink is not installed."""


def require_pymavlink():
    """The ``pymavlink.mavutil`` module. Raises :class:`MavlinkExtraError` when pymavlink is absent."""
    try:
        from pymavlink import mavutil
    except ImportError as exc:
        raise MavlinkExtraError(
            f"MAVLink needs pymavlink, which is not installed ({exc}); install the extra: pip install 'skyfix[mavlink]'"
        ) from None
    return mavutil


def dialect():
    """The MAVLink 2 ``ardupilotmega`` dialect module of pymavlink (message classes, enums, ``MAVLink``)."""
    require_pymavlink()
    from pymavlink.dialects.v20 import ardupilotmega

    return ardupilotmega


@dataclass(frozen=True)
class LinkSpec:
    """A parsed connection string: ``kind`` (udpout, udpin, tcp, serial), ``address`` (HOST:PORT or a device path),
    ``baud`` (serial only, else 0)."""

    kind: str
    address: str
    baud: int = 0

    @property
    def device(self) -> str:
        """The pymavlink device string."""
        return self.address if self.kind == "serial" else f"{self.kind}:{self.address}"

    def __str__(self) -> str:
        return f"serial:{self.address}:{self.baud}" if self.kind == "serial" else self.device


_HOST_PORT = re.compile(r"^(?P<host>[A-Za-z0-9_.\-]+):(?P<port>\d{1,5})$")


def parse_url(url: str, *, baud: int | None = None) -> LinkSpec:
    """Parse a connection string (see the module docstring).

    Args:
        url: the string.
        baud: serial baud rate when the string has none (default 115200).
    Raises:
        MavlinkError: an unknown scheme, a bad HOST:PORT, a port outside 1-65535 or a bad baud rate.
    """
    if not isinstance(url, str) or not url.strip():
        raise MavlinkError(f"a MAVLink connection must be a string such as udpout:127.0.0.1:14550, got {url!r}")
    url = url.strip()
    examples = ("udpout:HOST:PORT, udpin:HOST:PORT, tcp:HOST:PORT, serial:/dev/ttyACM0:115200 or /dev/ttyACM0:115200")
    scheme, _, rest = url.partition(":")
    if scheme in ("udpout", "udpin", "tcp"):
        m = _HOST_PORT.match(rest)
        if m is None or not 1 <= int(m["port"]) <= 65535:
            raise MavlinkError(f"MAVLink connection {url!r}: expected {scheme}:HOST:PORT with a port in 1-65535, "
                               f"e.g. {scheme}:127.0.0.1:14550")
        return LinkSpec(scheme, f"{m['host']}:{int(m['port'])}")
    if scheme == "serial":
        dev = rest
    elif url.startswith("/dev/") or url.upper().startswith("COM"):
        dev = url
    else:
        raise MavlinkError(f"unknown MAVLink connection {url!r}; expected one of {examples}")
    dev_baud = baud if baud is not None else DEFAULT_SERIAL_BAUD
    head, sep, tail = dev.rpartition(":")
    if sep and tail.isdigit():
        dev, dev_baud = head, int(tail)
    elif "," in dev and dev.rpartition(",")[2].isdigit():
        dev, _, b = dev.rpartition(",")
        dev_baud = int(b)
    if not dev:
        raise MavlinkError(f"MAVLink connection {url!r} names no serial device; expected e.g. serial:/dev/ttyACM0:115200")
    if isinstance(dev_baud, bool) or not isinstance(dev_baud, int) or not 50 <= dev_baud <= 20_000_000:
        raise MavlinkError(f"MAVLink serial baud rate must be an integer in 50-20000000, got {dev_baud!r} in {url!r}")
    return LinkSpec("serial", dev, dev_baud)


class MavlinkLink:
    """One MAVLink 2 connection (pymavlink ``mavfile``), safe to send from one thread while another receives.

    Args:
        url: a connection string (:func:`parse_url`) or a :class:`LinkSpec`.
        source_system: our system id (default 1: the vehicle's, as companion computers use).
        source_component: our component id (default 191, ``MAV_COMP_ID_ONBOARD_COMPUTER``).
        heartbeat_s: seconds between heartbeats sent by :meth:`heartbeat_if_due` (0: none).
        clock_ns: monotonic clock for the heartbeat schedule (integer ns).
    Raises:
        MavlinkExtraError: pymavlink is not installed.
        MavlinkError: the connection string is bad or the port cannot be opened.
    """

    def __init__(self, url, *, source_system: int = 1, source_component: int = MAV_COMP_ID_ONBOARD_COMPUTER,
                 heartbeat_s: float = 1.0, clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        mavutil = require_pymavlink()
        mav2 = dialect()
        self.spec = url if isinstance(url, LinkSpec) else parse_url(url)
        for name, v in (("source_system", source_system), ("source_component", source_component)):
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 255:
                raise MavlinkError(f"{name} must be an integer in 1-255, got {v!r}")
        if not isinstance(heartbeat_s, (int, float)) or not heartbeat_s >= 0:
            raise MavlinkError(f"heartbeat_s must be a number of seconds >= 0 (0: no heartbeat), got {heartbeat_s!r}")
        self.source_system = source_system
        self.source_component = source_component
        self.heartbeat_ns = int(heartbeat_s * 1e9)
        self.clock_ns = clock_ns
        try:
            if self.spec.kind == "serial":
                conn = mavutil.mavlink_connection(self.spec.address, baud=self.spec.baud, source_system=source_system,
                                                  source_component=source_component, autoreconnect=True)
            else:
                conn = mavutil.mavlink_connection(self.spec.device, source_system=source_system,
                                                  source_component=source_component)
        except Exception as exc:  # noqa: BLE001 - pymavlink raises OSError, SerialException, ValueError ...
            raise MavlinkError(f"cannot open MAVLink connection {self.spec}: {type(exc).__name__}: {exc}") from exc
        # Always MAVLink 2 with the ardupilotmega dialect, whatever pymavlink's process-wide default is.
        conn.mav = mav2.MAVLink(conn, srcSystem=source_system, srcComponent=source_component)
        conn.mav.robust_parsing = True
        conn.WIRE_PROTOCOL_VERSION = "2.0"
        conn.first_byte = False
        self.conn = conn
        self.mavlink = mav2
        self._send_lock = threading.Lock()
        self._next_heartbeat: int | None = None
        self.sent = 0
        self.send_errors = 0
        self.last_error = ""
        self.closed = False

    # ------------------------------------------------------------------ sending
    def send(self, msg) -> bool:
        """Send one pymavlink message object; False (counted in ``send_errors``, kept in ``last_error``) when the
        operating system refused it (e.g. nobody listens on a udpout port yet: ICMP unreachable)."""
        if self.closed:
            raise MavlinkError(f"MAVLink link {self.spec} is closed")
        with self._send_lock:
            try:
                self.conn.mav.send(msg)
            except OSError as exc:
                self.send_errors += 1
                self.last_error = f"sending {msg.get_type()} to {self.spec} failed: {exc}"
                return False
        self.sent += 1
        return True

    def encode(self, name: str, fields: dict):
        """A pymavlink message object of type ``name`` (e.g. ``"GPS_INPUT"``) from a dict of its fields."""
        cls = getattr(self.mavlink, f"MAVLink_{name.lower()}_message")
        missing = [f for f in cls.fieldnames if f not in fields]
        unknown = sorted(set(fields) - set(cls.fieldnames))
        if missing or unknown:
            raise MavlinkError(f"{name} fields: missing {missing}, unknown {unknown}")
        return cls(**{f: fields[f] for f in cls.fieldnames})

    def heartbeat(self) -> bool:
        """Send one HEARTBEAT (onboard controller, no autopilot, active)."""
        m = self.mavlink
        return self.send(m.MAVLink_heartbeat_message(m.MAV_TYPE_ONBOARD_CONTROLLER, m.MAV_AUTOPILOT_INVALID, 0, 0,
                                                     m.MAV_STATE_ACTIVE, 3))

    def heartbeat_if_due(self) -> bool:
        """Send a HEARTBEAT when ``heartbeat_s`` has passed since the last one (the first call sends one)."""
        if self.heartbeat_ns <= 0:
            return False
        now = self.clock_ns()
        if self._next_heartbeat is not None and now < self._next_heartbeat:
            return False
        self._next_heartbeat = now + self.heartbeat_ns
        return self.heartbeat()

    # ------------------------------------------------------------------ receiving
    def recv(self, timeout: float = 0.1):
        """The next message (any type, ``BAD_DATA`` included), or None after ``timeout`` seconds."""
        if self.closed:
            return None
        return self.conn.recv_match(blocking=True, timeout=timeout)

    def close(self) -> None:
        """Close the port (idempotent)."""
        if self.closed:
            return
        self.closed = True
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - closing a port that is already gone
            pass

    def __enter__(self) -> "MavlinkLink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MavlinkLink({str(self.spec)!r}, sysid={self.source_system}, compid={self.source_component})"
