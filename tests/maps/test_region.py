"""Region maps: the sharded format, the Ray build (resume after a killed driver or worker), verification, and the
onboard RegionMap (shards around a position, search across borders, bounded memory)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from maps.errors import MapError, MapFormatError, MapIntegrityError
from maps.geodesy import LocalFrame
from maps.ortho import Orthophoto

pytest.importorskip("ray", reason="the region extra (pip install 'skyfix[region]') is not installed")

REPO = Path(__file__).resolve().parents[2]
FRAME = LocalFrame(46.5, 7.5)


def tiny_spec(kill_marker: str | None = None):
    """An EncoderSpec whose loader gives a tiny 48-d colour-thumbnail encoder (16 px tiles at 1 m). With
    ``kill_marker``: the first embed call anywhere ends its worker process (os._exit) and leaves the marker file."""
    from maps.region_build import EncoderSpec

    def loader(model, **kwargs):
        import os as _os

        import numpy as _np

        from maps.contract import EncoderContract

        def embed(images):
            if kill_marker is not None and not _os.path.exists(kill_marker):
                open(kill_marker, "w").close()
                _os._exit(17)  # a worker dying mid-task, as on an out-of-memory kill
            n = images.shape[0]
            small = images.reshape(n, 4, 4, 4, 4, 3).mean(axis=(2, 4)).reshape(n, 48).astype(_np.float32)
            small -= small.mean(axis=1, keepdims=True)
            small[:, 0] += 1.0
            return (small / _np.linalg.norm(small, axis=1, keepdims=True)).astype(_np.float32)

        embed.contract = EncoderContract("tiny-v1", "tiny test encoder", 16, 16, 1.0, 48)
        return embed

    return EncoderSpec("tiny", loader)


def _ortho(seed=0, h=1000, w=1200, gsd=0.5):
    import cv2

    gen = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(gen.standard_normal((h, w, 3)).astype(np.float32), (0, 0), 3)
    img = np.clip(128 + 60 * noise / noise.std(), 0, 255).astype(np.uint8)
    mask = np.ones((h, w), bool)
    mask[: h // 5, : w // 4] = False  # a hole: tiles there are left out, in shards as in one map
    img[~mask] = 0
    return Orthophoto(img, mask, gsd, -300.0, 250.0, FRAME)


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def built(tmp_path_factory, ray_local):
    """(source tif, region dir, single map dir, report): a 600 x 500 m synthetic source in its own frame (so the
    region's pixels equal the single map's exactly), built as 200 m shards and as one map."""
    from maps.build import build_map
    from maps.geotiff import load_orthophoto, write_geotiff
    from maps.region_build import build_region

    root = tmp_path_factory.mktemp("region")
    tif = write_geotiff(root / "src.tif", _ortho())
    spec = tiny_spec()
    events = []
    rep = build_region([str(tif)], root / "r.region", spec, shard_km=0.2, stride_m=8.0,
                       progress=lambda e, i: events.append((e, i)))
    embed, contract = spec.load()
    single = build_map(load_orthophoto(tif), embed, contract, root / "single.map", stride_m=8.0)
    return tif, root / "r.region", single, rep, events


def test_region_verifies_and_describes_itself(built):
    from maps.region import read_region_manifest, verify_region

    _, region, _, rep, events = built
    assert rep["finished"] and rep["shards"] == 9 and rep["built"] == 9 and rep["resumed"] == 0
    assert [e for e, _ in events][0] == "plan" and [e for e, _ in events][-1] == "done"
    m = read_region_manifest(region)
    assert m.shard_grid.nx == 3 and m.shard_grid.ny == 3 and m.shard_grid.overlap_m == 16.0
    assert m.encoder.encoder_id == "tiny-v1" and m.build["cluster"]["ray_version"]
    assert sum(s.n_tiles for s in m.shards) == m.n_tiles
    report = verify_region(region)
    assert report.ok and len(report.shards) == 9 and not (region / ".build").exists()


def test_shards_hold_exactly_the_single_maps_tiles(built):
    """Every tile of one map of the area is in a shard with the same embedding; each shard holds the tiles within
    one footprint of its core, so a view anywhere in a core is whole in that shard."""
    from maps.package import MapPackage
    from maps.region import read_region_manifest, shard_path

    _, region, single_dir, _, _ = built
    single = MapPackage.load(single_dir)
    key = {tuple(np.round(p, 3)): i for i, p in enumerate(single.positions)}
    m = read_region_manifest(region)
    seen = set()
    for e in m.shards:
        pkg = MapPackage.load(shard_path(region, e.id))
        idx = np.array([key[tuple(np.round(p, 3))] for p in pkg.positions])  # KeyError: a tile the map lacks
        np.testing.assert_array_equal(pkg.embeddings, single.embeddings[idx])
        seen.update(idx.tolist())
        a0, b0, a1, b1 = m.shard_grid.core(e.row, e.col)
        ov = m.shard_grid.overlap_m
        near = ((single.positions[:, 0] >= a0 - ov) & (single.positions[:, 0] < a1 + ov)
                & (single.positions[:, 1] >= b0 - ov) & (single.positions[:, 1] < b1 + ov))
        assert set(np.flatnonzero(near).tolist()) == set(idx.tolist())
    assert seen == set(range(single.n_tiles))


def _vrt_of_halves(tif: Path, out: Path) -> Path:
    """``tif`` cut into a west and an east GeoTIFF, and a GDAL VRT (hand-written XML, the documented format) that
    mosaics them again, with the source's metadata (its SKYFIX frame tags)."""
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(tif) as ds:
        profile, tags, w, h = ds.profile, ds.tags(), ds.width, ds.height
        half = w // 2
        parts = []
        for name, c0, cw in (("west.tif", 0, half), ("east.tif", half, w - half)):
            win = Window(c0, 0, cw, h)
            prof = dict(profile, width=cw, height=h, transform=ds.window_transform(win))
            with rasterio.open(out / name, "w", **prof) as dst:
                dst.write(ds.read(window=win))
                dst.update_tags(**tags)
            parts.append((name, c0, cw))
        wkt, gt = ds.crs.to_wkt(), ds.transform.to_gdal()
        interp = {1: "Red", 2: "Green", 3: "Blue", 4: "Alpha"}
    bands = []
    for b in range(1, 5):
        srcs = "".join(
            f'<SimpleSource><SourceFilename relativeToVRT="1">{name}</SourceFilename><SourceBand>{b}</SourceBand>'
            f'<SrcRect xOff="0" yOff="0" xSize="{cw}" ySize="{h}"/>'
            f'<DstRect xOff="{c0}" yOff="0" xSize="{cw}" ySize="{h}"/></SimpleSource>'
            for name, c0, cw in parts)
        bands.append(f'<VRTRasterBand dataType="Byte" band="{b}"><ColorInterp>{interp[b]}</ColorInterp>{srcs}'
                     "</VRTRasterBand>")
    mdi = "".join(f'<MDI key="{k}">{v}</MDI>' for k, v in tags.items() if k.startswith("SKYFIX_FRAME"))
    vrt = out / "mosaic.vrt"
    vrt.write_text(f'<VRTDataset rasterXSize="{w}" rasterYSize="{h}"><SRS>{wkt.replace("&", "&amp;").replace("<", "&lt;")}'
                   f"</SRS><GeoTransform>{', '.join(repr(float(v)) for v in gt)}</GeoTransform>"
                   f"<Metadata>{mdi}</Metadata>{''.join(bands)}</VRTDataset>")
    return vrt


