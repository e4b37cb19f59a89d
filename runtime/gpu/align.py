"""Fine alignment on a torch device: :class:`runtime.align.FineAligner`'s masked NCC for every candidate and yaw
hypothesis at once, then FineAligner's own peak logic.

What runs where
---------------
On the device, per :meth:`TorchFineAligner.align` call (one view, k candidates):

1. the view's grey image (OpenCV's fixed-point RGB->grey, bit-exact: :func:`gray_weights`) and its coarse and fine
   pyramid levels (block means weighted by the mask, as ``FineAligner._level``);
2. the coarse templates rotated about the nadir point by every yaw correction at once (bilinear, zero border:
   ``cv2.warpAffine``'s ``INTER_LINEAR`` with ``borderValue=0``: ``grid_sample`` at the exact coordinates with
   OpenCV 5.x, 4.x's fixed-point coordinates and weights with 4.x, :mod:`calibration.torch_remap`), kept at full
   size with their masks
   (outside the rotated footprint the mask is 0, which is the same correlation as FineAligner's cropped template
   against the matching sub-window);
3. every candidate's map window (one gather; pixels off the map or without imagery take the window's mean), block
   averaged to the level;
4. masked ``TM_CCOEFF_NORMED`` (OpenCV's formula) of all (candidate, yaw) pairs at once by FFT correlation:
   ``(sum M (T - mu_T) I) / (||M (T - mu_T)|| sqrt(sum M I^2 - (sum M I)^2 / sum M))`` with the window's mean
   taken out of ``I`` first (NCC does not change; float32 keeps its digits), -1 where the window is flat or the
   template all but empty, as FineAligner's -1 for 0/0.

The NCC maps (float32[k, yaws, 2 r + 1, 2 r + 1]) come back to the host, where FineAligner's ``_coarse_peak``,
``_fine_angles``, ``_fine_peak`` and ``_result`` (the same functions the CPU path runs: argmax, parabolas, peak
ratio, sigma) decide; the fine level (the coarse yaw, +/- half a step with ``refine_yaw``) then runs for all
candidates at once, and once more for those whose fine peak lay on the window border.

Parity with the CPU FineAligner (OpenCV 5.x and 4.x; tests/runtime/gpu/, zurich_a): NCC maps within 1e-6 of
``cv2.matchTemplate``'s; for matches the loop can use (NCC >= 0.5) positions within 1e-5 m, yaw 1e-6 rad, score,
sigma and peak ratio within 1e-5 (measured over 400 candidates, with and without ``refine_yaw``). Wrong places (NCC
near 0) have flat peaks whose sub-pixel vertex can move further (once 0.24 m); and where two shifts' NCC differ by
less than the float rounding, the argmax may pick the other one.
"""

from __future__ import annotations

from contextlib import nullcontext
from functools import lru_cache

import numpy as np

from calibration.cv_compat import remap_fraction_bits
from calibration.torch_remap import grid_sample_px, warp_affine_coords_fixed

from ..align import _MIN_VALID_PX, AlignError, FineAligner
from . import import_torch, to_device

__all__ = ["TorchFineAligner", "gray_weights", "masked_ncc", "rgb_to_gray"]

#: OpenCV's fixed-point RGB -> grey weights (R, G, B) per number of fraction bits; 4.x uses 14, 5.x 15
_GRAY_TABLES = {15: (9798, 19235, 3735), 14: (4899, 9617, 1868), 16: (19595, 38470, 7471)}
#: a window whose masked variance is below this (DN^2 per template pixel) counts as flat: NCC -1 (OpenCV: 0/0)
_FLAT_VAR = 1e-4
_MIN_TEMPLATE_PX = 16  # FineAligner skips rotated templates whose crop holds fewer pixels (t.size < 16)


