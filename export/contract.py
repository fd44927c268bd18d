"""The serving contract of an exported UniSRec model: signatures, tensor aliases, dtypes, shapes.

The exporter (:mod:`export.signatures`, :mod:`export.saved_model`), the client
(:mod:`export.client`), the local server (:mod:`export.serve`, for the default signature and the
warm-up file) and the tests all read names from here, so they cannot disagree.

Shapes are tuples of dimensions: an ``int`` is a fixed size, a ``str`` names a size the request
(``B``, ``T``, ``N``, ``k``) or the model (:data:`HIDDEN`) decides; it is ``None`` in a
``tf.TensorSpec``.
Dtypes are TensorFlow dtype names. This module imports TensorFlow only inside the helpers that
build TensorFlow objects.
"""

from __future__ import annotations

import dataclasses
import os
import types
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tensorflow as tf

DEFAULT_K = 10
PREDICT_METHOD = "tensorflow/serving/predict"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")

SERVING_DEFAULT = "serving_default"
ENCODE_SEQUENCE = "encode_sequence"
ENCODE_ITEMS = "encode_items"
RECOMMEND_FROM_TEXTS = "recommend_from_texts"

HIDDEN = "H"  # the model's vector size: fixed in a SavedModel, unlike the request-sized dims

Dim = int | str


@dataclasses.dataclass(frozen=True)
class Tensor:
    """One input or output of a signature.

    Attributes:
        alias: the name in requests, responses and the SignatureDef.
        dtype: a TensorFlow dtype name (``"string"``, ``"int32"``, ``"float32"``, ``"bool"``).
        shape: fixed sizes (``int``) and named free sizes (``str``).
        default: the value the SavedModel feeds when a request omits this input; ``None`` for a
            required input.
        doc: what the tensor holds.
    """

    alias: str
    dtype: str
    shape: tuple[Dim, ...]
    default: bool | int | None = None
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is None

    @property
    def dims(self) -> tuple[int | None, ...]:
        """The shape with free sizes as ``None``."""
        return tuple(d if isinstance(d, int) else None for d in self.shape)

    def spec(self) -> tf.TensorSpec:
        """A ``tf.TensorSpec`` named after the alias, for a ``tf.function`` input signature."""
        import tensorflow as tf

        return tf.TensorSpec(self.dims, tf.dtypes.as_dtype(self.dtype), name=self.alias)

    def default_tensor(self) -> tf.Tensor:
        """The default value as a constant, for a signature function's keyword default."""
        import tensorflow as tf

        if self.default is None:
            raise ValueError(f"input {self.alias!r} has no default")
        return tf.constant(self.default, dtype=tf.dtypes.as_dtype(self.dtype))

    def describe(self) -> str:
        """``alias: dtype[dims]`` (and ``= default``), as in the module docs."""
        text = f"{self.alias}: {self.dtype}[{', '.join(str(d) for d in self.shape)}]"
        return text if self.required else f"{text} = {self.default}"


@dataclasses.dataclass(frozen=True)
class Signature:
    """One SignatureDef of the export.

    Attributes:
        name: the signature key (``model_spec.signature_name``).
        inputs: the inputs, in the order of the signature function's arguments.
        outputs: the outputs.
        doc: what the signature computes.
        needs_text: only models with a text path (not ID-only ones) export it.
    """

    name: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    doc: str
    needs_text: bool = False

    def input(self, alias: str) -> Tensor:
        """The input named ``alias`` (KeyError if there is none)."""
        return _by_alias(self.inputs, alias, f"{self.name} has no input")

    def output(self, alias: str) -> Tensor:
        """The output named ``alias`` (KeyError if there is none)."""
        return _by_alias(self.outputs, alias, f"{self.name} has no output")

    @property
    def defaults(self) -> dict[str, bool | int]:
        """Default values of the optional inputs, by alias."""
        return {t.alias: t.default for t in self.inputs if not t.required}

    def input_signature(self) -> list[tf.TensorSpec]:
        """The ``tf.function`` input signature of the signature function."""
        return [t.spec() for t in self.inputs]

    def describe(self) -> str:
        """``name(inputs) -> (outputs)``."""
        inputs = ", ".join(t.describe() for t in self.inputs)
        outputs = ", ".join(t.describe() for t in self.outputs)
        return f"{self.name}({inputs}) -> ({outputs})"


def _by_alias(tensors: tuple[Tensor, ...], alias: str, message: str) -> Tensor:
    for tensor in tensors:
        if tensor.alias == alias:
            return tensor
    raise KeyError(f"{message} {alias!r}")


HISTORY = Tensor("history", "string", ("B", "T"), doc='original item IDs, oldest first, "" pads')
HISTORY_TEXTS = Tensor("history_texts", "string", ("B", "T"), doc='item texts, "" pads')
TEXTS = Tensor("texts", "string", ("N",), doc="item texts (valid UTF-8)")
TOP_K = Tensor(
    "k", "int32", (), default=DEFAULT_K, doc="items per row, 1 <= k <= min(max_k, catalogue size)"
)
EXCLUDE_HISTORY = Tensor(
    "exclude_history", "bool", (), default=False, doc="drop the history's items from the top-k"
)

ITEM_IDS = Tensor("item_ids", "string", ("B", "k"), doc='best first; "" for an empty row')
SCORES = Tensor(
    "scores",
    "float32",
    ("B", "k"),
    doc="cosine similarities (dot products for SASRec); -inf for an empty row",
)
ITEM_TEXTS = Tensor("item_texts", "string", ("B", "k"), doc="texts of item_ids")
UNKNOWN_ITEMS = Tensor("unknown_items", "int32", ("B",), doc="history IDs not in the catalogue")
SEQUENCE_VECTORS = Tensor(
    "vectors", "float32", ("B", HIDDEN), doc="L2-normalised (SASRec: raw); zeros if empty"
)
ITEM_VECTORS = Tensor("vectors", "float32", ("N", HIDDEN), doc="L2-normalised item vectors")

SIGNATURES: Mapping[str, Signature] = types.MappingProxyType(
    {
        s.name: s
        for s in (
            Signature(
                SERVING_DEFAULT,
                (HISTORY, TOP_K, EXCLUDE_HISTORY),
                (ITEM_IDS, SCORES, ITEM_TEXTS, UNKNOWN_ITEMS),
                "top-k catalogue items for histories of item IDs",
            ),
            Signature(
                ENCODE_SEQUENCE,
                (HISTORY,),
                (SEQUENCE_VECTORS, UNKNOWN_ITEMS),
                "sequence vectors for histories of item IDs",
            ),
            Signature(
                ENCODE_ITEMS,
                (TEXTS,),
                (ITEM_VECTORS,),
                "universal item vectors from item texts alone",
                needs_text=True,
            ),
            Signature(
                RECOMMEND_FROM_TEXTS,
                (HISTORY_TEXTS, TOP_K),
                (ITEM_IDS, SCORES, ITEM_TEXTS),
                "top-k catalogue items for histories given as item texts",
                needs_text=True,
            ),
        )
    }
)


def signatures_for(uses_text: bool) -> list[Signature]:
    """The signatures a model exports: all of them, or those without text for ID-only models."""
    return [s for s in SIGNATURES.values() if uses_text or not s.needs_text]
