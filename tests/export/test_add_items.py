"""`export.saved_model --add-items`: new items in a served model from their text alone."""

from __future__ import annotations

import os
import pathlib
import threading
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401  (the SavedModel tokenizes in-graph)
import unisrec_factory

from data_pipeline.errors import DataError
from export.client import ServingClient, ServingClientError, string_matrix
from export.contract import HISTORY
from export.saved_model import export_saved_model
from export.server_process import ModelServerProcess


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> pathlib.Path:
    export = unisrec_factory.exported(tmp_path_factory.getbasetemp() / "add_items", "inductive")
    return unisrec_factory.run_dir_of(export, "inductive")


@pytest.fixture(scope="module")
def dataset(run):
    from tf_unisrec.run_dir import RunDir

    return RunDir(run).load_model()[1]


def item_table(folder: pathlib.Path, rows: list[tuple[str, str]], name="new.tsv") -> pathlib.Path:
    path = folder / name
    path.write_text("item_id\ttext\n" + "".join(f"{i}\t{t}\n" for i, t in rows))
    return path


@pytest.mark.slow
def test_twin_text_gets_the_same_vector_and_score(run, dataset, tmp_path):
    twin_of = str(dataset.item_ids[3])
    new = item_table(
        tmp_path,
        [("NEW-TWIN", str(dataset.texts[3])), ("NEW-OTHER", "Cryogenic storage vials, 2 ml")],
    )
    base = tmp_path / "models" / "unisrec"
    result = export_saved_model(run, base, max_k=40, add_items=new)
    model = tf.saved_model.load(result.path)
    history = tf.constant([[str(dataset.item_ids[1]), str(dataset.item_ids[5])]])
    out = model.signatures["serving_default"](
        history=history, k=tf.constant(20), exclude_history=tf.constant(False)
    )
    ids = [i.decode() for i in out["item_ids"].numpy()[0]]
    scores = dict(zip(ids, out["scores"].numpy()[0], strict=True))
    assert len(ids) == dataset.num_items + 2 and {"NEW-TWIN", "NEW-OTHER"} <= set(ids)
    assert scores["NEW-TWIN"] == pytest.approx(scores[twin_of], abs=1e-5)
    inputs = model.item_inputs.numpy()
    np.testing.assert_allclose(inputs[-2], inputs[3], atol=1e-5)
    texts = [t.decode() for t in out["item_texts"].numpy()[0]]
    assert texts[ids.index("NEW-OTHER")] == "Cryogenic storage vials, 2 ml"


@pytest.mark.slow
@pytest.mark.parametrize(
    "rows, problem",
    [
        ([("A", "one"), ("A", "two")], "duplicate item ID"),
        ([("A", "one"), ("B", "")], "no text"),
        ([("P000", "clashes with a catalogue item")], "already in the catalogue"),
    ],
)
def test_bad_tables_are_clear_errors_and_leave_versions_alone(run, tmp_path, rows, problem):
    base = tmp_path / "unisrec"
    export_saved_model(run, base, max_k=12)
    before = sorted(os.listdir(base))
    with pytest.raises(DataError, match=problem):
        export_saved_model(run, base, max_k=12, add_items=item_table(tmp_path, rows))
    assert sorted(os.listdir(base)) == before == ["1"]


def test_version_folder_appears_whole(run, tmp_path, monkeypatch):
    import export.saved_model as saved_model

    final = tmp_path / "unisrec" / "1"
    save = saved_model.tf.saved_model.save
    seen = []

    def save_and_look(module, folder, **kwargs):
        save(module, folder, **kwargs)
        seen.append((final.exists(), pathlib.Path(folder).name.startswith(".1.staging-")))

    monkeypatch.setattr(saved_model.tf.saved_model, "save", save_and_look)
    new = item_table(tmp_path, [("NEW", "Beaker tongs, stainless")])
    export_saved_model(run, tmp_path / "unisrec", max_k=12, add_items=new)
    assert seen == [(False, True)] and (final / "saved_model.pb").is_file()


@pytest.mark.slow
def test_served_model_takes_new_items_under_load_without_a_failed_request(run, dataset, tmp_path):
    base = tmp_path / "models" / "unisrec"
    export_saved_model(run, base, max_k=40)
    server = ModelServerProcess.create(
        "export.serve", str(base), "unisrec", str(tmp_path / "server.log"), poll_wait_seconds=0.5
    )
    server.start()
    inputs = {HISTORY.alias: string_matrix([[str(dataset.item_ids[1]), str(dataset.item_ids[2])]])}
    errors, versions, stop = [], [], threading.Event()

    def steady_load():
        with ServingClient(server.address, "unisrec", timeout=10.0) as client:
            while not stop.is_set() and len(versions) < 5000:
                try:
                    versions.append(client.predict(inputs).model_version)
                except ServingClientError as error:
                    errors.append(error)
                time.sleep(0.01)

    load = threading.Thread(target=steady_load)
    load.start()
    try:
        time.sleep(1.0)
        new = item_table(tmp_path, [("NEW-ARRIVAL", "Cryogenic storage vials, 2 ml")])
        export_saved_model(run, base, max_k=40, add_items=new)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and 2 not in versions:
            time.sleep(0.2)
        time.sleep(0.5)
        stop.set()
        load.join(timeout=30)
        with ServingClient(server.address, "unisrec") as client:
            everything = client.recommend([["P000"]], k=dataset.num_items + 1)
    finally:
        stop.set()
        server.stop()
    assert not errors, errors[:3]
    assert versions[0] == 1 and versions[-1] == 2, server.log()[-2000:]
    assert versions == sorted(versions)  # no answer from the old version after the new one
    assert "NEW-ARRIVAL" in set(everything.item_ids[0])
