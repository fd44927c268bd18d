"""BERT WordPiece tokenization inside the TensorFlow graph.

`BertTextTokenizer` reproduces the Hugging Face fast BERT tokenizer (`tokenizers`' `BertNormalizer`,
`BertPreTokenizer` and `WordPiece`, then `[CLS] ... [SEP]`) with TensorFlow and tensorflow-text ops
only, so that a SavedModel holding it needs nothing but `tensorflow` and `tensorflow_text` to load.

The steps, in the order the Hugging Face tokenizer applies them:

0. Special tokens written literally in the text (`[CLS]`, `[SEP]`, `[PAD]`, `[UNK]`, `[MASK]`,
   case-sensitive) are cut out first and become their own ids.
1. Clean: drop NUL, U+FFFD and control/format/private-use characters (Unicode category C except
   tab, newline and carriage return); map every other white-space character to a space.
2. Strip accents (uncased models): NFD, then drop non-spacing marks (category Mn).
3. Lower-case (uncased models), one character at a time: a capital sigma always becomes `σ`
   (the Hugging Face tokenizer has no final-sigma rule).
4. Split on white space and isolate punctuation (Unicode category P plus every printable ASCII
   symbol) and CJK ideographs, each becoming a word of its own.
5. WordPiece with `##` continuations; a word longer than 100 characters becomes `[UNK]`.
6. Truncate to `max_length - 2` pieces and add `[CLS]` and `[SEP]`.

The Hugging Face `tokenizers` library classifies characters with old (Unicode 8.0) tables,
TensorFlow's ops with newer ones. The two agree on Latin, Greek, Cyrillic, Hebrew, punctuation and
symbols, CJK, kana, Hangul, full-width forms and emoji (the tests sweep these blocks); of the 1.1 M
code points, about 700 differ, characters that later Unicode versions assigned as marks, format
characters, punctuation or new case pairs, mostly in historic and minority scripts (for example
U+061D ARABIC END OF TEXT MARK, Unicode 14).
"""

from __future__ import annotations

import json
import pathlib
import re

import tensorflow as tf
import tensorflow_text as tf_text

# Characters the Hugging Face BertNormalizer deletes: NUL, U+FFFD and category C except \t\n\r.
_CONTROL = r"[\x00\x{FFFD}]|[^\PC\t\n\r]"
# Characters it maps to a space (Unicode White_Space that are not deleted above).
_WHITESPACE = r"[\t\n\r\p{Zs}\x{2028}\x{2029}]"
# BertPreTokenizer punctuation: every printable ASCII symbol plus Unicode category P.
_PUNCTUATION = r"[!-/:-@\[-`{-~\p{P}]"
# The CJK ideograph blocks that BertNormalizer surrounds with spaces.
_CJK = (
    r"[\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2A6DF}\x{2A700}-\x{2B73F}"
    r"\x{2B740}-\x{2B81F}\x{2B920}-\x{2CEAF}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}]"
)
_MAX_CHARS_PER_WORD = 100
_UNK, _CLS, _SEP, _PAD, _MASK = "[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"


def read_vocabulary(path: str | pathlib.Path) -> list[str]:
    """Reads a BERT `vocab.txt` (one token per line, the line number is the id).

    Args:
      path: the vocabulary file.

    Returns:
      The tokens, in id order.
    """
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


