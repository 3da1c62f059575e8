"""ORQA's training losses as pure functions over batched tensors.

As `compute_loss` of `language/orqa/models/orqa_model.py`:

* The retriever's "early update" loss: the marginal log-likelihood of the blocks of the
  retrieval beam that contain an answer string.
* The reader loss: the marginal log-likelihood of the gold spans over all spans of the
  top `reader_beam_size` blocks (reader logits already include the retriever logit).

Each term is zero for a question without any correct block or span, as the original.
The original computed them for one question; here every function takes a leading batch
dimension and returns per-question losses, to be averaged by the caller (e.g. with
`tf.nn.compute_average_loss` under a distribution strategy).
"""

import collections

import tensorflow as tf

# Added to the logits of incorrect entries in the numerator (the original's mask_to_score).
MASK_SCORE = -10000.0

OrqaLosses = collections.namedtuple("OrqaLosses",
                                    ["loss", "retriever_loss", "reader_loss"])


def mask_to_score(mask):
  """(1 - mask) * -10000 as float32: 0 where mask is true, -10000 where false."""
  return (1.0 - tf.cast(mask, tf.float32)) * MASK_SCORE


def marginal_log_loss(logits, is_correct):
  """-log sum_{correct} softmax(logits), over the last axis (unmasked, as the original).

  logsumexp(logits) - logsumexp(logits + (1 - correct) * -10000). Without any correct
  entry this is about 10000; see `masked_marginal_log_loss`.

  Args:
    logits: float [..., n].
    is_correct: bool or 0/1 [..., n].

  Returns:
    float32 [...].
  """
  logits = tf.cast(logits, tf.float32)
  log_numerator = tf.reduce_logsumexp(logits + mask_to_score(is_correct), axis=-1)
  log_denominator = tf.reduce_logsumexp(logits, axis=-1)
  return log_denominator - log_numerator


def masked_marginal_log_loss(logits, is_correct):
  """`marginal_log_loss` times any(is_correct): zero (and no gradient) without a correct entry."""
  any_correct = tf.reduce_any(tf.cast(is_correct, tf.bool), axis=-1)
  return marginal_log_loss(logits, is_correct) * tf.cast(any_correct, tf.float32)


def retriever_loss(retriever_logits, retriever_correct):
  """The early-update retriever loss per question.

  Args:
    retriever_logits: float [batch_size, retriever_beam_size].
    retriever_correct: bool [batch_size, retriever_beam_size] (`has_answer` of the
      retrieved blocks).

  Returns:
    float32 [batch_size].
  """
  return masked_marginal_log_loss(retriever_logits, retriever_correct)


def reader_loss(reader_logits, reader_correct_spans):
  """The marginal reader loss per question, over all spans of all read blocks.

  Args:
    reader_logits: float [batch_size, reader_beam_size, num_spans].
    reader_correct_spans: bool [batch_size, reader_beam_size, num_spans].

  Returns:
    float32 [batch_size].
  """
  shape = tf.shape(reader_logits)
  flat_shape = tf.stack([shape[0], shape[1] * shape[2]])
  return masked_marginal_log_loss(tf.reshape(reader_logits, flat_shape),
                                  tf.reshape(reader_correct_spans, flat_shape))


def compute_losses(retriever_logits, retriever_correct, reader_logits,
                   reader_correct_spans) -> OrqaLosses:
  """Per-question retriever and reader losses and their sum.

  Args:
    retriever_logits, retriever_correct: [batch_size, retriever_beam_size].
    reader_logits, reader_correct_spans: [batch_size, reader_beam_size, num_spans].

  Returns:
    OrqaLosses of float32 [batch_size] tensors; the original's scalar loss (batch size
    1) is `tf.reduce_mean(loss)`.
  """
  retriever = retriever_loss(retriever_logits, retriever_correct)
  reader = reader_loss(reader_logits, reader_correct_spans)
  return OrqaLosses(loss=retriever + reader, retriever_loss=retriever, reader_loss=reader)
