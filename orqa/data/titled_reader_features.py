"""Reader features `[CLS] question [SEP] title [SEP] block [SEP]`: the reader sees titles.

The original reader input had no title (`[CLS] question [SEP] block [SEP]`,
`language/orqa/ops/orqa_ops.cc`), although a block's title often names what the block is
about. Here each block's title wordpieces and a [SEP] are appended to the question part
of the original `ReaderInputs` layout, so:

* the question is never truncated (as the original), then comes the title in full, and
  the block is truncated so that its final [SEP] fits;
* `block_mask`, `token_map` and the gold spans cover the block only: spans are never
  predicted in (nor gold spans found in) the title;
* segment ids are 0 for `[CLS] question [SEP]` and 1 for `title [SEP] block [SEP]`
  (the title belongs to the passage, as in the candidate inputs `[CLS] title [SEP] body`).

With `include_titles=False` this is exactly `orqa.data.reader_features.featurize`.
"""

import tensorflow as tf

from orqa.models import answer_text
from orqa.ops import orqa_ops
from orqa.data import reader_features
from orqa.data.reader_features import ReaderFeatures


def _repeat_rows(ragged, times):
  """[B, ...] -> [B * times, ...], each row repeated `times` times consecutively."""
  num_rows = tf.shape(ragged.row_splits, out_type=tf.int64)[0] - 1
  return tf.gather(ragged, tf.repeat(tf.range(num_rows), times))


def featurize(questions, titles, blocks, answers, tokenizer, max_sequence_len: int,
              include_titles: bool = True) -> ReaderFeatures:
  """Tokenizes and lays out the reader inputs of B questions with R titled blocks each.

  Args:
    questions: string [batch_size].
    titles: string [batch_size, num_blocks], the retrieved blocks' titles.
    blocks: string [batch_size, num_blocks], the retrieved block texts.
    answers: string RaggedTensor [batch_size, (num_answers)], a dense string tensor
      [batch_size, max_answers] padded with "", or None (prediction: no gold spans).
    tokenizer: the reader's `realm_tf.tokenization.Tokenizer`.
    max_sequence_len: reader sequence length L (the original's reader_seq_len, 320).
    include_titles: False gives the original layout without titles.

  Returns:
    `reader_features.ReaderFeatures`: inputs [batch_size, num_blocks, L] (gold spans
    [batch_size, num_blocks, num_gold]), orig_tokens [batch_size, num_blocks, (n)] and
    normalized_blocks [batch_size, num_blocks].
  """
  if not include_titles:
    return reader_features.featurize(questions, blocks, answers, tokenizer,
                                     max_sequence_len)
  questions = tf.convert_to_tensor(questions, tf.string)
  blocks = tf.convert_to_tensor(blocks, tf.string)
  titles = tf.convert_to_tensor(titles, tf.string)
  batch_size = tf.shape(blocks, out_type=tf.int64)[0]
  num_blocks = tf.shape(blocks, out_type=tf.int64)[1]
  answers = reader_features.as_ragged_answers(answers, batch_size)

  flat_blocks = tf.reshape(blocks, [-1])  # [B * R]
  flat_titles = tf.reshape(titles, [-1])  # [B * R]
  num_flat = tf.size(flat_blocks, out_type=tf.int64)
  # One tokenizer call with one text cleaning for blocks, titles, questions and answers.
  mapping = answer_text.tokenize_with_original_mapping(
      tf.concat([flat_blocks, flat_titles, questions, answers.flat_values], 0), tokenizer)
  pieces = mapping.wordpiece_ids  # [2 * B * R + B + num_answers, (n)]
  title_ids = pieces[num_flat:2 * num_flat]  # [B * R, (t)]
  question_ids = pieces[2 * num_flat:2 * num_flat + batch_size]  # [B, (q)]
  answer_ids = tf.RaggedTensor.from_row_splits(
      pieces[2 * num_flat + batch_size:], answers.row_splits)  # [B, (A), (n)]

  # Every block becomes a one-block "question" `q [SEP] title` of its own.
  sep = tf.RaggedTensor.from_tensor(
      tf.fill(tf.stack([num_flat, tf.constant(1, tf.int64)]), tokenizer.sep_id))
  extended_questions = tf.concat(
      [_repeat_rows(question_ids, num_blocks), sep, title_ids], axis=1)  # [B * R, (q+1+t)]

  def one_block_each(ragged):  # [B * R, (n)] -> [B * R, 1, (n)]
    return tf.RaggedTensor.from_uniform_row_length(ragged[:num_flat], 1)

  flat_inputs = orqa_ops.reader_inputs_batch(
      question_token_ids=extended_questions,
      block_token_ids=one_block_each(mapping.wordpiece_ids),
      block_token_map=one_block_each(mapping.token_map),
      answer_token_ids=_repeat_rows(answer_ids, num_blocks),
      cls_token_id=tokenizer.cls_id,
      sep_token_id=tokenizer.sep_id,
      max_sequence_len=max_sequence_len)  # [B * R, 1, ...]

  def per_question(t):  # [B * R, 1, n] -> [B, R, n]
    return tf.reshape(t, tf.stack([batch_size, num_blocks, -1]))

  inputs = orqa_ops.ReaderInputs(*[per_question(t) for t in flat_inputs])
  # Segment 1 from the title on: positions >= len([CLS] q [SEP]) that are not padding.
  question_lengths = tf.cast(question_ids.row_lengths(), tf.int32)  # [B]
  positions = tf.range(max_sequence_len, dtype=tf.int32)  # [L]
  in_passage = positions[tf.newaxis, tf.newaxis, :] >= (
      question_lengths[:, tf.newaxis, tf.newaxis] + 2)  # [B, 1, L]
  segment_ids = tf.where(in_passage, inputs.mask, tf.zeros_like(inputs.mask))
  inputs = inputs._replace(segment_ids=segment_ids)

  normalized = tf.reshape(mapping.normalized_text[:num_flat], tf.shape(blocks))
  orig_tokens = tf.RaggedTensor.from_uniform_row_length(
      mapping.orig_tokens[:num_flat], num_blocks)  # [B, R, (n)]
  return ReaderFeatures(inputs=inputs, orig_tokens=orig_tokens, normalized_blocks=normalized)
