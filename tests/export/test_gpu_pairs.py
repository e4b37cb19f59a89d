"""export.data.gpu_pairs (pairs rendered with torch, here CPU torch) against RenderedPairs on real orthophotos: the
same poses and masks, the same pixels within +/-1 DN on a tiny share without augmentation, close statistics with it;
the CPU pairs themselves pinned to what they were before the device renderer existed."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from export.data import DataError  # noqa: E402
from export.data.augment import FieldAugment, PhotometricAugment  # noqa: E402
from export.data.pairs import PairConfig, PairSamplingError, RenderedPairs  # noqa: E402
from maps.contract import EncoderContract  # noqa: E402

CONTRACT = EncoderContract(encoder_id="t", name="t", input_width=128, input_height=128, ground_resolution_m=0.4,
                           embedding_dim=32)
OFF = PhotometricAugment.off()


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    """The renderer's torch device: "cpu" everywhere, "cuda" only where torch sees a GPU."""
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here: the same renderer was checked with CPU torch")
    return request.param


@pytest.fixture(scope="module")
def orthos(shared_data):
    """bali (0.35 m, no-data corners: the mask path) and brazil (0.1 m: deeper mip levels)."""
    pytest.importorskip("rasterio")
    from maps.geotiff import load_orthophoto

    return {n: load_orthophoto(shared_data(f"ortho/{n}.tif")) for n in ("pix4d_bali_0.35m", "openaerialmap_brazil_0.1m")}


def _renderer(pairs, device="cpu", **kw):
    from export.data.gpu_pairs import TorchPairRenderer

    return TorchPairRenderer(pairs, device, workers=2, **kw)


def _compare(cpu, dev, stats):
    """Same draws and masks, exact positives; query differences accumulated into stats."""
    assert len(cpu) == len(dev)
    for a, b in zip(cpu, dev):
        assert (a.index, a.tries) == (b.index, b.tries)
        assert np.array_equal(a.position, b.position) and a.rotation_rad == b.rotation_rad
        assert (a.altitude_m, a.true_heading_rad, a.assumed_heading_rad) == (b.altitude_m, b.true_heading_rad,
                                                                           b.assumed_heading_rad)
        assert np.array_equal(a.semi_positive_ids, b.semi_positive_ids)
        assert np.array_equal(a.query_mask, b.query_mask)
        assert np.array_equal(a.positive_mask, b.positive_mask)
        assert not b.query[~b.query_mask].any()
        d = np.abs(a.query.astype(np.int16) - b.query.astype(np.int16))[a.query_mask]
        stats["n"] += d.size
        stats["differ"] += int(np.count_nonzero(d))
        stats["sum"] += int(d.sum())
        stats["max"] = max(stats["max"], int(d.max()))
        stats["mean_gap"] = max(stats["mean_gap"], abs(float(a.query[a.query_mask].mean()) - float(b.query[b.query_mask].mean())))
        stats["std_gap"] = max(stats["std_gap"], abs(float(a.query[a.query_mask].std()) - float(b.query[b.query_mask].std())))
        stats["positive_max"] = max(stats["positive_max"], int(np.abs(a.positive.astype(np.int16) - b.positive).max()))


def _stats():
    return {"n": 0, "differ": 0, "sum": 0, "max": 0, "mean_gap": 0.0, "std_gap": 0.0, "positive_max": 0}