@lru_cache(maxsize=1)
def gray_weights() -> tuple[int, int, int, int]:
    """(wr, wg, wb, bits) of the installed OpenCV's ``COLOR_RGB2GRAY`` for uint8: ``(wr R + wg G + wb B +
    2**(bits-1)) >> bits``; found by converting a fixed random image once (OpenCV 4.x and 5.x differ)."""
    import cv2

    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    ref = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.int64)
    r, g, b = (img[..., i].astype(np.int64) for i in range(3))
    for bits, (wr, wg, wb) in _GRAY_TABLES.items():
        if np.array_equal((wr * r + wg * g + wb * b + (1 << (bits - 1))) >> bits, ref):
            return wr, wg, wb, bits
    return 9798, 19235, 3735, 15  # an OpenCV with another table: within 1 DN of it


def rgb_to_gray(rgb, weights: tuple[int, int, int, int]):
    """uint8[..., 3] RGB -> float32[...] grey, OpenCV's integer formula (``weights`` from :func:`gray_weights`)."""
    torch = import_torch()
    wr, wg, wb, bits = weights
    x = rgb.to(torch.int32)
    g = (x[..., 0] * wr + x[..., 1] * wg + x[..., 2] * wb + (1 << (bits - 1))) >> bits
    return g.to(torch.float32)


class _Level:
    """A grey view at one pyramid level on the device: image float32[h, w] (0 where invalid), weight float32[h, w]
    (1 valid), the nadir point's pixel-edge coordinates (nu, nv) (the same numbers as ``runtime.align._Template``)."""

    __slots__ = ("image", "weight", "nu", "nv")

    def __init__(self, image, weight, nu: float, nv: float) -> None:
        self.image, self.weight, self.nu, self.nv = image, weight, nu, nv


def _level(gray, valid, factor: int, nadir: float) -> _Level:
    """``FineAligner._level`` on the device: block means of the grey view weighted by the mask."""
    torch = import_torch()
    F = torch.nn.functional
    s = gray.shape[0]
    o = (s % factor) // 2
    n = (s - o) // factor
    g = gray[o:o + n * factor, o:o + n * factor]
    m = valid[o:o + n * factor, o:o + n * factor].to(torch.float32)
    if factor == 1:
        return _Level(g.contiguous(), m.contiguous(), nadir - o, nadir - o)
    gi = F.avg_pool2d(g[None, None], factor)[0, 0]
    wi = F.avg_pool2d(m[None, None], factor)[0, 0]
    ok = wi > 0.5
    img = torch.where(ok, gi / torch.clamp(wi, min=1e-6), torch.zeros((), device=gi.device))
    return _Level(img, ok.to(torch.float32), (nadir - o) / factor, (nadir - o) / factor)


def _extent(a):
    """Length of the span of True along the last axis of bool[..., L] (0 where none)."""
    torch = import_torch()
    L = a.shape[-1]
    idx = torch.arange(L, device=a.device)
    first = torch.where(a, idx, L).amin(dim=-1)
    last = torch.where(a, idx, -1).amax(dim=-1)
    return torch.clamp(last - first + 1, min=0)


