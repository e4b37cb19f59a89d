"""``runtime likelihood fit|check``: calibrate the visual likelihood on simulated flights (see :mod:`runtime.likelihood`).

``fit`` builds a map of each orthophoto with the model, simulates flights over it (the scenarios of
``runtime scenarios``; ``-noimu`` replays one without its IMU, so headings come from the images), replays them and
records every candidate of every frame with its distance to the ground truth, then fits the score models and writes
them as JSON. ``check`` does the same over other orthophotos (held-out areas) and prints, for a calibration file and
for the uncalibrated softmax, how the predicted probabilities match what happened: a reliability table, the expected
calibration error (ECE), log loss and Brier score, per candidate and per fix.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..likelihood import (CORRECT_SIGMAS, FIX_RULES, LikelihoodError, ScoreModel, VisualLikelihood, aligned_features,
                         fit_logistic, reliability, retrieved_features)

FLIGHTS = ("noisy", "outage", "spoof", "no_gps", "noisy-noimu", "outage-noimu", "no_gps-noimu")
DEFAULT_FLIGHTS = ("noisy", "no_gps", "noisy-noimu", "no_gps-noimu")


def collect_flight(package, encoder, bag_path, *, drop_imu: bool = False, localizer: dict | None = None) -> dict:
    """Replay ``bag_path`` (a simulated bag with ground truth) and label every candidate.

    Besides the frame's own search (inside the scope of the belief), every frame's embeddings also search the whole
    map (a *probe*, as the loop does when it has no belief or is LOST), so that the retrieval model sees wide
    searches on every frame rather than on the few where the loop made one.

    Returns:
        dict of arrays: ``aligned`` float64[n, 7] (FrameCandidates.aligned rows), ``aligned_dist`` float64[n]
        (metres to the truth), ``aligned_frame`` int[n]; ``retrieved`` float64[m, 7] (FrameCandidates.retrieved
        rows, then the probes' rows), ``retrieved_dist``, ``retrieved_frame``, ``retrieved_used`` bool[m] (the
        retrieval candidates formed that frame's fix), ``retrieved_probe`` bool[m] (a whole-map probe).
    """
    from ..likelihood import scope_log_ratio

    from ..bags import BagReader
    from ..tools.evaluation import read_truth_and_gps
    from ..localizer import Localizer, LocalizerConfig
    from ..feed import ROLES

    truth, _ = read_truth_and_gps(bag_path)
    tt = np.array([t.t_ns for t in truth], np.int64)
    tx, ty = (np.asarray(v, np.float64) for v in package.frame.to_local(np.array([t.lat for t in truth]),
                                                                        np.array([t.lon for t in truth])))
    loop = Localizer(package, encoder, config=LocalizerConfig.from_dict(dict(localizer or {})))
    roles = [r for r in ROLES if not (drop_imu and r == "imu")]
    al, ad, af, rt, rd, rf, ru, rp = [], [], [], [], [], [], [], []
    sigma = float(package.tile_grid.stride_m) / 2.0
    wide = scope_log_ratio(None, package.bounds, sigma)
    k = loop.config.k
    seen = None
    frame = 0
    with BagReader(bag_path) as bag:
        for ev in bag.events(roles=roles):
            loop.process(ev)
            c = loop.last_candidates
            if c is None or c is seen:
                continue
            seen = c
            frame += 1
            gx, gy = float(np.interp(c.t_ns, tt, tx)), float(np.interp(c.t_ns, tt, ty))
            if len(c.aligned):
                al.append(c.aligned)
                ad.append(np.hypot(c.aligned[:, 0] - gx, c.aligned[:, 1] - gy))
                af.append(np.full(len(c.aligned), frame))
            rows = [c.retrieved]
            if len(c.embeddings):
                sc, ids = package.search(c.embeddings, k)
                for s_row, i_row in zip(sc, ids):
                    ok = i_row >= 0
                    if ok.any():
                        pos = package.positions[i_row[ok]].astype(np.float64)
                        s_row = s_row[ok].astype(np.float64)
                        n = len(s_row)
                        rows.append(np.column_stack([pos, s_row, np.full(n, sigma), np.full(n, s_row.max()),
                                                     np.full(n, s_row.max() - s_row.min()), np.full(n, wide)]))
            r = np.concatenate(rows)
            if len(r):
                rt.append(r)
                rd.append(np.hypot(r[:, 0] - gx, r[:, 1] - gy))
                rf.append(np.full(len(r), frame))
                ru.append(np.arange(len(r)) < len(c.retrieved) if c.retrieved_used else np.zeros(len(r), bool))
                rp.append(np.arange(len(r)) >= len(c.retrieved))

    def cat(parts, shape):
        return np.concatenate(parts) if parts else np.zeros(shape)

    return {"aligned": cat(al, (0, 7)), "aligned_dist": cat(ad, (0,)), "aligned_frame": cat(af, (0,)).astype(int),
            "retrieved": cat(rt, (0, 7)), "retrieved_dist": cat(rd, (0,)),
            "retrieved_frame": cat(rf, (0,)).astype(int), "retrieved_used": cat(ru, (0,)).astype(bool),
            "retrieved_probe": cat(rp, (0,)).astype(bool)}


def merge(parts: list[dict]) -> dict:
    """Concatenate :func:`collect_flight` results; frame numbers stay distinct between flights."""
    out: dict = {}
    offset = 0
    ids = {str(d["encoder_id"]) for d in parts if "encoder_id" in d}
    if len(ids) > 1:
        raise LikelihoodError(f"candidate data from different encoders {sorted(ids)} cannot be merged")
    for d in parts:
        top = offset
        for k, v in d.items():
            if k == "encoder_id":
                continue
            if k.endswith("_frame"):
                v = v + offset
                top = max(top, int(v.max()) + 1 if len(v) else top)
            out.setdefault(k, []).append(v)
        offset = top
    merged = {k: np.concatenate(v) for k, v in out.items()}
    if ids:
        merged["encoder_id"] = np.array(ids.pop())
    return merged


def labelled(data: dict) -> dict:
    """Features, labels (correct: within CORRECT_SIGMAS of the candidate's sigma) and masks per kind."""
    a, r = data["aligned"], data["retrieved"]
    return {
        "aligned_x": aligned_features(a[:, 2], a[:, 4], a[:, 6]),
        "aligned_y": data["aligned_dist"] <= CORRECT_SIGMAS * a[:, 3],
        "aligned_passed": a[:, 5] > 0.5,
        "retrieved_x": retrieved_features(r[:, 2], r[:, 4], r[:, 5], r[:, 6]),
        "retrieved_y": data["retrieved_dist"] <= CORRECT_SIGMAS * r[:, 3],
        "retrieved_used": data["retrieved_used"],
        "retrieved_probe": data["retrieved_probe"],
    }


def fit(data: dict, source: str, fix_rule: str = "max", encoder_id: str = "") -> VisualLikelihood:
    """Fit both score models: aligned on every alignment tried (the NCC gate is applied after), retrieved on every
    retrieval candidate, from the scoped searches and the whole-map probes (the scope feature tells them apart).

    ``fix_rule`` defaults to ``"max"``: ``"sum"`` treats candidates at distinct places as exclusive, which predicts
    the fixes of textured training areas better but was over-confident on the held-out lake of zurich_b, where a
    whole-map search returns many look-alike places each with a modest probability."""
    lab = labelled(data)
    ba, wa = fit_logistic(lab["aligned_x"], lab["aligned_y"])
    br, wr = fit_logistic(lab["retrieved_x"], lab["retrieved_y"])
    return VisualLikelihood(ScoreModel("aligned", ba, tuple(wa), int(len(lab["aligned_y"]))),
                            ScoreModel("retrieved", br, tuple(wr), int(len(lab["retrieved_y"]))), source, fix_rule,
                            encoder_id)


def _softmax_probs(scores: np.ndarray, frames: np.ndarray, temperature: float, p_in: float) -> np.ndarray:
    """The uncalibrated tracker's implied per-candidate probability: p_in * softmax(score / T) within each frame."""
    out = np.empty(len(scores))
    for f in np.unique(frames):
        m = frames == f
        a = scores[m] / temperature
        e = np.exp(a - a.max())
        out[m] = p_in * e / e.sum()
    return out


def _fix_level(p: np.ndarray, y: np.ndarray, frames: np.ndarray, agg) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: (agg(indices of its candidates), whether any of them is correct)."""
    fp, fy = [], []
    for f in np.unique(frames):
        idx = np.flatnonzero(frames == f)
        fp.append(agg(idx))
        fy.append(bool(y[idx].any()))
    return np.asarray(fp), np.asarray(fy)


def check(data: dict, lik: VisualLikelihood | None, *, temperature: float = 0.05, p_in: float = 0.8,
          align_min_score: float = 0.5, align_min_peak_ratio: float = 1.1) -> dict:
    """Reliability of ``lik`` (None: the uncalibrated softmax) on labelled data, per candidate and per fix, for:
    ``aligned`` (alignments passing the loop's gates: NCC, sigma, peak ratio), ``retrieved`` (scoped searches) and
    ``retrieved_wide`` (whole-map probes)."""
    lab = labelled(data)
    a = data["aligned"]
    probe = lab["retrieved_probe"]
    out = {}
    gated = lab["aligned_passed"] & (a[:, 2] >= align_min_score) & (a[:, 4] >= align_min_peak_ratio)
    for name, kind, mask in (("aligned", "aligned", gated), ("retrieved", "retrieved", ~probe),
                             ("retrieved_wide", "retrieved", probe)):
        x, y = lab[f"{kind}_x"][mask], lab[f"{kind}_y"][mask]
        frames, rows = data[f"{kind}_frame"][mask], data[kind][mask]
        if lik is None:
            p = _softmax_probs(rows[:, 2], frames, temperature, p_in)
            fp, fy = _fix_level(p, y, frames, lambda i: p_in)
        else:
            p = getattr(lik, kind).probability(x)
            fp, fy = _fix_level(p, y, frames, lambda i: lik.fix_probability(p[i], rows[i, :2], rows[i, 3]))
        out[name] = {"candidate": reliability(p, y), "fix": reliability(fp, fy)}
    return out


def sigma_coverage(data: dict) -> dict:
    """Share of correct aligned candidates within 1 and 2 of their stated sigmas (a 2-D Gaussian: 39 % and 86 %)
    and the median distance, metres."""
    lab = labelled(data)
    a = data["aligned"]
    m = lab["aligned_y"] & lab["aligned_passed"]
    z = data["aligned_dist"][m] / a[m, 3]
    return {"n": int(m.sum()), "within_1_sigma": float(np.mean(z <= 1)) if m.any() else math.nan,
            "within_2_sigma": float(np.mean(z <= 2)) if m.any() else math.nan,
            "median_sigma_m": float(np.median(a[m, 3])) if m.any() else math.nan,
            "median_error_m": float(np.median(data["aligned_dist"][m])) if m.any() else math.nan}


def save_data(path, data: dict) -> None:
    """Write :func:`collect_flight`/:func:`merge` arrays to ``path`` (.npz, numeric arrays only)."""
    np.savez_compressed(path, **{k: np.asarray(v) for k, v in data.items()})


def load_data(path) -> dict:
    """Read arrays written by :func:`save_data` (no pickle); LikelihoodError when a key is missing or malformed."""
    keys = {"aligned": 7, "retrieved": 7}
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise LikelihoodError(f"cannot read candidate data {path}: {exc}; write it with --save-data") from None
    need = ["aligned", "aligned_dist", "aligned_frame", "retrieved", "retrieved_dist", "retrieved_frame",
            "retrieved_used", "retrieved_probe"]
    missing = [k for k in need if k not in d]
    if missing:
        raise LikelihoodError(f"candidate data {path} lacks {missing}; write it with --save-data")
    for k, cols in keys.items():
        if d[k].ndim != 2 or d[k].shape[1] != cols:
            raise LikelihoodError(f"candidate data {path}: {k} must be float[n, {cols}], got {list(d[k].shape)}")
    out = {k: d[k] for k in need}
    if "encoder_id" in d:
        out["encoder_id"] = d["encoder_id"]
    return out


# ------------------------------------------------------------------------------------------------ commands
def _gather(args, progress) -> dict:
    from maps.build import build_map
    from maps.geotiff import load_orthophoto
    from maps.package import MapPackage

    from ..encoder import load_encoder
    from ..tools.scenarios import _sim_config, choose_flight, scaled_config
    from ..sim.flight import simulate

    encoder = load_encoder(args.model)
    parts = []
    for path in args.ortho:
        name = Path(path).stem if Path(path).is_file() else Path(path).name
        area = Path(args.out) / name
        ortho = load_orthophoto(path)
        cfg = choose_flight(path, scaled_config(args.duration), ortho)
        progress(f"{name}: {cfg.trajectory} at {cfg.speed_mps:g} m/s")
        map_dir = build_map(ortho, encoder, encoder.contract, area / "map", overwrite=True)
        package = MapPackage.load(map_dir)
        for flight in args.flights:
            scenario = flight.replace("-noimu", "")
            for seed in range(args.seed, args.seed + args.seeds):
                t0 = time.perf_counter()
                bag = area / f"{flight}_{seed}.bag"
                simulate(_sim_config(replace(cfg, seed=seed), scenario, str(path), str(bag)))
                loc = {"likelihood": "softmax"} if args.collect_with == "softmax" else {}
                if scenario == "no_gps":
                    loc["height_m"] = 60.0
                d = collect_flight(package, encoder, bag, drop_imu=flight.endswith("-noimu"), localizer=loc)
                parts.append(d)
                bag.unlink()
                progress(f"{name} {flight} seed {seed}: {len(d['aligned'])} alignments, {len(d['retrieved'])} "
                         f"retrieval candidates ({time.perf_counter() - t0:.0f} s)")
    out = merge(parts)
    out["encoder_id"] = np.array(encoder.contract.encoder_id)
    return out


def _table(title: str, rel: dict) -> str:
    lines = [f"{title}: n {rel['n']}, ECE {rel['ece']:.3f}, log loss {rel['log_loss']:.3f}, Brier {rel['brier']:.3f}"]
    for lo, hi, n, pm, om in rel["bins"]:
        lines.append(f"    p {lo:.1f}-{hi:.1f}  n {n:5d}  predicted {pm:.3f}  observed {om:.3f}")
    return "\n".join(lines)


def _report(name: str, res: dict) -> str:
    return "\n".join(_table(f"{name} {kind} per {lvl}", res[kind][lvl])
                     for kind in ("aligned", "retrieved", "retrieved_wide") for lvl in ("candidate", "fix"))


def register(subparsers) -> None:
    p = subparsers.add_parser("likelihood", help="calibrate the visual likelihood on simulated flights (fit) and "
                              "check it on held-out areas (check)", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="likelihood_command", metavar="ACTION", required=True)
    for action in ("fit", "check"):
        q = sub.add_parser(action, help={"fit": "fit the score models and write them as JSON",
                                         "check": "reliability of a calibration (and of the softmax) on other areas"}
                           [action])
        if action == "check":
            q.add_argument("calibration", metavar="CALIBRATION.json", help="file from `runtime likelihood fit`, or "
                           "'default' (the shipped one)")
        q.add_argument("ortho", nargs="+", metavar="ORTHO", help="orthophoto GeoTIFF(s) (fit: training areas; check: "
                       "held-out ones)")
        q.add_argument("--model", default="default", help="encoder (default: the shipped default model)")
        q.add_argument("--flights", nargs="+", choices=FLIGHTS, default=list(DEFAULT_FLIGHTS),
                       help="simulated flights per area and seed (default: %(default)s)")
        q.add_argument("--seeds", type=int, default=2, help="flights of each kind per area (default 2)")
        q.add_argument("--seed", type=int, default=1, help="first seed (default 1)")
        q.add_argument("--duration", type=float, default=60.0, help="flight duration, seconds (default 60)")
        q.add_argument("--collect-with", choices=("softmax", "default"), default="softmax",
                       help="likelihood the loop runs with while collecting (default softmax: the uncalibrated one)")
        q.add_argument("--out", default="likelihood-data", metavar="DIR", help="work folder (maps, bags)")
        q.add_argument("--json", default=None, metavar="FILE", help="also write the reliability figures as JSON")
        q.add_argument("--save-data", default=None, metavar="FILE.npz",
                       help="keep the labelled candidates (numeric arrays) to fit or check again without flying")
        q.add_argument("--data", nargs="+", default=None, metavar="FILE.npz",
                       help="use candidates kept by --save-data instead of flying (ORTHO is then only a label)")
        if action == "fit":
            q.add_argument("-o", "--output", required=True, metavar="CALIBRATION.json", help="where to write it")
            q.add_argument("--fix-rule", choices=FIX_RULES, default="max",
                           help="how candidate probabilities become the fix's: the best one (max, default) or the "
                                "sum over distinct places (sum)")
        q.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from ..likelihood import default_likelihood

    def progress(s: str) -> None:
        print(s, file=sys.stderr, flush=True)

    if args.likelihood_command == "check":
        lik = default_likelihood() if args.calibration == "default" else VisualLikelihood.load(args.calibration)
    data = merge([load_data(p) for p in args.data]) if args.data else _gather(args, progress)
    if args.save_data:
        save_data(args.save_data, data)
    if args.likelihood_command == "fit":
        names = ", ".join(Path(p).stem if Path(p).is_file() else Path(p).name for p in args.ortho)
        lik = fit(data, f"runtime likelihood fit on {names}: flights {' '.join(args.flights)}, {args.seeds} seeds "
                        f"from {args.seed}, {args.duration:g} s, model {args.model}", args.fix_rule,
                  str(data.get("encoder_id", "")))
    res = {"calibrated": check(data, lik), "softmax": check(data, None), "sigma": sigma_coverage(data)}
    print(_report("calibrated", res["calibrated"]))
    print(_report("softmax", res["softmax"]))
    s = res["sigma"]
    print(f"aligned sigma: {s['n']} correct candidates, {100 * s['within_1_sigma']:.0f} % within 1 sigma, "
          f"{100 * s['within_2_sigma']:.0f} % within 2 (Gaussian: 39 %, 86 %); median sigma {s['median_sigma_m']:.2f} m,"
          f" median error {s['median_error_m']:.2f} m")
    if args.likelihood_command == "fit":
        lik.save(args.output, {"check": {"on": "training flights", **res}})
        print(f"wrote {args.output}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


__all__ = ["collect_flight", "merge", "labelled", "fit", "check", "sigma_coverage", "save_data", "load_data",
           "register", "LikelihoodError"]
