"""UniSRec's Keras layers, one per file."""

from tf_unisrec.layers.item_tower import ItemTower
from tf_unisrec.layers.moe_adaptor import MoEAdaptor
from tf_unisrec.layers.parametric_whitening import ParametricWhitening
from tf_unisrec.layers.partitioned_index import PartitionedIndex
from tf_unisrec.layers.sequence_encoder import SequenceEncoder
from tf_unisrec.layers.streaming_brute_force import StreamingBruteForce
from tf_unisrec.layers.transformer_block import TransformerBlock

__all__ = [
    "ItemTower",
    "MoEAdaptor",
    "ParametricWhitening",
    "PartitionedIndex",
    "SequenceEncoder",
    "StreamingBruteForce",
    "TransformerBlock",
]
