"""The onboard loop over a region map: a simulated flight crossing shard borders gives the same track as over one
map of the area, the shards load in the background around the vehicle, and a LOST belief searches nearby shards."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from maps.geodesy import LocalFrame
from maps.ortho import Orthophoto
from runtime.sim.randomize import write_camera_file

pytest.importorskip("ray", reason="the region extra (pip install 'skyfix[region]') is not installed")

FRAME = LocalFrame(47.3, 8.5)

@pytest.fixture(scope="module")
def region_flight(tmp_path_factory):
    """(region dir, single map dir, camera yaml, bag events): a 700 x 460 m textured orthophoto in its own frame,
    built as 0.25 km shards (3 x 2) and as one map (classical descriptor), and a 40 s flight at 12 m/s from west to
    east across two shard borders."""
    from maps.build import build_map
    from maps.descriptors import ClassicalDescriptor, classical_contract
    from maps.geotiff import load_orthophoto, write_geotiff
    from maps.region_build import EncoderSpec, build_region
    from runtime.bags import BagReader
    from runtime.feed import ROLES
    from runtime.sim.config import SimConfig
    from runtime.sim.flight import simulate

    root = tmp_path_factory.mktemp("region_flight")
    gen = np.random.default_rng(7)
    h, w = 920, 1400
    noise = sum(cv2.GaussianBlur(gen.standard_normal((h, w, 3)).astype(np.float32), (0, 0), s) * s for s in (2, 6, 15))
    img = np.clip(128 + 55 * noise / noise.std(), 0, 255).astype(np.uint8)
    tif = write_geotiff(root / "o.tif", Orthophoto(img, np.ones((h, w), bool), 0.5, -350.0, 230.0, FRAME))
    region = root / "r.region"
    rep = build_region([str(tif)], region, EncoderSpec("classical"), shard_km=0.25, workers=2)
    assert rep["shards"] == 6
    single = build_map(load_orthophoto(tif), ClassicalDescriptor(), classical_contract(), root / "one.map")
    cam = root / "cam.yaml"
    write_camera_file(cam, width=320, height=240, fx=240.0)
    wp = root / "wp.csv"
    wp.write_text("x,y\n-260,-20\n-90,20\n90,-20\n260,20\n")
    bag = root / "flight.bag"
    simulate(SimConfig(ortho=str(tif), camera=str(cam), out=str(bag), duration_s=40.0, altitude_m=60.0,
                       speed_mps=12.0, trajectory="waypoints", waypoints=str(wp), gps_sigma_m=3.0, seed=5,
                       gps_outages=((12.0, 30.0),)))
    with BagReader(bag) as r:
        events = list(r.events(roles=ROLES))
    return region, single, cam, events, bag


def _fly(package, cam, events):
    from calibration.camera_io import load_camera
    from runtime.encoder import load_encoder
    from runtime.localizer import Localizer

    loop = Localizer(package, load_encoder("classical"), camera=load_camera(cam))
    outs = [o for o in (loop.process(e) for e in events) if o is not None and o.source == "frame"]
    return loop, outs


def test_flight_across_shard_borders_equals_one_map(region_flight):
    from maps.package import MapPackage
    from maps.region import RegionMap

    region, single, cam, events, _ = region_flight
    _, one = _fly(MapPackage.load(single), cam, events)
    with RegionMap(region, stall_ms=5000.0) as reg:
        loop, many = _fly(reg, cam, events)
        crossed = {reg.shard_of(o.estimate.x, o.estimate.y) for o in many}
        assert len(crossed) >= 3  # three shard cores flown over
        assert reg.counts["loads"] >= 3 and reg.counts["late_shards"] == 0
        assert loop.counts["frames_used"] > 0.8 * loop.counts["frames"]
    assert len(one) == len(many) > 150
    a = np.array([[o.estimate.x, o.estimate.y] for o in one])
    b = np.array([[o.estimate.x, o.estimate.y] for o in many])
    # the same pixels, tiles and embeddings: the same track (to 1e-13 m: candidates merged from shards sum in
    # another order)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert [o.estimate.status for o in one] == [o.estimate.status for o in many]


def test_shard_switches_never_stall_a_frame_beyond_the_bound(region_flight):
    """With a 1 ms bound the loop never waits longer for a shard (the loads run beside it); frames whose shards
    were not ready yet are counted and noted, the run goes on."""
    from maps.region import RegionMap

    region, _, cam, events, _ = region_flight
    with RegionMap(region, stall_ms=1.0) as reg:
        loop, outs = _fly(reg, cam, events)
        assert reg.stalls and max(reg.stalls) < 0.25  # 1 ms asked; the rest is the scheduler on a busy machine
        assert len(outs) > 150 and loop.counts["frames_used"] > 0.6 * loop.counts["frames"]
        if reg.counts["late_shards"]:
            assert loop.counts["frames_late_shards"] >= 1 and any("still loading" in n for n in loop.notes)


def test_wide_belief_searches_the_shards_around_it(region_flight):
    """Where a single map is searched whole (a belief wider than the tracker's wide search, or LOST), a region is
    searched within wide_radius_m of the belief: never whole, and not before a first position."""
    from calibration.camera_io import load_camera
    from maps.region import RegionMap
    from runtime.encoder import load_encoder
    from runtime.events import GpsFix
    from runtime.localizer import Localizer, LocalizerConfig

    region, _, cam, _, _ = region_flight
    with RegionMap(region, stall_ms=5000.0, wide_radius_m=400.0) as reg:
        cfg = LocalizerConfig(tracker={"wide_search_radius_m": 100.0})
        loop = Localizer(reg, load_encoder("classical"), camera=load_camera(cam), config=cfg)
        assert loop._scope() is None  # no position yet: nothing is searched, never the whole region
        lat, lon = reg.frame.to_wgs84(10.0, -5.0)
        loop.on_gps(GpsFix(1_000_000_000, float(lat), float(lon), 60.0, cov_enu=np.diag([150.0**2] * 3)))
        assert loop.tracker.search_scope(cfg.min_scope_m) is None  # the tracker would search a map whole
        x, y, r = loop._scope()
        assert math.hypot(x - 10.0, y + 5.0) < 150.0 and math.isclose(r, 400.0)  # 3 sigma, capped
        assert len(reg.focus((x, y, r))) == 6  # every shard within 400 m: here the whole (small) region


def test_region_maps_refuse_the_gpu_loop(region_flight):
    from maps.region import RegionMap
    from runtime.encoder import load_encoder
    from runtime.localizer import Localizer, LocalizerError

    region = region_flight[0]
    with RegionMap(region) as reg:
        with pytest.raises(LocalizerError, match="region maps run the loop on the CPU"):
            Localizer(reg, load_encoder("classical"), device="cuda")


def test_replay_cli_over_a_region(region_flight, tmp_path, capsys):
    import json

    from runtime.cli.onboard import main

    region, _, cam, _, bag = region_flight
    stats = tmp_path / "stats.json"
    assert main(["replay", str(bag), "--map", str(region), "--camera", str(cam), "-o", str(tmp_path / "t.jsonl"),
                 "--region-stats", str(stats), "--region-cache-mb", "64", "--shard-stall-ms", "200"]) == 0
    err = capsys.readouterr().err
    assert f"region map {region}:" in err and "shard loads in the background" in err
    s = json.loads(stats.read_text())
    assert s["counts"]["loads"] >= 3 and s["stall_bound_ms"] == 200.0 and s["cache_mb"] == 64.0
    assert s["frames"] > 150 and s["wait_ms"]["max"] < 1000.0
    assert len(set(s["shards_loaded"])) >= 3


def test_a_damaged_shard_is_left_out_and_the_run_goes_on(region_flight, tmp_path):
    import shutil

    from maps.region import RegionMap

    region, _, cam, events, _ = region_flight
    copy = tmp_path / "damaged.region"
    shutil.copytree(region, copy)
    emb = copy / "shards" / "r000_c001" / "embeddings.f16.npy"
    raw = bytearray(emb.read_bytes())
    raw[len(raw) // 2] ^= 0x55
    emb.write_bytes(bytes(raw))
    with RegionMap(copy, stall_ms=5000.0) as reg:
        loop, outs = _fly(reg, cam, events)
        assert list(reg.failed) == ["r000_c001"] and loop.counts["region_shards_failed"] == 1
    assert len(outs) > 150 and loop.counts["frames_used"] > 0.5 * loop.counts["frames"]
    assert any("shard r000_c001" in n and "skyfix maps verify" in n for n in loop.notes)
