"""export.serve: round trips, metadata, version pickup and TF-Serving status codes.

The request-level tests run against the in-process ``export.serve`` server and, when
``tensorflow_model_server`` is on PATH, against the real binary with the same toy SavedModel.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import time
from collections.abc import Callable, Iterator

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from export.contract import (
    DEFAULT_K,
    ENCODE_ITEMS,
    ENCODE_SEQUENCE,
    PREDICT_METHOD,
    RECOMMEND_FROM_TEXTS,
    SERVING_DEFAULT,
    SIGNATURES,
    TOP_K,
)
from export.serve import ModelServer, ModelSource, read_model_config_file
from export.server_process import ModelServerProcess

from .toy_model import (
    TOY_DIM,
    TOY_ITEM_IDS,
    TOY_ITEM_TEXTS,
    toy_warmup_request,
    write_toy_saved_model,
)

MODEL = "toy"
REAL_BINARY = shutil.which("tensorflow_model_server")
SKIP_REAL = (
    "tensorflow_model_server is not on PATH (it cannot be installed here; "
    "the tensorflow/serving image provides it)"
)
INVALID = grpc.StatusCode.INVALID_ARGUMENT
OK = grpc.StatusCode.OK

# (dtype, rank) of every input alias, by signature.
SIGNATURE_INPUTS: dict[str, dict[str, tuple[tf.DType, int]]] = {
    name: {t.alias: (tf.dtypes.as_dtype(t.dtype), len(t.shape)) for t in signature.inputs}
    for name, signature in SIGNATURES.items()
}
OPTIONAL = {alias for signature in SIGNATURES.values() for alias in signature.defaults}
GOOD_VALUES: dict[str, object] = {
    "history": [[TOY_ITEM_IDS[0], TOY_ITEM_IDS[1]]],
    "k": 3,
    "exclude_history": True,
    "texts": [TOY_ITEM_TEXTS[0]],
    "history_texts": [[TOY_ITEM_TEXTS[0], TOY_ITEM_TEXTS[6]]],
}


@dataclasses.dataclass
class Served:
    """A running server and stubs on it."""

    kind: str
    address: str
    predict: prediction_service_pb2_grpc.PredictionServiceStub
    models: model_service_pb2_grpc.ModelServiceStub


@pytest.fixture(scope="module", params=["export.serve", "tensorflow_model_server"])
def served(
    request: pytest.FixtureRequest,
    toy_base_path: pathlib.Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    if request.param == "export.serve":
        server = ModelServer([ModelSource(MODEL, str(toy_base_path))], port=0).start()
        stop: Callable[[], object] = server.stop
        address = server.address
    else:
        if REAL_BINARY is None:
            pytest.skip(SKIP_REAL)
        log = tmp_path_factory.mktemp("tfserving") / "server.log"
        process = ModelServerProcess.create(REAL_BINARY, str(toy_base_path), MODEL, str(log))
        process.start()
        stop = process.stop
        address = process.address
    channel = grpc.insecure_channel(address)
    try:
        yield Served(
            request.param,
            address,
            prediction_service_pb2_grpc.PredictionServiceStub(channel),
            model_service_pb2_grpc.ModelServiceStub(channel),
        )
    finally:
        channel.close()
        stop()


def make_request(signature: str = SERVING_DEFAULT, **inputs: object) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = signature
    for alias, value in inputs.items():
        dtype = SIGNATURE_INPUTS[signature][alias][0]
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(value, dtype=dtype))
    return request


def good_request(signature: str) -> predict_pb2.PredictRequest:
    return make_request(signature, **{a: GOOD_VALUES[a] for a in SIGNATURE_INPUTS[signature]})


def outputs(response: predict_pb2.PredictResponse) -> dict[str, np.ndarray]:
    return {alias: tf.make_ndarray(proto) for alias, proto in response.outputs.items()}


# Round trips -------------------------------------------------------------------------------


def test_serving_default_round_trip(served: Served) -> None:
    request = make_request(
        history=[[TOY_ITEM_IDS[0], TOY_ITEM_IDS[1], "unknown-id"], [TOY_ITEM_IDS[2], "", ""]],
        k=4,
    )
    response = served.predict.Predict(request, timeout=10)
    out = outputs(response)
    assert out["item_ids"].shape == (2, 4)
    assert out["scores"].shape == (2, 4) and out["scores"].dtype == np.float32
    assert np.all(np.diff(out["scores"], axis=1) <= 1e-6)
    assert out["unknown_items"].tolist() == [1, 0]
    assert {v.decode() for v in out["item_ids"].ravel()} <= set(TOY_ITEM_IDS)
    texts = dict(zip(TOY_ITEM_IDS, TOY_ITEM_TEXTS, strict=True))
    assert [t.decode() for t in out["item_texts"][0]] == [
        texts[i.decode()] for i in out["item_ids"][0]
    ]
    assert response.model_spec.name == MODEL
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == SERVING_DEFAULT


def test_k_and_exclude_history_fall_back_to_the_signature_defaults(served: Served) -> None:
    history = [[TOY_ITEM_IDS[3]]]
    out = outputs(served.predict.Predict(make_request(history=history), timeout=10))
    assert out["item_ids"].shape == (1, DEFAULT_K)
    assert out["item_ids"][0, 0].decode() == TOY_ITEM_IDS[3]  # its own item is not excluded


def test_exclude_history_drops_the_history_items(served: Served) -> None:
    history = [[TOY_ITEM_IDS[3], TOY_ITEM_IDS[8], "unknown-id"]]
    request = make_request(history=history, k=len(TOY_ITEM_IDS) - 2, exclude_history=True)
    out = outputs(served.predict.Predict(request, timeout=10))
    ids = {v.decode() for v in out["item_ids"][0]}
    assert ids == set(TOY_ITEM_IDS) - {TOY_ITEM_IDS[3], TOY_ITEM_IDS[8]}


def test_rows_without_known_items_are_empty(served: Served) -> None:
    history = [["", ""], ["unknown-id", ""], [TOY_ITEM_IDS[0], ""]]
    out = outputs(served.predict.Predict(make_request(history=history, k=2), timeout=10))
    assert out["item_ids"][:2].tolist() == [[b"", b""]] * 2
    assert out["item_texts"][:2].tolist() == [[b"", b""]] * 2
    assert np.all(np.isneginf(out["scores"][:2])) and np.all(np.isfinite(out["scores"][2]))
    assert out["unknown_items"].tolist() == [0, 1, 0]
    sequence = outputs(
        served.predict.Predict(make_request(ENCODE_SEQUENCE, history=history), timeout=10)
    )
    np.testing.assert_array_equal(sequence["vectors"][:2], 0.0)
    assert sequence["unknown_items"].tolist() == [0, 1, 0]


def test_empty_signature_name_means_serving_default(served: Served) -> None:
    request = make_request(history=[[TOY_ITEM_IDS[0]]], k=2)
    request.model_spec.ClearField("signature_name")
    response = served.predict.Predict(request, timeout=10)
    assert response.model_spec.signature_name == SERVING_DEFAULT


def test_encode_items_round_trip(served: Served) -> None:
    out = outputs(served.predict.Predict(make_request(ENCODE_ITEMS, texts=TOY_ITEM_TEXTS[:3])))
    vectors = out["vectors"]
    assert vectors.shape == (3, TOY_DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_recommend_from_texts_agrees_with_ids(served: Served) -> None:
    by_text = outputs(
        served.predict.Predict(
            make_request(RECOMMEND_FROM_TEXTS, history_texts=[[TOY_ITEM_TEXTS[4]]], k=5)
        )
    )
    by_id = outputs(served.predict.Predict(make_request(history=[[TOY_ITEM_IDS[4]]], k=5)))
    np.testing.assert_allclose(by_text["scores"], by_id["scores"], rtol=1e-5, atol=1e-6)
    assert by_text["item_texts"].shape == (1, 5)
    assert by_text["item_texts"][0, 0].decode() == TOY_ITEM_TEXTS[4]


def test_encode_sequence_round_trip(served: Served) -> None:
    out = outputs(
        served.predict.Predict(
            make_request(ENCODE_SEQUENCE, history=[[TOY_ITEM_IDS[0]], [TOY_ITEM_IDS[1]]])
        )
    )
    assert out["vectors"].shape == (2, TOY_DIM)


def test_output_filter_returns_only_the_named_outputs(served: Served) -> None:
    request = good_request(SERVING_DEFAULT)
    request.output_filter.append("scores")
    assert set(served.predict.Predict(request).outputs) == {"scores"}


def test_concurrent_requests(served: Served) -> None:
    import concurrent.futures

    request = good_request(SERVING_DEFAULT)
    expected = outputs(served.predict.Predict(request))["item_ids"]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: served.predict.Predict(request, timeout=30), range(64)))
    for response in results:
        np.testing.assert_array_equal(outputs(response)["item_ids"], expected)


# Metadata and status ----------------------------------------------------------------------


def get_metadata(served: Served, fields: tuple[str, ...] = ("signature_def",)):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = MODEL
    request.metadata_field.extend(fields)
    return served.predict.GetModelMetadata(request, timeout=10)


def test_metadata_lists_the_signatures(served: Served) -> None:
    response = get_metadata(served)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    signatures = signature_map.signature_def
    assert set(SIGNATURE_INPUTS) <= set(signatures)
    for name, signature in SIGNATURES.items():
        assert set(signatures[name].inputs) == set(SIGNATURE_INPUTS[name])
        assert signatures[name].method_name == PREDICT_METHOD
        for alias, (dtype, rank) in SIGNATURE_INPUTS[name].items():
            info = signatures[name].inputs[alias]
            assert info.dtype == dtype.as_datatype_enum
            assert len(info.tensor_shape.dim) == rank
        assert set(signatures[name].outputs) == {t.alias for t in signature.outputs}
        assert set(signatures[name].defaults) == set(signature.defaults)
    assert response.model_spec.name == MODEL and response.model_spec.version.value == 1


@pytest.mark.parametrize("fields", [(), ("signature_def", "graph_def"), ("nonsense",)])
def test_metadata_rejects_bad_fields(served: Served, fields: tuple[str, ...]) -> None:
    with pytest.raises(grpc.RpcError) as info:
        get_metadata(served, fields)
    assert info.value.code() == INVALID


def test_metadata_for_unknown_model_is_not_found(served: Served) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "nope"
    request.metadata_field.append("signature_def")
    with pytest.raises(grpc.RpcError) as info:
        served.predict.GetModelMetadata(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_model_status(served: Served) -> None:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    response = served.models.GetModelStatus(request, timeout=10)
    states = {s.version: s.state for s in response.model_version_status}
    assert states == {1: get_model_status_pb2.ModelVersionStatus.AVAILABLE}
    request.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as info:
        served.models.GetModelStatus(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_other_methods_are_unimplemented(served: Served) -> None:
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = MODEL
    with pytest.raises(grpc.RpcError) as info:
        served.predict.Regress(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


# Malformed requests ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    request: predict_pb2.PredictRequest
    code: grpc.StatusCode


def _value(alias: str, rank: int, dtype: tf.DType) -> np.ndarray:
    shape = {0: (), 1: (2,), 2: (1, 2), 3: (1, 2, 1)}[rank]
    if dtype == tf.string:
        return np.full(shape, TOY_ITEM_IDS[0].encode(), dtype=object)
    if dtype == tf.bool:
        return np.ones(shape, dtype=bool)
    return np.full(shape, 1, dtype=dtype.as_numpy_dtype)


WRONG_DTYPES = [
    tf.float32,
    tf.float64,
    tf.int32,
    tf.int64,
    tf.int8,
    tf.uint8,
    tf.int16,
    tf.bool,
    tf.string,
    tf.float16,
]
NON_UTF8 = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80abc", b"item01\xfe", b"\x00\xff\xfe"]


def _malformed_cases() -> list[Case]:
    cases: list[Case] = []

    def add(case_id: str, request: predict_pb2.PredictRequest, code: grpc.StatusCode) -> None:
        cases.append(Case(case_id, request, code))

    for sig, inputs in SIGNATURE_INPUTS.items():
        for alias, (dtype, rank) in inputs.items():
            for wrong in WRONG_DTYPES:
                if wrong == dtype:
                    continue
                request = good_request(sig)
                request.inputs[alias].CopyFrom(tf.make_tensor_proto(_value(alias, rank, wrong)))
                add(f"dtype-{sig}-{alias}-{wrong.name}", request, INVALID)
            for wrong_rank in range(4):
                if wrong_rank == rank:
                    continue
                request = good_request(sig)
                request.inputs[alias].CopyFrom(
                    tf.make_tensor_proto(_value(alias, wrong_rank, dtype), dtype=dtype)
                )
                add(f"rank-{sig}-{alias}-{wrong_rank}", request, INVALID)

            def proto_case(name: str, mutate: Callable[[object], None], *, sig=sig, alias=alias):
                request = good_request(sig)
                mutate(request.inputs[alias])
                add(f"proto-{sig}-{alias}-{name}", request, INVALID)

            def content(size: int) -> Callable[[object], None]:
                def mutate(p: object) -> None:
                    p.tensor_content = b"\x01" * size

                return mutate

            proto_case("content-short", content(3))
            proto_case("content-long", content(4 * 64 + 1))
            proto_case("negative-dim", lambda p: p.tensor_shape.dim.add(size=-3))
            proto_case("unknown-rank", lambda p: setattr(p.tensor_shape, "unknown_rank", True))
            proto_case("dtype-invalid", lambda p: setattr(p, "dtype", types_pb2.DT_INVALID))
            proto_case("dtype-999", lambda p: setattr(p, "dtype", 999))
            proto_case("dtype-resource", lambda p: setattr(p, "dtype", types_pb2.DT_RESOURCE))
            proto_case("dtype-variant", lambda p: setattr(p, "dtype", types_pb2.DT_VARIANT))
            proto_case("huge-dim", lambda p: p.tensor_shape.dim.add(size=2**40))
            if dtype == tf.string:
                proto_case("too-many-values", lambda p: p.string_val.extend([b"x"] * 5))
            elif dtype == tf.bool:
                proto_case("too-many-values", lambda p: p.bool_val.extend([True] * 3))
            else:
                proto_case("too-many-values", lambda p: p.int_val.extend([1, 2, 3]))

        for alias, (_, _) in inputs.items():
            request = good_request(sig)
            del request.inputs[alias]
            add(f"missing-{sig}-{alias}", request, OK if alias in OPTIONAL else INVALID)
        request = good_request(sig)
        request.inputs.clear()
        add(f"no-inputs-{sig}", request, INVALID)
        if OPTIONAL & set(inputs):
            request = good_request(sig)
            for alias in OPTIONAL & set(inputs):
                del request.inputs[alias]
            add(f"only-required-{sig}", request, OK)
        for extra in ["extra", "K", "history_", "texts" if sig != ENCODE_ITEMS else "history"]:
            request = good_request(sig)
            request.inputs[extra].CopyFrom(tf.make_tensor_proto([b"x"]))
            add(f"extra-{sig}-{extra}", request, INVALID)
        if TOP_K.alias in inputs:
            request = good_request(sig)
            del request.inputs[TOP_K.alias]
            request.inputs["kk"].CopyFrom(tf.make_tensor_proto(3, dtype=tf.int32))
            add(f"misnamed-{sig}-kk", request, INVALID)
        for bad_filter in [["nope"], ["vectors" if TOP_K.alias in inputs else "item_ids"]]:
            request = good_request(sig)
            request.output_filter.extend(bad_filter)
            add(f"output-filter-{sig}-{bad_filter[0]}", request, INVALID)
        request = good_request(sig)
        first_output = "vectors" if sig.startswith("encode") else "scores"
        request.output_filter.extend([first_output, first_output])
        add(f"output-filter-{sig}-duplicate", request, INVALID)

        for version in [0, 2, 3, 99, -1, 2**40]:
            request = good_request(sig)
            request.model_spec.version.value = version
            add(f"version-{sig}-{version}", request, grpc.StatusCode.NOT_FOUND)
        for label in ["stable", "canary"]:
            request = good_request(sig)
            request.model_spec.version_label = label
            add(f"label-{sig}-{label}", request, INVALID)
        for model in ["", "toy2", "Toy", "toy ", "unisrec"]:
            request = good_request(sig)
            request.model_spec.name = model
            add(f"model-{sig}-{model!r}", request, grpc.StatusCode.NOT_FOUND)

        string_alias = next(a for a, (d, _) in inputs.items() if d == tf.string)
        string_rank = inputs[string_alias][1]
        for i, raw in enumerate(NON_UTF8):
            request = good_request(sig)
            value = [raw, TOY_ITEM_IDS[0].encode()] if string_rank == 1 else [[raw, b""]]
            request.inputs[string_alias].CopyFrom(tf.make_tensor_proto(value, dtype=tf.string))
            add(f"non-utf8-{sig}-{i}", request, INVALID if sig == ENCODE_ITEMS else OK)
        for shape in [(0,), (0, 0), (0, 3)]:
            if len(shape) != string_rank:
                continue
            request = good_request(sig)
            request.inputs[string_alias].CopyFrom(
                tf.make_tensor_proto(np.zeros(shape, dtype=object), dtype=tf.string)
            )
            add(f"empty-batch-{sig}-{shape}", request, OK)
        if TOP_K.alias in inputs:
            too_many = len(TOY_ITEM_IDS) + 1
            for k in [0, too_many, 100, 10**6, 2**31 - 1, -1, -(2**31)]:
                request = good_request(sig)
                request.inputs[TOP_K.alias].CopyFrom(tf.make_tensor_proto(k, dtype=tf.int32))
                add(f"k-{sig}-{k}", request, INVALID)
            for k in [1, len(TOY_ITEM_IDS)]:
                request = good_request(sig)
                request.inputs[TOP_K.alias].CopyFrom(tf.make_tensor_proto(k, dtype=tf.int32))
                add(f"k-{sig}-{k}", request, OK)

    for name in ["Serving_Default", "predict", "serving_default ", "__saved_model_init_op", "x"]:
        request = good_request(SERVING_DEFAULT)
        request.model_spec.signature_name = name
        add(f"signature-{name!r}", request, grpc.StatusCode.FAILED_PRECONDITION)
    request = good_request(SERVING_DEFAULT)
    request.ClearField("model_spec")
    add("no-model-spec", request, INVALID)
    return cases


MALFORMED = _malformed_cases()
BAD_CODES = [c for c in MALFORMED if c.code != OK]


def test_there_are_at_least_200_bad_requests() -> None:
    assert len(BAD_CODES) >= 200, len(BAD_CODES)


@pytest.mark.parametrize("case", MALFORMED, ids=[c.id for c in MALFORMED])
def test_request_gets_the_tf_serving_status_code(served: Served, case: Case) -> None:
    try:
        response = served.predict.Predict(case.request, timeout=30)
    except grpc.RpcError as exc:
        assert exc.code() == case.code, exc.details()
        assert exc.details()
        return
    assert case.code == OK, f"expected {case.code.name}, got OK"
    assert response.outputs


def test_server_still_answers_after_the_bad_requests(served: Served) -> None:
    for case in BAD_CODES:
        with pytest.raises(grpc.RpcError):
            served.predict.Predict(case.request, timeout=30)
    for signature in SIGNATURE_INPUTS:
        assert served.predict.Predict(good_request(signature), timeout=10).outputs


# Versions, config, CLI (export.serve only) -------------------------------------------------


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_picks_up_a_new_version_and_unloads_the_old(tmp_path: pathlib.Path) -> None:
    base = tmp_path / "model"
    write_toy_saved_model(str(base), 1, seed=1)
    with ModelServer([ModelSource(MODEL, str(base))], port=0, poll_wait_seconds=0.2) as server:
        channel = grpc.insecure_channel(server.address)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        before = stub.Predict(good_request(ENCODE_ITEMS), timeout=10)
        assert before.model_spec.version.value == 1

        write_toy_saved_model(str(base), 2, seed=2)
        assert wait_for(lambda: server.manager.loaded_versions(MODEL) == [2])
        after = stub.Predict(good_request(ENCODE_ITEMS), timeout=10)
        assert after.model_spec.version.value == 2
        assert not np.allclose(outputs(before)["vectors"], outputs(after)["vectors"])

        old = good_request(ENCODE_ITEMS)
        old.model_spec.version.value = 1
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(old, timeout=10)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND

        broken = base / "3"
        broken.mkdir()
        (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
        status_request = get_model_status_pb2.GetModelStatusRequest()
        status_request.model_spec.name = MODEL
        models = model_service_pb2_grpc.ModelServiceStub(channel)

        def version_3_failed() -> bool:
            statuses = models.GetModelStatus(status_request).model_version_status
            return any(
                s.version == 3
                and s.state == get_model_status_pb2.ModelVersionStatus.END
                and s.status.error_message
                for s in statuses
            )

        assert wait_for(version_3_failed)
        (error,) = [s.status.error_message for s in server.manager.version_statuses(MODEL, 3)]
        assert error.startswith(f"{broken}: not a loadable SavedModel (")
        assert "\n" not in error
        assert error.endswith("export it again with python -m export.saved_model")
        assert stub.Predict(good_request(ENCODE_ITEMS)).model_spec.version.value == 2

        # A version whose variables were cut short (an interrupted copy) fails the same way.
        cut = base / "4"
        shutil.copytree(base / "2", cut)
        (data,) = (cut / "variables").glob("variables.data-*")
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
        assert wait_for(
            lambda: any(
                s.version == 4 and "not a loadable SavedModel" in s.status.error_message
                for s in server.manager.version_statuses(MODEL)
            )
        )
        assert stub.Predict(good_request(ENCODE_ITEMS)).model_spec.version.value == 2
        channel.close()


def test_model_config_file_with_labels_and_policies(tmp_path: pathlib.Path) -> None:
    write_toy_saved_model(str(tmp_path / "a"), 1, seed=1, warmup=False)
    write_toy_saved_model(str(tmp_path / "a"), 2, seed=2, warmup=False)
    write_toy_saved_model(str(tmp_path / "b"), 5, seed=3)
    config = tmp_path / "models.config"
    config.write_text(
        """
