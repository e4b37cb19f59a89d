"""export.data.augment.FieldAugment: each effect does what it says (resampling removes detail finer than the source,
false colour puts the pseudo-NIR, red and green in R, G, B, haze lowers contrast towards a bright airlight, season
turns green towards yellow-brown, shadows only darken), off is the identity, draws are deterministic, invalid pixels
stay black, every bad setting is a typed error; and the pairs and presets that use it."""

from __future__ import annotations

import math

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from export.data import DataError  # noqa: E402
from export.data.augment import FieldAugment  # noqa: E402

GSD = 0.4


def _texture(seed: int = 0, size: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(30, 220, (size, size, 3), dtype=np.uint8)


def _apply(aug: FieldAugment, img: np.ndarray, seed: int = 0, **kw) -> np.ndarray:
    return aug.apply(img, np.random.default_rng(seed), GSD, **kw)


def test_off_is_the_identity_and_draws_are_deterministic():
    img = _texture()
    assert FieldAugment.off().is_off and not FieldAugment.satellite_map().is_off
    assert np.array_equal(_apply(FieldAugment.off(), img), img)
    sat = FieldAugment.satellite_map()
    assert np.array_equal(_apply(sat, img, 5), _apply(sat, img, 5))
    outs = [_apply(sat, img, s) for s in range(6)]
    assert any(not np.array_equal(outs[0], o) for o in outs[1:])


def test_a_coarser_source_removes_the_finer_detail_and_a_finer_one_changes_nothing():
    checker = ((np.indices((64, 64)).sum(0) % 2) * 200 + 20).astype(np.uint8)
    img = np.repeat(checker[:, :, None], 3, axis=2)
    coarse = _apply(FieldAugment(p_resample=1.0, source_gsd_m=(1.0, 1.0)), img)
    assert coarse.std() < 0.2 * img.std()  # a 1-pixel checkerboard at 0.4 m/px does not survive a 1 m/px source
    assert abs(coarse.mean() - img.mean()) < 3
    assert np.array_equal(_apply(FieldAugment(p_resample=1.0, source_gsd_m=(0.3, 0.4)), img), img)


def test_false_colour_is_pseudo_nir_red_green():
    img = np.zeros((4, 4, 3), np.uint8)
    img[:2] = (40, 160, 50)  # vegetation: bright in NIR
    img[2:] = (120, 110, 100)  # bare ground / road
    out = _apply(FieldAugment(p_false_colour=1.0), img).astype(int)
    assert np.abs(out[:, :, 1] - img[:, :, 0]).max() <= 1 and np.abs(out[:, :, 2] - img[:, :, 1]).max() <= 1
    x = img.astype(np.float64) / 255.0
    nir = np.clip(x.mean(axis=2) + 2.5 * np.maximum(x[:, :, 1] - 0.5 * (x[:, :, 0] + x[:, :, 2]), 0.0), 0.0, 1.0)
    assert np.abs(out[:, :, 0] - nir * 255.0).max() <= 1.0
    assert out[0, 0, 0] > 200 and out[3, 3, 0] < 130  # vegetation red in CIR, ground not


def test_haze_lowers_contrast_towards_a_bright_airlight():
    img = _texture(1)
    out = _apply(FieldAugment(p_haze=1.0, haze=1.0), img, seed=3).astype(float)
    ref = img.astype(float)
    assert out.std() < ref.std() and out.mean() > ref.mean()
    assert np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.99  # a blend, not a new image


def test_season_turns_green_towards_yellow_brown_and_leaves_other_colours():
    img = np.zeros((2, 2, 3), np.uint8)
    img[0] = (40, 160, 50)
    img[1] = (160, 60, 60)
    out = _apply(FieldAugment(p_season=1.0), img)
    hue = lambda p: cv2.cvtColor(p.reshape(1, 1, 3).astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)[0, 0, 0]  # noqa: E731
    assert hue(img[0, 0]) > 110 and 40 <= hue(out[0, 0]) < hue(img[0, 0]) - 20
    assert np.abs(out[1].astype(int) - img[1]).max() <= 1


def test_shadows_only_darken_and_invalid_pixels_stay_black():
    img = _texture(2)
    aug = FieldAugment(p_shadow=1.0, shadow=1.0)
    outs = [_apply(aug, img, s).astype(int) for s in range(8)]
    assert all((o <= img.astype(int) + 1).all() for o in outs)
    assert max(float((img.astype(int) - o).mean()) for o in outs) > 5
    mask = np.ones(img.shape[:2], bool)
    mask[:, :10] = False
    out = _apply(FieldAugment.satellite_map(), img, mask=mask)
    assert not out[:, :10].any() and out[:, 10:].any()


def test_scale_jitter_zooms_about_the_centre():
    img = np.zeros((65, 65, 3), np.uint8)
    img[32, 32] = 255
    img[32, 52] = 255  # 20 px right of the centre
    out = _apply(FieldAugment(scale_jitter=0.5), img, seed=1)
    col = np.argmax(out[32, 33:, 0]) + 33
    assert out[32, 32, 0] > 0 and col > 52  # the centre stays, the rest moves out


def test_round_trip_and_every_bad_setting():
    sat = FieldAugment.satellite_map()
    assert FieldAugment.from_dict(sat.to_dict()) == sat
    for kw, msg in (({"p_haze": 1.5}, "p_haze must be a probability"), ({"p_shadow": float("nan")}, "p_shadow"),
                    ({"hue_deg": -1}, r"hue_deg must be a number in \[0, 180\]"), ({"scale_jitter": 2}, "scale_jitter"),
                    ({"source_gsd_m": (1.0, 0.3)}, "source_gsd_m must satisfy"), ({"source_gsd_m": "x"}, "source_gsd_m"),
                    ({"jpeg_quality": (90, 50)}, "jpeg_quality"), ({"saturation": True}, "saturation")):
        with pytest.raises(DataError, match=msg):
            FieldAugment(**kw)
    with pytest.raises(DataError, match="unknown field augmentation"):
        FieldAugment.from_dict({"haz": 0.1})
    with pytest.raises(DataError, match=r"needs RGB uint8\[h, w, 3\], got float64"):
        FieldAugment().apply(np.zeros((4, 4, 3)), np.random.default_rng(0), GSD)
    with pytest.raises(DataError, match="gsd_m must be metres per pixel > 0"):
        FieldAugment().apply(_texture(), np.random.default_rng(0), math.nan)


def test_pairs_with_field_augmentation_keep_their_poses(shared_data):
    """Field augmentation draws from its own stream: the poses and the un-augmented pairs stay as they were."""
    from export.data.pairs import PairConfig, RenderedPairs
    from maps.descriptors import classical_contract
    from maps.geotiff import load_orthophoto

    ortho = load_orthophoto(shared_data("ortho/netherlands_0.25m.tif"))
    plain = RenderedPairs(ortho, classical_contract(), 3, seed=4)
    cfg = PairConfig(map_field=FieldAugment.satellite_map(), query_field=FieldAugment.field_camera())
    field = RenderedPairs(ortho, classical_contract(), 3, seed=4, config=cfg)
    again = RenderedPairs(ortho, classical_contract(), 3, seed=4, config=PairConfig(map_field=FieldAugment()))
    changed = 0
    for i in range(3):
        a, b, c = plain[i], field[i], again[i]
        assert np.array_equal(a.position, b.position) and a.rotation_rad == b.rotation_rad
        assert np.array_equal(a.query, c.query) and np.array_equal(a.positive, c.positive)
        changed += int(not np.array_equal(a.positive, b.positive))
        assert not b.positive[~b.positive_mask].any()
    assert changed >= 2
    assert PairConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(DataError, match="map_field must be a FieldAugment, got dict"):
        PairConfig(map_field={"p_haze": 1})


def test_field_preset_and_old_runs_resume():
    pytest.importorskip("torch")
    from export.train import PRESETS, TrainPreset, get_preset

    f, d = get_preset("field"), get_preset("default")
    assert f.field_augment and not d.field_augment
    assert {k: v for k, v in f.to_dict().items() if k not in ("name", "field_augment")} == \
           {k: v for k, v in d.to_dict().items() if k not in ("name", "field_augment")}
    assert f.pair_config().map_field == FieldAugment.satellite_map()
    assert f.pair_config().query_field == FieldAugment.field_camera()
    assert d.pair_config().map_field.is_off and d.pair_config().query_field.is_off
    assert TrainPreset.from_dict(f.to_dict()) == f and "field" in PRESETS
