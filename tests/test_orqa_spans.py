"""Tests of orqa.data.answer_spans: span enumeration, gold labels, prediction and metrics."""
import conftest  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow)

import numpy as np
import tensorflow as tf

from orqa.ops import orqa_ops
from orqa.data import answer_spans


def test_span_count_for_the_original_sequence_length():
  starts, ends, span_mask = answer_spans.span_candidates(tf.zeros([5, 320], tf.int32), 10)
  assert starts.shape == ends.shape == (3155,)
  assert span_mask.shape == (5, 3155)
  assert answer_spans.num_span_candidates(320) == 3155 == 10 * 320 - 45


def test_span_order_is_width_major():
  starts, ends, _ = answer_spans.span_candidates(tf.ones([1, 4], tf.int32), max_span_width=3)
  assert starts.numpy().tolist() == [0, 1, 2, 3, 0, 1, 2, 0, 1]
  assert ends.numpy().tolist() == [0, 1, 2, 3, 1, 2, 3, 2, 3]
  # Wider than the sequence: no spans of that width.
  starts, ends, _ = answer_spans.span_candidates(tf.ones([1, 2], tf.int32), max_span_width=3)
  assert starts.numpy().tolist() == [0, 1, 0]
  assert ends.numpy().tolist() == [0, 1, 1]
  assert answer_spans.num_span_candidates(2, 3) == 3


def test_span_mask_needs_both_ends_in_the_block():
  block_mask = tf.constant([[0, 1, 1, 0], [1, 0, 0, 1]])
  _, _, span_mask = answer_spans.span_candidates(block_mask, max_span_width=2)
  # spans: (0,0) (1,1) (2,2) (3,3) (0,1) (1,2) (2,3)
  np.testing.assert_array_equal(span_mask.numpy(), [[0, 1, 1, 0, 0, 1, 0],
                                                    [1, 0, 0, 1, 0, 0, 0]])
  # Leading batch dimensions are kept.
  _, _, batched = answer_spans.span_candidates(tf.stack([block_mask, block_mask]), 2)
  assert batched.shape == (2, 2, 7)


def test_reader_correct_marks_exactly_the_gold_spans():
  starts, ends, _ = answer_spans.span_candidates(tf.ones([2, 5], tf.int32), max_span_width=3)
  gold_starts = tf.constant([[1, 3], [-1, -1]])
  gold_ends = tf.constant([[2, 3], [-1, -1]])
  correct = answer_spans.reader_correct(starts, ends, gold_starts, gold_ends).numpy()
  pairs = list(zip(starts.numpy(), ends.numpy()))
  assert [pairs[i] for i in np.flatnonzero(correct[0])] == [(3, 3), (1, 2)]
  assert not correct[1].any()
  # No gold column at all.
  empty = answer_spans.reader_correct(starts, ends, tf.zeros([2, 0], tf.int32),
                               tf.zeros([2, 0], tf.int32))
  assert empty.shape == (2, len(pairs)) and not empty.numpy().any()


def test_reader_correct_from_reader_inputs_end_to_end():
  inputs = orqa_ops.reader_inputs([0, 1], [[2, 3, 4], [5, 6, 0]], [3, 2],
                             [[1, 2, 5], [1, 3, 4]], [[3, 4], [7, 0]], [2, 1], 10, 11, 10)
  starts, ends, span_mask = answer_spans.span_candidates(inputs.block_mask, 10)
  correct = answer_spans.reader_correct(starts, ends, inputs.gold_starts, inputs.gold_ends)
  assert correct.shape == (2, answer_spans.num_span_candidates(10))
  (index,) = np.flatnonzero(correct.numpy()[0])
  assert (starts.numpy()[index], ends.numpy()[index]) == (5, 6)
  assert span_mask.numpy()[0, index] == 1
  assert not correct.numpy()[1].any()


def test_predict_span_is_the_global_argmax():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=[3, 4, 7]).astype(np.float32)  # [batch, blocks, spans]
  block_index, candidate = answer_spans.predict_span(tf.constant(logits))
  for b in range(3):
    expected = np.unravel_index(np.argmax(logits[b]), logits[b].shape)
    assert (block_index.numpy()[b], candidate.numpy()[b]) == expected
  # Unbatched, as the original.
  block_index, candidate = answer_spans.predict_span(tf.constant(logits[0]))
  assert block_index.shape == () and candidate.shape == ()
  assert (int(block_index), int(candidate)) == np.unravel_index(np.argmax(logits[0]),
                                                                 logits[0].shape)


def test_prediction_is_correct_and_gather_prediction():
  correct = tf.constant([[[False, True], [False, False]], [[False, False], [True, False]]])
  block_index = tf.constant([0, 1])
  candidate = tf.constant([1, 1])
  np.testing.assert_array_equal(
      answer_spans.prediction_is_correct(correct, block_index, candidate).numpy(), [True, False])
  values = tf.reshape(tf.range(8), [2, 2, 2])
  np.testing.assert_array_equal(
      answer_spans.gather_prediction(values, block_index, candidate).numpy(), [1, 7])
  assert int(answer_spans.gather_prediction(values[0], 1, 0)) == 2


def test_top_k_match():
  retriever_correct = tf.constant([[False, False, True, False], [False] * 4])
  matches = answer_spans.top_k_match(retriever_correct, ks=(1, 3, 10))
  assert matches[1].numpy().tolist() == [False, False]
  assert matches[3].numpy().tolist() == [True, False]
  assert matches[10].numpy().tolist() == [True, False]
