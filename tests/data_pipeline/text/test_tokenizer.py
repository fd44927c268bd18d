"""In-graph tokenization equals the `transformers` fast tokenizer of the same folder."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from data_pipeline.text.bert_folder import default_encoder_path  # noqa: E402
from data_pipeline.text.tokenizer import BertTextTokenizer  # noqa: E402

ADVERSARIAL = [
    "",
    "   ",
    "Café résumé naïve Ångström façade crème brûlée",
    "ÀÉÎÕÜ àéîõü Çç Ññ Øø Łł Đđ ẞß Ǆǅǆ ǰ ŉ ﬁﬂ",
    "İstanbul ıi ΣΑΣ σας ΌΛΟΣ Привет ЁЖИК",
    "東京タワー 北京大学 中文字符串 한국어 텍스트 ｶﾀｶﾅ ＦＵＬＬ　ｗｉｄｔｈ",
    "𠀀𠀁 CJK extension B and 㐀 extension A, 丽 compatibility 丽",
    "emoji 😀 🥰🫠 👍🏽 ❤️ 🇩🇪 👨‍👩‍👧 🔬🧪",
    "x² ½ ™ © ® ° µm Ω Å K ℃ № ① Ⅻ ㎏ ∑∫√∞ ≠ ≤ ← → ✓ ★ ♥ € £ ¥ ₹ ₿",
    "$5 <b>bold</b> a|b ^ ~ ` += @user #tag 50% a_b a\\b {x} [y]",
    "«quotes» „de“ 「jp」 ‘single’ “double” — – − … · • ¿¡ ¶ §",
    "tab\there\nnew\rline\x0bvt\x0cff\x85nel\x1ffs",
    "zero\u200bwidth\u200djoiner\ufeffbom\u00adsoft\u2060wj",
    "\x00null\ufffdreplacement\x7fdel\x01soh",
    "nbsp\u00a0x\u2028y\u2029z\u3000w\u2003em\u202fnarrow",
    "private \ue000\uf8ff\U000f0000 use, unassigned \U000e0001\u0378 tag",
    "कुछ हिन्दी पाठ مرحبا بالعالم עברית ไทย ελληνικά",
    "don't can't it's U.S.A. e.g. 3.14 1,000,000 -42 +7 1/2\"",
    "a" * 99 + " " + "b" * 100 + " " + "c" * 101 + " " + "é" * 101 + " " + "é" * 60,
    "naïve Scientific microscope " * 300,
    "[CLS] [SEP] [PAD] [UNK] [MASK] ##ing",
]


@pytest.fixture(scope="module")
def hf_tokenizer():
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(default_encoder_path()))


@pytest.fixture(scope="module")
def tokenizer() -> BertTextTokenizer:
    return BertTextTokenizer.from_folder(default_encoder_path())


def _reference(hf_tokenizer, texts: list[str], max_length: int) -> list[list[int]]:
    return hf_tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]


def _ours(tokenizer: BertTextTokenizer, texts: list[str]) -> list[list[int]]:
    return tokenizer.tokenize(tf.constant(texts, tf.string)).to_list()


def _scientific_texts(shared_data) -> list[str]:
    lines = (shared_data / "Scientific" / "Scientific.text").read_text(encoding="utf-8")
    rows = [line.split("\t", 1) for line in lines.split("\n")[1:] if line]
    return [row[1] if len(row) == 2 else "" for row in rows]


def test_every_scientific_text(tokenizer, hf_tokenizer, shared_data):
    texts = _scientific_texts(shared_data)
    assert len(texts) == 4385
    ours = _ours(tokenizer, texts)
    reference = _reference(hf_tokenizer, texts, 512)
    mismatches = [t for t, a, b in zip(texts, ours, reference, strict=True) if a != b]
    assert not mismatches, mismatches[:3]


@pytest.mark.parametrize("text", ADVERSARIAL, ids=range(len(ADVERSARIAL)))
def test_adversarial(tokenizer, hf_tokenizer, text):
    assert _ours(tokenizer, [text]) == _reference(hf_tokenizer, [text], 512)


def test_unicode_blocks(tokenizer, hf_tokenizer):
    """Every code point of the blocks product text uses, alone and inside a word."""
    blocks = [
        (0x0000, 0x05FF),  # Latin, IPA, combining marks, Greek, Cyrillic, Armenian, Hebrew
        (0x1E00, 0x2BFF),  # Latin extended additional, Greek extended, punctuation, symbols
        (0x3000, 0x9FFF),  # CJK symbols, kana, Hangul jamo, CJK ideographs
        (0xAC00, 0xD7AF),  # Hangul syllables
        (0xF900, 0xFFFD),  # compatibility ideographs, presentation forms, half/full width
        (0x1F000, 0x1FAFF),  # mahjong, playing cards, emoji, pictographs
    ]
    texts = [
        f"a{chr(c)}b {chr(c)}"
        for first, last in blocks
        for c in range(first, last + 1)
        if not 0xD800 <= c <= 0xDFFF
    ]
    ours = _ours(tokenizer, texts)
    reference = _reference(hf_tokenizer, texts, 512)
    mismatches = [t for t, a, b in zip(texts, ours, reference, strict=True) if a != b]
    assert not mismatches, [ascii(t) for t in mismatches[:5]]


@pytest.mark.parametrize("max_length", [2, 3, 16])
def test_truncation(hf_tokenizer, max_length):
    tokenizer = BertTextTokenizer.from_folder(default_encoder_path(), max_length=max_length)
    texts = ["", "short", "a much longer text that surely has more than sixteen word pieces " * 3]
    assert _ours(tokenizer, texts) == _reference(hf_tokenizer, texts, max_length)


def test_pad(tokenizer):
    padded = tokenizer(tf.constant(["hello world", ""]))
    assert padded["token_ids"].numpy().tolist() == [[101, 7592, 2088, 102], [101, 102, 0, 0]]
    assert padded["padding_mask"].numpy().tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]


def test_rejects_vocabulary_without_special_tokens():
    with pytest.raises(ValueError, match="special tokens"):
        BertTextTokenizer(["a", "b", "[UNK]"])
