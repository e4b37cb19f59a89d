"""Map package format: manifest contents, files, integrity (one flipped byte), typed load errors, atomic writes."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from maps.build import build_map
from maps.contract import EncoderContract
from maps.errors import EncoderMismatchError, MapError, MapFormatError, MapIntegrityError
from maps.geodesy import LocalFrame
from maps.ortho import Orthophoto
from maps.package import (DUPLICATES, FORMAT_VERSION, MANIFEST, MANIFEST_SUM, PROJECTION, Manifest, MapPackage,
                          check_hnsw_dim, verify_map, write_package)
from maps.tiling import TileGrid, resample_to_gsd

FRAME = LocalFrame(52.0, 5.0)
CONTRACT = EncoderContract("tiny-v1", "tiny test encoder", 16, 16, 1.0, 12)


def tiny_embed(images: np.ndarray) -> np.ndarray:
    """uint8[n, 16, 16, 3] -> float32[n, 12]: 2x2 colour thumbnail, centred, plus a constant (never zero)."""
    n = images.shape[0]
    small = images.reshape(n, 2, 8, 2, 8, 3).mean(axis=(2, 4)).reshape(n, 12).astype(np.float32)
    small -= small.mean(axis=1, keepdims=True)
    small[:, 0] += 1.0
    return (small / np.linalg.norm(small, axis=1, keepdims=True)).astype(np.float32)


def synthetic_ortho(seed=0, h=240, w=320, gsd=0.5) -> Orthophoto:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
    img = np.repeat(np.repeat(img, 8, axis=0), 8, axis=1)
    mask = np.ones((h, w), bool)
    mask[:40, :60] = False
    return Orthophoto(img, mask, gsd, -70.0, 50.0, FRAME, ("synthetic.tif",))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("pkg")
    path = build_map(synthetic_ortho(), tiny_embed, CONTRACT, root / "map", ground_elevation_m=412.5)
    return path


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def _rewrite_manifest(path: Path, mutate) -> None:
    """Edit manifest.json and re-sign it (manifest.sha256), to test validation beyond the checksum."""
    d = json.loads((path / MANIFEST).read_text())
    mutate(d)
    raw = (json.dumps(d, indent=2) + "\n").encode()
    (path / MANIFEST).write_bytes(raw)
    (path / MANIFEST_SUM).write_text(f"{hashlib.sha256(raw).hexdigest()}  {MANIFEST}\n")


def _resign_file(path: Path, name: str) -> None:
    data = (path / name).read_bytes()
    _rewrite_manifest(path, lambda d: d["files"].__setitem__(name, {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}))


def test_package_layout_and_manifest(built):
    names = sorted(p.name for p in built.iterdir())
    assert names == sorted(["manifest.json", "manifest.sha256", "embeddings.f16.npy", "positions.f64.npy",
                            "cells.i64.npy", "duplicates.i64.npy", "index.hnsw", "imagery.png"])
    m = json.loads((built / MANIFEST).read_text())
    assert m["format"] == "skyfix-map" and m["format_version"] == FORMAT_VERSION
    assert m["frame"] == FRAME.to_dict() and m["crs"] == FRAME.proj4
    assert m["encoder"] == CONTRACT.to_dict()
    assert m["tile_grid"] == {"tile_size_m": 16.0, "stride_m": 4.0, "gsd": 1.0}
    assert m["embedding_dim"] == 12 and m["embedding_dtype"] == "float16" and m["metric"] == "cosine"
    assert m["ground_elevation_m"] == 412.5
    assert m["sources"] == ["synthetic.tif"]
    assert m["hnsw"]["space"] == "ip" and m["hnsw"]["M"] == 16 and m["hnsw"]["ef_construction"] == 200
    assert m["build"]["min_valid_fraction"] == 0.9 and m["build"]["batch_size"] == 64
    pos = np.load(built / "positions.f64.npy", allow_pickle=False)
    assert pos.dtype == np.float64 and pos.shape == (m["n_tiles"], 2)
    b = m["bounds_local"]
    assert b["x_min"] == pytest.approx(pos[:, 0].min() - 8) and b["x_max"] == pytest.approx(pos[:, 0].max() + 8)
    assert b["y_min"] == pytest.approx(pos[:, 1].min() - 8) and b["y_max"] == pytest.approx(pos[:, 1].max() + 8)
    lat, lon = FRAME.to_wgs84(np.array([b["x_min"], b["x_max"]]), np.array([b["y_min"], b["y_max"]]))
    w = m["bounds_wgs84"]
    assert w["lat_min"] == pytest.approx(lat[0], abs=1e-6) and w["lat_max"] == pytest.approx(lat[1], abs=1e-6)
    assert w["lon_min"] == pytest.approx(lon[0], abs=1e-6) and w["lon_max"] == pytest.approx(lon[1], abs=1e-6)
    # every other file is listed with its SHA-256 and size
    assert set(m["files"]) == set(names) - {"manifest.json", "manifest.sha256"}
    for name, entry in m["files"].items():
        data = (built / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    assert (built / MANIFEST_SUM).read_text().split()[0] == hashlib.sha256((built / MANIFEST).read_bytes()).hexdigest()
    assert Manifest.from_dict(m).to_dict() == m


def test_arrays_load_without_pickle_and_embeddings_are_memory_mapped(built):
    for name in ("embeddings.f16.npy", "positions.f64.npy", "cells.i64.npy", DUPLICATES):
        np.load(built / name, allow_pickle=False)
    pkg = MapPackage.load(built)
    assert isinstance(pkg.embeddings, np.memmap) and pkg.embeddings.dtype == np.float16
    assert pkg.embeddings.shape == (pkg.n_tiles, 12)
    np.testing.assert_allclose(np.linalg.norm(pkg.embeddings.astype(np.float32), axis=1), 1.0, atol=2e-3)
    g = pkg.manifest.spatial_grid
    assert pkg.cell_offsets.shape == (g.n_cells + 1,) and pkg.cell_offsets[-1] == pkg.n_tiles
    assert pkg.contract == CONTRACT and pkg.frame == FRAME and pkg.ground_elevation_m == 412.5
    assert set(pkg.timings) == {"manifest", "verify", "embeddings", "positions", "grid", "hnsw", "total"}


def test_imagery_round_trip(built):
    pkg = MapPackage.load(built, hnsw="off")
    img = pkg.imagery()
    ref = resample_to_gsd(synthetic_ortho(), 1.0)
    np.testing.assert_array_equal(img.image, ref.image)
    np.testing.assert_array_equal(img.mask, ref.mask)
    assert (img.gsd, img.x_min, img.y_max, img.frame) == (1.0, ref.x_min, ref.y_max, FRAME)


def test_verify_clean_map(built):
    report = verify_map(built)
    assert report.ok and not report.bad and len(report.files) == 6 and report.unexpected == ()
    assert all(f.actual_sha256 == f.expected_sha256 for f in report.files)


@pytest.mark.parametrize("name", ["embeddings.f16.npy", "positions.f64.npy", "cells.i64.npy", "duplicates.i64.npy",
                                  "index.hnsw", "imagery.png", "manifest.json", "manifest.sha256"])
def test_verify_finds_one_flipped_byte_in_any_file(built, tmp_path, name):
    path = _copy(built, tmp_path / "m")
    data = bytearray((path / name).read_bytes())
    pos = len(data) * 2 // 3
    data[pos] ^= 0x01
    (path / name).write_bytes(bytes(data))
    with pytest.raises(MapIntegrityError) as err:
        verify_map(path)
    msg = str(err.value)
    assert name in msg or (name == MANIFEST_SUM and MANIFEST in msg)
    assert "skyfix maps build" in msg
    if name not in (MANIFEST, MANIFEST_SUM):
        expected = json.loads((path / MANIFEST).read_text())["files"][name]["sha256"]
        assert expected in msg and hashlib.sha256(bytes(data)).hexdigest() in msg
        report = err.value.report
        assert [f.name for f in report.bad] == [name] and report.bad[0].status == "hash"
        assert verify_map(path, raise_on_error=False).ok is False
    else:
        assert hashlib.sha256((path / MANIFEST).read_bytes()).hexdigest() in msg
    with pytest.raises(MapIntegrityError):
        MapPackage.load(path, verify=True)


def test_missing_and_truncated_files(built, tmp_path):
    path = _copy(built, tmp_path / "m")
    (path / "positions.f64.npy").unlink()
    with pytest.raises(MapFormatError, match=r"missing positions\.f64\.npy.*skyfix maps build"):
        MapPackage.load(path)
    with pytest.raises(MapIntegrityError, match=r"positions\.f64\.npy: missing"):
        verify_map(path)
    path = _copy(built, tmp_path / "t")
    data = (path / "index.hnsw").read_bytes()
    (path / "index.hnsw").write_bytes(data[: len(data) // 2])
    with pytest.raises(MapIntegrityError, match=r"index\.hnsw of map .* is \d+ bytes but the manifest says \d+"):
        MapPackage.load(path)


def test_not_a_map(tmp_path):
    with pytest.raises(MapFormatError, match="does not exist.*skyfix maps build"):
        MapPackage.load(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(MapFormatError, match="not a map package directory"):
        MapPackage.load(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MapFormatError, match="has no manifest.json"):
        MapPackage.load(tmp_path / "empty")


def test_manifest_validation_errors(built, tmp_path):
    cases = [
        (lambda d: d.__setitem__("surprise", 1), MapFormatError, r"unknown keys \['surprise'\]"),
        (lambda d: d.pop("frame"), MapFormatError, r"lacks keys \['frame'\]"),
        (lambda d: d.__setitem__("format_version", FORMAT_VERSION + 1), MapFormatError, "newer than this SkyFix"),
        (lambda d: d.__setitem__("format", "other"), MapFormatError, "not a SkyFix map"),
        (lambda d: d["encoder"].__setitem__("colour", "RGB"), MapFormatError, "unknown encoder contract keys"),
        (lambda d: d["tile_grid"].__setitem__("extra", 1), MapFormatError, "unknown tile grid keys"),
        (lambda d: d.__setitem__("n_tiles", -3), MapFormatError, "n_tiles must be an integer"),
        (lambda d: d["files"].pop("index.hnsw"), MapFormatError, r"lacks entries for \['index.hnsw'\]"),
        (lambda d: d.__setitem__("n_tiles", d["n_tiles"] + 1), MapFormatError, r"embeddings\.f16\.npy .* holds float16"),
    ]
    for i, (mutate, exc, pattern) in enumerate(cases):
        path = _copy(built, tmp_path / f"m{i}")
        _rewrite_manifest(path, mutate)
        with pytest.raises(exc, match=pattern):
            MapPackage.load(path)


def test_invalid_json_and_bad_arrays(built, tmp_path):
    path = _copy(built, tmp_path / "j")
    raw = b"{ not json"
    (path / MANIFEST).write_bytes(raw)
    (path / MANIFEST_SUM).write_text(hashlib.sha256(raw).hexdigest() + "  manifest.json\n")
    with pytest.raises(MapFormatError, match="not valid JSON"):
        MapPackage.load(path)
    path = _copy(built, tmp_path / "a")
    pos = np.load(path / "positions.f64.npy")
    np.save(path / "positions.f64.npy", pos.astype(np.float32))
    _resign_file(path, "positions.f64.npy")
    with pytest.raises(MapFormatError, match=r"positions\.f64\.npy .* holds float32.* expected float64"):
        MapPackage.load(path)
    path = _copy(built, tmp_path / "c")
    np.save(path / "cells.i64.npy", np.zeros_like(np.load(path / "cells.i64.npy")))
    _resign_file(path, "cells.i64.npy")
    with pytest.raises(MapFormatError, match="not a valid offset table"):
        MapPackage.load(path)
    path = _copy(built, tmp_path / "p")
    (path / "embeddings.f16.npy").write_bytes(b"\x00" * (path / "embeddings.f16.npy").stat().st_size)
    _resign_file(path, "embeddings.f16.npy")
    with pytest.raises(MapFormatError, match="not a readable .npy"):
        MapPackage.load(path)


def test_corrupted_hnsw_header_is_caught_before_hnswlib(built, tmp_path):
    path = _copy(built, tmp_path / "h")
    data = bytearray((path / "index.hnsw").read_bytes())
    data[16] ^= 0x40  # cur_element_count
    (path / "index.hnsw").write_bytes(bytes(data))
    _resign_file(path, "index.hnsw")
    with pytest.raises(MapFormatError, match=r"index\.hnsw .* inconsistent header \(count="):
        MapPackage.load(path)


def test_expect_contract_mismatch_names_both_values(built):
    other = EncoderContract("other-v2", "tiny test encoder", 16, 16, 1.0, 12)
    with pytest.raises(EncoderMismatchError) as err:
        MapPackage.load(built, expect_contract=other)
    assert "'other-v2'" in str(err.value) and "'tiny-v1'" in str(err.value)
    MapPackage.load(built, expect_contract=CONTRACT, hnsw="off")
    with pytest.raises(MapError, match="EncoderContract"):
        MapPackage.load(built, expect_contract={"encoder_id": "x"})


def test_unexpected_files_are_reported_not_fatal(built, tmp_path):
    path = _copy(built, tmp_path / "u")
    (path / "notes.txt").write_text("hi")
    report = verify_map(path)
    assert report.ok and report.unexpected == ("notes.txt",)


def _small_package(out, seed=0, n=50, overwrite=False, **kw):
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n, 12)).astype(np.float32)
    pos = np.stack([np.arange(n) * 4.0, np.zeros(n)], axis=1)
    return write_package(out, embeddings=emb, positions=pos, frame=FRAME, contract=CONTRACT,
                         tile_grid=TileGrid(16.0, 4.0, 1.0), overwrite=overwrite, **kw)


def test_atomic_write_overwrite_and_refusals(tmp_path):
    out = _small_package(tmp_path / "m", seed=1)
    first = np.load(out / "embeddings.f16.npy")
    with pytest.raises(MapError, match="already exists.*overwrite"):
        _small_package(out, seed=2)
    _small_package(out, seed=2, overwrite=True)
    assert not np.array_equal(np.load(out / "embeddings.f16.npy"), first)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary or backup directory left
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "precious.txt").write_text("keep")
    with pytest.raises(MapError, match="not a map package; refusing"):
        _small_package(tmp_path / "data", overwrite=True)
    assert (tmp_path / "data" / "precious.txt").read_text() == "keep"


def test_failed_write_leaves_nothing(tmp_path):
    def boom(stage, done, total):
        if stage == "index":
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        _small_package(tmp_path / "m", progress=boom)
    assert list(tmp_path.iterdir()) == []
    out = _small_package(tmp_path / "m")
    with pytest.raises(RuntimeError):
        _small_package(out, seed=5, overwrite=True, progress=boom)
    verify_map(out)  # the old map is intact


def test_duplicate_embeddings_are_indexed_once(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((60, 12)).astype(np.float32)
    emb[[7, 20, 33, 41, 59]] = emb[3]  # textureless tiles: identical descriptors
    pos = np.stack([np.arange(60) * 4.0, np.zeros(60)], axis=1)
    out = write_package(tmp_path / "m", embeddings=emb, positions=pos, frame=FRAME, contract=CONTRACT,
                        tile_grid=TileGrid(16.0, 4.0, 1.0))
    pkg = MapPackage.load(out)
    assert pkg.manifest.hnsw["elements"] == 55
    np.testing.assert_array_equal(pkg.duplicates, [[3, 7], [3, 20], [3, 33], [3, 41], [3, 59]])
    q = pkg.embedding([3])
    s_h, i_h = pkg.search(q, 8)
    s_e, i_e = pkg.search(q, 8, exact=True)
    np.testing.assert_array_equal(i_h, i_e)
    np.testing.assert_array_equal(i_h[0, :6], [3, 7, 20, 33, 41, 59])
    np.testing.assert_allclose(s_h, s_e, atol=1e-6)


def test_write_package_rejects_inconsistent_inputs(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((5, 12)).astype(np.float32)
    with pytest.raises(MapError, match="same n"):
        write_package(tmp_path / "a", embeddings=emb, positions=np.zeros((4, 2)), frame=FRAME, contract=CONTRACT,
                      tile_grid=TileGrid(16.0, 4.0, 1.0))
    with pytest.raises(MapError, match="no tiles"):
        write_package(tmp_path / "b", embeddings=emb[:0], positions=np.zeros((0, 2)), frame=FRAME, contract=CONTRACT,
                      tile_grid=TileGrid(16.0, 4.0, 1.0))
    with pytest.raises(EncoderMismatchError, match="12"):
        write_package(tmp_path / "c", embeddings=emb[:, :8], positions=np.zeros((5, 2)), frame=FRAME,
                      contract=CONTRACT, tile_grid=TileGrid(16.0, 4.0, 1.0))
    with pytest.raises(MapError, match="tile grid tiles are 32 px"):
        write_package(tmp_path / "d", embeddings=emb, positions=np.zeros((5, 2)), frame=FRAME, contract=CONTRACT,
                      tile_grid=TileGrid(16.0, 4.0, 0.5))
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_no_pickle_in_package_code():
    import maps.package as pkg_mod

    src = Path(pkg_mod.__file__).read_text()
    assert "allow_pickle=True" not in src and "import pickle" not in src
    assert os.path.basename(pkg_mod.__file__) == "package.py"


# ---------------------------------------------------------------------------------------------- HNSW projection


@pytest.fixture(scope="module")
def projected(tmp_path_factory):
    """A map whose HNSW graph is over a 5-d projection of the 12-d embeddings (energy concentrated in a few
    directions, as for real descriptors: random isotropic vectors have none for a projection to keep)."""
    rng = np.random.default_rng(3)
    n = 300
    basis = np.linalg.qr(rng.standard_normal((12, 12)))[0]
    emb = (rng.standard_normal((n, 12)) * [4.0, 3.5, 3.0, 2.5, 2.0, 0.3, 0.3, 0.2, 0.2, 0.1, 0.1, 0.1]) @ basis.T
    pos = np.stack([np.arange(n) * 4.0, np.zeros(n)], axis=1)
    return write_package(tmp_path_factory.mktemp("proj") / "map", embeddings=emb.astype(np.float32), positions=pos,
                         frame=FRAME, contract=CONTRACT, tile_grid=TileGrid(16.0, 4.0, 1.0), hnsw_dim=5)


def test_projected_package_layout_and_manifest(projected, built):
    m = json.loads((projected / MANIFEST).read_text())
    assert m["hnsw"]["dim"] == 5 and m["embedding_dim"] == 12 and PROJECTION in m["files"]
    assert sorted(p.name for p in projected.iterdir()) == sorted(
        [MANIFEST, MANIFEST_SUM, "embeddings.f16.npy", "positions.f64.npy", "cells.i64.npy", DUPLICATES, "index.hnsw",
         PROJECTION])
    proj = np.load(projected / PROJECTION, allow_pickle=False)
    assert proj.dtype == np.float32 and proj.shape == (5, 12)
    np.testing.assert_allclose(proj @ proj.T, np.eye(5), atol=1e-5)
    # the rows are the top right-singular vectors of the (uncentred) stored embeddings
    emb = np.load(projected / "embeddings.f16.npy").astype(np.float64)
    _, _, vt = np.linalg.svd(emb, full_matrices=False)
    np.testing.assert_allclose(np.abs(vt[:5] @ proj.T.astype(np.float64)), np.eye(5), atol=1e-4)
    pkg = MapPackage.load(projected)
    assert pkg.projection.shape == (5, 12) and pkg.searcher.hnsw_dim == 5
    assert verify_map(projected).ok and len(verify_map(projected).files) == 6
    # the default graph dimension is min(d, 64): a 12-d map has no projection
    assert json.loads((built / MANIFEST).read_text())["hnsw"]["dim"] == 12 and MapPackage.load(built).projection is None


def test_projected_search_reranks_exactly(projected):
    pkg = MapPackage.load(projected)
    q = pkg.embedding(np.arange(pkg.n_tiles))
    scores, ids = pkg.search(q, 5)
    assert pkg.searcher.last_path == "hnsw"
    np.testing.assert_array_equal(ids[:, 0], np.arange(pkg.n_tiles))  # every tile is its own top-1
    ex_s, ex_i = pkg.search(q, 5, exact=True)
    np.testing.assert_array_equal(ids, ex_i)  # 64 candidates of 300 tiles, re-ranked: the exact answer here
    np.testing.assert_allclose(scores, ex_s, atol=1e-6)


def test_projection_file_errors(projected, tmp_path):
    path = _copy(projected, tmp_path / "missing")
    (path / PROJECTION).unlink()
    with pytest.raises(MapFormatError, match=r"missing hnsw_projection\.f32\.npy.*skyfix maps build"):
        MapPackage.load(path)
    with pytest.raises(MapIntegrityError, match=r"hnsw_projection\.f32\.npy: missing"):
        verify_map(path)
    path = _copy(projected, tmp_path / "flip")
    data = bytearray((path / PROJECTION).read_bytes())
    data[len(data) * 2 // 3] ^= 0x01
    (path / PROJECTION).write_bytes(bytes(data))
    with pytest.raises(MapIntegrityError, match=r"hnsw_projection\.f32\.npy: expected sha256"):
        verify_map(path)
    with pytest.raises(MapIntegrityError):
        MapPackage.load(path, verify=True)
    path = _copy(projected, tmp_path / "shape")
    np.save(path / PROJECTION, np.eye(4, 12, dtype=np.float32))
    _resign_file(path, PROJECTION)
    with pytest.raises(MapFormatError, match=r"hnsw_projection\.f32\.npy .* holds float32\[4, 12\], expected float32\[5, 12\]"):
        MapPackage.load(path)
    path = _copy(projected, tmp_path / "dtype")
    np.save(path / PROJECTION, np.eye(5, 12, dtype=np.float64))
    _resign_file(path, PROJECTION)
    with pytest.raises(MapFormatError, match=r"holds float64\[5, 12\], expected float32\[5, 12\]"):
        MapPackage.load(path)
    path = _copy(projected, tmp_path / "ortho")
    np.save(path / PROJECTION, 2 * np.eye(5, 12, dtype=np.float32))
    _resign_file(path, PROJECTION)
    with pytest.raises(MapFormatError, match="does not have orthonormal rows.*skyfix maps build"):
        MapPackage.load(path)
    path = _copy(projected, tmp_path / "nan")
    bad = np.eye(5, 12, dtype=np.float32)
    bad[0, 7] = np.nan
    np.save(path / PROJECTION, bad)
    _resign_file(path, PROJECTION)
    with pytest.raises(MapFormatError, match="NaN or infinite"):
        MapPackage.load(path)


def test_projection_manifest_errors(projected, built, tmp_path):
    cases = [
        (projected, lambda d: d["files"].pop(PROJECTION), r"lacks an entry for hnsw_projection\.f32\.npy .*hnsw\.dim 5 < embedding_dim 12"),
        (projected, lambda d: d["hnsw"].__setitem__("dim", 13), r"hnsw\.dim 13 exceeds embedding_dim 12"),
        (projected, lambda d: d["hnsw"].__setitem__("dim", 0), r"hnsw\.dim must be an integer >= 1"),
        (projected, lambda d: d["hnsw"].pop("dim"), r"manifest hnsw lacks keys \['dim'\]"),
        (projected, lambda d: d["hnsw"].__setitem__("dim", 12), "lists hnsw_projection.f32.npy but hnsw.dim equals"),
        (projected, lambda d: d["hnsw"].__setitem__("dim", 6), r"hnsw_projection\.f32\.npy .* expected float32\[6, 12\]"),
        (built, lambda d: d["hnsw"].__setitem__("dim", 6), r"lacks an entry for hnsw_projection"),
    ]
    for i, (src, mutate, pattern) in enumerate(cases):
        path = _copy(src, tmp_path / f"m{i}")
        _rewrite_manifest(path, mutate)
        with pytest.raises(MapFormatError, match=pattern):
            MapPackage.load(path)


@pytest.mark.parametrize("version, pattern", [
    (1, r"map format version 1 is not supported \(expected 2\).*rebuild the map with `skyfix maps build`"),
    (3, r"map format version 3 is newer than this SkyFix reads \(2\).*rebuild the map"),
])
def test_other_format_versions_say_rebuild(built, tmp_path, version, pattern):
    assert FORMAT_VERSION == 2
    path = _copy(built, tmp_path / "v")
    _rewrite_manifest(path, lambda d: d.__setitem__("format_version", version))
    with pytest.raises(MapFormatError, match=pattern):
        MapPackage.load(path)


def test_hnsw_dim_is_validated(tmp_path):
    assert check_hnsw_dim(None, 256) == 64 and check_hnsw_dim(None, 12) == 12 and check_hnsw_dim(np.int64(7), 12) == 7
    for bad in (0, -3, 13, 2.5, True, "8"):
        with pytest.raises(MapError, match=r"hnsw_dim must be a positive integer <= the embedding dimension 12.*got"):
            _small_package(tmp_path / "m", hnsw_dim=bad)
        with pytest.raises(MapError, match="hnsw_dim must be a positive integer"):
            build_map(synthetic_ortho(), tiny_embed, CONTRACT, tmp_path / "b", hnsw_dim=bad)
    assert list(tmp_path.iterdir()) == []
    out = _small_package(tmp_path / "full", hnsw_dim=12)  # p = d: no projection
    assert not (out / PROJECTION).exists() and MapPackage.load(out).manifest.hnsw["dim"] == 12


def test_projected_duplicates_are_indexed_once(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((60, 12)).astype(np.float32)
    emb[[7, 20, 33, 41, 59]] = emb[3]
    pos = np.stack([np.arange(60) * 4.0, np.zeros(60)], axis=1)
    out = write_package(tmp_path / "m", embeddings=emb, positions=pos, frame=FRAME, contract=CONTRACT,
                        tile_grid=TileGrid(16.0, 4.0, 1.0), hnsw_dim=4)
    pkg = MapPackage.load(out)
    assert pkg.manifest.hnsw["elements"] == 55 and pkg.projection.shape == (4, 12)
    q = pkg.embedding([3])
    s_h, i_h = pkg.search(q, 8)
    s_e, i_e = pkg.search(q, 8, exact=True)
    np.testing.assert_array_equal(i_h, i_e)
    np.testing.assert_array_equal(i_h[0, :6], [3, 7, 20, 33, 41, 59])
    np.testing.assert_allclose(s_h, s_e, atol=1e-6)