class BertTextTokenizer(tf.Module):
    """Raw strings -> BERT token ids, equal to the Hugging Face fast tokenizer's.

    Args:
      vocabulary: the WordPiece tokens in id order (the lines of `vocab.txt`).
      lowercase: lower-case the text (uncased checkpoints).
      strip_accents: decompose (NFD) and drop non-spacing marks. Hugging Face ties this to
        `lowercase` unless the tokenizer config sets `strip_accents`.
      split_cjk: make every CJK ideograph a word of its own.
      max_length: the most token ids per text, `[CLS]` and `[SEP]` included.
      name: the module name.
    """

    def __init__(
        self,
        vocabulary: list[str],
        *,
        lowercase: bool = True,
        strip_accents: bool = True,
        split_cjk: bool = True,
        max_length: int = 512,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        if max_length < 2:
            raise ValueError(f"max_length must leave room for [CLS] and [SEP], got {max_length}")
        index = {token: i for i, token in enumerate(vocabulary)}
        missing = [t for t in (_UNK, _CLS, _SEP, _PAD) if t not in index]
        if missing:
            raise ValueError(f"the vocabulary lacks the BERT special tokens {missing}")
        self.lowercase = lowercase
        self.strip_accents = strip_accents
        self.max_length = max_length
        self.vocabulary_size = len(vocabulary)
        self.cls_id = index[_CLS]
        self.sep_id = index[_SEP]
        self.pad_id = index[_PAD]
        specials = [t for t in (_PAD, _UNK, _CLS, _SEP, _MASK) if t in index]
        self._special_pattern = "|".join(re.escape(t) for t in specials)
        isolated = f"{_PUNCTUATION}|{_CJK}" if split_cjk else _PUNCTUATION
        self._split_pattern = rf"\s|{isolated}"
        self._keep_pattern = isolated
        # Each word is given whole; a 100-character word takes at most 400 UTF-8 bytes.
        self._wordpiece = tf_text.FastWordpieceTokenizer(
            vocab=vocabulary,
            suffix_indicator="##",
            max_bytes_per_word=4 * _MAX_CHARS_PER_WORD,
            token_out_type=tf.int32,
            unknown_token=_UNK,
            no_pretokenization=True,
        )

    @classmethod
    def from_folder(cls, path: str | pathlib.Path, *, max_length: int = 512) -> BertTextTokenizer:
        """Builds the tokenizer of a Transformers-format BERT folder.

        Reads `vocab.txt` and, if present, `tokenizer_config.json` (`do_lower_case`,
        `strip_accents`, `tokenize_chinese_chars`, with the Hugging Face defaults).

        Args:
          path: the folder.
          max_length: the most token ids per text, `[CLS]` and `[SEP]` included.

        Returns:
          The tokenizer.
        """
        path = pathlib.Path(path)
        config_path = path / "tokenizer_config.json"
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        lowercase = bool(config.get("do_lower_case", True))
        strip_accents = config.get("strip_accents")
        return cls(
            read_vocabulary(path / "vocab.txt"),
            lowercase=lowercase,
            strip_accents=lowercase if strip_accents is None else bool(strip_accents),
            split_cjk=bool(config.get("tokenize_chinese_chars", True)),
            max_length=max_length,
        )

    def normalize(self, texts: tf.Tensor) -> tf.Tensor:
        """Applies the Hugging Face BertNormalizer.

        Args:
          texts: tf.string, any shape.

        Returns:
          The normalized strings, same shape.
        """
        texts = tf.strings.regex_replace(texts, _CONTROL, "")
        texts = tf.strings.regex_replace(texts, _WHITESPACE, " ")
        if self.strip_accents:
            texts = tf_text.normalize_utf8(texts, "NFD")
            texts = tf.strings.regex_replace(texts, r"\p{Mn}", "")
        if self.lowercase:
            texts = tf.strings.regex_replace(texts, "\u03a3", "\u03c3")
            texts = tf.strings.lower(texts, encoding="utf-8")
        return texts

    def tokenize(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Tokenizes a batch of raw strings.

        Args:
          texts: tf.string [batch].

        Returns:
          int32 RaggedTensor [batch, None]: `[CLS]`, at most `max_length - 2` WordPiece ids and
          `[SEP]`.
        """
        # regex_split stops at NUL, which the normalizer deletes anyway.
        texts = tf.strings.regex_replace(texts, r"\x00", "")
        segments = tf_text.regex_split(texts, self._special_pattern, self._special_pattern)
        flat = segments.flat_values
        special = tf.strings.regex_full_match(flat, self._special_pattern)
        plain = tf.where(special, "", self.normalize(flat))
        words = tf_text.regex_split(plain, self._split_pattern, self._keep_pattern)
        too_long = tf.strings.length(words.flat_values, unit="UTF8_CHAR") > _MAX_CHARS_PER_WORD
        words = words.with_flat_values(tf.where(too_long, _UNK, words.flat_values))
        # A segment is either one special token (kept whole) or plain text (split into words).
        special_words = tf.ragged.boolean_mask(flat[:, None], special[:, None])
        words = tf.concat([words, special_words], axis=1)
        words = segments.with_flat_values(words).merge_dims(1, 2)
        pieces = self._wordpiece.tokenize(words).merge_dims(1, 2)
        pieces = pieces[:, : self.max_length - 2]
        batch = tf.shape(texts, out_type=tf.int64)[:1]
        cls = tf.RaggedTensor.from_tensor(tf.fill(tf.concat([batch, [1]], 0), self.cls_id))
        sep = tf.RaggedTensor.from_tensor(tf.fill(tf.concat([batch, [1]], 0), self.sep_id))
        return tf.concat([cls, pieces, sep], axis=1)

    def pad(self, token_ids: tf.RaggedTensor) -> dict[str, tf.Tensor]:
        """Right-pads tokenized texts to the longest in the batch.

        Args:
          token_ids: int32 RaggedTensor [batch, None] from `tokenize`.

        Returns:
          `token_ids` int32 [batch, length] padded with `[PAD]`, and `padding_mask` int32
          [batch, length], 1 on real tokens.
        """
        dense = token_ids.to_tensor(default_value=self.pad_id)
        mask = tf.sequence_mask(token_ids.row_lengths(), tf.shape(dense)[1], dtype=tf.int32)
        return {"token_ids": dense, "padding_mask": mask}

    def __call__(self, texts: tf.Tensor) -> dict[str, tf.Tensor]:
        """Tokenizes and pads a batch of raw strings.

        Args:
          texts: tf.string [batch].

        Returns:
          `token_ids` and `padding_mask`, int32 [batch, length] (see `pad`).
        """
        return self.pad(self.tokenize(texts))