def _rotated(level: _Level, angles_deg) -> tuple:
    """``_Template.rotated`` for many angles at once: the level rotated counter-clockwise by each angle (degrees)
    about the nadir point, at full size. Returns (templates float32[A, h, w] (0 outside the mask), masks float32[A,
    h, w] (1 valid), tiny bool[A]: the valid pixels' bounding box is under 16 px, which FineAligner skips)."""
    import cv2

    torch = import_torch()
    h, w = level.image.shape
    dev = level.image.device
    angles = [float(a) for a in angles_deg]
    src = torch.stack([level.image, level.weight])[None]  # [1, 2, h, w]
    inv = np.empty((len(angles), 2, 3), np.float64)
    for i, a in enumerate(angles):  # cv2.warpAffine samples the source at the inverse map of each output pixel
        inv[i] = cv2.invertAffineTransform(cv2.getRotationMatrix2D((level.nu - 0.5, level.nv - 0.5), a, 1.0))
    m = torch.from_numpy(inv).to(dev)
    bits = remap_fraction_bits(1, integer=False)  # FineAligner warps its float32 image and weight one by one
    if bits is None:  # OpenCV 5.x: exact coordinates, float bilinear
        xs = torch.arange(w, dtype=torch.float64, device=dev)[None, None, :]
        ys = torch.arange(h, dtype=torch.float64, device=dev)[None, :, None]
        X = m[:, 0, 0, None, None] * xs + m[:, 0, 1, None, None] * ys + m[:, 0, 2, None, None]
        Y = m[:, 1, 0, None, None] * xs + m[:, 1, 1, None, None] * ys + m[:, 1, 2, None, None]
        grid = torch.stack([(2.0 * X + 1.0) / w - 1.0, (2.0 * Y + 1.0) / h - 1.0], dim=-1).to(torch.float32)
        warped = torch.nn.functional.grid_sample(src.expand(len(angles), -1, -1, -1), grid, mode="bilinear",
                                                 padding_mode="zeros", align_corners=False)  # [A, 2, h, w]
    else:  # OpenCV 4.x: its fixed-point coordinates and weights
        X, Y = warp_affine_coords_fixed(m, w, h, bits)
        warped = grid_sample_px(src.expand(len(angles), -1, -1, -1), X, Y, bits, border="zeros")
    zero = torch.tensor([a == 0.0 for a in angles], device=dev)
    if bool(zero.any()):  # FineAligner does not warp at 0: the level itself
        warped = torch.where(zero[:, None, None, None], src, warped)
    img, wt = warped[:, 0], warped[:, 1]
    ok = wt > 0.5
    tmpl = torch.where(ok, img / torch.clamp(wt, min=1e-6), torch.zeros((), device=dev))
    tiny = _extent(ok.any(dim=2)) * _extent(ok.any(dim=1)) < _MIN_TEMPLATE_PX
    return tmpl, ok.to(torch.float32), tiny


def _windows(gray, mask, u0, v0, rows: int, cols: int, factor: int):
    """``FineAligner._window`` for many windows: grey map windows float32[C, rows, cols] at level ``factor`` whose
    top-left is level-0 pixel edge (u0[c], v0[c]) (int64[C] tensors); pixels off the map or without imagery take
    their window's mean. Also the valid fraction float32[C]."""
    torch = import_torch()
    H, W = gray.shape
    h, w = rows * factor, cols * factor
    dev = gray.device
    yy = v0[:, None] + torch.arange(h, device=dev)[None, :]
    xx = u0[:, None] + torch.arange(w, device=dev)[None, :]
    iy, ix = yy.clamp(0, H - 1)[:, :, None], xx.clamp(0, W - 1)[:, None, :]
    inside = ((yy >= 0) & (yy < H))[:, :, None] & ((xx >= 0) & (xx < W))[:, None, :]
    ok = mask[iy, ix] & inside
    vals = gray[iy, ix].to(torch.float32)
    cnt = ok.sum(dim=(1, 2))
    frac = cnt.to(torch.float32) / float(h * w)
    mean = torch.where(ok, vals, 0.0).sum(dim=(1, 2)) / torch.clamp(cnt, min=1).to(torch.float32)
    out = torch.where(ok, vals, mean[:, None, None])
    if factor > 1:
        out = torch.nn.functional.avg_pool2d(out[:, None], factor)[:, 0]
    return out, frac


