"""FP16 and INT8 (explicit Q/DQ) variants of an exported SkyFix ONNX encoder, checked against FP32.

* FP16 (:func:`convert_fp16`): weights and activations in float16, I/O kept as exported (``images`` uint8 NHWC in,
  ``embedding`` float32 out) so callers do not change. The final L2 normalisation (ReduceL2/Div) and GeM's Pow stay
  float32 (fp16 range). ONNX Runtime's CPU provider has few fp16 kernels (it inserts casts; slow): the FP16 file is
  meant for TensorRT / CUDA.
* INT8 (:func:`quantize_int8`): ONNX Runtime static quantization in QDQ format (QuantizeLinear/DequantizeLinear
  pairs around Conv/Gemm/MatMul), per-channel weights, MinMax calibration on real images:

  - ``"s8"``: int8 activations and weights, both symmetric (zero point 0) -- what TensorRT's explicit-quantization
    mode requires.
  - ``"u8s8"``: uint8 activations (asymmetric), int8 symmetric weights -- the combination ONNX Runtime's CPU
    kernels (QLinearConv / MatMulInteger via MLAS) run fast.

  The input normalisation (Cast/Transpose/Mul/Add) and the output L2 normalisation stay float.

Every INT8 model is evaluated against FP32 (:func:`evaluate`) on a retrieval set built from images (database =
tiles, queries = the same tiles shifted by a few pixels, slightly rotated and photometrically changed): mean/min
embedding cosine to FP32 on identical inputs, and Recall@1 of both models. A model whose R@1 drops by more than
``max_r1_drop`` is not written (:class:`AccuracyDropError`, with the drop).

onnx/onnxruntime/cv2 are imported inside functions; importing this module needs none of them (nor torch).
"""

from __future__ import annotations

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
QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")
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
    try:
        onnx.checker.check_model(half)
    except Exception as exc:  # noqa: BLE001
        raise QuantizationError(f"fp16 model made from {src} fails onnx.checker: {exc}") from exc
    _save(half, dst)
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
    """``onnxruntime.quantization.CalibrationDataReader`` over ``uint8[n, h, w, 3]`` images in batches."""

    def __init__(self, images: np.ndarray, batch: int = 16, input_name: str = INPUT_NAME) -> None:
        self.images, self.batch, self.input_name = images, int(batch), input_name
        self._next = 0

    def get_next(self):
        if self._next >= len(self.images):
            return None
        chunk = self.images[self._next:self._next + self.batch]
        self._next += self.batch
        return {self.input_name: np.ascontiguousarray(chunk)}

    def rewind(self) -> None:
        self._next = 0


def int8_options(mode: str) -> dict:
    """``quantize_static`` keyword arguments for ``mode`` ("s8": TensorRT, "u8s8": ONNX Runtime CPU)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

    if mode not in INT8_MODES:
        raise QuantizationError(f"int8 mode must be one of {INT8_MODES} (s8 = TensorRT, u8s8 = ORT CPU), got {mode!r}")
    symmetric_act = mode == "s8"
    return dict(
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8 if mode == "s8" else QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=False,
        op_types_to_quantize=list(QUANTIZED_OPS),
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"ActivationSymmetric": symmetric_act, "WeightSymmetric": True},
    )


def quantize_int8(src, dst, mode: str, calib, *, max_r1_drop: float = 0.02, eval_images: np.ndarray | None = None,
                  seed: int = 0, max_calib: int = 1000) -> QuantReport:
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

    Returns:
        The :class:`QuantReport` (also written in ``skyfix_export.*`` metadata).

    Raises:
        CalibrationDataError: no calibration images, or images of the wrong size.
        AccuracyDropError: R@1 drops more than ``max_r1_drop`` (nothing written; the message gives the drop).
        QuantizationError: invalid mode/threshold, or ONNX Runtime's quantizer failed.
    Warns:
        FewCalibrationImagesWarning: fewer than :data:`MIN_RECOMMENDED_CALIB` calibration images.
    """
    import onnx
    from onnxruntime.quantization import quant_pre_process, quantize_static

    from maps.contract import EncoderContract

    src, dst = Path(src), Path(dst)
    options = int8_options(mode)
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
        try:
            quantize_static(str(prepped), str(tmp_out), ImageCalibrationReader(images), **options)
        except Exception as exc:  # noqa: BLE001 - ORT's quantizer raises untyped errors
            raise QuantizationError(f"onnxruntime quantize_static ({precision}) failed on {src}: "
                                    f"{type(exc).__name__}: {exc}") from exc
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
    extra = {k: v for k, v in asdict(report).items() if k != "precision"}
    meta[EXTRA_PREFIX + "precision"] = precision
    meta.update({EXTRA_PREFIX + "int8_" + k: f"{v:.6g}" if isinstance(v, float) else str(v) for k, v in extra.items()})
    set_metadata(model, meta)
    _save(model, dst)
    return report


def fp16_report(fp32_path, fp16_path, images: np.ndarray, seed: int = 0) -> QuantReport:
    """:func:`evaluate` of an FP16 model against its FP32 source on ``images`` ``uint8[n, s, s, 3]``."""
    database, queries = retrieval_set(images, seed=seed)
    return evaluate(fp32_path, fp16_path, database, queries, "fp16")


__all__ = [
    "AccuracyDropError", "CalibrationDataError", "FewCalibrationImagesWarning", "ImageCalibrationReader",
    "INT8_MODES", "MIN_RECOMMENDED_CALIB", "QuantReport", "QuantizationError", "convert_fp16", "evaluate",
    "fp16_report", "int8_options", "load_images", "quantize_int8", "recall_at_1", "retrieval_set",
]
