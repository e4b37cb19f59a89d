"""FP16 and INT8 (explicit Q/DQ) variants of an exported SkyFix ONNX encoder, checked against FP32.

* FP16 (:func:`convert_fp16`): weights and activations in float16, I/O kept as exported (``images`` uint8 NHWC in,
  ``embedding`` float32 out) so callers do not change. The final L2 normalisation (ReduceL2/Div) and GeM's Pow stay
  float32 (fp16 range). ONNX Runtime's CPU provider has few fp16 kernels (it inserts casts; slow): the FP16 file is
  meant for TensorRT / CUDA.
* INT8 (:func:`quantize_int8`): ONNX Runtime static quantization in QDQ format (QuantizeLinear/DequantizeLinear
  pairs around Conv/Gemm/MatMul and the ReLU/ReLU6 (Clip) after them), per-channel symmetric int8 weights,
  calibration (99.99th percentile by default; MinMax/Entropy on request) on equal-size batches of real images:

  - ``"s8"``: int8 activations and weights, both symmetric (zero point 0) -- what TensorRT's explicit-quantization
    mode requires.
  - ``"u8s8"``: uint8 activations (asymmetric), int8 symmetric weights -- the combination ONNX Runtime's CPU
    kernels (QLinearConv / MatMulInteger via MLAS) run fast.

  The input normalisation (Cast/Transpose/Mul/Add), residual Adds, GeM's Pow/ReduceMean and the output L2
  normalisation stay float, and by default so does the stem (``keep_float=("stem",)``: the Conv(s) reading the
  normalised image). Its input is the uint8 image already: re-quantizing the normalised values over one range for
  all three channels throws levels away, worst on dark, low-contrast imagery (on a panchromatic orthophoto absent
  from calibration: mean cosine 0.967 -> 0.977, min 0.88 -> 0.93), for a few percent of the FLOPs.
  ``keep_float`` keeps more (or fewer) nodes float: "stem", node names, op types.

  Why the activations (Clip/Relu) are quantized too: a Conv's raw output spans far more than what its ReLU6 lets
  through (EfficientNet-Lite0's stem: about [-100, 90] against [0, 6]); quantizing it over the calibrated Conv range
  leaves ~7 int8 levels for [0, 6] and the error compounds to a ~0.65 mean cosine. With Clip/Relu quantized, the
  Conv output uses the activation's range (ONNX Runtime's own range adjustment, enforced again on the QDQ graph by
  :func:`_share_activation_ranges`), which ORT CPU fuses into QLinearConv and TensorRT into Conv+ReLU: mean cosine
  ~0.98 on real aerial tiles. With symmetric ``"s8"`` activations a [0, 6] range wastes the negative half (7 bits
  of resolution instead of 8); TensorRT's explicit-quantization mode requires it.

Every INT8 model is evaluated against FP32 (:func:`evaluate`) on a retrieval set built from images (database =
tiles, queries = the same tiles shifted by a few pixels, slightly rotated and photometrically changed): mean/min
embedding cosine to FP32 on identical inputs, and Recall@1 of both models. A model whose R@1 drops by more than
``max_r1_drop`` is not written (:class:`AccuracyDropError`, with the drop).

onnx/onnxruntime/cv2 are imported inside functions; importing this module needs none of them (nor torch).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import ExportError
from .onnx_export import EXTRA_PREFIX, INPUT_NAME, ort_embed, read_metadata, set_metadata

INT8_MODES = ("s8", "u8s8")
MIN_RECOMMENDED_CALIB = 300
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
QUANTIZED_OPS = ("Conv", "Gemm", "MatMul", "Clip", "Relu")
CALIB_METHODS = ("minmax", "percentile", "entropy")
DEFAULT_CALIB_METHOD = "percentile"
DEFAULT_PERCENTILE = 99.99
STEM = "stem"
DEFAULT_KEEP_FLOAT = (STEM,)
CALIB_BATCH = 16
FP16_BLOCKED_OPS = ("ReduceL2", "Div", "Pow", "ReduceMean", "Clip")


class QuantizationError(ExportError):
    """FP16/INT8 conversion failed or was asked for with invalid arguments."""


class CalibrationDataError(QuantizationError):
    """No usable calibration/evaluation images (missing folder, unreadable files, none found)."""


class AccuracyDropError(QuantizationError):
    """The quantized model's R@1 falls more than the allowed drop below FP32; the model was not written."""

    def __init__(self, message: str, report: "QuantReport") -> None:
        super().__init__(message)
        self.report = report


