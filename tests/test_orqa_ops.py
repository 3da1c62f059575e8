"""Tests of orqa.ops.orqa_ops: HasAnswer and ReaderInputs (`language/orqa/ops/orqa_ops.cc`)."""
import conftest  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow)

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings, strategies as st

from orqa.ops import orqa_ops


def reference_reader_inputs(question, blocks, answers, cls_id, sep_id, seq_len):
  """A loop-by-loop NumPy port of the original C++ kernel (zero-length answers skipped).

  Args:
    question: list of ints.
    blocks: list of (token_ids, token_map) lists.
    answers: list of lists of ints.
  """
  q = len(question)
  rows = {k: [] for k in ("token_ids", "mask", "segment_ids", "block_mask", "token_map")}
  spans = []
  for block, block_map in blocks:
    ids, mask, seg, bmask, tmap = ([0] * seq_len, [0] * seq_len, [0] * seq_len,
                                   [0] * seq_len, [-1] * seq_len)
    seq = []
    for i in range(seq_len):
      qi, bi = i - 1, i - q - 2
      if i == 0 or qi < q or qi == q:
        token = cls_id if i == 0 else (question[qi] if qi < q else sep_id)
        ids[i], mask[i] = token, 1
        seq.append(token)
      elif bi <= len(block):
        if bi == len(block) or i == seq_len - 1:
          ids[i], mask[i], seg[i] = sep_id, 1, 1
          seq.append(sep_id)
        else:
          ids[i], mask[i], seg[i], bmask[i], tmap[i] = block[bi], 1, 1, 1, block_map[bi]
          seq.append(block[bi])
    for name, row in zip(rows, (ids, mask, seg, bmask, tmap)):
      rows[name].append(row)
    found = []
    for answer in answers:
      if not answer:
        continue
      for start in range(q + 2, len(seq) - 1 - len(answer) + 1):
        if seq[start:start + len(answer)] == list(answer):
          found.append((start, start + len(answer) - 1))
    spans.append(found)
  num_gold = max([len(s) for s in spans] + [0])
  gold_starts = [[s[0] for s in f] + [-1] * (num_gold - len(f)) for f in spans]
  gold_ends = [[s[1] for s in f] + [-1] * (num_gold - len(f)) for f in spans]
  rows = {k: np.array(v, np.int32).reshape([len(blocks), seq_len]) for k, v in rows.items()}
  rows["gold_starts"] = np.array(gold_starts, np.int32).reshape([len(blocks), num_gold])
  rows["gold_ends"] = np.array(gold_ends, np.int32).reshape([len(blocks), num_gold])
  return rows


def _pad(rows, width=None):
  width = max([len(r) for r in rows] + [0]) if width is None else width
  return np.array([list(r) + [0] * (width - len(r)) for r in rows], np.int32).reshape(
      [len(rows), width])


def _run(question, blocks, answers, cls_id=10, sep_id=11, seq_len=10):
  block_ids = [b for b, _ in blocks]
  outputs = orqa_ops.reader_inputs(
      question_token_ids=tf.constant(question, tf.int32, shape=[len(question)]),
      block_token_ids=_pad(block_ids),
      block_lengths=[len(b) for b in block_ids],
      block_token_map=_pad([m for _, m in blocks]),
      answer_token_ids=_pad(answers),
      answer_lengths=tf.constant([len(a) for a in answers], tf.int32,
                                 shape=[len(answers)]),
      cls_token_id=cls_id, sep_token_id=sep_id, max_sequence_len=seq_len)
  return {k: v.numpy() for k, v in outputs._asdict().items()}


def _assert_equal(actual, expected):
  assert set(actual) == set(expected)
  for name in expected:
    np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)


# ---------------------------------------------------------------------------- HasAnswer


def test_has_answer_original_test_vector():
  result = orqa_ops.has_answer(blocks=["abcdefg", "hijklmn"], answers=["hij"])
  np.testing.assert_array_equal(result.numpy(), [False, True])


