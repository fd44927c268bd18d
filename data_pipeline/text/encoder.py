"""A frozen BERT text encoder: raw item text -> one vector per item, all in the TensorFlow graph.

The backbone is keras-hub's `BertBackbone` loaded from a local Transformers-format folder
(`config.json`, `model.safetensors`, `vocab.txt`); tokenization is `BertTextTokenizer`. The
feed-forward activation is switched to exact (erf) GELU, as in the Hugging Face BERT, so the vectors
equal the PyTorch reference to about 1e-6.
"""

from __future__ import annotations

import functools
import os
import pathlib

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import tensorflow as tf  # noqa: E402

from data_pipeline.fileio import sha256_file  # noqa: E402
from data_pipeline.text.bert_folder import (  # noqa: E402
    DEFAULT_ENCODER_NAME,
    POOLINGS,
    check_bert_folder,
    default_encoder_path,
)
from data_pipeline.text.tokenizer import BertTextTokenizer  # noqa: E402


class TextEncoder(tf.Module):
    """Batch of raw strings -> float32 text vectors with a frozen BERT.

    `__call__` is a `tf.function` with a fixed signature (`tf.string [None]`), so the encoder can be
    saved with `tf.saved_model.save` and reloaded where only `tensorflow` and `tensorflow_text` are
    imported.

    Args:
      path: a Transformers-format BERT folder; `None` for the packaged all-MiniLM-L6-v2.
      pooling: `"cls"` (the last hidden state at `[CLS]`, as in UniSRec) or `"mean"` (the average of
        the last hidden states over the real tokens, `[CLS]` and `[SEP]` included).
      max_length: the most tokens per text, `[CLS]` and `[SEP]` included.

    Attributes:
      name: the encoder's name (`DEFAULT_ENCODER_NAME` or the folder's name).
      path: the folder the weights came from.
      pooling: as given.
      max_length: as given.
      dim: the size of the vectors.
      tokenizer: the in-graph `BertTextTokenizer`.
      backbone: the keras-hub `BertBackbone`.
    """

    def __init__(
        self,
        path: str | pathlib.Path | None = None,
        *,
        pooling: str = "cls",
        max_length: int = 512,
    ) -> None:
        super().__init__(name="text_encoder")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        default = path is None
        self.path = check_bert_folder(default_encoder_path() if default else path)
        self._encoder_name = DEFAULT_ENCODER_NAME if default else self.path.name
        self.pooling = pooling
        self.max_length = max_length
        self.tokenizer = BertTextTokenizer.from_folder(self.path, max_length=max_length)
        self.backbone = keras_hub.models.BertBackbone.from_preset(str(self.path))
        if max_length > self.backbone.max_sequence_length:
            raise ValueError(
                f"max_length {max_length} exceeds the encoder's "
                f"{self.backbone.max_sequence_length} positions"
            )
        exact_gelu = functools.partial(keras.activations.gelu, approximate=False)
        for layer in self.backbone.transformer_layers:
            layer._feedforward_intermediate_dense.activation = exact_gelu
        self.backbone.trainable = False
        self.dim = int(self.backbone.hidden_dim)

    @property
    def name(self) -> str:
        """The encoder's name, recorded in the text features' metadata."""
        return self._encoder_name

    def weights_sha256(self) -> str:
        """SHA-256 of the folder's `model.safetensors`.

        Returns:
          The hex digest.
        """
        return sha256_file(self.path / "model.safetensors")

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None], tf.int32, name="token_ids"),
            tf.TensorSpec([None, None], tf.int32, name="padding_mask"),
        ]
    )
    def encode_tokens(self, token_ids: tf.Tensor, padding_mask: tf.Tensor) -> tf.Tensor:
        """Encodes already tokenized, right-padded texts.

        Args:
          token_ids: int32 [batch, length], starting with `[CLS]`.
          padding_mask: int32 [batch, length], 1 on real tokens.

        Returns:
          float32 [batch, dim].
        """
        hidden = self.backbone(
            {
                "token_ids": token_ids,
                "segment_ids": tf.zeros_like(token_ids),
                "padding_mask": padding_mask,
            },
            training=False,
        )["sequence_output"]
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = tf.cast(padding_mask, hidden.dtype)[:, :, None]
        return tf.reduce_sum(hidden * mask, axis=1) / tf.reduce_sum(mask, axis=1)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="texts")])
    def __call__(self, texts: tf.Tensor) -> tf.Tensor:
        """Encodes raw strings.

        Args:
          texts: tf.string [batch].

        Returns:
          float32 [batch, dim].
        """
        tokens = self.tokenizer(texts)
        return self.encode_tokens(tokens["token_ids"], tokens["padding_mask"])
