"""The torch backend's per-batch-size graph cache (runtime.backends.cuda_graphs) and its options.

On CPU the cache runs a real exported program with :func:`eager_capture` as the "graph" (replay = the eager module
recomputing from the static input buffer into the static output buffer), so entries per batch size, buffer reuse,
the bound and the fallback of a failed capture (the real CUDA capture, which fails without a GPU) are exercised
without a GPU. With a CUDA GPU, the last tests run the real CUDA graphs against the CPU results.
"""

from __future__ import annotations

import json
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from maps.contract import EncoderContract  # noqa: E402
from runtime.backends import load_backend  # noqa: E402
from runtime.backends.cuda_graphs import (  # noqa: E402
    BatchGraphCache, GraphCaptureWarning, cuda_graph_capture, eager_capture,
)
from runtime.errors import BackendError  # noqa: E402

SIZE, DIM = 8, 4
CONTRACT = EncoderContract("tiny-graphs", "tiny", SIZE, SIZE, 0.5, DIM)
CUDA = torch.cuda.is_available()


class _Tiny(torch.nn.Module):
    """uint8[n, 8, 8, 3] -> float32[n, 4] unit rows: conv 3x3, ReLU, mean, linear, L2 normalise."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 6, 3, padding=1)
        self.fc = torch.nn.Linear(6, DIM)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).to(torch.float32) / 255.0
        y = self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))
        return torch.nn.functional.normalize(y, dim=1)


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    """A tiny exported program (dynamic batch from 1) with the skyfix.json contract, as `skyfix export torch` writes."""
    path = tmp_path_factory.mktemp("graphs") / "tiny.pt2"
    batch = torch.export.Dim("batch", min=1, max=64)
    example = torch.zeros(2, SIZE, SIZE, 3, dtype=torch.uint8)
    ep = torch.export.export(_Tiny().eval(), (example,), dynamic_shapes={"images": {0: batch}})
    info = {"metadata": CONTRACT.to_metadata(),
            "inputs": [{"name": "images", "shape": [None, SIZE, SIZE, 3], "dtype": "uint8"}],
            "outputs": [{"name": "embedding", "shape": [None, DIM], "dtype": "float32"}]}
    torch.export.save(ep, str(path), extra_files={"skyfix.json": json.dumps(info)})
    return path


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)


@pytest.fixture()
def backend(program):
    be = load_backend(program, device="cpu")
    yield be
    be.close()


def test_cpu_backend_runs_eagerly(backend):
    assert backend.device == "cpu" and backend.cuda_graphs is None
    out = backend.infer({"images": _images(3, 0)})["embedding"]
    assert out.shape == (3, DIM) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)


def test_one_entry_per_batch_size_with_the_eager_results(backend):
    cache = BatchGraphCache(backend._module, eager_capture, max_entries=4)
    for n, seed in ((1, 1), (3, 2), (1, 3), (16, 4), (3, 5)):
        images = _images(n, seed)
        got = cache([images])
        ref = backend.infer({"images": images})["embedding"]
        assert got.shape == (n, DIM) and got.dtype == np.float32
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
    assert [key[0][0][0] for key in cache.sizes] == [1, 16, 3]  # least recently used first
    assert cache.evictions == 0 and cache.failures == {}


def test_static_buffers_are_reused_and_results_are_copies(backend):
    cache = BatchGraphCache(backend._module, eager_capture)
    a, b = _images(2, 10), _images(2, 11)
    first = cache([a])
    (static_in,), (static_out,) = cache.buffers([a])
    kept = first.copy()
    second = cache([b])
    (again_in,), (again_out,) = cache.buffers([b])
    assert again_in.data_ptr() == static_in.data_ptr() and again_out.data_ptr() == static_out.data_ptr()
    assert np.array_equal(again_in.numpy(), b)  # the static input holds the latest call's images
    np.testing.assert_array_equal(first, kept)  # an earlier result is not overwritten by the next call
    assert not np.allclose(first, second)
    np.testing.assert_allclose(second, backend.infer({"images": b})["embedding"], atol=1e-6)
    assert cache.buffers([_images(5, 0)]) is None


def test_bound_drops_the_least_recently_used_batch_size(backend):
    cache = BatchGraphCache(backend._module, eager_capture, max_entries=2)
    for n in (1, 3, 1, 16):
        cache([_images(n, n)])
    assert [key[0][0][0] for key in cache.sizes] == [1, 16] and cache.evictions == 1
    cache([_images(3, 7)])  # captured again after its eviction
    assert [key[0][0][0] for key in cache.sizes] == [16, 3] and cache.evictions == 2
    cache.clear()
    assert cache.sizes == []


@pytest.mark.skipif(CUDA, reason="the CUDA capture succeeds on a GPU (tested below)")
def test_failed_capture_runs_eagerly_and_warns_once(backend):
    """The real CUDA capture on a machine without CUDA fails: that batch size runs eagerly, correctly."""
    cache = BatchGraphCache(backend._module, cuda_graph_capture)
    images = _images(3, 20)
    with pytest.warns(GraphCaptureWarning, match=r"could not capture a CUDA graph for inputs \[\(3, 8, 8, 3\)\] "
                                                 r"\(.*\); they run eagerly"):
        got = cache([images])
    np.testing.assert_allclose(got, backend.infer({"images": images})["embedding"], atol=1e-6)
    assert list(cache.failures) == [BatchGraphCache.signature([images])] and cache.sizes == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning, no second capture attempt
        again = cache([images])
    np.testing.assert_array_equal(again, got)


def test_output_structures_come_back_as_numpy():
    def fn(x):
        f = x.to(torch.float32)
        return {"sum": f.sum(dim=(1, 2, 3)), "pair": f[:, 0, 0, :] * 2}

    cache = BatchGraphCache(fn, eager_capture)
    images = _images(2, 30)
    out = cache([images])
    assert sorted(out) == ["pair", "sum"] and isinstance(out["sum"], np.ndarray)
    np.testing.assert_allclose(out["sum"], images.reshape(2, -1).sum(axis=1).astype(np.float32))
    np.testing.assert_allclose(out["pair"], images[:, 0, 0, :].astype(np.float32) * 2)
    tup = BatchGraphCache(lambda x: (x.to(torch.float32) + 1, x.to(torch.float32) - 1), eager_capture)([images])
    assert isinstance(tup, tuple) and len(tup) == 2 and np.allclose(tup[0] - tup[1], 2.0)


@pytest.mark.parametrize("bad", [0, -1, True, 2.0])
def test_cache_bound_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match=f"max_entries must be an integer >= 1, got {bad!r}"):
        BatchGraphCache(lambda x: x, eager_capture, max_entries=bad)


# ---------------------------------------------------------------------------------------------- backend options
@pytest.mark.parametrize("options, message", [
    ({"threads": 2}, "unknown torch backend options ['threads']; it takes cuda_graphs (None, True or False) and "
                     "max_graphs (an integer >= 1)"),
    ({"cuda_graphs": "yes"}, "cuda_graphs must be None (auto), True or False, got 'yes'"),
    ({"max_graphs": 0}, "max_graphs must be an integer >= 1 (batch sizes captured at once), got 0"),
    ({"max_graphs": True}, "max_graphs must be an integer >= 1 (batch sizes captured at once), got True"),
])
def test_options_are_checked(program, options, message):
    with pytest.raises(BackendError) as info:
        load_backend(program, device="cpu", **options)
    assert str(info.value) == message


def test_cuda_graphs_true_needs_cuda_and_a_program(program, tmp_path):
    if not CUDA:
        with pytest.raises(BackendError, match=r"cuda_graphs=True needs a CUDA device, but tiny.pt2 runs on cpu"):
            load_backend(program, device="cpu", cuda_graphs=True)
    scripted = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.script(_Tiny().eval()), str(scripted))
    with pytest.raises(BackendError, match=r"cuda_graphs=True needs a torch.export program \(.pt2\), got tiny.pt"):
        load_backend(scripted, device="cpu", cuda_graphs=True)
    with load_backend(program, device="cpu", cuda_graphs=False, max_graphs=2) as be:
        assert be.cuda_graphs is None


def test_an_archive_from_another_torch_says_so(tmp_path):
    """A .pt2 that cannot be loaded but names its torch version in skyfix.json: the error says to re-export."""
    path = tmp_path / "old.pt2"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("old/extra/skyfix.json", json.dumps({"metadata": {"skyfix_export.torch_version": "1.0.0"}}))
    with pytest.raises(BackendError, match=rf"It was exported with torch 1\.0\.0 and this is torch "
                                           rf"{re.escape(torch.__version__)}: .* export it again here with "
                                           r"`skyfix export torch`$"):
        load_backend(path, device="cpu")


# --------------------------------------------------------------------------------------------- with a CUDA GPU
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_cuda_graphs_match_the_cpu(program):
    with load_backend(program, device="cpu") as cpu, load_backend(program, device="cuda") as gpu:
        assert gpu.cuda_graphs is not None
        for n in (1, 3, 16, 3, 1):
            images = _images(n, 50 + n)
            np.testing.assert_allclose(gpu.infer({"images": images})["embedding"],
                                       cpu.infer({"images": images})["embedding"], atol=2e-3)
        assert sorted(key[0][0][0] for key in gpu.cuda_graphs.sizes) == [1, 3, 16]
        assert gpu.cuda_graphs.failures == {}


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_cuda_graph_bound_and_eager_switch(program):
    with load_backend(program, device="cuda", max_graphs=1) as gpu, \
            load_backend(program, device="cuda", cuda_graphs=False) as eager:
        assert eager.cuda_graphs is None
        for n in (2, 5, 2):
            images = _images(n, n)
            np.testing.assert_allclose(gpu.infer({"images": images})["embedding"],
                                       eager.infer({"images": images})["embedding"], atol=1e-4)
        assert len(gpu.cuda_graphs.sizes) == 1 and gpu.cuda_graphs.evictions == 2
