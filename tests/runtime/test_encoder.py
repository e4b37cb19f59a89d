"""runtime.encoder: one embed callable over any backend (or the classical descriptor), contract from the model."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.encoder import CLASSICAL, Encoder, default_model_path, load_encoder
from runtime.errors import BackendError

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from .onnx_models import mean_colour_contract, reference_embedding, write_mean_colour_encoder  # noqa: E402


def images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_onnx_encoder_matches_reference_in_both_layouts(tmp_path, layout):
    c = mean_colour_contract()
    path = write_mean_colour_encoder(tmp_path / f"{layout}.onnx", c, layout=layout)
    with load_encoder(path) as enc:
        assert isinstance(enc, Encoder) and enc.contract == c and enc.embedding_dim == 3 and enc.input_size == (32, 32)
        x = images(5)
        np.testing.assert_allclose(enc(x), reference_embedding(x, c), atol=1e-5)
        assert enc(x[:0]).shape == (0, 3)
        assert enc.last_latency_ms > 0


def test_encoder_rejects_images_off_contract(tmp_path):
    enc = load_encoder(write_mean_colour_encoder(tmp_path / "m.onnx"))
    with pytest.raises(BackendError, match=r"expects RGB uint8\[n, 32, 32, 3\] images .* got uint8\[2, 16, 16, 3\]"):
        enc(images(2, 16))
    with pytest.raises(BackendError, match="got float32"):
        enc(images(2).astype(np.float32))


def test_model_without_contract_or_missing_file_is_refused(tmp_path):
    path = write_mean_colour_encoder(tmp_path / "bare.onnx", metadata=False)
    with pytest.raises(BackendError, match="carries no SkyFix encoder contract.*skyfix export onnx"):
        load_encoder(path)
    with pytest.raises(BackendError, match="does not exist"):
        load_encoder(tmp_path / "nope.onnx")


def test_classical_and_default(tmp_path, monkeypatch):
    enc = load_encoder(CLASSICAL)
    assert enc.name == "classical" and enc.backend is None
    assert enc(images(2, enc.input_size[0])).shape == (2, enc.embedding_dim)
    assert load_encoder(None).contract == enc.contract
    import runtime.encoder as mod

    assert default_model_path().name == "skyfix-default.onnx"
    assert default_model_path("default-int8").name == "skyfix-default-int8.onnx"
    with pytest.raises(BackendError, match="no shipped model is called 'default-fp8'; the shipped ones are default, "
                                           "default-int8"):
        default_model_path("default-fp8")
    monkeypatch.setattr(mod, "_SHIPPED", {**mod._SHIPPED, "default-int8": "gone.onnx"})
    with pytest.raises(BackendError, match="shipped model 'default-int8' .*gone.onnx.* is missing"):
        load_encoder("default-int8")


def test_shipped_int8_variant_is_the_default_model_in_int8(shared_data):
    """`--model default-int8`: the same contract (maps of either serve both), U8S8 Q/DQ, and on real map tiles
    the same embeddings as the FP16 model within INT8's error, retrieving the same tiles."""
    import onnx

    from maps.geotiff import load_orthophoto
    from maps.tiling import TileGrid, cut_tiles, plan_tiles, resample_to_gsd
    from runtime.encoder import shipped_models

    assert set(shipped_models()) == {"default", "default-int8"}
    fp16, int8 = load_encoder("default"), load_encoder("default-int8")
    assert int8.contract == fp16.contract
    model = onnx.load(str(default_model_path("default-int8")))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["skyfix_export.precision"] == "int8-u8s8" and meta["skyfix_export.upcast_from"] == "fp16"
    zero_points = [t for t in model.graph.initializer if t.name.endswith("_zero_point") and t.data_type == onnx.TensorProto.UINT8]
    assert zero_points  # uint8 activations
    ortho = load_orthophoto(shared_data("ortho/swissimage_zurich_b_0.5m.tif"))  # held out from training
    grid = TileGrid.from_contract(fp16.contract)
    ortho = resample_to_gsd(ortho, grid.gsd)
    centres = plan_tiles(ortho, grid)
    imgs = cut_tiles(ortho, centres[:: max(1, len(centres) // 96)][:96], grid)
    a, b = fp16(imgs), int8(imgs)
    cos = np.sum(a * b, axis=1)
    assert cos.mean() > 0.97 and cos.min() > 0.8
    # a map built with FP16, searched with INT8: each tile that FP16 tells from every other one (a cosine margin of
    # 0.02; lake and uniform fields give near-duplicates) is found again
    sims = a @ a.T
    np.fill_diagonal(sims, -1.0)
    distinct = 1.0 - sims.max(axis=1) > 0.02
    assert distinct.sum() >= 40
    found = np.argmax(b @ a.T, axis=1) == np.arange(len(imgs))
    assert found[distinct].mean() >= 0.95


def test_skyfix_maps_build_with_a_model(tmp_path, capsys):
    """`skyfix maps build --model` embeds the tiles with the model and records its contract in the manifest."""
    pytest.importorskip("rasterio")
    from maps.geodesy import LocalFrame
    from maps.geotiff import write_geotiff
    from maps.ortho import Orthophoto
    from maps.package import MapPackage
    from runtime.cli.skyfix import main

    img = np.kron(images(1, 25, seed=3)[0], np.ones((8, 8, 1), np.uint8))  # 200 px of 8-px blocks
    ortho = Orthophoto(image=img, mask=np.ones(img.shape[:2], bool), gsd=0.4, x_min=-40.0, y_max=40.0,
                       frame=LocalFrame(47.4, 8.5))
    tif = write_geotiff(tmp_path / "o.tif", ortho)
    c = mean_colour_contract()
    model = write_mean_colour_encoder(tmp_path / "m.onnx", c)
    assert main(["maps", "build", str(tif), "-o", str(tmp_path / "map"), "--model", str(model)]) == 0
    assert "mean-colour-v1" in capsys.readouterr().err
    pkg = MapPackage.load(tmp_path / "map")
    assert pkg.contract == c and pkg.embedding_dim == 3
    assert main(["maps", "build", str(tif), "-o", str(tmp_path / "map2"), "--model", str(tmp_path / "x.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_model_concatenated_with_the_classical_descriptor(tmp_path):
    """``default+classical``: unit rows whose cosine is (1 - share) x the model's plus share x the classical one;
    the contract names both parts and the share; a model of another input size is refused."""
    from runtime.encoder import CLASSICAL_SHARE, with_classical

    both = load_encoder("default+classical")
    base, cls = load_encoder("default"), load_encoder(CLASSICAL)
    c = both.contract
    assert c.embedding_dim == base.embedding_dim + cls.embedding_dim
    assert c.encoder_id == f"{base.contract.encoder_id}+{cls.contract.encoder_id}@{CLASSICAL_SHARE:g}"
    assert (c.input_width, c.ground_resolution_m) == (base.contract.input_width, base.contract.ground_resolution_m)
    x = images(4, 128, seed=1)
    e, b, k = both(x), base(x), cls(x)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    expected = (1 - CLASSICAL_SHARE) * unit(b) @ unit(b).T + CLASSICAL_SHARE * unit(k) @ unit(k).T
    np.testing.assert_allclose(e @ e.T, expected, atol=1e-5)
    small = load_encoder(write_mean_colour_encoder(tmp_path / "m.onnx"))  # 32 px
    with pytest.raises(BackendError, match="takes 32x32 px .* the classical descriptor 128x128 px .* cannot share"):
        with_classical(small)
    with pytest.raises(BackendError, match=r"share of a concatenation must be in \(0, 1\), got 1.0"):
        with_classical(base, 1.0)


def test_a_map_of_the_concatenation_replays_with_it_by_default(tmp_path, capsys):
    """A map built with ``--model default+classical`` is replayed with the same concatenation when no --model is
    given (the map's encoder id names it); the default model alone is refused naming both ids."""
    import cv2

    from maps.geodesy import LocalFrame
    from maps.geotiff import write_geotiff
    from maps.ortho import Orthophoto
    from runtime.cli.onboard import main as runtime_main
    from runtime.cli.skyfix import main as skyfix_main
    from runtime.cli.replay import load_loop

    noise = cv2.GaussianBlur(np.random.default_rng(0).standard_normal((300, 300, 3)).astype(np.float32), (0, 0), 3)
    img = np.clip(128 + 60 * noise / noise.std(), 0, 255).astype(np.uint8)
    tif = write_geotiff(tmp_path / "o.tif", Orthophoto(img, np.ones((300, 300), bool), 0.4, -60.0, 60.0,
                                                       LocalFrame(47.0, 8.0)))
    out = tmp_path / "m.map"
    assert skyfix_main(["maps", "build", str(tif), "-o", str(out), "--model", "default+classical"]) == 0
    capsys.readouterr()

    class Args:
        map, model, backend, device, threads, map_check = str(out), None, "auto", "cpu", 1, "sha256"
        camera = mount = config = likelihood = height = None

    loop, package, encoder = load_loop(Args())
    assert encoder.contract.encoder_id == package.contract.encoder_id and encoder.name.endswith("+classical")
    assert runtime_main(["replay", str(tmp_path / "none.bag"), "--map", str(out), "--model", "default"]) == 2
    err = capsys.readouterr().err
    assert f"was built with encoder skyfix-default + classical ({package.contract.encoder_id}) but the model is " \
           "skyfix-default" in err


def test_a_map_built_with_default_is_searched_with_default_int8(tmp_path, capsys):
    """`--model default-int8` on a map built with the FP16 model: accepted (same encoder id), and a map tile's own
    image finds that tile."""
    import cv2

    from maps.geodesy import LocalFrame
    from maps.geotiff import write_geotiff
    from maps.ortho import Orthophoto
    from maps.package import MapPackage
    from runtime.cli.skyfix import main as skyfix_main
    from runtime.cli.replay import load_loop

    noise = cv2.GaussianBlur(np.random.default_rng(1).standard_normal((300, 300, 3)).astype(np.float32), (0, 0), 3)
    img = np.clip(128 + 60 * noise / noise.std(), 0, 255).astype(np.uint8)
    tif = write_geotiff(tmp_path / "o.tif", Orthophoto(img, np.ones((300, 300), bool), 0.4, -60.0, 60.0,
                                                       LocalFrame(47.0, 8.0)))
    out = tmp_path / "m.map"
    assert skyfix_main(["maps", "build", str(tif), "-o", str(out)]) == 0
    capsys.readouterr()

    class Args:
        map, model, backend, device, threads, map_check = str(out), "default-int8", "auto", "cpu", 1, "sha256"
        camera = mount = config = likelihood = height = None

    loop, package, encoder = load_loop(Args())
    assert encoder.name == "skyfix-default-int8.onnx" and encoder.contract.encoder_id == package.contract.encoder_id
    pkg = MapPackage.load(out)
    from maps.tiling import cut_tiles

    ortho = pkg.imagery()
    ids = np.arange(0, len(pkg.positions), max(1, len(pkg.positions) // 8))
    tiles = cut_tiles(ortho, pkg.positions[ids], pkg.tile_grid)
    scores, found = pkg.search(encoder(tiles), k=1, exact=True)
    assert np.mean(np.asarray(found)[:, 0] == ids) >= 8 / 9  # 9 of 9 measured
