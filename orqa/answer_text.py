"""From block text to reader wordpieces and back: the ORQA reader's text handling.

* `tokenize_with_original_mapping` (the original's, in `language/orqa/utils/bert_utils.py`):
  "original tokens" (BERT's whitespace/punctuation split, original case), the wordpieces,
  and for every wordpiece the index of its original token.
* `get_final_text` (SQuAD's, as the original used it) and `predicted_answer`: the answer
  string of a predicted wordpiece span.
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


def join_token_range(tokens, starts, ends, separator: str = " "):
  """Joins tokens[b, starts[b]..ends[b]] (inclusive) for each row b.

  Args:
    tokens: string RaggedTensor [batch_size, (num_tokens)] (or a dense [batch, n]).
    starts, ends: int [batch_size]; an empty or out-of-range span gives "".

  Returns:
    string [batch_size].
  """
  if not isinstance(tokens, tf.RaggedTensor):
    tokens = tf.RaggedTensor.from_tensor(tf.convert_to_tensor(tokens, tf.string))
  num_tokens = tf.cast(tokens.row_lengths(), tf.int32)
  starts = tf.maximum(tf.cast(starts, tf.int32), 0)
  ends = tf.minimum(tf.cast(ends, tf.int32), num_tokens - 1)
  limits = tf.maximum(ends + 1, starts)
  indices = tf.ragged.range(starts, limits)  # [batch_size, (span_len)]
  span_tokens = tf.gather(tokens, indices, batch_dims=1)
  return tf.strings.reduce_join(span_tokens, axis=-1, separator=separator)


def final_text_batch(pred_texts, orig_texts, do_lower_case: bool):
  """`get_final_text` over string [batch] tensors (a `tf.numpy_function`)."""

  def project(pred, orig):
    return np.array([get_final_text(p, o, do_lower_case).encode("utf-8")
                     for p, o in zip(pred, orig)], dtype=object)

  pred_texts = tf.convert_to_tensor(pred_texts, tf.string)
  result = tf.numpy_function(project, [pred_texts, tf.convert_to_tensor(orig_texts)],
                             tf.string, stateful=False)
  return tf.ensure_shape(result, pred_texts.shape)
