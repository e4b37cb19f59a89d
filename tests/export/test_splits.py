"""Geographic splits: real overlapping orthophotos are caught; disjoint areas and block splits pass."""

from __future__ import annotations

import numpy as np
import pytest

from export.data import DataError, ExportError
from export.data.splits import (
    GeoArea, SplitOverlapError, area_of, block_split, check_disjoint, overlap, split_by_orthophoto,
)


@pytest.fixture(scope="module")
def swiss(shared_data):
    from maps.geotiff import load_orthophoto

    return {
        "zurich_a": load_orthophoto(shared_data("ortho/swissimage_zurich_a_0.5m.tif")),
        "strip": load_orthophoto(shared_data("ortho/swissimage_strip_0.5m")),
        "zurich_b": load_orthophoto(shared_data("ortho/swissimage_zurich_b_0.5m.tif")),
    }


def test_strip_overlapping_zurich_a_is_detected(swiss):
    inter, gap = overlap(area_of("zurich_a", swiss["zurich_a"]), area_of("strip", swiss["strip"]))
    # the strip (~88 m wide) runs south from zurich_a's top-left corner across all of zurich_a's ~300 m height
    assert 20_000 < inter < 40_000 and gap == 0.0
    with pytest.raises(SplitOverlapError, match="held-out 'zurich_a' vs training 'strip'") as exc:
        split_by_orthophoto(swiss, held_out=["zurich_a"])
    assert isinstance(exc.value, ExportError) and "m^2 in common" in str(exc.value)
    with pytest.raises(SplitOverlapError, match="held-out 'strip' vs training 'zurich_a'"):
        split_by_orthophoto(swiss, held_out=["strip"])


def test_disjoint_orthophotos_pass(swiss):
    split = split_by_orthophoto({k: swiss[k] for k in ("zurich_a", "zurich_b")}, held_out=["zurich_b"], buffer_m=1000)
    assert split.train == ("zurich_a",) and split.held_out == ("zurich_b",)
    # overlapping ones on the same side are fine
    split = split_by_orthophoto(swiss, held_out=["zurich_b"], buffer_m=1000)
    assert set(split.train) == {"zurich_a", "strip"}
    # zurich_a and zurich_b are ~17 km apart: a larger buffer fails
    with pytest.raises(SplitOverlapError, match="apart"):
        split_by_orthophoto({k: swiss[k] for k in ("zurich_a", "zurich_b")}, held_out=["zurich_b"], buffer_m=20_000)


def test_synthetic_areas_and_buffer():
    def square(name, lat, lon, d=0.001):
        return GeoArea(name, ((lat, lon), (lat, lon + d), (lat + d, lon + d), (lat + d, lon)))

    a, b = square("a", 47.0, 8.0), square("b", 47.0, 8.002)  # 1 mdeg lon ~ 76 m apart
    inter, gap = overlap(a, b)
    assert inter == 0.0 and 70 < gap < 80
    check_disjoint([a], [b])
    check_disjoint([a], [b], buffer_m=50)
    with pytest.raises(SplitOverlapError, match="< buffer 100 m"):
        check_disjoint([a], [b], buffer_m=100)
    inside = square("inner", 47.0002, 8.0002, 0.0002)
    with pytest.raises(SplitOverlapError, match="in common"):
        check_disjoint([a], [inside])
    with pytest.raises(DataError, match="at least 3"):
        GeoArea("x", ((47.0, 8.0), (47.1, 8.0)))
    with pytest.raises(DataError, match="not among"):
        split_by_orthophoto({}, held_out=["nope"])


def test_block_split_has_buffer(swiss):
    strip = swiss["strip"]
    s = block_split(strip, block_m=200, held_out_fraction=0.25, buffer_m=60, seed=1)
    assert s.held_out and s.train
    s.check(strip.frame)
    for t in s.train:
        for h in s.held_out:
            dx = max(h[0] - t[2], t[0] - h[2], 0.0)
            dy = max(h[1] - t[3], t[1] - h[3], 0.0)
            assert np.hypot(dx, dy) >= 60 - 1e-6
    assert block_split(strip, 200, 0.25, 60, seed=1) == s
    with pytest.raises(DataError, match="buffer_m"):
        block_split(strip, 100, buffer_m=60)


def test_block_split_feeds_rendered_pairs(swiss):
    from maps.descriptors import classical_contract
    from export.data.pairs import RenderedPairs

    strip = swiss["strip"]
    s = block_split(strip, block_m=250, held_out_fraction=0.3, buffer_m=60, seed=0)
    train = RenderedPairs(strip, classical_contract(), 3, seed=0, areas=s.train)
    half = train.grid.tile_size_m / 2
    for i in range(len(train)):
        x, y = train[i].position
        assert any(b[0] + half <= x <= b[2] - half and b[1] + half <= y <= b[3] - half for b in s.train)
        assert not any(b[0] - half < x < b[2] + half and b[1] - half < y < b[3] + half for b in s.held_out)
