"""Connection strings, and the typed error when pymavlink is missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runtime.errors import MissingExtraError
from runtime.mavlink.link import LinkSpec, MavlinkError, parse_url

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("url,spec", [
    ("udpout:127.0.0.1:14550", LinkSpec("udpout", "127.0.0.1:14550")),
    ("udpin:0.0.0.0:14550", LinkSpec("udpin", "0.0.0.0:14550")),
    ("tcp:localhost:5760", LinkSpec("tcp", "localhost:5760")),
    ("serial:/dev/ttyTHS1:921600", LinkSpec("serial", "/dev/ttyTHS1", 921600)),
    ("/dev/ttyACM0", LinkSpec("serial", "/dev/ttyACM0", 115200)),
    ("/dev/ttyACM0,57600", LinkSpec("serial", "/dev/ttyACM0", 57600)),
])
def test_parse_url(url, spec):
    assert parse_url(url) == spec


@pytest.mark.parametrize("url", ["", "udp127.0.0.1", "udpout:127.0.0.1", "udpout:host:70000", "http://x",
                                 "serial:", "serial:/dev/ttyS0:10"])
def test_parse_url_rejects(url):
    with pytest.raises(MavlinkError):
        parse_url(url)


def test_without_pymavlink_import_works_and_use_names_the_extra():
    code = (
        "import sys\n"
        "sys.modules['pymavlink'] = None\n"  # as if not installed
        "import runtime.mavlink as m\n"
        "try:\n"
        "    m.MavlinkLink('udpout:127.0.0.1:14550')\n"
        "except m.MavlinkExtraError as e:\n"
        "    print('ERR', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert "ERR" in out.stdout and "pip install 'skyfix[mavlink]'" in out.stdout
    from runtime.mavlink import MavlinkExtraError

    assert issubclass(MavlinkExtraError, MissingExtraError)
