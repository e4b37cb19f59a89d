"""Deterministic random streams and smooth noise for the simulator.

Every random quantity of a flight comes from ``rng(seed, stream, *index)``: a numpy ``Generator`` (PCG64) seeded by
``SeedSequence([seed, stream, *index])``, so one component (e.g. the GNSS error) does not change when another (e.g.
the camera rate) does, and the same seed gives the same flight on every machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Stream ids (fixed forever: changing one changes every flight simulated with it).
STREAM_TRAJECTORY = 1
STREAM_ATTITUDE = 2
STREAM_GNSS = 3
STREAM_IMU = 4
STREAM_PHOTOMETRIC = 5
STREAM_PHOTO_FRAME = 6
STREAM_SPOOF = 7
STREAM_DRAG = 8  # GPS drag directions, one substream per window
STREAM_IMU_FAULT = 9  # accelerometer bias direction and scale-error signs
STREAM_RANDOMIZE = 10  # runtime.sim.randomize.draw_flight, one substream per attempt


def rng(seed: int, stream: int, *index: int) -> np.random.Generator:
    """A reproducible generator for ``(seed, stream, *index)`` (all non-negative integers)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(stream), *map(int, index)])))


@dataclass(frozen=True, eq=False)
class SmoothNoise:
    """Band-limited, infinitely smooth noise: ``x(t) = sum_k a_k sin(2 pi f_k t + phi_k)`` per channel.

    Frequencies are drawn log-uniformly in ``[f_min, f_max]`` Hz, amplitudes so that the RMS of each channel is
    ``sigma`` (in whatever unit the caller uses). Evaluate with :meth:`__call__` (values) or :meth:`derivative`.

    Attributes:
        freqs, phases, amps: float64[channels, k].
    """

    freqs: np.ndarray
    phases: np.ndarray
    amps: np.ndarray

    @classmethod
    def make(cls, gen: np.random.Generator, sigma: float, f_min: float, f_max: float, channels: int = 1,
             components: int = 8) -> "SmoothNoise":
        """Draw a noise of RMS ``sigma`` per channel with ``components`` sinusoids in ``[f_min, f_max]`` Hz."""
        freqs = np.exp(gen.uniform(math.log(f_min), math.log(f_max), size=(channels, components)))
        phases = gen.uniform(0.0, 2.0 * math.pi, size=(channels, components))
        w = gen.uniform(0.5, 1.0, size=(channels, components))
        amps = w / np.sqrt(0.5 * np.sum(w * w, axis=1, keepdims=True)) * float(sigma)  # RMS of a sine is a/sqrt(2)
        return cls(freqs, phases, amps)

    def __call__(self, t_s) -> np.ndarray:
        """float64[n, channels] at times ``t_s`` (float[n], seconds)."""
        t = np.asarray(t_s, dtype=float).reshape(-1, 1, 1)
        return np.sum(self.amps * np.sin(2.0 * math.pi * self.freqs * t + self.phases), axis=2)

    def derivative(self, t_s) -> np.ndarray:
        """float64[n, channels]: d/dt of :meth:`__call__` (unit per second)."""
        t = np.asarray(t_s, dtype=float).reshape(-1, 1, 1)
        w = 2.0 * math.pi * self.freqs
        return np.sum(self.amps * w * np.cos(w * t + self.phases), axis=2)
