"""``skyfix maps``: build, inspect, verify, search and benchmark map packages.

Handlers import numpy, hnswlib, OpenCV and rasterio only when they run, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NO_MODEL_LOADER = (
    "--model needs an encoder loader, which the `skyfix` command provides (the maps package itself runs no "
    "models); run `skyfix maps build ... --model MODEL`, or drop --model for the classical baseline descriptor"
)


BUILD_EXAMPLES = """examples:
  skyfix maps build ortho.tif -o zurich.map
  skyfix maps build https://example.com/ortho_cog.tif -o area.map          (a remote COG, read through /vsicurl/)
  skyfix maps build /vsicurl/https://example.com/ortho_cog.tif -o area.map
  skyfix maps build --tiles cache/ --scheme xyz --zoom 18 --bbox 8.535,47.372,8.541,47.376 -o area.map
  skyfix maps build area.mbtiles --bbox 8.535,47.372,8.541,47.376 -o area.map  (MBTiles: TMS rows, the spec)
  skyfix maps build sf.mbtiles --bbox=-122.42,37.77,-122.41,37.78 -o sf.map     ('=' when it starts with '-')
  skyfix maps build scan.tif --crs EPSG:2056 --transform 0.5,0,2679062.5,0,-0.5,1248000 -o area.map
"""


class _WrappedDescription(argparse.RawDescriptionHelpFormatter):
    """Wraps the description as usual but keeps the epilog's example lines as written."""

    def _fill_text(self, text, width, indent):
        if text.startswith("examples:"):
            return super()._fill_text(text, width, indent)
        return argparse.HelpFormatter._fill_text(self, text, width, indent)


