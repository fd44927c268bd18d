import numpy as np
import numpy_reference as ref
import tensorflow as tf
from round_trips import assert_config_round_trip

from tf_unisrec.layers import TransformerBlock


def test_matches_post_ln_reference_under_causal_padding_mask():
    rng = np.random.default_rng(0)
    block = TransformerBlock(num_heads=2, intermediate_dim=12, layer_norm_epsilon=1e-12)
    x = rng.normal(size=(3, 5, 8)).astype("float32")
    length = np.array([5, 2, 1])
    mask = ref.causal_padding_mask(length, 5)
    block(x, attention_mask=mask)
    for weight in block.weights:
        weight.assign(rng.normal(scale=0.3, size=weight.shape))
    expected = ref.transformer_block(x, mask, ref.block_weights(block), num_heads=2, eps=1e-12)
    actual = block(x, attention_mask=mask, training=False)
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)


def test_gelu_is_exact():
    block = TransformerBlock(num_heads=1, intermediate_dim=4)
    block(tf.zeros([1, 1, 4]))
    x = tf.constant([-3.0, -1.0, 0.5, 2.0])
    np.testing.assert_allclose(block._inner_dense.activation(x), ref.gelu(x.numpy()), rtol=1e-6)


def test_kernels_are_initialised_independently():
    block = TransformerBlock(num_heads=2, intermediate_dim=8)
    block(tf.zeros([1, 2, 8]))
    kernels = [w.numpy().ravel()[:8] for w in block.weights if "kernel" in w.name]
    assert len({k.tobytes() for k in kernels}) == len(kernels)


def test_rejects_indivisible_heads():
    block = TransformerBlock(num_heads=3)
    try:
        block(tf.zeros([1, 2, 8]))
    except ValueError as error:
        assert "num_heads=3" in str(error)
    else:
        raise AssertionError("expected a ValueError")


def test_config_round_trip():
    block = TransformerBlock(num_heads=4, intermediate_dim=32, dropout=0.1, attention_dropout=0.2)
    assert_config_round_trip(block)
