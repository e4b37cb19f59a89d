"""Per-stage device time of the torch stages: ``torch.cuda.Event`` pairs on CUDA, the wall clock on CPU.

The loop's own latency (``Output.latency_ms``) is host wall time per stage; every torch stage ends by reading its
small result back to the host (views for the encoder, top-k ids, NCC maps), so that wall time already includes the
device work. The clock here says how much of it the device spent: on CUDA, events are recorded on the current
stream around each stage's device work and read only when a summary is asked for (recording adds no
synchronisation). Times are summed per frame and stage (a frame may align several views).
"""

from __future__ import annotations

import time
from collections import deque
from contextlib import contextmanager

import numpy as np

__all__ = ["StageClock"]


class StageClock:
    """Device milliseconds per frame and stage.

    Args:
        device: the ``torch.device`` the stages run on (CUDA: events; else ``time.perf_counter``).
        max_frames: frames kept (the oldest are dropped), so a long run's memory stays bounded.
    """

    def __init__(self, device, max_frames: int = 100_000) -> None:
        self.device = device
        self.cuda = getattr(device, "type", "") == "cuda"
        self._frames: deque[dict] = deque(maxlen=int(max_frames))
        self._current: dict | None = None

    def next_frame(self) -> None:
        """Start a new frame: later stages count towards it."""
        self._current = {}
        self._frames.append(self._current)

    @contextmanager
    def stage(self, name: str):
        """Time the device work issued inside the ``with`` block as stage ``name`` of the current frame."""
        if self._current is None:
            self.next_frame()
        slot = self._current.setdefault(name, [])
        if self.cuda:
            import torch

            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            try:
                yield
            finally:
                end.record()
                slot.append((start, end))
        else:
            t = time.perf_counter()
            try:
                yield
            finally:
                slot.append((time.perf_counter() - t) * 1e3)

    def samples(self, skip_frames: int = 0) -> dict[str, np.ndarray]:
        """Stage -> float64[frames] device milliseconds over the frames after the first ``skip_frames`` (frames
        without the stage are left out). On CUDA this waits for the recorded events."""
        out: dict[str, list[float]] = {}
        for i, frame in enumerate(self._frames):
            if i < skip_frames:
                continue
            for name, parts in frame.items():
                total = 0.0
                for p in parts:
                    if isinstance(p, tuple):
                        p[1].synchronize()
                        total += float(p[0].elapsed_time(p[1]))
                    else:
                        total += float(p)
                out.setdefault(name, []).append(total)
        return {k: np.asarray(v, np.float64) for k, v in out.items()}

    def summary(self, skip_frames: int = 0) -> dict[str, dict]:
        """Stage -> {p50, p90, p99, mean, frames} in milliseconds over the frames after the first ``skip_frames``
        (warm-up)."""
        out = {}
        for name, v in self.samples(skip_frames).items():
            out[name] = {"p50": float(np.percentile(v, 50)), "p90": float(np.percentile(v, 90)),
                         "p99": float(np.percentile(v, 99)), "mean": float(v.mean()), "frames": int(len(v))}
        return out

    def reset(self) -> None:
        self._frames.clear()
        self._current = None
