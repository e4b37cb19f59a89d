"""JPEG frames decoded on the device (:mod:`runtime.gpu.decode`): the decoder's contract with a host decoder standing
in where no GPU exists (OpenCV's, handed over as the device decode callable: the same bytes -> the same pixels, so
what is checked is the plumbing into :class:`DeviceFrame`), its refusals (not JPEG, a failing or odd decode), and
nvJPEG against OpenCV where a GPU and torchvision exist."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from runtime.events import decode_image_bytes
from runtime.gpu.decode import JpegDecoder, device_jpeg_decode
from runtime.gpu.rectify import DeviceFrame

torch = pytest.importorskip("torch")


def _jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def _png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def host_chw(data: bytes):
    """OpenCV's decode as the device callable's result: torch uint8[3, H, W] (on the CPU)."""
    return torch.from_numpy(decode_image_bytes(data)).permute(2, 0, 1).contiguous()


@pytest.fixture(scope="module")
def photo():
    rng = np.random.default_rng(3)
    img = cv2.GaussianBlur(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), (5, 5), 0)
    return img


def test_a_decoded_frame_is_the_host_frame_on_the_device(photo):
    data = _jpeg(photo)
    dec = JpegDecoder(torch.device("cpu"), host_chw)
    assert dec.available
    frame = dec.frame(data)
    assert isinstance(frame, DeviceFrame)
    assert frame.shape == (120, 160, 3) and frame.dtype == np.uint8 and frame.device == torch.device("cpu")
    ref = DeviceFrame(decode_image_bytes(data), torch.device("cpu"))
    for k in range(3):  # the pyramid built from it is the host frame's, level by level
        assert torch.equal(frame.level(k), ref.level(k))
    assert (dec.decoded, dec.fallbacks) == (1, 0)


def test_what_the_device_does_not_take_goes_to_the_host(photo):
    dec = JpegDecoder(torch.device("cpu"), host_chw)
    assert dec.frame(_png(photo)) is None  # PNG: the host decodes it
    assert dec.frame(None) is None and dec.frame(b"") is None
    assert (dec.decoded, dec.fallbacks) == (0, 0)

    def refuses(data):
        raise RuntimeError("nvjpeg: unsupported JPEG (progressive)")

    dec = JpegDecoder(torch.device("cpu"), refuses)
    assert dec.frame(_jpeg(photo)) is None and dec.fallbacks == 1 and dec.available and dec.disabled is None
    # a decoder that refuses the first frames in a row cannot work here: switched off, said why
    for _ in range(JpegDecoder.MAX_REFUSALS - 1):
        dec.frame(_jpeg(photo))
    assert not dec.available and dec.fallbacks == JpegDecoder.MAX_REFUSALS
    assert dec.disabled == (f"the device JPEG decoder refused the first {JpegDecoder.MAX_REFUSALS} frames "
                            "(RuntimeError: nvjpeg: unsupported JPEG (progressive)): frames are decoded on the host")
    calls = []

    def flaky(data):  # works, then refuses some frames: stays on (refusals are per frame once it has worked)
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("corrupt stream")
        return host_chw(data)

    dec = JpegDecoder(torch.device("cpu"), flaky)
    assert dec.frame(_jpeg(photo)) is not None
    for _ in range(5):
        assert dec.frame(_jpeg(photo)) is None
    assert dec.available and dec.fallbacks == 5 and dec.disabled is None
    dec = JpegDecoder(torch.device("cpu"), lambda data: torch.zeros((120, 160), dtype=torch.uint8))
    assert dec.frame(_jpeg(photo)) is None and dec.fallbacks == 1  # not [3, H, W]: not used
    none = JpegDecoder(torch.device("cpu"), None)
    assert not none.available and none.frame(_jpeg(photo)) is None


def test_no_device_decoder_off_cuda():
    assert device_jpeg_decode(torch.device("cpu")) is None
    assert not JpegDecoder.for_device(torch.device("cpu")).available


def test_nvjpeg_against_opencv(photo, shared_data):
    """On a GPU with torchvision: a real photo and a synthetic frame decoded by nvJPEG and by OpenCV. JPEG decoders
    are not bit-exact with each other (IDCT, chroma upsampling): stated bound, mean < 1 DN and 99.9 % of the values
    within 4 DN."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here: the decoder's plumbing was checked with OpenCV's decode on the CPU")
    decode = device_jpeg_decode(torch.device("cuda:0"))
    if decode is None:
        pytest.skip("torchvision (with apply_exif_orientation) is not installed: frames are decoded on the host")
    from pathlib import Path

    try:  # a real camera's JPEG where the shared data is there; the synthetic one always
        real = sorted(p for p in Path(shared_data("real/seneca/images")).iterdir() if p.suffix.lower() == ".jpg")[:1]
    except pytest.skip.Exception:
        real = []
    for data in [_jpeg(photo)] + [p.read_bytes() for p in real]:
        dev = decode(data).permute(1, 2, 0).cpu().numpy()
        host = decode_image_bytes(data)
        assert dev.shape == host.shape
        diff = np.abs(dev.astype(np.int16) - host.astype(np.int16))
        assert diff.mean() < 1.0 and np.quantile(diff, 0.999) <= 4, (diff.mean(), np.quantile(diff, 0.999))
