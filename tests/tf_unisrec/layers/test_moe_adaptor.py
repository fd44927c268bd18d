import numpy as np
import numpy_reference as ref
import tensorflow as tf
from round_trips import assert_config_round_trip, assert_saved_model_round_trip

from tf_unisrec.layers import MoEAdaptor


def _randomize(adaptor, rng):
    for weight in adaptor.weights:
        weight.assign(rng.normal(scale=0.3, size=weight.shape))


def test_matches_formula_with_random_weights():
    rng = np.random.default_rng(0)
    adaptor = MoEAdaptor(output_dim=6, num_experts=3)
    x = rng.normal(size=(2, 5, 8)).astype("float32")
    adaptor(x)
    _randomize(adaptor, rng)
    expected = ref.moe(
        x,
        [e.bias.numpy() for e in adaptor.experts],
        [e.kernel.numpy() for e in adaptor.experts],
        adaptor.gate_kernel.numpy(),
    )
    np.testing.assert_allclose(adaptor(x, training=False), expected, rtol=1e-4, atol=1e-5)


def test_gate_and_noise_start_at_zero_so_experts_are_averaged():
    adaptor = MoEAdaptor(output_dim=4, num_experts=4)
    x = tf.random.normal([3, 8])
    adaptor(x)
    assert not np.any(adaptor.gate_kernel.numpy()) and not np.any(adaptor.noise_kernel.numpy())
    mean_of_experts = np.mean([e(x).numpy() for e in adaptor.experts], axis=0)
    np.testing.assert_allclose(adaptor(x), mean_of_experts, rtol=1e-5, atol=1e-6)


def test_noise_only_in_training():
    adaptor = MoEAdaptor(output_dim=4, num_experts=4, dropout=0.0)
    x = tf.random.normal([16, 8])
    adaptor(x)
    np.testing.assert_allclose(adaptor.gates(x), adaptor.gates(x))
    noisy = adaptor.gates(x, training=True).numpy()
    np.testing.assert_allclose(noisy.sum(-1), 1.0, rtol=1e-5)
    assert noisy.std() > 0.01


def test_ablations():
    single = MoEAdaptor(output_dim=4, num_experts=1, gating=False)
    x = tf.random.normal([2, 8])
    np.testing.assert_allclose(single(x), single.experts[0](x), rtol=1e-6)
    linear = MoEAdaptor(output_dim=4, num_experts=1, gating=False, whitening=False)
    np.testing.assert_allclose(linear(x), x.numpy() @ linear.experts[0].kernel.numpy(), rtol=1e-5)
    assert [w.name.split("/")[-1] for w in linear.trainable_weights] == ["kernel:0"]


def test_config_round_trip():
    adaptor = MoEAdaptor(output_dim=5, num_experts=2, dropout=0.1, gating=False, seed=3)
    assert_config_round_trip(adaptor)


def test_saved_model_round_trip(tmp_path):
    adaptor = MoEAdaptor(output_dim=3, num_experts=2)
    x = tf.random.normal([2, 6])
    adaptor(x)
    _randomize(adaptor, np.random.default_rng(1))
    assert_saved_model_round_trip(adaptor, [x], tmp_path)
