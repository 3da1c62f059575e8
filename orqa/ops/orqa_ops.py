"""TF2 replacements of ORQA's custom C++ ops `HasAnswer` and `ReaderInputs`
(`language/orqa/ops/orqa_ops.cc`).

Both are built from core TensorFlow ops (regex matching, gathers, a `tf.while_loop`), so
they run eagerly, in `tf.function`s, in `tf.data` and in exported SavedModels, on any
device. Each has the original's one-question signature and a batched variant for B
questions at once (the original ran one question per step).

Deliberate difference from the original (docs/DIFFERENCES.md): empty answers are
ignored. The original turned the prediction-time placeholder answer `""` into a "gold
span" of length zero at every block position and into `has_answer == True` everywhere.
"""

import collections

import tensorflow as tf

ReaderInputs = collections.namedtuple(
    "ReaderInputs",
    ["token_ids", "mask", "segment_ids", "block_mask", "token_map", "gold_starts",
     "gold_ends"])
ReaderInputs.__doc__ = """Reader features of the `ReaderInputs` op.

token_ids, mask, segment_ids, block_mask, token_map: int32 [..., num_blocks, max_seq_len]
  for `[CLS] question [SEP] block [SEP]` (token_map: the original-token index of each
  block wordpiece, -1 elsewhere).
gold_starts, gold_ends: int32 [..., num_blocks, num_gold], inclusive absolute positions
  of every occurrence of every answer in the block part, padded with -1; num_gold is the
  largest count over the blocks (may be 0).
"""

# ASCII punctuation: every RE2 metacharacter is among these, and RE2 reads `\` followed
# by any punctuation character as that literal character.
_ASCII_PUNCTUATION = r"([!-/:-@\[-`{-~])"


def _answers_pattern(answers):
  """An RE2 pattern matching any of the non-empty `answers` literally ("(?:)" for none).

  Args:
    answers: string [num_answers]. Invalid UTF-8 (which RE2 cannot compile) is replaced
      by U+FFFD.
  """
  answers = tf.convert_to_tensor(answers, tf.string)
  answers = tf.strings.unicode_transcode(answers, "UTF-8", "UTF-8", errors="replace")
  nonempty = tf.boolean_mask(answers, tf.strings.length(answers) > 0)
  escaped = tf.strings.regex_replace(nonempty, _ASCII_PUNCTUATION, r"\\\1")
  return tf.strings.join(["(?:", tf.strings.reduce_join(escaped, separator="|"), ")"])


def has_answer(blocks, answers):
  """Whether each block contains one of the answers as a byte substring (HasAnswer).

  Case-sensitive and without normalization, as the original. Empty answers are ignored.
  Implemented as a regex search for the escaped answers: a block changes under
  `regex_replace` exactly when one of them occurs in it (this also works on blocks that
  are not valid UTF-8).

  Args:
    blocks: string [num_blocks].
    answers: string [num_answers].

  Returns:
    bool [num_blocks].
  """
  blocks = tf.convert_to_tensor(blocks, tf.string)
  removed = tf.strings.regex_replace(blocks, _answers_pattern(answers), "",
                                     replace_global=False)
  return tf.not_equal(tf.strings.length(removed), tf.strings.length(blocks))


def has_answer_batch(blocks, answers):
  """`has_answer` for a batch of questions.

  Args:
    blocks: string [batch_size, num_blocks].
    answers: string RaggedTensor [batch_size, (num_answers)], or a dense string tensor
      [batch_size, max_answers] padded with "".

  Returns:
    bool [batch_size, num_blocks].
  """
  blocks = tf.convert_to_tensor(blocks, tf.string)
  if isinstance(answers, tf.RaggedTensor):
    answers = answers.to_tensor("")
  answers = tf.convert_to_tensor(answers, tf.string)

  def one_question(args):
    question_blocks, question_answers = args
    return has_answer(question_blocks, question_answers)

  return tf.map_fn(one_question, (blocks, answers),
                   fn_output_signature=tf.TensorSpec([None], tf.bool))


