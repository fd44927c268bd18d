"""A UniSRec export served by export.serve: a gRPC round trip for every signature."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
import unisrec_factory

from export.client import ServingClient, ServingClientError, string_matrix
from export.contract import (
    DEFAULT_K,
    RECOMMEND_FROM_TEXTS,
    SERVING_DEFAULT,
    SIGNATURES,
)
from export.saved_model import load_trained_model
from export.serve import ModelServer, read_model_config_file


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> unisrec_factory.ExportResult:
    return unisrec_factory.exported(tmp_path_factory.getbasetemp() / "unisrec_export")


@pytest.fixture(scope="module")
def trained(export):
    return load_trained_model(unisrec_factory.run_dir_of(export))


@pytest.fixture(scope="module")
def client(export):
    """A client of export.serve, started from the export's models.config."""
    server = ModelServer(
        read_model_config_file(export.models_config), port=0, poll_wait_seconds=0
    ).start()
    try:
        with ServingClient(server.address, "unisrec", timeout=60.0) as connected:
            connected.wait_until_ready(timeout=60.0)
            yield connected
    finally:
        server.stop(grace=1.0)


@pytest.fixture(scope="module")
def histories(trained) -> list[list[str]]:
    _, info, _ = trained
    ids = [str(i) for i in info.item_ids]
    return [[ids[3], ids[1], "NOPE", ids[7]], [ids[2], "", "", ""], ["gone", "", "", ""]]


def _status(call) -> grpc.StatusCode | None:
    with pytest.raises(ServingClientError) as error:
        call()
    return error.value.code


def test_metadata_lists_signatures(client) -> None:
    signatures = client.metadata()
    assert {name for name in signatures if not name.startswith("__")} == set(SIGNATURES)
    assert set(signatures[SERVING_DEFAULT].inputs) == {"history", "k", "exclude_history"}
    assert set(signatures[RECOMMEND_FROM_TEXTS].outputs) == {"item_ids", "scores", "item_texts"}


def test_recommend_default_k(client, trained, histories) -> None:
    _, info, model = trained
    result = client.recommend(histories)
    ids, scores = unisrec_factory.expected_top_k(model, info, histories, DEFAULT_K, False)
    np.testing.assert_array_equal(result.item_ids.astype(str), ids.astype(str))
    np.testing.assert_allclose(result.scores, scores, atol=1e-5)
    np.testing.assert_array_equal(result.unknown_items, [1, 0, 1])
    texts = dict(zip(info.item_ids, info.texts, strict=True))
    assert [texts[i] for i in result.item_ids[0]] == list(result.item_texts[0])


def test_recommend_exclude_history(client, trained, histories) -> None:
    _, info, model = trained
    result = client.predict(
        {
            "history": tf.make_tensor_proto(string_matrix(histories)),
            "k": tf.make_tensor_proto(4, dtype=tf.int32),
            "exclude_history": tf.make_tensor_proto(True),
        }
    )
    ids, scores = unisrec_factory.expected_top_k(model, info, histories, 4, True)
    np.testing.assert_array_equal(result.outputs["item_ids"].astype(str), ids.astype(str))
    np.testing.assert_allclose(result.outputs["scores"], scores, atol=1e-5)


def test_encode_sequence(client, trained, histories) -> None:
    _, info, model = trained
    vectors = client.encode_sequence(histories[1:2])
    index = list(info.item_ids).index(histories[1][0])
    expected = model.sequence_vectors(tf.constant([[index]]), tf.constant([1]))
    np.testing.assert_allclose(vectors, expected.numpy(), atol=1e-5)


def test_encode_items_and_recommend_from_texts(client, trained) -> None:
    _, info, model = trained
    texts = [str(t) for t in info.texts[1:4]]
    np.testing.assert_allclose(
        client.encode_items(texts), model.item_vectors()[1:4].numpy(), atol=1e-4
    )
    from_texts = client.recommend_from_texts([texts], k=3)
    from_ids = client.recommend([[str(i) for i in info.item_ids[1:4]]], k=3)
    np.testing.assert_array_equal(from_texts.item_ids, from_ids.item_ids)
    np.testing.assert_allclose(from_texts.scores, from_ids.scores, atol=1e-4)
    new_item = client.recommend_from_texts(["Cryogenic storage vials 2 ml, pack of 50"], k=2)
    assert new_item.item_ids.shape == (1, 2) and new_item.item_texts[0][0]


@pytest.mark.parametrize("k", [0, -1, 13, 10**6])
def test_bad_k_is_invalid_argument(client, histories, k: int) -> None:
    assert _status(lambda: client.recommend(histories, k=k)) == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        _status(lambda: client.recommend_from_texts([["lab gloves"]], k=k))
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    assert client.recommend(histories, k=2).item_ids.shape == (3, 2)


def test_bad_requests_keep_the_server_answering(client, histories) -> None:
    assert (
        _status(lambda: client.encode_items([b"\xff\xfe broken"]))
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    assert (
        _status(lambda: client.predict({"history": np.array([[1, 2]])}))
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    assert (
        _status(lambda: client.recommend(histories, signature_name="nope"))
        == grpc.StatusCode.FAILED_PRECONDITION
    )
    replaced = client.recommend_from_texts([[b"\xff\xfe broken text"]], k=1)
    assert replaced.item_ids.shape == (1, 1)
    assert client.recommend(histories).item_ids.shape == (3, DEFAULT_K)
