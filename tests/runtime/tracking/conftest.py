"""Synthetic flights for the tracker tests: truth, a biased noisy GPS (outage/spoof windows) and visual fixes whose
candidates include far-away wrong retrievals. Deterministic by seed."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from runtime.tracking import GpsDecision, ParticleTracker, TrackEstimate, VisualFix

NS = 1_000_000_000
T0 = 1_700_000_000 * NS


@dataclass
class Step:
    t_s: float
    truth: np.ndarray
    est: TrackEstimate
    gps: GpsDecision | None = None
    support: float | None = None
    spoofed: bool = False

    @property
    def error(self) -> float:
        return float(math.hypot(self.est.x - self.truth[0], self.est.y - self.truth[1]))


@dataclass
class Flight:
    """Straight flight east at ``speed`` m/s from ``start``; GPS and camera at ``rate_hz``.

    Windows are (start_s, end_s) in seconds from the start: ``outage`` (no GPS fix), ``spoof`` (GPS offset by
    ``spoof_offset``), ``blind`` (visual fixes hold only wrong far-away candidates), ``wide`` (visual fixes come from a
    whole-map search: more distractors spread over the map, scope None).
    """

    duration_s: float = 40.0
    rate_hz: float = 5.0
    speed: float = 10.0
    start: tuple[float, float] = (100.0, 200.0)
    gps: bool = True
    gps_sigma: float = 5.0
    gps_bias: tuple[float, float] = (3.0 / math.sqrt(2), 3.0 / math.sqrt(2))
    outage: tuple[float, float] | None = None
    spoof: tuple[float, float] | None = None
    spoof_offset: tuple[float, float] = (160.0, -120.0)  # 200 m
    drag: tuple[float, float, float] | None = None  # (start_s, end_s, m/s): the GPS pulled north, gone at the end
    lock: tuple[float, float, float] | None = None  # (start_s, end_s, m/s): a wrong visual lock drifting north
    visual: bool = True
    visual_from_s: float = 0.0
    visual_sigma: float = 1.0
    n_distractors: int = 3
    outlier_frame_prob: float = 0.1
    blind: tuple[float, float] | None = None
    blank: tuple[float, float] | None = None  # no visual fix at all (water, a field)
    wide: tuple[float, float] | None = None
    imu_yaw: bool = True
    seed: int = 0
    steps: list = field(default_factory=list)

    def truth(self, t: float) -> np.ndarray:
        return np.array([self.start[0] + self.speed * t, self.start[1]])

    @staticmethod
    def _in(window, t: float) -> bool:
        return window is not None and window[0] <= t < window[1]

    def visual_fix(self, rng, t_ns: int, truth: np.ndarray, t: float, scope) -> VisualFix:
        if self.lock is not None and self._in(self.lock[:2], t):  # one confident candidate, drifting off
            off = np.array([0.0, self.lock[2] * (t - self.lock[0])])
            return VisualFix(t_ns, (truth + off)[None], [0.9], [self.visual_sigma], probs=[0.99], inlier_prob=0.99,
                             scope=scope)
        blind = self._in(self.blind, t)
        wide = self._in(self.wide, t)
        n_far = self.n_distractors * (3 if wide else 1)
        far = truth + rng.uniform(150.0, 400.0, (n_far, 1)) * _unit(rng.uniform(0, 2 * math.pi, n_far))
        scores = list(rng.uniform(0.65, 0.75, n_far))
        pos = list(far)
        if blind or rng.random() < self.outlier_frame_prob:
            pos.append(truth + 250.0 * _unit(rng.uniform(0, 2 * math.pi, 1))[0])  # a confident wrong retrieval
            scores.append(0.85)
        else:
            pos.append(truth + rng.normal(0.0, self.visual_sigma, 2))
            scores.append(0.8 + rng.normal(0.0, 0.01))
        k = len(pos)
        yaws = np.where(rng.random(k) < 0.5, rng.normal(0.0, 0.05, k), np.nan)  # truth yaw is 0 (east)
        return VisualFix(t_ns, np.array(pos), np.array(scores), np.full(k, self.visual_sigma), yaws, 0.1,
                         None if wide else scope)

    def run(self, tracker: ParticleTracker) -> list[Step]:
        rng = np.random.default_rng(self.seed)
        n = int(round(self.duration_s * self.rate_hz))
        for i in range(n):
            t = i / self.rate_hz
            t_ns = T0 + int(round(t * NS))
            truth = self.truth(t)
            tracker.predict(t_ns, yaw=0.0 if self.imu_yaw else None)
            dec = None
            spoofed = False
            if self.gps and not self._in(self.outage, t):
                z = truth + np.asarray(self.gps_bias) + rng.normal(0.0, self.gps_sigma, 2)
                if self._in(self.spoof, t):
                    z = z + np.asarray(self.spoof_offset)
                    spoofed = True
                if self.drag is not None and self._in(self.drag[:2], t):
                    z = z + np.array([0.0, self.drag[2] * (t - self.drag[0])])
                    spoofed = True
                dec = tracker.update_gps(t_ns, float(z[0]), float(z[1]), self.gps_sigma)
            support = None
            if self.visual and t >= self.visual_from_s and not self._in(self.blank, t):
                scope = tracker.search_scope()
                support = tracker.update_visual(self.visual_fix(rng, t_ns, truth, t, scope))
            self.steps.append(Step(t, truth, tracker.estimate(), dec, support, spoofed))
        return self.steps

    def window(self, a: float, b: float) -> list[Step]:
        return [s for s in self.steps if a <= s.t_s < b]


def _unit(angles) -> np.ndarray:
    angles = np.atleast_1d(angles)
    return np.stack([np.cos(angles), np.sin(angles)], axis=-1)


@pytest.fixture
def flight():
    """``flight(**kwargs) -> Flight`` (call ``.run(tracker)``)."""
    return Flight


@pytest.fixture
def t0():
    return T0