def test_the_cpu_pairs_are_pinned(make_synthetic_ortho):
    """The CPU renderer's samples (the default preset's pair config: groups, jitter, photometric with JPEG) are
    what they were before the pose generator was factored out for the device renderer (values recorded with the
    code of commit 546be12; the image digest depends on OpenCV's resampling, recorded with OpenCV 5.1.0)."""
    from export.train import Area, _MultiPairs, get_preset

    c = EncoderContract(encoder_id="training", name="skyfix-default", input_width=64, input_height=64,
                        ground_resolution_m=0.4, embedding_dim=32)
    data = _MultiPairs([Area("s", ortho=make_synthetic_ortho(size_m=180.0))], c, 0, get_preset("default").pair_config(),
                       4, 20.0, 6.0)
    b = data.batch(1, 8)
    assert [s.index for s in b] == list(range(8, 16))
    assert [s.tries for s in b] == [1, 1, 1, 3, 1, 1, 2, 2]
    assert np.allclose([s.position for s in b], [
        [39.673019678, -50.234621752], [54.667882277, -51.645611754], [43.58446691, -36.665050683],
        [33.587538385, -68.934890477], [18.780674567, -30.286366238], [30.324046745, -20.403597164],
        [12.385400312, -13.018977933], [25.807764243, -14.128064092]], rtol=0, atol=1e-8)
    assert np.allclose([s.rotation_rad for s in b], [
        6.099774599869, 0.061427865641, 0.117819804976, 0.076178527026, 6.133387605489, 0.190011267194,
        0.015339794192, 6.159656790198], rtol=0, atol=1e-11)
    if cv2.__version__ != "5.1.0":
        pytest.skip(f"image digest recorded with OpenCV 5.1.0, this is {cv2.__version__} (poses checked)")
    h = hashlib.sha256()
    for s in b:
        for a in (s.query, s.query_mask, s.positive, s.positive_mask):
            h.update(np.ascontiguousarray(a).tobytes())
    assert h.hexdigest() == "5db966010c57b412d0162978cb6b75c3bc8bc118248c4ad4cf079ea5ee19de3a"


@pytest.mark.parametrize("name", ["pix4d_bali_0.35m", "openaerialmap_brazil_0.1m"])
def test_device_pairs_equal_cpu_pairs_without_augmentation(orthos, name, device):
    """Measured (CPU torch, 12 pairs each): masks identical, positives identical, queries +/-1 DN on ~4e-5 of the
    valid pixels (grid_sample's float32 coordinate normalisation)."""
    pairs = RenderedPairs(orthos[name], CONTRACT, 1000, 3, PairConfig(photometric=OFF, positive_jitter_m=6.4))
    r = _renderer(pairs, device)
    idx = list(range(5, 17))
    stats = _stats()
    _compare([pairs.sample(i) for i in idx], r.batch(idx).to_samples(pairs), stats)
    assert stats["n"] > 100_000
    assert stats["positive_max"] == 0
    assert stats["max"] <= 1 and stats["differ"] / stats["n"] < 1e-3


def test_device_pairs_with_augmentation(orthos, device):
    """The default photometric augmentation: the same masks; without noise (it comes from torch's generator on the
    device, the CPU's from numpy's) within float rounding (JPEG on the host may turn 1 DN into 2); with noise the
    per-sample mean and spread agree (measured: mean |diff| 1.35 DN, mean and std gaps < 0.1 DN)."""
    o = orthos["openaerialmap_brazil_0.1m"]
    idx = list(range(8))
    quiet = RenderedPairs(o, CONTRACT, 1000, 1, PairConfig(photometric=PhotometricAugment(noise_sigma=0.0)))
    stats = _stats()
    _compare([quiet.sample(i) for i in idx], _renderer(quiet, device).batch(idx).to_samples(quiet), stats)
    assert stats["max"] <= 3 and stats["differ"] / stats["n"] < 2e-3

    noisy = RenderedPairs(o, CONTRACT, 1000, 1, PairConfig())
    stats = _stats()
    _compare([noisy.sample(i) for i in idx], _renderer(noisy, device).batch(idx).to_samples(noisy), stats)
    assert 0.3 < stats["sum"] / stats["n"] < 3.0  # the two noise fields differ (sigma up to 3 DN)
    assert stats["mean_gap"] < 0.3 and stats["std_gap"] < 0.3


def test_jpeg_skip_is_no_jpeg(orthos):
    """jpeg="skip": the device renderer leaves JPEG out (the draws stay those of the configured range)."""
    o = orthos["pix4d_bali_0.35m"]
    idx = list(range(6))
    skipped = RenderedPairs(o, CONTRACT, 1000, 2, PairConfig(photometric=PhotometricAugment(noise_sigma=0.0)))
    dev = _renderer(skipped, jpeg="skip").batch(idx).to_samples(skipped)
    # the CPU reference without JPEG: the same draws but the last two (quality, noise seed), which change nothing
    ref = RenderedPairs(o, CONTRACT, 1000, 2, PairConfig(photometric=PhotometricAugment(noise_sigma=0.0,
                                                                                        jpeg_quality=(0, 0))))
    stats = _stats()
    _compare([ref.sample(i) for i in idx], dev, stats)
    assert stats["max"] <= 1 and stats["differ"] / stats["n"] < 1e-3


