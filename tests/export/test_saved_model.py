"""export.saved_model: layout, fresh-process reload and equality with the in-memory model."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
import unisrec_factory
from google.protobuf import text_format
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.config import model_server_config_pb2

from export.client import ServingClient
from export.contract import DEFAULT_K, SERVING_DEFAULT, SIGNATURES, WARMUP_FILE, signatures_for
from export.saved_model import (
    MODELS_CONFIG,
    export_saved_model,
    load_trained_model,
    main,
    next_version,
)
from export.serve import ModelServer, read_model_config_file

RELOAD_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    def array(value):
        value = value.numpy()
        return value.astype(bytes) if value.dtype == object else value

    export_dir, inputs_path, outputs_path = sys.argv[1:]
    model = tf.saved_model.load(export_dir)
    with open(inputs_path) as f:
        inputs = json.load(f)
    history = tf.constant(inputs["history"])
    recommend = model.signatures["serving_default"]
    arrays = {}
    for exclude in (False, True):
        out = recommend(history=history, k=tf.constant(inputs["k"]),
                        exclude_history=tf.constant(exclude))
        for name, value in out.items():
            arrays[f"recommend_{int(exclude)}_{name}"] = array(value)
    for name, value in model.signatures["encode_sequence"](history=history).items():
        arrays[f"sequence_{name}"] = array(value)
    texts = tf.constant(inputs["texts"])
    arrays["items_vectors"] = array(model.signatures["encode_items"](texts=texts)["vectors"])
    out = model.signatures["recommend_from_texts"](
        history_texts=tf.constant(inputs["history_texts"]), k=tf.constant(inputs["k"]))
    for name, value in out.items():
        arrays[f"texts_{name}"] = array(value)
    loaded = sorted({m.split(".")[0] for m in sys.modules})
    arrays["modules"] = np.array(loaded)
    arrays["signatures"] = np.array(sorted(model.signatures))
    np.savez(outputs_path, **arrays)
    """
)


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> unisrec_factory.ExportResult:
    return unisrec_factory.exported(tmp_path_factory.getbasetemp() / "unisrec_export")


@pytest.fixture(scope="module")
def trained(export: unisrec_factory.ExportResult):
    return load_trained_model(unisrec_factory.run_dir_of(export))