def test_has_answer_is_a_case_sensitive_literal_substring_test():
  blocks = ["The answer is a.c", "abc", "x(y)+z", "Back\\slash", "Paris", "ÉCOLE été"]
  assert orqa_ops.has_answer(blocks, ["a.c"]).numpy().tolist() == [
      True, False, False, False, False, False]
  assert orqa_ops.has_answer(blocks, ["(y)+"]).numpy().tolist() == [
      False, False, True, False, False, False]
  assert orqa_ops.has_answer(blocks, ["k\\s"]).numpy().tolist() == [
      False, False, False, True, False, False]
  assert orqa_ops.has_answer(blocks, ["paris"]).numpy().tolist() == [False] * 6
  assert orqa_ops.has_answer(blocks, ["été", "zzz"]).numpy().tolist() == [False] * 5 + [True]
  assert orqa_ops.has_answer(["line one\nline two"], ["one\nline"]).numpy().tolist() == [True]


def test_has_answer_on_invalid_utf8():
  blocks = [b"\xff abc", b"\xfe\xff", b"x\xe2\x82abc", b"ab\xffc"]
  assert orqa_ops.has_answer(blocks, ["abc"]).numpy().tolist() == [True, False, True, False]
  # An answer that is not UTF-8 compiles (its bad bytes become U+FFFD) and never matches
  # a block without U+FFFD.
  assert orqa_ops.has_answer(blocks, [b"\xff", b"x"]).numpy().tolist() == [
      False, False, True, False]


def test_has_answer_ignores_empty_answers():
  blocks = ["abc", "def"]
  assert orqa_ops.has_answer(blocks, [""]).numpy().tolist() == [False, False]
  assert orqa_ops.has_answer(blocks, tf.constant([], tf.string)).numpy().tolist() == [
      False, False]
  assert orqa_ops.has_answer(blocks, ["", "e"]).numpy().tolist() == [False, True]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="ab.*(|\\é", max_size=8), min_size=1, max_size=4),
       st.lists(st.text(alphabet="ab.*(|\\é", max_size=3), max_size=3))
def test_has_answer_matches_python_substring(blocks, answers):
  expected = [any(a and a in b for a in answers) for b in blocks]
  actual = orqa_ops.has_answer(blocks, tf.constant(answers, tf.string, shape=[len(answers)]))
  assert actual.numpy().tolist() == expected


def test_has_answer_batch():
  blocks = [["abc", "def", "ghi"], ["abc", "xyz", "q"]]
  answers = tf.ragged.constant([["e", "i"], ["xy"]])
  np.testing.assert_array_equal(orqa_ops.has_answer_batch(blocks, answers).numpy(),
                                [[False, True, True], [False, True, False]])
  padded = tf.constant([["e", "i"], ["xy", ""]])
  np.testing.assert_array_equal(orqa_ops.has_answer_batch(blocks, padded).numpy(),
                                [[False, True, True], [False, True, False]])


# ---------------------------------------------------------------------------- ReaderInputs


def test_reader_inputs_original_test_vector():
  outputs = orqa_ops.reader_inputs(
      question_token_ids=[0, 1], block_token_ids=[[2, 3, 4], [5, 6, 0]],
      block_lengths=[3, 2], block_token_map=[[1, 2, 5], [1, 3, 4]],
      answer_token_ids=[[3, 4], [7, 0]], answer_lengths=[2, 1], cls_token_id=10,
      sep_token_id=11, max_sequence_len=10)
  expected = dict(
      token_ids=[[10, 0, 1, 11, 2, 3, 4, 11, 0, 0], [10, 0, 1, 11, 5, 6, 11, 0, 0, 0]],
      mask=[[1] * 8 + [0] * 2, [1] * 7 + [0] * 3],
      segment_ids=[[0, 0, 0, 0, 1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1, 1, 0, 0, 0]],
      block_mask=[[0, 0, 0, 0, 1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 1, 1, 0, 0, 0, 0]],
      token_map=[[-1, -1, -1, -1, 1, 2, 5, -1, -1, -1],
                 [-1, -1, -1, -1, 1, 3, -1, -1, -1, -1]],
      gold_starts=[[5], [-1]], gold_ends=[[6], [-1]])
  for name, value in expected.items():
    tensor = getattr(outputs, name)
    assert tensor.dtype == tf.int32, name
    np.testing.assert_array_equal(tensor.numpy(), value, err_msg=name)


