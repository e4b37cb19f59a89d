"""Live input/output adapters of the onboard loop: serial GPS (NMEA), cameras (OpenCV), bag replay pacing.

Modules (imported on demand; nothing here opens a device at import time):

* :mod:`.serial_gps` -- :class:`~.serial_gps.SerialGps` (NMEA receiver on a serial port, own thread, reconnects)
  and :class:`~.serial_gps.NmeaSerialWriter` (GGA + RMC out to an autopilot).
* :mod:`.camera` -- :class:`~.camera.LatestFrameCamera` (OpenCV VideoCapture: device index, video file or
  GStreamer pipeline; keeps only the newest frame, or every frame of a file in order).
* :mod:`.replay` -- :func:`~.replay.replay_events` (real-time pacing of recorded events) and
  :func:`~.replay.describe_bag_inputs`.

Errors are :class:`SourceError` (an :class:`~runtime.errors.OnboardError`); :class:`EndOfStream` marks the end of a
finite source (a video file).
"""

from __future__ import annotations

import queue

from ..errors import OnboardError


class SourceError(OnboardError):
    """A live source (serial port, camera, replay) that cannot be opened, read or configured."""


class EndOfStream(SourceError):
    """A finite source (a video file) has delivered its last frame."""


def put_newest(q: queue.Queue, item) -> int:
    """Put ``item`` into the bounded queue ``q`` without blocking, dropping the oldest items while it is full (a
    reader thread must never wait for a slow consumer: fresh GPS fixes and IMU samples matter, stale ones do not).
    Returns how many items were dropped."""
    dropped = 0
    while True:
        try:
            q.put_nowait(item)
            return dropped
        except queue.Full:
            try:
                q.get_nowait()
                dropped += 1
            except queue.Empty:
                pass


__all__ = ["EndOfStream", "SourceError", "put_newest"]
