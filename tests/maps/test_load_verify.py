"""MapPackage.load checks what it loads: one altered byte in any file of a map is refused, naming the file.

Also through the CLI: ``runtime replay BAG --map ALTERED`` stops with ``error: ...`` (exit 2) before it reads the bag.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from maps.contract import EncoderContract
from maps.errors import MapError, MapIntegrityError
from maps.geodesy import LocalFrame
from maps.ortho import Orthophoto
from maps.package import IMAGERY, INDEX, MANIFEST, MANIFEST_SUM, PROJECTION, MapPackage, check_file_hashes, write_package
from maps.tiling import TileGrid

FRAME = LocalFrame(52.0, 5.0)
CONTRACT = EncoderContract("tiny-v1", "tiny test encoder", 16, 16, 1.0, 12)
DATA_FILES = ("embeddings.f16.npy", "positions.f64.npy", "cells.i64.npy", "duplicates.i64.npy", INDEX, PROJECTION,
              IMAGERY)


@pytest.fixture(scope="module")
def full_map(tmp_path_factory) -> Path:
    """A small map with every kind of file: HNSW over a 5-d projection (hnsw_projection.f32.npy) and imagery."""
    rng = np.random.default_rng(7)
    n = 200
    emb = rng.standard_normal((n, 12)).astype(np.float32)
    emb[150:] = emb[0]  # duplicates: a non-empty duplicates.i64.npy
    pos = np.stack([np.arange(n) % 20 * 4.0, np.arange(n) // 20 * 4.0], axis=1)
    img = rng.integers(0, 256, (48, 96, 3), dtype=np.uint8)
    ortho = Orthophoto(img, np.ones((48, 96), bool), 1.0, -8.0, 44.0, FRAME, ("synthetic.tif",))
    path = write_package(tmp_path_factory.mktemp("verify") / "map", embeddings=emb, positions=pos, frame=FRAME,
                         contract=CONTRACT, tile_grid=TileGrid(16.0, 4.0, 1.0), hnsw_dim=5, imagery=ortho)
    assert sorted(p.name for p in path.iterdir()) == sorted(DATA_FILES + (MANIFEST, MANIFEST_SUM))
    return path


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def _flip(path: Path, name: str) -> bytes:
    """Flip one bit two thirds into the file (past every header); returns the new content."""
    data = bytearray((path / name).read_bytes())
    data[len(data) * 2 // 3] ^= 0x01
    (path / name).write_bytes(bytes(data))
    return bytes(data)


def test_a_clean_map_loads_with_the_check_and_its_time_is_reported(full_map):
    pkg = MapPackage.load(full_map)
    assert pkg.timings["verify"] > 0.0
    assert MapPackage.load(full_map, verify="sizes").timings["verify"] < 1e-3  # no file read
    digests = check_file_hashes(full_map, pkg.manifest)
    assert digests == {name: e.sha256 for name, e in pkg.manifest.files.items()}
    assert set(digests) == set(DATA_FILES)


@pytest.mark.parametrize("name", DATA_FILES)
def test_one_altered_byte_in_a_data_file_is_refused_naming_it(full_map, tmp_path, name):
    path = _copy(full_map, tmp_path / "m")
    data = _flip(path, name)
    entry = json.loads((path / MANIFEST).read_text())["files"][name]
    with pytest.raises(MapIntegrityError) as err:
        MapPackage.load(path)
    msg = str(err.value)
    assert msg.startswith(f"{name} of map {path} does not match its manifest: ")
    assert f"SHA-256 {hashlib.sha256(data).hexdigest()} ({len(data)} bytes)" in msg
    assert f"expected {entry['sha256']} ({entry['size']} bytes)" in msg
    assert f"`skyfix maps verify {path}`" in msg and "skyfix maps build" in msg
    # every load mode and the CLI-facing True alias check it too
    for kw in ({"hnsw": "off"}, {"hnsw": "lazy"}, {"verify": True}):
        with pytest.raises(MapIntegrityError, match=name.replace(".", r"\.")):
            MapPackage.load(path, **kw)


def test_sizes_only_is_what_let_an_altered_file_through(full_map, tmp_path):
    """The opt-out (verify='sizes', the old behaviour) loads a map whose embeddings were altered: the check above
    is what refuses it."""
    path = _copy(full_map, tmp_path / "m")
    _flip(path, "embeddings.f16.npy")
    pkg = MapPackage.load(path, verify="sizes", hnsw="off")
    assert pkg.n_tiles == 200


@pytest.mark.parametrize("name", [MANIFEST, MANIFEST_SUM])
def test_an_altered_manifest_or_its_checksum_is_refused(full_map, tmp_path, name):
    path = _copy(full_map, tmp_path / "m")
    _flip(path, name)
    with pytest.raises(MapIntegrityError) as err:
        MapPackage.load(path)
    msg = str(err.value)
    assert msg.startswith(f"{MANIFEST} of {path} is corrupted: SHA-256 {hashlib.sha256((path / MANIFEST).read_bytes()).hexdigest()}")
    assert f"but {MANIFEST_SUM} says" in msg and "skyfix maps build" in msg


def test_a_file_of_the_wrong_size_names_the_sizes_and_the_fix(full_map, tmp_path):
    path = _copy(full_map, tmp_path / "m")
    data = (path / "positions.f64.npy").read_bytes()
    (path / "positions.f64.npy").write_bytes(data + b"\0")
    entry = json.loads((path / MANIFEST).read_text())["files"]["positions.f64.npy"]
    with pytest.raises(MapIntegrityError) as err:
        MapPackage.load(path, verify="sizes")
    msg = str(err.value)
    assert msg.startswith(f"positions.f64.npy of map {path} is {len(data) + 1} bytes but the manifest says {entry['size']}")
    assert entry["sha256"] in msg and f"`skyfix maps verify {path}`" in msg


def test_bad_verify_value(full_map):
    with pytest.raises(MapError, match=r"verify must be one of \('sha256', 'sizes'\).*got 'md5'"):
        MapPackage.load(full_map, verify="md5")


@pytest.mark.parametrize("name", ["embeddings.f16.npy", "positions.f64.npy", INDEX, PROJECTION, MANIFEST])
def test_runtime_replay_refuses_an_altered_map(full_map, tmp_path, capsys, name):
    from runtime.bags.writer import BagWriter
    from runtime.cli.onboard import main

    bag = tmp_path / "gps.bag"
    with BagWriter(bag) as w:
        for k in range(3):
            w.write_navsatfix("/gps/fix", 1_700_000_000_000_000_000 + k * 10 ** 8, 52.0, 5.0, 100.0, cov_enu=2.0)
    path = _copy(full_map, tmp_path / "m")
    _flip(path, name)
    out = tmp_path / "track.jsonl"
    code = main(["replay", str(bag), "--map", str(path), "-o", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"error: {name} of ")
    assert "skyfix maps build" in line
    assert not out.exists() and not out.with_suffix(".geojson").exists()


def test_runtime_replay_map_check_sizes_skips_the_hash(full_map, tmp_path, capsys):
    """--map-check sizes (the fastest start) loads a map whose embeddings were altered: only sizes are checked."""
    from runtime.bags.writer import BagWriter
    from runtime.cli.onboard import main

    bag = tmp_path / "gps.bag"
    with BagWriter(bag) as w:
        for k in range(3):
            w.write_navsatfix("/gps/fix", 1_700_000_000_000_000_000 + k * 10 ** 8, 52.0, 5.0, 100.0, cov_enu=2.0)
    path = _copy(full_map, tmp_path / "m")
    _flip(path, "embeddings.f16.npy")
    out = tmp_path / "track.jsonl"
    argv = ["replay", str(bag), "--map", str(path), "-o", str(out), "--quiet", "--model", "classical"]
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("error: embeddings.f16.npy of map ")
    # with sizes only the map loads, and the run goes on to the next check (this tiny map's encoder is not one the
    # runtime has: a typed error about the model, not the map)
    assert main(argv + ["--map-check", "sizes"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: the map {path} was built with encoder tiny test encoder (tiny-v1) but the model is ")
    assert not out.exists()
