"""Training pairs rendered on a torch device: :class:`export.data.pairs.RenderedPairs`, batched, with ``grid_sample``.

The same samples as :class:`RenderedPairs` (the same seeds give the same poses, augmentation draws and labels);
only the resampling runs on the device. For every candidate pose (:meth:`RenderedPairs.poses`: the pose draws and
the checks made without rendering, one implementation) the host computes the geometry in its one implementation
and the device does the pixel work, for the whole batch at once:

1. host, per candidate (a thread pool): ``calibration.view.render_map`` (the orthophoto pixel every camera pixel
   sees, the mip level, the crop window), ``mip_plan``; ``rectify_map`` + ``mip_levels`` + ``mip_plan`` of the
   rectification with the assumed heading; the photometric draw (:meth:`PhotometricAugment.draw`, the CPU's
   random stream). The maps go up in one copy per batch;
2. device: the camera frame, from the orthophoto uploaded once (float32 DN): per candidate, the window's crop, its
   mip pyramid and ``grid_sample`` per level (:mod:`calibration.torch_remap`; the pyramid is the crop's, as on the
   CPU, so pixels agree up to float rounding), the orthophoto's no-data mask sampled the same way (float);
3. device: the photometric change for the batch (blur with each sample's Gaussian kernel, OpenCV's size and
   BORDER_REFLECT; gamma, contrast about the frame mean, exposure and white-balance gains, noise, rounding), the
   CPU's float32 operations in the CPU's order. Differences: the sensor noise comes from torch's generator seeded
   with the CPU's ``noise_seed`` (same distribution and determinism, other values), and JPEG (every sample of the
   default augmentation draws a quality) runs on the host (``jpeg="host"``: download, ``cv2`` encode/decode in the
   thread pool, upload; the CPU's result exactly) or is skipped (``jpeg="skip"``);
4. device: the RGBA frames are rectified together (one pyramid for the batch, ``grid_sample`` per level at the
   ``rectify_map`` coordinates), the query mask is the rectified footprint and alpha >= 250 as on the CPU;
5. the valid fractions come back (one small copy); candidates under ``min_valid_fraction`` are replaced by their
   next candidate pose (another round), exactly as :meth:`RenderedPairs.sample` retries;
6. the positives are crops of the tile raster (the orthophoto resampled to the contract's gsd, uploaded once).

Groups of nearby places (``group_size`` > 1, :class:`export.train._MultiPairs`' rule): the j-th members of all
groups are drawn together, after the (j-1)-th were accepted (their positions steer the next ones).

The field augmentation (:class:`FieldAugment`, the ``field`` preset) is applied on the host to the accepted samples
(download, ``RenderedPairs.finish``, upload): exact, not fast.

Parity with :class:`RenderedPairs` (tests/export/test_gpu_pairs.py, CPU torch, real orthophotos): the same poses
and masks; without augmentation, query and positive pixels equal but for +/-1 DN on a tiny share (grid_sample's
float32 coordinate normalisation); with augmentation, the noise differs (same sigma) and the rest within float
rounding.

torch is imported inside the functions.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import DataError
from .augment import jpeg as _jpeg
from .pairs import PairSample, PairSamplingError, PoseDraw, RenderedPairs

__all__ = ["DevicePairBatch", "TorchPairRenderer", "JPEG_MODES"]

#: what the device renderer does with the photometric JPEG draw
JPEG_MODES = ("host", "skip")
_TWO_PI = 2.0 * math.pi


@dataclass(frozen=True, eq=False)
class DevicePairBatch:
    """Pairs on a torch device (n samples of s x s pixels).

    Attributes:
        query: uint8[n, s, s, 3] RGB, the rectified camera crops (0 where not valid), on the device.
        query_mask: bool[n, s, s]. positive: uint8[n, s, s, 3] RGB, the map tiles. positive_mask: bool[n, s, s].
        draws: the accepted :class:`PoseDraw` of each sample (index, pose, labels), in batch order.
    """

    query: object
    query_mask: object
    positive: object
    positive_mask: object
    draws: tuple

    def __len__(self) -> int:
        return len(self.draws)

    @property
    def rotation_rad(self) -> np.ndarray:
        """float64[n]: each query's counter-clockwise rotation relative to its tile, [0, 2 pi) (PairSample's)."""
        return np.array([d.rotation_rad % _TWO_PI for d in self.draws], np.float64)

    @property
    def positions(self) -> np.ndarray:
        """float64[n, 2]: the true positions, local metres."""
        return np.stack([d.position for d in self.draws]) if self.draws else np.zeros((0, 2))

    def to_samples(self, pairs: RenderedPairs) -> list[PairSample]:
        """Host :class:`PairSample` s (images copied to numpy) of these pairs, as ``pairs.sample`` returns them."""
        q, qm = self.query.cpu().numpy(), self.query_mask.cpu().numpy()
        p, pm = self.positive.cpu().numpy(), self.positive_mask.cpu().numpy()
        return [pairs.finish(d, q[k], qm[k], p[k], pm[k], field=False) for k, d in enumerate(self.draws)]


@dataclass(frozen=True, eq=False)
class _Geometry:
    """Host geometry of one candidate (see the module docstring)."""

    frame_maps: np.ndarray  # float32[3, h, w]: render map x, y (window-relative), mip level (clipped)
    frame_valid: np.ndarray  # bool[h, w]
    window: tuple  # (r0, r1, c0, c1)
    frame_levels: tuple  # (lo, hi)
    window_all_valid: bool
    view_maps: np.ndarray  # float32[3, s, s]: rectify map x, y, mip level (clipped)
    view_mask: np.ndarray  # bool[s, s]
    view_levels: tuple  # (lo, hi)
    photometric: object  # PhotometricDraw


def _gaussian_kernel(sigma: float) -> np.ndarray:
    """float64[k]: OpenCV's Gaussian kernel for a float32 image and ``sigma`` (``GaussianBlur(ksize=(0, 0))``: size
    ``round(8 sigma + 1) | 1``, weights ``exp(-x^2 / (2 sigma^2))`` normalised to 1)."""
    n = int(math.floor(sigma * 8.0 + 1.0 + 0.5)) | 1
    x = np.arange(n, dtype=np.float64) - (n - 1) * 0.5
    k = np.exp(-0.5 / (sigma * sigma) * x * x)
    return k / k.sum()


class TorchPairRenderer:
    """Batches of :class:`RenderedPairs`' samples rendered on a torch device (see the module docstring).

    Args:
        pairs: the CPU dataset (orthophoto, contract, seed, config, camera, mount, areas); its samples are the ones
            rendered.
        device: ``torch.device`` or its name ("cpu" runs the same code with CPU torch, for parity checks).
        jpeg: "host" (the photometric JPEG as on the CPU, on the host) or "skip" (no JPEG).
        workers: host threads for the geometry and JPEG (default: up to 8, the CPU count); results do not depend
            on it.
    Raises:
        DataError: a bad ``pairs``, ``jpeg`` or ``workers``.
    """

    def __init__(self, pairs: RenderedPairs, device="cpu", *, jpeg: str = "host", workers: int | None = None) -> None:
        import torch

        if not isinstance(pairs, RenderedPairs):
            raise DataError(f"pairs must be an export.data.pairs.RenderedPairs, got {type(pairs).__name__}")
        if jpeg not in JPEG_MODES:
            raise DataError(f"jpeg must be one of {JPEG_MODES} (the photometric JPEG on the host, or none), got {jpeg!r}")
        if workers is None:
            workers = max(1, min(8, os.cpu_count() or 1))
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise DataError(f"workers must be a positive number of threads, got {workers!r}")
        self.pairs = pairs
        self.device = torch.device(device)
        self.jpeg = jpeg
        self.workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="skyfix-pairs")
        o = pairs.ortho
        img = np.ascontiguousarray(o.image if o.image.ndim == 3 else np.repeat(o.image[:, :, None], 3, axis=2))
        self._ortho = torch.from_numpy(img).to(self.device).permute(2, 0, 1).unsqueeze(0).to(torch.float32)
        self._ortho_mask_host = np.asarray(o.mask, bool)
        self._ortho_mask = torch.from_numpy(self._ortho_mask_host.astype(np.float32)).to(self.device)[None, None]
        t = pairs.tiles
        self._tiles = torch.from_numpy(np.ascontiguousarray(t.image)).to(self.device)
        self._tiles_mask = torch.from_numpy(np.ascontiguousarray(t.mask, dtype=bool)).to(self.device)

    def close(self) -> None:
        """Stop the host threads (the device copies go with the object)."""
        self._pool.shutdown(wait=False)

    # ------------------------------------------------------------------------------------------------ host part
    def _geometry(self, d: PoseDraw) -> _Geometry:
        from calibration.view import mip_levels, mip_plan, rectify_map, render_map

        pairs = self.pairs
        cam, s = pairs.camera, pairs.size_px
        rm = render_map(pairs.ortho, cam, tuple(d.position), d.altitude_m, d.attitude, mount=pairs.mount)
        r0, r1, c0, c1 = rm.window
        if rm.valid.any():
            level, lo, hi = mip_plan((r1 - r0, c1 - c0), rm.level, rm.valid, "linear")
            all_valid = bool(self._ortho_mask_host[r0:r1, c0:c1].all())
        else:
            level, lo, hi, all_valid = rm.level, 0, 0, True
        rq = rectify_map(cam, d.assumed_attitude, d.altitude_m, pairs.grid.gsd, mount=pairs.mount, size_px=(s, s))
        qlevel, qlo, qhi = mip_plan((cam.height, cam.width), mip_levels(rq.map_x, rq.map_y, rq.mask), rq.mask, "linear")
        photometric = pairs.config.photometric.draw(np.random.default_rng(d.aug_seed))
        return _Geometry(np.stack([rm.map_x, rm.map_y, level]), rm.valid, rm.window, (lo, hi), all_valid,
                         np.stack([rq.map_x, rq.map_y, qlevel]), rq.mask, (qlo, qhi), photometric)

    # ------------------------------------------------------------------------------------------------ device part
    def _frames(self, geo: list[_Geometry]):
        """The rendered camera frames: (float32[n, 3, h, w] integer DN, 0 where not valid; bool[n, h, w])."""
        import torch

        from calibration.torch_remap import Pyramid, mip_sample

        cam = self.pairs.camera
        n = len(geo)
        maps = torch.from_numpy(np.stack([g.frame_maps for g in geo])).to(self.device)
        valid = torch.from_numpy(np.stack([g.frame_valid for g in geo])).to(self.device)
        frames = torch.zeros((n, 3, cam.height, cam.width), dtype=torch.float32, device=self.device)
        for k, g in enumerate(geo):
            if not g.frame_valid.any():
                continue
            r0, r1, c0, c1 = g.window
            lo, hi = g.frame_levels
            mx, my, lv = maps[k, 0:1], maps[k, 1:2], maps[k, 2:3]
            crop = self._ortho[:, :, r0:r1, c0:c1].contiguous()
            acc = mip_sample(Pyramid(crop).level, mx, my, lv, lo, hi)
            frames[k] = torch.floor(acc[0] + 0.5).clamp_(0.0, 255.0)  # _mip_remap's uint8 result, as float
            if not g.window_all_valid:
                mcrop = self._ortho_mask[:, :, r0:r1, c0:c1].contiguous()
                mm = mip_sample(Pyramid(mcrop, integer=False).level, mx, my, lv, lo, hi, integer=False)
                valid[k] &= mm[0, 0] >= 0.999
        frames *= valid.unsqueeze(1)
        return frames, valid

    def _blur(self, img, sigmas: np.ndarray):
        """Each sample's Gaussian blur (OpenCV's kernel, BORDER_REFLECT), separable, as shifted multiply-adds (no
        convolution algorithm that might round differently). img float32[n, 3, h, w]."""
        import torch

        kernels = [_gaussian_kernel(float(s)) if s > 0.05 else np.ones(1) for s in sigmas]
        r = max(len(k) for k in kernels) // 2
        if r == 0:
            return img
        w = np.zeros((len(kernels), 2 * r + 1), np.float32)
        for i, k in enumerate(kernels):
            h = len(k) // 2
            w[i, r - h:r + h + 1] = k
        w = torch.from_numpy(w).to(img.device)
        H, W = img.shape[-2:]

        def sym(x, dim, size):  # BORDER_REFLECT: fedcba|abcdefgh|hgfedcb
            lo = x.narrow(dim, 0, r).flip(dim)
            hi = x.narrow(dim, size - r, r).flip(dim)
            return torch.cat([lo, x, hi], dim=dim)

        p = sym(img, 3, W)
        out = w[:, 0].view(-1, 1, 1, 1) * p[..., 0:W]
        for t in range(1, 2 * r + 1):
            out = out + w[:, t].view(-1, 1, 1, 1) * p[..., t:t + W]
        p = sym(out, 2, H)
        out = w[:, 0].view(-1, 1, 1, 1) * p[..., 0:H, :]
        for t in range(1, 2 * r + 1):
            out = out + w[:, t].view(-1, 1, 1, 1) * p[..., t:t + H, :]
        return out

    def _photometric(self, frames, draws: list):
        """:meth:`PhotometricDraw.apply` for the batch: float32[n, 3, h, w] DN -> uint8[n, 3, h, w]."""
        import torch

        dev = frames.device
        n = len(draws)

        def col(values):
            return torch.tensor(np.asarray(values, np.float32), device=dev).view(n, 1, 1, 1)

        img = frames * np.float32(1.0 / 255.0)
        img = self._blur(img, np.array([d.blur_sigma_px for d in draws]))
        gamma = np.array([d.gamma for d in draws])
        if (gamma != 1.0).any():
            img = torch.where(col(gamma != 1.0) > 0, torch.pow(img, col(gamma)), img)
        mean = img.mean(dim=(1, 2, 3), keepdim=True)
        img = (img - mean) * col([d.contrast for d in draws]) + mean
        gains = torch.tensor(np.stack([(d.gain * d.colour_gains).astype(np.float32) for d in draws]), device=dev)
        img = img * gains.view(n, 3, 1, 1)
        img = img * np.float32(255.0)
        noisy = [k for k, d in enumerate(draws) if d.noise_sigma > 0.0]
        if noisy:
            gen = torch.Generator(device=dev)
            noise = torch.zeros_like(img)
            for k in noisy:
                gen.manual_seed(draws[k].noise_seed)
                noise[k] = torch.randn(img.shape[1:], generator=gen, device=dev, dtype=torch.float32) \
                    * np.float32(draws[k].noise_sigma)
            img = img + noise
        out = (img + 0.5).clamp_(0.0, 255.0).to(torch.uint8)
        if self.jpeg == "host":
            out = self._host_jpeg(out, [d.jpeg_quality for d in draws])
        return out

    def _host_jpeg(self, frames, qualities: list[int]):
        """The JPEG draws of the batch on the host (cv2), frames uint8[n, 3, h, w] on the device."""
        import torch

        todo = [k for k, q in enumerate(qualities) if q > 0]
        if not todo:
            return frames
        idx = torch.tensor(todo, device=frames.device)
        host = frames.index_select(0, idx).permute(0, 2, 3, 1).contiguous().cpu().numpy()
        done = list(self._pool.map(lambda k: _jpeg(host[k], qualities[todo[k]]), range(len(todo))))
        back = torch.from_numpy(np.stack(done)).to(frames.device).permute(0, 3, 1, 2)
        frames = frames.clone()
        frames[idx] = back
        return frames

    def _rectify(self, frames_u8, fvalid, geo: list[_Geometry]):
        """The queries: (uint8[n, s, s, 3], bool[n, s, s]) from the RGBA frames, rectified together."""
        import torch

        from calibration.torch_remap import Pyramid, mip_sample, to_uint8

        maps = torch.from_numpy(np.stack([g.view_maps for g in geo])).to(self.device)
        vmask = torch.from_numpy(np.stack([g.view_mask for g in geo])).to(self.device)
        rgba = torch.cat([frames_u8.to(torch.float32), fvalid.unsqueeze(1).to(torch.float32) * 255.0], dim=1)
        lo = min(g.view_levels[0] for g in geo)
        hi = max(g.view_levels[1] for g in geo)
        out = to_uint8(mip_sample(Pyramid(rgba).level, maps[:, 0], maps[:, 1], maps[:, 2], lo, hi))  # [n, 4, s, s]
        mask = vmask & (out[:, 3] >= 250)
        query = out[:, :3] * mask.unsqueeze(1)
        return query.permute(0, 2, 3, 1).contiguous(), mask

    def render(self, draws: Sequence[PoseDraw]):
        """The queries of candidate poses, rendered and rectified on the device.

        Args:
            draws: candidates from :meth:`RenderedPairs.poses` of ``pairs``.
        Returns:
            (query uint8[n, s, s, 3], query_mask bool[n, s, s]) on the device, and the valid fractions
            float64[n] on the host (what :meth:`RenderedPairs.sample` compares with ``min_valid_fraction``).
        """
        import torch

        draws = list(draws)
        s = self.pairs.size_px
        if not draws:
            return (torch.zeros((0, s, s, 3), dtype=torch.uint8, device=self.device),
                    torch.zeros((0, s, s), dtype=torch.bool, device=self.device), np.zeros(0))
        geo = list(self._pool.map(self._geometry, draws))
        frames, fvalid = self._frames(geo)
        frames_u8 = self._photometric(frames, [g.photometric for g in geo])
        query, mask = self._rectify(frames_u8, fvalid, geo)
        counts = mask.sum(dim=(1, 2)).cpu().numpy()
        return query, mask, counts.astype(np.float64) / float(s * s)

    def positives(self, draws: Sequence[PoseDraw]):
        """The map tiles of candidates (:meth:`RenderedPairs.tile` at their ``tile_centre``), cropped on the device:
        (uint8[n, s, s, 3], bool[n, s, s])."""
        import torch

        s, src = self.pairs.size_px, self.pairs.tiles
        n = len(draws)
        img = torch.zeros((n, s, s, 3), dtype=torch.uint8, device=self.device)
        msk = torch.zeros((n, s, s), dtype=torch.bool, device=self.device)
        for k, d in enumerate(draws):
            a, b = self.pairs.tile_window(d.tile_centre)
            sa, sb, ea, eb = max(a, 0), max(b, 0), min(a + s, src.width), min(b + s, src.height)
            if ea > sa and eb > sb:
                img[k, sb - b:eb - b, sa - a:ea - a] = self._tiles[sb:eb, sa:ea]
                msk[k, sb - b:eb - b, sa - a:ea - a] = self._tiles_mask[sb:eb, sa:ea]
        return img, msk

    # ------------------------------------------------------------------------------------------------ batches
    def batch(self, indices: Sequence[int], *, group_size: int = 1, group_radius_m: float = 40.0,
              group_min_separation_m: float = 16.0) -> DevicePairBatch:
        """The samples ``indices`` on the device, in groups of ``group_size`` nearby places.

        ``group_size = 1``: sample ``i`` is ``pairs.sample(i)``. Otherwise member ``j = k % group_size`` (k: the
        position in ``indices``) of a group, ``j > 0``, is ``pairs.sample(i, around=<member 0's position>,
        radius_m=group_radius_m, avoid=<members 0..j-1's positions>, min_separation_m=group_min_separation_m)``,
        and ``pairs.sample(i)`` when that cannot be placed (``export.train._MultiPairs.batch``'s rule).

        Raises:
            PairSamplingError: a sample (anywhere) has no acceptable pose in ``max_tries``.
        """
        import torch

        pairs, cfg = self.pairs, self.pairs.config
        idx = [int(i) for i in indices]
        n, s = len(idx), pairs.size_px
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
            raise DataError(f"group_size must be a positive integer, got {group_size!r}")
        query = torch.zeros((n, s, s, 3), dtype=torch.uint8, device=self.device)
        qmask = torch.zeros((n, s, s), dtype=torch.bool, device=self.device)
        accepted: list[PoseDraw | None] = [None] * n
        for j in range(group_size):
            members = [k for k in range(n) if k % group_size == j]
            gens, near = {}, {}
            for k in members:
                if j == 0:
                    gens[k], near[k] = pairs.poses(idx[k]), False
                else:
                    group = accepted[k - j:k]
                    gens[k] = pairs.poses(idx[k], around=group[0].position, radius_m=group_radius_m,
                                          avoid=np.stack([g.position for g in group]),
                                          min_separation_m=group_min_separation_m)
                    near[k] = True
            pending = members
            while pending:
                cands = []
                for k in pending:
                    d = next(gens[k], None)
                    if d is None and near[k]:  # the neighbour cannot be placed: drawn anywhere instead
                        gens[k], near[k] = pairs.poses(idx[k]), False
                        d = next(gens[k], None)
                    if d is None:
                        raise pairs.sampling_error(idx[k])
                    cands.append(d)
                q, m, frac = self.render(cands)
                ok = [c for c in range(len(cands)) if frac[c] >= cfg.min_valid_fraction]
                if ok:
                    rows = torch.tensor(ok, device=self.device)
                    dest = torch.tensor([pending[c] for c in ok], device=self.device)
                    query[dest] = q.index_select(0, rows)
                    qmask[dest] = m.index_select(0, rows)
                    for c in ok:
                        accepted[pending[c]] = cands[c]
                pending = [pending[c] for c in range(len(cands)) if frac[c] < cfg.min_valid_fraction]
        draws = tuple(accepted)  # type: ignore[arg-type]
        positive, pmask = self.positives(draws)
        if not (cfg.map_field.is_off and cfg.query_field.is_off):  # on the host, exactly as RenderedPairs
            q, qm, p, pm = (t.cpu().numpy() for t in (query, qmask, positive, pmask))
            samples = [pairs.finish(d, q[k], qm[k], p[k], pm[k]) for k, d in enumerate(draws)]
            query = torch.from_numpy(np.stack([sm.query for sm in samples])).to(self.device)
            positive = torch.from_numpy(np.stack([sm.positive for sm in samples])).to(self.device)
        return DevicePairBatch(query, qmask, positive, pmask, draws)

