"""The two round trips every layer must survive: `get_config()` and a SavedModel."""

import inspect
import pathlib

import numpy as np
import tensorflow as tf


def assert_config_round_trip(layer: tf.keras.layers.Layer) -> None:
    """`from_config(get_config())` rebuilds the layer, and the config holds every argument."""
    config = layer.get_config()
    parameters = inspect.signature(type(layer).__init__).parameters
    arguments = {n for n, p in parameters.items() if n != "self" and p.kind != p.VAR_KEYWORD}
    assert arguments <= set(config), f"missing from get_config(): {arguments - set(config)}"
    assert type(layer).from_config(config).get_config() == config


def assert_saved_model_round_trip(
    layer: tf.keras.layers.Layer,
    inputs: list[tf.Tensor],
    folder: pathlib.Path,
    call=None,
    rtol: float = 1e-6,
    atol: float = 0.0,
) -> None:
    """A SavedModel of `call(*inputs)` (default: the layer in inference) reloads and agrees.

    The batch dimension of every input is left open in the saved signature.
    """
    call = call or (lambda *args: layer(*args, training=False))
    expected = call(*inputs)
    module = tf.Module()
    module.layer = layer
    specs = [tf.TensorSpec([None, *t.shape[1:]], t.dtype) for t in inputs]
    module.f = tf.function(call, input_signature=specs)
    tf.saved_model.save(module, str(folder))
    loaded = tf.saved_model.load(str(folder))
    np.testing.assert_allclose(loaded.f(*inputs), expected, rtol=rtol, atol=atol)
