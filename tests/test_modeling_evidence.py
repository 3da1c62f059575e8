"""realm_tf.modeling.evidence: masked spans found verbatim in retrieved candidates."""

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.modeling.evidence import masked_span_evidence, masked_spans


def test_masked_spans_are_runs_of_consecutive_real_positions():
  positions = [3, 4, 9, 10, 11, 20, 0]
  targets = [7, 8, 5, 6, 7, 9, 0]
  mask = [1, 1, 1, 1, 1, 1, 0]
  assert masked_spans(positions, targets, mask) == [[7, 8], [5, 6, 7], [9]]
  assert masked_spans([0, 0], [0, 0], [0, 0]) == []


def _contains(row, span):
  return any(list(row[i:i + len(span)]) == span for i in range(len(row) - len(span) + 1))


def _reference(candidates, positions, targets, mask):
  spans = found = 0
  for b in range(len(candidates)):
    for span in masked_spans(positions[b], targets[b], mask[b]):
      spans += 1
      found += any(_contains(row, span) for row in candidates[b][1:])
  return spans, found


def _counts(candidates, positions, targets, mask):
  out = masked_span_evidence(tf.constant(candidates), tf.constant(positions),
                             tf.constant(targets), tf.constant(mask))
  return int(out["spans"]), int(out["evidence"])


def test_counts_spans_in_own_candidates_but_not_the_null_document():
  # [B=2, N=3, C=4]; candidate 0 (the null document) would match but is not counted.
  candidates = [[[101, 5, 6, 102], [101, 1, 2, 102], [101, 5, 6, 102]],
                [[101, 7, 102, 0], [101, 3, 4, 102], [101, 8, 8, 102]]]
  positions = [[2, 3, 7], [4, 0, 0]]
  targets = [[5, 6, 3], [7, 0, 0]]
  mask = [[1, 1, 1], [1, 0, 0]]
  # Example 0: the span [5, 6] is in its candidate 2 and [3] only in example 1's
  # candidates; example 1: [7] is only in its own null document.
  assert _counts(candidates, positions, targets, mask) == (3, 1)


@pytest.mark.parametrize("row, span, expected", [
    ([101, 7, 8, 9, 102], [7, 8], True),
    ([101, 7, 8, 9, 102], [7, 8, 9], True),
    ([101, 7, 8, 9, 102], [8, 7], False),  # order matters
    ([101, 7, 8, 9, 102], [7, 9], False),  # contiguous only
    ([101, 7, 5, 8, 102], [7, 8], False),
])
def test_a_span_needs_its_wordpieces_contiguous_and_in_order(row, span, expected):
  n = len(span)
  candidates = [[[101, 102, 102, 0, 0], row]]
  positions, targets, mask = [list(range(3, 3 + n))], [span], [[1] * n]
  assert _counts(candidates, positions, targets, mask) == (1, int(expected))


def test_a_gap_in_positions_splits_spans():
  candidates = [[[101, 102, 102, 0], [101, 7, 102, 0]], [[101, 102, 102, 0], [101, 9, 9, 9]]]
  # Positions 3 and 5 are not consecutive: [7] and [8] are two spans, and only [7] occurs.
  positions, targets, mask = [[3, 5], [0, 0]], [[7, 8], [0, 0]], [[1, 1], [0, 0]]
  assert _counts(candidates, positions, targets, mask) == (2, 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_a_python_reference_on_random_batches(seed):
  rng = np.random.default_rng(seed)
  batch, n, c, m, vocab = 6, 4, 12, 6, 5  # a small vocabulary, so spans recur
  candidates = rng.integers(0, vocab, (batch, n, c)).astype(np.int32)
  positions = np.zeros((batch, m), np.int32)
  targets = np.zeros((batch, m), np.int32)
  mask = np.zeros((batch, m), np.int32)
  for b in range(batch):
    k = int(rng.integers(0, m + 1))
    positions[b, :k] = np.sort(rng.choice(np.arange(1, 12), k, replace=False))
    targets[b, :k] = rng.integers(1, vocab, k)
    mask[b, :k] = 1
  expected = _reference(candidates, positions, targets, mask)
  assert expected[0] > 0 and 0 < expected[1] < expected[0]
  assert _counts(candidates, positions, targets, mask) == expected
