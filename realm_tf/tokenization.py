"""BERT wordpiece tokenization with UTF-8 byte offsets, built on tensorflow_text.

The original REALM wrapped BERT's Python `FullTokenizer` and recovered token boundaries
with a greedy string alignment that fails on `[UNK]` and on text whose length changes under
normalization (`language/realm/featurization.py`). Here BERT's rules are composed from
tensorflow_text ops so that one tokenizer runs eagerly, inside `tf.data` and inside a
SavedModel, and reports the exact byte span in the *original* string of every wordpiece,
`[UNK]` included:

1. basic tokenization: split on whitespace (tab, newline, carriage return and Unicode
   Z*: Zs spaces, U+2028 LINE SEPARATOR, U+2029 PARAGRAPH SEPARATOR), and split off every
   punctuation character (ASCII symbols and Unicode P*) and every CJK ideograph as a
   token of its own;
2. normalization of each word, character by character (so offsets can be mapped back):
   control and format characters are removed and, when uncased, the word is lowercased,
   NFD-decomposed and stripped of combining marks (Mn);
3. greedy longest-match-first wordpiece (`##` continuations) with `FastWordpieceTokenizer`;
   words of more than `MAX_CHARS_PER_WORD` (200) normalized characters, or with no
   wordpiece cover, become `[UNK]`.

The split points are exactly those of BERT's `BasicTokenizer` (bert-tensorflow's
`tokenization.py`): `_clean_text` first removes NUL, U+FFFD and every Cc/Cf character
except tab, newline and carriage return, and maps those three and Zs to a space; then
`str.split()` splits on what Python calls whitespace. Of Python's whitespace, the C0/C1
separators (U+000B, U+000C, U+001C-U+001F, U+0085) are Cc and so are removed, joining their
neighbours (`a`, U+001C, `b` is one word `ab`); Zl and Zp survive the cleaning and split.

tensorflow_text's own `FastBertTokenizer` was not used: it case-folds with NFKC
(`ß`->`ss`, `²`->`2`, final `ς`->`σ`, `…`->`...`) and so disagrees with BERT on about 3.5%
of Wikipedia passages. Known residual differences from BERT under Python 3.11 (tested
against `official.nlp.tools.tokenization.FullTokenizer` on every Unicode category):
characters unassigned in Python's Unicode tables (14.0) but assigned by RE2's newer ones
as punctuation, combining or format characters; characters that ICU and Python lowercase
differently (about forty capitals added in Unicode 14, e.g. Vithkuqi); and a capital
sigma before case-ignorable punctuation and a letter (`ΑΣ.Β`): BERT lowercases the
whitespace-separated word (`ασ.β`), realm-tf each word left after splitting off
punctuation (`ας`, `.`, `β`). Both write a word-final sigma as `ς`.
"""

import collections
from typing import List, Sequence, Union

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from realm_tf import errors

Token = collections.namedtuple("Token", ["text", "start", "stop", "id"])
Token.__doc__ = """A wordpiece: its vocab string, UTF-8 byte offsets [start, stop) into the
original text (-1 when not computed) and its vocab id."""

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# Words of more normalized characters become one [UNK]: bert-tensorflow's `FullTokenizer`
# (what the original REALM and ORQA ran) builds its `WordpieceTokenizer` with
# `max_input_chars_per_word=200` (Hugging Face's BertTokenizer uses 100).
MAX_CHARS_PER_WORD = 200

# BERT's whitespace after `_clean_text`: tab, newline, carriage return (mapped to spaces)
# and Unicode Z* (Zs spaces, Zl U+2028, Zp U+2029: `str.split()` splits on all of them).
_WHITESPACE = r"[\t\n\r\p{Z}]+"
_PUNCTUATION = r"[!-/:-@\[-`{-~\p{P}]"
# BERT's _is_chinese_char ranges.
_CJK = (r"[\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2A6DF}\x{2A700}-\x{2B73F}"
        r"\x{2B740}-\x{2B81F}\x{2B820}-\x{2CEAF}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}]")
# Uncased, BERT strips accents before splitting off punctuation. These are the only
# non-punctuation characters whose normalization holds punctuation: U+2260, U+226E and
# U+226F decompose (NFD) into "=", "<", ">" plus a combining mark, and U+1FEF GREEK VARIA
# into "`".
_NFD_PUNCTUATION = r"[\x{2260}\x{226E}\x{226F}\x{1FEF}]"
# Words of printable ASCII normalize without changing byte offsets.
_PLAIN_ASCII_WORD = r"[\x21-\x7E]*"
# BERT's _clean_text drops NUL, U+FFFD and control/format characters (not \t \n \r,
# which are delimiters here).
_REMOVED_CHARS = r"[\x{0}\x{FFFD}\p{Cc}\p{Cf}]"
_INT64_MAX = np.iinfo(np.int64).max


class TokenizationError(errors.RealmInputError):
  """A text cannot be tokenized (e.g. it is not valid UTF-8)."""


