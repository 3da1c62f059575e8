"""Answer-span candidates of the ORQA reader, their gold labels, and the prediction.

Spans are over wordpiece positions of the reader input `[CLS] q [SEP] block [SEP]`
(as in `language/orqa/models/orqa_model.py`). All functions accept leading batch
dimensions: the original read one question ([R, ...]); here [B, R, ...] works too.
"""

import tensorflow as tf

DEFAULT_MAX_SPAN_WIDTH = 10


def num_span_candidates(max_sequence_len: int,
                        max_span_width: int = DEFAULT_MAX_SPAN_WIDTH) -> int:
  """How many spans `span_candidates` enumerates (10L - 45 for L >= 10 and width 10)."""
  return sum(max(max_sequence_len - w + 1, 0) for w in range(1, max_span_width + 1))


def span_candidates(block_mask, max_span_width: int = DEFAULT_MAX_SPAN_WIDTH):
  """All spans of width 1..max_span_width, width-major, and which lie inside the block.

  Args:
    block_mask: int [..., num_blocks, seq_len], 1 at block wordpieces.
    max_span_width: the largest width w; widths 1..w are enumerated, each with starts
      0..seq_len-w.

  Returns:
    starts, ends: int32 [num_spans], inclusive positions.
    span_mask: [..., num_blocks, num_spans] in the dtype of block_mask, 1 where both
      ends of the span are block positions.
  """
  block_mask = tf.convert_to_tensor(block_mask)
  seq_len = tf.shape(block_mask)[-1]
  starts = []
  ends = []
  for width in range(1, max_span_width + 1):
    starts.append(tf.range(seq_len - width + 1))
    ends.append(tf.range(width - 1, seq_len))
  starts = tf.concat(starts, 0)  # [num_spans]
  ends = tf.concat(ends, 0)  # [num_spans]
  start_masks = tf.gather(block_mask, starts, axis=-1)  # [..., num_blocks, num_spans]
  end_masks = tf.gather(block_mask, ends, axis=-1)  # [..., num_blocks, num_spans]
  return starts, ends, start_masks * end_masks


def reader_correct(candidate_starts, candidate_ends, gold_starts, gold_ends):
  """Whether each candidate span of each block is a gold span.

  Args:
    candidate_starts, candidate_ends: int [num_spans].
    gold_starts, gold_ends: int [..., num_blocks, num_gold], padded with -1.

  Returns:
    bool [..., num_blocks, num_spans].
  """
  candidate_starts = tf.cast(candidate_starts, tf.int32)
  candidate_ends = tf.cast(candidate_ends, tf.int32)
  gold_starts = tf.cast(gold_starts, tf.int32)[..., tf.newaxis]  # [..., R, G, 1]
  gold_ends = tf.cast(gold_ends, tf.int32)[..., tf.newaxis]  # [..., R, G, 1]
  # [..., num_blocks, num_gold, num_spans]
  is_gold = tf.logical_and(tf.equal(candidate_starts, gold_starts),
                           tf.equal(candidate_ends, gold_ends))
  return tf.reduce_any(is_gold, axis=-2)


def predict_span(reader_logits):
  """The highest-scoring (block, span) pair.

  As the original: block_index = argmax_b max_s logits, candidate = argmax_s max_b
  logits, which together give the global argmax.

  Args:
    reader_logits: float [..., num_blocks, num_spans].

  Returns:
    block_index, candidate: int32 [...].
  """
  block_index = tf.argmax(tf.reduce_max(reader_logits, axis=-1), axis=-1,
                          output_type=tf.int32)
  candidate = tf.argmax(tf.reduce_max(reader_logits, axis=-2), axis=-1,
                        output_type=tf.int32)
  return block_index, candidate


def gather_prediction(values, block_index, candidate):
  """values[..., block_index, candidate] for [..., num_blocks, num_spans] values."""
  values = tf.convert_to_tensor(values)
  block_index = tf.convert_to_tensor(block_index)
  candidate = tf.convert_to_tensor(candidate)
  batch_dims = block_index.shape.rank
  per_block = tf.gather(values, block_index, axis=batch_dims, batch_dims=batch_dims)
  return tf.gather(per_block, candidate, axis=batch_dims, batch_dims=batch_dims)


def prediction_is_correct(reader_correct_spans, block_index, candidate):
  """The original `exact_match` metric: reader_correct at the predicted (block, span).

  Args:
    reader_correct_spans: bool [..., num_blocks, num_spans].
    block_index, candidate: int [...] from `predict_span`.

  Returns:
    bool [...].
  """
  return gather_prediction(reader_correct_spans, block_index, candidate)


def top_k_match(retriever_correct, ks=(5, 10, 50, 100, 500, 1000, 5000)):
  """The original `top_{k}_match` metrics: any correct block among the first k.

  Args:
    retriever_correct: bool [..., beam_size], in retrieval order.
    ks: cut-offs (a cut-off beyond the beam uses the whole beam).

  Returns:
    {k: bool [...]}.
  """
  return {k: tf.reduce_any(retriever_correct[..., :k], axis=-1) for k in ks}
