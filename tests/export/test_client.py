"""export.client against a model server process: ``python -m export.serve`` and, when it is on
PATH, the real ``tensorflow_model_server`` (same flags, same toy SavedModel)."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from data_pipeline.dataset import ITEM_TABLE, write_item_table
from export.client import (
    Recommendations,
    ServingClient,
    ServingClientError,
    format_recommendations,
    item_texts_by_id,
    main,
    string_matrix,
)
from export.contract import (
    DEFAULT_K,
    ENCODE_ITEMS,
    HIDDEN,
    RECOMMEND_FROM_TEXTS,
    SERVING_DEFAULT,
    SIGNATURES,
    Signature,
)
from export.server_process import ModelServerProcess, free_port

from .toy_model import TOY_DIM, TOY_ITEM_IDS, TOY_ITEM_TEXTS

MODEL = "toy"
REAL_BINARY = shutil.which("tensorflow_model_server")
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
TOY_TEXT = dict(zip(TOY_ITEM_IDS, TOY_ITEM_TEXTS, strict=True))


@pytest.fixture(scope="module", params=["export.serve", "tensorflow_model_server"])
def server(
    request: pytest.FixtureRequest,
    toy_base_path: pathlib.Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ModelServerProcess]:
    kind = request.param
    if kind == "tensorflow_model_server":
        if REAL_BINARY is None:
            pytest.skip(
                "tensorflow_model_server is not on PATH (it cannot be installed here; "
                "the tensorflow/serving image provides it)"
            )
        kind = REAL_BINARY
    log = tmp_path_factory.mktemp("server") / "server.log"
    process = ModelServerProcess.create(kind, str(toy_base_path), MODEL, str(log)).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def client(server: ModelServerProcess) -> Iterator[ServingClient]:
    with ServingClient(server.address, MODEL) as c:
        yield c


def test_string_matrix_pads_ragged_histories() -> None:
    matrix = string_matrix([["a", "b", "c"], ["d"]])
    assert matrix.shape == (2, 3)
    assert matrix[1].tolist() == [b"d", b"", b""]
    assert string_matrix(["a", b"\xff"]).tolist() == [[b"a", b"\xff"]]


def test_recommend_one_history(client: ServingClient) -> None:
    recs = client.recommend([TOY_ITEM_IDS[0], TOY_ITEM_IDS[1]], k=3)
    assert recs.item_ids.shape == (1, 3) and recs.scores.shape == (1, 3)
    assert set(recs.item_ids[0]) <= set(TOY_ITEM_IDS)
    assert recs.unknown_items.tolist() == [0]
    assert recs.item_texts[0].tolist() == [TOY_TEXT[i] for i in recs.item_ids[0]]
    assert recs.result.model_name == MODEL and recs.result.model_version == 1


def test_recommend_batch_with_default_k_and_unknown_ids(client: ServingClient) -> None:
    recs = client.recommend([[TOY_ITEM_IDS[0], "nope"], [TOY_ITEM_IDS[5]]])
    assert recs.item_ids.shape == (2, DEFAULT_K)
    assert recs.unknown_items.tolist() == [1, 0]


def test_recommend_from_texts_has_item_texts(client: ServingClient) -> None:
    recs = client.recommend_from_texts([TOY_ITEM_TEXTS[2]], k=4)
    assert recs.item_ids[0, 0] == TOY_ITEM_IDS[2]
    assert recs.item_texts[0, 0] == TOY_ITEM_TEXTS[2]


def test_encode_items_and_sequence(client: ServingClient) -> None:
    items = client.encode_items(list(TOY_ITEM_TEXTS[:2]))
    assert items.shape == (2, TOY_DIM)
    sequence = client.encode_sequence([TOY_ITEM_IDS[0]])
    np.testing.assert_allclose(sequence[0], items[0], rtol=1e-5, atol=1e-6)


def test_metadata_and_status(client: ServingClient) -> None:
    signatures = client.metadata()
    assert set(SIGNATURES) <= set(signatures)
    assert client.status() == [(1, "AVAILABLE")]


def test_errors_carry_the_status_code(server: ModelServerProcess) -> None:
    with ServingClient(server.address, "nope") as other, pytest.raises(ServingClientError) as info:
        other.recommend([TOY_ITEM_IDS[0]])
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    with ServingClient(server.address, MODEL) as client, pytest.raises(ServingClientError) as info:
        client.recommend([TOY_ITEM_IDS[0]], k=10_000)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with (
        ServingClient(server.address, MODEL, version=7) as client,
        pytest.raises(ServingClientError) as info,
    ):
        client.encode_items(["x"])
    assert info.value.code == grpc.StatusCode.NOT_FOUND


def _write_toy_item_table(folder: pathlib.Path) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_item_table(folder / ITEM_TABLE, [(0, i, TOY_TEXT[i]) for i in TOY_ITEM_IDS])
    return folder


def test_item_table_supplies_texts_the_server_did_not_return(tmp_path: pathlib.Path) -> None:
    folder = _write_toy_item_table(tmp_path / "data")
    table = item_texts_by_id(folder / ITEM_TABLE)
    assert table == item_texts_by_id(folder) == TOY_TEXT
    recs = Recommendations(
        item_ids=np.array([[TOY_ITEM_IDS[4], "not-in-table"]], dtype=object),
        scores=np.array([[0.9, 0.5]], dtype=np.float32),
        unknown_items=None,
        item_texts=None,
        result=None,
    )
    lines = format_recommendations(recs, 0, table).splitlines()
    assert lines[0].split() == ["rank", "item_id", "score", "text"]
    assert lines[1].endswith(TOY_ITEM_TEXTS[4])
    assert lines[2].split() == ["2", "not-in-table", "0.5000"]
    assert format_recommendations(recs).splitlines()[0].split() == ["rank", "item_id", "score"]


def test_cli_prints_a_table(
    server: ModelServerProcess, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    args = ["--server", server.address, "--model", MODEL]
    assert main([*args, "--history", TOY_ITEM_IDS[0], "unknown-id", "--k", "3"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == f"model {MODEL} version 1 signature {SERVING_DEFAULT}"
    assert "skipped 1 unknown item ID(s)" in out
    header = next(line for line in lines if line.lstrip().startswith("rank"))
    assert header.split() == ["rank", "item_id", "score", "text"]
    rows = lines[lines.index(header) + 1 :]
    assert len(rows) == 3 and rows[0].split()[0] == "1" and rows[0].split()[1] in TOY_ITEM_IDS
    assert rows[0].endswith(TOY_TEXT[rows[0].split()[1]])

    items = _write_toy_item_table(tmp_path / "data") / ITEM_TABLE
    assert main([*args, "--history", TOY_ITEM_IDS[7], "--k", "1", "--item_table", str(items)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].endswith(TOY_ITEM_TEXTS[7])

    assert main([*args, "--texts", TOY_ITEM_TEXTS[3], "--k", "2"]) == 0
    out = capsys.readouterr().out
    assert f"signature {RECOMMEND_FROM_TEXTS}" in out
    assert TOY_ITEM_TEXTS[3] in out.splitlines()[2]

    assert main([*args, "--texts", "a", "b", "--signature", ENCODE_ITEMS]) == 0
    assert f"item vectors: 2 x {TOY_DIM}" in capsys.readouterr().out

    assert main([*args, "--metadata"]) == 0
    out = capsys.readouterr().out
    assert _metadata_line(SIGNATURES[SERVING_DEFAULT]) in out
    assert _metadata_line(SIGNATURES[ENCODE_ITEMS]) in out


def _metadata_line(signature: Signature) -> str:
    """The line ``--metadata`` prints for a contract signature of the toy model."""

    def tensor(t) -> str:
        dims = ",".join(
            str(TOY_DIM if d == HIDDEN else d if isinstance(d, int) else "?") for d in t.shape
        )
        return f"{t.alias}: {t.dtype}[{dims}]"

    inputs = ", ".join(
        tensor(t) + ("" if t.required else " = default")
        for t in sorted(signature.inputs, key=lambda t: t.alias)
    )
    outputs = ", ".join(tensor(t) for t in sorted(signature.outputs, key=lambda t: t.alias))
    return f"{signature.name}({inputs}) -> ({outputs})"


def test_cli_item_table_errors_exit_with_1(
    server: ModelServerProcess, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    bad = tmp_path / ITEM_TABLE
    bad.write_text("item_id\ttext\nx\ty\n")
    args = ["--server", server.address, "--model", MODEL, "--history", TOY_ITEM_IDS[0]]
    assert main([*args, "--item_table", str(bad)]) == 1
    assert capsys.readouterr().err.startswith("error: ")


def test_cli_reports_server_errors_with_exit_code_1(
    server: ModelServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--server", server.address, "--model", "nope", "--history", "x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: NOT_FOUND")


def test_cli_connection_failure_names_the_address() -> None:
    address = f"127.0.0.1:{free_port()}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "export.client",
            "--server",
            address,
            "--model",
            MODEL,
            "--history",
            "x",
            "--timeout",
            "2",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert f"cannot reach the model server at {address} (UNAVAILABLE)" in result.stderr
    assert "Traceback" not in result.stderr
