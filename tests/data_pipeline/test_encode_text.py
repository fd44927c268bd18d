"""data_pipeline.encode_text on a tiny dataset folder: matrices, manifest entry, reuse."""

import json

import numpy as np
import pytest
import tensorflow as tf

from data_pipeline import dataset, encode_text
from data_pipeline.errors import DataError
from data_pipeline.fileio import sha256_file
from data_pipeline.text import encoder as encoder_module

TEXTS = [
    "PORTER-CABLE 4 1/2-Inch x 10yd 80 Grit Adhesive-Backed Sanding Roll. Industrial & Scientific",
    "Café microscope slides, 72 pcs",
    "",
    "nitrile gloves " * 300,
]


def _write_dataset(path, texts=TEXTS):
    path.mkdir(parents=True, exist_ok=True)
    table = path / dataset.ITEM_TABLE
    dataset.write_item_table(table, [(0, f"ASIN{i}", t) for i, t in enumerate(texts, start=1)])
    manifest = {
        "format_version": dataset.FORMAT_VERSION,
        "name": "tiny",
        "items": len(texts),
        "users": 2,
        "files": {split: [] for split in dataset.SPLITS},
        "item_table": {"path": table.name, "sha256": sha256_file(table)},
    }
    dataset.write_manifest(path, manifest)
    return path


def test_encode_and_reuse(tmp_path, monkeypatch):
    data = _write_dataset(tmp_path / "data")
    entry = encode_text.encode_dataset(data, pooling="mean", max_length=64, progress=False)

    features = np.load(data / entry["path"])
    word_drop = np.load(data / entry["word_drop_path"])
    assert features.dtype == np.float32 and features.shape == (len(TEXTS) + 1, 384)
    assert word_drop.shape == features.shape
    assert not features[0].any() and not word_drop[0].any()
    assert np.abs(features[1:]).sum(axis=1).min() > 0

    encoder = encoder_module.TextEncoder(pooling="mean", max_length=64)
    direct = encoder(tf.constant(TEXTS)).numpy()
    np.testing.assert_allclose(features[1:], direct, atol=1e-5, rtol=0)

    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["name"] == "tiny" and manifest["users"] == 2
    assert manifest["text_features"] == entry
    assert entry["encoder"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert (entry["pooling"], entry["max_length"], entry["dim"]) == ("mean", 64, 384)
    assert entry["word_drop_ratio"] == 0.15
    for key in ("weights_sha256", "texts_sha256", "sha256", "word_drop_sha256"):
        assert len(entry[key]) == 64
    assert not list(data.glob(".*tmp"))
    for name in (entry["path"], entry["word_drop_path"], "manifest.json"):
        assert (data / name).stat().st_mode & 0o777 == 0o644, name

    def no_encoder(*args, **kwargs):
        raise AssertionError("features should have been reused")

    mtimes = {p.name: p.stat().st_mtime_ns for p in data.iterdir()}
    monkeypatch.setattr(encoder_module, "TextEncoder", no_encoder)
    assert encode_text.encode_dataset(data, pooling="mean", max_length=64) == entry
    assert {p.name: p.stat().st_mtime_ns for p in data.iterdir()} == mtimes

    with pytest.raises(AssertionError, match="reused"):
        encode_text.encode_dataset(data, pooling="cls", max_length=64)


def test_drop_words_is_seeded():
    texts = [" ".join(f"w{i}" for i in range(100)), "one", ""]
    first = encode_text.drop_words(texts, 0.15, seed=7)
    assert first == encode_text.drop_words(texts, 0.15, seed=7)
    assert first != encode_text.drop_words(texts, 0.15, seed=8)
    kept = first[0].split()
    assert 70 <= len(kept) <= 97 and set(kept) < set(texts[0].split())
    assert first[1:] == ["one", ""]


def test_bad_items_table(tmp_path):
    data = _write_dataset(tmp_path / "data")
    (data / "items.tsv").write_text("index\tdomain\titem_id\ttext\n0\t0\t\t\n2\t0\tX\tt\n")
    with pytest.raises(DataError, match="expected row 1"):
        encode_text.encode_dataset(data)


def test_cli_bad_encoder(tmp_path, capsys):
    data = _write_dataset(tmp_path / "data")
    assert encode_text.main(["--data", str(data), "--encoder", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