def register(subparsers, *, load_encoder=None, photo_mosaic=None) -> None:
    """Add the ``maps`` command group to ``subparsers`` (from ``ArgumentParser.add_subparsers``).

    Args:
        load_encoder: ``load_encoder(model: str) -> embed`` where ``embed(uint8[n, h, w, 3]) -> float32[n, d]``
            carries its contract as ``embed.contract`` (:func:`runtime.encoder.load_encoder`); the CLI wiring
            passes it, so that ``maps build --model`` works without the maps package importing any runtime.
            ``"default"`` names the shipped default model (the loader resolves it).
        photo_mosaic: ``photo_mosaic(paths, *, gsd, camera, progress, tilt_from_images) -> (Orthophoto, report
            dict)`` that makes an orthomosaic from geotagged photos (:func:`runtime.mapping.photo_map.mosaic_from_photos`), for
            ``maps build --photos``.
    """
    maps = subparsers.add_parser(
        "maps", help="build, inspect, verify, search and benchmark map packages",
        description="Map packages: tiles of georeferenced orthophotos, their embeddings and an HNSW index.",
    )
    sub = maps.add_subparsers(dest="maps_command", metavar="SUBCOMMAND", required=True)

    b = sub.add_parser(
        "build", help="build a map package from GeoTIFF orthophoto(s) or a survey's geotagged photos",
        description="Reproject the orthophoto(s) into a local frame, cut tiles on a metric grid (defaults from the "
                    "encoder's contract), embed them and write a map package (atomically). With --photos, the "
                    "orthophoto is first made from a survey's own geotagged photos: each rectified to the ground "
                    "with its GPS, height and attitude (flat ground assumed), registered to its overlapping "
                    "neighbours (SIFT, RANSAC, a robust least-squares adjustment of one similarity per photo) and "
                    "blended; the mosaic is written as a GeoTIFF (--mosaic-out) with a JSON report of the "
                    "registration residuals next to it. Web map tiles (an XYZ/TMS folder with --tiles, or an "
                    "MBTiles file) are read for --bbox at one --zoom and warped to metres.",
        epilog=BUILD_EXAMPLES,
        formatter_class=_WrappedDescription,
    )
    b.add_argument("ortho", nargs="*", metavar="ORTHO",
                   help="GeoTIFF/COG file(s) or folder(s), any CRS; a URL (https://..., /vsicurl/https://...) is read "
                        "by GDAL as given; an .mbtiles file needs --bbox")
    src = b.add_argument_group("web map tiles (XYZ/TMS folders and MBTiles, EPSG:3857)")
    src.add_argument("--tiles", metavar="DIR", default=None,
                     help="a folder of web map tiles DIR/Z/X/Y.png (or .jpg/.jpeg/.webp); needs --scheme and --bbox")
    src.add_argument("--scheme", choices=("xyz", "tms"), default=None,
                     help="tile row numbering: xyz (row 0 at the top/north: OpenStreetMap, Google, gdal2tiles "
                          "--xyz) or tms (row 0 at the bottom/south: gdal2tiles' default); required with --tiles, "
                          "tms by default for .mbtiles (the MBTiles spec)")
    src.add_argument("--zoom", type=int, default=None, metavar="Z",
                     help="zoom level to read (default: the highest in the folder / the MBTiles maxzoom)")
    src.add_argument("--bbox", default=None, metavar="LON_MIN,LAT_MIN,LON_MAX,LAT_MAX",
                     help="area to build, WGS84 degrees (with --tiles or an .mbtiles input); west of Greenwich "
                          "write it with '=': --bbox=-122.42,37.77,-122.41,37.78")
    geo = b.add_argument_group("georeference of GeoTIFFs that lack one")
    geo.add_argument("--crs", default=None, metavar="CRS",
                     help="CRS of the input(s) when the file has none or a wrong one, e.g. EPSG:2056")
    geo.add_argument("--transform", default=None, metavar="GSD,0,X_LEFT,0,-GSD,Y_TOP",
                     help="affine geotransform (6 numbers, rasterio order, in the CRS's units) of a single input "
                          "without one")
    b.add_argument("--photos", nargs="+", metavar="PHOTOS", default=None,
                   help="geotagged photo folder(s) or files (EXIF GPS; senseFly/DJI XMP attitude) to mosaic first")
    b.add_argument("--mosaic-out", metavar="MOSAIC.tif", default=None,
                   help="with --photos: where to write the orthomosaic GeoTIFF (default MAP.mosaic.tif next to MAP)")
    b.add_argument("--mosaic-gsd", type=float, default=0.25, metavar="M",
                   help="with --photos: orthomosaic resolution, m/px (default 0.25)")
    b.add_argument("--camera", metavar="CAMERA.yaml", default=None,
                   help="with --photos: camera intrinsics for photos whose EXIF does not give them")
    b.add_argument("--recorded-tilt", action="store_true",
                   help="with --photos: keep each photo's recorded roll and pitch (default: taken from the images of "
                        "the photos before and after it in its flight line where they register)")
    b.add_argument("-o", "--output", required=True, metavar="MAP", help="map package directory to write")
    b.add_argument("--model", metavar="MODEL", default=None,
                   help="encoder: an exported model file (.onnx, .engine, ...), 'default' (the shipped learned "
                        "model; the default), 'default-int8' (the same in INT8: the same map) or 'classical' (the "
                        "baseline descriptor)")
    b.add_argument("--gsd", type=float, metavar="M", help="orthophoto resolution in the local frame, m/px "
                   "(default: the source's); tiles are always cut at the encoder's resolution")
    b.add_argument("--tile-size-m", type=float, metavar="M", help="tile side, metres (default: encoder input x resolution)")
    b.add_argument("--stride-m", type=float, metavar="M", help="tile spacing, metres (default: tile size / 4)")
    b.add_argument("--ground-elevation", type=float, default=0.0, metavar="M",
                   help="ground elevation of the area (m above the GPS altitude reference; default 0)")
    b.add_argument("--min-valid", type=float, default=0.9, metavar="F",
                   help="keep tiles with at least this fraction of valid pixels (default 0.9)")
    b.add_argument("--batch-size", type=int, default=64, metavar="N", help="tiles per encoder call (default 64)")
    b.add_argument("--hnsw-dim", type=int, metavar="P", help="dimension of the HNSW graph's vectors: a PCA "
                   "projection of the embeddings, candidates re-ranked exactly (default min(d, 64); d = no projection)")
    b.add_argument("--no-imagery", action="store_true", help="do not store the map imagery (imagery.png)")
    b.add_argument("--overwrite", action="store_true", help="replace an existing map package")
    b.set_defaults(handler=_build, load_encoder=load_encoder, photo_mosaic=photo_mosaic)

    r = sub.add_parser(
        "build-region", help="build a region map (shards on a metric grid) from large GeoTIFFs/COGs/VRTs on Ray",
        description="Plan a region over the sources from their headers (one local frame, one tile grid), cut it "
                    "into --shard-km squares (each an ordinary map package holding the tiles within one tile "
                    "footprint of its core) and build the shards as Ray tasks on whatever workers the cluster has "
                    "(CPU, or GPU with --gpus-per-task). Each task reads only the windows of the sources under its "
                    "shard. Shards are written atomically; a rerun of the same command resumes (finished shards are "
                    "kept), and Ray retries a task whose worker died. Without --address a local Ray instance is "
                    "started. Needs the region extra: pip install 'skyfix[region]'.",
        epilog="examples:\n  skyfix maps build-region tiles/*.tif -o canton.region --shard-km 5\n"
               "  skyfix maps build-region big.vrt -o area.region --address ray://head:10001 --model default\n",
        formatter_class=_WrappedDescription,
    )
    r.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="GeoTIFF/COG/VRT file(s), folder(s) or URL(s), any CRS, visible to every worker")
    r.add_argument("-o", "--output", required=True, metavar="REGION", help="region directory to write")
    r.add_argument("--shard-km", type=float, default=5.0, metavar="KM", help="side of a shard, km (default 5)")
    r.add_argument("--address", default=None, metavar="ADDR",
                   help="Ray cluster to join: HOST:PORT as `ray start --head` prints it, ray://HEAD:10001 (Ray "
                        "Client) or 'auto' on a node of it (a cluster with token authentication: run with "
                        "RAY_AUTH_MODE=token and its token); default: a local Ray instance of the build's own")
    r.add_argument("--workers", type=int, default=None, metavar="N",
                   help="CPUs of the local Ray instance (default: all of this machine's)")
    r.add_argument("--cpus-per-task", type=float, default=1.0, metavar="N", help="Ray CPUs per shard task (default 1)")
    r.add_argument("--gpus-per-task", type=float, default=0.0, metavar="N",
                   help="Ray GPUs per shard task (default 0); with > 0 the encoder runs on cuda")
    r.add_argument("--model", metavar="MODEL", default=None,
                   help="encoder: a model file, 'default' (the default), 'default-int8' or 'classical'")
    r.add_argument("--crs", default=None, metavar="CRS", help="CRS of sources that lack one")
    r.add_argument("--gsd", type=float, metavar="M", help="mosaic resolution, m/px (default: the finest source's)")
    r.add_argument("--tile-size-m", type=float, metavar="M", help="tile side, metres (default: the encoder's)")
    r.add_argument("--stride-m", type=float, metavar="M", help="tile spacing, metres (default: tile size / 4)")
    r.add_argument("--ground-elevation", type=float, default=0.0, metavar="M", help="ground elevation (default 0)")
    r.add_argument("--min-valid", type=float, default=0.9, metavar="F", help="least valid fraction of a tile (0.9)")
    r.add_argument("--batch-size", type=int, default=64, metavar="N", help="tiles per encoder call (default 64)")
    r.add_argument("--hnsw-dim", type=int, metavar="P", help="HNSW graph dimension (default min(d, 64))")
    r.add_argument("--max-retries", type=int, default=3, metavar="N",
                   help="Ray retries of a shard whose worker process died (default 3)")
    r.add_argument("--overwrite", action="store_true", help="start over (delete the region and any unfinished build)")
    r.set_defaults(handler=_build_region, load_encoder=load_encoder)

    i = sub.add_parser("info", help="print a map package's (or a region's) manifest summary",
                       description="Tiles, bounds (WGS84 and local), encoder, tile grid and file sizes of a map, "
                                   "or of a region map and its shards.")
    i.add_argument("map", metavar="MAP", help="map package or region directory")
    i.add_argument("--json", action="store_true", help="print the summary as JSON")
    i.set_defaults(handler=_info)

    v = sub.add_parser("verify", help="check every file of a map package (or of every shard of a region) against its "
                                      "SHA-256",
                       description="Exit 0 when every file matches its manifest checksum; otherwise name the bad "
                                   "file(s) and exit non-zero. For a region: the region manifest, every shard's "
                                   "manifest against it and every file of every shard.")
    v.add_argument("map", metavar="MAP", help="map package or region directory")
    v.set_defaults(handler=_verify)

    s = sub.add_parser(
        "search", help="retrieve the map tiles nearest a query, scoped by a position prior",
        description="Query = the embedding of --image (a north-up ground image, resized to the encoder's input) or, "
                    "by default, the stored embedding of the tile nearest (--lat, --lon). Prints ranked tile ids, "
                    "scores, positions and distances from the prior centre.",
    )
    s.add_argument("map", metavar="MAP", help="map package directory")
    s.add_argument("--lat", type=float, required=True, help="prior centre latitude, degrees")
    s.add_argument("--lon", type=float, required=True, help="prior centre longitude, degrees")
    s.add_argument("--radius", type=float, metavar="M", help="prior radius, metres (default: whole map)")
    s.add_argument("--k", type=int, default=10, help="results (default 10)")
    s.add_argument("--image", metavar="PNG", help="north-up ground image to use as the query")
    s.add_argument("--exact", action="store_true", help="exact search only (no HNSW)")
    s.add_argument("--model", default=None, metavar="MODEL",
                   help="encoder for --image (default: the one that built the map: 'classical' or 'default')")
    s.set_defaults(handler=_search, load_encoder=load_encoder)

    bench = sub.add_parser(
        "bench", help="load-time and query-latency benchmark (table + JSON)",
        description="Builds (once, cached) a map of random unit embeddings, then measures load time, prior-scoped "
                    "exact search latency vs scope size, HNSW latency and recall@10 vs exact.",
    )
    bench.add_argument("--tiles", type=int, default=1_000_000, help="tiles in the benchmark map (default 1000000)")
    bench.add_argument("--dim", type=int, default=256, help="embedding dimension (default 256)")
    bench.add_argument("--cache", metavar="DIR", help="cache directory (default $SKYFIX_CACHE/bench or ~/.cache/skyfix/bench)")
    bench.add_argument("--rebuild", action="store_true", help="rebuild the cached benchmark map")
    bench.add_argument("--repeats", type=int, default=20, help="queries per scope size (default 20)")
    bench.add_argument("--load-repeats", type=int, default=3, help="map loads timed (default 3)")
    bench.add_argument("--queries", type=int, default=200, help="queries for HNSW latency and recall (default 200)")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--hnsw-dim", type=int, metavar="P", help="HNSW graph dimension (default min(--dim, 64))")
    bench.add_argument("--json", metavar="PATH", help="also write the results as JSON here ('-' for stdout)")
    bench.set_defaults(handler=_bench)

    t = sub.add_parser(
        "tiles", help="cut orthophotos into PNG tiles at a ground resolution (INT8 calibration/evaluation images)",
        description="Resample each orthophoto to --gsd and write every --size px tile with at least --min-valid "
                    "valid pixels, --stride px apart, as RGB PNGs named ORTHO_NNNNN.png.",
    )
    t.add_argument("ortho", nargs="+", metavar="ORTHO", help="GeoTIFF file(s)")
    t.add_argument("-o", "--output", required=True, metavar="DIR", help="folder to write the tiles to")
    t.add_argument("--gsd", type=float, default=0.4, help="metres per pixel (default 0.4, the default encoder's)")
    t.add_argument("--size", type=int, default=128, help="tile side, pixels (default 128)")
    t.add_argument("--stride", type=int, default=48, help="tile spacing, pixels (default 48)")
    t.add_argument("--min-valid", type=float, default=0.99, help="least valid fraction (default 0.99)")
    t.set_defaults(handler=_tiles)


