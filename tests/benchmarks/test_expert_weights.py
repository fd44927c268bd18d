"""benchmarks/expert_weights.py reads the experts of a real model's checkpoint and measures them."""

import pathlib
import sys

import numpy as np
import pytest
import tensorflow as tf

BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import expert_weights  # noqa: E402
from model_factory import tiny_batch, tiny_model  # noqa: E402

from tf_unisrec.run_dir import RunError  # noqa: E402


def test_expert_kernels_and_their_movement_between_two_checkpoints(tmp_path):
    model = tiny_model("inductive")
    model(tiny_batch(), training=False)
    experts = model.item_tower.adaptor.experts
    start = tf.train.Checkpoint(model=model).write(str(tmp_path / "start" / "ckpt"))
    before = [e.kernel.numpy() for e in experts]
    experts[1].kernel.assign_add(tf.fill(experts[1].kernel.shape, 0.5))
    end = tf.train.Checkpoint(model=model).write(str(tmp_path / "end" / "ckpt"))

    read = expert_weights.expert_kernels(start)
    assert len(read) == len(experts) == 2
    for got, want in zip(read, before, strict=True):
        np.testing.assert_array_equal(got, want)

    moved = expert_weights.movement(read, expert_weights.expert_kernels(end))
    rms = [np.sqrt(np.mean(w**2)) for w in before]
    assert moved["start_rms"] == pytest.approx(np.mean(rms), rel=1e-6)
    # One expert of two moved by 0.5 in every entry, the other not at all.
    assert moved["change_rms"] == pytest.approx(0.25, rel=1e-6)
    relative = 0.5 * np.sqrt(before[1].size) / np.linalg.norm(before[1]) / 2
    assert moved["relative_change"] == pytest.approx(relative, rel=1e-5)


def test_a_checkpoint_without_experts_is_a_clear_error(tmp_path):
    prefix = tf.train.Checkpoint(step=tf.Variable(1)).write(str(tmp_path / "ckpt"))
    with pytest.raises(RunError, match="holds no parametric-whitening experts"):
        expert_weights.expert_kernels(prefix)
    with pytest.raises(ValueError, match="differ in number or shape"):
        expert_weights.movement([np.zeros((2, 3))], [np.zeros((3, 2))])
