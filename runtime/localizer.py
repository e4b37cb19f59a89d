"""The onboard loop's core: typed events in (:mod:`runtime.events`), estimates out. No I/O here.

Per camera frame (:meth:`Localizer.on_frame`):

1. **decode** the image (JPEG bytes are decoded on first access of ``Frame.image``);
2. **predict** the tracker to the frame time (IMU yaw when fresh, and the velocity change integrated from the IMU's
   acceleration since the last step, its tilt/accelerometer bias taken out: :mod:`runtime.imu_velocity`);
3. **rectify** to north-up ground views at the map's resolution (:class:`runtime.ground_view.GroundViewer`): one view
   with the IMU attitude when known, else one per heading hypothesis of the tracker (a level camera), at the height
   above ground kept by :class:`runtime.ground_view.HeightKeeper` (GPS altitude minus the map's ground elevation,
   held through outages); with one view, **ground odometry** (:mod:`runtime.ground_odometry`) measures the
   ground velocity against the view of about a second ago and the tracker weights its particle velocities with it;
4. **encode** the centre crops with the map's encoder (:class:`runtime.encoder.Encoder`);
5. **search** the map inside the scope of the current belief (:meth:`ParticleTracker.search_scope`; the whole map
   when there is no belief or it is LOST: the wide search that recovers);
6. **align**: refine the belief and the best candidates against the map imagery (:class:`runtime.align.FineAligner`)
   for a sub-tile position and the heading (positions below the NCC or peak-ratio gate are dropped);
7. **filter**: the candidates, with their probabilities from the likelihood calibration (:mod:`runtime.likelihood`),
   become a :class:`runtime.tracking.VisualFix` for the particle filter (none when the fix is below
   ``min_fix_prob``). What the frame's measurement was made of stays in :attr:`Localizer.last_candidates`.

With ``Localizer(..., device="cuda")`` (``runtime replay/run/bench --device cuda``) steps 3, 5 and 6 run in torch on
the GPU (:mod:`runtime.gpu`: the frame uploaded once per frame, exact scoped search over the embeddings held there,
the NCC of every candidate and yaw hypothesis at once), with the CPU stages' results within the tolerances stated
there; ``device="cpu"`` (the default) is the numpy/OpenCV path, which never imports torch.

GPS fixes (:meth:`on_gps`) go to the tracker (gated there; with their ground velocity, which also calibrates the IMU
integration) and to the height keeper; IMU samples (:meth:`on_imu`) give the attitude of the next frames and the
acceleration between filter steps; a displacement measured between two frames (:meth:`on_motion`, a
:class:`runtime.events.GroundMotion`: consecutive photos seconds apart) weighs each particle by how far it moved
since the earlier frame, whose positions the tracker keeps after every frame (:meth:`ParticleTracker.mark_anchor`).
Each frame (or, in a recording without a camera, each GPS fix) gives an
:class:`Output`: the tracker's :class:`~runtime.tracking.TrackEstimate` and the per-stage latency in milliseconds.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field, fields, replace

import numpy as np

from calibration.camera import CameraModel
from calibration.geometry import NADIR_MOUNT, Attitude, Mount
from maps.errors import PriorOutsideMapError

from .errors import BagError, OnboardError
from .events import CameraInfoEvent, Frame, GpsFix, GroundMotion, ImuSample, STATUS_NO_FIX
from .imu_velocity import ImuVelocity

__all__ = ["LocalizerConfig", "LOCALIZER_RANGES", "Localizer", "Output", "FrameCandidates", "ImuVelocity", "LocalizerError",
           "EncoderMismatchError", "STAGES"]

#: latency stages of one frame, in order (milliseconds in :attr:`Output.latency_ms`)
STAGES = ("decode", "rectify", "encode", "search", "align", "filter", "total")
#: notes per kind of skipped input (undecodable frames, camera size mismatch, off the map); the counts stay exact
_NOTES_PER_REASON = 5
#: the height check uses a frame only when its three alignments (scales 1 -/+ step) land within this of each other, m
_SCALE_AGREE_M = 2.0


class LocalizerError(OnboardError):
    """The loop cannot be set up (map and model disagree, bad configuration)."""


class EncoderMismatchError(LocalizerError):
    """The model onboard is not the encoder the map was built with."""


def turn_tilt(velocity_xy, yaw_rate_rps: float) -> tuple[float, np.ndarray]:
    """The tilt of a coordinated turn and the direction it moves a body-fixed nadir camera's view.

    Args:
        velocity_xy: ground velocity (vx, vy), m/s, local ENU. yaw_rate_rps: rad/s, positive counter-clockwise
            (a left turn).
    Returns:
        (bank, outward): ``atan(speed * |rate| / g)`` in degrees, and the unit vector ``float64[2]`` out of the turn
        (right of the velocity in a left turn): the thrust or lift leans into the turn, so the camera looks out of
        it and a level-assumed view's centre lies ``height * tan(bank)`` that way. (0, zeros) when not moving.
    """
    v = np.asarray(velocity_xy, dtype=np.float64)
    speed = float(np.hypot(v[0], v[1]))
    if speed < 1e-6 or yaw_rate_rps == 0.0:
        return 0.0, np.zeros(2)
    outward = -math.copysign(1.0, yaw_rate_rps) * np.array([-v[1], v[0]]) / speed
    return math.degrees(math.atan(speed * abs(yaw_rate_rps) / 9.80665)), outward


#: the range of every numeric :class:`LocalizerConfig` setting, (least, most, unit), both included (where the least
#: is excluded, e.g. "> 0", the field's own check says so). The tops keep one frame's work and memory bounded: ``k``
#: candidates per view (the search's score arrays), ``align_top`` alignments per view, ``yaw_hypotheses`` views per
#: frame, and ``attitude_yaw_sigma_deg`` / ``yaw_step_deg`` at most 361 views per frame.
LOCALIZER_RANGES = {
    "k": (1, 1000, "candidates"), "align_top": (0, 100, "candidates"), "align_min_score": (-1.0, 1.0, "(NCC)"),
    "align_min_peak_ratio": (1.0, 100.0, "(ratio)"), "align_max_sigma_m": (0.0, 1000.0, "m"),
    "align_highpass_m": (0.0, 1000.0, "m"),
    "retrieval_only_sigma_m": (0.0, 1e5, "m"), "attitude_sigma_deg": (0.0, 90.0, "degrees"),
    "attitude_yaw_sigma_deg": (0.0, 90.0, "degrees"), "yaw_step_deg": (1.0, 180.0, "degrees"),
    "unknown_tilt_sigma_deg": (0.0, 60.0, "degrees"), "unseen_bank_deg": (0.0, 90.0, "degrees"),
    "bank_error": (0.0, 1.0, "(fraction)"), "yaw_hypotheses": (1, 64, "views"), "min_view_valid": (0.0, 1.0, "(fraction)"),
    "imu_max_age_s": (0.0, 60.0, "s"), "imu_time_offset_s": (-1.0, 1.0, "s"), "default_gps_sigma_m": (0.0, 1e4, "m"),
    "height_m": (0.0, 1e4, "m (or null)"), "min_scope_m": (0.0, 1e6, "m"), "scale_after_s": (0.0, 3600.0, "s"),
    "scale_every": (0, 1000, "frames"), "scale_step": (0.0, 0.5, "(relative)"), "scale_gain": (0.0, 1.0, "(fraction)"),
    "min_fix_prob": (0.0, 1.0, "(probability)"),
}


@dataclass(frozen=True)
class LocalizerConfig:
    """How the loop runs (frozen; :meth:`from_dict` rejects unknown keys; every number has a range,
    :data:`LOCALIZER_RANGES`, and a value out of it is refused naming the key, the value and the range).

    Attributes:
        k: retrieval candidates per view.
        align_top: how many of the best candidates are fine-aligned (0: no fine alignment).
        align_min_score: least NCC of a fine-aligned position to count (wrong places score ~0.1-0.4, right ~0.9).
        align_min_peak_ratio: least ratio of a fine-aligned position's NCC peak to the best other peak at least the
            aligner's ``distinct_m`` away; below it another place matches about as well (water, a smooth field: the
            alignment would only echo the position it started from) and the position does not count.
        align_max_sigma_m: largest positional sigma (the aligner's own, metres) of a fine-aligned position that
            counts; a flatter peak is no sub-tile position (on simulated flights over zurich_a, zurich_b and the strip,
            aligned positions above 3 m were more than 6 m off 28 % of the time, below 1.5 m never). Without an IMU
            it widens to ``hypot(align_max_sigma_m, height * tan(unknown_tilt_sigma_deg))``: the unseen bank of a
            level-camera view blurs the peaks (zurich_a without IMU at 3 m: 13 frames reported OK > 10 m off).
        align_highpass_m: sigma (metres) of the low frequencies the aligner removes from the map and the views
            (:class:`runtime.align.FineAligner` ``highpass_m``: vignetting, the sun's hotspot and exposure gradients
            of real photos); 0 (default): none. Photo folders set 4 m. CPU alignment only.
        retrieval_only_sigma_m: tile-level candidates (no fine-aligned position passed) are given to the filter only
            while its belief is wider than this (metres) or it has none; a tight belief would only be pulled off by
            them.
        attitude_sigma_deg: roll/pitch error assumed for the IMU attitude (moves the nadir point by
            ``height * tan(error)``), degrees; a sample that states its own (:attr:`runtime.events.ImuSample.
            tilt_sigma_rad`, a photo whose tilt came from its images) overrides it for the frames that use it.
        attitude_yaw_sigma_deg: how far the attitude's yaw may be off, degrees (0: trusted, one view per frame). A
            source whose heading is poor (a senseFly survey's XMP heading scatters by ~17 degrees around the one its
            images show) sets it: each frame is then viewed at the attitude's roll and pitch and at yaws
            ``yaw_step_deg`` apart covering +/- 2 sigma, and the fix takes the yaw whose view matches.
        yaw_step_deg: spacing of those yaw views, degrees (the aligner tolerates a few degrees).
        unknown_tilt_sigma_deg: the same without an IMU (level camera assumed: banking in turns is not seen).
        turn_tilt: without an IMU, what the body does in a turn: ``"into_turn"`` (default; a multicopter tilts into
            its acceleration, a fixed wing banks into its turns: by ``atan(speed * yaw rate / g)`` from the
            tracker's speed and yaw rate, and a camera fixed to the body looks out of the turn by ``height *
            tan(bank)``; every fix is moved back by it) or ``"level"`` (a ground vehicle: no tilt is predicted).
            Before the fixes were moved back, level-camera fixes in turns were 10-16 m off and the belief followed
            them (zurich_a, a 200 m spoof without IMU: 20 m off, 6 s to take the GPS back; outage p95 17.7 m).
        bank_error: the share of that predicted bank which is not known (the tracker's yaw rate lags the turn's
            by about its averaging second): ``unknown_tilt_sigma_deg + bank_error * bank`` is the tilt sigma of a
            fix in a turn (gate, sigma) and what the turn adds to the reported covariance.
        unseen_bank_deg: without an IMU, while the bank of a coordinated turn at the tracker's speed and yaw rate
            exceeds this (degrees), estimates are at best DEGRADED and their covariance grows by the nadir shift of
            the bank's unknown share, ``height * tan(bank_error * bank)`` (the filter does not model it). Without an IMU
            the reported covariance also holds ``height * tan(unknown_tilt_sigma_deg)`` per axis: that tilt is the
            same in consecutive fixes, so the filter's averaging of them cannot remove it.
        yaw_hypotheses: views per frame when the heading is unknown (no IMU, tracker yaw uncertain).
        min_view_valid: least fraction of valid pixels in the encoder crop; fewer: the frame gives no visual fix.
        imu_max_age_s: an IMU attitude older than this (seconds) at the frame time is not used.
        imu_frame: the IMU's convention: ``"enu_flu"`` (REP-103, ROS), ``"ned_frd"`` (PX4: orientation FRD->NED,
            rates and force in FRD), or ``"auto"`` (default: told apart by gravity in the first samples with an
            orientation, :class:`runtime.imu_frame.ImuFrameResolver`; the samples before the decision are skipped
            and counted).
        imu_time_offset_s: how far the IMU's clock runs ahead of the camera's (seconds, |offset| <= 1): IMU stamps
            are moved back by it before use (0: the clocks agree).
        gps_velocity: when a fix's ground velocity (NMEA RMC, a bag's Twist topic) weights the particle velocities:
            ``"always"`` (default), ``"no_imu"`` (only while no IMU yaw is fresh) or ``"never"``.
        imu_accel: integrate the IMU's acceleration (specific force rotated to the world by its orientation, minus
            gravity) into the particle velocities between frames (inertial dead reckoning; turns are followed
            without GPS or vision). False: constant velocity.
        imu_bias: estimate the IMU's horizontal acceleration bias (tilt error leaking gravity, accelerometer bias)
            from GPS ground velocity and ground odometry, and take it out of that integration
            (:class:`runtime.imu_velocity.ImuVelocity`).
        ground_odometry: measure the ground velocity from the image sequence (phase correlation of the ground
            views about a second apart, :class:`runtime.ground_odometry.GroundOdometry`) and weight the particle
            velocities with it (and, with an IMU, calibrate the IMU's bias); used when a frame has one view (IMU
            attitude, or a settled heading).
        default_gps_sigma_m: GPS horizontal sigma when a fix carries no covariance, metres.
        height_m: height above ground to assume before any GPS altitude is known (None: frames wait for GPS).
        min_scope_m: the least search radius around the belief, metres.
        scale_after_s: the height counts as held (not fresh) once the last GPS altitude is this old, seconds; then
            (and with an assumed ``height_m``) the images correct it.
        scale_every: every this many frames, a held height is checked against the images around a belief tighter
            than half the aligner's search window, when the views at the three scales align to one place (0: never).
            Frames without a fix count too: a wrong height blurs the alignment peaks past ``align_max_sigma_m``, so
            waiting for fixes would wait for the correction itself.
        scale_step, scale_gain: relative height step of the check (views at 1 -/+ step) and the fraction of the
            implied correction applied per check.
        min_fix_prob: with a calibrated likelihood, a frame whose fix holds the vehicle with a probability below this
            gives no fix (look-alike terrain such as water: its candidates would only pull the belief around;
            on held-out flights fixes below 0.4 held it 16 % of the time, above 0.4 almost always).
        likelihood: how candidate scores become the visual likelihood: ``"default"`` (the calibration fitted on
            simulated flights, :func:`runtime.likelihood.default_likelihood`), a path to a file written by
            ``runtime likelihood fit``, or ``"softmax"`` (uncalibrated: softmax of the scores with the tracker's
            ``visual_temperature``, inlier probability ``visual_inlier_prob``).
        tracker: :class:`runtime.tracking.TrackerConfig` fields (mapping) overriding its defaults.
    """

    k: int = 8
    align_top: int = 3
    align_min_score: float = 0.5
    align_min_peak_ratio: float = 1.1
    align_max_sigma_m: float = 3.0
    align_highpass_m: float = 0.0
    retrieval_only_sigma_m: float = 12.0
    attitude_sigma_deg: float = 1.0
    attitude_yaw_sigma_deg: float = 0.0
    yaw_step_deg: float = 8.0
    unknown_tilt_sigma_deg: float = 6.0
    unseen_bank_deg: float = 3.0
    turn_tilt: str = "into_turn"
    bank_error: float = 0.5
    yaw_hypotheses: int = 8
    min_view_valid: float = 0.6
    imu_max_age_s: float = 0.5
    imu_frame: str = "auto"
    imu_time_offset_s: float = 0.0
    imu_accel: bool = True
    imu_bias: bool = True
    ground_odometry: bool = True
    gps_velocity: str = "always"
    default_gps_sigma_m: float = 5.0
    height_m: float | None = None
    min_scope_m: float = 60.0
    scale_after_s: float = 2.0
    scale_every: int = 5
    scale_step: float = 0.05
    scale_gain: float = 0.5
    likelihood: str = "default"
    min_fix_prob: float = 0.5
    tracker: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("k", "yaw_hypotheses"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise LocalizerError(f"localizer {key} must be a positive integer, got {v!r}")
        if isinstance(self.align_top, bool) or not isinstance(self.align_top, int) or self.align_top < 0:
            raise LocalizerError(f"localizer align_top must be an integer >= 0, got {self.align_top!r}")
        if isinstance(self.scale_every, bool) or not isinstance(self.scale_every, int) or self.scale_every < 0:
            raise LocalizerError(f"localizer scale_every must be an integer >= 0, got {self.scale_every!r}")
        if not (isinstance(self.scale_step, (int, float)) and 0.0 < self.scale_step < 0.5):
            raise LocalizerError(f"localizer scale_step must be in (0, 0.5), got {self.scale_step!r}")
        if not (isinstance(self.scale_gain, (int, float)) and 0.0 < self.scale_gain <= 1.0):
            raise LocalizerError(f"localizer scale_gain must be in (0, 1], got {self.scale_gain!r}")
        for key in ("imu_max_age_s", "default_gps_sigma_m", "min_scope_m", "retrieval_only_sigma_m", "scale_after_s",
                    "attitude_sigma_deg", "unknown_tilt_sigma_deg", "unseen_bank_deg", "yaw_step_deg"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
                raise LocalizerError(f"localizer {key} must be a number > 0, got {v!r}")
        if not (isinstance(self.align_min_score, (int, float)) and -1.0 <= self.align_min_score <= 1.0):
            raise LocalizerError(f"localizer align_min_score must be an NCC in [-1, 1], got {self.align_min_score!r}")
        if not (isinstance(self.min_view_valid, (int, float)) and 0.0 <= self.min_view_valid <= 1.0):
            raise LocalizerError(f"localizer min_view_valid must be in [0, 1], got {self.min_view_valid!r}")
        if self.height_m is not None and not (isinstance(self.height_m, (int, float)) and self.height_m > 0):
            raise LocalizerError(f"localizer height_m must be > 0 metres or None, got {self.height_m!r}")
        from .imu_frame import IMU_FRAMES

        v = self.imu_time_offset_s
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and abs(v) <= 1.0):
            raise LocalizerError(f"localizer imu_time_offset_s must be a number of seconds within [-1, 1], got {v!r}")
        if self.imu_frame not in IMU_FRAMES:
            raise LocalizerError(f"localizer imu_frame must be one of {', '.join(IMU_FRAMES)}, got {self.imu_frame!r}")
        v = self.align_highpass_m
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v >= 0.0):
            raise LocalizerError(f"localizer align_highpass_m must be metres >= 0 (0: off), got {v!r}")
        v = self.attitude_yaw_sigma_deg
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0.0 <= v <= 90.0):
            raise LocalizerError(f"localizer attitude_yaw_sigma_deg must be degrees in [0, 90], got {v!r}")
        if self.turn_tilt not in ("into_turn", "level"):
            raise LocalizerError(f"localizer turn_tilt must be 'into_turn' or 'level', got {self.turn_tilt!r}")
        v = self.bank_error
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0.0 <= v <= 1.0):
            raise LocalizerError(f"localizer bank_error must be a fraction in [0, 1], got {v!r}")
        if self.gps_velocity not in ("no_imu", "always", "never"):
            raise LocalizerError(f"localizer gps_velocity must be 'no_imu', 'always' or 'never', got "
                                 f"{self.gps_velocity!r}")
        for key in ("imu_accel", "imu_bias", "ground_odometry"):
            if not isinstance(getattr(self, key), bool):
                raise LocalizerError(f"localizer {key} must be true or false, got {getattr(self, key)!r}")
        if not (isinstance(self.align_min_peak_ratio, (int, float)) and self.align_min_peak_ratio >= 1.0):
            raise LocalizerError(
                f"localizer align_min_peak_ratio must be a number >= 1, got {self.align_min_peak_ratio!r}")
        if not (isinstance(self.align_max_sigma_m, (int, float)) and self.align_max_sigma_m > 0):
            raise LocalizerError(
                f"localizer align_max_sigma_m must be a number > 0 metres, got {self.align_max_sigma_m!r}")
        if not (isinstance(self.min_fix_prob, (int, float)) and 0.0 <= self.min_fix_prob < 1.0):
            raise LocalizerError(f"localizer min_fix_prob must be a probability in [0, 1), got {self.min_fix_prob!r}")
        if not isinstance(self.likelihood, str) or not self.likelihood:
            raise LocalizerError(f"localizer likelihood must be 'default', 'softmax' or a calibration file path, got "
                                 f"{self.likelihood!r}")
        if not isinstance(self.tracker, dict):
            raise LocalizerError(f"localizer tracker must be a mapping of TrackerConfig fields, got {self.tracker!r}")
        for key, (lo, hi, unit) in LOCALIZER_RANGES.items():
            v = getattr(self, key)
            if v is None and key == "height_m":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and lo <= v <= hi):
                raise LocalizerError(f"localizer {key} = {v!r} is out of range: allowed {lo:g} to {hi:g} {unit}")

    @classmethod
    def from_dict(cls, d: dict) -> "LocalizerConfig":
        from maps.config import strict_from_dict

        return strict_from_dict(cls, d, "localizer", error=LocalizerError)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Output:
    """One estimate of the loop: ``estimate`` (:class:`runtime.tracking.TrackEstimate`, local metres), ``lat``/``lon``
    (WGS84 degrees), ``heading_deg`` (compass, clockwise from north), ``latency_ms`` (stage -> ms, :data:`STAGES`),
    ``source`` ("frame" or "gps"), ``candidates`` (the visual fix's candidate count, 0 without one)."""

    estimate: object
    lat: float
    lon: float
    heading_deg: float
    latency_ms: dict
    source: str
    candidates: int = 0


@dataclass(frozen=True)
class FrameCandidates:
    """What one frame's visual measurement was made of, before the gates (:attr:`Localizer.last_candidates`; the
    data for calibrating the visual likelihood, :mod:`runtime.likelihood`).

    Attributes:
        t_ns: frame time, integer ns.
        aligned: float64[n, 7] every fine alignment that found map imagery: x, y (local metres), NCC score, sigma_m
            (the alignment's own with the attitude term, metres), peak ratio, passed (1.0: it passed the gates and
            went into the fix, 0.0: dropped), and where it started: 0 at the belief, else the log scope ratio of the
            search that retrieved its tile (:func:`runtime.likelihood.scope_log_ratio`).
        retrieved: float64[m, 7] retrieval candidates of every view: x, y (tile centre, local metres), cosine score,
            sigma_m (half a stride), the best cosine of the same view, the view's spread (best minus k-th best
            cosine: near 0 where every tile looks alike, e.g. water), and the log of the searched area over the area
            a candidate counts as correct in (:func:`runtime.likelihood.scope_log_ratio`).
        retrieved_used: the retrieval candidates formed the fix (no aligned position passed).
        embeddings: float32[v, d] the views' embeddings (what was searched with).
        scope: the search scope (x, y, radius_m), None for the whole map.
    """

    t_ns: int
    aligned: np.ndarray
    retrieved: np.ndarray
    retrieved_used: bool
    embeddings: np.ndarray
    scope: tuple | None


class Localizer:
    """The onboard loop over one map (see the module docstring).

    Args:
        package: the :class:`maps.package.MapPackage` (its contract must be the encoder's), or a region map
            (:class:`maps.region.RegionMap`: the loop focuses it on the belief every frame, which loads the shards
            around it and ahead of it; LOST, it searches the shards within ``RegionMap.wide_radius_m`` of the belief);
            None: GPS alone (the local frame is centred on the first fix, frames are not used).
        encoder: ``runtime.encoder.Encoder`` (callable ``uint8[n, s, s, 3] -> float32[n, d]`` with ``.contract``);
            None without a map.
        camera: the camera intrinsics (None: taken from the first ``CameraInfoEvent``).
        mount: camera extrinsics (default nadir).
        config: :class:`LocalizerConfig`.
        device: where the rectify, search and align stages run: ``"cpu"`` (default: numpy/OpenCV), ``"cuda"`` /
            ``"cuda:N"`` (torch on that GPU, :mod:`runtime.gpu`: the frame uploaded once, views, exact scoped search
            over the embeddings held there, batched NCC) or ``"torch:cpu"`` (the torch stages on the CPU: parity
            checks). The encoder's device is the encoder's own setting.
    Raises:
        EncoderMismatchError: the encoder is not the one that built the map (both ids in the message).
        runtime.gpu.DeviceError: an unknown device, or CUDA where torch sees no GPU.
        runtime.errors.MissingExtraError: a torch device without torch installed.
    """

    def __init__(self, package, encoder, *, camera: CameraModel | None = None, mount: Mount = NADIR_MOUNT,
                 config: LocalizerConfig | None = None, device: str = "cpu") -> None:
        from .ground_view import HeightKeeper
        from .tracking import ParticleTracker, TrackerConfig

        self.config = LocalizerConfig() if config is None else config
        if not isinstance(self.config, LocalizerConfig):
            raise LocalizerError(f"config must be a LocalizerConfig, got {type(self.config).__name__}")
        self.package = package
        self.encoder = encoder
        self.mount = mount
        if package is None:
            # GPS alone (a recording without camera, no map): the local frame is centred on the first fix
            self.contract, self.frame, bounds, elevation = None, None, None, 0.0
            self.gsd, self.size_px = math.nan, 0
        else:
            if encoder is None:
                raise LocalizerError("a map needs its encoder: pass the model that built it (runtime.encoder)")
            mc, ec = package.contract, encoder.contract
            if mc.encoder_id != ec.encoder_id:
                raise EncoderMismatchError(
                    f"the map {package.path} was built with encoder {mc.name} ({mc.encoder_id}) but the model is "
                    f"{ec.name} ({ec.encoder_id}); pass the model that built the map, or rebuild the map with this "
                    f"one (`skyfix maps build ORTHO -o MAP --model MODEL`)")
            self.contract, self.frame = mc, package.frame
            self.gsd = float(mc.ground_resolution_m)
            self.size_px = int(mc.input_width)
            b = package.bounds
            bounds = (float(b[0]), float(b[1]), float(b[2]), float(b[3]))
            elevation = package.ground_elevation_m
        from .gpu import loop_device

        #: a region map (shards loaded around the belief) rather than one map package
        self.region = bool(getattr(package, "is_region", False))
        if self.region and loop_device(device) is not None:
            raise LocalizerError(f"region maps run the loop on the CPU (device 'cpu'), got device {device!r}; run "
                                 "with --device cpu, or build one map package of the area for the GPU loop")
        if self.config.align_highpass_m > 0.0 and loop_device(device) is not None:
            raise LocalizerError(f"align_highpass_m {self.config.align_highpass_m:g} (photo folders set it) runs on "
                                 f"the CPU aligner only, got device {device!r}; run with --device cpu, or set "
                                 "align_highpass_m 0")
        self.device = device
        #: the torch stages (:class:`runtime.gpu.stages.TorchStages`), None on the numpy/OpenCV path
        self.stages = None
        torch_dev = loop_device(device)
        if torch_dev is not None and package is not None:
            from .gpu.stages import TorchStages

            self.stages = TorchStages(torch_dev)
        self.tracker = ParticleTracker(TrackerConfig.from_dict(dict(self.config.tracker)), bounds=bounds)
        self.height = HeightKeeper(elevation)
        self._viewer = None
        self._camera = None
        self._aligner = None
        self._imagery_checked = False
        self._imu: ImuSample | None = None
        from .imu_frame import ImuFrameResolver

        self._imu_frame = ImuFrameResolver(self.config.imu_frame, min_samples=1)  # gravity tells at once
        self._dv = ImuVelocity(self.config.imu_max_age_s, estimate_bias=self.config.imu_bias)
        self._v_imu = np.zeros(2)  # the IMU velocity changes handed to the tracker, summed (m/s)
        self._yaw_hist: deque[tuple[int, float]] = deque()  # (t_ns, tracker yaw) over the last second, no IMU
        self._unseen_shift_m = 0.0  # no IMU: the nadir shift of the turn bank's unknown share (bank_error), metres
        self._level_tilt_m = 0.0  # no IMU: the nadir shift of the unseen tilt (unknown_tilt_sigma_deg), metres
        self._odometry = None
        if self.config.ground_odometry:
            from .ground_odometry import GroundOdometry

            self._odometry = GroundOdometry()
        self.notes: list[str] = []
        self._noted: dict[str, int] = {}  # notes per skip reason (_skip_note)
        self._outside = False  # the belief is off the map (frames not used)
        self.likelihood = self._load_likelihood(self.config.likelihood)
        lik_id = "" if self.likelihood is None else self.likelihood.encoder_id
        #: the retrieval scores are calibrated for this map's encoder (else they use the uncalibrated softmax)
        self.retrieval_calibrated = self.likelihood is not None and (
            not lik_id or self.contract is None or lik_id == self.contract.encoder_id)
        if self.likelihood is not None and not self.retrieval_calibrated:
            self._note(f"the likelihood calibration was fitted for encoder {lik_id}, the map uses "
                       f"{self.contract.encoder_id}: retrieval scores use the uncalibrated softmax (fine-aligned ones "
                       "stay calibrated); fit one with `runtime likelihood fit ORTHO... --model MODEL`")
        #: the candidates of the last frame that reached the search (:class:`FrameCandidates`), None before
        self.last_candidates: FrameCandidates | None = None
        #: image-based height correction (multiplies the held/assumed height; 1 while GPS altitude is fresh)
        self.height_scale = 1.0
        self.counts = {"frames": 0, "frames_used": 0, "gps": 0, "gps_rejected": 0, "imu": 0, "frames_no_camera": 0,
                       "frames_no_height": 0, "frames_few_pixels": 0, "frames_weak_fix": 0, "odometry": 0,
                       "odometry_refused": 0}
        if camera is not None:
            self._set_camera(camera)

    # ------------------------------------------------------------------------------------------------ set-up
    @staticmethod
    def _load_likelihood(spec: str):
        from .likelihood import LikelihoodError, VisualLikelihood, default_likelihood

        if spec == "softmax":
            return None
        if spec == "default":
            return default_likelihood()
        try:
            return VisualLikelihood.load(spec)
        except LikelihoodError as exc:
            raise LocalizerError(f"localizer likelihood: {exc} (or pass 'default' or 'softmax')") from None

    def _set_camera(self, camera: CameraModel) -> None:
        from .ground_view import GroundViewer

        if self._camera is not None and camera == self._camera:
            return
        self._camera = camera
        if self.stages is None:
            self._viewer = GroundViewer(camera, self.gsd, self.size_px, mount=self.mount)
        else:
            self._viewer = self.stages.viewer(camera, self.gsd, self.size_px, mount=self.mount)

    def _aligner_or_none(self):
        if not self._imagery_checked:
            self._imagery_checked = True
            if self.config.align_top > 0 and self.region:
                from .region_align import ShardedAligner

                self._aligner = ShardedAligner(self.package, **self._align_settings())
            elif self.config.align_top > 0:
                imagery = self.package.imagery()
                if imagery is None:
                    self._note(f"map {self.package.path} stores no imagery: no fine alignment (tile-level positions "
                               "only); rebuild it without --no-imagery")
                elif self.stages is None:
                    from .align import FineAligner

                    self._aligner = FineAligner(imagery, **self._align_settings())
                else:
                    self._aligner = self.stages.aligner(imagery)
        return self._aligner

    def _align_settings(self) -> dict:
        """FineAligner settings that differ from its defaults (none unless ``align_highpass_m`` is set)."""
        return {"highpass_m": self.config.align_highpass_m} if self.config.align_highpass_m > 0.0 else {}

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def _skip_note(self, reason: str, text: str) -> None:
        """A note about one skipped input, at most ``_NOTES_PER_REASON`` per reason (the counts stay exact)."""
        n = self._noted.get(reason, 0)
        if n < _NOTES_PER_REASON:
            self._note(text)
        elif n == _NOTES_PER_REASON:
            self._note(f"further '{reason.replace('_', ' ')}' notes are left out (see the counts)")
        self._noted[reason] = n + 1

    @staticmethod
    def _where(frame: Frame) -> str:
        return f"camera {frame.topic or '(live)'} at t_ns {frame.t_ns}"

    def _fit_camera(self, frame: Frame, image: np.ndarray) -> bool:
        """Frames of another size than the camera model: scale the model when the aspect ratio agrees (within a
        pixel) and the factor is in [1/8, 8] (a stream at a lower resolution than the calibration), said once; else
        count the frame (``frames_camera_mismatch``), say what differs and how to fix it, and skip it."""
        cam = self._camera
        h, w = image.shape[:2]
        f = w / cam.width
        scaled = cam.scaled(f)
        if 0.125 <= f <= 8.0 and abs(scaled.height - h) <= 1:
            self._note(f"the camera model is {cam.width}x{cam.height} px, the frames {w}x{h}: intrinsics scaled by "
                       f"{f:.4g}")
            self._set_camera(scaled)
            return True
        self.counts["frames_camera_mismatch"] = self.counts.get("frames_camera_mismatch", 0) + 1
        why = "another aspect ratio" if abs(scaled.height - h) > 1 else f"a size {f:.3g} times the model's"
        self._skip_note("camera_mismatch", f"{self._where(frame)}: the camera file/CameraInfo is {cam.width}x"
                        f"{cam.height} px but the frames are {w}x{h} ({why}): frames skipped; pass the camera file "
                        "calibrated for this camera at this resolution (--camera CAMERA.yaml)")
        return False

    def _scope(self):
        """The search scope (x, y, radius_m) of this frame, None = the whole map. Over a region map never the whole
        region: LOST (or a belief wider than the tracker's wide search) it is the belief's 3-sigma circle capped at
        ``RegionMap.wide_radius_m``; None only before the tracker has a position."""
        scope = self.tracker.search_scope(self.config.min_scope_m)
        if scope is not None or not self.region or not self.tracker.initialized:
            return scope
        est = self.tracker.estimate()
        if not (math.isfinite(est.x) and math.isfinite(est.y)):
            return None
        r = 3.0 * est.sigma_m if math.isfinite(est.sigma_m) else math.inf
        return (float(est.x), float(est.y), float(min(max(r, self.config.min_scope_m), self.package.wide_radius_m)))

    def _focus_region(self, frame: Frame):
        """Region maps: the shards of this frame's scope ready (within the region's stall bound), those ahead
        prefetched; returns the scope."""
        scope = self._scope()
        est = self.tracker.estimate() if self.tracker.initialized else None
        vel = None if est is None or est.velocity_xy is None else est.velocity_xy
        late = self.package.counts["late_shards"]
        self._region_focus(scope, vel, True, self._where(frame))
        if self.package.counts["late_shards"] > late:
            self.counts["frames_late_shards"] = self.counts.get("frames_late_shards", 0) + 1
            self._skip_note("late_shards", f"{self._where(frame)}: a shard of the search scope was still loading "
                            f"after {self.package.stall_s * 1e3:.0f} ms: searched without it this frame")
        return scope

    def _region_focus(self, scope, velocity, wait: bool, where: str) -> None:
        """``RegionMap.focus``; a shard that failed to load (damaged) is counted and noted, the run goes on."""
        failed = set(self.package.failed)
        self.package.focus(scope, velocity, wait=wait)
        for sid in sorted(set(self.package.failed) - failed):
            self.counts["region_shards_failed"] = self.counts.get("region_shards_failed", 0) + 1
            self._note(f"{where}: shard {sid} of region {self.package.path} cannot be used "
                       f"({self.package.failed[sid]}): searched without it; `skyfix maps verify "
                       f"{self.package.path}` names every damaged file")

    def _off_map(self) -> float | None:
        """How far (metres) the search circle of the belief lies beyond the map's tiles when it does not touch them
        at all (what ``MapPackage.search`` refuses with PriorOutsideMapError), else None."""
        scope = self._scope()
        if scope is None:
            return None
        x, y, r = scope
        x0, y0, x1, y1 = (float(v) for v in self.package.bounds)
        d = math.hypot(max(x0 - x, 0.0, x - x1), max(y0 - y, 0.0, y - y1))
        return d - r if d > r else None

    # ------------------------------------------------------------------------------------------------ events
    def process(self, event) -> Output | None:
        """Dispatch one event; returns an :class:`Output` for frames (and for GPS fixes when ``gps_outputs``)."""
        if isinstance(event, Frame):
            out = self.on_frame(event)
            self.tracker.mark_anchor()  # where each particle was at this frame: a later GroundMotion measures from it
            return out
        if isinstance(event, GpsFix):
            return self.on_gps(event)
        if isinstance(event, ImuSample):
            self.on_imu(event)
        elif isinstance(event, GroundMotion):
            self.on_motion(event)
        elif isinstance(event, CameraInfoEvent):
            if self._camera is None:
                self._set_camera(event.camera)
        return None

    def on_motion(self, motion: GroundMotion) -> None:
        """A displacement measured between two frames (:class:`runtime.events.GroundMotion`): weighs the particles
        by how far each moved since the earlier frame (:meth:`ParticleTracker.update_displacement`). Counted as
        ``motion``; one whose earlier frame the tracker holds no positions for (not processed, or the belief
        re-initialised since) as ``motion_unused``, with a note."""
        res = self.tracker.update_displacement(motion.t_ns, motion.t_ref_ns, motion.displacement_en, motion.sigma_m,
                                               heading_sigma_rad=motion.heading_sigma_rad)
        if res in ("weighted", "redrawn"):
            self.counts["motion"] = self.counts.get("motion", 0) + 1
            return
        self.counts["motion_unused"] = self.counts.get("motion_unused", 0) + 1
        if res == "no anchor":
            self._note("a ground motion measured from a frame the tracker holds no positions for (not processed, or "
                       "the belief re-initialised since) is not used")

    def on_imu(self, sample: ImuSample) -> None:
        self.counts["imu"] += 1
        decided = self._imu_frame.frame != "auto"
        sample = self._imu_frame.convert(sample)
        if not decided and self._imu_frame.note:
            self._note(self._imu_frame.note)
        if sample is None:
            self.counts["imu_frame_undecided"] = self._imu_frame.undecided_dropped
            return
        if sample.orientation is None:
            return
        if self.config.imu_time_offset_s:
            sample = replace(sample, t_ns=sample.t_ns - int(round(self.config.imu_time_offset_s * 1e9)))
        self._imu = sample
        if self.config.imu_accel:
            self._dv.add(sample)

    def _take_dv(self, t_ns: int):
        dv = self._dv.take(t_ns) if self.config.imu_accel else None
        if dv is not None:
            self._v_imu += dv
        return dv

    def on_gps(self, fix: GpsFix, *, output: bool = False) -> Output | None:
        """Feed one fix (no-fix status is ignored). With ``output`` returns the estimate after it (GPS-only use)."""
        if fix.status == STATUS_NO_FIX:
            return None
        self.counts["gps"] += 1
        t0 = time.perf_counter()
        if self.frame is None:
            from maps.geodesy import LocalFrame

            self.frame = LocalFrame(fix.lat, fix.lon)
        x, y = (float(v) for v in self.frame.to_local(fix.lat, fix.lon))
        sigma = self.config.default_gps_sigma_m
        if fix.cov_enu is not None:
            var = float(max(fix.cov_enu[0, 0], fix.cov_enu[1, 1]))
            if math.isfinite(var) and var > 0:
                sigma = math.sqrt(var)
        yaw = self._imu_yaw(fix.t_ns)
        self.tracker.predict(fix.t_ns, yaw=yaw, yaw_sigma=self._imu_yaw_sigma(), delta_v=self._take_dv(fix.t_ns))
        # The fix's ground velocity weights the particle velocities (gps_velocity). With the IMU's acceleration
        # moving them it sharpens the velocity a GPS outage starts from (simulated 120 s flights, p95 in the outage:
        # zurich_b 8.6 -> 5.0 m, atlanta 1.2 -> 0.9 m); under constant velocity it had only helped without IMU.
        use = self.config.gps_velocity == "always" or (self.config.gps_velocity == "no_imu" and yaw is None)
        vel = fix.velocity_xy if use else None
        decision = self.tracker.update_gps(fix.t_ns, x, y, sigma, velocity_xy=vel,
                                           velocity_sigma=fix.velocity_sigma_mps)  # None: tracker default
        if decision.accepted:
            self.height.update(fix)
            if fix.velocity_xy is not None:  # calibrates the IMU integration (tilt/accelerometer bias)
                vs = fix.velocity_sigma_mps
                self._dv.update_velocity(fix.velocity_xy, self.tracker.config.gps_velocity_sigma_mps
                                         if vs is None else vs)
        else:
            self.counts["gps_rejected"] += 1
        if self.region and self.tracker.initialized:
            est = self.tracker.estimate()  # start loading the shards around the belief before the next frame
            self._region_focus(self._scope(), est.velocity_xy, False, f"GPS {fix.topic or '(live)'} at t_ns {fix.t_ns}")
        if not output:
            return None
        ms = (time.perf_counter() - t0) * 1e3
        return self._output(fix.t_ns, {"filter": ms, "total": ms}, "gps", 0)

    def _imu_attitude(self, t_ns: int) -> Attitude | None:
        s = self._imu
        if s is None or abs(t_ns - s.t_ns) > self.config.imu_max_age_s * 1e9:
            return None
        return Attitude.from_quaternion(*s.orientation)

    def _imu_tilt_sigma_deg(self) -> float:
        """The roll/pitch sigma of the attitude :meth:`_imu_attitude` gave: the sample's own when it states one
        (:attr:`ImuSample.tilt_sigma_rad`), else ``attitude_sigma_deg``."""
        s = self._imu
        if s is not None and s.tilt_sigma_rad is not None:
            return math.degrees(s.tilt_sigma_rad)
        return self.config.attitude_sigma_deg

    def _imu_yaw(self, t_ns: int) -> float | None:
        att = self._imu_attitude(t_ns)
        return None if att is None else float(att.yaw)

    def _imu_yaw_sigma(self) -> float | None:
        """The yaw sigma the tracker pins its particles' yaw with, radians: ``attitude_yaw_sigma_deg`` when the
        source says its yaw is that poor (and it is wider than the tracker's ``imu_yaw_sigma_rad``), else None (the
        tracker's own). Pinned at 3 degrees to a senseFly heading 20 degrees off, the particles gave the frame's own
        yaw (the best of the views over +/- 2 sigma) no support: Seneca fixes 2.7 m from the truth had support 0."""
        wide = math.radians(self.config.attitude_yaw_sigma_deg)
        return wide if wide > self.tracker.config.imu_yaw_sigma_rad else None

    def on_frame(self, frame: Frame) -> Output | None:
        """Process one camera frame (see the module docstring); None when the frame cannot be used yet (no camera
        model, no height) -- the reason is counted and noted once."""
        self.counts["frames"] += 1
        lat: dict[str, float] = {}
        t_start = time.perf_counter()
        t = t_start
        if self.package is None:
            self.counts["frames_no_map"] = self.counts.get("frames_no_map", 0) + 1
            self._note("no map: camera frames are not used (tracking on GPS alone)")
            return None
        if self._camera is None and frame.camera is not None:
            self._set_camera(frame.camera)
        if self._viewer is None:
            self.counts["frames_no_camera"] += 1
            self._note("frames arrive without camera intrinsics (no CameraInfo, no --camera file): skipped")
            return None
        image = None
        if self.stages is not None:
            self.stages.clock.next_frame()
            image = self.stages.device_frame(frame)  # a JPEG decoded on the GPU, never on the host (else None)
            if image is None and self.stages.jpeg.disabled:
                self._note(self.stages.jpeg.disabled)
        try:
            if image is None:
                image = frame.image
        except BagError as exc:  # a zero-length or corrupt JPEG/PNG: this frame is lost, not the run
            self.counts["frames_undecodable"] = self.counts.get("frames_undecodable", 0) + 1
            self._skip_note("undecodable", f"{self._where(frame)}: {exc}; frame skipped")
            return None
        if image.shape[:2] != (self._camera.height, self._camera.width) and not self._fit_camera(frame, image):
            return None
        now = time.perf_counter()
        lat["decode"], t = (now - t) * 1e3, now
        held = (not self.height.ready) or self.height.age_s(frame.t_ns) > self.config.scale_after_s
        if not held:
            self.height_scale = 1.0  # a fresh GPS altitude: no image-based correction on top
        height = self.height.height_m if self.height.ready else self.config.height_m
        if height is not None:
            height *= self.height_scale
        if height is None:
            self.counts["frames_no_height"] += 1
            self._note("height above ground unknown (no GPS altitude yet): frames skipped; pass --height M")
            return None
        attitude = self._imu_attitude(frame.t_ns)
        dv = self._take_dv(frame.t_ns)
        self.tracker.predict(frame.t_ns, yaw=None if attitude is None else float(attitude.yaw),
                             yaw_sigma=self._imu_yaw_sigma(), delta_v=dv)
        if self.region:
            self._focus_region(frame)
        off = self._off_map()
        if off is not None:
            # the belief is away from the map (a first GPS fix outside it): no search, the estimate goes on from
            # GPS (and IMU) alone until the belief is over the map again
            self.counts["frames_outside_map"] = self.counts.get("frames_outside_map", 0) + 1
            if not self._outside:
                self._outside = True
                self._skip_note("outside_map", f"{self._where(frame)}: outside the map: tracking on GPS alone (the "
                                f"belief is {off:.0f} m beyond the map's edge) until the vehicle is over the map")
            lat.update(rectify=0.0, encode=0.0, search=0.0, align=0.0, filter=0.0)
            lat["total"] = (time.perf_counter() - t_start) * 1e3
            return self._output(frame.t_ns, lat, "frame", 0)
        if self._outside:
            self._outside = False
            self._skip_note("outside_map", f"{self._where(frame)}: over the map again: frames are used")
        yaws = None
        if attitude is None:
            yaws = self.tracker.yaw_hypotheses(self.config.yaw_hypotheses)
            if yaws is None:
                yaws = [float(self.tracker.estimate().yaw_rad)]
        if self.stages is not None:
            image = self._viewer.upload(image)  # once per frame: every view of it (and the height check) samples it
        views = self._views(image, height, attitude, yaws)
        crops = [v.crop(self.size_px) for v in views]
        if self._odometry is not None:
            if attitude is None and self._unseen_shift_m > 0.0:
                self._odometry.reset()  # a level-camera view in a turn moves with the unseen tilt, not the ground
            else:
                self._ground_velocity(frame.t_ns, crops, dv is not None)
        keep = [i for i, c in enumerate(crops) if c.valid_fraction >= self.config.min_view_valid]
        now = time.perf_counter()
        lat["rectify"], t = (now - t) * 1e3, now
        if not keep:
            self.counts["frames_few_pixels"] += 1
            self._note(f"ground views with < {self.config.min_view_valid:.0%} valid pixels (camera looking away from "
                       "the ground?) give no visual fix")
            est_t = time.perf_counter()
            lat.update(encode=0.0, search=0.0, align=0.0, filter=(time.perf_counter() - est_t) * 1e3)
            lat["total"] = (time.perf_counter() - t_start) * 1e3
            return self._output(frame.t_ns, lat, "frame", 0)
        emb = self.encoder(np.stack([crops[i].image for i in keep]))
        now = time.perf_counter()
        lat["encode"], t = (now - t) * 1e3, now
        scope = self._scope()
        if scope is None and self.region:  # no position yet: a region is never searched whole
            self.counts["frames_no_scope"] = self.counts.get("frames_no_scope", 0) + 1
            self._note("region map: frames wait for a first position (GPS fix) to know which shards to search")
            lat.update(search=0.0, align=0.0, filter=0.0)
            lat["total"] = (time.perf_counter() - t_start) * 1e3
            return self._output(frame.t_ns, lat, "frame", 0)
        try:
            if self.stages is None:
                scores, ids = self.package.search(emb, self.config.k, prior=scope)
            else:
                scores, ids = self.stages.search(self.package, emb, self.config.k, prior=scope)
        except PriorOutsideMapError:  # the belief moved off the map since the check above (ground odometry)
            self.counts["frames_outside_map"] = self.counts.get("frames_outside_map", 0) + 1
            lat.update(search=0.0, align=0.0, filter=0.0)
            lat["total"] = (time.perf_counter() - t_start) * 1e3
            return self._output(frame.t_ns, lat, "frame", 0)
        now = time.perf_counter()
        lat["search"], t = (now - t) * 1e3, now
        cfg = self.config
        # without an IMU the level-camera views carry an unseen tilt (what the vehicle's acceleration implies, plus
        # unknown_tilt_sigma_deg): it moves the nadir point and blurs the peaks, so the sigmas and the gate widen by it
        bank, outward = (0.0, np.zeros(2)) if attitude is not None else self._unseen_tilt(frame.t_ns)
        tilt_sigma = self._imu_tilt_sigma_deg() if attitude is not None else min(
            cfg.unknown_tilt_sigma_deg + cfg.bank_error * bank, 60.0)
        tilt_shift = height * math.tan(math.radians(bank)) * outward  # the views' nadir shift in a turn, metres
        max_sigma = cfg.align_max_sigma_m if attitude is not None else math.hypot(
            cfg.align_max_sigma_m, height * math.tan(math.radians(tilt_sigma)))
        self._unseen_shift_m = (height * math.tan(math.radians(cfg.bank_error * bank))
                                if bank > self.config.unseen_bank_deg else 0.0)
        self._level_tilt_m = 0.0 if attitude is not None else height * math.tan(
            math.radians(cfg.unknown_tilt_sigma_deg))
        fix, n = self._visual_fix(frame.t_ns, [views[i] for i in keep], scores, ids, scope, height, tilt_sigma,
                                  max_sigma, emb, tilt_shift)
        now = time.perf_counter()
        lat["align"], t = (now - t) * 1e3, now
        if fix is not None:
            self.tracker.update_visual(fix)
            self.counts["frames_used"] += 1
        if held and self.config.scale_every and self.counts["frames"] % self.config.scale_every == 0:
            t_check = time.perf_counter()  # the height check is alignment work: counted there, not as filter
            self._check_scale(image, views[keep[0]], attitude)
            spent = time.perf_counter() - t_check
            lat["align"] += spent * 1e3
            t += spent
        now = time.perf_counter()
        lat["filter"] = (now - t) * 1e3
        lat["total"] = (now - t_start) * 1e3
        return self._output(frame.t_ns, lat, "frame", n)

    def _views(self, image: np.ndarray, height: float, attitude, yaws):
        """The frame's ground views: one at the attitude; with ``attitude_yaw_sigma_deg`` one per yaw offset
        ``yaw_step_deg`` apart within +/- 2 sigma of its yaw (roll and pitch kept); without an attitude, one level
        view per yaw hypothesis."""
        cfg = self.config
        if attitude is None or cfg.attitude_yaw_sigma_deg <= 0.0:
            return self._viewer.views(image, height_m=height, attitude=attitude, yaws=yaws)
        n = int(math.floor(2.0 * cfg.attitude_yaw_sigma_deg / cfg.yaw_step_deg))
        offsets = [0.0] + [s * k * cfg.yaw_step_deg for k in range(1, n + 1) for s in (-1.0, 1.0)]
        out = []
        for o in offsets:
            att = Attitude(attitude.roll, attitude.pitch, attitude.yaw + math.radians(o))
            out += self._viewer.views(image, height_m=height, attitude=att)
        return out

    def _unseen_tilt(self, t_ns: int) -> tuple[float, np.ndarray]:
        """:func:`turn_tilt` at the tracker's mean velocity and its yaw rate over the last second; (0, zeros) while
        the tracker holds no heading or ``turn_tilt`` is ``"level"``. Without an IMU the
        level camera does not see this tilt (a multicopter tilts into its acceleration, a fixed wing banks into its
        turns). The tracker's velocity differences are no measure of it: re-anchored or GPS-weighted velocities
        jump and implied tilts of 40 degrees."""
        none = (0.0, np.zeros(2))
        if self.config.turn_tilt == "level":
            return none
        est = self.tracker.estimate() if self.tracker.initialized else None
        if est is None or not (math.isfinite(est.yaw_rad) and est.yaw_sigma_rad < 0.3):
            self._yaw_hist.clear()
            return none
        h = self._yaw_hist
        h.append((int(t_ns), float(est.yaw_rad)))
        while len(h) > 2 and (t_ns - h[1][0]) * 1e-9 >= 1.0:
            h.popleft()
        dt = (t_ns - h[0][0]) * 1e-9
        if dt < 0.3:
            return none
        rate = ((h[-1][1] - h[0][1] + math.pi) % (2.0 * math.pi) - math.pi) / dt  # rad/s, + counter-clockwise
        st, w = self.tracker.particles()
        return turn_tilt((w @ st[:, 2], w @ st[:, 3]), rate)

    def _ground_velocity(self, t_ns: int, crops, imu: bool) -> None:
        """Ground odometry on this frame's view (one view only: with several heading hypotheses the reference is
        dropped). A measurement is the mean velocity since the reference view; with IMU velocity changes it is
        moved to now by half the change over the interval (linear acceleration), else its sigma grows by what the
        tracker's acceleration noise lets the velocity wander over it."""
        od = self._odometry
        if len(crops) != 1:
            od.reset()
            return
        c = crops[0]
        gv = od.measure(t_ns, c.image, c.mask, c.gsd, tag=(self._v_imu.copy(), imu))
        self.counts["odometry"], self.counts["odometry_refused"] = od.measured, od.refused
        if gv is None:
            return
        tc = self.tracker.config
        v_ref, imu_ref = gv.ref_tag
        if imu and imu_ref:
            vel = gv.velocity_xy + 0.5 * (self._v_imu - v_ref)
            extra = tc.imu_accel_sigma
        else:
            vel = gv.velocity_xy
            extra = tc.accel_sigma
        sigma = math.hypot(gv.sigma_mps, 0.03 * float(np.hypot(*vel)), extra * math.sqrt(gv.dt_s / 3.0))
        self.tracker.update_velocity(t_ns, vel, sigma)
        if imu and imu_ref:
            self._dv.update_velocity(vel, sigma)  # calibrates the IMU integration also without GPS

    def _check_scale(self, image: np.ndarray, view, attitude) -> None:
        """Height from the images while it is held or assumed (no fresh GPS altitude): align ``view`` (this
        frame's, at the current height) and views made at ``height * (1 -/+ scale_step)`` around the belief, fit a
        parabola to the three NCC peaks over the scale, and move :attr:`height_scale` by ``scale_gain`` of the
        implied correction (clipped to +/- one step)."""
        aligner = self._aligner_or_none()
        if aligner is None or not self.tracker.initialized:
            return
        est = self.tracker.estimate()
        if not (math.isfinite(est.sigma_m) and est.sigma_m < aligner.search_m / 2):
            return
        step = self.config.scale_step
        at = np.array([[est.x, est.y]])
        yaws = None if attitude is not None else [view.yaw_rad]
        lo_v, hi_v = (self._viewer.views(image, height_m=view.height_m * f, attitude=attitude, yaws=yaws)[0]
                      for f in (1.0 - step, 1.0 + step))
        res = [aligner.align(v, at)[0] for v in (lo_v, view, hi_v)]
        lo, mid, hi = (r.score for r in res)
        if mid < self.config.align_min_score or max(lo, hi) < self.config.align_min_score:
            return
        if res[1].peak_ratio < self.config.align_min_peak_ratio or res[1].sigma_m >= aligner.search_m:
            return  # no distinct place at the belief (water echoes, an edge of the search window)
        pairs = ((res[0], res[1]), (res[1], res[2]), (res[0], res[2]))
        spread = max(math.hypot(a.x - b.x, a.y - b.y) for a, b in pairs)
        if spread > _SCALE_AGREE_M:
            return  # the three land in different places: no structure to measure the scale on (water, a field)
        den = lo - 2.0 * mid + hi
        off = 0.5 * (lo - hi) / den if den < -1e-9 else (1.0 if hi > lo else -1.0)
        off = max(-1.0, min(1.0, off))
        self.height_scale *= 1.0 + self.config.scale_gain * off * step
        self.height_scale = max(0.5, min(2.0, self.height_scale))

    def _visual_fix(self, t_ns: int, views, scores: np.ndarray, ids: np.ndarray, scope, height_m: float,
                    tilt_sigma_deg: float, max_sigma_m: float, embeddings: np.ndarray, tilt_shift: np.ndarray):
        """Candidates of every view -> one VisualFix.

        With map imagery, the best ``align_top`` retrieval candidates of each view are fine-aligned; the aligned
        positions whose NCC reaches ``align_min_score``, whose peak is not on the search window's edge, stands out by
        ``align_min_peak_ratio`` and is no wider than ``max_sigma_m`` (metres) form the fix, scored by their NCC,
        with a sigma of the alignment's own plus what an attitude error of ``tilt_sigma_deg`` moves the nadir point
        at this height. Without an aligned position that passes, the retrieval candidates form the fix (tile
        centres, sigma half a stride, scored by embedding cosine). ``tilt_shift`` (metres, float64[2]): where a
        turn's predicted tilt moves the views' centre; every position is moved back by it.
        """
        from .likelihood import scope_log_ratio
        from .tracking import VisualFix

        cfg = self.config
        stride = float(self.package.tile_grid.stride_m)
        log_scope = scope_log_ratio(scope, self.package.bounds, stride / 2.0)
        att_sigma = height_m * math.tan(math.radians(tilt_sigma_deg))
        aligned: list[tuple] = []  # x, y, score, sigma, yaw, peak ratio, seed log scope ratio
        retrieved: list[tuple] = []  # x, y, score, sigma, yaw, view best, view spread, log scope ratio
        tried: list[tuple] = []  # every alignment: x, y, score, sigma, peak ratio, passed, seed log scope ratio
        aligner = self._aligner_or_none()
        est = self.tracker.estimate() if self.tracker.initialized else None
        belief = None
        if est is not None and math.isfinite(est.sigma_m) and aligner is not None and est.sigma_m < aligner.search_m:
            belief = np.array([[est.x, est.y]])  # tracking: the predicted place is the best candidate of all
        for v, s_row, i_row in zip(views, scores, ids):
            ok = (i_row >= 0) & np.isfinite(s_row)
            cand = self.package.tile_positions(i_row[ok]).astype(np.float64) - tilt_shift
            s_row = s_row[ok].astype(np.float64)
            best = float(s_row.max()) if len(s_row) else math.nan
            spread = best - float(s_row.min()) if len(s_row) else math.nan
            retrieved += [(float(c[0]), float(c[1]), float(s), stride / 2.0, v.yaw_rad, best, spread, log_scope)
                          for c, s in zip(cand, s_row)]
            top = min(cfg.align_top, len(cand)) if aligner is not None else 0
            todo = cand[:top]
            seeds = [log_scope] * len(todo)  # where each alignment started: a retrieved tile of this search ...
            if belief is not None:
                todo = np.concatenate([belief, todo]) if top else belief
                seeds = [0.0] + seeds  # ... or the belief (nothing searched)
            if len(todo):
                for r, seed in zip(aligner.align(v, todo + tilt_shift), seeds):
                    r = replace(r, x=r.x - tilt_shift[0], y=r.y - tilt_shift[1])
                    sigma = math.hypot(max(r.sigma_m, self.gsd), att_sigma)
                    passed = (r.score >= cfg.align_min_score and r.sigma_m < aligner.search_m
                              and r.sigma_m <= max_sigma_m and r.peak_ratio >= cfg.align_min_peak_ratio)
                    if passed and any(math.hypot(r.x - a[0], r.y - a[1]) < 1.0 for a in aligned):
                        continue  # several candidates converged on the same peak
                    if r.score > -1.0:  # -1: no map imagery under the window
                        tried.append((r.x, r.y, r.score, sigma, r.peak_ratio, float(passed), seed))
                    if passed:
                        aligned.append((r.x, r.y, r.score, sigma, r.yaw_rad, r.peak_ratio, seed))
        rows = aligned
        if not rows:
            # tile-level candidates only help a belief wider than they are precise (or none: start, LOST)
            wide = est is None or not math.isfinite(est.sigma_m) or est.sigma_m > cfg.retrieval_only_sigma_m
            rows = retrieved if wide else []
        self.last_candidates = FrameCandidates(
            int(t_ns), np.asarray(tried, np.float64).reshape(-1, 7),
            np.asarray([r[:4] + r[5:] for r in retrieved], np.float64).reshape(-1, 7), bool(rows) and not aligned,
            embeddings, scope)
        if not rows:
            return None, 0
        a = np.asarray(rows, np.float64)
        probs = p_in = None
        if self.likelihood is not None and (aligned or self.retrieval_calibrated):
            from .likelihood import aligned_features, retrieved_features

            if aligned:
                probs = self.likelihood.aligned.probability(aligned_features(a[:, 2], a[:, 5], a[:, 6]))
            else:
                probs = self.likelihood.retrieved.probability(retrieved_features(a[:, 2], a[:, 5], a[:, 6], a[:, 7]))
            p_in = self.likelihood.fix_probability(probs, a[:, :2], a[:, 3])
            if p_in < cfg.min_fix_prob:
                self.counts["frames_weak_fix"] += 1
                return None, 0
        fix = VisualFix(t_ns=int(t_ns), positions=a[:, :2], scores=a[:, 2], sigma_m=a[:, 3], yaws=a[:, 4],
                        yaw_sigma_rad=math.radians(2.0) if aligned else math.radians(10.0), scope=scope, probs=probs,
                        inlier_prob=p_in)
        return fix, len(rows)

    def _output(self, t_ns: int, latency_ms: dict, source: str, n: int) -> Output:
        from calibration.geometry import heading_from_yaw

        from .tracking import Status

        est = self.tracker.estimate()
        shift = self._unseen_shift_m
        if source == "frame" and shift > 0.0 and est.status is not Status.LOST:
            # no IMU, in a turn: the level camera's positions carry a bias the filter does not model; the report
            # says so (never OK) and widens its covariance by it
            status = Status.DEGRADED if est.status is Status.OK else est.status
            est = replace(est, cov_xy=est.cov_xy + np.eye(2) * shift**2, status=status, notes=est.notes + (
                f"no IMU: the bank of this turn is not seen (level camera assumed): positions may be ~{shift:.0f} m "
                "off",))
        if source == "frame" and self._level_tilt_m > 0.0 and est.status is not Status.LOST:
            # no IMU: the unseen tilt (unknown_tilt_sigma_deg) is the vehicle's attitude, the same error in every
            # fix for as long as it lasts, which averaging fixes cannot remove: a consider term of the report (the
            # filter treats the fixes as independent; without it the 95 % ellipse held 44-95 % of the errors)
            est = replace(est, cov_xy=est.cov_xy + np.eye(2) * self._level_tilt_m**2)
        la, lo = self.frame.to_wgs84(est.x, est.y) if self.frame is not None else (math.nan, math.nan)
        heading = math.degrees(heading_from_yaw(float(est.yaw_rad))) % 360.0
        full = {s: float(latency_ms.get(s, 0.0)) for s in STAGES}
        return Output(est, float(la), float(lo), heading, full, source, n)
