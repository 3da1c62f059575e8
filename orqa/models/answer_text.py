"""From block text to reader wordpieces and back: the ORQA reader's text handling.

* `tokenize_with_original_mapping` (the original's, in `language/orqa/utils/bert_utils.py`):
  "original tokens" (BERT's whitespace/punctuation split, original case), the wordpieces,
  and for every wordpiece the index of its original token.
* `get_final_text` (SQuAD's, as the original used it) and `predicted_answer`: the answer
  string of a predicted wordpiece span, in Python (the reference).
* `final_text`: the same in TF ops, which `OrqaModel` (evaluation, `orqa.predict`) and the
  serving SavedModel run; `token_byte_offsets`: where the original tokens are in the raw
  text (the answer's offsets in its passage).
"""

import collections
from typing import Sequence, Union

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text
from official.nlp.data import squad_lib

OriginalMapping = collections.namedtuple(
    "OriginalMapping", ["orig_tokens", "token_map", "wordpiece_ids", "normalized_text"])
OriginalMapping.__doc__ = """Result of `tokenize_with_original_mapping`.

orig_tokens: string RaggedTensor [n, (num_orig_tokens)].
token_map: int32 RaggedTensor [n, (num_wordpieces)], the orig token of each wordpiece.
wordpiece_ids: int32 RaggedTensor [n, (num_wordpieces)].
normalized_text: string [n], the text as the uncased model sees it (lowercased, NFD,
  accents stripped), or the text itself for cased models.
"""

_CONTROL_OR_FORMAT = r"\p{Cc}|\p{Cf}"
_INT64_MAX = np.iinfo(np.int64).max


def _lower_case(strings):
  """BERT's uncased normalization: lowercase, NFD, drop combining marks (Mn)."""
  strings = tf_text.normalize_utf8(tf.strings.lower(strings, encoding="utf-8"), "NFD")
  return tf.strings.regex_replace(strings, r"\p{Mn}", "")


def tokenize_with_original_mapping(texts, tokenizer) -> OriginalMapping:
  """Tokenizes block texts and maps every wordpiece to its original token.

  As the original: control and format characters become spaces; the original tokens are
  BERT's basic-tokenizer split (whitespace dropped, punctuation and CJK characters kept
  as tokens) in the original case; with an uncased tokenizer the normalized text is
  lowercased, NFD-decomposed and stripped of accents. The wordpieces are exactly
  `tokenizer.tokenize_with_offsets` of the cleaned text, and each is mapped, through its
  byte offset, to the original token that contains it.

  Args:
    texts: string [n].
    tokenizer: a `realm_tf.tokenization.Tokenizer`.

  Returns:
    OriginalMapping.
  """
  texts = tf.strings.regex_replace(tf.convert_to_tensor(texts, tf.string),
                                   _CONTROL_OR_FORMAT, " ")  # [n]
  # Orig tokens: the tokenizer's own BERT split patterns, original case.
  orig_tokens, orig_starts, _ = tf_text.regex_split_with_offsets(
      texts, tokenizer.delimiter_pattern,
      tokenizer.kept_delimiter_pattern)  # [n, (orig_tokens)]
  wordpiece_ids, piece_starts, _ = tokenizer.tokenize_with_offsets(texts)  # [n, (pieces)]

  # The original token of a wordpiece: the last one starting at or before it.
  sorted_starts = orig_starts.to_tensor(_INT64_MAX)  # [n, max_orig_tokens]
  token_map = tf.searchsorted(sorted_starts, piece_starts.to_tensor(0), side="right") - 1
  token_map = tf.RaggedTensor.from_tensor(tf.cast(token_map, tf.int32),
                                          lengths=piece_starts.row_lengths())
  normalized_text = _lower_case(texts) if tokenizer.do_lower_case else texts
  return OriginalMapping(orig_tokens=orig_tokens, token_map=token_map,
                         wordpiece_ids=tf.cast(wordpiece_ids, tf.int32),
                         normalized_text=normalized_text)


def _text(value: Union[str, bytes]) -> str:
  if isinstance(value, bytes):
    return value.decode("utf-8", errors="ignore")
  return value


def get_final_text(pred_text: Union[str, bytes], orig_text: Union[str, bytes],
                   do_lower_case: bool) -> str:
  """SQuAD's projection of a normalized predicted text onto the original text.

  `official.nlp.data.squad_lib.get_final_text`, as the original ORQA called it: if
  `pred_text` occurs in the basic-tokenized `orig_text`, `orig_text` is trimmed to the
  matching characters; otherwise (always when `pred_text` holds `##` wordpieces)
  `orig_text` is returned unchanged.
  """
  return squad_lib.get_final_text(pred_text=_text(pred_text), orig_text=_text(orig_text),
                                  do_lower_case=do_lower_case)