def test_reader_inputs_overlapping_and_repeated_occurrences():
  # Block 5 5 5 5: answer [5, 5] occurs at three overlapping places, [5] at four; spans
  # are listed by answer, then position.
  out = _run([1], [([5, 5, 5, 5], [0, 1, 2, 3]), ([6, 5], [0, 1])], [[5, 5], [5]],
             seq_len=12)
  np.testing.assert_array_equal(out["gold_starts"],
                                [[3, 4, 5, 3, 4, 5, 6], [4, -1, -1, -1, -1, -1, -1]])
  np.testing.assert_array_equal(out["gold_ends"],
                                [[4, 5, 6, 3, 4, 5, 6], [4, -1, -1, -1, -1, -1, -1]])


def test_reader_inputs_answers_absent_give_no_gold_columns():
  out = _run([1, 2], [([3, 4], [0, 1]), ([5], [0])], [[9], [3, 5]])
  assert out["gold_starts"].shape == (2, 0)
  assert out["gold_ends"].shape == (2, 0)


def test_reader_inputs_answer_is_not_found_in_question_or_across_the_final_sep():
  # The answer [1] is only in the question; [4, 11] would run into the final [SEP].
  out = _run([1], [([3, 4], [0, 1])], [[1], [4, 11]], sep_id=11)
  assert out["gold_starts"].shape == (1, 0)


def test_reader_inputs_zero_length_answers_are_skipped():
  out = _run([1], [([3, 4], [0, 1])], [[], [4], []])
  np.testing.assert_array_equal(out["gold_starts"], [[4]])
  np.testing.assert_array_equal(out["gold_ends"], [[4]])
  # Only empty answers (the original's prediction-time placeholder): no gold spans.
  out = _run([1], [([3, 4], [0, 1])], [[]])
  assert out["gold_starts"].shape == (1, 0)
  out = _run([1], [([3, 4], [0, 1])], [])
  assert out["gold_starts"].shape == (1, 0)


def test_reader_inputs_truncates_the_block_not_the_question():
  question = [1, 2, 3]
  block = list(range(20, 30))
  out = _run(question, [(block, list(range(10)))], [[27], [24, 25]], seq_len=10)
  # [CLS] 1 2 3 [SEP] 20 21 22 23 [SEP]
  np.testing.assert_array_equal(out["token_ids"], [[10, 1, 2, 3, 11, 20, 21, 22, 23, 11]])
  np.testing.assert_array_equal(out["mask"], [[1] * 10])
  np.testing.assert_array_equal(out["block_mask"], [[0] * 5 + [1] * 4 + [0]])
  np.testing.assert_array_equal(out["segment_ids"], [[0] * 5 + [1] * 5])
  np.testing.assert_array_equal(out["token_map"], [[-1] * 5 + [0, 1, 2, 3, -1]])
  # 27 was truncated away; 24 25 is cut by the final [SEP].
  assert out["gold_starts"].shape == (1, 0)


def test_reader_inputs_long_question_leaves_no_room_for_the_block():
  question = list(range(1, 9))  # q = 8: [CLS] q [SEP] fills L = 10.
  out = _run(question, [([20, 21], [0, 1])], [[20]], seq_len=10)
  np.testing.assert_array_equal(out["token_ids"], [[10] + question + [11]])
  np.testing.assert_array_equal(out["block_mask"], [[0] * 10])
  np.testing.assert_array_equal(out["segment_ids"], [[0] * 10])
  assert out["gold_starts"].shape == (1, 0)
  # q = 7: only the block's [SEP] fits.
  out = _run(question[:7], [([20, 21], [0, 1])], [[20]], seq_len=10)
  np.testing.assert_array_equal(out["token_ids"], [[10] + question[:7] + [11, 11]])
  np.testing.assert_array_equal(out["segment_ids"], [[0] * 9 + [1]])


def test_reader_inputs_accepts_ragged_inputs():
  dense = orqa_ops.reader_inputs([0, 1], [[2, 3, 4], [5, 6, 0]], [3, 2], [[1, 2, 5], [1, 3, 4]],
                            [[3, 4], [7, 0]], [2, 1], 10, 11, 10)
  ragged = orqa_ops.reader_inputs(
      [0, 1], tf.ragged.constant([[2, 3, 4], [5, 6]]), None,
      tf.ragged.constant([[1, 2, 5], [1, 3]]), tf.ragged.constant([[3, 4], [7]]), None,
      10, 11, 10)
  for a, b in zip(dense, ragged):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