def masked_ncc(windows, templates, masks, n: int):
    """OpenCV's masked ``TM_CCOEFF_NORMED`` of every (window, template) pair, by FFT correlation.

    Args:
        windows: float32[C, h + n - 1, w + n - 1].
        templates: float32[C or 1, A, h, w] (values where ``masks`` is 0 are ignored).
        masks: float32[C or 1, A, h, w], 1 valid / 0.
        n: shifts per axis.
    Returns:
        float32[C, A, n, n] NCC in [-1, 1]; entry (i, j) puts the template's top-left on window pixel (i, j); -1
        where the window is flat under the mask or the template has no variance (OpenCV: 0/0).
    """
    torch = import_torch()
    fft = torch.fft
    size = tuple(windows.shape[-2:])
    img = windows - windows.mean(dim=(1, 2), keepdim=True)  # NCC ignores an offset; float32 keeps the digits
    nt = masks.sum(dim=(2, 3))
    mu = (templates * masks).sum(dim=(2, 3)) / torch.clamp(nt, min=1.0)
    a = masks * (templates - mu[..., None, None])
    norm_t = torch.sqrt((a * a).sum(dim=(2, 3)))
    sum_a = a.sum(dim=(2, 3))
    f_i = fft.rfft2(img, s=size)[:, None]
    f_i2 = fft.rfft2(img * img, s=size)[:, None]
    f_a = fft.rfft2(a, s=size).conj()
    f_m = fft.rfft2(masks, s=size).conj()
    s_a = fft.irfft2(f_i * f_a, s=size)[..., :n, :n]
    s_1 = fft.irfft2(f_i * f_m, s=size)[..., :n, :n]
    s_2 = fft.irfft2(f_i2 * f_m, s=size)[..., :n, :n]
    ntb = torch.clamp(nt, min=1.0)[..., None, None]
    num = s_a - s_1 * (sum_a / torch.clamp(nt, min=1.0))[..., None, None]
    var = s_2 - s_1 * s_1 / ntb
    den = torch.sqrt(torch.clamp(var, min=0.0)) * norm_t[..., None, None]
    r = num / torch.where(den > 0, den, 1.0)
    bad = (var <= _FLAT_VAR * ntb) | (norm_t[..., None, None] <= 0) | ~torch.isfinite(r)
    return torch.where(bad, -1.0, torch.clamp(r, -1.0, 1.0))


