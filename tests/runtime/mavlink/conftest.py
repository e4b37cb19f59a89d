"""A real pymavlink peer over UDP on 127.0.0.1 for the MAVLink tests (skipped without pymavlink)."""

from __future__ import annotations

import socket
import time

import pytest


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_peer(device: str, sysid: int = 1, compid: int = 1):
    """A pymavlink connection speaking MAVLink 2 (ardupilotmega), as an autopilot or a ground station would."""
    mavutil = pytest.importorskip("pymavlink.mavutil", reason="pymavlink not installed (pip install 'skyfix[mavlink]')")
    from pymavlink.dialects.v20 import ardupilotmega as mav2

    conn = mavutil.mavlink_connection(device, source_system=sysid, source_component=compid)
    conn.mav = mav2.MAVLink(conn, srcSystem=sysid, srcComponent=compid)
    conn.mav.robust_parsing = True
    conn.WIRE_PROTOCOL_VERSION = "2.0"
    conn.first_byte = False
    return conn


def recv_all(conn, mtype: str, n: int | None = None, timeout: float = 3.0) -> list:
    """Messages of ``mtype`` until ``n`` came, or until ``timeout`` (n None: everything that comes until then, the
    wait ending 0.5 s after the last one)."""
    out, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline and (n is None or len(out) < n):
        m = conn.recv_match(type=mtype, blocking=True, timeout=0.5 if n is None else 0.1)
        if m is not None:
            out.append(m)
        elif n is None and out:
            break
    return out


@pytest.fixture
def pymavlink():
    return pytest.importorskip("pymavlink", reason="pymavlink not installed (pip install 'skyfix[mavlink]')")
