"""sensor_msgs/Image encodings (mono, rgb/bgr(a), bayer) and JPEG/PNG for CompressedImage, both ways; a structural
check of JPEG/PNG bytes (:func:`compressed_image_problem`) that finds an unusable CompressedImage without decoding it."""

from __future__ import annotations

import zlib

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




# ============================================================================================== compressed checks
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame markers (DHT, JPG, DAC are not)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def compressed_image_problem(data: bytes) -> str:
    """Why ``data`` (a CompressedImage payload) cannot be a whole JPEG or PNG image, or ``""`` when it can.

    Structural, without decoding: a JPEG needs its marker segments to chain from the start-of-image marker to the first
    scan, a frame header (SOF) of non-zero size before it, and an end-of-image marker after it (a transfer cut short
    has none; OpenCV would hand out the missing part grey). A PNG needs its signature, an IHDR of non-zero size first,
    every chunk whole with a matching CRC, and the IEND chunk. Linear in the size, far cheaper than a decode.
    """
    data = bytes(data)
    n = len(data)
    if n == 0:
        return "empty (0 bytes)"
    if data[:2] == b"\xff\xd8":
        return _jpeg_problem(data)
    if data[:8] == _PNG_SIGNATURE:
        return _png_problem(data)
    return f"neither JPEG nor PNG ({n} bytes starting with {data[:8]!r}); only those are supported"


def _jpeg_segment_problem(marker: int, seg: bytes, state: dict) -> str:
    """What is wrong with the payload ``seg`` (after the length) of a DQT/DHT/SOF/SOS segment, or ''. ``state``
    holds what earlier segments defined (frame component ids, Huffman tables, baseline or not)."""
    n = len(seg)
    if marker == 0xDB:  # DQT: tables of 64 entries, 8 or 16 bit, ids 0..3
        i = 0
        while i < n:
            pq, tq = seg[i] >> 4, seg[i] & 15
            if pq > 1 or tq > 3:
                return "a bad quantization table header"
            i += 1 + 64 * (pq + 1)
        return "" if i == n else "a quantization table of the wrong length"
    if marker == 0xC4:  # DHT: class 0/1, id 0..3, 16 counts then the symbols
        i = 0
        while i < n:
            if i + 17 > n or seg[i] >> 4 > 1 or seg[i] & 15 > 3:
                return "a bad Huffman table header"
            counts = seg[i + 1:i + 17]
            count = sum(counts)
            if count > 256 or i + 17 + count > n:
                return "a Huffman table of the wrong length"
            code, last = 0, max((k for k in range(16) if counts[k]), default=-1)
            for k in range(last + 1):  # canonical codes must fit their lengths (the all-ones code is reserved)
                code += counts[k]
                if code >= 1 << (k + 1):
                    return "a Huffman table whose codes do not fit their lengths"
                code <<= 1
            if seg[i] >> 4 == 0 and any(v > 15 for v in seg[i + 17:i + 17 + count]):
                return "a DC Huffman table with a symbol above 15"
            state.setdefault("huffman", set()).add((seg[i] >> 4, seg[i] & 15))
            i += 17 + count
        return "" if i == n else "a Huffman table of the wrong length"
    if marker == 0xDA:  # SOS: components (1..4, each one of the frame's) and the spectral selection
        ns = seg[0] if n else 0
        ids = state.get("components", ())
        if not 1 <= ns <= min(4, len(ids)) or n != 4 + 2 * ns:
            return "a bad scan header"
        tables = state.get("huffman", set())
        for c in range(ns):
            cid, td, ta = seg[1 + 2 * c], seg[2 + 2 * c] >> 4, seg[2 + 2 * c] & 15
            if cid not in ids:
                return "a scan of a component the frame does not have"
            if state.get("sequential") and not state.get("arithmetic") and (
                    (0, td) not in tables or (1, ta) not in tables):  # progressive scans may need only one
                return "a scan using a Huffman table that is not defined"
        ss, se, ah, al = seg[1 + 2 * ns], seg[2 + 2 * ns], seg[3 + 2 * ns] >> 4, seg[3 + 2 * ns] & 15
        if state.get("sequential") and (ss, se, ah, al) != (0, 63, 0, 0):
            return "a bad spectral selection for a sequential JPEG"
        return ""
    # SOF: precision, size, components (1..4) with sampling factors 1..4 and quantization table ids 0..3
    if n < 6:
        return "a frame header too short"
    nf = seg[5]
    if seg[0] not in (8, 12, 16) or not 1 <= nf <= 4 or n != 6 + 3 * nf:
        return "a bad frame header"
    ids, blocks = [], 0
    for c in range(nf):
        cid, hv, tq = seg[6 + 3 * c], seg[6 + 3 * c + 1], seg[6 + 3 * c + 2]
        if not (1 <= hv >> 4 <= 4 and 1 <= hv & 15 <= 4) or tq > 3 or cid in ids:
            return "a bad frame component"
        ids.append(cid)
        blocks += (hv >> 4) * (hv & 15)
    if nf > 1 and blocks > 10:
        return "sampling factors too large"
    state["components"] = tuple(ids)
    state["sequential"] = marker in (0xC0, 0xC1, 0xC3, 0xC9, 0xCB)
    state["arithmetic"] = marker >= 0xC9
    return ""