def test_vrt_and_cog_sources_give_the_same_region(built, tmp_path):
    """A VRT mosaic of two GeoTIFFs and a Cloud Optimized GeoTIFF (GDAL's COG driver) of the same pixels build the
    region the GeoTIFF builds: the same shards with the same tiles and embeddings, bit for bit."""
    import rasterio.shutil

    from maps.package import MapPackage
    from maps.region import read_region_manifest, shard_path
    from maps.region_build import build_region

    tif, region, _, _, _ = built
    vrt = _vrt_of_halves(tif, tmp_path)
    cog = tmp_path / "src.cog.tif"
    rasterio.shutil.copy(tif, cog, driver="COG", compress="deflate", blocksize=256)
    with rasterio.open(cog) as ds:
        assert ds.overviews(1) and ds.tags().get("SKYFIX_FRAME_LAT0")  # a real COG: overviews, tags kept
    ref = read_region_manifest(region)
    for src in (vrt, cog):
        out = tmp_path / f"{src.suffix[1:]}.region"
        build_region([str(src)], out, tiny_spec(), shard_km=0.2, stride_m=8.0)
        got = read_region_manifest(out)
        assert [e.id for e in got.shards] == [e.id for e in ref.shards] and got.n_tiles == ref.n_tiles
        for e in ref.shards:
            a, b = MapPackage.load(shard_path(region, e.id)), MapPackage.load(shard_path(out, e.id))
            np.testing.assert_array_equal(b.positions, a.positions)
            np.testing.assert_array_equal(b.embeddings, a.embeddings)
            np.testing.assert_array_equal(b.imagery().image, a.imagery().image)