@pytest.fixture(scope="module")
def reloaded(export, trained, tmp_path_factory) -> tuple[dict, dict[str, np.ndarray]]:
    """Inputs and the outputs of every signature, computed in a fresh Python process."""
    _, info, _ = trained
    ids = [str(i) for i in info.item_ids]
    texts = [str(t) for t in info.texts]
    history = [
        [ids[1], ids[2], ids[3], ""],
        [ids[4], "NOT-AN-ITEM", ids[5], ids[6]],
        ids[1:9],
        ["", "", "", ""],
        ["gone", "missing", "", ""],
    ]
    history = [row + [""] * (8 - len(row)) for row in history]
    inputs = {
        "history": history,
        "k": 7,
        "texts": texts[1:],
        "history_texts": [
            [texts[ids.index(i)] if i in ids[1:] else "" for i in row] for row in history
        ],
    }
    work = tmp_path_factory.mktemp("reload")
    (work / "inputs.json").write_text(json.dumps(inputs))
    (work / "reload.py").write_text(RELOAD_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run(
        [
            sys.executable,
            str(work / "reload.py"),
            export.path,
            str(work / "inputs.json"),
            str(work / "outputs.npz"),
        ],
        cwd=str(work),
        env=env,
        check=True,
        timeout=300,
    )
    with np.load(work / "outputs.npz") as outputs:
        return inputs, dict(outputs)


def test_layout(export) -> None:
    path = pathlib.Path(export.path)
    assert export.version == 1
    assert sorted(os.listdir(path.parent)) == ["1"]
    expected = {"assets", "assets.extra", "saved_model.pb", "variables"}
    assert expected <= set(os.listdir(path)) <= expected | {"fingerprint.pb"}  # nothing stray
    assert (path / "assets" / "item_ids.txt").is_file()
    assert export.signatures == tuple(sorted(SIGNATURES))
    assert sorted(os.listdir(path.parents[1])) == [MODELS_CONFIG, "unisrec"]


@pytest.mark.slow
def test_fresh_process_imports_only_tensorflow(reloaded) -> None:
    _, outputs = reloaded
    modules = set(outputs["modules"].tolist())
    assert not modules & {"tf_unisrec", "export", "keras_hub", "tensorflow_recommenders"}
    assert sorted(outputs["signatures"].tolist()) == sorted(SIGNATURES)


@pytest.mark.parametrize("exclude", [False, True])
def test_top_k_equals_in_memory_model(reloaded, trained, exclude: bool) -> None:
    inputs, outputs = reloaded
    _, info, model = trained
    ids, scores = unisrec_factory.expected_top_k(
        model, info, inputs["history"], inputs["k"], exclude
    )
    got_ids = outputs[f"recommend_{int(exclude)}_item_ids"].astype(str)
    np.testing.assert_array_equal(got_ids, ids.astype(str))
    np.testing.assert_allclose(outputs[f"recommend_{int(exclude)}_scores"], scores, atol=1e-5)
    texts = {str(i): str(t) for i, t in zip(info.item_ids, info.texts, strict=True)}
    expected_texts = [[texts[i] for i in row] for row in ids]
    got_texts = outputs[f"recommend_{int(exclude)}_item_texts"].astype(bytes)
    assert [[t.decode() for t in row] for row in got_texts] == expected_texts
    if exclude:
        for row, history in zip(got_ids, inputs["history"], strict=True):
            assert not set(row) & (set(history) - {""})


def test_unknown_items_counted(reloaded) -> None:
    _, outputs = reloaded
    expected = [0, 1, 0, 0, 2]
    np.testing.assert_array_equal(outputs["recommend_0_unknown_items"], expected)
    np.testing.assert_array_equal(outputs["sequence_unknown_items"], expected)


def test_empty_history_rows(reloaded) -> None:
    _, outputs = reloaded
    for row in (3, 4):
        assert set(outputs["recommend_0_item_ids"][row].astype(bytes)) == {b""}
        assert np.all(np.isneginf(outputs["recommend_0_scores"][row]))
        np.testing.assert_array_equal(outputs["sequence_vectors"][row], 0.0)
    assert np.all(np.isfinite(outputs["recommend_0_scores"][:3]))


def test_encode_sequence_equals_in_memory_model(reloaded, trained) -> None:
    inputs, outputs = reloaded
    _, info, model = trained
    index = {str(item_id): i for i, item_id in enumerate(info.item_ids) if i}
    max_length = model.sequence_encoder.max_length
    for row, vector in zip(inputs["history"][:3], outputs["sequence_vectors"][:3], strict=True):
        known = [index[i] for i in row if i in index][-max_length:]
        expected = model.sequence_vectors(tf.constant([known]), tf.constant([len(known)]))[0]
        np.testing.assert_allclose(vector, expected.numpy(), atol=1e-5)


def test_encode_items_reproduces_trained_item_vectors(reloaded, trained) -> None:
    _, outputs = reloaded
    _, _, model = trained
    np.testing.assert_allclose(outputs["items_vectors"], model.item_vectors()[1:], atol=1e-4)


def test_recommend_from_texts_matches_ids(reloaded) -> None:
    """An inductive model ranks a history given as texts as it ranks the same item IDs."""
    _, outputs = reloaded
    np.testing.assert_array_equal(
        outputs["texts_item_ids"][:3], outputs["recommend_0_item_ids"][:3]
    )
    np.testing.assert_allclose(
        outputs["texts_scores"][:3], outputs["recommend_0_scores"][:3], atol=1e-4
    )
    assert np.all(np.isneginf(outputs["texts_scores"][3:]))


def test_warmup_requests_cover_every_signature(export) -> None:
    path = pathlib.Path(export.path) / WARMUP_FILE
    signatures = []
    for record in tf.data.TFRecordDataset(str(path)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        assert log.predict_log.request.model_spec.name == "unisrec"
        signatures.append(log.predict_log.request.model_spec.signature_name)
    assert set(signatures) == set(export.signatures)


def test_models_config_and_no_batching_parameters(export) -> None:
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse(pathlib.Path(export.models_config).read_text(), config)
    (entry,) = config.model_config_list.config
    assert entry.name == "unisrec"
    assert entry.base_path == str(pathlib.Path(export.path).parent)
    assert entry.model_platform == "tensorflow"
    # No signature can be batched by TF-Serving, so the export writes no batching file.
    assert not (pathlib.Path(export.models_config).parent / "batching_parameters.txt").exists()


def test_next_version_and_refusal_to_overwrite(export, tmp_path, capsys) -> None:
    base = pathlib.Path(export.path).parent
    assert next_version(str(base)) == 2
    assert next_version(str(tmp_path / "absent")) == 1
    run_dir = unisrec_factory.run_dir_of(export)
    with pytest.raises(FileExistsError):
        export_saved_model(run_dir, base, version=1)
    assert main(["--run", str(run_dir), "--output", str(base), "--version", "1"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert sorted(os.listdir(base)) == ["1"]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--partitions", "4"], "apply to --index partitioned"),
        (["--index", "partitioned", "--partitions", "0"], "--partitions must be positive"),
        (["--index", "partitioned", "--partitions-to-search", "-1"], "must be positive"),
    ],
)
def test_bad_partition_options_are_clear_errors(export, tmp_path, capsys, flags, message) -> None:
    run_dir = str(unisrec_factory.run_dir_of(export))
    out = str(tmp_path / "unisrec")
    assert main(["--run", run_dir, "--output", out, *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "unisrec").exists()


def test_default_k_is_in_signature_def(export) -> None:
    from export.serve import read_meta_graph

    signature = read_meta_graph(export.path).signature_def[SERVING_DEFAULT]
    assert tf.make_ndarray(signature.defaults["k"]) == DEFAULT_K
    assert not tf.make_ndarray(signature.defaults["exclude_history"])
    assert set(signature.outputs) == {"item_ids", "scores", "item_texts", "unknown_items"}


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.slow
def test_next_export_removes_staging_folders_of_killed_exports(export, tmp_path) -> None:
    base = tmp_path / "models" / "unisrec"
    stale = base / f".3.staging-{_dead_pid()}-x"
    (stale / "variables").mkdir(parents=True)
    (stale / "saved_model.pb").write_bytes(b"half written")
    result = export_saved_model(unisrec_factory.run_dir_of(export), base, max_k=12)
    assert result.version == 1
    assert sorted(os.listdir(base)) == ["1"]
    assert (base / "1" / "saved_model.pb").is_file()


@pytest.mark.slow
def test_failed_export_leaves_no_version(export, tmp_path, monkeypatch) -> None:
    import export.saved_model as saved_model

    def fail(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(saved_model, "write_warmup_file", fail)
    base = tmp_path / "unisrec"
    with pytest.raises(OSError, match="disk full"):
        export_saved_model(unisrec_factory.run_dir_of(export), base, max_k=12)
    assert os.listdir(base) == []


def test_id_only_model_exports_the_signatures_without_text(tmp_path) -> None:
    result = unisrec_factory.exported(tmp_path, "sasrec")
    expected = sorted(s.name for s in signatures_for(uses_text=False))
    assert list(result.signatures) == expected == ["encode_sequence", "serving_default"]
    assert sorted(tf.saved_model.load(result.path).signatures) == expected


def test_partitioned_index_answers_with_true_items_and_scores(export, trained, tmp_path, capsys):
    _, info, model = trained
    run_dir = unisrec_factory.run_dir_of(export)
    ids = [str(i) for i in info.item_ids]
    history = [[ids[1], ids[2], ids[3], ""], ids[4:8], ["gone", "", "", ""]]
    everywhere = export_saved_model(
        run_dir, tmp_path / "all" / "unisrec", max_k=12, index="partitioned",
        num_partitions=6, partitions_to_search=6,
    )  # fmt: skip
    assert everywhere.index == "partitioned: 6 partitions, 6 searched per query"
    assert main([
        "--run", str(run_dir), "--output", str(tmp_path / "one" / "unisrec"),
        "--max-k", "12", "--index", "partitioned", "--partitions", "6",
        "--partitions-to-search", "1",
    ]) == 0  # fmt: skip
    assert "index: partitioned: 6 partitions, 1 searched per query" in capsys.readouterr().out
    for exclude in (False, True):
        expected_ids, expected_scores = unisrec_factory.expected_top_k(
            model, info, history, 7, exclude
        )
        for base, searched in ((everywhere.path, 6), (tmp_path / "one" / "unisrec" / "1", 1)):
            loaded = tf.saved_model.load(str(base))
            out = loaded.signatures[SERVING_DEFAULT](
                history=tf.constant(history), k=tf.constant(7), exclude_history=tf.constant(exclude)
            )
            got_ids = out["item_ids"].numpy().astype(str)
            got_scores = out["scores"].numpy()
            assert got_ids[2].tolist() == [""] * 7  # no known item: an empty row, as exact
            if searched == 6:  # every partition searched: the exact answer
                np.testing.assert_array_equal(got_ids, expected_ids.astype(str))
                np.testing.assert_allclose(got_scores, expected_scores, atol=1e-5)
                continue
            for row in range(2):  # one partition searched, filled up to k: true items and scores
                known = [ids.index(i) for i in history[row] if i]
                scores = model.scores(tf.constant([known]), tf.constant([len(known)]))[0].numpy()
                assert len(set(got_ids[row])) == 7 and "" not in got_ids[row]
                np.testing.assert_allclose(
                    got_scores[row], scores[[ids.index(i) for i in got_ids[row]]], atol=1e-5
                )
                assert np.all(np.diff(got_scores[row]) <= 0)
                if exclude:
                    assert not set(got_ids[row]) & set(history[row])

    # The partitioned version served over gRPC by export.serve answers as the SavedModel does.
    server = ModelServer(
        read_model_config_file(str(tmp_path / "one" / MODELS_CONFIG)), port=0, poll_wait_seconds=0
    ).start()
    try:
        with ServingClient(server.address, "unisrec", timeout=60.0) as client:
            client.wait_until_ready(timeout=60.0)
            served = client.predict({"history": np.array(history, dtype=object), "k": np.int32(7)})
    finally:
        server.stop(grace=1.0)
    direct = tf.saved_model.load(str(tmp_path / "one" / "unisrec" / "1")).signatures[
        SERVING_DEFAULT
    ](history=tf.constant(history), k=tf.constant(7), exclude_history=tf.constant(False))
    np.testing.assert_array_equal(served.outputs["item_ids"], direct["item_ids"].numpy())
    np.testing.assert_allclose(served.outputs["scores"], direct["scores"].numpy(), rtol=1e-6)