def predicted_answer(orig_tokens: Sequence[Union[str, bytes]], orig_start: int,
                     orig_end: int, wordpieces: Sequence[Union[str, bytes]],
                     do_lower_case: bool) -> str:
  """The answer string of a predicted span (as the original `get_predictions`).

  Args:
    orig_tokens: the original tokens of the predicted block.
    orig_start, orig_end: inclusive original-token range of the span (the token_map at
      the span's start and end wordpieces).
    wordpieces: the vocab strings of the span's wordpieces (with `##` markers).
    do_lower_case: the reader tokenizer's casing.

  Returns:
    `get_final_text(" ".join(wordpieces), " ".join(orig_tokens[start:end + 1]))`; "" when
    the range is empty or invalid (a span outside the block).
  """
  if orig_start < 0 or orig_end < orig_start:
    return ""
  orig_text = " ".join(_text(t) for t in orig_tokens[orig_start:orig_end + 1])
  pred_text = " ".join(_text(t) for t in wordpieces)
  return get_final_text(pred_text, orig_text, do_lower_case)


def span_tokens(tokens, starts, ends):
  """tokens[b, starts[b]..ends[b]] (inclusive) for each row b.

  Args:
    tokens: string RaggedTensor [B, (n)].
    starts, ends: int [B]; an empty or out-of-range span gives no tokens.

  Returns:
    string RaggedTensor [B, (span)].
  """
  num_tokens = tf.cast(tokens.row_lengths(), tf.int32)
  starts = tf.maximum(tf.cast(starts, tf.int32), 0)
  ends = tf.minimum(tf.cast(ends, tf.int32), num_tokens - 1)
  return tf.gather(tokens, tf.ragged.range(starts, tf.maximum(ends + 1, starts)),
                   batch_dims=1)  # [B, (span)]


def gather_rows(ragged, index):
  """ragged[b, index[b]] for int64 ragged [B, (n)] and int [B] (clipped, 0 if empty)."""
  dense = tf.pad(ragged.to_tensor(0), [[0, 0], [0, 1]])  # [B, n + 1]
  width = tf.shape(dense)[1]
  clipped = tf.clip_by_value(tf.cast(index, tf.int32), 0, width - 1)
  return tf.gather(dense, clipped[:, None], batch_dims=1)[:, 0]


# `get_final_text` in TF ops, so that evaluation and the serving SavedModel (which cannot
# hold a `tf.numpy_function`) compute one answer string. For the spans the ORQA reader
# predicts:
#     orig_text = " ".join(orig_tokens[orig_start .. orig_end])
#     tok_text  = " ".join(BasicTokenizer(do_lower_case).tokenize(orig_text))
#     start     = tok_text.find(pred_text)      (-1: return orig_text)
#     map [start, start + len(pred_text) - 1] through the non-space characters of tok_text
#     onto orig_text (different non-space lengths: return orig_text)
#     return orig_text[orig_start_char .. orig_end_char]
# BasicTokenizer is reproduced with the reader tokenizer's own normalization (remove
# control/format characters, U+0000 and U+FFFD; uncased: lowercase, NFD, strip Mn) and its
# BERT split patterns; `find` is an RE2 search of the escaped predicted text; positions are
# Unicode code points, as Python's. Known residual difference: ICU and Python disagree on
# the lowercase of a few dozen characters (`realm_tf.tokenization`); the result then falls
# back to `orig_text`, as Python does when lengths differ.

# ASCII punctuation holds every RE2 metacharacter; `\` + punctuation is that literal.
_ASCII_PUNCTUATION = r"([!-/:-@\[-`{-~])"
_REMOVED_CHARS = r"[\x{0}\x{FFFD}\p{Cc}\p{Cf}]"


def basic_tokenized_text(orig_tokens, tokenizer):
  """" ".join(BasicTokenizer.tokenize(" ".join(tokens))) for ragged tokens [B, (n)]."""
  words = tf.strings.regex_replace(orig_tokens.flat_values, _REMOVED_CHARS, "")
  if tokenizer.do_lower_case:
    words = tf_text.normalize_utf8(tf.strings.lower(words, encoding="utf-8"), "NFD")
    words = tf.strings.regex_replace(words, r"\p{Mn}", "")
  pieces = tf_text.regex_split(words, tokenizer.delimiter_pattern,
                               tokenizer.kept_delimiter_pattern)  # [N, (m)]
  pieces = orig_tokens.with_flat_values(pieces).merge_dims(1, 2)  # [B, (m)]
  return tf.strings.reduce_join(pieces, axis=-1, separator=" ")  # [B]