def test_search_across_shard_borders_equals_one_map(built):
    from maps.package import MapPackage
    from maps.region import RegionMap

    _, region, single_dir, _, _ = built
    single = MapPackage.load(single_dir)
    with RegionMap(region, stall_ms=10_000) as reg:
        sg = reg.manifest.shard_grid
        x, y = sg.x0 + sg.shard_size_m, sg.y1 - sg.shard_size_m  # a corner of four shards
        prior = (x + 3.0, y - 2.0, 60.0)
        ready = reg.focus(prior)
        assert sorted(ready) == ["r000_c000", "r000_c001", "r001_c000", "r001_c001"]
        ids = single.scope_ids(prior)[::7]
        q = single.embedding(ids)
        s1, i1 = single.search(q, 10, prior, exact=True)
        s2, i2 = reg.search(q, 10, prior)
        np.testing.assert_allclose(s2, s1, atol=1e-6)
        np.testing.assert_array_equal(reg.tile_positions(i2), single.positions[i1])
        assert reg.search(q, 10, None)[0].shape == (len(ids), 10)  # None: the shards of the last focus


def test_lru_bounds_memory_and_late_shards_are_counted(built):
    from maps.region import RegionMap

    _, region, _, _, _ = built
    with RegionMap(region, stall_ms=0.0, cache_mb=0.5, imagery=True) as reg:
        sg = reg.manifest.shard_grid
        centre = lambda r, c: (sg.x0 + (c + 0.5) * sg.shard_size_m, sg.y1 - (r + 0.5) * sg.shard_size_m, 20.0)
        assert reg.focus(centre(1, 1)) == [] and reg.counts["late_shards"] == 1  # not waited for
        assert reg.search(np.ones((1, 48), np.float32), 5)[1][0, 0] == -1  # nothing loaded: no candidate
        assert reg.wait_idle()
        assert reg.focus(centre(1, 1)) == ["r001_c001"]
        for r in range(3):
            for c in range(3):
                reg.focus(centre(r, c))
                reg.wait_idle()
                assert reg.focus(centre(r, c)) == [reg.manifest.shard_grid.shard_id(r, c)]
                # within the bound, or only the shard the scope needs (0.2-0.4 MB each, mostly grey imagery)
                assert reg.loaded_bytes <= reg.cache_bytes or reg.loaded_ids() == [sg.shard_id(r, c)]
        assert reg.counts["evictions"] >= 6 and reg.counts["loads"] >= 9  # r001_c001 was evicted, then needed again
        assert reg.loaded_ids()[-1] == "r002_c002"
        with pytest.raises(MapError, match="not in memory"):
            reg.tile_positions(np.array([0]))  # shard #0 was evicted
        with pytest.raises(MapError, match="-1 pads"):
            reg.tile_positions(np.array([-1]))


def test_shards_ahead_are_loaded_before_they_are_needed(built):
    """Moving east at 10 m/s with a 20 s look-ahead: the next shard loads in the background before the scope
    reaches it, and stays (even with a zero cache bound) while it is ahead; the shards left behind go."""
    from maps.region import RegionMap

    _, region, _, _, _ = built
    with RegionMap(region, stall_ms=10_000, cache_mb=0.0, lookahead_s=20.0) as reg:
        sg = reg.manifest.shard_grid
        x0, y0, x1, y1 = sg.core(1, 0)
        here = (x1 - 150.0, 0.5 * (y0 + y1), 20.0)
        assert reg.focus(here, (10.0, 0.0)) == ["r001_c000"]
        assert reg.wait_idle()
        assert reg.focus(here, (10.0, 0.0)) == ["r001_c000"]
        assert sorted(reg.loaded_ids()) == ["r001_c000", "r001_c001"] and reg.counts["prefetched"] == 1
        late = reg.counts["late_shards"]
        there = (x1 + 100.0, here[1], 20.0)
        assert reg.focus(there) == ["r001_c001"] and reg.counts["late_shards"] == late  # it was there already
        assert reg.loaded_ids() == ["r001_c001"]  # behind: evicted at once under a zero bound


