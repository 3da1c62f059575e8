"""In-graph answer text for the serving SavedModel (no `tf.numpy_function`).

`orqa.answer_text.final_text_batch` runs SQuAD's Python `get_final_text` through
`tf.numpy_function`, which a SavedModel cannot hold. `final_text` is the same computation
in TensorFlow ops, for the case the ORQA reader produces (its predicted answer spans):

    orig_text = " ".join(orig_tokens[orig_start .. orig_end])
    tok_text  = " ".join(BasicTokenizer(do_lower_case).tokenize(orig_text))
    start     = tok_text.find(pred_text)      (-1: return orig_text)
    map [start, start + len(pred_text) - 1] through the non-space characters of tok_text
    onto orig_text (different non-space lengths: return orig_text)
    return orig_text[orig_start_char .. orig_end_char]

BasicTokenizer is reproduced with the reader tokenizer's own normalization (remove
control/format characters, U+0000 and U+FFFD; uncased: lowercase, NFD, strip Mn) and its
BERT split patterns; `find` is an RE2 search of the escaped predicted text; positions are
Unicode code points, as Python's. Known residual difference: ICU and Python disagree on
the lowercase of a few dozen characters (`realm_tf.tokenization`); the result then falls
back to `orig_text`, as Python does when lengths differ.

`token_byte_offsets` gives the byte offsets in the raw block text of the original tokens,
for highlighting the answer in its passage.
"""

import tensorflow as tf
import tensorflow_text as tf_text

# ASCII punctuation holds every RE2 metacharacter; `\` + punctuation is that literal.
_ASCII_PUNCTUATION = r"([!-/:-@\[-`{-~])"
_REMOVED_CHARS = r"[\x{0}\x{FFFD}\p{Cc}\p{Cf}]"
_CONTROL_OR_FORMAT = r"\p{Cc}|\p{Cf}"


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

  The tokens are those of `orqa.answer_text.tokenize_with_original_mapping` (control and
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