def test_groups_retries_and_fallbacks_follow_multipairs(orthos, device):
    """Groups of nearby places, retried poses (a strict valid fraction) and neighbours that cannot be placed
    (drawn anywhere instead): the device batches hold _MultiPairs' samples."""
    from export.train import Area, _DevicePairs, _MultiPairs

    o = orthos["pix4d_bali_0.35m"]
    cfg = PairConfig(photometric=OFF, min_valid_fraction=0.97, max_tilt_deg=20.0, positive_jitter_m=3.0)
    for radius, separation in ((30.0, 8.0), (4.0, 10.0)):  # the second: no neighbour fits, all fall back
        multi = _MultiPairs([Area("bali", ortho=o)], CONTRACT, 4, cfg, 4, radius, separation)
        dev = _DevicePairs(multi, torch.device(device))
        try:
            cpu = multi.batch(1, 8)
            got = dev.batch(1, 8)
        finally:
            dev.close()
        assert max(s.tries for s in cpu) > 1  # retries happened
        stats = _stats()
        _compare(cpu, got.to_samples(multi.sets[0]), stats)
        assert stats["max"] <= 1
        assert np.allclose(got.rotation_rad, [s.rotation_rad for s in cpu], rtol=0, atol=0)
        assert np.array_equal(got.positions, np.stack([s.position for s in cpu]))


def test_field_augmentation_is_applied_on_the_host(orthos):
    """The field preset's FieldAugment runs on the host on the device-rendered images: the CPU's samples up to the
    renderers' +/-1 DN (which resampling and JPEG can spread a little)."""
    o = orthos["pix4d_bali_0.35m"]
    cfg = PairConfig(photometric=OFF, map_field=FieldAugment.satellite_map(), query_field=FieldAugment.field_camera())
    pairs = RenderedPairs(o, CONTRACT, 1000, 5, cfg)
    idx = list(range(6))
    cpu = [pairs.sample(i) for i in idx]
    dev = _renderer(pairs).batch(idx).to_samples(pairs)
    plain = [RenderedPairs(o, CONTRACT, 1000, 5, PairConfig(photometric=OFF)).sample(i) for i in idx]
    for a, b, c in zip(cpu, dev, plain):
        assert np.array_equal(a.query_mask, b.query_mask)
        assert np.abs(a.positive.astype(int) - b.positive).mean() < 0.05  # the same field draw on the same tile
        assert np.abs(a.query.astype(int) - b.query)[a.query_mask].mean() < 0.1
    assert any(not np.array_equal(a.positive, c.positive) for a, c in zip(cpu, plain))  # the field change happened


def test_renderer_errors(orthos):
    from export.data.gpu_pairs import TorchPairRenderer

    pairs = RenderedPairs(orthos["pix4d_bali_0.35m"], CONTRACT, 10, 0, PairConfig(photometric=OFF))
    with pytest.raises(DataError, match="RenderedPairs"):
        TorchPairRenderer(object())
    with pytest.raises(DataError, match=r"jpeg must be one of \('host', 'skip'\)"):
        TorchPairRenderer(pairs, jpeg="device")
    with pytest.raises(DataError, match="workers must be a positive number"):
        TorchPairRenderer(pairs, workers=0)
    r = _renderer(pairs)
    with pytest.raises(DataError, match="group_size must be a positive integer"):
        r.batch([0, 1], group_size=0)
    hard = RenderedPairs(orthos["pix4d_bali_0.35m"], CONTRACT, 10, 0,
                         PairConfig(photometric=OFF, altitude_m=(5.0, 6.0), min_valid_fraction=1.0, max_tries=2))
    with pytest.raises(PairSamplingError, match="no pose in 2 tries") as cpu_err:
        hard.sample(0)
    with pytest.raises(PairSamplingError) as dev_err:
        _renderer(hard).batch([0])
    assert str(dev_err.value) == str(cpu_err.value)
