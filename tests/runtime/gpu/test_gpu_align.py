"""runtime.gpu.align against runtime.align.FineAligner on frames rendered from a real orthophoto: the NCC maps of
every yaw hypothesis, and the results (position, yaw, score, sigma, peak ratio) over many candidates, with the
default settings and with fine-level yaw refinement over a wider yaw search."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calibration.geometry import Attitude
from calibration.view import render
from runtime.align import AlignError, FineAligner
from runtime.ground_view import GroundViewer

from .parity import GSD, SIZE

SETTINGS = {"default": {}, "refine_yaw": {"refine_yaw": True, "yaw_search_deg": 16.0, "yaw_step_deg": 4.0}}


def _cases(o4, camera, n: int, seed: int):
    """n (frame pose, view's assumed attitude, candidates): candidates 2-14 m off (a retrieval error of about a
    stride), one 60-80 m off (a wrong place) and one off the map."""
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = o4.bounds
    out = []
    for _ in range(n):
        tilt, az = rng.uniform(0.0, 8.0), rng.uniform(0.0, 2 * math.pi)
        att = Attitude.from_degrees(tilt * math.cos(az), tilt * math.sin(az), rng.uniform(-180.0, 180.0))
        xy = np.array([rng.uniform(x0 + 70, x1 - 70), rng.uniform(y0 + 70, y1 - 70)])
        h = rng.uniform(60.0, 100.0)
        assumed = Attitude(att.roll, att.pitch, att.yaw + math.radians(rng.uniform(-6.0, 6.0)))  # compass error
        a = rng.uniform(0.0, 2 * math.pi, 5)
        d = np.r_[rng.uniform(2.0, 14.0, 4), rng.uniform(60.0, 80.0)]
        cands = np.r_[xy + d[:, None] * np.c_[np.cos(a), np.sin(a)], [[x1 + 200.0, y1 + 200.0]]]
        out.append((xy, h, att, assumed, cands))
    return out


def _yaw_diff(a: float, b: float) -> float:
    return abs((a - b + math.pi) % (2 * math.pi) - math.pi)


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_alignment_matches_the_cpu_aligner(ortho, camera, device, setting):
    from runtime.gpu.align import TorchFineAligner
    from runtime.gpu.rectify import TorchGroundViewer

    o, o4 = ortho
    cpu = FineAligner(o4, **SETTINGS[setting])
    dev = TorchFineAligner(o4, device=device, **SETTINGS[setting])
    viewer = GroundViewer(camera, GSD, SIZE)
    tviewer = TorchGroundViewer(camera, GSD, SIZE, device=device)
    good, weak = [], []
    for xy, h, att, assumed, cands in _cases(o4, camera, 10, seed=17):
        frame, _ = render(o, camera, xy, h, att)
        view = viewer.views(frame, height_m=h, attitude=assumed)[0]
        dview = tviewer.views(frame, height_m=h, attitude=assumed)[0]  # its pixels stay on the device
        ref = cpu.align(view, cands)
        for got in (dev.align(view, cands), dev.align(dview, cands)):
            assert len(got) == len(ref)
            for r, g in zip(ref, got):
                row = (math.hypot(r.x - g.x, r.y - g.y), _yaw_diff(r.yaw_rad, g.yaw_rad), abs(r.score - g.score),
                       abs(r.sigma_m - g.sigma_m), abs(r.peak_ratio - g.peak_ratio) / r.peak_ratio)
                (good if r.score >= 0.5 else weak).append(row)
                assert -math.pi < g.yaw_rad <= math.pi
                if r.score == -1.0:  # no imagery under the window: the same answer
                    assert (g.x, g.y, g.score, g.sigma_m, g.peak_ratio) == (r.x, r.y, -1.0, r.sigma_m, 1.0)
    good, weak = np.array(good), np.array(weak)
    assert len(good) >= 60 and len(weak) >= 20  # right places and wrong ones (far, off the map)
    # matches that count (NCC >= 0.5, the loop's gate): measured max 5e-6 m, 1e-7 rad, 3e-6 NCC, 0 m sigma, 2e-5
    assert good[:, 0].max() < 1e-3 and good[:, 1].max() < 1e-4 and good[:, 2].max() < 1e-4
    assert good[:, 3].max() < 1e-3 and good[:, 4].max() < 1e-3
    # wrong places (NCC ~0): scores agree as closely; the sub-pixel vertex of a flat peak may move (measured once 0.24
    # m, sigma 0.34 m, with refine_yaw): within half a fine pixel
    assert weak[:, 2].max() < 1e-4
    assert np.median(weak[:, 0]) < 1e-3 and weak[:, 0].max() < 0.4


def test_ncc_maps_match_cv2_match_template(ortho, camera, device):
    """The masked NCC of every rotated template against a map window, directly: FFT correlation vs OpenCV."""
    import torch

    from runtime.gpu.align import masked_ncc

    o, o4 = ortho
    cpu = FineAligner(o4, yaw_search_deg=20.0, yaw_step_deg=2.5)
    viewer = GroundViewer(camera, GSD, SIZE)
    worst = 0.0
    for xy, h, att, assumed, _ in _cases(o4, camera, 3, seed=5):
        frame, _ = render(o, camera, xy, h, att)
        view = viewer.views(frame, height_m=h, attitude=assumed)[0]
        import cv2

        gray = cv2.cvtColor(view.image, cv2.COLOR_RGB2GRAY).astype(np.float32)
        for factor, radius in ((4, 10), (2, 3)):
            tmpl = cpu._level(gray, view.mask, factor, view.image.shape[0] / 2.0)
            rots = [tmpl.rotated(float(a)) for a in cpu.yaw_offsets_deg]
            h_, w_ = tmpl.image.shape
            n = 2 * radius + 1
            u0, v0, _, _ = cpu._origin(tmpl.nu, tmpl.nv, xy[0] + 3.0, xy[1] - 2.0, radius, factor)
            win, frac = cpu._window(u0, v0, w_ + n - 1, h_ + n - 1, factor)
            assert frac == 1.0
            ref = np.stack([cpu._ncc(win[r0:r0 + t.shape[0] + n - 1, c0:c0 + t.shape[1] + n - 1], t, m)
                            for t, m, r0, c0 in rots])
            T = np.zeros((len(rots), h_, w_), np.float32)
            M = np.zeros_like(T)
            for k, (t, m, r0, c0) in enumerate(rots):  # full size, 0 outside the rotated crop
                T[k, r0:r0 + t.shape[0], c0:c0 + t.shape[1]] = t
                M[k, r0:r0 + t.shape[0], c0:c0 + t.shape[1]] = m
            got = masked_ncc(torch.from_numpy(win)[None].to(device), torch.from_numpy(T)[None].to(device),
                             torch.from_numpy(M)[None].to(device), n)[0].cpu().numpy()
            assert got.shape == ref.shape
            worst = max(worst, float(np.abs(got - ref).max()))
            assert np.array_equal(np.argmax(got.reshape(len(T), -1), axis=1), np.argmax(ref.reshape(len(T), -1), axis=1))
    assert worst < 2e-5  # measured ~5e-7


def test_grey_conversion_is_opencvs(device):
    import cv2
    import torch

    from runtime.gpu.align import gray_weights, rgb_to_gray

    img = np.random.default_rng(4).integers(0, 256, (97, 131, 3), dtype=np.uint8)
    got = rgb_to_gray(torch.from_numpy(img).to(device), gray_weights()).cpu().numpy()
    assert np.array_equal(got, cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32))


def test_same_errors_as_the_cpu_aligner(ortho, camera):
    from runtime.gpu.align import TorchFineAligner
    from runtime.ground_view import GroundView

    o, o4 = ortho
    dev = TorchFineAligner(o4, device="cpu")
    viewer = GroundViewer(camera, GSD, SIZE)
    view = viewer.views(render(o, camera, (0.0, 0.0), 80.0, Attitude())[0], height_m=80.0, attitude=Attitude())[0]
    assert dev.align(view, np.zeros((0, 2))) == []
    with pytest.raises(AlignError, match=r"use \[\[x, y\]\]"):
        dev.align(view, [1.0, 2.0])
    blank = GroundView(view.image, np.zeros_like(view.mask), view.gsd, view.yaw_rad, view.height_m)
    with pytest.raises(AlignError, match="too little valid ground"):
        dev.align(blank, [[0.0, 0.0]])
    with pytest.raises(AlignError, match="the view is at 0.5 m/px but the map imagery at 0.4 m/px"):
        dev.align(GroundView(view.image, view.mask, 0.5, 0.0, 80.0), [[0.0, 0.0]])
    with pytest.raises(AlignError, match="fine_factor"):
        TorchFineAligner(o4, device="cpu", coarse_factor=2, fine_factor=4)
