"""A tiny dataset with real MiniLM text features, tiny trained-run directories and their exports."""

from __future__ import annotations

import functools
import pathlib
import socket

import numpy as np
import tensorflow as tf

from data_pipeline.build import build
from data_pipeline.dataset import DatasetDir
from data_pipeline.encode_text import encode_dataset
from data_pipeline.text.encoder import TextEncoder
from export.saved_model import ExportResult, export_saved_model
from tf_unisrec.builder import build_model
from tf_unisrec.config import TrainConfig
from tf_unisrec.model import UniSRec
from tf_unisrec.run_dir import RunDir

MAX_LENGTH = 5
ITEM_TEXTS = [
    "Nitrile examination gloves, powder free, size medium, box of 100",
    "Borosilicate glass beaker 250 ml with printed graduations",
    "Erlenmeyer flask 500 ml, narrow mouth, heavy wall",
    "Digital caliper 6 inch stainless steel with LCD display",
    "Safety goggles with anti-fog coating and indirect vents",
    "Micro pipette tips 200 ul, sterile, racked, 960 pieces",
    "Magnetic stirrer hot plate with ceramic top",
    "pH test strips 0-14, 100 strips per pack",
    "Lab coat, white, cotton blend, unisex, size large",
    "Graduated cylinder 100 ml, polypropylene",
    "Bunsen burner for natural gas with flame stabilizer",
    "Petri dishes 90 mm, sterile polystyrene, pack of 20",
    "Digital thermometer probe -50 to 300 C",
    "Wash bottle 500 ml, low density polyethylene",
    "Test tube rack for 40 tubes, autoclavable",
    "Disposable face masks, three layer, box of 50",
    "Precision tweezers set, anti-static, six pieces",
    "Analytical balance calibration weight 100 g",
]


def _write_log(folder: pathlib.Path, users: int = 14) -> pathlib.Path:
    """Users see 6-9 items in sequence; every item occurs several times."""
    folder.mkdir(parents=True, exist_ok=True)
    items = len(ITEM_TEXTS)
    lines = ["user_id,item_id,timestamp"]
    for u in range(users):
        for step in range(6 + u % 4):
            lines.append(f"u{u},P{(3 * u + 5 * step) % items:03d},{1000 + 10 * step}")
    (folder / "log.csv").write_text("\n".join(lines) + "\n")
    rows = ["item_id\ttext"] + [f"P{i:03d}\t{text}" for i, text in enumerate(ITEM_TEXTS)]
    (folder / "items.tsv").write_text("\n".join(rows) + "\n")
    return folder


@functools.cache
def text_encoder() -> TextEncoder:
    """The packaged all-MiniLM-L6-v2, mean pooling, 64 tokens."""
    return TextEncoder(pooling="mean", max_length=64)


def write_dataset(root: pathlib.Path) -> pathlib.Path:
    """A built 18-item dataset with MiniLM text features under ``root/data``."""
    data_dir = root / "data"
    build([[_write_log(root / "source")]], data_dir, min_user=0, min_item=0, shards=1)
    encode_dataset(data_dir, encoder=text_encoder(), progress=False)
    return data_dir


def write_run(data_dir: pathlib.Path, run_dir: pathlib.Path, stage: str) -> pathlib.Path:
    """A run directory (config.yaml, best/) of a tiny untrained model for ``stage``."""
    config = TrainConfig(
        data=str(data_dir),
        stage=stage,
        output=str(run_dir),
        hidden_dim=16,
        num_layers=1,
        num_heads=2,
        intermediate_dim=16,
        max_length=MAX_LENGTH,
        num_experts=2,
    )
    run = RunDir(run_dir)
    run.write_config(config)
    run.best_manager(build_model(config, DatasetDir.open(data_dir))).save(checkpoint_number=1)
    return run_dir


def expected_top_k(
    model: UniSRec, info: DatasetDir, history: list[list[str]], k: int, exclude: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of the in-memory model (full ranking, the last max_length known items)."""
    index = {str(item_id): i for i, item_id in enumerate(info.item_ids) if i}
    max_length = model.sequence_encoder.max_length
    ids, scores = [], []
    for row in history:
        known = [index[i] for i in row if i in index][-max_length:]
        if not known:
            ids.append([""] * k)
            scores.append([-np.inf] * k)
            continue
        full = model.scores(tf.constant([known]), tf.constant([len(known)]))[0].numpy()
        if exclude:
            full[[index[i] for i in row if i in index]] = -np.inf
        order = np.argsort(-full, kind="stable")[:k]
        ids.append([str(info.item_ids[i]) for i in order])
        scores.append(full[order])
    return np.array(ids, dtype=object), np.array(scores, dtype=np.float32)


_EXPORTS: dict[tuple[str, str], ExportResult] = {}


def exported(root: pathlib.Path, stage: str = "inductive") -> ExportResult:
    """The dataset, a ``stage`` run and its export under ``root``, made once per session."""
    key = (str(root), stage)
    if key not in _EXPORTS:
        data_dir = root / "data"
        if not data_dir.exists():
            write_dataset(root)
        run_dir = write_run(data_dir, root / f"run-{stage}", stage)
        _EXPORTS[key] = export_saved_model(run_dir, root / f"models-{stage}" / "unisrec", max_k=12)
    return _EXPORTS[key]


def run_dir_of(result: ExportResult, stage: str = "inductive") -> pathlib.Path:
    """The run directory :func:`exported` exported ``result`` from."""
    return pathlib.Path(result.path).parents[2] / f"run-{stage}"


def loopback_ports(n: int) -> list[int]:
    """`n` distinct TCP ports free on 127.0.0.1 (all held open while choosing, so none repeats)."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports
