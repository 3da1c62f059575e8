"""BERT input formatting: `[CLS] s1 [SEP] s2 [SEP] ...` with the original's truncation."""

import collections
from typing import Sequence

import tensorflow as tf

BertInputs = collections.namedtuple("BertInputs", ["token_ids", "mask", "segment_ids"])
BertInputs.__doc__ = "Three int32 tensors of the same shape [..., seq_len]."


def _as_ragged(seq):
  if not isinstance(seq, tf.RaggedTensor):
    seq = tf.RaggedTensor.from_tensor(seq)
  return tf.cast(seq, tf.int32).with_row_splits_dtype(tf.int64)


def truncate_rows(seqs: tf.RaggedTensor, limits) -> tf.RaggedTensor:
  """Keeps the first `limits[i]` items of row i. seqs: [batch, (len)], limits: [batch]."""
  keep = tf.ragged.range(seqs.row_lengths()) < tf.cast(limits, tf.int64)[:, None]
  return tf.ragged.boolean_mask(seqs, keep)


def bert_format(input_seqs: Sequence[tf.RaggedTensor], max_seq_len: int, cls_id: int,
                sep_id: int) -> BertInputs:
  """Formats a batch of k sequences as `[CLS] s1 [SEP] ... sk [SEP]` (`bert_format` of
  `language/realm/featurization.py`).

  The token budget is `max_seq_len - 1 - k`. Sequences are truncated in order, each to
  what remains of the budget, so earlier sequences have priority and every special token
  always fits. Sequence i and its trailing [SEP] get segment id i; [CLS] gets 0.

  Args:
    input_seqs: k int RaggedTensors [batch, (len_i)] (dense [batch, len] also accepted).
    max_seq_len: output length; outputs are zero-padded or truncated to it.
    cls_id: id of [CLS].
    sep_id: id of [SEP].

  Returns:
    BertInputs of int32 [batch, max_seq_len].
  """
  k = len(input_seqs)
  budget = max_seq_len - 1 - k
  if budget < 0:
    raise ValueError(
        f"max_seq_len={max_seq_len} leaves no room for [CLS] and {k} [SEP] tokens.")
  seqs = [_as_ragged(s) for s in input_seqs]
  batch = seqs[0].nrows()
  one_col = tf.ones([batch, 1], tf.int32)
  cls_col = tf.RaggedTensor.from_tensor(one_col * cls_id)
  sep_col = tf.RaggedTensor.from_tensor(one_col * sep_id)

  remaining = tf.fill([batch], tf.constant(budget, tf.int64))
  tokens, segments = [cls_col], [cls_col * 0]
  for segment_id, seq in enumerate(seqs):
    take = tf.minimum(seq.row_lengths(), remaining)
    remaining -= take
    kept = truncate_rows(seq, take)
    tokens += [kept, sep_col]
    segments += [tf.ones_like(kept) * segment_id, sep_col * 0 + segment_id]

  token_ids = tf.concat(tokens, axis=1)
  shape = [None, max_seq_len]
  return BertInputs(
      token_ids=token_ids.to_tensor(0, shape=shape),  # [batch, max_seq_len]
      mask=tf.ones_like(token_ids).to_tensor(0, shape=shape),
      segment_ids=tf.concat(segments, axis=1).to_tensor(0, shape=shape))
