"""Zero-shot answer recall@k: exact top-k search, answer matching, recall from embeddings."""
import numpy as np
import pytest
import tensorflow as tf

from realm_tf.retrieval import answer_recall


def test_top_k_blocks_is_exact_across_chunks():
  rng = np.random.default_rng(0)
  queries = rng.normal(size=[7, 16]).astype(np.float32)
  blocks = rng.normal(size=[53, 16]).astype(np.float32)
  expected = np.argsort(-(queries @ blocks.T), axis=1, kind="stable")[:, :9]
  for chunk in (5, 13, 53, 1000):
    got = answer_recall.top_k_blocks(tf.constant(queries), tf.constant(blocks), 9, chunk)
    np.testing.assert_array_equal(got, expected)
  assert answer_recall.top_k_blocks(queries, blocks, 100).shape == (7, 53)


def test_answer_matching_is_token_aligned_and_normalized():
  match = answer_recall.make_answer_matcher(["The Nile"], is_regex=False)
  assert match("the nile, at 6,650 km") and match("NILE.")
  assert not match("Nilesh lives here")
  regex = answer_recall.make_answer_matcher([r"19(69|70)"], is_regex=True)
  assert regex("landed in 1969") and not regex("in 1971")


def _recall(texts, questions, answers, question_vectors, block_vectors, ks=(1, 2, 3)):
  vectors = dict(zip(questions, question_vectors))

  def inputs_fn(strings):
    return tf.constant([vectors[s.decode()] for s in strings.numpy()], tf.float32)

  evaluator = answer_recall.ZeroShotRecall(questions, answers, texts, inputs_fn, ks=ks)
  return evaluator(lambda x: x, tf.constant(block_vectors, tf.float32), batch_size=2)


def test_zero_shot_recall_counts_questions_with_an_answer_in_their_top_k():
  texts = ["paris is in france", "the nile flows north", "rome is old", "berlin wall fell"]
  questions = ["q0", "q1", "q2"]
  answers = [["Paris"], ["Nile"], ["Madrid"]]  # q2's answer is in no block
  blocks = np.eye(4, dtype=np.float32)
  # q0 ranks block 0 first; q1 ranks blocks 3, 2, 1 (its answer third); q2 anything.
  question_vectors = [[1, 0, 0, 0], [0, 0.1, 0.2, 0.3], [0.3, 0.2, 0.1, 0]]
  got = _recall(texts, questions, answers, question_vectors, blocks)
  cosine = answer_recall.mean_pairwise_cosine(question_vectors)
  assert got == pytest.approx({"recall@1": 1 / 3, "recall@2": 1 / 3, "recall@3": 2 / 3,
                               "query_cosine": cosine})


def test_mean_pairwise_cosine_detects_collapsed_embeddings():
  rng = np.random.default_rng(0)
  spread = rng.normal(size=(50, 16))
  assert abs(answer_recall.mean_pairwise_cosine(spread)) < 0.1
  collapsed = np.ones((50, 16)) + 0.01 * spread
  assert answer_recall.mean_pairwise_cosine(collapsed) > 0.99
  pair = [[1.0, 0.0], [1.0, 1.0]]  # one pair at 45 degrees
  assert answer_recall.mean_pairwise_cosine(pair) == pytest.approx(2 ** -0.5)
  assert answer_recall.mean_pairwise_cosine([[1.0, 2.0]]) == 0.0


def test_zero_shot_recall_rejects_bad_arguments():
  with pytest.raises(ValueError, match="answer lists"):
    answer_recall.ZeroShotRecall(["q"], [], ["t"], lambda s: s)
  with pytest.raises(ValueError, match="positive"):
    answer_recall.ZeroShotRecall(["q"], [["a"]], ["t"], lambda s: s, ks=(0, 5))
