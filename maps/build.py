"""Build a map package from an orthophoto with any encoder: plan tiles, cut them, embed them, write the package.

An encoder is any callable ``embed(images: uint8[n, h, w, 3] RGB) -> float32[n, d]`` with L2-normalised rows,
together with its :class:`~maps.contract.EncoderContract` (the classical baseline of :mod:`maps.descriptors` and
the learned ONNX/TensorRT models all fit).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .contract import EncoderContract
from .errors import EncoderMismatchError, MapError
from .ortho import Orthophoto
from .package import check_destination, check_hnsw_dim, write_package
from .tiling import TileGrid, cut_tiles, plan_tiles, resample_to_gsd

#: Allowed deviation of an embedding row's L2 norm from 1.
NORM_TOLERANCE = 1e-2


def check_embeddings(out, n: int, contract: EncoderContract) -> np.ndarray:
    """Validate an encoder's output for ``n`` images: float32[n, contract.embedding_dim], finite, unit rows."""
    if not isinstance(out, np.ndarray):
        raise MapError(f"the encoder must return a numpy float32 array [n, d], got {type(out).__name__}")
    if out.dtype != np.float32:
        raise MapError(f"the encoder must return float32 embeddings, got {out.dtype}; cast its output with .astype(np.float32)")
    if out.ndim != 2 or out.shape[0] != n:
        raise MapError(f"the encoder returned shape {list(out.shape)} for {n} images; expected [{n}, {contract.embedding_dim}]")
    if out.shape[1] != contract.embedding_dim:
        raise EncoderMismatchError(
            f"the encoder returned {out.shape[1]}-dimensional embeddings but its contract "
            f"{contract.encoder_id!r} says embedding_dim={contract.embedding_dim}; pass the contract of this encoder"
        )
    if not np.all(np.isfinite(out)):
        rows = np.flatnonzero(~np.all(np.isfinite(out), axis=1))
        raise MapError(f"the encoder returned NaN or infinite values (rows {rows[:10].tolist()} of this batch)")
    norms = np.linalg.norm(out, axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > NORM_TOLERANCE)
    if bad.size:
        raise MapError(
            f"the encoder must return L2-normalised rows (norm 1 +/- {NORM_TOLERANCE}); rows {bad[:10].tolist()} have "
            f"norms {np.round(norms[bad[:10]], 4).tolist()}; normalise with x / np.linalg.norm(x, axis=1, keepdims=True)"
        )
    return out


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise MapError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def build_map(
    ortho: Orthophoto,
    embed,
    contract: EncoderContract,
    out_dir,
    *,
    tile_size_m: float | None = None,
    stride_m: float | None = None,
    min_valid_fraction: float = 0.9,
    ground_elevation_m: float = 0.0,
    batch_size: int = 64,
    hnsw_m: int = 16,
    hnsw_ef_construction: int = 200,
    hnsw_dim: int | None = None,
    progress=None,
    store_imagery: bool = True,
    overwrite: bool = False,
    provenance: dict | None = None,
    tile_centres=None,
) -> Path:
    """Build a map package from ``ortho`` with the encoder ``embed``/``contract``; returns the package path.

    Args:
        ortho: the orthophoto in its local frame (e.g. from :func:`maps.geotiff.load_orthophoto`).
        embed: ``embed(uint8[n, s, s, 3] RGB) -> float32[n, d]`` unit rows, ``s = contract.input_width``.
        contract: the encoder's contract; recorded in the manifest and checked when the map is loaded.
        out_dir: package directory to create (written atomically).
        tile_size_m, stride_m: tile side and spacing in metres (defaults: contract footprint and a quarter of it).
        min_valid_fraction: keep tiles with at least this fraction of valid orthophoto pixels.
        ground_elevation_m: ground height of the map (height above ground = GPS altitude - this).
        batch_size: images per ``embed`` call.
        hnsw_m, hnsw_ef_construction: HNSW graph parameters.
        hnsw_dim: dimension p of the HNSW graph's vectors (default min(d, 64)): the index holds an uncentred PCA
            projection of the embeddings and search re-ranks its candidates exactly; p = d: no projection.
        progress: optional ``progress(stage: str, done: int, total: int)``; stages "embed" (tiles), "write",
            "index" (HNSW insertions) and "done".
        store_imagery: also store the map imagery at the tiles' gsd as ``imagery.png`` (RGBA).
        overwrite: replace an existing map package at ``out_dir``.
        provenance: JSON-able facts about how the imagery was made, kept in the manifest's ``build`` object under
            ``provenance`` (``skyfix maps build --photos`` stores the survey's calibration there, which
            ``runtime replay PHOTOS --survey-calibration MAP`` reads back).
        tile_centres: (xs float[a] ascending, ys float[b] descending) metres: the tile columns and rows to use
            instead of a grid centred on ``ortho`` (a region's shard takes its part of the region's grid, see
            :func:`maps.tiling.plan_tiles`).
    """
    if not isinstance(ortho, Orthophoto):
        raise MapError(f"build_map needs an Orthophoto, got {type(ortho).__name__}")
    if not isinstance(contract, EncoderContract):
        raise MapError(f"build_map needs the encoder's EncoderContract, got {type(contract).__name__}")
    if not callable(embed):
        raise MapError(f"embed must be a callable images -> embeddings, got {type(embed).__name__}")
    check_destination(out_dir, overwrite)  # before any tile is embedded
    batch_size = _positive_int("batch_size", batch_size)
    hnsw_m = _positive_int("hnsw_m", hnsw_m)
    hnsw_ef_construction = _positive_int("hnsw_ef_construction", hnsw_ef_construction)
    hnsw_dim = check_hnsw_dim(hnsw_dim, contract.embedding_dim)
    try:
        ground = float(ground_elevation_m)
    except (TypeError, ValueError) as exc:
        raise MapError(f"ground_elevation_m must be a number of metres, got {ground_elevation_m!r}") from exc
    if not math.isfinite(ground):
        raise MapError(f"ground_elevation_m must be finite, got {ground_elevation_m!r}")
    report = progress or (lambda stage, done, total: None)
    grid = TileGrid.from_contract(contract, tile_size_m, stride_m)
    positions = plan_tiles(ortho, grid, min_valid_fraction, centres=tile_centres)
    n = positions.shape[0]
    if n == 0:
        x0, y0, x1, y1 = ortho.bounds
        raise MapError(
            f"no tile fits: the orthophoto covers {x1 - x0:.1f} x {y1 - y0:.1f} m with {ortho.mask.mean():.0%} valid "
            f"pixels, tiles are {grid.tile_size_m:g} m with --min-valid {min_valid_fraction}; use a larger "
            "orthophoto, smaller tiles (--tile-size-m) or a lower --min-valid"
        )
    resampled = resample_to_gsd(ortho, grid.gsd)
    size = grid.size_px
    emb = np.empty((n, contract.embedding_dim), dtype=np.float32)
    report("embed", 0, n)
    for s in range(0, n, batch_size):
        e = min(n, s + batch_size)
        images = cut_tiles(resampled, positions[s:e], grid, size)
        emb[s:e] = check_embeddings(embed(images), e - s, contract)
        report("embed", e, n)
    params = {
        "tile_size_m": grid.tile_size_m, "stride_m": grid.stride_m, "min_valid_fraction": float(min_valid_fraction),
        "batch_size": batch_size, "hnsw_m": hnsw_m, "hnsw_ef_construction": hnsw_ef_construction,
        "hnsw_dim": hnsw_dim,
        "ortho_gsd": float(ortho.gsd), "ortho_size_px": [ortho.width, ortho.height],
    }
    if provenance:
        params["provenance"] = dict(provenance)  # what made the imagery (e.g. a photo survey's calibration)
    return write_package(
        out_dir, embeddings=emb, positions=positions, frame=ortho.frame, contract=contract, tile_grid=grid,
        build_params=params, sources=ortho.sources, ground_elevation_m=ground,
        imagery=resampled if store_imagery else None, hnsw_m=hnsw_m, hnsw_ef_construction=hnsw_ef_construction,
        hnsw_dim=hnsw_dim,
        overwrite=overwrite, progress=report,
    )
