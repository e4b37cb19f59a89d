"""sensor_msgs/Image encodings (mono, rgb/bgr(a), bayer) and JPEG/PNG for CompressedImage, both ways."""

from __future__ import annotations


import numpy as np


from ..errors import BagError
from .msgtypes import IMAGE_ENCODINGS

# ============================================================================================== image encodings
_BAYER_TO_CV = {  # ROS pattern -> OpenCV code name producing RGB (OpenCV names the pattern by the 2nd row/col).
    "rggb": "COLOR_BayerBG2RGB",
    "bggr": "COLOR_BayerRG2RGB",
    "gbrg": "COLOR_BayerGR2RGB",
    "grbg": "COLOR_BayerGB2RGB",
}
_BAYER_OFFSETS = {  # pattern -> {channel index: [(row, col) offsets within the 2x2 cell]}
    "rggb": {0: [(0, 0)], 1: [(0, 1), (1, 0)], 2: [(1, 1)]},
    "bggr": {2: [(0, 0)], 1: [(0, 1), (1, 0)], 0: [(1, 1)]},
    "gbrg": {1: [(0, 0), (1, 1)], 2: [(0, 1)], 0: [(1, 0)]},
    "grbg": {1: [(0, 0), (1, 1)], 0: [(0, 1)], 2: [(1, 0)]},
}


def decode_image(height: int, width: int, encoding: str, data, step: int = 0, is_bigendian: int = 0) -> np.ndarray:
    """A ``sensor_msgs/Image`` payload -> RGB ``uint8[height, width, 3]``.

    16-bit encodings are scaled to 8 bits (>> 8). Bayer mosaics are demosaiced with OpenCV (bilinear).

    Raises:
        BagError: unsupported encoding, or a payload of the wrong size.
    """
    import cv2

    enc = encoding.strip().lower()
    if enc not in IMAGE_ENCODINGS:
        raise BagError(
            f"unsupported sensor_msgs/Image encoding {encoding!r}; supported: {', '.join(IMAGE_ENCODINGS)} "
            "(or publish sensor_msgs/CompressedImage JPEG/PNG)"
        )
    channels = 3 if enc in ("rgb8", "bgr8") else 4 if enc in ("rgba8", "bgra8") else 1
    depth = 2 if enc.endswith("16") else 1
    row_bytes = width * channels * depth
    step = int(step) or row_bytes
    buf = np.frombuffer(bytes(data) if not isinstance(data, np.ndarray) else data.tobytes(), dtype=np.uint8)
    if step < row_bytes or buf.size < step * (height - 1) + row_bytes:
        raise BagError(
            f"image payload of {buf.size} bytes is too small for {width}x{height} {encoding} with step {step} "
            f"(needs {step * height})"
        )
    if buf.size < step * height:
        buf = np.concatenate([buf, np.zeros(step * height - buf.size, np.uint8)])
    rows = buf[: step * height].reshape(height, step)[:, :row_bytes]
    if depth == 2:
        dt = np.dtype(">u2" if is_bigendian else "<u2")
        arr = np.ascontiguousarray(rows).view(dt).reshape(height, width, channels)
        arr = (arr >> 8).astype(np.uint8)
    else:
        arr = rows.reshape(height, width, channels)
    if enc.startswith("bayer_"):
        code = getattr(cv2, _BAYER_TO_CV[enc[6:10]])
        return cv2.cvtColor(np.ascontiguousarray(arr[:, :, 0]), code)
    if channels == 1:
        return np.repeat(arr, 3, axis=2)
    if enc in ("bgr8", "bgra8"):
        return np.ascontiguousarray(arr[:, :, 2::-1])
    return np.ascontiguousarray(arr[:, :, :3])


def encode_image(image: np.ndarray, encoding: str) -> tuple[bytes, int]:
    """RGB ``uint8[h, w, 3]`` -> (payload, step) of a ``sensor_msgs/Image`` in ``encoding`` (8-bit encodings only:
    mono8, rgb8, bgr8, rgba8, bgra8, bayer_*8; a Bayer image keeps, at each pixel, the channel of the pattern)."""
    img = _check_rgb(image, "image")
    enc = encoding.strip().lower()
    h, w = img.shape[:2]
    if enc == "rgb8":
        out = img
    elif enc == "bgr8":
        out = img[:, :, ::-1]
    elif enc == "rgba8":
        out = np.concatenate([img, np.full((h, w, 1), 255, np.uint8)], axis=2)
    elif enc == "bgra8":
        out = np.concatenate([img[:, :, ::-1], np.full((h, w, 1), 255, np.uint8)], axis=2)
    elif enc == "mono8":
        import cv2

        out = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
    elif enc.startswith("bayer_") and enc.endswith("8") and enc[6:10] in _BAYER_OFFSETS:
        out = np.empty((h, w), np.uint8)
        for ch, offsets in _BAYER_OFFSETS[enc[6:10]].items():
            for dr, dc in offsets:
                out[dr::2, dc::2] = img[dr::2, dc::2, ch]
    else:
        raise BagError(
            f"cannot write sensor_msgs/Image encoding {encoding!r}; writable: mono8, rgb8, bgr8, rgba8, bgra8, "
            "bayer_rggb8, bayer_bggr8, bayer_gbrg8, bayer_grbg8"
        )
    out = np.ascontiguousarray(out)
    return out.tobytes(), out.strides[0]


def _check_rgb(image, what: str) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise BagError(f"{what} must be RGB uint8[h, w, 3], got {arr.dtype}{list(arr.shape)}")
    return arr


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """RGB ``uint8[h, w, 3]`` -> JPEG bytes (OpenCV/libjpeg, deterministic for a given input and quality)."""
    import cv2

    img = _check_rgb(image, "image")
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise BagError(f"OpenCV could not JPEG-encode an image of shape {list(img.shape)}")
    return buf.tobytes()


def encode_png(image: np.ndarray) -> bytes:
    """RGB ``uint8[h, w, 3]`` -> PNG bytes."""
    import cv2

    img = _check_rgb(image, "image")
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img[:, :, ::-1]))
    if not ok:
        raise BagError(f"OpenCV could not PNG-encode an image of shape {list(img.shape)}")
    return buf.tobytes()


