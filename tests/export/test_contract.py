"""export.contract: the toy SavedModel and a real UniSRec export both implement it exactly."""

from __future__ import annotations

import pathlib

import pytest
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from export.contract import (
    DEFAULT_K,
    ENCODE_ITEMS,
    ENCODE_SEQUENCE,
    HIDDEN,
    PREDICT_METHOD,
    RECOMMEND_FROM_TEXTS,
    SERVING_DEFAULT,
    SIGNATURES,
    TOP_K,
    Signature,
    signatures_for,
)
from export.serve import read_meta_graph

from .toy_model import TOY_DIM, write_toy_saved_model


def contract_view(signature: Signature) -> dict:
    """What a SignatureDef must say for ``signature``: request-sized dims unknown (-1)."""

    def dims(shape) -> tuple:
        return tuple(d if isinstance(d, int) else HIDDEN if d == HIDDEN else -1 for d in shape)

    return {
        "method_name": PREDICT_METHOD,
        "inputs": {t.alias: (t.dtype, dims(t.shape)) for t in signature.inputs},
        "outputs": {t.alias: (t.dtype, dims(t.shape)) for t in signature.outputs},
        "defaults": signature.defaults,
    }


def saved_view(signature_def: meta_graph_pb2.SignatureDef, hidden: int) -> dict:
    """The same view of a SavedModel's SignatureDef; a dimension of size ``hidden`` is HIDDEN."""

    def tensor(info: meta_graph_pb2.TensorInfo) -> tuple:
        shape = info.tensor_shape
        dims = None
        if not shape.unknown_rank:
            dims = tuple(HIDDEN if d.size == hidden else d.size for d in shape.dim)
        return tf.dtypes.as_dtype(info.dtype).name, dims

    return {
        "method_name": signature_def.method_name,
        "inputs": {alias: tensor(info) for alias, info in signature_def.inputs.items()},
        "outputs": {alias: tensor(info) for alias, info in signature_def.outputs.items()},
        "defaults": {
            alias: tf.make_ndarray(proto).item() for alias, proto in signature_def.defaults.items()
        },
    }


def assert_implements_contract(export_dir: str, hidden: int, uses_text: bool = True) -> None:
    signature_defs = read_meta_graph(export_dir).signature_def
    exported = {name for name in signature_defs if not name.startswith("__")}
    assert exported == {s.name for s in signatures_for(uses_text)}
    for name in exported:
        assert saved_view(signature_defs[name], hidden) == contract_view(SIGNATURES[name]), name


def test_contract_names() -> None:
    names = [SERVING_DEFAULT, ENCODE_SEQUENCE, ENCODE_ITEMS, RECOMMEND_FROM_TEXTS]
    assert list(SIGNATURES) == names
    assert SIGNATURES[SERVING_DEFAULT].defaults == {"k": DEFAULT_K, "exclude_history": False}
    assert [s.name for s in signatures_for(False)] == [SERVING_DEFAULT, ENCODE_SEQUENCE]
    for signature in SIGNATURES.values():
        aliases = [t.alias for t in signature.inputs]
        assert len(set(aliases)) == len(aliases)
        assert [s.name for s in signature.input_signature()] == aliases
        assert signature.input(aliases[0]) is signature.inputs[0]
        with pytest.raises(KeyError):
            signature.output("nope")
    assert TOP_K.spec() == tf.TensorSpec([], tf.int32, name="k")
    assert SIGNATURES[RECOMMEND_FROM_TEXTS].describe() == (
        "recommend_from_texts(history_texts: string[B, T], k: int32[] = 10) -> "
        "(item_ids: string[B, k], scores: float32[B, k], item_texts: string[B, k])"
    )


def test_toy_model_implements_the_contract(tmp_path: pathlib.Path) -> None:
    assert_implements_contract(write_toy_saved_model(str(tmp_path), 1), TOY_DIM)


@pytest.mark.slow
def test_unisrec_export_implements_the_contract(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    import unisrec_factory

    export = unisrec_factory.exported(tmp_path_factory.getbasetemp() / "unisrec_export")
    signature_defs = read_meta_graph(export.path).signature_def
    hidden = signature_defs[ENCODE_SEQUENCE].outputs["vectors"].tensor_shape.dim[1].size
    assert hidden > 0
    assert_implements_contract(export.path, hidden)