def _err(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def _build(args: argparse.Namespace) -> int:
    from .errors import MapError
    from .package import check_destination

    check_destination(args.output, args.overwrite)  # refuse before any work (loading, mosaicking, embedding)
    sources = _build_sources(args)  # argument checks before loading a model
    encoder = None
    model = args.model
    if model is None and getattr(args, "load_encoder", None) is not None:
        model = "default"  # the shipped learned encoder, when the CLI wiring can load models
    if model not in (None, "classical"):
        if getattr(args, "load_encoder", None) is None:
            raise MapError(NO_MODEL_LOADER)
        encoder = args.load_encoder(model)
    try:
        from .descriptors import ClassicalDescriptor, classical_contract
        from .geotiff import load_orthophoto
    except ImportError as exc:
        raise MapError(f"this installation lacks part of SkyFix's maps package ({exc}); reinstall with `pip install -e .`") from exc
    from .build import build_map

    provenance = None
    if sources == "photos":
        ortho, provenance = _mosaic(args)
    elif sources == "tiles":
        ortho = _web_tiles(args)
    else:
        ortho = load_orthophoto(args.ortho, gsd=args.gsd, crs=args.crs, transform=args.transform_values)
    _err(f"orthophoto: {ortho.width}x{ortho.height} px at {ortho.gsd:g} m/px, {ortho.mask.mean():.0%} valid")
    descriptor, contract = (ClassicalDescriptor(), classical_contract()) if encoder is None else (encoder, encoder.contract)
    _err(f"encoder: {contract.name} ({contract.encoder_id}), {contract.input_width} px at "
         f"{contract.ground_resolution_m:g} m/px, d={contract.embedding_dim}")
    shown = {}

    def progress(stage, done, total):
        step = max(1, total // 10)
        if stage in ("embed", "index") and (done == total or done // step != shown.get(stage, -1)):
            shown[stage] = done // step
            _err(f"  {stage}: {done}/{total}")

    path = build_map(
        ortho, descriptor, contract, args.output, tile_size_m=args.tile_size_m, stride_m=args.stride_m,
        min_valid_fraction=args.min_valid, ground_elevation_m=args.ground_elevation, batch_size=args.batch_size,
        progress=progress, store_imagery=not args.no_imagery, overwrite=args.overwrite, hnsw_dim=args.hnsw_dim,
        provenance=provenance,
    )
    _print_summary(_summary(path))
    return 0


def _build_sources(args: argparse.Namespace) -> str:
    """Which input ``maps build`` reads ("photos", "tiles" or "ortho"), with its flags checked (typed errors)."""
    from .errors import MapError

    mbtiles = [o for o in args.ortho if str(o).lower().endswith(".mbtiles")]
    kinds = [name for name, given in (("orthophoto(s)", bool(args.ortho) and not mbtiles), ("--photos", bool(args.photos)),
                                      ("--tiles", args.tiles is not None), (".mbtiles", bool(mbtiles))) if given]
    if len(kinds) > 1 or len(mbtiles) > 1 or (mbtiles and len(args.ortho) > 1):
        raise MapError(f"give one kind of input, got {' and '.join(kinds) or 'several .mbtiles files'}: "
                       "orthophoto GeoTIFF(s), --photos FOLDER, --tiles DIR or one FILE.mbtiles")
    if not kinds:
        raise MapError("nothing to build from: give orthophoto GeoTIFF(s), --photos PHOTO_FOLDER, --tiles DIR "
                       "(with --scheme and --bbox) or FILE.mbtiles (with --bbox)")
    web = args.tiles is not None or bool(mbtiles)
    if not web:
        for flag, value in (("--scheme", args.scheme), ("--zoom", args.zoom), ("--bbox", args.bbox)):
            if value is not None:
                raise MapError(f"{flag} applies to web map tiles (--tiles DIR or FILE.mbtiles) only; drop it")
    else:
        for flag, value in (("--crs", args.crs), ("--transform", args.transform)):
            if value is not None:
                raise MapError(f"{flag} applies to GeoTIFFs only: web map tiles are in EPSG:3857 by definition; drop it")
        if args.tiles is not None and args.scheme is None:
            raise MapError("--tiles needs --scheme xyz|tms: xyz numbers rows from the top (north; OpenStreetMap, "
                           "Google, gdal2tiles --xyz), tms from the bottom (south; gdal2tiles' default); the folder "
                           "cannot say which, and the wrong one puts every row in the wrong place")
        if args.bbox is None:
            raise MapError("web map tiles need --bbox LON_MIN,LAT_MIN,LON_MAX,LAT_MAX (WGS84 degrees): the area to "
                           "build the map of")
        args.bbox_values = _bbox_arg(args.bbox)
    if args.photos and (args.crs or args.transform):
        raise MapError("--crs/--transform apply to GeoTIFF inputs, not to --photos; drop them")
    args.transform_values = _transform_arg(args.transform)
    return "photos" if args.photos else "tiles" if web else "ortho"


def _bbox_arg(text: str) -> tuple[float, float, float, float]:
    import math

    from .errors import MapError

    try:
        vals = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        vals = ()
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals):
        raise MapError(f"--bbox must be 4 numbers LON_MIN,LAT_MIN,LON_MAX,LAT_MAX (WGS84 degrees), got {text!r}")
    return vals  # range and order are checked by maps.webtiles


def _transform_arg(text):
    from .errors import MapError

    if text is None:
        return None
    try:
        vals = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        vals = []
    if len(vals) != 6:
        raise MapError(f"--transform must be 6 numbers GSD,0,X_LEFT,0,-GSD,Y_TOP (rasterio order), got {text!r}")
    return vals


def _web_tiles(args: argparse.Namespace):
    """The orthophoto of ``--bbox`` from an XYZ/TMS tile folder (``--tiles``) or an MBTiles file."""
    from .webtiles import load_mbtiles, load_tile_folder

    progress = lambda msg: _err(f"  {msg}")  # noqa: E731
    if args.tiles is not None:
        return load_tile_folder(args.tiles, args.bbox_values, scheme=args.scheme, zoom=args.zoom, gsd=args.gsd,
                                log=progress)
    return load_mbtiles(args.ortho[0], args.bbox_values, zoom=args.zoom, scheme=args.scheme or "tms", gsd=args.gsd,
                        log=progress)


def _mosaic(args: argparse.Namespace):
    """The orthomosaic of ``args.photos`` (written to ``--mosaic-out`` with its report as JSON next to it), and the
    map's provenance: the survey's calibration from the report."""
    import json

    from .errors import MapError
    from .geotiff import write_geotiff

    if getattr(args, "photo_mosaic", None) is None:
        raise MapError("maps build --photos needs the runtime package's photo mosaic (run it as `skyfix maps build`)")
    out = Path(args.mosaic_out) if args.mosaic_out else Path(str(Path(args.output)).rstrip("/") + ".mosaic.tif")
    if out.exists() and not args.overwrite:
        raise MapError(f"{out} exists: pass --overwrite to replace it, or --mosaic-out elsewhere")

    def progress(stage, done, total):
        if done == total:
            _err(f"  mosaic {stage}: {done}/{total}")

    ortho, report = args.photo_mosaic(args.photos, gsd=args.mosaic_gsd, camera=args.camera, progress=progress,
                                      tilt_from_images=not args.recorded_tilt)
    write_geotiff(out, ortho)
    rep_path = out.with_suffix(".json")
    rep_path.write_text(json.dumps(report, indent=1))
    r = report["residual_m"]
    _err(f"mosaic: {report['photos']} photos, {report['pairs_used']} of {report['pairs_tried']} overlapping pairs "
         f"registered; residual median {r['after_median']:.2f} m, p95 {r['after_p95']:.2f} m (placed by GPS alone: "
         f"{r['before_median']:.1f} / {r['before_p95']:.1f} m) -> {out} ({ortho.width}x{ortho.height} px at "
         f"{ortho.gsd:g} m/px), report {rep_path}")
    tilt = report.get("tilt_from_images")
    if tilt:
        f = lambda v: "?" if v is None else f"{v:.1f}"
        _err(f"tilt from the images: {tilt['photos']} of {report['photos']} photos ({tilt['pairs_used']} consecutive "
             f"pairs registered), a median {f(tilt['median_change_deg'])} deg from the recorded tilt; one pair gives "
             f"it to {f(tilt['pair_tilt_sigma_deg'])} deg per axis, the recorded tilt is off by "
             f"{f(tilt['recorded_tilt_sigma_deg'])} deg (--recorded-tilt: keep the recorded roll and pitch)")
        bore = tilt.get("boresight_deg")
        if bore:
            _err(f"boresight: the camera is tilted {bore['x_deg']:.1f} / {bore['y_deg']:.1f} deg (camera x / y) "
                 f"against its recorded attitude ({bore['photos']} photos): every photo's mount turned by it, and a "
                 "later flight's with --survey-calibration")
    # the survey's calibration travels with the map: a later flight of the same aircraft takes it with
    # `runtime replay PHOTOS --survey-calibration MAP`
    keys = ("camera_offset_m", "survey_scale", "placement_sigma_m", "survey_height_m", "attitude_sigma_deg",
            "boresight_deg")
    survey = {k: report[k] for k in keys if k in report}
    survey["report"] = rep_path.name
    return ortho, {"survey_calibration": survey}


def _build_region(args: argparse.Namespace) -> int:
    from .errors import MapError
    from .region_build import EncoderSpec, build_region

    model = args.model
    if model is None and getattr(args, "load_encoder", None) is not None:
        model = "default"
    if model is None:
        model = "classical"
    if model != "classical" and getattr(args, "load_encoder", None) is None:
        raise MapError(NO_MODEL_LOADER)
    kwargs = {"threads": max(1, int(args.cpus_per_task))}
    if args.gpus_per_task > 0:
        kwargs["device"] = "cuda"
    spec = EncoderSpec(model, None if model == "classical" else args.load_encoder, tuple(sorted(kwargs.items())))

    def progress(event, info):
        if event == "plan":
            _err(f"region: {info['shards']} shards ({info['grid'][0]} x {info['grid'][1]} of "
                 f"{info['shard_m']:.0f} m), mosaic {info['mosaic_px'][0]} x {info['mosaic_px'][1]} px at "
                 f"{info['gsd']:g} m/px")
        elif event == "resume":
            _err(f"resuming: {info['finished']} shards finished before, {info['todo']} to build")
        elif event == "shard":
            if "error" in info:
                _err(f"  shard {info['id']}: FAILED: {info['error']}")
            else:
                _err(f"  shard {info['id']}: {info['n_tiles']} tiles in {info['seconds']:.1f} s "
                     f"({info['done']}/{info['total']})")

    rep = build_region(args.sources, args.output, spec, shard_km=args.shard_km, address=args.address,
                       workers=args.workers, cpus_per_task=args.cpus_per_task, gpus_per_task=args.gpus_per_task,
                       max_retries=args.max_retries, overwrite=args.overwrite, progress=progress, gsd=args.gsd,
                       crs=args.crs, tile_size_m=args.tile_size_m, stride_m=args.stride_m,
                       min_valid_fraction=args.min_valid, ground_elevation_m=args.ground_elevation,
                       batch_size=args.batch_size, hnsw_dim=args.hnsw_dim)
    _err(f"built {rep['built']} shards, {rep['resumed']} resumed, {rep['empty']} empty: {rep['tiles']} tiles, "
         f"{rep['bytes'] / 1e6:.1f} MB, {rep['area_km2']:.2f} km2 in {rep['seconds']:.1f} s")
    _print_summary(_summary(args.output))
    return 0


def _summary(path) -> dict:
    from .package import MapPackage
    from .region import is_region, region_summary

    if is_region(path):
        return region_summary(path)
    return MapPackage.load(path, hnsw="off").summary()


def _print_summary(s: dict) -> None:
    e, g, b, w = s["encoder"], s["tile_grid"], s["bounds_local"], s["bounds_wgs84"]
    if s.get("kind") == "region":
        sg = s["shard_grid"]
        print(f"region         {s['path']}  (region format v{s['format_version']}, built {s['created_utc']})")
        print(f"shards         {s['shards']} ({sg['ny']} x {sg['nx']} grid of {sg['shard_size_m']:.0f} m, overlap "
              f"{sg['overlap_m']:g} m), {s['empty_shards']} empty")
        print(f"tiles          {s['tiles']}  ({g['tile_size_m']:g} m tiles every {g['stride_m']:g} m, {g['gsd']:g} m/px; "
              "overlaps counted in each shard)")
        print(f"encoder        {e['encoder_id']} ({e['name']}): {e['input_width']}x{e['input_height']} px at "
              f"{e['ground_resolution_m']:g} m/px -> {e['embedding_dim']} dims, {e['metric']}")
        print(f"bounds WGS84   lat [{w['lat_min']:.6f}, {w['lat_max']:.6f}], lon [{w['lon_min']:.6f}, {w['lon_max']:.6f}]")
        print(f"bounds local   x [{b[0]:.1f}, {b[2]:.1f}] m, y [{b[1]:.1f}, {b[3]:.1f}] m  ({b[2] - b[0]:.0f} x "
              f"{b[3] - b[1]:.0f} m, frame origin lat {s['frame']['lat0']:.6f}, lon {s['frame']['lon0']:.6f})")
        print(f"size           {s['total_bytes'] / 1e6:.2f} MB (largest shard {s['largest_shard_bytes'] / 1e6:.2f} MB)")
        c = s["build"].get("cluster", {})
        print(f"built on       Ray {c.get('ray_version', '?')} ({c.get('address', '?')}, {c.get('nodes', '?')} "
              f"node(s), {c.get('cpus', '?')} CPUs, {c.get('gpus', '?')} GPUs)")
        return
    print(f"map            {s['path']}  (format v{s['format_version']}, built {s['created_utc']})")
    print(f"tiles          {s['tiles']}  ({g['tile_size_m']:g} m tiles every {g['stride_m']:g} m, {g['gsd']:g} m/px)")
    print(f"encoder        {e['encoder_id']} ({e['name']}): {e['input_width']}x{e['input_height']} px at "
          f"{e['ground_resolution_m']:g} m/px -> {e['embedding_dim']} dims, {e['metric']}")
    print(f"bounds WGS84   lat [{w['lat_min']:.6f}, {w['lat_max']:.6f}], lon [{w['lon_min']:.6f}, {w['lon_max']:.6f}]")
    print(f"bounds local   x [{b[0]:.1f}, {b[2]:.1f}] m, y [{b[1]:.1f}, {b[3]:.1f}] m  "
          f"({b[2] - b[0]:.0f} x {b[3] - b[1]:.0f} m, frame origin lat {s['frame']['lat0']:.6f}, lon {s['frame']['lon0']:.6f})")
    print(f"ground         {s['ground_elevation_m']:g} m")
    proj = "no projection" if s["hnsw"]["dim"] == s["embedding_dim"] else "PCA projection, exact re-rank"
    print(f"hnsw           M={s['hnsw']['M']}, ef_construction={s['hnsw']['ef_construction']}, "
          f"graph over {s['hnsw']['dim']} dims ({proj})")
    print(f"imagery        {'yes' if s['imagery'] else 'no'}")
    src = s["sources"]
    more = f" (+{len(src) - 3} more)" if len(src) > 3 else ""
    print(f"sources        {', '.join(src[:3]) or '-'}{more}")
    print(f"size           {s['total_bytes'] / 1e6:.2f} MB")
    for name, size in s["file_sizes"].items():
        print(f"  {name:<20} {size:>14,d} bytes")


def _info(args: argparse.Namespace) -> int:
    s = _summary(args.map)
    if args.json:
        import json

        print(json.dumps(s, indent=2))
    else:
        _print_summary(s)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from .package import integrity_error, verify_map
    from .region import is_region, verify_region

    if is_region(args.map):
        rep = verify_region(args.map, raise_on_error=False)
        for sid, status in rep.shards:
            print(f"{'OK ' if status == 'ok' else 'BAD'}  {sid:<12} {status}")
        for name in rep.unexpected:
            print(f"?    {name:<12} not listed in the region manifest (ignored)")
        if not rep.ok:
            verify_region(args.map)  # raises the typed error naming the bad shards
        print(f"OK: region {args.map} verified ({len(rep.shards)} shards, every file of each)")
        return 0

    report = verify_map(args.map, raise_on_error=False)
    for f in report.files:
        print(f"{'OK ' if f.status == 'ok' else 'BAD'}  {f.name:<20} {f.status:<8} {f.actual_sha256 or '-'}")
    for name in report.unexpected:
        print(f"?    {name:<20} not listed in the manifest (ignored)")
    if not report.ok:
        raise integrity_error(report)
    print(f"OK: map {args.map} verified ({len(report.files)} files + manifest)")
    return 0


def _search(args: argparse.Namespace) -> int:
    import math

    import numpy as np

    from .errors import MapError, QueryError
    from .package import MapPackage

    if args.k <= 0:
        raise QueryError(f"--k must be a positive integer, got {args.k}")
    if args.radius is not None and not (math.isfinite(args.radius) and args.radius > 0):
        raise QueryError(f"--radius must be > 0 metres, got {args.radius}")
    embed = None
    if args.image:
        pkg = MapPackage.load(args.map, hnsw="lazy")
        eid = pkg.contract.encoder_id
        model = args.model or ("classical" if eid.startswith("classical") else
                               "default+classical" if "+classical" in eid else "default")
        if model == "classical":
            try:
                from .descriptors import ClassicalDescriptor, classical_contract
            except ImportError as exc:
                raise MapError(f"the classical descriptor is not available in this installation ({exc})") from exc
            embed, expect = ClassicalDescriptor(), classical_contract()
        else:
            if getattr(args, "load_encoder", None) is None:
                raise MapError(NO_MODEL_LOADER)
            embed = args.load_encoder(model)
            expect = embed.contract
    pkg = MapPackage.load(args.map, expect_contract=expect if embed is not None else None, hnsw="lazy")
    x, y = pkg.to_local(args.lat, args.lon)
    if args.image:
        import cv2

        raw = np.fromfile(args.image, dtype=np.uint8) if _exists(args.image) else None
        img = cv2.imdecode(raw, cv2.IMREAD_COLOR) if raw is not None and raw.size else None
        if img is None:
            raise MapError(f"cannot read the query image {args.image!r} (expected a PNG/JPEG north-up ground image)")
        c = pkg.contract
        img = cv2.resize(img, (c.input_width, c.input_height), interpolation=cv2.INTER_AREA)
        q = embed(np.ascontiguousarray(img[..., ::-1])[None])
        what = f"image {args.image}"
    else:
        tid = pkg.nearest_tile(x, y)
        q = pkg.embedding([tid])
        tx, ty = pkg.positions[tid]
        what = f"stored embedding of tile {tid} ({math.hypot(tx - x, ty - y):.1f} m from the prior centre)"
    prior = None if args.radius is None else (x, y, args.radius)
    scores, ids = pkg.search(q, args.k, prior, exact=args.exact)
    lat, lon = pkg.tile_latlon(ids[0])
    scope = "whole map" if prior is None else f"{pkg.scope_ids(prior).size} tiles within {args.radius:g} m"
    print(f"query: {what}; scope: {scope}; search: {pkg.searcher.last_path}")
    print(f"{'rank':>4}  {'id':>9}  {'score':>8}  {'lat':>11}  {'lon':>12}  {'dist_m':>8}")
    for r, (tid, sc) in enumerate(zip(ids[0].tolist(), scores[0].tolist()), start=1):
        if tid < 0:
            print(f"{r:>4}  {'-':>9}  {'-':>8}  (fewer tiles in scope than k)")
            continue
        px, py = pkg.positions[tid]
        print(f"{r:>4}  {tid:>9d}  {sc:8.4f}  {lat[r - 1]:11.6f}  {lon[r - 1]:12.6f}  {math.hypot(px - x, py - y):8.1f}")
    return 0


def _exists(path: str) -> bool:
    import os

    return os.path.isfile(path)


def _bench(args: argparse.Namespace) -> int:
    import json

    from .bench import format_table, run_bench
    from .errors import MapError

    for name in ("tiles", "dim", "repeats", "load_repeats", "queries"):
        if getattr(args, name) <= 0:
            raise MapError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    result = run_bench(args.tiles, args.dim, cache_dir=args.cache, rebuild=args.rebuild, repeats=args.repeats,
                       load_repeats=args.load_repeats, queries=args.queries, seed=args.seed, hnsw_dim=args.hnsw_dim,
                       log=_err)
    print(format_table(result))
    if args.json:
        text = json.dumps(result, indent=2)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w", encoding="utf-8") as fh:
                fh.write(text + "\n")
            _err(f"results written to {args.json}")
    return 0


def _tiles(args: argparse.Namespace) -> int:
    from pathlib import Path

    import cv2
    import numpy as np

    from .errors import MapError
    from .geotiff import load_orthophoto
    from .tiling import resample_to_gsd

    if args.size <= 0 or args.stride <= 0 or not args.gsd > 0:
        raise MapError(f"--size and --stride must be > 0 pixels and --gsd > 0 m, got {args.size}, {args.stride}, "
                       f"{args.gsd}")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    total = 0
    for path in args.ortho:
        o = resample_to_gsd(load_orthophoto(path), args.gsd)
        name, n, s = Path(path).stem, 0, args.size
        for y in range(0, o.height - s + 1, args.stride):
            for x in range(0, o.width - s + 1, args.stride):
                if o.mask[y:y + s, x:x + s].mean() >= args.min_valid:
                    tile = np.ascontiguousarray(o.image[y:y + s, x:x + s, ::-1])
                    if not cv2.imwrite(str(out / f"{name}_{n:05d}.png"), tile):
                        raise MapError(f"cannot write {out / f'{name}_{n:05d}.png'}")
                    n += 1
        _err(f"{path}: {n} tiles of {s} px at {args.gsd:g} m/px")
        total += n
    print(f"{total} tiles -> {out}")
    return 0
