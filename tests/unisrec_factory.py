"""A tiny dataset with real MiniLM text features, tiny trained-run directories and their exports."""

from __future__ import annotations

import functools
import hashlib
import json
import pathlib

import numpy as np
import tensorflow as tf

from data_pipeline.build import build
from data_pipeline.dataset import DatasetInfo, load_dataset
from export.saved_model import ExportResult, export_saved_model
from tf_unisrec.config import TrainConfig
from tf_unisrec.model import UniSRec
from tf_unisrec.modeling import build_model
from tf_unisrec.text import TextEncoder

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


def _sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@functools.cache
def text_encoder() -> TextEncoder:
    """The packaged all-MiniLM-L6-v2, mean pooling, 64 tokens."""
    return TextEncoder(pooling="mean", max_length=64)


def write_text_features(data_dir: pathlib.Path) -> None:
    """Encodes every item text with :func:`text_encoder` and records it in the manifest."""
    info = load_dataset(data_dir)
    encoder = text_encoder()
    features = np.zeros([info.num_items + 1, encoder.dim], np.float32)
    features[1:] = encoder(tf.constant([str(t) for t in info.texts[1:]])).numpy()
    for name in ("text_features.npy", "text_features_word_drop.npy"):
        np.save(data_dir / name, features)
    manifest = json.loads((data_dir / "manifest.json").read_text())
    manifest["text_features"] = {
        "encoder": encoder.name,
        "encoder_path": str(encoder.path),
        "pooling": encoder.pooling,
        "max_length": encoder.max_length,
        "dim": encoder.dim,
        "weights_sha256": encoder.weights_sha256(),
        "texts_sha256": "",
        "path": "text_features.npy",
        "word_drop_path": "text_features_word_drop.npy",
        "word_drop_ratio": 0.0,
        "seed": 0,
        "sha256": _sha256(data_dir / "text_features.npy"),
        "word_drop_sha256": _sha256(data_dir / "text_features_word_drop.npy"),
    }
    (data_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))


def write_dataset(root: pathlib.Path) -> pathlib.Path:
    """A built 18-item dataset with MiniLM text features under ``root/data``."""
    data_dir = root / "data"
    build([[_write_log(root / "source")]], data_dir, min_user=0, min_item=0, shards=1)
    write_text_features(data_dir)
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
    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_dir / "config.yaml")
    model = build_model(config, load_dataset(data_dir))
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model), str(run_dir / "best"), max_to_keep=1
    )
    manager.save(checkpoint_number=1)
    return run_dir


def expected_top_k(
    model: UniSRec, info: DatasetInfo, history: list[list[str]], k: int, exclude: bool
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
