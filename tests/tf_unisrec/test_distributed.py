"""A 2-replica MirroredStrategy training step equals one device on the same global batch."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

# Runs the trainer's own step (`make_train_step`) once on one device and once on two logical
# CPUs, from the same weights with plain SGD (lr 1), so the weight change is the gradient.
# Dropout and gate noise are off: they draw different random numbers on each replica.
SCRIPT = r"""
import json, sys
import tf_unisrec
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from model_factory import tiny_batch, tiny_model
from tf_unisrec.train import make_train_step

tf.keras.utils.set_random_seed(0)  # the same weights in every run of the test
stage, negatives = sys.argv[1], sys.argv[2]
batch = {**tiny_batch(), "seed": tf.constant([[5, 6]] * 8, tf.int64)}
dataset = tf.data.Dataset.from_tensor_slices(batch).batch(8)

def one_step(strategy, weights=None):
    with strategy.scope():
        model = tiny_model(stage, dropout=0.0, attention_dropout=0.0, adaptor_dropout=0.0,
                           gating=False, negatives=negatives, num_negatives=4)
        if negatives != "full":
            model.set_sampling([0] + list(range(1, 13)))
        optimizer = tf.keras.optimizers.SGD(learning_rate=1.0)
    if weights is not None:
        model.set_weights(weights)
    before = model.get_weights()
    distributed = strategy.experimental_distribute_dataset(dataset)
    step = make_train_step(model, optimizer, strategy, distributed.element_spec)
    inputs = next(iter(distributed))
    loss = float(step(inputs))
    sizes = [int(tf.shape(t)[0]) for t in strategy.experimental_local_results(inputs["target"])]
    changes = [(b - a).tolist() for a, b in zip(model.get_weights(), before)]
    return before, {"loss": loss, "changes": changes, "sizes": sizes}

weights, single = one_step(tf.distribute.get_strategy())
_, mirrored = one_step(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), weights)
print(json.dumps({"single": single, "mirrored": mirrored}))
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "stage, negatives",
    [("pretrain", "full"), ("transductive", "full"), ("inductive", "sampled")],
)
def test_two_replicas_equal_one_device(stage, negatives):
    tests_dir = pathlib.Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests_dir), str(tests_dir.parent)])}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, stage, negatives],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["mirrored"]["sizes"] == [4, 4] and out["single"]["sizes"] == [8]
    np.testing.assert_allclose(out["mirrored"]["loss"], out["single"]["loss"], rtol=1e-5)
    assert len(out["mirrored"]["changes"]) == len(out["single"]["changes"])
    moved = 0
    for multi, one in zip(out["mirrored"]["changes"], out["single"]["changes"], strict=True):
        np.testing.assert_allclose(np.array(multi), np.array(one), rtol=1e-4, atol=1e-6)
        moved += bool(np.abs(np.array(one)).max() > 0)
    assert moved > 5  # the step did train