class TorchFineAligner(FineAligner):
    """:class:`runtime.align.FineAligner` whose NCC runs on a torch device, for all candidates and yaws at once.

    Same arguments, checks and results as FineAligner (:meth:`align`), except ``highpass_m`` (0 only: an
    AlignError otherwise), plus:

    Args:
        device: the ``torch.device`` (or its name). The grey imagery (one byte per pixel) and its mask go there once.
        clock: optional :class:`runtime.gpu.timing.StageClock` (stage ``"align"``).

    Views from :class:`runtime.gpu.rectify.TorchGroundViewer` bring their pixels on the device; other views are
    uploaded.
    """

    def __init__(self, imagery, *, device="cpu", clock=None, **settings) -> None:
        if float(settings.get("highpass_m", 0.0) or 0.0) != 0.0:
            raise AlignError(f"highpass_m {settings['highpass_m']!r}: the torch aligner has no high-pass of the views "
                             "yet; align on the CPU (--device cpu) or set align_highpass_m 0")
        super().__init__(imagery, **settings)
        torch = import_torch()
        self.device = torch.device(device)
        self.clock = clock
        self._gray_t = to_device(self._gray, self.device)  # uint8[H, W]
        self._mask_t = to_device(np.asarray(imagery.mask, dtype=bool), self.device)
        self._gray_w = gray_weights()

    def _device_view(self, view, img: np.ndarray, valid: np.ndarray):
        rgb, mask = getattr(view, "device_image", None), getattr(view, "device_mask", None)
        if rgb is None or mask is None:  # a view made on the host: uploaded
            return to_device(img, self.device), to_device(valid, self.device)
        return rgb.to(self.device), mask.to(self.device)

    def _ncc(self, level: _Level, tmpl, masks, tiny, origins: list, radius: int, factor: int):
        """NCC maps of templates float32[C or 1, A, h, w] against the windows at ``origins`` [(u0, v0), ...]: (maps
        float32[C, A, n, n] on the host, valid fraction float64[C])."""
        torch = import_torch()
        h, w = level.image.shape
        n = 2 * radius + 1
        uv = torch.tensor(origins, dtype=torch.int64).to(self.device)
        win, frac = _windows(self._gray_t, self._mask_t, uv[:, 0], uv[:, 1], h + n - 1, w + n - 1, factor)
        maps = masked_ncc(win, tmpl, masks, n)
        maps = torch.where(tiny[..., None, None], -1.0, maps)
        return maps.cpu().numpy(), frac.cpu().numpy().astype(np.float64)

    def align(self, view, candidates) -> list:
        """:meth:`runtime.align.FineAligner.align`, computed on the device (see the module docstring)."""
        img, valid, yaw0 = self._check_view(view)
        cands = self._check_candidates(candidates)
        if len(cands) == 0:
            return []
        torch = import_torch()
        with self.clock.stage("align") if self.clock is not None else nullcontext(), torch.no_grad():
            return self._align(view, img, valid, yaw0, cands)

    def _align(self, view, img, valid, yaw0: float, cands: np.ndarray) -> list:
        torch = import_torch()
        rgb, mask = self._device_view(view, img, valid)
        gray = rgb_to_gray(rgb, self._gray_w)
        nadir = img.shape[0] / 2.0
        cf, ff = self.coarse_factor, self.fine_factor
        coarse = _level(gray, mask, cf, nadir)
        fine = coarse if ff == cf else _level(gray, mask, ff, nadir)
        rc, rf = self._radii()
        gf = ff * self.gsd
        # ---- coarse: every candidate x every yaw correction over the whole search window
        ct, cm, ctiny = _rotated(coarse, self.yaw_offsets_deg)
        origins = [self._origin(coarse.nu, coarse.nv, float(cx), float(cy), rc, cf) for cx, cy in cands]
        valid_px = coarse.weight.sum()
        maps, frac = self._ncc(coarse, ct[None], cm[None], ctiny[None], [o[:2] for o in origins], rc, cf)
        if float(valid_px) < _MIN_VALID_PX:
            raise AlignError(
                f"the view has too little valid ground ({view.mask.mean():.0%} of {img.shape[0]} px) to align at "
                f"coarse_factor {cf}; fly higher, widen context_px, or lower coarse_factor"
            )
        out: list = [None] * len(cands)
        todo = []  # (candidate, coarse peak, fine angles, x, y)
        for c, (cx, cy) in enumerate(cands):
            if frac[c] == 0.0:
                out[c] = self._no_imagery(cx, cy, yaw0)
                continue
            peak = self._coarse_peak(maps[c], origins[c][2], origins[c][3])
            todo.append([c, peak, self._fine_angles(peak.dyaw_deg), peak.x, peak.y])
        if todo:
            # ---- fine: each candidate's coarse yaw (+/- half a step), a small window around its coarse position
            n_ang = len(todo[0][2])
            ft, fm, ftiny = _rotated(fine, [a for t in todo for a in t[2]])
            shape = (len(todo), n_ang) + tuple(ft.shape[1:])
            ft, fm, ftiny = ft.reshape(shape), fm.reshape(shape), ftiny.reshape(len(todo), n_ang)
            pending = list(range(len(todo)))
            for attempt in range(2):  # once more, recentred, for peaks on the border of their window
                if not pending:
                    break
                sel = torch.tensor(pending, dtype=torch.int64, device=self.device)
                forig = [self._origin(fine.nu, fine.nv, todo[j][3], todo[j][4], rf, ff) for j in pending]
                fmaps, ffrac = self._ncc(fine, ft.index_select(0, sel), fm.index_select(0, sel),
                                         ftiny.index_select(0, sel), [o[:2] for o in forig], rf, ff)
                again = []
                for i, j in enumerate(pending):
                    c, peak, angles = todo[j][0], todo[j][1], todo[j][2]
                    if ffrac[i] == 0.0:  # the fine window slid off the imagery
                        out[c] = self._no_imagery(cands[c][0], cands[c][1], yaw0)
                        continue
                    fpeak = self._fine_peak(fmaps[i], rf)
                    fx0, fy0 = forig[i][2], forig[i][3]
                    if fpeak.inside or attempt == 1:
                        out[c] = self._result(fmaps[i], fpeak, fx0, fy0, angles, peak, yaw0)
                    else:
                        todo[j][3], todo[j][4] = fx0 + fpeak.ix * gf, fy0 - fpeak.iy * gf
                        again.append(j)
                pending = again
        return out