def load_vocab(vocab_path: Union[str, bytes]) -> List[str]:
  """Reads a BERT vocab file (one token per line, id = line number)."""
  if isinstance(vocab_path, bytes):
    vocab_path = vocab_path.decode("utf-8")
  if not tf.io.gfile.exists(vocab_path):
    raise FileNotFoundError(f"Vocabulary file not found: {vocab_path}")
  with tf.io.gfile.GFile(vocab_path, "r") as f:
    # BERT's load_vocab strips each line; keep line numbers as ids.
    vocab = [line.strip() for line in f.read().split("\n")]
  if vocab and vocab[-1] == "":
    vocab.pop()
  missing = [t for t in SPECIAL_TOKENS if t not in vocab]
  if missing:
    raise ValueError(
        f"Vocabulary {vocab_path} lacks the special tokens {missing} that BERT needs.")
  return vocab


class Tokenizer(tf.Module):
  """BERT wordpiece tokenizer with byte offsets (the original `featurization.Tokenizer`).

  Args:
    vocab_path: path of a BERT `vocab.txt` (str or bytes, any `tf.io.gfile` path).
    do_lower_case: uncased model (lowercase, NFD, strip accents) or cased.
  """

  def __init__(self, vocab_path: Union[str, bytes], do_lower_case: bool = True,
               name: str = "tokenizer"):
    super().__init__(name=name)
    if isinstance(vocab_path, bytes):
      vocab_path = vocab_path.decode("utf-8")
    self.vocab_path = vocab_path
    self.do_lower_case = bool(do_lower_case)
    self.vocab = load_vocab(vocab_path)
    kept = f"{_PUNCTUATION}|{_CJK}"
    if self.do_lower_case:
      kept += f"|{_NFD_PUNCTUATION}"
    self._kept_delimiters = kept
    self._delimiters = f"{_WHITESPACE}|{kept}"
    self._token_to_id = {t: i for i, t in enumerate(self.vocab)}
    self._wordpiece = tf_text.FastWordpieceTokenizer(
        vocab=self.vocab,
        token_out_type=tf.int32,
        unknown_token="[UNK]",
        no_pretokenization=True,  # input is already split into words
        max_bytes_per_word=1 << 30,  # BERT's limit is in characters: applied below
        support_detokenization=False)
    self.pad_id = self._token_to_id["[PAD]"]
    self.unk_id = self._token_to_id["[UNK]"]
    self.cls_id = self._token_to_id["[CLS]"]
    self.sep_id = self._token_to_id["[SEP]"]
    self.mask_id = self._token_to_id["[MASK]"]

  @property
  def vocab_size(self) -> int:
    return len(self.vocab)

  @property
  def delimiter_pattern(self) -> str:
    """RE2 pattern of BERT's basic-tokenization split points (whitespace, punctuation,
    CJK; for `tensorflow_text.regex_split`)."""
    return self._delimiters

  @property
  def kept_delimiter_pattern(self) -> str:
    """The delimiters that are tokens themselves (punctuation, CJK)."""
    return self._kept_delimiters

  def _normalize(self, strings):
    """BERT's per-character normalization of a string tensor (any shape)."""
    if self.do_lower_case:
      strings = tf_text.normalize_utf8(tf.strings.lower(strings, encoding="utf-8"), "NFD")
      strings = tf.strings.regex_replace(strings, r"\p{Mn}", "")
    return tf.strings.regex_replace(strings, _REMOVED_CHARS, "")

  def _source_offsets(self, words, piece_starts, piece_limits):
    """Maps wordpiece offsets in normalized words back to offsets in the words.

    Args:
      words: string [num_words], original words.
      piece_starts, piece_limits: int64 RaggedTensors [num_words, (pieces)], byte offsets
        into the normalized words.

    Returns:
      (starts, limits): int64 RaggedTensors [num_words, (pieces)] into the original words.
    """
    chars, char_starts = tf.strings.unicode_split_with_offsets(words, "UTF-8")
    char_limits = char_starts + tf.cast(tf.strings.length(chars, unit="BYTE"), tf.int64)
    # Byte offset, in the normalized word, at which each character's normalization ends.
    normalized_len = tf.strings.length(self._normalize(chars.flat_values), unit="BYTE")
    ends = chars.with_flat_values(tf.cast(normalized_len, tf.int64))
    ends = tf.math.cumsum(ends.to_tensor(0), axis=1)  # [num_words, max_chars]
    ends = tf.where(tf.sequence_mask(chars.row_lengths(), tf.shape(ends)[1]), ends,
                    _INT64_MAX)

    def lookup(offsets, char_offsets):
      # The character whose normalization contains normalized byte `offsets`.
      index = tf.searchsorted(ends, offsets.to_tensor(0), side="right")
      index = tf.minimum(index, tf.cast(chars.row_lengths(), tf.int32)[:, None] - 1)
      source = tf.gather(char_offsets.to_tensor(0), index, batch_dims=1)
      return tf.RaggedTensor.from_tensor(source, lengths=offsets.row_lengths())

    return lookup(piece_starts, char_starts), lookup(piece_limits - 1, char_limits)

  def tokenize_with_offsets(self, texts):
    """Tokenizes a batch of strings.

    Args:
      texts: string tensor [batch].

    Returns:
      (token_ids, starts, limits): int32 / int64 / int64 RaggedTensors
      [batch, (num_tokens)]; starts/limits are byte offsets into each input string.
    """
    texts = tf.convert_to_tensor(texts, tf.string)
    # regex_split stops at a NUL byte; \x01 has the same length and is removed likewise.
    texts = tf.strings.regex_replace(texts, "\x00", "\x01")
    words, word_starts, _ = tf_text.regex_split_with_offsets(
        texts, self._delimiters, self._kept_delimiters)  # [batch, (words)]
    flat_words = words.flat_values  # [num_words]
    normalized = self._normalize(flat_words)
    too_long = tf.strings.length(normalized, unit="UTF8_CHAR") > MAX_CHARS_PER_WORD
    ids, starts, limits = self._wordpiece.tokenize_with_offsets(
        tf.where(too_long, "[UNK]", normalized))  # [num_words, (pieces)]
    piece_rows = ids.value_rowids()  # word of each piece
    # An over-long word is one [UNK] covering its whole normalized form, which is mapped
    # back like any other piece (so, as every [UNK], it spans the characters from the
    # first to the last one that normalization keeps).
    piece_too_long = tf.gather(too_long, piece_rows)
    normalized_bytes = tf.cast(tf.strings.length(normalized, unit="BYTE"), tf.int64)
    starts = starts.with_flat_values(
        tf.where(piece_too_long, tf.zeros_like(starts.flat_values), starts.flat_values))
    limits = limits.with_flat_values(
        tf.where(piece_too_long, tf.gather(normalized_bytes, piece_rows), limits.flat_values))

    # Offsets into the original words: identical for plain ASCII words; mapped through
    # the characters' normalizations for the others.
    mapped = tf.logical_not(tf.strings.regex_full_match(flat_words, _PLAIN_ASCII_WORD))
    mapped_rows = tf.where(mapped)[:, 0]
    mapped_starts, mapped_limits = self._source_offsets(
        tf.gather(flat_words, mapped_rows), tf.gather(starts, mapped_rows),
        tf.gather(limits, mapped_rows))
    piece_mapped = tf.gather(mapped, piece_rows)
    positions = tf.where(piece_mapped)
    starts = tf.tensor_scatter_nd_update(starts.flat_values, positions,
                                         mapped_starts.flat_values)
    limits = tf.tensor_scatter_nd_update(limits.flat_values, positions,
                                         mapped_limits.flat_values)

    word_offsets = tf.gather(word_starts.flat_values, piece_rows)
    pieces = ids.with_flat_values
    return (words.with_flat_values(ids).merge_dims(1, 2),
            words.with_flat_values(pieces(starts + word_offsets)).merge_dims(1, 2),
            words.with_flat_values(pieces(limits + word_offsets)).merge_dims(1, 2))

  def tokenize_ids(self, texts):
    """Token ids only: int32 RaggedTensor [batch, (num_tokens)]."""
    return self.tokenize_with_offsets(texts)[0]

  def tokenize(self, text: Union[str, bytes],
               compute_token_boundaries: bool = True) -> List[Token]:
    """Eager tokenization of one text into `Token`s (debugging / Python paths)."""
    if isinstance(text, str):
      text = text.encode("utf-8")
    try:
      text.decode("utf-8")
    except UnicodeDecodeError as e:
      raise TokenizationError(f"Text is not valid UTF-8: {e}") from e
    ids, starts, limits = self.tokenize_with_offsets(tf.constant([text]))
    ids = ids[0].numpy()
    if not compute_token_boundaries:
      return [Token(self.vocab[i], -1, -1, int(i)) for i in ids]
    return [Token(self.vocab[i], int(s), int(e), int(i))
            for i, s, e in zip(ids, starts[0].numpy(), limits[0].numpy())]

  def convert_tokens_to_ids(self, tokens: Sequence[str]) -> List[int]:
    return [self._token_to_id.get(t, self.unk_id) for t in tokens]

  def convert_ids_to_tokens(self, ids) -> List[str]:
    return [self.vocab[int(i)] for i in np.asarray(ids).reshape([-1])]

  def token_ids_to_str(self, ids) -> str:
    """Debug detokenizer: joins `##` pieces and drops padding."""
    words = []
    for piece in self.convert_ids_to_tokens(ids):
      if piece == "[PAD]":
        continue
      if piece.startswith("##") and words:
        words[-1] += piece[2:]
      else:
        words.append(piece)
    return " ".join(words)
