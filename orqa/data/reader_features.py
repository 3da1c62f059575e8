"""Reader features from text: the first steps of the ORQA reader, for a batch.

As the `read` function of `language/orqa/models/orqa_model.py` up to its `ReaderInputs`
op (tokenization with the original-token map, answers, reader inputs and gold spans).

Questions, their retrieved block texts and their answers (strings) become the reader
inputs `[CLS] question [SEP] block [SEP]` with gold spans, plus what is needed to turn a
predicted span back into text (original tokens and the wordpiece-to-token map).
"""

import collections

import tensorflow as tf

from orqa.models import answer_text
from orqa.ops import orqa_ops

ReaderFeatures = collections.namedtuple(
    "ReaderFeatures", ["inputs", "orig_tokens", "normalized_blocks"])
ReaderFeatures.__doc__ = """Reader features of a batch.

inputs: `orqa_ops.ReaderInputs` with [batch_size, num_blocks, max_sequence_len] tensors and
  gold_starts / gold_ends [batch_size, num_blocks, num_gold].
orig_tokens: string RaggedTensor [batch_size, num_blocks, (num_orig_tokens)].
normalized_blocks: string [batch_size, num_blocks].
"""


def as_ragged_answers(answers, batch_size) -> tf.RaggedTensor:
  """Answers as a string RaggedTensor [batch_size, (num_answers)].

  Accepts a RaggedTensor, a dense string tensor padded with "" (empty answers are ignored
  by the ops), or None (prediction: no answers).
  """
  if answers is None:
    return tf.RaggedTensor.from_row_lengths(tf.zeros([0], tf.string),
                                            tf.zeros([batch_size], tf.int64))
  if isinstance(answers, tf.RaggedTensor):
    return answers
  return tf.RaggedTensor.from_tensor(tf.convert_to_tensor(answers, tf.string))


def featurize(questions, blocks, answers, tokenizer, max_sequence_len: int,
              ) -> ReaderFeatures:
  """Tokenizes and lays out the reader inputs of B questions with R blocks each.

  Args:
    questions: string [batch_size].
    blocks: string [batch_size, num_blocks], the retrieved block texts.
    answers: string RaggedTensor [batch_size, (num_answers)], a dense string tensor
      [batch_size, max_answers] padded with "", or None (prediction: no gold spans).
    tokenizer: the reader's `realm_tf.tokenization.Tokenizer`.
    max_sequence_len: reader sequence length (the original's reader_seq_len, 320).

  Returns:
    ReaderFeatures.
  """
  questions = tf.convert_to_tensor(questions, tf.string)
  blocks = tf.convert_to_tensor(blocks, tf.string)
  batch_size = tf.shape(blocks, out_type=tf.int64)[0]
  num_blocks = tf.shape(blocks, out_type=tf.int64)[1]

  answers = as_ragged_answers(answers, batch_size)

  # One tokenizer call for blocks, questions and answers (a third of the graph), with the
  # same text cleaning for all, so answer wordpieces match block wordpieces.
  flat_blocks = tf.reshape(blocks, [-1])  # [B * R]
  num_flat_blocks = tf.size(flat_blocks, out_type=tf.int64)
  mapping = answer_text.tokenize_with_original_mapping(
      tf.concat([flat_blocks, questions, answers.flat_values], 0), tokenizer)
  wordpiece_ids = mapping.wordpiece_ids  # [B * R + B + num_answers, (pieces)]
  question_ids = wordpiece_ids[num_flat_blocks:num_flat_blocks + batch_size]  # [B, (q)]
  answer_ids = tf.RaggedTensor.from_row_splits(
      wordpiece_ids[num_flat_blocks + batch_size:], answers.row_splits)  # [B, (A), (n)]

  def per_block(ragged):  # [B * R + ..., (n)] -> [B, R, (n)]
    return tf.RaggedTensor.from_uniform_row_length(ragged[:num_flat_blocks], num_blocks)

  inputs = orqa_ops.reader_inputs_batch(
      question_token_ids=question_ids,
      block_token_ids=per_block(mapping.wordpiece_ids),
      block_token_map=per_block(mapping.token_map),
      answer_token_ids=answer_ids,
      cls_token_id=tokenizer.cls_id,
      sep_token_id=tokenizer.sep_id,
      max_sequence_len=max_sequence_len)
  normalized = tf.reshape(mapping.normalized_text[:num_flat_blocks], tf.shape(blocks))
  return ReaderFeatures(inputs=inputs, orig_tokens=per_block(mapping.orig_tokens),
                        normalized_blocks=normalized)
