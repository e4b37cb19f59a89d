"""JPEG frames decoded on the GPU (nvJPEG through ``torchvision.io.decode_jpeg``), straight into the device frame.

A camera frame that arrives as JPEG bytes (a bag's ``CompressedImage``, a photo folder) is decoded on the host by
OpenCV on the CPU path (:func:`runtime.events.decode_image_bytes`). With the loop on a CUDA device and torchvision
installed, :class:`JpegDecoder` decodes it on the GPU instead and the result never visits the host: the
:class:`runtime.gpu.rectify.DeviceFrame` is built from it directly. What it cannot take falls back to the host
decode, so the frame is the same frame either way:

* the loop device is not CUDA (``torch:cpu``: the host decoder is the faster one there), or torchvision does not
  import (it is not a dependency of SkyFix: ``pip install torchvision`` matching the installed torch);
* the bytes are not JPEG (PNG frames), or the device decoder refuses them (a corrupt stream, a progressive or CMYK
  JPEG nvJPEG does not take): the host decoder then decides, and a frame it cannot decode either is the loop's
  usual counted skip (``frames_undecodable``).

nvJPEG's IDCT and chroma upsampling are not libjpeg-turbo's: the pixels may differ from OpenCV's by a few DN (JPEG
decoders are not bit-exact with each other); the views, embeddings and fixes then differ by what such noise moves.
EXIF orientation is applied as OpenCV applies it (``apply_exif_orientation``; a torchvision without that option is
not used). Grey JPEGs come out as three equal channels, as on the host. A decoder that refuses the first
``JpegDecoder.MAX_REFUSALS`` frames in a row (one that cannot work here) is switched off, so a run does not pay a
failed attempt per frame. torchvision 0.29 deprecates its decoders in favour of TorchCodec; a TorchCodec path is not
written.
"""

from __future__ import annotations

from typing import Callable

from . import import_torch

__all__ = ["JpegDecoder", "device_jpeg_decode"]

_JPEG_MAGIC = b"\xff\xd8"


def device_jpeg_decode(device) -> Callable | None:
    """``torchvision.io.decode_jpeg`` on ``device`` as ``bytes -> torch uint8[3, H, W]`` (RGB, EXIF orientation
    applied), or None when ``device`` is not CUDA or torchvision (with ``apply_exif_orientation``) is missing."""
    if getattr(device, "type", "") != "cuda":
        return None
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except Exception:  # not installed, or a build that does not match torch (it then fails at import)
        return None
    torch = import_torch()

    def decode(data: bytes):
        buf = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        return decode_jpeg(buf, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True)

    return decode


class JpegDecoder:
    """Frames' JPEG bytes -> :class:`runtime.gpu.rectify.DeviceFrame` on the device, when it can.

    Args:
        device: the ``torch.device`` of the loop's stages.
        decode: ``bytes -> torch uint8[3, H, W]`` on ``device`` (default :func:`device_jpeg_decode`'s; None: no
            device decoding, every frame goes through the host).

    Attributes:
        decoded: frames decoded on the device; fallbacks: JPEG frames the device decoder refused (host decoded).
        disabled: why device decoding was switched off (``MAX_REFUSALS`` refusals in a row before any success: a
            decoder that cannot work here, e.g. torchvision's image extension not loaded), else None.
    """

    #: refusals in a row, before the first success, after which the device decoder is no longer tried
    MAX_REFUSALS = 3

    def __init__(self, device, decode: Callable | None = None) -> None:
        self.device = device
        self._decode = decode
        self.decoded = 0
        self.fallbacks = 0
        self.disabled: str | None = None

    @classmethod
    def for_device(cls, device) -> "JpegDecoder":
        """The decoder :func:`device_jpeg_decode` gives for ``device`` (possibly none)."""
        return cls(device, device_jpeg_decode(device))

    @property
    def available(self) -> bool:
        """Whether frames can be decoded on the device at all."""
        return self._decode is not None

    def frame(self, data: bytes | None):
        """A DeviceFrame of the JPEG ``data``, or None where the host must decode it (no device decoder, not JPEG,
        refused by the device decoder)."""
        if self._decode is None or data is None or bytes(data[:2]) != _JPEG_MAGIC:
            return None
        try:
            chw = self._decode(data)
        except Exception as exc:  # nvJPEG's refusals surface as RuntimeError; the host decoder gives the typed error
            return self._refused(f"{type(exc).__name__}: {exc}")
        if chw.dim() != 3 or chw.shape[0] != 3 or chw.dtype != import_torch().uint8:
            return self._refused(f"it returned {chw.dtype}{list(chw.shape)}, expected uint8[3, H, W]")
        from .rectify import DeviceFrame

        self.decoded += 1
        return DeviceFrame.from_chw(chw.to(self.device))

    def _refused(self, why: str) -> None:
        self.fallbacks += 1
        if self.decoded == 0 and self.fallbacks >= self.MAX_REFUSALS:
            self.disabled = (f"the device JPEG decoder refused the first {self.fallbacks} frames ({why}): frames are "
                             "decoded on the host")
            self._decode = None
        return None
