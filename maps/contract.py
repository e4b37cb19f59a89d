"""The preprocessing contract of an encoder: what a model expects and what it returns.

It travels with the model (ONNX ``metadata_props``, TensorRT sidecar JSON) and with every map built by it
(``manifest.json``), so a mismatch between a map and the encoder used onboard fails loudly with both values.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

from .errors import EncoderMismatchError, MapError
from .config import strict_from_dict

METADATA_PREFIX = "skyfix."
COLOUR_ORDERS = ("RGB", "BGR", "GRAY")
METRICS = ("cosine",)


@dataclass(frozen=True)
class EncoderContract:
    """What an encoder takes and gives.

    Attributes:
        encoder_id: identity of the weights (a hash for learned models; name+version for classical descriptors).
        name: human-readable family name.
        input_width, input_height: pixels of the (square-pixel, north-up) ground image fed to the encoder.
        ground_resolution_m: metres per pixel the encoder expects; a map tile spans input_width * this metres.
        embedding_dim: length d of the L2-normalised embedding.
        mean, std: per-channel normalisation applied to pixel/255 in ``colour_order``.
        colour_order: channel order of the input ("RGB", "BGR" or "GRAY").
        metric: similarity used on embeddings ("cosine" = inner product of unit vectors).
    """

    encoder_id: str
    name: str
    input_width: int
    input_height: int
    ground_resolution_m: float
    embedding_dim: int
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    colour_order: str = "RGB"
    metric: str = "cosine"

    def __post_init__(self) -> None:
        if not self.encoder_id or not isinstance(self.encoder_id, str):
            raise MapError(f"encoder_id must be a non-empty string, got {self.encoder_id!r}")
        for key in ("input_width", "input_height", "embedding_dim"):
            value = getattr(self, key)
            if isinstance(value, bool) or int(value) != value or value <= 0:
                raise MapError(f"encoder contract {key} must be a positive integer, got {value!r}")
            object.__setattr__(self, key, int(value))
        gsd = float(self.ground_resolution_m)
        if not (math.isfinite(gsd) and gsd > 0):
            raise MapError(f"encoder contract ground_resolution_m must be > 0 metres/pixel, got {self.ground_resolution_m!r}")
        object.__setattr__(self, "ground_resolution_m", gsd)
        if self.colour_order not in COLOUR_ORDERS:
            raise MapError(f"colour_order must be one of {COLOUR_ORDERS}, got {self.colour_order!r}")
        if self.metric not in METRICS:
            raise MapError(f"metric must be one of {METRICS}, got {self.metric!r}")
        channels = 1 if self.colour_order == "GRAY" else 3
        for key in ("mean", "std"):
            value = tuple(float(v) for v in getattr(self, key))
            if len(value) != channels:
                raise MapError(f"contract {key} needs {channels} values for {self.colour_order}, got {value}")
            object.__setattr__(self, key, value)
        if any(s <= 0 for s in self.std):
            raise MapError(f"contract std values must be > 0, got {self.std}")

    @property
    def tile_size_m(self) -> tuple[float, float]:
        """(width, height) in metres of the ground patch one input covers."""
        return (self.input_width * self.ground_resolution_m, self.input_height * self.ground_resolution_m)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "EncoderContract":
        """Inverse of :meth:`to_dict`; unknown or missing keys are rejected."""
        return strict_from_dict(cls, d, "encoder contract")

    def to_metadata(self) -> dict[str, str]:
        """Flat string key/values (ONNX ``metadata_props``), each key prefixed ``skyfix.``."""
        return {METADATA_PREFIX + k: json.dumps(v) if not isinstance(v, str) else v for k, v in self.to_dict().items()}

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> "EncoderContract":
        """Inverse of :meth:`to_metadata`; other keys in ``meta`` are ignored, ``skyfix.*`` keys must be known."""
        d = {}
        for key, value in meta.items():
            if not key.startswith(METADATA_PREFIX):
                continue
            name = key[len(METADATA_PREFIX):]
            if name in ("encoder_id", "name", "colour_order", "metric"):
                d[name] = value
            else:
                try:
                    d[name] = json.loads(value)
                except json.JSONDecodeError as exc:
                    raise MapError(f"model metadata {key}={value!r} is not valid JSON") from exc
        if not d:
            raise MapError(
                f"model metadata has no '{METADATA_PREFIX}*' keys; export it with `skyfix export onnx` "
                "so it carries its preprocessing contract"
            )
        return cls.from_dict(d)

    def check_same_encoder(self, other: "EncoderContract", what: str = "map") -> None:
        """Raise :class:`EncoderMismatchError` unless ``other`` is the same encoder with the same contract."""
        if self != other:
            diffs = {k: (v, getattr(other, k)) for k, v in self.to_dict().items() if v != other.to_dict()[k]}
            detail = "; ".join(f"{k}: {a!r} here vs {b!r} in the {what}" for k, (a, b) in diffs.items())
            raise EncoderMismatchError(
                f"encoder mismatch with the {what} ({detail}); rebuild the {what} with this encoder "
                f"(`skyfix maps build ... --model ...`) or use the encoder that built it"
            )