def _dense_and_lengths(values, lengths, name):
  """A dense int32 tensor and the int32 lengths of its last axis.

  Args:
    values: a RaggedTensor whose last axis is ragged (lengths are then derived), or a
      dense tensor with `lengths` of its leading shape.
    lengths: int lengths or None (ragged `values`).
    name: for error messages.
  """
  if isinstance(values, tf.RaggedTensor):
    values = tf.cast(values, tf.int32)
    derived = tf.reduce_sum(tf.ones_like(values), axis=-1)
    if isinstance(derived, tf.RaggedTensor):
      derived = derived.to_tensor(0)
    return values.to_tensor(0), derived
  values = tf.cast(tf.convert_to_tensor(values), tf.int32)
  if lengths is None:
    raise ValueError(f"{name}: a dense tensor needs its lengths.")
  lengths = tf.cast(tf.convert_to_tensor(lengths), tf.int32)
  return values, lengths


def _gather_positions(values, positions):
  """values [..., M] gathered at positions [..., L] clipped to [0, M]; index M gives 0."""
  values = tf.pad(values, [[0, 0]] * (values.shape.rank - 1) + [[0, 1]])
  positions = tf.clip_by_value(positions, 0, tf.shape(values)[-1] - 1)
  return tf.gather(values, positions, batch_dims=values.shape.rank - 1)


def _reader_inputs_batched(questions, question_lengths, blocks, block_lengths, block_map,
                           answers, answer_lengths, cls_id, sep_id, max_sequence_len):
  """The ReaderInputs layout and gold spans for dense, batched inputs.

  Args:
    questions: int32 [B, Q], question_lengths int32 [B].
    blocks, block_map: int32 [B, R, M], block_lengths int32 [B, R].
    answers: int32 [B, A, N], answer_lengths int32 [B, A] (0: ignored).
    cls_id, sep_id: int32 scalars.
    max_sequence_len: python int L.

  Returns:
    ReaderInputs with [B, R, L] and [B, R, G] tensors.
  """
  seq_len = int(max_sequence_len)
  if seq_len < 1:
    raise ValueError(f"max_sequence_len must be positive, got {max_sequence_len}")
  checks = [
      tf.debugging.assert_less_equal(
          block_lengths, tf.shape(blocks)[-1],
          message="block_lengths exceed the width of block_token_ids"),
      tf.debugging.assert_non_negative(block_lengths, message="negative block_lengths"),
      tf.debugging.assert_less_equal(
          answer_lengths, tf.shape(answers)[-1],
          message="answer_lengths exceed the width of answer_token_ids"),
  ]
  with tf.control_dependencies(checks):
    block_lengths = tf.identity(block_lengths)
  batch_size = tf.shape(blocks)[0]
  num_blocks = tf.shape(blocks)[1]

  positions = tf.range(seq_len, dtype=tf.int32)  # [L]
  i = positions[tf.newaxis, tf.newaxis, :]  # [1, 1, L]
  q = question_lengths[:, tf.newaxis, tf.newaxis]  # [B, 1, 1]
  j = i - q - 2  # [B, 1, L], position within the block
  # Block tokens that fit before a final [SEP] at position L - 1 at the latest.
  capacity = tf.maximum(seq_len - 1 - (question_lengths + 2), 0)  # [B]
  kept_lengths = tf.minimum(block_lengths, capacity[:, tf.newaxis])  # [B, R]
  kept = kept_lengths[:, :, tf.newaxis]  # [B, R, 1]

  full_shape = tf.stack([batch_size, num_blocks, seq_len])
  def full(x):
    return tf.broadcast_to(x, full_shape)

  is_cls = full(tf.equal(i, 0))
  is_question = full(tf.logical_and(i >= 1, i <= q))
  is_question_sep = full(tf.equal(i, q + 1))
  is_block = tf.logical_and(j >= 0, j < kept)  # [B, R, L]
  is_block_sep = tf.equal(full(j), kept)  # never at i >= L, since kept <= capacity

  question_tokens = _gather_positions(questions, full(i - 1)[:, 0, :])  # [B, L]
  question_tokens = full(question_tokens[:, tf.newaxis, :])
  block_positions = full(j)
  block_tokens = _gather_positions(blocks, block_positions)  # [B, R, L]
  block_token_map = _gather_positions(block_map, block_positions)  # [B, R, L]

  zeros = tf.zeros(full_shape, tf.int32)
  sep = zeros + sep_id
  token_ids = tf.where(is_cls, zeros + cls_id,
                       tf.where(is_question, question_tokens,
                                tf.where(is_question_sep, sep,
                                         tf.where(is_block, block_tokens,
                                                  tf.where(is_block_sep, sep, zeros)))))
  in_question = is_cls | is_question | is_question_sep
  mask = tf.cast(in_question | is_block | is_block_sep, tf.int32)
  segment_ids = tf.cast(is_block | is_block_sep, tf.int32)
  block_mask = tf.cast(is_block, tf.int32)
  token_map = tf.where(is_block, block_token_map, zeros - 1)

  gold_starts, gold_ends = _gold_spans(token_ids, question_lengths, kept_lengths,
                                       answers, answer_lengths)
  return ReaderInputs(token_ids, mask, segment_ids, block_mask, token_map, gold_starts,
                      gold_ends)