class FewCalibrationImagesWarning(UserWarning):
    """Fewer calibration images than recommended (:data:`MIN_RECOMMENDED_CALIB`); ranges may be poor."""


@dataclass(frozen=True)
class QuantReport:
    """Agreement of a converted model with FP32 on a retrieval set.

    Attributes:
        precision: "fp16", "int8-s8" or "int8-u8s8".
        n_images: database size (= number of queries).
        cosine_mean, cosine_min: cosine between converted and FP32 embeddings of the same inputs (1 = identical).
        r1_fp32, r1: Recall@1 (fraction, 0..1) of FP32 and of the converted model (queries vs database).
        r1_drop: ``r1_fp32 - r1`` (positive = worse).
        n_calib: calibration images used (INT8), 0 otherwise.
    """

    precision: str
    n_images: int
    cosine_mean: float
    cosine_min: float
    r1_fp32: float
    r1: float
    r1_drop: float
    n_calib: int = 0

    def summary(self) -> str:
        return (f"{self.precision}: cosine to fp32 mean {self.cosine_mean:.5f} min {self.cosine_min:.5f}, "
                f"R@1 {self.r1:.3f} vs fp32 {self.r1_fp32:.3f} (drop {self.r1_drop:+.3f}, {self.n_images} queries)")


# ------------------------------------------------------------------------------------------------------ images
def _to_tiles(image: np.ndarray, size: int, max_tiles: int) -> list[np.ndarray]:
    """RGB ``uint8[h, w, 3]`` -> list of ``uint8[size, size, 3]``: a grid of tiles when the image holds at least
    two per side (an orthophoto), else the centre square resized."""
    import cv2

    h, w = image.shape[:2]
    if min(h, w) >= 2 * size:
        rows, cols = h // size, w // size
        cells = [(r, c) for r in range(rows) for c in range(cols)]
        if len(cells) > max_tiles:
            cells = [cells[i] for i in np.linspace(0, len(cells) - 1, max_tiles).round().astype(int)]
        return [np.ascontiguousarray(image[r * size:(r + 1) * size, c * size:(c + 1) * size]) for r, c in cells]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    crop = image[y0:y0 + s, x0:x0 + s]
    interp = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
    return [cv2.resize(crop, (size, size), interpolation=interp)]


def load_images(folder, size: int, max_images: int = 1000, tiles_per_image: int = 256) -> np.ndarray:
    """Read a folder of images (or orthophotos, cut into tiles) as ``uint8[n, size, size, 3]`` RGB.

    Files with suffixes :data:`IMAGE_SUFFIXES` are read in name order (OpenCV; BGR converted to RGB). An image at
    least ``2 * size`` pixels on its short side is cut into non-overlapping ``size`` tiles (at most
    ``tiles_per_image``, evenly spread); a smaller one gives its centre square resized to ``size``. At most
    ``max_images`` are kept, evenly spread.

    Raises:
        CalibrationDataError: no such folder, no readable image in it.
    """
    import cv2

    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationDataError(f"image folder {folder} not found; pass a folder of RGB images or orthophotos")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    tiles: list[np.ndarray] = []
    unreadable = []
    for path in files:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            unreadable.append(path.name)
            continue
        tiles.extend(_to_tiles(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), size, tiles_per_image))
    if not tiles:
        raise CalibrationDataError(
            f"no readable image in {folder} (looked for {', '.join(IMAGE_SUFFIXES)}; "
            f"{len(files)} found, unreadable: {unreadable[:5]}); put calibration images or orthophotos there"
        )
    if len(tiles) > max_images:
        tiles = [tiles[i] for i in np.linspace(0, len(tiles) - 1, max_images).round().astype(int)]
    return np.stack(tiles).astype(np.uint8)


