"""IMU frame conventions: bring an IMU given in NED world / FRD body (PX4) into SkyFix's ENU world / FLU body.

Inside SkyFix every :class:`~runtime.events.ImuSample` is REP-103: ``orientation`` is ``R_body2world`` with body FLU
(x forward, y left, z up) and world ENU (x east, y north, z up); body rates and the specific force are in FLU (+g on
z at rest, level). PX4-style data uses body FRD (x forward, y right, z down) in world NED (x north, y east, z down):
``orientation`` is ``R_frd2ned``, the specific force is -g on body z at rest, level.

* :func:`ned_frd_to_enu_flu` converts one sample exactly (signed permutations, no rounding beyond float64):
  ``R_flu2enu = R_ned2enu @ R_frd2ned @ R_flu2frd``, ``v_flu = diag(1, -1, -1) @ v_frd``.
* :class:`ImuFrameResolver` applies a chosen convention (``"enu_flu"``, ``"ned_frd"``) or detects it (``"auto"``)
  from gravity: the specific force rotated to the world by the sample's own orientation, taken as if it were ENU,
  has a vertical component near +g for ENU/FLU data and near -g for NED/FRD data.

Pure: no I/O, no clock; the rotations come from :mod:`calibration.rotations`.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from calibration.rotations import R_FRD2FLU, R_NED2ENU

from .errors import ImuFrameError
from .events import ImuSample, matrix_to_quaternion, quaternion_to_matrix

__all__ = ["GRAVITY_MPS2", "IMU_FRAMES", "ImuFrameResolver", "ned_frd_to_enu_flu"]

IMU_FRAMES = ("auto", "enu_flu", "ned_frd")
"""Valid IMU frame names: detect from gravity, REP-103 ENU/FLU (SkyFix's own), PX4 NED/FRD."""

GRAVITY_MPS2 = 9.80665
"""Standard gravity, m/s^2: the magnitude of the specific force at rest."""

_AMBIGUOUS_FACTOR = 5  # auto falls back to enu_flu after this many times min_samples samples without a decision


def ned_frd_to_enu_flu(sample: ImuSample) -> ImuSample:
    """The same IMU sample, given in NED world / FRD body (PX4), expressed in ENU world / FLU body (REP-103).

    ``orientation`` (``R_frd2ned``) becomes ``R_flu2enu = R_ned2enu @ R_frd2ned @ R_flu2frd`` (None stays None);
    ``angular_velocity`` and ``linear_acceleration`` become ``diag(1, -1, -1) @ v``. Time, topic, frame_id and
    ``tilt_sigma_rad`` are kept.

    Raises:
        ImuFrameError: ``sample`` is not an :class:`~runtime.events.ImuSample`.
    """
    if not isinstance(sample, ImuSample):
        raise ImuFrameError(f"ned_frd_to_enu_flu needs a runtime.events.ImuSample, got {type(sample).__name__}")
    orientation = None
    if sample.orientation is not None:
        R = R_NED2ENU @ quaternion_to_matrix(sample.orientation) @ R_FRD2FLU  # R_FRD2FLU is also R_flu2frd
        orientation = matrix_to_quaternion(R)
    return ImuSample(
        sample.t_ns,
        orientation,
        angular_velocity=tuple(R_FRD2FLU @ np.asarray(sample.angular_velocity)),
        linear_acceleration=tuple(R_FRD2FLU @ np.asarray(sample.linear_acceleration)),
        topic=sample.topic,
        frame_id=sample.frame_id,
        tilt_sigma_rad=sample.tilt_sigma_rad,
    )


def _check_frame(frame) -> str:
    if not isinstance(frame, str) or frame.strip().lower() not in IMU_FRAMES:
        raise ImuFrameError(
            f"unknown IMU frame {frame!r}; expected one of {', '.join(IMU_FRAMES)} "
            "(enu_flu: REP-103 world ENU / body FLU, ROS; ned_frd: world NED / body FRD, PX4; "
            "auto: detect from gravity)"
        )
    return frame.strip().lower()


class ImuFrameResolver:
    """Turns incoming IMU samples into ENU/FLU ones, for a given or a detected frame convention.

    Args:
        frame: ``"enu_flu"`` (samples pass unchanged), ``"ned_frd"`` (every sample is converted with
            :func:`ned_frd_to_enu_flu`) or ``"auto"`` (detect from gravity, see :meth:`convert`).
        min_samples: ``"auto"`` decides once this many samples with orientation agree (median over the last
            ``min_samples`` of them); after ``5 * min_samples`` samples without a decision it falls back to enu_flu.

    Raises:
        ImuFrameError: unknown ``frame`` (the message lists :data:`IMU_FRAMES`) or ``min_samples`` < 1.
    """

    def __init__(self, frame: str = "auto", *, min_samples: int = 20) -> None:
        self._requested = _check_frame(frame)
        if isinstance(min_samples, bool) or not isinstance(min_samples, (int, np.integer)) or min_samples < 1:
            raise ImuFrameError(f"min_samples must be an integer >= 1 (samples with orientation), got {min_samples!r}")
        self._min = int(min_samples)
        self._frame = self._requested
        self._vertical: deque[float] = deque(maxlen=self._min)  # world-z specific force (as if ENU), m/s^2
        self._seen = 0  # samples offered while undecided
        self._dropped = 0
        self._note: str | None = None

    @property
    def requested(self) -> str:
        """The frame asked for at construction (one of :data:`IMU_FRAMES`)."""
        return self._requested

    @property
    def frame(self) -> str:
        """``"enu_flu"`` or ``"ned_frd"`` once known; ``"auto"`` while detection is undecided."""
        return self._frame

    @property
    def undecided_dropped(self) -> int:
        """How many samples :meth:`convert` dropped (returned None for) before auto detection decided."""
        return self._dropped

    @property
    def note(self) -> str | None:
        """One human-readable line on what auto detection decided and why; None while undecided and for a frame
        given explicitly."""
        return self._note

    def convert(self, sample: ImuSample) -> ImuSample | None:
        """The sample in ENU/FLU, or None while ``"auto"`` has not decided yet (the sample is dropped and counted in
        :attr:`undecided_dropped`; the sample that completes the evidence is already returned converted).

        Auto detection: each sample with orientation gives ``z = (R @ f)[2]``, ``R`` the orientation's matrix and
        ``f`` the specific force, as if both were ENU/FLU. Once ``min_samples`` such values are in, a median above
        +g/2 means ENU/FLU, below -g/2 NED/FRD. Samples without orientation are no evidence (but count towards the
        fallback).

        Raises:
            ImuFrameError: ``sample`` is not an :class:`~runtime.events.ImuSample`.
        """
        if not isinstance(sample, ImuSample):
            raise ImuFrameError(
                f"ImuFrameResolver.convert needs a runtime.events.ImuSample, got {type(sample).__name__}"
            )
        if self._frame == "auto":
            self._observe(sample)
            if self._frame == "auto":
                self._dropped += 1
                return None
        return ned_frd_to_enu_flu(sample) if self._frame == "ned_frd" else sample

    # ------------------------------------------------------------------------------------------------ internals
    def _observe(self, sample: ImuSample) -> None:
        self._seen += 1
        if sample.orientation is not None:
            f = np.asarray(sample.linear_acceleration, dtype=float)
            self._vertical.append(float(quaternion_to_matrix(sample.orientation)[2] @ f))
        n = len(self._vertical)
        median = float(np.median(self._vertical)) if n else float("nan")
        half_g = 0.5 * GRAVITY_MPS2
        if n >= self._min and median > half_g:
            self._decide("enu_flu", f"IMU in ENU/FLU (REP-103) detected from gravity (median world-z specific force "
                                    f"{median:+.2f} m/s^2 over {n} samples): used as is")
        elif n >= self._min and median < -half_g:
            self._decide("ned_frd", f"IMU in NED/FRD (PX4 convention) detected from gravity (median world-z specific "
                                    f"force {median:+.2f} m/s^2 over {n} samples): converted to ENU/FLU")
        elif self._seen >= _AMBIGUOUS_FACTOR * self._min:
            if n == 0:
                why = f"none of the first {self._seen} samples has an orientation"
            else:
                why = (f"the median world-z specific force over the last {n} samples with orientation is "
                       f"{median:+.2f} m/s^2, not near +g or -g (accelerometer zero or not specific force?)")
            self._decide("enu_flu", f"IMU frame could not be detected from gravity ({why}): assumed ENU/FLU; "
                                    "set the IMU frame to enu_flu or ned_frd explicitly")

    def _decide(self, frame: str, note: str) -> None:
        self._frame = frame
        self._note = note
        self._vertical.clear()

    def __repr__(self) -> str:
        return (f"ImuFrameResolver(requested={self._requested!r}, frame={self._frame!r}, "
                f"min_samples={self._min}, undecided_dropped={self._dropped})")