def _gold_spans(token_ids, question_lengths, kept_lengths, answers, answer_lengths):
  """Every occurrence of every non-empty answer inside the block tokens.

  Args:
    token_ids: int32 [B, R, L].
    question_lengths: int32 [B].
    kept_lengths: int32 [B, R], block tokens in the sequence.
    answers: int32 [B, A, N]; answer_lengths int32 [B, A].

  Returns:
    gold_starts, gold_ends: int32 [B, R, G], ordered by answer, then position (as the
    original), padded with -1.
  """
  seq_len = tf.shape(token_ids)[-1]
  batch_size = tf.shape(token_ids)[0]
  num_blocks = tf.shape(token_ids)[1]
  num_answers = tf.shape(answers)[1]
  max_answer_len = tf.shape(answers)[2]
  starts = tf.range(seq_len)[tf.newaxis, tf.newaxis, tf.newaxis, :]  # [1, 1, 1, L]
  lengths = answer_lengths[:, tf.newaxis, :, tf.newaxis]  # [B, 1, A, 1]
  block_start = (question_lengths + 2)[:, tf.newaxis, tf.newaxis, tf.newaxis]  # [B,1,1,1]
  block_end = block_start + kept_lengths[:, :, tf.newaxis, tf.newaxis]  # [B, R, 1, 1]
  # [B, R, A, L]: the whole span lies in the block part.
  valid = (lengths >= 1) & (starts >= block_start) & (starts + lengths <= block_end)

  def body(k, matched):
    # [B, R, L]: the token at start + k.
    tokens = tf.gather(token_ids, tf.minimum(tf.range(seq_len) + k, seq_len - 1), axis=-1)
    expected = answers[:, :, k][:, tf.newaxis, :, tf.newaxis]  # [B, 1, A, 1]
    same = tf.equal(tokens[:, :, tf.newaxis, :], expected) | (k >= lengths)
    return k + 1, matched & same

  _, matched = tf.while_loop(lambda k, _: k < max_answer_len, body,
                             (tf.constant(0), valid))
  # [B * R, A * L], answer-major: tf.where lists matches by answer, then start.
  matched = tf.reshape(matched, [batch_size * num_blocks, num_answers * seq_len])
  where = tf.cast(tf.where(matched), tf.int32)  # [num_matches, 2]
  rows, columns = where[:, 0], where[:, 1]
  span_starts = columns % seq_len
  answer_index = columns // seq_len
  span_lengths = tf.gather(tf.reshape(answer_lengths, [-1]),
                           rows // num_blocks * num_answers + answer_index)
  span_ends = span_starts + span_lengths - 1

  def to_padded(values):
    ragged = tf.RaggedTensor.from_value_rowids(values, rows,
                                               nrows=batch_size * num_blocks)
    dense = ragged.to_tensor(-1)  # [B * R, G]
    return tf.reshape(dense, tf.stack([batch_size, num_blocks, -1]))

  return to_padded(span_starts), to_padded(span_ends)


def reader_inputs(question_token_ids, block_token_ids, block_lengths, block_token_map,
                  answer_token_ids, answer_lengths, cls_token_id, sep_token_id,
                  max_sequence_len):
  """The original `ReaderInputs` op for one question.

  Builds `[CLS] question [SEP] block [SEP]` for every block (the question is never
  truncated; the block is truncated so that its [SEP] fits in max_sequence_len) and finds
  every occurrence, overlapping ones included, of every answer's wordpieces among the
  block tokens.

  Args:
    question_token_ids: int [q].
    block_token_ids: int [R, maxb], or a RaggedTensor [R, (len)] (then block_lengths and
      the lengths of block_token_map are implied and may be None).
    block_lengths: int [R].
    block_token_map: int [R, maxb] (or ragged like block_token_ids).
    answer_token_ids: int [A, maxa], or a RaggedTensor [A, (len)].
    answer_lengths: int [A] (None with ragged answers). Zero-length answers are ignored.
    cls_token_id, sep_token_id: int scalars.
    max_sequence_len: python int L.

  Returns:
    ReaderInputs: five int32 [R, L] tensors, gold_starts/gold_ends int32 [R, G].
  """
  question = tf.cast(tf.convert_to_tensor(question_token_ids), tf.int32)  # [q]
  blocks, lengths = _dense_and_lengths(block_token_ids, block_lengths, "block_token_ids")
  block_map, _ = _dense_and_lengths(block_token_map, lengths, "block_token_map")
  answers, answer_lengths = _dense_and_lengths(answer_token_ids, answer_lengths,
                                               "answer_token_ids")
  outputs = _reader_inputs_batched(
      question[tf.newaxis], tf.shape(question)[:1], blocks[tf.newaxis],
      lengths[tf.newaxis], block_map[tf.newaxis], answers[tf.newaxis],
      answer_lengths[tf.newaxis], tf.cast(cls_token_id, tf.int32),
      tf.cast(sep_token_id, tf.int32), max_sequence_len)
  return ReaderInputs(*[x[0] for x in outputs])


def reader_inputs_batch(question_token_ids, block_token_ids, block_token_map,
                        answer_token_ids, cls_token_id, sep_token_id, max_sequence_len,
                        question_lengths=None, block_lengths=None, answer_lengths=None):
  """`reader_inputs` for B questions, each with R blocks.

  Args:
    question_token_ids: RaggedTensor [B, (q)], or int [B, Q] with `question_lengths` [B].
    block_token_ids: RaggedTensor [B, R, (len)], or int [B, R, maxb] with `block_lengths`
      [B, R].
    block_token_map: like block_token_ids.
    answer_token_ids: RaggedTensor [B, (A), (len)], or int [B, A, maxa] with
      `answer_lengths` [B, A] (0 for padding answers, which are ignored).
    cls_token_id, sep_token_id: int scalars.
    max_sequence_len: python int L.

  Returns:
    ReaderInputs: five int32 [B, R, L] tensors, gold_starts/gold_ends int32 [B, R, G],
    G the largest count over the whole batch.
  """
  questions, question_lengths = _dense_and_lengths(question_token_ids, question_lengths,
                                                   "question_token_ids")
  blocks, lengths = _dense_and_lengths(block_token_ids, block_lengths, "block_token_ids")
  block_map, _ = _dense_and_lengths(block_token_map, lengths, "block_token_map")
  answers, answer_lengths = _dense_and_lengths(answer_token_ids, answer_lengths,
                                               "answer_token_ids")
  return _reader_inputs_batched(
      questions, question_lengths, blocks, lengths, block_map, answers, answer_lengths,
      tf.cast(cls_token_id, tf.int32), tf.cast(sep_token_id, tf.int32), max_sequence_len)
