"""Fixtures of the torch-stage parity tests: the device (torch on the CPU always; CUDA where a GPU exists, else
skipped with the reason), one torch thread (the parity runs share small CI machines), a held-out real orthophoto."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the torch stages need torch (pip install 'skyfix[train]')")

from .parity import GSD, ORTHO


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    """A torch device name for the stages: "cpu" everywhere, "cuda" only where torch sees a GPU."""
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here: the same torch stages were checked on the CPU")
    return request.param


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def ortho(shared_data):
    """(the orthophoto at 0.5 m, the same resampled to GSD) of zurich_a (held out from encoder training)."""
    pytest.importorskip("rasterio")
    from maps.geotiff import load_orthophoto
    from maps.tiling import resample_to_gsd

    o = load_orthophoto(shared_data(ORTHO))
    return o, resample_to_gsd(o, GSD)


@pytest.fixture(scope="module")
def camera():
    from calibration.camera_io import default_camera

    return default_camera()
