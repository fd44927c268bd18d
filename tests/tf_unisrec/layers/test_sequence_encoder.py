import numpy as np
import numpy_reference as ref
import tensorflow as tf
from round_trips import assert_config_round_trip, assert_saved_model_round_trip

from tf_unisrec.layers import SequenceEncoder


def reference_encoder(encoder, x, length):
    t = x.shape[1]
    h = x + encoder.position_embedding.embeddings.numpy()[:t]
    h = ref.layer_norm(h, encoder.input_norm.gamma.numpy(), encoder.input_norm.beta.numpy(), 1e-12)
    mask = ref.causal_padding_mask(length, t)
    for block in encoder.blocks:
        h = ref.transformer_block(h, mask, ref.block_weights(block), encoder.num_heads, 1e-12)
    return h[np.arange(len(length)), length - 1]


def test_matches_reference():
    rng = np.random.default_rng(0)
    encoder = SequenceEncoder(num_layers=2, num_heads=2, intermediate_dim=16, max_length=6)
    x = rng.normal(size=(4, 6, 8)).astype("float32")
    length = np.array([6, 3, 1, 2])
    encoder(x, length=length)
    for weight in encoder.weights:
        weight.assign(rng.normal(scale=0.3, size=weight.shape))
    np.testing.assert_allclose(
        encoder(x, length=length), reference_encoder(encoder, x, length), rtol=1e-4, atol=1e-4
    )


def test_trimming_padding_is_exact():
    rng = np.random.default_rng(1)
    encoder = SequenceEncoder(intermediate_dim=16, max_length=50)
    length = np.array([3, 1, 4])
    x = rng.normal(size=(3, 4, 8)).astype("float32")
    padded = np.concatenate([x, rng.normal(size=(3, 46, 8)).astype("float32")], axis=1)
    np.testing.assert_allclose(
        encoder(x, length=length), encoder(padded, length=length), rtol=1e-5, atol=1e-5
    )


def test_config_round_trip():
    encoder = SequenceEncoder(num_layers=3, num_heads=4, intermediate_dim=64, max_length=20)
    assert_config_round_trip(encoder)


def test_saved_model_round_trip(tmp_path):
    encoder = SequenceEncoder(intermediate_dim=16, max_length=10)
    assert_saved_model_round_trip(
        encoder,
        [tf.random.normal([2, 5, 8]), tf.constant([5, 2])],
        tmp_path,
        call=lambda v, n: encoder(v, length=n, training=False),
        rtol=1e-5,
        atol=1e-6,
    )