def test_damaged_shard_and_manifest_are_named(built, tmp_path):
    import shutil

    from maps.region import RegionMap, read_region_manifest, verify_region

    _, region, _, _, _ = built
    copy = tmp_path / "copy.region"
    shutil.copytree(region, copy)
    emb = copy / "shards" / "r001_c001" / "embeddings.f16.npy"
    raw = bytearray(emb.read_bytes())
    raw[-3] ^= 0xFF
    emb.write_bytes(bytes(raw))
    rep = verify_region(copy, raise_on_error=False)
    assert [s for s, st in rep.shards if st != "ok"] == ["r001_c001"]
    with pytest.raises(MapIntegrityError, match="r001_c001"):
        verify_region(copy)
    with RegionMap(copy, stall_ms=10_000) as reg:  # onboard: the damaged shard is left out, named, not retried
        scope = (reg.manifest.shard_grid.x0 + 300.0, reg.manifest.shard_grid.y1 - 300.0, 10.0)
        assert reg.focus(scope) == [] and reg.counts["failed_shards"] == 1
        assert "MapIntegrityError" in reg.failed["r001_c001"] and "embeddings.f16.npy" in reg.failed["r001_c001"]
        assert reg.focus(scope) == [] and reg.counts["failed_shards"] == 1 and reg.counts["loads"] == 0
    text = (copy / "region.json").read_text()
    (copy / "region.json").write_text(text.replace('"n_tiles"', '"n_tiles" ', 1))
    with pytest.raises(MapIntegrityError, match="region.json .* is corrupted"):
        read_region_manifest(copy)
    d = json.loads(text)
    d["extra"] = 1
    from maps.region import write_region_manifest

    with pytest.raises(MapFormatError, match="unknown keys"):
        write_region_manifest(copy, d)


def test_resume_after_a_stop_and_refusals(tmp_path, ray_local):
    from maps.geotiff import write_geotiff
    from maps.region import verify_region
    from maps.region_build import build_region

    tif = write_geotiff(tmp_path / "src.tif", _ortho(1, h=600, w=800))
    out = tmp_path / "r.region"
    first = build_region([str(tif)], out, tiny_spec(), shard_km=0.2, stride_m=8.0, max_shards=2)
    assert not first["finished"] and first["built"] == 2 and first["left"] == 2
    events = []
    rest = build_region([str(tif)], out, tiny_spec(), shard_km=0.2, stride_m=8.0,
                        progress=lambda e, i: events.append((e, i)))
    assert ("resume", {"finished": 2, "todo": 2}) in events
    assert rest["finished"] and rest["built"] == 2 and rest["resumed"] == 2
    assert verify_region(out).ok
    with pytest.raises(MapError, match="already built.*--overwrite"):
        build_region([str(tif)], out, tiny_spec(), shard_km=0.2, stride_m=8.0)
    other = tmp_path / "other"
    build_region([str(tif)], other, tiny_spec(), shard_km=0.2, stride_m=8.0, max_shards=1)
    with pytest.raises(MapError, match="other settings .*shard_grid"):
        build_region([str(tif)], other, tiny_spec(), shard_km=0.3, stride_m=8.0)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("mine")
    with pytest.raises(MapError, match="not a region being built"):
        build_region([str(tif)], junk, tiny_spec(), shard_km=0.2)
    with pytest.raises(MapError, match=r"--shard-km must be within"):
        build_region([str(tif)], tmp_path / "x", tiny_spec(), shard_km=0.01)