def retrieval_set(images: np.ndarray, seed: int = 0, max_shift_frac: float = 1 / 16,
                  max_rotation_deg: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """``(database, queries)``, both ``uint8[n, s, s, 3]``: query i is tile i shifted (up to ``max_shift_frac`` of
    the side, reflected border), rotated (up to ``max_rotation_deg``), with gain 0.8..1.2, offset +-15, gamma
    0.8..1.25 and sigma-3 noise. R@1 = fraction of queries whose nearest database tile is their own."""
    import cv2

    rng = np.random.default_rng(seed)
    n, s = images.shape[0], images.shape[1]
    queries = np.empty_like(images)
    for i in range(n):
        dx, dy = rng.uniform(-max_shift_frac, max_shift_frac, 2) * s
        m = cv2.getRotationMatrix2D((s / 2, s / 2), float(rng.uniform(-max_rotation_deg, max_rotation_deg)), 1.0)
        m[:, 2] += (dx, dy)
        warped = cv2.warpAffine(images[i], m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        x = warped.astype(np.float32) / 255.0
        x = np.clip(x * rng.uniform(0.8, 1.2) + rng.uniform(-15, 15) / 255.0, 0, 1) ** rng.uniform(0.8, 1.25)
        x = x * 255.0 + rng.normal(0, 3, x.shape)
        queries[i] = np.clip(x, 0, 255).round().astype(np.uint8)
    return images, queries


def recall_at_1(queries: np.ndarray, database: np.ndarray) -> float:
    """Fraction of rows i of ``queries float[n, d]`` whose highest inner product in ``database float[n, d]`` is row i."""
    sims = queries @ database.T
    return float(np.mean(np.argmax(sims, axis=1) == np.arange(len(queries))))


def evaluate(fp32_path, candidate_path, database: np.ndarray, queries: np.ndarray, precision: str,
             n_calib: int = 0, batch: int = 64) -> QuantReport:
    """Compare ``candidate_path`` with ``fp32_path`` (both ONNX, uint8 NHWC input) on a retrieval set."""

    def embed(path, images):
        return np.concatenate([ort_embed(path, images[i:i + batch]) for i in range(0, len(images), batch)])

    ref_db, ref_q = embed(fp32_path, database), embed(fp32_path, queries)
    got_db, got_q = embed(candidate_path, database), embed(candidate_path, queries)
    ref, got = np.concatenate([ref_db, ref_q]), np.concatenate([got_db, got_q])
    cos = np.sum(ref * got, axis=1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1) + 1e-12)
    r1_ref, r1 = recall_at_1(ref_q, ref_db), recall_at_1(got_q, got_db)
    return QuantReport(precision=precision, n_images=len(database), cosine_mean=float(cos.mean()),
                       cosine_min=float(cos.min()), r1_fp32=r1_ref, r1=r1, r1_drop=r1_ref - r1, n_calib=n_calib)


# ------------------------------------------------------------------------------------------------------ FP16
def convert_fp16(src, dst) -> Path:
    """Float16 copy of an exported FP32 model: ``images`` stays uint8, ``embedding`` float32 (I/O unchanged).

    ReduceL2/Div/Pow/ReduceMean/Clip stay float32 (GeM's ``x^p`` and the L2 norm overflow/underflow in fp16).
    Metadata is kept; ``skyfix_export.precision`` becomes "fp16".
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    src, dst = Path(src), Path(dst)
    meta = read_metadata(src)
    model = onnx.load(str(src))
    try:
        half = convert_float_to_float16(model, keep_io_types=True, op_block_list=list(FP16_BLOCKED_OPS))
    except Exception as exc:  # noqa: BLE001
        raise QuantizationError(f"fp16 conversion of {src} failed: {type(exc).__name__}: {exc}") from exc
    _topological_sort(half.graph)
    meta[EXTRA_PREFIX + "precision"] = "fp16"
    set_metadata(half, meta)
    return _checked_save(half, dst, f"fp16 model made from {src}")


def upcast_fp16(src, dst) -> Path:
    """FP32 copy of a float16 model (:func:`convert_fp16`'s output, e.g. the shipped ``skyfix-default.onnx``): the
    same weights (every float16 value is exact in float32), computed in float32. The casts the FP16 conversion added
    between float types are dropped; the ``uint8 -> float16`` input cast becomes ``uint8 -> float32``. Metadata is
    kept, ``skyfix_export.precision`` becomes "fp32" and ``skyfix_export.upcast_from`` says "fp16". This is the FP32
    reference (and the INT8 source) of a model shipped only in FP16.

    Raises:
        QuantizationError: ``src`` is not a float16 model, or the result fails ``onnx.checker``.
    """
    import onnx
    from onnx import TensorProto, numpy_helper

    src, dst = Path(src), Path(dst)
    meta = read_metadata(src)
    model = onnx.load(str(src))
    g = model.graph
    f16, f32 = TensorProto.FLOAT16, TensorProto.FLOAT
    if meta.get(EXTRA_PREFIX + "precision") != "fp16" and not any(t.data_type == f16 for t in g.initializer):
        raise QuantizationError(f"{src} is not a float16 model (precision {meta.get(EXTRA_PREFIX + 'precision')!r}, "
                                "no float16 weights); it needs no upcast")
    types = {t.name: t.data_type for t in g.initializer}
    types.update({v.name: v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.input) + list(g.output)})
    for t in g.initializer:
        if t.data_type == f16:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float32), t.name))
    for v in list(g.value_info) + list(g.input) + list(g.output):
        if v.type.tensor_type.elem_type == f16:
            v.type.tensor_type.elem_type = f32
    outputs = {o.name for o in g.output}
    rename: dict[str, str] = {}
    keep = []
    for n in g.node:
        n.input[:] = [rename.get(i, i) for i in n.input]
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == f16:
                a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float32), a.t.name))
        if n.op_type == "Cast":
            to = next(a for a in n.attribute if a.name == "to")
            if to.i == f16:
                to.i = f32
            if to.i == f32 and types.get(n.input[0]) in (f16, f32) and n.output[0] not in outputs:
                rename[n.output[0]] = n.input[0]  # float -> float: gone
                continue
        keep.append(n)
    del g.node[:]
    g.node.extend(keep)
    meta[EXTRA_PREFIX + "precision"] = "fp32"
    meta[EXTRA_PREFIX + "upcast_from"] = "fp16"
    set_metadata(model, meta)
    return _checked_save(model, dst, f"fp32 model upcast from {src}")


def _checked_save(model, dst: Path, what: str) -> Path:
    """``onnx.checker`` then save ``model`` to ``dst``; a failed check is a :class:`QuantizationError` naming ``what``."""
    import onnx

    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001
        raise QuantizationError(f"{what} fails onnx.checker: {exc}") from exc
    _save(model, dst)
    return dst


def _topological_sort(graph) -> None:
    """Reorder ``graph.node`` so every node comes after its inputs' producers (the fp16 converter appends casts)."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(x in available for x in n.input)]
        if not ready:
            raise QuantizationError("fp16 graph has a cycle or dangling inputs; cannot sort it")
        for n in ready:
            ordered.append(n)
            available.update(n.output)
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
    copies = [type(n)() for n in ordered]
    for c, n in zip(copies, ordered):
        c.CopyFrom(n)
    del graph.node[:]
    graph.node.extend(copies)


def _save(model, dst: Path) -> None:
    import onnx

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".partial")
    onnx.save(model, str(tmp))
    os.replace(tmp, dst)


# ------------------------------------------------------------------------------------------------------ INT8
class ImageCalibrationReader:
    """``onnxruntime.quantization.CalibrationDataReader`` over ``uint8[n, h, w, 3]`` images in batches.

    Every batch holds exactly ``batch`` images (all ``n`` when ``n < batch``): a short last batch is topped up with
    images from the start. ORT's histogram calibrators (Percentile/Entropy) stack the batches and fail on unequal
    ones, and a short batch would get a different weight in moving-average MinMax. Iterable (``for feed in
    reader``) as ORT's debugging helpers expect, and rewindable.
    """

    def __init__(self, images: np.ndarray, batch: int = CALIB_BATCH, input_name: str = INPUT_NAME) -> None:
        if not (isinstance(batch, (int, np.integer)) and batch >= 1):
            raise QuantizationError(f"calibration batch must be an integer >= 1, got {batch!r}")
        self.images, self.input_name = images, input_name
        self.batch = int(min(batch, max(len(images), 1)))
        self._next = 0

    def get_next(self):
        n = len(self.images)
        if self._next >= n:
            return None
        idx = np.arange(self._next, self._next + self.batch) % n
        self._next += self.batch
        return {self.input_name: np.ascontiguousarray(self.images[idx])}

    def rewind(self) -> None:
        self._next = 0

    def __iter__(self):
        self.rewind()
        return self

    def __next__(self):
        feed = self.get_next()
        if feed is None:
            raise StopIteration
        return feed


def int8_options(mode: str, calib_method: str = DEFAULT_CALIB_METHOD, keep_float=(),
                 percentile: float = DEFAULT_PERCENTILE) -> dict:
    """``quantize_static`` keyword arguments for ``mode`` ("s8": TensorRT, "u8s8": ONNX Runtime CPU).

    Args:
        calib_method: one of :data:`CALIB_METHODS` ("percentile" (default) = ``percentile`` of abs(x) (s8) or
            of x (u8s8), "minmax" = observed range, "entropy" = KL-divergence threshold).
        keep_float: node names to leave unquantized (``nodes_to_exclude``).
        percentile: for "percentile", in (90, 100].
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

    if mode not in INT8_MODES:
        raise QuantizationError(f"int8 mode must be one of {INT8_MODES} (s8 = TensorRT, u8s8 = ORT CPU), got {mode!r}")
    if calib_method not in CALIB_METHODS:
        raise QuantizationError(f"calibration method must be one of {CALIB_METHODS}, got {calib_method!r}")
    if not (isinstance(percentile, (int, float)) and 90 < percentile <= 100):
        raise QuantizationError(f"percentile must be in (90, 100] (e.g. 99.99), got {percentile!r}")
    symmetric_act = mode == "s8"
    extra = {"ActivationSymmetric": symmetric_act, "WeightSymmetric": True}
    if calib_method == "percentile":
        extra.update(CalibPercentile=float(percentile))
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    return dict(
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8 if mode == "s8" else QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=False,
        op_types_to_quantize=list(QUANTIZED_OPS),
        nodes_to_exclude=list(keep_float),
        calibrate_method=methods[calib_method],
        extra_options=extra,
    )


def stem_nodes(model) -> list[str]:
    """Names of the Conv/Gemm/MatMul nodes of ``model`` that read the graph input through no other Conv/Gemm/MatMul
    (the encoder's stem, after the in-graph normalisation)."""
    heavy = {"Conv", "Gemm", "MatMul"}
    from_input = {i.name for i in model.graph.input}  # tensors computed from the input by light ops only
    stems = []
    for node in model.graph.node:  # exported graphs are topologically sorted
        if node.op_type in ("Shape", "Size") or not any(i in from_input for i in node.input):
            continue  # shape arithmetic carries no image data
        if node.op_type in heavy:
            stems.append(node.name)
        else:
            from_input.update(node.output)
    return stems


def resolve_keep_float(model, keep_float) -> list[str]:
    """Node names of ``model`` (an ``onnx.ModelProto``) selected by ``keep_float``: each entry is "stem" (see
    :func:`stem_nodes`), a node name or an op type (e.g. "Gemm" = every Gemm). Raises :class:`QuantizationError` for
    an entry that matches nothing. ``None`` means :data:`DEFAULT_KEEP_FLOAT`."""
    if keep_float is None:
        keep_float = DEFAULT_KEEP_FLOAT
    if isinstance(keep_float, str):
        keep_float = [keep_float]
    names = [n.name for n in model.graph.node]
    ops = {n.op_type for n in model.graph.node}
    picked: list[str] = []
    for entry in keep_float:
        if entry == STEM:
            picked.extend(stem_nodes(model))
        elif entry in names:
            picked.append(entry)
        elif entry in ops:
            picked.extend(n.name for n in model.graph.node if n.op_type == entry)
        else:
            convs = [n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
            raise QuantizationError(
                f"keep_float entry {entry!r} is neither \"stem\", a node name nor an op type of the model (op types: "
                f"{sorted(ops)}; first/last Conv/Gemm/MatMul nodes: {convs[:2] + convs[-2:]}); pass node names as "
                "they appear in the exported .onnx (e.g. from netron) or an op type such as Gemm"
            )
    return list(dict.fromkeys(picked))


def _share_activation_ranges(model) -> int:
    """Give a quantized pre-activation tensor the scale/zero point of the ReLU/ReLU6 after it.

    Pattern (QDQ graph): ``X -> Q(sx, zx) -> DQ(sx, zx) -> Clip|Relu -> Q(sy, zy)``: ``(sx, zx)`` becomes
    ``(sy, zy)``. Exact for the activation (values outside its range are clipped anyway) and what ORT's quantizer
    does itself (for asymmetric "u8s8" it even removes the ReLU: the uint8 range [0, max] clips by saturation; for
    symmetric "s8" the ReLU stays and, depending on the ORT version, the pair may keep the raw Conv range); done
    here so the result does not depend on the ONNX Runtime version. Returns the number of pairs changed.
    """
    producers = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    changed = 0
    for act in model.graph.node:
        if act.op_type not in ("Clip", "Relu"):
            continue
        dq = producers.get(act.input[0])
        q_in = producers.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        outs = consumers.get(act.output[0], [])
        if q_in is None or q_in.op_type != "QuantizeLinear" or len(consumers.get(dq.output[0], [])) != 1:
            continue
        if len(outs) != 1 or outs[0].op_type != "QuantizeLinear" or len(outs[0].input) < 3:
            continue
        if len(consumers.get(q_in.output[0], [])) != 1 or len(q_in.input) < 3 or len(dq.input) < 3:
            continue
        scale, zero = outs[0].input[1], outs[0].input[2]
        if (q_in.input[1], q_in.input[2]) != (scale, zero):
            q_in.input[1], q_in.input[2] = scale, zero
            dq.input[1], dq.input[2] = scale, zero
            changed += 1
    return changed


def quantize_int8(src, dst, mode: str, calib, *, max_r1_drop: float = 0.02, eval_images: np.ndarray | None = None,
                  seed: int = 0, max_calib: int = 1000, calib_method: str = DEFAULT_CALIB_METHOD,
                  keep_float=DEFAULT_KEEP_FLOAT, percentile: float = DEFAULT_PERCENTILE) -> QuantReport:
    """Static INT8 (QDQ) quantization of an exported FP32 model, evaluated against it before writing.

    Args:
        src: the FP32 ``.onnx`` from :func:`export.onnx_export.export_onnx`.
        dst: the INT8 ``.onnx`` to write (only when the R@1 check passes).
        mode: "s8" (symmetric int8 activations + weights, TensorRT) or "u8s8" (uint8 activations, int8 weights,
            ONNX Runtime CPU).
        calib: a folder of images/orthophotos (see :func:`load_images`) or ``uint8[n, s, s, 3]`` RGB images.
        max_r1_drop: largest allowed ``R@1(fp32) - R@1(int8)`` (fraction, 0.02 = 2 points).
        eval_images: ``uint8[m, s, s, 3]`` for the retrieval check; default: the calibration images.
        seed: seed of the query perturbations.
        max_calib: most calibration images read from a folder.
        calib_method: "percentile" (default), "minmax" or "entropy" (see :func:`int8_options`).
        keep_float: nodes left float: "stem" (default: the Conv reading the normalised image), node names, op types
            (e.g. ``["stem", "Gemm"]``); ``()`` quantizes every Conv/Gemm/MatMul.
        percentile: the percentile for ``calib_method="percentile"``.

    Returns:
        The :class:`QuantReport` (also written in ``skyfix_export.*`` metadata).

    Raises:
        CalibrationDataError: no calibration images, or images of the wrong size.
        AccuracyDropError: R@1 drops more than ``max_r1_drop`` (nothing written; the message gives the drop).
        QuantizationError: invalid mode/threshold/method/percentile, a ``keep_float`` entry not in the model, or
            ONNX Runtime's quantizer failed.
    Warns:
        FewCalibrationImagesWarning: fewer than :data:`MIN_RECOMMENDED_CALIB` calibration images.
    """
    import onnx
    from onnxruntime.quantization import quant_pre_process, quantize_static

    from maps.contract import EncoderContract

    src, dst = Path(src), Path(dst)
    options = int8_options(mode, calib_method, (), percentile)
    if not (isinstance(max_r1_drop, (int, float)) and 0 <= max_r1_drop <= 1):
        raise QuantizationError(f"max_r1_drop must be a fraction in [0, 1], got {max_r1_drop!r}")
    meta = read_metadata(src)
    contract = EncoderContract.from_metadata(meta)
    size = contract.input_width
    images = calib if isinstance(calib, np.ndarray) else load_images(calib, size, max_images=max_calib)
    expected = (size, contract.input_height, 3)
    if images.ndim != 4 or images.shape[1:] != expected or images.dtype != np.uint8:
        raise CalibrationDataError(f"calibration images must be uint8[n, {size}, {size}, 3] RGB, got "
                                   f"{images.dtype} {images.shape}")
    if len(images) < MIN_RECOMMENDED_CALIB:
        warnings.warn(
            f"only {len(images)} calibration images (at least {MIN_RECOMMENDED_CALIB} recommended); INT8 ranges "
            "may not cover real data -- add images or orthophoto tiles to the --calib folder",
            FewCalibrationImagesWarning, stacklevel=2,
        )
    precision = f"int8-{mode}"
    with tempfile.TemporaryDirectory(prefix="skyfix-int8-") as tmp:
        tmp_out, prepped = Path(tmp) / "int8.onnx", Path(tmp) / "pre.onnx"
        try:  # ORT's recommended pre-processing (shape inference + graph optimisation); optional
            quant_pre_process(str(src), str(prepped), skip_symbolic_shape=True)
        except Exception:  # noqa: BLE001 - fall back to the exported graph (BatchNorm already folded by the exporter)
            prepped = src
        options["nodes_to_exclude"] = resolve_keep_float(onnx.load(str(prepped)), keep_float)
        try:  # (ORT prints calibration progress to stdout)
            with contextlib.redirect_stdout(io.StringIO()):
                quantize_static(str(prepped), str(tmp_out), ImageCalibrationReader(images), **options)
        except Exception as exc:  # noqa: BLE001 - ORT's quantizer raises untyped errors
            raise QuantizationError(f"onnxruntime quantize_static ({precision}) failed on {src}: "
                                    f"{type(exc).__name__}: {exc}") from exc
        quantized = onnx.load(str(tmp_out))
        if _share_activation_ranges(quantized):
            _drop_unused_initializers(quantized.graph)
            onnx.save(quantized, str(tmp_out))
        evals = images if eval_images is None else eval_images
        database, queries = retrieval_set(evals, seed=seed)
        report = evaluate(src, tmp_out, database, queries, precision, n_calib=len(images))
        if report.r1_drop > max_r1_drop:
            raise AccuracyDropError(
                f"{precision} model not written: R@1 drops by {report.r1_drop:.3f} ({report.r1_fp32:.3f} fp32 -> "
                f"{report.r1:.3f}) > --max-r1-drop {max_r1_drop:g} ({report.summary()}); use more/more "
                "representative --calib images, try the other mode, or accept a larger drop with --max-r1-drop",
                report,
            )
        model = onnx.load(str(tmp_out))
    meta[EXTRA_PREFIX + "int8_calib_method"] = calib_method
    if options["nodes_to_exclude"]:
        meta[EXTRA_PREFIX + "int8_keep_float"] = ",".join(options["nodes_to_exclude"])
    extra = {k: v for k, v in asdict(report).items() if k != "precision"}
    meta[EXTRA_PREFIX + "precision"] = precision
    meta.update({EXTRA_PREFIX + "int8_" + k: f"{v:.6g}" if isinstance(v, float) else str(v) for k, v in extra.items()})
    set_metadata(model, meta)
    _save(model, dst)
    return report


def _drop_unused_initializers(graph) -> None:
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    keep = [t for t in graph.initializer if t.name in used]
    if len(keep) != len(graph.initializer):
        copies = [type(t)() for t in keep]
        for c, t in zip(copies, keep):
            c.CopyFrom(t)
        del graph.initializer[:]
        graph.initializer.extend(copies)


def fp16_report(fp32_path, fp16_path, images: np.ndarray, seed: int = 0) -> QuantReport:
    """:func:`evaluate` of an FP16 model against its FP32 source on ``images`` ``uint8[n, s, s, 3]``."""
    database, queries = retrieval_set(images, seed=seed)
    return evaluate(fp32_path, fp16_path, database, queries, "fp16")


__all__ = [
    "AccuracyDropError", "CALIB_METHODS", "CalibrationDataError", "DEFAULT_CALIB_METHOD", "DEFAULT_KEEP_FLOAT",
    "FewCalibrationImagesWarning", "ImageCalibrationReader", "INT8_MODES", "MIN_RECOMMENDED_CALIB", "QuantReport",
    "QuantizationError", "convert_fp16", "evaluate", "fp16_report", "int8_options", "load_images", "quantize_int8",
    "upcast_fp16",
    "recall_at_1", "resolve_keep_float", "retrieval_set", "stem_nodes",
]
