import numpy as np
import numpy_reference as ref
import tensorflow as tf
from round_trips import assert_config_round_trip, assert_saved_model_round_trip

from tf_unisrec.layers import ParametricWhitening


def test_matches_formula():
    layer = ParametricWhitening(output_dim=5, dropout=0.2)
    x = np.random.default_rng(0).normal(size=(3, 4, 8)).astype("float32")
    layer(x)
    layer.bias.assign(np.random.default_rng(1).normal(size=8))
    expected = ref.whitening(x, layer.bias.numpy(), layer.kernel.numpy())
    np.testing.assert_allclose(layer(x, training=False), expected, rtol=1e-5, atol=1e-6)


def test_gradients_match_formula():
    # The layer computes x W - b W; the gradients are those of (x - b) W.
    layer = ParametricWhitening(output_dim=5, dropout=0.0)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 8)).astype("float32")
    upstream = rng.normal(size=(6, 5)).astype("float32")
    layer(x)
    layer.bias.assign(rng.normal(size=8))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x, training=True) * upstream)
    d_kernel, d_bias = tape.gradient(loss, [layer.kernel, layer.bias])
    kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
    np.testing.assert_allclose(d_kernel, (x - bias).T @ upstream, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d_bias, -(upstream @ kernel.T).sum(0), rtol=1e-5, atol=1e-6)


def test_dropout_only_in_training():
    layer = ParametricWhitening(output_dim=4, dropout=0.5)
    x = tf.ones([64, 16])
    np.testing.assert_allclose(layer(x), layer(x))
    assert not np.allclose(layer(x, training=True), layer(x, training=False))


def test_without_centering_is_linear():
    layer = ParametricWhitening(output_dim=4, center=False)
    x = tf.random.normal([2, 6])
    outputs = layer(x)
    assert layer.bias is None
    np.testing.assert_allclose(outputs, x.numpy() @ layer.kernel.numpy(), rtol=1e-5)
    assert len(layer.trainable_weights) == 1


def test_config_round_trip():
    layer = ParametricWhitening(output_dim=7, dropout=0.3, center=False)
    assert_config_round_trip(layer)


def test_saved_model_round_trip(tmp_path):
    layer = ParametricWhitening(output_dim=3)
    assert_saved_model_round_trip(layer, [tf.random.normal([2, 6])], tmp_path)
