"""Tests of orqa.models.losses against NumPy references (the original `compute_loss`)."""
import conftest  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow)

import numpy as np
import tensorflow as tf

from orqa.models import losses


def np_logsumexp(x, axis=-1):
  m = np.max(x, axis=axis, keepdims=True)
  return np.squeeze(m, axis) + np.log(np.sum(np.exp(x - m), axis=axis))


def np_marginal_log_loss(logits, correct):
  """The original formula, then the any(correct) mask."""
  logits = logits.astype(np.float64)
  numerator = np_logsumexp(logits + (1.0 - correct) * -10000.0)
  loss = np_logsumexp(logits) - numerator
  return loss * np.any(correct, axis=-1)


def test_marginal_log_loss_is_minus_log_of_the_correct_probability_mass():
  logits = np.array([1.0, 2.0, 0.5, -1.0], np.float32)
  correct = np.array([True, False, True, False])
  probs = np.exp(logits) / np.exp(logits).sum()
  expected = -np.log(probs[correct].sum())
  np.testing.assert_allclose(losses.marginal_log_loss(logits, correct).numpy(), expected,
                             rtol=1e-5)
  # Unmasked, as the original: about 10000 without a correct entry.
  unmasked = losses.marginal_log_loss(logits, np.zeros(4, bool)).numpy()
  np.testing.assert_allclose(unmasked, 10000.0, rtol=1e-3)


def test_retriever_loss_matches_numpy_including_all_incorrect_questions():
  rng = np.random.default_rng(0)
  logits = rng.normal(scale=3.0, size=[4, 50]).astype(np.float32)
  correct = rng.random([4, 50]) < 0.1
  correct[2] = False  # No correct block in the beam: no loss.
  correct[3] = True
  actual = losses.retriever_loss(logits, correct).numpy()
  np.testing.assert_allclose(actual, np_marginal_log_loss(logits, correct), rtol=1e-5,
                             atol=1e-5)
  assert actual[2] == 0.0
  np.testing.assert_allclose(actual[3], 0.0, atol=1e-5)


def test_reader_loss_marginalizes_over_blocks_and_spans():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=[3, 5, 11]).astype(np.float32)  # [batch, blocks, spans]
  correct = np.zeros([3, 5, 11], bool)
  correct[0, 1, 3] = correct[0, 4, 7] = True  # Gold spans in two blocks.
  correct[1, 0, 0] = True
  actual = losses.reader_loss(logits, correct).numpy()
  expected = np_marginal_log_loss(logits.reshape([3, -1]), correct.reshape([3, -1]))
  np.testing.assert_allclose(actual, expected, rtol=1e-5)
  assert actual[2] == 0.0
  flat = logits[0].reshape(-1)
  np.testing.assert_allclose(
      actual[0], np_logsumexp(flat) - np.log(np.exp(logits[0, 1, 3]) +
                                             np.exp(logits[0, 4, 7])), rtol=1e-5)


def test_compute_losses_sum_and_no_gradient_without_gold():
  rng = np.random.default_rng(2)
  retriever_logits = tf.Variable(rng.normal(size=[2, 8]).astype(np.float32))
  reader_logits = tf.Variable(rng.normal(size=[2, 3, 6]).astype(np.float32))
  retriever_correct = np.array([[False, True] + [False] * 6, [False] * 8])
  reader_correct = np.zeros([2, 3, 6], bool)
  reader_correct[0, 2, 5] = True
  with tf.GradientTape() as tape:
    out = losses.compute_losses(retriever_logits, retriever_correct, reader_logits,
                                reader_correct)
    total = tf.reduce_mean(out.loss)
  np.testing.assert_allclose(out.loss.numpy(),
                             out.retriever_loss.numpy() + out.reader_loss.numpy())
  np.testing.assert_allclose(
      out.retriever_loss.numpy(),
      np_marginal_log_loss(retriever_logits.numpy(), retriever_correct), rtol=1e-5)
  np.testing.assert_allclose(
      out.reader_loss.numpy(),
      np_marginal_log_loss(reader_logits.numpy().reshape([2, -1]),
                           reader_correct.reshape([2, -1])), rtol=1e-5)
  grad_retriever, grad_reader = tape.gradient(total, [retriever_logits, reader_logits])
  # Question 1 has no correct block or span: its logits get no gradient.
  assert not np.any(grad_retriever.numpy()[1])
  assert not np.any(grad_reader.numpy()[1])
  assert np.any(grad_retriever.numpy()[0]) and np.any(grad_reader.numpy()[0])
  # d loss / d logits = softmax - posterior over the correct entries (mean over 2).
  logits = retriever_logits.numpy()[0].astype(np.float64)
  softmax = np.exp(logits) / np.exp(logits).sum()
  posterior = np.where(retriever_correct[0], softmax, 0.0)
  posterior /= posterior.sum()
  np.testing.assert_allclose(grad_retriever.numpy()[0], (softmax - posterior) / 2,
                             atol=1e-6)


def test_masked_span_logits_do_not_count():
  # A span masked with -10000 (outside the block) adds nothing to the denominator.
  logits = np.array([[2.0, 1.0, -10000.0]], np.float32)
  correct = np.array([[True, False, False]])
  expected = np.log(np.exp(2.0) + np.exp(1.0)) - 2.0
  np.testing.assert_allclose(losses.retriever_loss(logits, correct).numpy(), [expected],
                             rtol=1e-5)
