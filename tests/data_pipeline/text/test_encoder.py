"""TextEncoder: PyTorch-equal vectors, SavedModel round trip, clear errors for bad folders."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from data_pipeline.text.bert_folder import DEFAULT_ENCODER_NAME
from data_pipeline.text.encoder import TextEncoder

REFERENCE = (
    pathlib.Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "minilm_reference.npz"
)


@pytest.fixture(scope="module")
def reference():
    with np.load(REFERENCE) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def cls_encoder() -> TextEncoder:
    return TextEncoder(pooling="cls")


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_matches_pytorch_reference(reference, cls_encoder, pooling):
    encoder = cls_encoder if pooling == "cls" else TextEncoder(pooling="mean")
    assert (encoder.name, encoder.pooling, encoder.max_length, encoder.dim) == (
        DEFAULT_ENCODER_NAME,
        pooling,
        int(reference["max_length"]),
        384,
    )
    texts = tf.constant([str(t) for t in reference["texts"]])
    lengths = encoder.tokenizer.tokenize(texts).row_lengths().numpy()
    np.testing.assert_array_equal(lengths, reference["lengths"])
    vectors = encoder(texts).numpy()
    assert vectors.dtype == np.float32 and vectors.shape == reference[pooling].shape
    np.testing.assert_allclose(vectors, reference[pooling], atol=1e-4, rtol=0)


@pytest.mark.slow
def test_saved_model_reloads_in_fresh_process(cls_encoder, tmp_path):
    texts = ["Café résumé naïve", "東京 microscope 🔬", "", "nitrile gloves " * 300]
    expected = cls_encoder(tf.constant(texts)).numpy()
    export = tmp_path / "encoder"
    tf.saved_model.save(cls_encoder, str(export))
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    script = f"""
import json, sys
import numpy as np
import tensorflow as tf
import tensorflow_text  # registers the tokenizer ops
model = tf.saved_model.load({str(export)!r})
texts = json.load(open({str(tmp_path / "texts.json")!r}))
np.save({str(tmp_path / "out.npy")!r}, model(tf.constant(texts)).numpy())
leaked = [m for m in ("tf_unisrec", "keras_hub", "transformers") if m in sys.modules]
assert not leaked, leaked
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-6, rtol=0)


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        TextEncoder(tmp_path / "nope")


def test_folder_without_weights(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(FileNotFoundError, match="model.safetensors, vocab.txt"):
        TextEncoder(tmp_path)


def test_not_a_bert_folder(tmp_path):
    for name in ("model.safetensors", "vocab.txt"):
        (tmp_path / name).write_text("")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match="not a BERT checkpoint"):
        TextEncoder(tmp_path)


def test_bad_pooling_and_length():
    with pytest.raises(ValueError, match="pooling"):
        TextEncoder(pooling="max")
    with pytest.raises(ValueError, match="exceeds"):
        TextEncoder(max_length=1024)