# markers a baseline/progressive JPEG may carry before its first scan: APPn, COM, DQT, DHT, DRI, SOFn, DAC, JPGn
_JPEG_HEADER_MARKERS = frozenset(range(0xE0, 0xF0)) | {0xFE, 0xDB, 0xC4, 0xDD, 0xCC, 0xDA} | _JPEG_SOF | frozenset(
    range(0xF0, 0xFE))


def _jpeg_problem(data: bytes) -> str:
    n = len(data)
    i, size, state = 2, None, {}
    while True:
        if i >= n:
            return f"JPEG cut short in its headers ({n} bytes, no image data)"
        if data[i] != 0xFF:
            return f"corrupt JPEG: no marker at byte {i} of {n} (the headers are damaged)"
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            return f"JPEG cut short in its headers ({n} bytes)"
        marker = data[i]
        i += 1
        if marker == 0xD9:
            return "JPEG ends (EOI) before any image data"
        if marker not in _JPEG_HEADER_MARKERS:
            return f"corrupt JPEG: marker 0x{marker:02X} at byte {i - 1} of {n} where headers belong"
        if i + 2 > n:
            return f"JPEG cut short in its headers ({n} bytes)"
        length = (data[i] << 8) | data[i + 1]
        if length < 2 or i + length > n:
            return f"JPEG cut short or corrupt: a {length}-byte segment at byte {i} of {n}"
        if marker in _JPEG_SOF:
            if size is not None:
                return "corrupt JPEG: two frame headers"
            seg = data[i + 2:i + length]
            problem = _jpeg_segment_problem(marker, seg, state)
            if problem:
                return f"corrupt JPEG: {problem}"
            h, w = (seg[1] << 8) | seg[2], (seg[3] << 8) | seg[4]
            if h == 0 or w == 0:
                return f"corrupt JPEG: frame header gives a {w}x{h} image"
            size = (w, h)
        elif marker in (0xDB, 0xC4, 0xDA):
            problem = _jpeg_segment_problem(marker, data[i + 2:i + length], state)
            if problem:
                return f"corrupt JPEG: {problem} at byte {i} of {n}"
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            if size is None:
                return "corrupt JPEG: image data before any frame header (SOF)"
            i += length
            break
        i += length
    if data.find(b"\xff\xd9", i) < 0:
        return f"JPEG cut short: {size[0]}x{size[1]} image of {n} bytes without its end-of-image marker"
    return ""


def _png_problem(data: bytes) -> str:
    n = len(data)
    i, first = 8, True
    while True:
        if i + 12 > n:
            return f"PNG cut short ({n} bytes, no IEND chunk)"
        length = int.from_bytes(data[i:i + 4], "big")
        ctype = data[i + 4:i + 8]
        end = i + 12 + length
        if length > 0x7FFFFFFF or end > n:
            return f"PNG cut short: chunk {ctype!r} of {length} bytes at byte {i} of {n}"
        if zlib.crc32(data[i + 4:end - 4]) != int.from_bytes(data[end - 4:end], "big"):
            return f"corrupt PNG: CRC mismatch in chunk {ctype!r} at byte {i}"
        if first:
            if ctype != b"IHDR" or length < 8:
                return f"corrupt PNG: first chunk is {ctype!r}, expected IHDR"
            w, h = int.from_bytes(data[i + 8:i + 12], "big"), int.from_bytes(data[i + 12:i + 16], "big")
            if w == 0 or h == 0:
                return f"corrupt PNG: header gives a {w}x{h} image"
            first = False
        if ctype == b"IEND":
            return ""
        i = end
