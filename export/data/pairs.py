"""Rendered training pairs: (rectified render of a simulated camera frame, the map tile at that place).

For sample ``index`` of a :class:`RenderedPairs` (deterministic by ``(seed, index)``):

1. a pose is drawn: position uniform in the allowed area (so that the tile's circumscribed circle stays inside it
   and the tile holds at least ``min_tile_valid_fraction`` valid imagery), height above ground
   ``U(altitude_m)``, compass heading ``U(heading_deg)``, roll and pitch ``U(-max_tilt_deg, max_tilt_deg)``;
2. the camera frame is rendered from the orthophoto with :func:`calibration.view.render` (at ``frame_scale`` of the
   camera's resolution) and photometrically changed (:class:`~export.data.augment.PhotometricAugment`);
3. the frame is rectified with :func:`calibration.view.rectify` at the encoder's ground resolution, as onboard,
   into a ``input_width x input_height`` crop centred on the nadir point, with the ASSUMED heading: the true one
   plus ``N(0, heading_noise_deg)`` noise, or a uniformly random one when ``heading_dropped`` (rotation-invariance
   training). Samples whose crop has less than ``min_valid_fraction`` valid pixels are redrawn (``max_tries``);
4. the positive is the north-up map tile centred on the true position (:func:`maps.tiling.cut_tiles` geometry),
   or up to ``positive_jitter_m`` from it per axis (the nearest tile of a map grid is up to half a stride away);
   the semi-positives are the tiles of the map's :class:`~maps.tiling.TileGrid` within ``semi_positive_radius_m``
   of the true position (VIGOR-style).

Heading label: rectifying with a heading error rotates the ground image about the nadir point. ``rotation_rad`` is
the counter-clockwise angle (on the north-up image, radians in [0, 2 pi)) by which the query content is rotated
relative to the tile: a point at offset p from the nadir point appears at ``Rz(rotation_rad) @ p``. Rotating the
query by ``-rotation_rad`` (``cv2.getRotationMatrix2D(centre, -degrees(rotation_rad), 1)``) aligns it with the
tile. ``rotation_rad = true_heading_rad - assumed_heading_rad`` (compass headings, clockwise from north).

Positions are metres in the orthophoto's :class:`maps.geodesy.LocalFrame`; images RGB uint8 ``[h, w, 3]``.
torch is imported only by :meth:`RenderedPairs.torch_dataset`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from calibration.camera import CameraModel
from calibration.geometry import NADIR_MOUNT, Attitude, Mount, yaw_from_heading
from maps.contract import EncoderContract
from maps.ortho import Orthophoto
from maps.tiling import TileGrid

from . import DataError
from .augment import FieldAugment, PhotometricAugment

__all__ = ["PairConfig", "PairSample", "PairBatch", "PairSamplingError", "PoseDraw", "RenderedPairs", "evaluation_pairs",
           "masked_ncc"]

_TWO_PI = 2.0 * math.pi


class PairSamplingError(DataError):
    """No valid pair could be drawn (area too small, too little valid imagery, a pose range the camera cannot see)."""


# ---------------------------------------------------------------------------------------------------- config
def _range(name: str, value, lo: float, hi: float, unit: str) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise DataError(f"{name} must be a (low, high) pair of numbers ({unit}), got {value!r}") from None
    if not (math.isfinite(a) and math.isfinite(b) and lo <= a <= b <= hi):
        raise DataError(f"{name} must satisfy {lo} <= low <= high <= {hi} ({unit}), got {value!r}")
    return a, b


@dataclass(frozen=True)
class PairConfig:
    """How pairs are drawn (see the module docstring).

    Attributes:
        altitude_m: (low, high) height above ground, metres.
        heading_deg: (low, high) compass heading of the vehicle, degrees clockwise from north.
        max_tilt_deg: roll and pitch are each ``U(-max_tilt_deg, max_tilt_deg)``, degrees.
        heading_noise_deg: standard deviation of the assumed heading's error when the heading is known, degrees.
        heading_dropped: rectify with a uniformly random heading (the label says the rotation).
        frame_scale: the camera is rendered at this fraction of its resolution (0.5: 320x240 for the default
            640x480 camera, ~0.43 m/px at 100 m, about the encoder's 0.4 m/px; faster than full resolution).
        min_valid_fraction: least fraction of valid query-crop pixels; fewer: the pose is redrawn.
        min_tile_valid_fraction: least fraction of valid orthophoto pixels in the positive tile.
        max_tries: poses drawn per sample before :class:`PairSamplingError`.
        semi_positive_radius_m: tiles of the grid whose centre is within this distance of the true position are
            semi-positives; None: half the tile side.
        max_semi_positives: semi-positive ids per sample in the fixed-size (torch / saved) form, nearest first,
            padded with -1.
        photometric: the photometric augmentation of the rendered frame.
        tile_stride_m: stride of the semi-positive tile grid, metres; None: the contract's default (tile / 4).
        positive_jitter_m: the positive tile is centred this far at most (uniform per axis, metres) from the true
            position, as the map tile nearest a vehicle is (up to half the grid stride away); 0: exactly centred.
        map_field: :class:`~export.data.augment.FieldAugment` of the positive tile (a map made from other imagery:
            satellite resampling, season, haze, false colour...); off by default.
        query_field: :class:`~export.data.augment.FieldAugment` of the rectified query; off by default.
    """

    altitude_m: tuple[float, float] = (50.0, 150.0)
    heading_deg: tuple[float, float] = (0.0, 360.0)
    max_tilt_deg: float = 15.0
    heading_noise_deg: float = 0.0
    heading_dropped: bool = False
    frame_scale: float = 0.5
    min_valid_fraction: float = 0.8
    min_tile_valid_fraction: float = 0.9
    max_tries: int = 20
    semi_positive_radius_m: float | None = None
    max_semi_positives: int = 16
    photometric: PhotometricAugment = PhotometricAugment()
    tile_stride_m: float | None = None
    positive_jitter_m: float = 0.0
    map_field: FieldAugment = FieldAugment()
    query_field: FieldAugment = FieldAugment()

    def __post_init__(self) -> None:
        object.__setattr__(self, "altitude_m", _range("altitude_m", self.altitude_m, 1e-3, 1e5, "metres"))
        if self.altitude_m[0] <= 0:
            raise DataError(f"altitude_m must be > 0 metres, got {self.altitude_m}")
        object.__setattr__(self, "heading_deg", _range("heading_deg", self.heading_deg, -360.0, 720.0, "degrees"))
        for name, lo, hi in (("max_tilt_deg", 0.0, 60.0), ("heading_noise_deg", 0.0, 180.0),
                             ("positive_jitter_m", 0.0, 1e3),
                             ("frame_scale", 1e-3, 4.0), ("min_valid_fraction", 0.0, 1.0),
                             ("min_tile_valid_fraction", 0.0, 1.0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and lo <= v <= hi):
                raise DataError(f"{name} must be a number in [{lo}, {hi}], got {v!r}")
            object.__setattr__(self, name, float(v))
        if not isinstance(self.heading_dropped, bool):
            raise DataError(f"heading_dropped must be true or false, got {self.heading_dropped!r}")
        for name in ("max_tries", "max_semi_positives"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise DataError(f"{name} must be a positive integer, got {v!r}")
        for name in ("semi_positive_radius_m", "tile_stride_m"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0)):
                raise DataError(f"{name} must be a number > 0 (metres) or None, got {v!r}")
        if not isinstance(self.photometric, PhotometricAugment):
            raise DataError(f"photometric must be a PhotometricAugment, got {type(self.photometric).__name__}")
        for name in ("map_field", "query_field"):
            if not isinstance(getattr(self, name), FieldAugment):
                raise DataError(f"{name} must be a FieldAugment, got {type(getattr(self, name)).__name__}")

    @classmethod
    def from_dict(cls, d: dict) -> "PairConfig":
        """Strict construction from a mapping (YAML): unknown keys are rejected; ``photometric`` may be a mapping."""
        from maps.config import strict_from_dict

        if isinstance(d, dict) and isinstance(d.get("photometric"), dict):
            d = {**d, "photometric": PhotometricAugment.from_dict(d["photometric"])}
        if isinstance(d, dict):
            d = {**d, **{k: FieldAugment.from_dict(d[k]) for k in ("map_field", "query_field") if isinstance(d.get(k), dict)}}
        return strict_from_dict(cls, d, "pair config", error=DataError)

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["altitude_m"], out["heading_deg"] = list(self.altitude_m), list(self.heading_deg)
        out["photometric"] = self.photometric.to_dict()
        out["map_field"], out["query_field"] = self.map_field.to_dict(), self.query_field.to_dict()
        return out


# ---------------------------------------------------------------------------------------------------- samples
@dataclass(frozen=True, eq=False)
class PairSample:
    """One training pair.

    Attributes:
        index: the sample's index in its dataset.
        query: uint8[h, w, 3] RGB, the rectified camera crop (h, w = the contract's input size) at the contract's
            ground resolution, centred on the nadir point, rotated by ``rotation_rad``; 0 where not valid.
        query_mask: bool[h, w], True where the camera saw valid imagery.
        positive: uint8[h, w, 3] RGB, the north-up map tile centred on the true position.
        positive_mask: bool[h, w], True where the orthophoto holds imagery.
        position: float64[2], true (x east, y north) of the vehicle's nadir point, local metres.
        altitude_m, roll_rad, pitch_rad: the pose's height above ground (metres) and REP-103 roll/pitch (radians).
        true_heading_rad, assumed_heading_rad: compass headings (radians clockwise from north, [0, 2 pi)).
        rotation_rad: the query's counter-clockwise rotation relative to the tile, [0, 2 pi).
        semi_positive_ids: int64[k], ids of grid tiles (rows of :attr:`RenderedPairs.tile_centres`) within the
            radius, nearest first.
        semi_positive_positions: float64[k, 2] their centres (local metres).
        semi_positive_distances_m: float64[k] their distances to ``position`` (metres).
        tries: poses drawn until this one was accepted.
    """

    index: int
    query: np.ndarray
    query_mask: np.ndarray
    positive: np.ndarray
    positive_mask: np.ndarray
    position: np.ndarray
    altitude_m: float
    roll_rad: float
    pitch_rad: float
    true_heading_rad: float
    assumed_heading_rad: float
    rotation_rad: float
    semi_positive_ids: np.ndarray
    semi_positive_positions: np.ndarray
    semi_positive_distances_m: np.ndarray
    tries: int

    @property
    def valid_fraction(self) -> float:
        return float(self.query_mask.mean())


@dataclass(frozen=True, eq=False)
class PoseDraw:
    """A candidate pose of a sample (:meth:`RenderedPairs.poses`), drawn before anything is rendered.

    Attributes:
        index: the sample's index. tries: poses drawn for it so far, this one included.
        position: float64[2] true (x east, y north) of the nadir point, local metres.
        altitude_m: height above ground, metres. roll_rad, pitch_rad: REP-103 roll and pitch, radians.
        heading_rad: true compass heading, radians clockwise from north, [0, 2 pi).
        rotation_rad: true minus assumed heading, radians (not wrapped; the sample's label wraps it).
        aug_seed: seed of the photometric augmentation's generator (``numpy.random.default_rng(aug_seed)``).
        tile_centre: float64[2] centre of the positive tile (``position`` plus the jitter), local metres.
        positive_mask: bool[s, s] the positive tile's valid pixels.
    """

    index: int
    tries: int
    position: np.ndarray
    altitude_m: float
    roll_rad: float
    pitch_rad: float
    heading_rad: float
    rotation_rad: float
    aug_seed: int
    tile_centre: np.ndarray
    positive_mask: np.ndarray

    @property
    def attitude(self) -> Attitude:
        """The true attitude (body -> world ENU)."""
        return Attitude(self.roll_rad, self.pitch_rad, yaw_from_heading(self.heading_rad))

    @property
    def assumed_attitude(self) -> Attitude:
        """The attitude the query is rectified with: the yaw turned by ``rotation_rad`` (the heading error)."""
        a = self.attitude
        return Attitude(a.roll, a.pitch, a.yaw + float(self.rotation_rad))


_BATCH_ARRAYS = ("index", "query", "query_mask", "positive", "positive_mask", "position", "altitude_m", "roll_rad",
                 "pitch_rad", "true_heading_rad", "assumed_heading_rad", "rotation_rad", "semi_positive_ids")


@dataclass(frozen=True, eq=False)
class PairBatch:
    """Stacked samples, e.g. a fixed evaluation set. Shapes for n samples of h x w pixels, k semi-positive slots:
    index int64[n]; query, positive uint8[n, h, w, 3]; query_mask, positive_mask bool[n, h, w]; position
    float64[n, 2]; altitude_m, roll_rad, pitch_rad, true_heading_rad, assumed_heading_rad, rotation_rad float64[n];
    semi_positive_ids int64[n, k] (-1 = none)."""

    index: np.ndarray
    query: np.ndarray
    query_mask: np.ndarray
    positive: np.ndarray
    positive_mask: np.ndarray
    position: np.ndarray
    altitude_m: np.ndarray
    roll_rad: np.ndarray
    pitch_rad: np.ndarray
    true_heading_rad: np.ndarray
    assumed_heading_rad: np.ndarray
    rotation_rad: np.ndarray
    semi_positive_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def save(self, path) -> Path:
        """Write to a ``.npz`` (no pickled objects)."""
        path = Path(path)
        np.savez_compressed(path, **{k: getattr(self, k) for k in _BATCH_ARRAYS})
        return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")

    @classmethod
    def load(cls, path) -> "PairBatch":
        """Read what :meth:`save` wrote; a file lacking arrays raises :class:`DataError`."""
        try:
            with np.load(Path(path), allow_pickle=False) as z:
                missing = sorted(set(_BATCH_ARRAYS) - set(z.files))
                if missing:
                    raise DataError(f"{path} is not a pair batch: it lacks arrays {missing}; write it with PairBatch.save")
                return cls(**{k: z[k] for k in _BATCH_ARRAYS})
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read pair batch {path}: {exc}") from exc


def masked_ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Normalised cross-correlation of the grey levels (mean of RGB) of two images [h, w(, 3)] over ``mask``
    (bool[h, w], default all). In [-1, 1]; 0 when either is constant there."""
    ga = a.astype(np.float64).mean(axis=2) if a.ndim == 3 else a.astype(np.float64)
    gb = b.astype(np.float64).mean(axis=2) if b.ndim == 3 else b.astype(np.float64)
    m = np.ones(ga.shape, bool) if mask is None else np.asarray(mask, bool)
    if m.sum() < 2:
        return 0.0
    x, y = ga[m] - ga[m].mean(), gb[m] - gb[m].mean()
    d = math.sqrt(float((x * x).sum()) * float((y * y).sum()))
    return float((x * y).sum() / d) if d > 0 else 0.0


# ---------------------------------------------------------------------------------------------------- dataset
def _check_areas(areas, ortho: Orthophoto) -> tuple[tuple[float, float, float, float], ...]:
    if areas is None:
        return (tuple(float(v) for v in ortho.bounds),)  # type: ignore[return-value]
    out = []
    for a in areas:
        try:
            x0, y0, x1, y1 = (float(v) for v in a)
        except (TypeError, ValueError):
            raise DataError(f"areas must be (x_min, y_min, x_max, y_max) boxes in local metres, got {a!r}") from None
        if not (all(map(math.isfinite, (x0, y0, x1, y1))) and x1 > x0 and y1 > y0):
            raise DataError(f"an area box must be finite with x_max > x_min and y_max > y_min, got {a!r}")
        out.append((x0, y0, x1, y1))
    if not out:
        raise DataError("areas is empty; pass None for the whole orthophoto or at least one box")
    return tuple(out)


class RenderedPairs:
    """A map-style dataset of rendered pairs over one orthophoto (``len`` = ``length``; item ``i`` is a
    :class:`PairSample`, deterministic by ``(seed, i)``). Works as a torch ``Dataset`` as is (DataLoader only
    needs ``__len__``/``__getitem__``); :meth:`torch_dataset` gives tensors.

    Args:
        ortho: the orthophoto to render from (any resolution; tiles are resampled once to the contract's).
        contract: the encoder's contract (input size, ground resolution).
        length: number of samples.
        seed: base seed (use different seeds for training and a fixed evaluation set).
        config: :class:`PairConfig`.
        camera: intrinsics (default ``calibration.camera_io.default_camera()``), scaled by ``config.frame_scale``.
        mount: camera extrinsics (default nadir).
        areas: boxes (x_min, y_min, x_max, y_max) in the orthophoto's local metres where samples may lie (whole
            tiles inside), e.g. the training blocks of :func:`export.data.splits.block_split`; None: everywhere.
    Raises:
        DataError / PairSamplingError: bad arguments, a non-square contract, an area too small for one tile.
    """

    def __init__(
        self,
        ortho: Orthophoto,
        contract: EncoderContract,
        length: int,
        seed: int = 0,
        config: PairConfig | None = None,
        *,
        camera: CameraModel | None = None,
        mount: Mount = NADIR_MOUNT,
        areas: Sequence[Sequence[float]] | None = None,
    ) -> None:
        from maps.tiling import plan_tiles, resample_to_gsd

        if not isinstance(ortho, Orthophoto):
            raise DataError(f"ortho must be a maps.ortho.Orthophoto (maps.geotiff.load_orthophoto), got {type(ortho).__name__}")
        if not isinstance(contract, EncoderContract):
            raise DataError(f"contract must be a maps.contract.EncoderContract, got {type(contract).__name__}")
        if contract.input_width != contract.input_height:
            raise DataError(f"map tiles are square but the contract's input is {contract.input_width}x"
                            f"{contract.input_height} px; use an encoder with square inputs")
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 0:
            raise DataError(f"length must be an integer >= 0, got {length!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise DataError(f"seed must be an integer >= 0, got {seed!r}")
        self.config = PairConfig() if config is None else config
        if not isinstance(self.config, PairConfig):
            raise DataError(f"config must be a PairConfig, got {type(self.config).__name__}")
        if camera is None:
            from calibration.camera_io import default_camera

            camera = default_camera()
        if not isinstance(camera, CameraModel):
            raise DataError(f"camera must be a calibration.camera.CameraModel, got {type(camera).__name__}")
        if not isinstance(mount, Mount):
            raise DataError(f"mount must be a calibration.geometry.Mount, got {type(mount).__name__}")
        self.ortho = ortho
        self.contract = contract
        self.length = int(length)
        self.seed = int(seed)
        self.mount = mount
        self.camera = camera if self.config.frame_scale == 1.0 else camera.scaled(self.config.frame_scale)
        self.grid = TileGrid.from_contract(contract, stride_m=self.config.tile_stride_m)
        self.size_px = self.grid.size_px
        self.tiles = resample_to_gsd(ortho, self.grid.gsd)  # the aerial branch's raster, resampled once
        self.areas = _check_areas(areas, ortho)
        half = self.grid.tile_size_m / 2.0
        self._reach = half * math.sqrt(2.0)  # a rotated crop's corners
        self._boxes = [(x0 + self._reach, y0 + self._reach, x1 - self._reach, y1 - self._reach)
                       for x0, y0, x1, y1 in self.areas]
        self._boxes = [b for b in self._boxes if b[2] > b[0] and b[3] > b[1]]
        if not self._boxes:
            raise PairSamplingError(
                f"no area is large enough for a {self.grid.tile_size_m:g} m tile turned any way (each box needs "
                f"sides > {2 * self._reach:.1f} m); got {list(self.areas)}: use larger blocks or a smaller tile")
        w = np.array([(b[2] - b[0]) * (b[3] - b[1]) for b in self._boxes])
        self._box_p = w / w.sum()
        centres = plan_tiles(ortho, self.grid, min_valid_fraction=max(self.config.min_tile_valid_fraction, 1e-6))
        inside = np.zeros(len(centres), bool)
        for x0, y0, x1, y1 in self.areas:
            inside |= ((centres[:, 0] - half >= x0 - 1e-9) & (centres[:, 0] + half <= x1 + 1e-9)
                       & (centres[:, 1] - half >= y0 - 1e-9) & (centres[:, 1] + half <= y1 + 1e-9))
        self.tile_centres: np.ndarray = centres[inside]
        """float64[m, 2] centres of the grid tiles (semi-positive candidates) inside the areas, local metres."""
        r = self.config.semi_positive_radius_m
        self.semi_positive_radius_m = half if r is None else float(r)

    # ------------------------------------------------------------------------------------------------ protocol
    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> PairSample:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise DataError(f"index must be an integer, got {index!r}")
        i = int(index)
        if i < 0:
            i += self.length
        if not 0 <= i < self.length:
            raise IndexError(f"index {index} out of range for {self.length} pairs")
        return self.sample(i)

    # ------------------------------------------------------------------------------------------------ pieces
    def tile_window(self, position) -> tuple[int, int]:
        """(column, row) of the top-left pixel of the north-up map tile centred on ``position`` (x, y local metres)
        in :attr:`tiles` (may lie outside it); the tile is ``size_px`` square. Same rule as
        :func:`maps.tiling.cut_tiles`."""
        x, y = (float(v) for v in position)
        s, src = self.size_px, self.tiles
        return int(np.round((x - src.x_min) / src.gsd - s / 2.0)), int(np.round((src.y_max - y) / src.gsd - s / 2.0))

    def tile(self, position) -> tuple[np.ndarray, np.ndarray]:
        """The north-up map tile centred on ``position`` (x, y local metres): (uint8[s, s, 3], bool[s, s] mask);
        outside the orthophoto is black and invalid. Same crop rule as :func:`maps.tiling.cut_tiles`."""
        s, src = self.size_px, self.tiles
        a, b = self.tile_window(position)
        img = np.zeros((s, s, 3), np.uint8)
        msk = np.zeros((s, s), bool)
        sa, sb, ea, eb = max(a, 0), max(b, 0), min(a + s, src.width), min(b + s, src.height)
        if ea > sa and eb > sb:
            img[sb - b:eb - b, sa - a:ea - a] = src.image[sb:eb, sa:ea]
            msk[sb - b:eb - b, sa - a:ea - a] = src.mask[sb:eb, sa:ea]
        return img, msk

    def tile_mask(self, position) -> np.ndarray:
        """bool[s, s]: the mask of :meth:`tile` alone."""
        s, src = self.size_px, self.tiles
        a, b = self.tile_window(position)
        msk = np.zeros((s, s), bool)
        sa, sb, ea, eb = max(a, 0), max(b, 0), min(a + s, src.width), min(b + s, src.height)
        if ea > sa and eb > sb:
            msk[sb - b:eb - b, sa - a:ea - a] = src.mask[sb:eb, sa:ea]
        return msk

    def semi_positives(self, position) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Grid tiles within the radius of ``position``: (ids int64[k], centres float64[k, 2], distances
        float64[k] metres), nearest first."""
        p = np.asarray(position, dtype=np.float64).reshape(2)
        if len(self.tile_centres) == 0:
            return np.zeros(0, np.int64), np.zeros((0, 2)), np.zeros(0)
        d = np.hypot(self.tile_centres[:, 0] - p[0], self.tile_centres[:, 1] - p[1])
        ids = np.flatnonzero(d <= self.semi_positive_radius_m)
        ids = ids[np.argsort(d[ids], kind="stable")]
        return ids.astype(np.int64), self.tile_centres[ids].copy(), d[ids]

    def render_query(self, position, altitude_m: float, attitude: Attitude, rotation_rad: float,
                     rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Render the frame at a pose, change it photometrically (when ``rng`` is given), rectify it with the
        heading turned by ``rotation_rad`` (see the module docstring) and crop the input size around the nadir
        point. Returns (uint8[s, s, 3] RGB, bool[s, s] valid mask)."""
        from calibration.view import rectify, render

        frame, fmask = render(self.ortho, self.camera, tuple(position), altitude_m, attitude, mount=self.mount)
        if rng is not None:
            frame = self.config.photometric.apply(frame, rng)
        rgba = np.empty(frame.shape[:2] + (4,), np.uint8)
        rgba[:, :, :3] = frame
        rgba[:, :, 3] = fmask.astype(np.uint8) * 255
        # heading error: the assumed yaw is the true one + rotation (yaw is counter-clockwise, heading clockwise)
        assumed = Attitude(attitude.roll, attitude.pitch, attitude.yaw + float(rotation_rad))
        view = rectify(rgba, self.camera, assumed, altitude_m, self.grid.gsd, mount=self.mount,
                       size_px=(self.size_px, self.size_px))
        mask = view.mask & (view.image[:, :, 3] >= 250)
        query = np.ascontiguousarray(view.image[:, :, :3])
        query[~mask] = 0
        return query, mask

    def _inside(self, pos: np.ndarray) -> bool:
        return any(b[0] <= pos[0] <= b[2] and b[1] <= pos[1] <= b[3] for b in self._boxes)

    def poses(self, index: int, *, around=None, radius_m: float = 0.0, avoid=None,
              min_separation_m: float = 0.0) -> Iterator[PoseDraw]:
        """The candidate poses of sample ``index``, in the order :meth:`sample` tries them: a generator of
        :class:`PoseDraw` s that passed the checks made without rendering (inside the area, apart from ``avoid``, a
        positive tile with enough valid imagery); it ends after ``max_tries`` tries. :meth:`sample` renders each
        until one gives a query crop with ``min_valid_fraction`` valid pixels; a batched renderer
        (``export.data.gpu_pairs``) takes the same candidates. Arguments as :meth:`sample`."""
        cfg = self.config
        rng = np.random.default_rng([self.seed, int(index)])
        avoid_xy = np.zeros((0, 2)) if avoid is None else np.asarray(avoid, dtype=np.float64).reshape(-1, 2)
        for tries in range(1, cfg.max_tries + 1):
            if around is None:
                b = self._boxes[int(rng.choice(len(self._boxes), p=self._box_p))]
                pos = np.array([rng.uniform(b[0], b[2]), rng.uniform(b[1], b[3])])
            else:
                r = float(radius_m) * math.sqrt(float(rng.uniform()))
                a = float(rng.uniform(0.0, _TWO_PI))
                pos = np.asarray(around, dtype=np.float64).reshape(2) + r * np.array([math.cos(a), math.sin(a)])
                if not self._inside(pos):
                    continue
            if len(avoid_xy) and np.min(np.hypot(*(avoid_xy - pos).T)) < min_separation_m:
                continue
            alt = float(rng.uniform(*cfg.altitude_m))
            heading = math.radians(float(rng.uniform(*cfg.heading_deg))) % _TWO_PI
            tilt = math.radians(cfg.max_tilt_deg)
            roll, pitch = (float(v) for v in rng.uniform(-tilt, tilt, 2))
            if cfg.heading_dropped:
                rot = float(rng.uniform(0.0, _TWO_PI))
            else:
                rot = float(rng.standard_normal()) * math.radians(cfg.heading_noise_deg)
            aug_seed = int(rng.integers(0, 2**63 - 1))
            jitter = cfg.positive_jitter_m
            centre = pos + rng.uniform(-jitter, jitter, 2) if jitter > 0 else pos
            pmask = self.tile_mask(centre)
            if pmask.mean() < cfg.min_tile_valid_fraction:
                continue
            yield PoseDraw(index=int(index), tries=tries, position=pos, altitude_m=alt, roll_rad=roll, pitch_rad=pitch,
                           heading_rad=heading, rotation_rad=rot, aug_seed=aug_seed, tile_centre=centre,
                           positive_mask=pmask)

    def sampling_error(self, index: int) -> PairSamplingError:
        """The error of a sample whose ``max_tries`` candidate poses were all refused."""
        cfg = self.config
        return PairSamplingError(
            f"pair {index} (seed {self.seed}): no pose in {cfg.max_tries} tries gave a query crop with >= "
            f"{cfg.min_valid_fraction:.0%} valid pixels and a tile with >= {cfg.min_tile_valid_fraction:.0%} "
            f"valid imagery; raise altitude_m (now {cfg.altitude_m}), lower max_tilt_deg or min_valid_fraction, "
            "or use areas with more valid imagery")

    def finish(self, draw: PoseDraw, query: np.ndarray, query_mask: np.ndarray, positive: np.ndarray,
               positive_mask: np.ndarray, *, field: bool = True) -> PairSample:
        """The :class:`PairSample` of an accepted candidate and its rendered images: the field augmentation (on its
        own random stream; ``field=False``: the images are taken as they are) and the semi-positives applied here."""
        cfg = self.config
        index = draw.index
        if field and not (cfg.map_field.is_off and cfg.query_field.is_off):  # its own stream: the other draws stay
            frng = np.random.default_rng([self.seed, int(index), 0xF1E1D])
            positive = cfg.map_field.apply(positive, frng, self.grid.gsd, positive_mask)
            query = cfg.query_field.apply(query, frng, self.grid.gsd, query_mask)
        pos, heading, rot = draw.position, draw.heading_rad, draw.rotation_rad
        ids, cents, dists = self.semi_positives(pos)
        assumed = (heading - rot) % _TWO_PI
        return PairSample(
            index=int(index), query=query, query_mask=query_mask, positive=positive, positive_mask=positive_mask,
            position=pos, altitude_m=draw.altitude_m, roll_rad=draw.roll_rad, pitch_rad=draw.pitch_rad,
            true_heading_rad=heading, assumed_heading_rad=assumed, rotation_rad=rot % _TWO_PI,
            semi_positive_ids=ids, semi_positive_positions=cents, semi_positive_distances_m=dists, tries=draw.tries,
        )

    def sample(self, index: int, *, around=None, radius_m: float = 0.0, avoid=None,
               min_separation_m: float = 0.0) -> PairSample:
        """Sample ``index`` (see the module docstring); raises :class:`PairSamplingError` after ``max_tries``.

        Args:
            index: the sample's index (with the seed, it fixes every random choice).
            around: (x, y) local metres: draw the position uniformly in the disc of ``radius_m`` around this point
                (inside the allowed area) instead of anywhere; a neighbour of an earlier sample, so that the
                in-batch negatives are hard, nearby places. None: anywhere.
            avoid: float[k, 2] positions the new one must stay at least ``min_separation_m`` metres from (the other
                places of the group: they are negatives, so must not be positives of each other).
        """
        for draw in self.poses(index, around=around, radius_m=radius_m, avoid=avoid, min_separation_m=min_separation_m):
            query, qmask = self.render_query(draw.position, draw.altitude_m, draw.attitude, draw.rotation_rad,
                                             np.random.default_rng(draw.aug_seed))
            if float(qmask.mean()) >= self.config.min_valid_fraction:
                positive, pmask = self.tile(draw.tile_centre)
                return self.finish(draw, query, qmask, positive, pmask)
        raise self.sampling_error(index)

    # ------------------------------------------------------------------------------------------------ outputs
    def materialize(self, indices: Sequence[int] | None = None) -> PairBatch:
        """Stack samples (default all) into a :class:`PairBatch` (e.g. a fixed evaluation set; ``.save`` it)."""
        idx = list(range(self.length)) if indices is None else [int(i) for i in indices]
        samples = [self[i] for i in idx]
        s, k = self.size_px, self.config.max_semi_positives

        def stack(name, dtype, shape):
            return np.stack([getattr(p, name) for p in samples]).astype(dtype) if samples else np.zeros((0,) + shape, dtype)

        semi = np.full((len(samples), k), -1, np.int64)
        for j, p in enumerate(samples):
            ids = p.semi_positive_ids[:k]
            semi[j, : len(ids)] = ids
        return PairBatch(
            index=np.array(idx, np.int64), query=stack("query", np.uint8, (s, s, 3)),
            query_mask=stack("query_mask", bool, (s, s)), positive=stack("positive", np.uint8, (s, s, 3)),
            positive_mask=stack("positive_mask", bool, (s, s)), position=stack("position", np.float64, (2,)),
            **{n: np.array([getattr(p, n) for p in samples], np.float64)
               for n in ("altitude_m", "roll_rad", "pitch_rad", "true_heading_rad", "assumed_heading_rad", "rotation_rad")},
            semi_positive_ids=semi,
        )

    def torch_dataset(self, normalize: bool = False):
        """A ``torch.utils.data.Dataset`` over these pairs returning dicts of tensors:

        ``query``, ``positive``: uint8[3, h, w] RGB, or with ``normalize`` float32[c, h, w] as the contract asks
        (pixel / 255 in its colour order, minus mean, over std); ``query_mask``, ``positive_mask``: bool[h, w];
        ``position``: float64[2]; ``rotation_rad``, ``altitude_m``: float32[]; ``semi_positive_ids``: int64[k]
        (-1 padded); ``index``: int64[].
        """
        import torch
        from torch.utils.data import Dataset

        pairs, contract, k = self, self.contract, self.config.max_semi_positives
        mean = torch.tensor(contract.mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(contract.std, dtype=torch.float32).view(-1, 1, 1)

        def image(a: np.ndarray):
            t = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).contiguous()
            if not normalize:
                return t
            t = t.float() / 255.0
            if contract.colour_order == "BGR":
                t = t.flip(0)
            elif contract.colour_order == "GRAY":
                t = (0.299 * t[0] + 0.587 * t[1] + 0.114 * t[2]).unsqueeze(0)
            return (t - mean) / std

        class _TorchPairs(Dataset):
            def __len__(self) -> int:
                return len(pairs)

            def __getitem__(self, i):
                p = pairs[i]
                semi = np.full(k, -1, np.int64)
                semi[: min(k, len(p.semi_positive_ids))] = p.semi_positive_ids[:k]
                return {
                    "query": image(p.query), "query_mask": torch.from_numpy(p.query_mask.copy()),
                    "positive": image(p.positive), "positive_mask": torch.from_numpy(p.positive_mask.copy()),
                    "position": torch.from_numpy(p.position.copy()),
                    "rotation_rad": torch.tensor(p.rotation_rad, dtype=torch.float32),
                    "altitude_m": torch.tensor(p.altitude_m, dtype=torch.float32),
                    "semi_positive_ids": torch.from_numpy(semi), "index": torch.tensor(p.index, dtype=torch.int64),
                }

        return _TorchPairs()


def evaluation_pairs(ortho: Orthophoto, contract: EncoderContract, count: int, seed: int = 1_000_003,
                     config: PairConfig | None = None, **kwargs) -> PairBatch:
    """A fixed evaluation set: ``count`` pairs drawn with ``seed`` and stacked (:class:`PairBatch`); keyword
    arguments go to :class:`RenderedPairs` (``camera``, ``mount``, ``areas``: pass the held-out areas)."""
    return RenderedPairs(ortho, contract, count, seed, config, **kwargs).materialize()