def _find(haystacks, needles):
  """Code-point index of the first occurrence of needles[b] in haystacks[b], or -1."""

  def one(args):
    haystack, needle = args
    pattern = tf.strings.join(
        ["(?s)^(.*?)", tf.strings.regex_replace(needle, _ASCII_PUNCTUATION, r"\\\1"),
         ".*$"])
    prefix = tf.strings.regex_replace(haystack, pattern, r"\1", replace_global=False)
    found = tf.logical_and(tf.strings.length(needle) > 0,
                           tf.not_equal(prefix, haystack))
    return tf.where(found, tf.strings.length(prefix, unit="UTF8_CHAR"), -1)

  return tf.map_fn(one, (haystacks, needles), fn_output_signature=tf.int32)


def _non_space_ranks(chars):
  """Dense [B, C + 1] rank of each character among the non-space ones (-1 before the
  first), and [B, C + 1] bool non-space flags (False in padding; one column at least)."""
  non_space = tf.not_equal(chars, " ").to_tensor(False)  # [B, C]
  non_space = tf.pad(non_space, [[0, 0], [0, 1]], constant_values=False)  # [B, C + 1]
  ranks = tf.cumsum(tf.cast(non_space, tf.int32), axis=1) - 1
  return ranks, non_space


def final_text(pred_text, orig_tokens, tokenizer):
  """SQuAD's `get_final_text(pred_text, " ".join(orig_tokens), do_lower_case)` in TF ops.

  Args:
    pred_text: string [B], the predicted wordpieces joined with " ".
    orig_tokens: string RaggedTensor [B, (n)], the original tokens of the span.
    tokenizer: the reader's `realm_tf.tokenization.Tokenizer`.

  Returns:
    string [B].
  """
  orig_text = tf.strings.reduce_join(orig_tokens, axis=-1, separator=" ")  # [B]
  tok_text = basic_tokenized_text(orig_tokens, tokenizer)  # [B]
  start = _find(tok_text, pred_text)  # [B]
  end = start + tf.strings.length(pred_text, unit="UTF8_CHAR") - 1  # [B]

  tok_ranks, tok_ns = _non_space_ranks(tf.strings.unicode_split(tok_text, "UTF-8"))
  orig_ranks, orig_ns = _non_space_ranks(tf.strings.unicode_split(orig_text, "UTF-8"))
  same_length = tf.equal(tf.reduce_sum(tf.cast(tok_ns, tf.int32), 1),
                         tf.reduce_sum(tf.cast(orig_ns, tf.int32), 1))  # [B]
  width = tf.shape(tok_ns)[1]

  def to_orig(position):
    """orig char index of tok_text[position] (valid: a non-space char in range)."""
    inside = tf.logical_and(position >= 0, position < width)
    clipped = tf.clip_by_value(position, 0, width - 1)
    if_valid = lambda t, default: tf.where(inside, tf.gather(t, clipped[:, None],
                                                             batch_dims=1)[:, 0], default)
    valid = if_valid(tok_ns, False)
    rank = if_valid(tok_ranks, -1)
    # The rank-th non-space char of orig_text sits after every char of lower rank.
    orig_position = tf.reduce_sum(tf.cast(orig_ranks < rank[:, None], tf.int32), 1)
    return valid, orig_position

  start_valid, orig_start = to_orig(start)
  end_valid, orig_end = to_orig(end)
  ok = start_valid & end_valid & same_length & (start >= 0)
  trimmed = tf.strings.substr(orig_text, tf.where(ok, orig_start, 0),
                              tf.where(ok, orig_end - orig_start + 1, 0), unit="UTF8_CHAR")
  return tf.where(ok, trimmed, orig_text)


def token_byte_offsets(texts, tokenizer):
  """Byte offsets into the raw `texts` [B] of their original tokens.

  The tokens are those of `tokenize_with_original_mapping` (control and
  format characters act as whitespace), so token i here is orig token i there.

  Returns:
    starts, limits: int64 RaggedTensors [B, (n)].
  """
  delimiters = f"{tokenizer.delimiter_pattern}|{_CONTROL_OR_FORMAT}"
  # regex_split stops at a NUL byte; \x01 has the same length and is a delimiter too.
  texts = tf.strings.regex_replace(texts, "\x00", "\x01")
  _, starts, limits = tf_text.regex_split_with_offsets(
      texts, delimiters, tokenizer.kept_delimiter_pattern)
  return starts, limits
