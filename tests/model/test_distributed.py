"""A 2-replica MirroredStrategy step equals one device on the same global batch."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = r"""
import json, sys
import tf_unisrec
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from model_factory import tiny_batch, tiny_model

stage = sys.argv[1]
reference = tiny_model(stage)
batch = tiny_batch()

with tf.GradientTape() as tape:
    loss = reference.compute_loss(batch)
grads = tape.gradient(loss, reference.trainable_variables)
dense = lambda g, v: tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
variables = reference.trainable_variables
single = {"loss": float(loss),
          "grads": [dense(g, v).numpy().tolist() for g, v in zip(grads, variables)]}

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    model = tiny_model(stage)
model.set_weights(reference.get_weights())
dataset = tf.data.Dataset.from_tensor_slices(batch).batch(8)
distributed = next(iter(strategy.experimental_distribute_dataset(dataset)))

@tf.function
def step(inputs):
    def replica_fn(inputs):
        with tf.GradientTape() as tape:
            loss = model.compute_loss(inputs)
        grads = tape.gradient(loss, model.trainable_variables)
        return loss, [dense(g, v) for g, v in zip(grads, model.trainable_variables)]
    loss, grads = strategy.run(replica_fn, args=(inputs,))
    reduce = lambda t: strategy.reduce(tf.distribute.ReduceOp.SUM, t, axis=None)
    return reduce(loss), [reduce(g) for g in grads]

loss, grads = step(distributed)
sizes = [int(tf.shape(t)[0]) for t in strategy.experimental_local_results(distributed["target"])]
mirrored = {"loss": float(loss), "grads": [g.numpy().tolist() for g in grads], "sizes": sizes}
print(json.dumps({"single": single, "mirrored": mirrored}))
"""


@pytest.mark.parametrize("stage", ["pretrain", "transductive"])
def test_two_replicas_equal_one_device(stage):
    tests_dir = pathlib.Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests_dir), str(tests_dir.parent)])}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, stage], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["mirrored"]["sizes"] == [4, 4]
    np.testing.assert_allclose(out["mirrored"]["loss"], out["single"]["loss"], rtol=1e-5)
    assert len(out["mirrored"]["grads"]) == len(out["single"]["grads"])
    for multi, one in zip(out["mirrored"]["grads"], out["single"]["grads"], strict=True):
        np.testing.assert_allclose(np.array(multi), np.array(one), rtol=1e-4, atol=1e-6)
