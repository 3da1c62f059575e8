"""Tests of orqa.data.reader_features: text to reader inputs with gold spans, and back."""
import conftest  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow)

import numpy as np
import tensorflow as tf

from orqa.models import answer_text
from orqa.ops import orqa_ops
from orqa.data import reader_features
from orqa.data import answer_spans

QUESTIONS = ["when was the eiffel tower built", "where is the nile"]
BLOCKS = [["The Eiffel Tower was built in 1889 in Paris.", "Paris is a city in France."],
          ["The Nile river.", "Cafe au lait"]]


def test_featurize_lays_out_inputs_and_gold_spans(tiny_tokenizer):
  # "river of nile" is absent; the empty answer is ignored; "nile" follows
  # [CLS] [UNK] is the nile [SEP] the.
  answers = tf.ragged.constant([["1889", "Paris"], ["river of nile", "", "nile"]])
  features = reader_features.featurize(QUESTIONS, BLOCKS, answers, tiny_tokenizer, 20)
  inputs = features.inputs
  assert inputs.token_ids.shape == (2, 2, 20)
  # [CLS] [UNK] was the eiffel tower built [SEP] the eiffel tower was built in 1889 ...
  assert tiny_tokenizer.convert_ids_to_tokens(inputs.token_ids[0, 0, :9]) == [
      "[CLS]", "[UNK]", "was", "the", "eiffel", "tower", "built", "[SEP]", "the"]
  np.testing.assert_array_equal(inputs.gold_starts.numpy(),
                                [[[14, 16], [8, -1]], [[7, -1], [-1, -1]]])
  np.testing.assert_array_equal(inputs.gold_ends.numpy(),
                                [[[14, 16], [8, -1]], [[7, -1], [-1, -1]]])
  # The same as the one-question op on the same wordpieces.
  mapping = answer_text.tokenize_with_original_mapping(BLOCKS[0], tiny_tokenizer)
  single = orqa_ops.reader_inputs(
      tiny_tokenizer.tokenize_ids([QUESTIONS[0]])[0], mapping.wordpiece_ids, None,
      mapping.token_map, tiny_tokenizer.tokenize_ids(["1889", "Paris"]), None,
      tiny_tokenizer.cls_id, tiny_tokenizer.sep_id, 20)
  for name in ("token_ids", "mask", "segment_ids", "block_mask", "token_map",
               "gold_starts"):
    np.testing.assert_array_equal(getattr(inputs, name)[0].numpy(),
                                  getattr(single, name).numpy(), err_msg=name)
  assert features.orig_tokens[1, 0].numpy().tolist() == [b"The", b"Nile", b"river", b"."]
  assert features.normalized_blocks.numpy()[1, 1] == b"cafe au lait"


def test_predicted_span_maps_back_to_the_original_text(tiny_tokenizer):
  features = reader_features.featurize(QUESTIONS[:1], BLOCKS[:1], None, tiny_tokenizer, 24)
  assert features.inputs.gold_starts.shape == (1, 2, 0)
  starts, ends, span_mask = answer_spans.span_candidates(features.inputs.block_mask)
  # Logits that prefer the span "1889" (position 14) of block 0.
  logits = tf.where(tf.logical_and(tf.equal(starts, 14), tf.equal(ends, 14)), 5.0, 0.0)
  logits = tf.broadcast_to(logits, span_mask.shape) + (
      1.0 - tf.cast(span_mask, tf.float32)) * -10000.0
  block_index, candidate = answer_spans.predict_span(logits)
  assert (int(block_index[0]), int(candidate[0])) == (0, 14)
  token_map = features.inputs.token_map[0, int(block_index[0])]
  orig_start = int(token_map[int(starts[int(candidate[0])])])
  orig_end = int(token_map[int(ends[int(candidate[0])])])
  wordpieces = tiny_tokenizer.convert_ids_to_tokens(
      features.inputs.token_ids[0, 0, 14:15].numpy())
  orig_tokens = features.orig_tokens[0, 0].numpy().tolist()
  assert answer_text.predicted_answer(orig_tokens, orig_start, orig_end, wordpieces,
                                      True) == "1889"


def test_featurize_with_padded_answers_in_a_graph(tiny_tokenizer):
  @tf.function
  def run(questions, blocks, answers):
    return reader_features.featurize(questions, blocks, answers, tiny_tokenizer, 20)

  features = run(tf.constant(QUESTIONS), tf.constant(BLOCKS),
                 tf.constant([["1889", "Paris"], ["nile", ""]]))
  np.testing.assert_array_equal(features.inputs.gold_starts.numpy()[1], [[7, -1], [-1, -1]])
