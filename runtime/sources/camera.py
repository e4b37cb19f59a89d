"""Cameras through OpenCV ``VideoCapture``: keep only the newest frame (live), or every frame of a file in order.

Sources (:func:`capture_spec`):

* an ``int`` (or a string of digits) -- a device index (``/dev/video<N>`` on Linux); a ``/dev/video*`` path too;
* a string containing ``!`` -- a GStreamer pipeline ending in ``appsink`` (opened with ``cv2.CAP_GSTREAMER``; the
  OpenCV build must have GStreamer, as JetPack's does; pip's opencv-python does not);
* a string with ``://`` -- a network stream (RTSP/HTTP/UDP, FFMPEG backend);
* anything else -- a video file path (must exist).

:class:`LatestFrameCamera` runs a grabber thread. In the default *latest* mode it keeps a single slot: a new frame
replaces an unread one (counted in ``dropped``), so the consumer always gets the newest image and memory never grows,
however slow the consumer. With ``every_frame=True`` (video files only) frames are decoded ahead into a small bounded
queue and each is delivered once, in order.

Timestamps (``Frame.t_ns``, integer ns): live frames carry the host ``time.monotonic_ns()`` when ``read()`` of the
capture returned, converted to wall-clock ns with an offset taken once at open (so NTP steps during a run do not bend
the time line). Files in ``every_frame`` mode carry ``open wall time + index / fps`` (the video's own time line).
Images are RGB ``uint8[h, w, 3]`` (OpenCV's BGR is converted in :meth:`LatestFrameCamera.read`).
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from typing import Callable

import numpy as np

from calibration.camera import CameraModel

from ..events import Frame
from . import EndOfStream, SourceError

KIND_DEVICE = "device"
KIND_FILE = "file"
KIND_GSTREAMER = "gstreamer"
KIND_STREAM = "stream"

_END = object()


def capture_spec(source) -> tuple[object, int, str]:
    """How to open ``source`` with ``cv2.VideoCapture``.

    Returns:
        (argument, apiPreference, kind) with kind one of ``device``, ``file``, ``gstreamer``, ``stream``.
    Raises:
        SourceError: not an int/str, a negative index, an empty string, or a file that does not exist.
    """
    import cv2

    if isinstance(source, bool) or not isinstance(source, (int, np.integer, str, os.PathLike)):
        raise SourceError(
            f"a camera source must be a device index (int), a video file path or a GStreamer pipeline string, "
            f"got {source!r} ({type(source).__name__})"
        )
    if isinstance(source, (int, np.integer)):
        if source < 0:
            raise SourceError(f"a camera device index must be >= 0 (0 is /dev/video0), got {source}")
        return int(source), cv2.CAP_ANY, KIND_DEVICE
    text = os.fspath(source).strip()
    if not text:
        raise SourceError("the camera source is an empty string; give a device index, a video file or a pipeline")
    if text.isdigit():
        return int(text), cv2.CAP_ANY, KIND_DEVICE
    if "!" in text:
        return text, cv2.CAP_GSTREAMER, KIND_GSTREAMER
    if "://" in text:
        return text, cv2.CAP_FFMPEG, KIND_STREAM
    if text.startswith("/dev/video"):
        return text, cv2.CAP_ANY, KIND_DEVICE
    if not os.path.isfile(text):
        raise SourceError(
            f"video file {text!r} does not exist (or is not a file); give an existing video file, a device index "
            "such as 0, or a GStreamer pipeline containing '!'"
        )
    return text, cv2.CAP_ANY, KIND_FILE


def opencv_has_gstreamer() -> bool:
    """Whether this OpenCV build lists GStreamer as a video I/O backend."""
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line.split(":", 1)[1].upper()
    return False


def _open_error(source, kind: str) -> SourceError:
    if kind == KIND_GSTREAMER:
        if not opencv_has_gstreamer():
            return SourceError(
                f"cannot open GStreamer pipeline {source!r}: this OpenCV build has no GStreamer support "
                "(cv2.getBuildInformation() says GStreamer: NO); use an OpenCV built with GStreamer (JetPack's "
                "python3-opencv, not pip's opencv-python) or give a device index / video file"
            )
        return SourceError(
            f"cannot open GStreamer pipeline {source!r}; test it with gst-launch-1.0 and end it with "
            "'! videoconvert ! video/x-raw,format=BGR ! appsink'"
        )
    if kind == KIND_DEVICE:
        return SourceError(
            f"cannot open camera device {source!r}; check that it exists (ls /dev/video*), that no other program "
            "uses it, and that this user may open it (group video)"
        )
    if kind == KIND_STREAM:
        return SourceError(f"cannot open video stream {source!r}; check the URL and that the sender is running")
    return SourceError(
        f"cannot decode video file {source!r} with OpenCV; expected a complete video OpenCV's FFMPEG backend reads "
        "(mp4, avi, mkv)"
    )


def _to_rgb(img: np.ndarray) -> np.ndarray:
    import cv2

    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    if img.shape[2] == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class LatestFrameCamera:
    """Frames from an OpenCV ``VideoCapture`` source, read by a background thread.

    Args:
        source: device index, video file path, GStreamer pipeline (contains ``!``) or stream URL
            (see :func:`capture_spec`).
        every_frame: files only: deliver every frame once, in order (decoded ahead into a queue of
            ``queue_size``), instead of only the newest.
        realtime: files only: pace frames at the file's frame rate (default: True in latest mode, so a file
            behaves like a camera; False with every_frame, as fast as the consumer reads).
        camera: intrinsics to attach to each Frame (e.g. from :func:`calibration.camera_io.load_camera`).
        topic, frame_id: copied into each Frame.
        properties: ``cv2.CAP_PROP_*`` -> value set after opening (e.g. width, height, fps of a device). Devices
            get ``CAP_PROP_BUFFERSIZE: 1`` unless given (no driver queue of stale frames).
        reconnect_s: live sources: after ``max_failures`` failed reads in a row the capture is reopened, at most
            this often (counted in ``reopens``).
        queue_size: every_frame mode: frames decoded ahead (>= 1, default 4).
        fps: overrides the file's frame rate (for files whose header lacks it).
        clock_ns: monotonic clock in integer ns (default :func:`time.monotonic_ns`).

    Raises:
        SourceError: bad arguments, or the source cannot be opened (the message says why and what to check).
    """

    def __init__(self, source, *, every_frame: bool = False, realtime: bool | None = None,
                 camera: CameraModel | None = None, topic: str = "camera", frame_id: str = "camera",
                 properties: dict | None = None, reconnect_s: float = 1.0, max_failures: int = 10,
                 queue_size: int = 4, fps: float | None = None,
                 clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        import cv2

        self.arg, self.api, self.kind = capture_spec(source)
        self.source = source
        if every_frame and self.kind != KIND_FILE:
            raise SourceError(
                f"--every-frame (every_frame=True) needs a video file; {source!r} is a {self.kind} source, which "
                "only has a newest frame (leave --every-frame out)"
            )
        if camera is not None and not isinstance(camera, CameraModel):
            raise SourceError(f"camera must be a CameraModel or None, got {type(camera).__name__}")
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise SourceError(f"queue_size must be an integer >= 1, got {queue_size!r}")
        if isinstance(max_failures, bool) or not isinstance(max_failures, int) or max_failures < 1:
            raise SourceError(f"max_failures must be an integer >= 1, got {max_failures!r}")
        if not (isinstance(reconnect_s, (int, float)) and math.isfinite(reconnect_s) and reconnect_s > 0):
            raise SourceError(f"reconnect_s must be a positive number of seconds, got {reconnect_s!r}")
        if fps is not None and not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
            raise SourceError(f"fps must be a positive frame rate or None (use the file's), got {fps!r}")
        for prop, value in dict(properties or {}).items():
            if isinstance(prop, bool) or not isinstance(prop, (int, np.integer)) or isinstance(value, bool) \
                    or not isinstance(value, (int, float, np.integer, np.floating)):
                raise SourceError(
                    f"properties must map cv2.CAP_PROP_* ids (int) to numbers, e.g. {{cv2.CAP_PROP_FPS: 30}}; "
                    f"got {prop!r}: {value!r}"
                )
        self.every_frame = bool(every_frame)
        self.realtime = (not self.every_frame) if realtime is None else bool(realtime)
        self.camera, self.topic, self.frame_id = camera, topic, frame_id
        self.properties = dict(properties or {})
        if self.kind == KIND_DEVICE:  # a driver queue of old frames would add latency; ignored where unsupported
            self.properties.setdefault(cv2.CAP_PROP_BUFFERSIZE, 1)
        self.reconnect_s = float(reconnect_s)
        self.max_failures = max_failures
        self.clock_ns = clock_ns
        self._wall_offset_ns = time.time_ns() - clock_ns()
        self.grabbed = 0
        self.delivered = 0
        self.dropped = 0
        self.read_failures = 0
        self.reopens = 0
        self.last_error = ""
        self.last_index = -1  # source index of the frame read() returned last (0-based; shows the drops)
        self._cap = self._open()
        file_fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = float(fps) if fps is not None else (file_fps if math.isfinite(file_fps) and file_fps > 0 else 0.0)
        if self.kind == KIND_FILE and self.realtime and self.fps <= 0:
            self._cap.release()
            raise SourceError(f"video file {source!r} has no frame rate to pace it by; pass --every-frame (every frame "
                              "in order, unpaced; from Python: fps=... or realtime=False)")
        self.frame_count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if self.kind == KIND_FILE else 0
        self._start_ns = clock_ns()
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._slot: tuple[np.ndarray, int, int] | None = None  # (bgr, t_ns, index), latest mode
        self._taken_index = -1
        self._ended = False
        self._error: SourceError | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._run, name=f"LatestFrameCamera({source!r})", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ capture
    def _open(self):
        import cv2

        cap = cv2.VideoCapture(self.arg, self.api)
        if not cap.isOpened():
            cap.release()
            raise _open_error(self.source, self.kind)
        for prop, value in self.properties.items():
            cap.set(int(prop), float(value))
        return cap

    def _now_wall_ns(self) -> int:
        return self.clock_ns() + self._wall_offset_ns

    def _run(self) -> None:
        try:
            if self.every_frame:
                self._run_every_frame()
            else:
                self._run_latest()
        except Exception as exc:  # noqa: BLE001 - surfaced to the reader as a SourceError
            with self._cond:
                self._error = SourceError(f"camera {self.source!r} grabber failed: {type(exc).__name__}: {exc}")
                self._cond.notify_all()
        finally:
            cap, self._cap = self._cap, None
            if cap is not None:
                cap.release()

    def _pace(self, index: int) -> None:
        if self.kind == KIND_FILE and self.realtime and self.fps > 0:
            due = self._start_ns + int(round(index * 1e9 / self.fps))
            wait = (due - self.clock_ns()) / 1e9
            if wait > 0:
                self._stop.wait(wait)

    def _run_latest(self) -> None:
        failures = 0
        index = 0
        while not self._stop.is_set():
            if self._cap is None:  # reopen a lost live source
                try:
                    self._cap = self._open()
                    self.reopens += 1
                    failures = 0
                except SourceError as exc:
                    self.last_error = str(exc)
                    self._stop.wait(self.reconnect_s)
                    continue
            self._pace(index)
            ok, img = self._cap.read()
            t_ns = self._now_wall_ns()
            if not ok or img is None:
                if self.kind == KIND_FILE:
                    break
                self.read_failures += 1
                failures += 1
                if failures >= self.max_failures:
                    self.last_error = f"camera {self.source!r}: {failures} failed reads in a row; reopening"
                    cap, self._cap = self._cap, None
                    cap.release()
                    self._stop.wait(self.reconnect_s)
                else:
                    self._stop.wait(0.01)
                continue
            failures = 0
            with self._cond:
                if self._slot is not None:
                    self.dropped += 1  # overwritten before anyone read it
                self._slot = (img, t_ns, index)
                self.grabbed += 1
                self._cond.notify_all()
            index += 1
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def _run_every_frame(self) -> None:
        index = 0
        while not self._stop.is_set():
            self._pace(index)
            ok, img = self._cap.read()
            if not ok or img is None:
                break
            t_ns = self._start_ns + self._wall_offset_ns + int(round(index * 1e9 / self.fps)) if self.fps > 0 \
                else self._now_wall_ns()
            self.grabbed += 1
            item = (img, t_ns, index)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.05)
                    break
                except queue.Full:
                    continue
            index += 1
        while not self._stop.is_set():
            try:
                self._queue.put(_END, timeout=0.05)
                break
            except queue.Full:
                continue

    # ------------------------------------------------------------------ consumer side
    def _frame(self, img: np.ndarray, t_ns: int, index: int) -> Frame:
        self.last_index = index
        rgb = _to_rgb(img)
        rgb.setflags(write=False)  # Frame keeps read-only arrays without copying
        return Frame(int(t_ns), rgb, self.camera, self.topic, self.frame_id)

    def read(self, timeout: float | None = 1.0) -> Frame | None:
        """The next frame: in latest mode the newest one not yet returned; with every_frame the next in order.

        Args:
            timeout: seconds to wait (None: forever).
        Returns:
            A :class:`~runtime.events.Frame` (RGB), or None when no new frame came within the timeout.
        Raises:
            EndOfStream: a video file has no more frames.
            SourceError: the grabber failed, or the camera was closed.
        """
        if self._stop.is_set():
            raise SourceError(f"camera {self.source!r} is closed; create a new LatestFrameCamera")
        if self.every_frame:
            if self._error is not None:
                raise self._error
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                if self._error is not None:
                    raise self._error
                return None
            if item is _END:
                self._queue.put(_END)  # later reads end too
                raise EndOfStream(f"video file {self.source!r} ended after {self.grabbed} frames")
            self.delivered += 1
            return self._frame(*item)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._slot is None:
                if self._error is not None:
                    raise self._error
                if self._ended:
                    raise EndOfStream(f"video file {self.source!r} ended after {self.grabbed} frames")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            img, t_ns, index = self._slot
            self._slot = None
            self.delivered += 1
        return self._frame(img, t_ns, index)

    def __iter__(self):
        """Frames until the end of a file (live sources: forever; None results are skipped)."""
        while True:
            try:
                frame = self.read(timeout=1.0)
            except EndOfStream:
                return
            if frame is not None:
                yield frame

    @property
    def stats(self) -> dict:
        """grabbed, delivered, dropped (latest mode: overwritten unread), read_failures, reopens."""
        with self._cond:  # consistent: grabbed - delivered - dropped is the frame held (0 or 1, latest mode)
            return dict(grabbed=self.grabbed, delivered=self.delivered, dropped=self.dropped,
                        read_failures=self.read_failures, reopens=self.reopens)

    def close(self, timeout: float = 2.0) -> None:
        """Stop the grabber and release the capture (idempotent)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> "LatestFrameCamera":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["KIND_DEVICE", "KIND_FILE", "KIND_GSTREAMER", "KIND_STREAM", "LatestFrameCamera", "capture_spec",
           "opencv_has_gstreamer"]
