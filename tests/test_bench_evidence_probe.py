"""bench/evidence_probe.py: masked spans and whether retrieved passages hold them."""

import sys

import numpy as np
import tensorflow as tf

from tests.conftest import REPO_ROOT

sys.path.insert(0, REPO_ROOT)
from bench import evidence_probe  # noqa: E402  pylint: disable=wrong-import-position


def _inputs(ids):
  ids = tf.constant(ids, tf.int32)
  return dict(input_word_ids=ids, input_mask=tf.cast(ids > 0, tf.int32),
              input_type_ids=tf.zeros_like(ids))


def test_batch_counts_skip_the_null_document_and_compare_with_an_unrelated_batch():
  # [B=2, N=3, C=4]; candidate 0 (the null document) would match but is not counted.
  candidates = [[[101, 5, 6, 102], [101, 1, 2, 102], [101, 5, 6, 102]],
                [[101, 7, 102, 0], [101, 3, 4, 102], [101, 8, 8, 102]]]
  features = dict(candidate_inputs=_inputs(candidates),
                  mlm_positions=tf.constant([[2, 3, 7], [4, 0, 0]]),
                  mlm_targets=tf.constant([[5, 6, 3], [7, 0, 0]]),
                  mlm_mask=tf.constant([[1, 1, 1], [1, 0, 0]]))
  # The unrelated batch has one example, reused for both rows: [3] and [7] occur in it.
  other = dict(candidate_inputs=_inputs([[[101, 102, 102, 0], [101, 3, 9, 7],
                                          [101, 0, 0, 0]]]))
  counts, spans_found = evidence_probe.batch_counts(features, other)
  assert spans_found == [[5, 6], [3], [7]]
  # Example 0: [5, 6] is in its candidate 2, [3] not in its own candidates.
  # Example 1: [7] is only in its own null document.
  assert counts == (3, 1, 2)


def test_passages_holding_counts_whole_wordpiece_runs():
  class Tokenizer:  # whitespace "wordpieces" with ids = their integer values
    @staticmethod
    def tokenize_ids(texts):
      return tf.ragged.constant([[int(w) for w in t.decode().split()] for t in
                                 texts.numpy()], dtype=tf.int32)

  counts = evidence_probe.passages_holding([[12, 3], [3], [1, 2]],
                                           ["12 3 4", "1 2 3", "123", "4 12 3"],
                                           Tokenizer(), batch_size=3)
  # [12, 3] twice; [3] in three blocks (never inside "123"); [1, 2] once.
  assert counts.tolist() == [2, 3, 1]
