"""Rendered pairs on a real orthophoto: alignment (NCC), determinism, semi-positives, heading labels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from export.data import DataError
from export.data.augment import PhotometricAugment
from export.data.pairs import PairBatch, PairConfig, PairSamplingError, RenderedPairs, masked_ncc

ORTHO = "ortho/swissimage_zurich_a_0.5m.tif"
# Measured on zurich_a (60 pairs, seed 3, default config): positive NCC min 0.966 (median 0.99); a tile 100 m east:
# |NCC| median 0.10, max 0.28. The floors leave a wide margin.
POSITIVE_NCC_FLOOR = 0.85
FAR_NCC_CEIL = 0.5


@pytest.fixture(scope="module")
def ortho(shared_data):
    from maps.geotiff import load_orthophoto

    return load_orthophoto(shared_data(ORTHO))


@pytest.fixture(scope="module")
def contract():
    from maps.descriptors import classical_contract

    return classical_contract()


def _rotate(img, mask, angle_rad):
    """Rotate by angle_rad counter-clockwise (on the north-up image) about the centre."""
    import cv2

    s = img.shape[0]
    M = cv2.getRotationMatrix2D(((s - 1) / 2, (s - 1) / 2), math.degrees(angle_rad), 1.0)
    out = cv2.warpAffine(img, M, (s, s))
    m = cv2.warpAffine(mask.astype(np.uint8), M, (s, s), flags=cv2.INTER_NEAREST) > 0
    return out, m


def test_query_matches_positive_and_not_a_far_tile(ortho, contract):
    ds = RenderedPairs(ortho, contract, 12, seed=3)
    for i in range(len(ds)):
        s = ds[i]
        assert s.query.shape == (128, 128, 3) and s.query.dtype == np.uint8 and s.positive.shape == (128, 128, 3)
        assert s.valid_fraction >= ds.config.min_valid_fraction
        pos = masked_ncc(s.query, s.positive, s.query_mask & s.positive_mask)
        assert pos > POSITIVE_NCC_FLOOR, (i, pos)
        far, fmask = ds.tile(s.position + np.array([100.0, 0.0]))
        m = s.query_mask & fmask
        if m.sum() > 1000:
            assert abs(masked_ncc(s.query, far, m)) < FAR_NCC_CEIL
            assert abs(masked_ncc(s.query, far, m)) < pos - 0.4


def test_known_pose_nadir_pair(ortho, contract):
    from calibration.geometry import Attitude

    ds = RenderedPairs(ortho, contract, 1, config=PairConfig(photometric=PhotometricAugment.off()))
    q, m = ds.render_query((10.0, -20.0), 100.0, Attitude.from_degrees(3.0, -4.0, 30.0), 0.0)
    t, tm = ds.tile((10.0, -20.0))
    assert m.mean() > 0.95
    assert masked_ncc(q, t, m & tm) > 0.95
    shifted, sm = ds.tile((10.0 + 100.0, -20.0))
    assert masked_ncc(q, shifted, m & sm) < 0.5


def test_deterministic_by_seed_and_index(ortho, contract):
    a = RenderedPairs(ortho, contract, 5, seed=7)
    b = RenderedPairs(ortho, contract, 5, seed=7)
    c = RenderedPairs(ortho, contract, 5, seed=8)
    for i in (0, 4, 2):  # order does not matter
        sa, sb = a[i], b[i]
        assert np.array_equal(sa.query, sb.query) and np.array_equal(sa.position, sb.position)
        assert sa.rotation_rad == sb.rotation_rad
    assert not np.array_equal(a[0].position, c[0].position)
    assert np.array_equal(a[-1].query, a[4].query)
    with pytest.raises(IndexError):
        a[5]


def test_semi_positives_within_radius(ortho, contract):
    ds = RenderedPairs(ortho, contract, 6, seed=1)
    for i in range(len(ds)):
        s = ds[i]
        assert len(s.semi_positive_ids) > 0
        d = np.hypot(*(ds.tile_centres[s.semi_positive_ids] - s.position).T)
        assert np.all(d <= ds.semi_positive_radius_m + 1e-9)
        assert np.allclose(d, s.semi_positive_distances_m) and np.all(np.diff(d) >= 0)
        others = np.setdiff1d(np.arange(len(ds.tile_centres)), s.semi_positive_ids)
        assert np.all(np.hypot(*(ds.tile_centres[others] - s.position).T) > ds.semi_positive_radius_m)


def test_heading_label_rotates_query_back(ortho, contract):
    cfg = PairConfig(heading_dropped=True, photometric=PhotometricAugment.off())
    ds = RenderedPairs(ortho, contract, 6, seed=11, config=cfg)
    rotations = []
    for i in range(len(ds)):
        s = ds[i]
        rotations.append(s.rotation_rad)
        assert math.isclose((s.true_heading_rad - s.assumed_heading_rad) % (2 * math.pi), s.rotation_rad, abs_tol=1e-9)
        back, bm = _rotate(s.query, s.query_mask, -s.rotation_rad)
        m = bm & s.positive_mask
        aligned = masked_ncc(back, s.positive, m)
        assert aligned > POSITIVE_NCC_FLOOR, (i, aligned)
        if min(s.rotation_rad, 2 * math.pi - s.rotation_rad) > math.radians(30):
            wrong, wm = _rotate(s.query, s.query_mask, s.rotation_rad)  # the wrong way round
            assert masked_ncc(wrong, s.positive, wm & s.positive_mask) < aligned - 0.3
    assert np.ptp(rotations) > 1.0  # really random headings


def test_heading_noise_is_small_rotation(ortho, contract):
    ds = RenderedPairs(ortho, contract, 8, seed=2, config=PairConfig(heading_noise_deg=3.0))
    rot = np.array([(ds[i].rotation_rad + math.pi) % (2 * math.pi) - math.pi for i in range(len(ds))])
    assert np.all(np.abs(rot) < math.radians(15)) and np.any(rot != 0)


def test_areas_restrict_positions_and_tiles(ortho, contract):
    box = (-200.0, -140.0, 0.0, 140.0)
    ds = RenderedPairs(ortho, contract, 5, seed=4, areas=[box])
    half = ds.grid.tile_size_m / 2
    assert np.all(ds.tile_centres[:, 0] + half <= 0.0 + 1e-9)
    for i in range(len(ds)):
        x, y = ds[i].position
        assert box[0] + half <= x <= box[2] - half and box[1] + half <= y <= box[3] - half
    with pytest.raises(PairSamplingError, match="large enough"):
        RenderedPairs(ortho, contract, 1, areas=[(0.0, 0.0, 40.0, 40.0)])


def test_evaluation_batch_roundtrip_and_torch(ortho, contract, tmp_path):
    ds = RenderedPairs(ortho, contract, 3, seed=5)
    batch = ds.materialize()
    assert batch.query.shape == (3, 128, 128, 3) and batch.semi_positive_ids.shape == (3, 16)
    path = batch.save(tmp_path / "eval.npz")
    again = PairBatch.load(path)
    assert np.array_equal(again.query, batch.query) and np.array_equal(again.rotation_rad, batch.rotation_rad)
    np.savez(tmp_path / "bad.npz", query=batch.query)
    with pytest.raises(DataError, match="lacks arrays"):
        PairBatch.load(tmp_path / "bad.npz")
    torch = pytest.importorskip("torch")
    item = ds.torch_dataset()[1]
    assert item["query"].shape == (3, 128, 128) and item["query"].dtype == torch.uint8
    assert torch.equal(item["query"], torch.from_numpy(batch.query[1]).permute(2, 0, 1))
    norm = ds.torch_dataset(normalize=True)[0]
    assert norm["positive"].dtype == torch.float32 and float(norm["positive"].max()) <= 1.0
    loader = torch.utils.data.DataLoader(ds.torch_dataset(), batch_size=3)
    b = next(iter(loader))
    assert b["semi_positive_ids"].shape == (3, 16)


def test_config_is_strict():
    assert PairConfig.from_dict({"altitude_m": [60, 120], "photometric": {"noise_sigma": 1.0}}).altitude_m == (60.0, 120.0)
    with pytest.raises(DataError, match="unknown pair config keys"):
        PairConfig.from_dict({"altitude": [60, 120]})
    with pytest.raises(DataError, match="unknown photometric"):
        PairConfig.from_dict({"photometric": {"blur": 1}})
    with pytest.raises(DataError, match="altitude_m"):
        PairConfig(altitude_m=(120, 60))
    with pytest.raises(DataError, match="jpeg_quality"):
        PhotometricAugment(jpeg_quality=(90, 50))


def test_bad_arguments(contract):
    with pytest.raises(DataError, match="Orthophoto"):
        RenderedPairs("not an ortho", contract, 1)


def test_photometric_augment_deterministic():
    img = (np.arange(64 * 64 * 3) % 251).astype(np.uint8).reshape(64, 64, 3)
    aug = PhotometricAugment()
    a = aug.apply(img, np.random.default_rng(1))
    b = aug.apply(img, np.random.default_rng(1))
    assert np.array_equal(a, b) and not np.array_equal(a, img)
    assert np.array_equal(PhotometricAugment.off().apply(img, np.random.default_rng(0)), img)


def test_neighbour_sampling_around_a_place_keeps_its_distance(ortho, contract):
    pairs = RenderedPairs(ortho, contract, 100, seed=5)
    first = pairs[0]
    group = [first]
    for i in range(1, 4):
        s = pairs.sample(i, around=first.position, radius_m=40.0, avoid=np.stack([g.position for g in group]),
                         min_separation_m=16.0)
        assert np.hypot(*(s.position - first.position)) <= 40.0 + 1e-9
        assert min(np.hypot(*(s.position - g.position)) for g in group) >= 16.0
        assert masked_ncc(s.query, s.positive, s.query_mask) > 0.5  # still a true pair
        group.append(s)
    # deterministic by index, like independent samples
    again = pairs.sample(1, around=first.position, radius_m=40.0, avoid=first.position[None], min_separation_m=16.0)
    assert np.array_equal(again.position, group[1].position)
    # an impossible request (no room in the disc) fails after max_tries with the usual message
    with pytest.raises(PairSamplingError, match="no pose in"):
        pairs.sample(2, around=first.position, radius_m=5.0, avoid=first.position[None], min_separation_m=16.0)


def test_positive_jitter_offsets_the_positive_tile(ortho, contract):
    exact = RenderedPairs(ortho, contract, 10, seed=3)
    jit = RenderedPairs(ortho, contract, 10, seed=3, config=PairConfig(positive_jitter_m=6.0))
    s0, s1 = exact[0], jit[0]
    assert np.array_equal(s0.position, s1.position) and np.array_equal(s0.query, s1.query)  # same pose and view
    # the jittered positive is the exact tile of a place up to 6 m away per axis: find that shift
    best = max(((dx, dy) for dx in np.arange(-6, 6.1, 0.4) for dy in np.arange(-6, 6.1, 0.4)),
               key=lambda d: masked_ncc(exact.tile(s0.position + np.array(d))[0], s1.positive))
    assert 0.4 <= np.hypot(*best) <= 6.0 * math.sqrt(2) + 0.4
    assert masked_ncc(exact.tile(s0.position + np.array(best))[0], s1.positive) > 0.99
    with pytest.raises(DataError, match="positive_jitter_m must be a number in"):
        PairConfig(positive_jitter_m=-1.0)