def test_resume_after_a_killed_driver(tmp_path):
    """The driver process dies (SIGKILL-like os._exit) after its first finished shard; the same build run again
    keeps what was finished, cleans the half-written shards and completes a region that verifies."""
    from maps.geotiff import write_geotiff
    from maps.region import verify_region
    from maps.region_build import build_region

    from maps.region_build import EncoderSpec

    tif = write_geotiff(tmp_path / "src.tif", _ortho(2, h=840, w=840))
    out = tmp_path / "r.region"
    script = (
        "import os, sys\n"
        "from maps.region_build import EncoderSpec, build_region\n"
        "build_region([sys.argv[1]], sys.argv[2], EncoderSpec('classical'), shard_km=0.21, workers=1,\n"
        "             progress=lambda e, i: os._exit(9) if e == 'shard' else None)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", script, str(tif), str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 9, proc.stderr[-2000:]
    assert not (out / "region.json").exists() and len(list((out / ".build").glob("r*.json"))) >= 1
    events = []
    rep = build_region([str(tif)], out, EncoderSpec("classical"), shard_km=0.21, workers=2,
                       progress=lambda e, i: events.append((e, i)))
    resumed = [i for e, i in events if e == "resume"]
    assert resumed and resumed[0]["finished"] >= 1 and rep["resumed"] == resumed[0]["finished"]
    assert rep["finished"] and rep["built"] + rep["resumed"] == 4
    assert verify_region(out).ok and not [p for p in (out / "shards").iterdir() if p.name.startswith(".")]


def test_a_killed_worker_is_retried(tmp_path, ray_local):
    from maps.geotiff import write_geotiff
    from maps.region import verify_region
    from maps.region_build import build_region

    tif = write_geotiff(tmp_path / "src.tif", _ortho(3, h=400, w=800))
    marker = tmp_path / "killed"
    rep = build_region([str(tif)], tmp_path / "r.region", tiny_spec(str(marker)), shard_km=0.2, stride_m=8.0)
    assert marker.exists()  # a worker process did die mid-shard
    assert rep["finished"] and rep["built"] == rep["shards"] + rep["empty"]
    assert verify_region(tmp_path / "r.region").ok


def test_windowed_reads_of_a_real_reprojected_orthophoto(shared_data, tmp_path):
    """A real orthophoto in another CRS (EPSG:2056): a window equals the same pixels of the whole mosaic (to one
    grey level, GDAL's approximate transformer), its mask exactly."""
    from maps.geotiff import load_orthophoto, plan_mosaic

    src = shared_data("ortho/swissimage_zurich_a_0.5m.tif")
    g = plan_mosaic(src, gsd=0.4)
    whole = load_orthophoto(src, gsd=0.4)
    assert (g.width, g.height, g.x_min, g.y_max) == (whole.width, whole.height, whole.x_min, whole.y_max)
    win = load_orthophoto(src, gsd=0.4, window=(100, 50, 300, 200))
    np.testing.assert_array_equal(win.mask, whole.mask[50:250, 100:400])
    assert np.abs(win.image.astype(int) - whole.image[50:250, 100:400]).max() <= 1
    beyond = load_orthophoto(src, gsd=0.4, window=(g.width + 10, 0, 50, 50), allow_empty=True)
    assert not beyond.mask.any()
    from maps.errors import GeoTiffError

    with pytest.raises(GeoTiffError, match="no valid pixel .* inside the window"):
        load_orthophoto(src, gsd=0.4, window=(g.width + 10, 0, 50, 50))
    pan = shared_data("ortho/spacenet_atlanta_pan_0.5m.tif")
    gp = plan_mosaic(pan)  # uint16: one stretch for every window, from decimated reads
    assert gp.stretch is not None and gp.stretch[1] > gp.stretch[0]


def test_cli_build_region_info_verify(tmp_path, capsys):
    from maps.geotiff import write_geotiff
    from runtime.cli.skyfix import main

    tif = write_geotiff(tmp_path / "src.tif", _ortho(4, h=500, w=1000))
    out = tmp_path / "c.region"
    assert main(["maps", "build-region", str(tif), "-o", str(out), "--shard-km", "0.25", "--model", "classical",
                 "--workers", "2"]) == 0
    err = capsys.readouterr()
    assert "shards" in err.out and "built 2 shards, 0 resumed" in err.err
    assert main(["maps", "info", str(out)]) == 0
    assert "region format v1" in capsys.readouterr().out
    assert main(["maps", "verify", str(out)]) == 0
    assert "OK: region" in capsys.readouterr().out
    (out / "shards" / "r000_c000" / "positions.f64.npy").write_bytes(b"broken")
    assert main(["maps", "verify", str(out)]) == 2
    assert "r000_c000" in capsys.readouterr().err


def test_a_region_is_not_opened_as_one_map(built):
    from maps.package import MapPackage

    with pytest.raises(MapFormatError, match="is a region map .*runtime replay BAG --map REGION"):
        MapPackage.load(built[1])


def test_missing_ray_names_the_extra(tmp_path, monkeypatch):
    from maps.geotiff import write_geotiff
    from maps.region_build import build_region

    tif = write_geotiff(tmp_path / "src.tif", _ortho(5, h=400, w=400))
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MapError, match=r"pip install 'skyfix\[region\]'"):
        build_region([str(tif)], tmp_path / "r.region", tiny_spec(), shard_km=0.2, stride_m=8.0)
