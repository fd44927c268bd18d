"""The frozen text encoder: in-graph BERT tokenization and a keras-hub BERT.

A leaf of the project: `data_pipeline` (item text features) and `export` (text signatures)
both use it, and it imports neither. Import from the modules: `bert_folder` (no TensorFlow),
`tokenizer`, `encoder`.
"""
