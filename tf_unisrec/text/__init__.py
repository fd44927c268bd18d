"""Text side of UniSRec: in-graph BERT tokenization and the frozen BERT text encoder."""

from tf_unisrec.text.encoder import (
    DEFAULT_ENCODER_NAME,
    POOLINGS,
    TextEncoder,
    check_bert_folder,
    default_encoder_path,
)
from tf_unisrec.text.tokenizer import BertTextTokenizer

__all__ = [
    "DEFAULT_ENCODER_NAME",
    "POOLINGS",
    "BertTextTokenizer",
    "TextEncoder",
    "check_bert_folder",
    "default_encoder_path",
]