model_config_list {
  config {
    name: "a"
    base_path: "a"
    model_platform: "tensorflow"
    model_version_policy { all {} }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 2 }
  }
  config { name: "b" base_path: "%s" }
}
"""
        % (tmp_path / "b")
    )
    sources = read_model_config_file(str(config))
    assert [s.name for s in sources] == ["a", "b"]
    with ModelServer(sources, port=0, poll_wait_seconds=0) as server:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(
            grpc.insecure_channel(server.address)
        )
        assert server.manager.loaded_versions("a") == [1, 2]

        def version_of(model: str, **spec: object) -> int:
            request = good_request(ENCODE_ITEMS)
            request.model_spec.name = model
            for field, value in spec.items():
                if field == "version":
                    request.model_spec.version.value = value
                else:
                    setattr(request.model_spec, field, value)
            return stub.Predict(request, timeout=10).model_spec.version.value

        assert version_of("a") == 2
        assert version_of("a", version=1) == 1
        assert version_of("a", version_label="stable") == 1
        assert version_of("a", version_label="canary") == 2
        assert version_of("b") == 5
        with pytest.raises(grpc.RpcError) as info:
            version_of("b", version_label="stable")
        assert info.value.code() == INVALID


def test_version_whose_warmup_fails_is_not_served(tmp_path: pathlib.Path) -> None:
    base = tmp_path / "model"
    write_toy_saved_model(str(base), 1)
    with ModelServer([ModelSource(MODEL, str(base))], port=0, poll_wait_seconds=0.2) as server:
        bad = toy_warmup_request()
        bad.inputs[TOP_K.alias].CopyFrom(tf.make_tensor_proto(1000, dtype=tf.int32))
        write_toy_saved_model(str(base), 2, warmup=[bad])
        statuses = server.manager.version_statuses
        assert wait_for(
            lambda: any(s.version == 2 and s.status.error_message for s in statuses(MODEL))
        )
        assert "warm-up request 0 failed" in statuses(MODEL, 2)[0].status.error_message
        assert server.manager.loaded_versions(MODEL) == [1]


@pytest.mark.slow
def test_cli_serves_and_stops_on_sigterm(
    toy_base_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    from export.client import ServingClient

    process = ModelServerProcess.create(
        "export.serve", str(toy_base_path), MODEL, str(tmp_path / "serve.log")
    ).start()
    try:
        with ServingClient(process.address, MODEL) as client:
            assert client.encode_items(["red beaker"]).shape == (1, TOY_DIM)
    finally:
        code = process.stop()
    assert code == 0, process.log()
    log = process.log()
    assert "Running gRPC ModelServer at 127.0.0.1:" in log
    assert "shutting down" in log


def test_bad_flags_exit_with_usage_error(tmp_path: pathlib.Path) -> None:
    from export.serve import main

    assert main(["--port=0"]) == 2
    config = tmp_path / "models.config"
    config.write_text("model_config_list {}")
    assert main(["--port=0", f"--model_config_file={config}"]) == 2
    assert os.path.exists(config)