_ids = st.integers(min_value=0, max_value=4)


@settings(max_examples=80, deadline=None)
@given(question=st.lists(_ids, max_size=5),
       blocks=st.lists(st.lists(_ids, max_size=9), min_size=1, max_size=3),
       answers=st.lists(st.lists(_ids, max_size=3), max_size=3),
       seq_len=st.integers(min_value=3, max_value=14))
def test_reader_inputs_matches_reference_kernel(question, blocks, answers, seq_len):
  blocks = [(b, [100 + i for i in range(len(b))]) for b in blocks]
  expected = reference_reader_inputs(question, blocks, answers, 7, 8, seq_len)
  _assert_equal(_run(question, blocks, answers, cls_id=7, sep_id=8, seq_len=seq_len),
                expected)


def test_reader_inputs_batch_equals_per_question():
  rng = np.random.default_rng(0)
  questions, blocks, maps, answers = [], [], [], []
  for _ in range(4):
    questions.append(rng.integers(0, 5, rng.integers(0, 4)).tolist())
    bs = [rng.integers(0, 4, rng.integers(0, 12)).tolist() for _ in range(3)]
    blocks.append(bs)
    maps.append([list(range(len(b))) for b in bs])
    answers.append([rng.integers(0, 4, rng.integers(0, 3)).tolist()
                    for _ in range(rng.integers(0, 4))])
  batched = orqa_ops.reader_inputs_batch(
      tf.ragged.constant(questions, tf.int32), tf.ragged.constant(blocks, tf.int32),
      tf.ragged.constant(maps, tf.int32),
      tf.ragged.constant(answers, tf.int32, ragged_rank=2), 7, 8, 12)
  num_gold = batched.gold_starts.shape[-1]
  for b in range(4):
    single = reference_reader_inputs(questions[b], list(zip(blocks[b], maps[b])),
                                     answers[b], 7, 8, 12)
    for name in ("token_ids", "mask", "segment_ids", "block_mask", "token_map"):
      np.testing.assert_array_equal(getattr(batched, name)[b].numpy(), single[name])
    for name in ("gold_starts", "gold_ends"):
      padded = np.full([3, num_gold], -1, np.int32)
      padded[:, :single[name].shape[1]] = single[name]
      np.testing.assert_array_equal(getattr(batched, name)[b].numpy(), padded)


def test_reader_inputs_batch_runs_in_a_graph_with_unknown_shapes():
  spec = tf.TensorSpec([None, None], tf.int32)
  block_spec = tf.TensorSpec([None, None, None], tf.int32)

  @tf.function(input_signature=[spec, tf.TensorSpec([None], tf.int32), block_spec,
                                tf.TensorSpec([None, None], tf.int32), block_spec,
                                block_spec, tf.TensorSpec([None, None], tf.int32)])
  def build(questions, question_lengths, blocks, block_lengths, maps, answers,
            answer_lengths):
    return orqa_ops.reader_inputs_batch(
        questions, blocks, maps, answers, 10, 11, 10, question_lengths=question_lengths,
        block_lengths=block_lengths, answer_lengths=answer_lengths)

  out = build(tf.constant([[0, 1]]), tf.constant([2]),
              tf.constant([[[2, 3, 4], [5, 6, 0]]]), tf.constant([[3, 2]]),
              tf.constant([[[1, 2, 5], [1, 3, 4]]]), tf.constant([[[3, 4], [7, 0]]]),
              tf.constant([[2, 1]]))
  np.testing.assert_array_equal(out.gold_starts.numpy(), [[[5], [-1]]])
  np.testing.assert_array_equal(out.token_map.numpy()[0, 1],
                                [-1, -1, -1, -1, 1, 3, -1, -1, -1, -1])


def test_reader_inputs_rejects_lengths_beyond_the_tensor():
  with pytest.raises(tf.errors.InvalidArgumentError, match="block_lengths"):
    orqa_ops.reader_inputs([0], [[2, 3]], [3], [[0, 1]], [[2]], [1], 10, 11, 10)
  with pytest.raises(ValueError, match="lengths"):
    orqa_ops.reader_inputs([0], [[2, 3]], None, [[0, 1]], [[2]], [1], 10, 11, 10)
