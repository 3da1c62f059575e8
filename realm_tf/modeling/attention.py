"""Faster dot-product attention for `BertEncoderV2`'s self-attention layers on CPUs.

Keras' `MultiHeadAttention` computes the scores as
`einsum("aecd,abcd->acbe", key, query)`: TensorFlow's einsum then multiplies key by query
and transposes the whole [B, heads, T, S] product, which made this one op (2% of a MiniLM
REALM step's FLOPs) 10-20x slower per FLOP than the dense layers and about a quarter of
the step's time (docs/BENCHMARKS.md, "Profile"). `einsum("abcd,aecd->acbe", query, key)`
is the same product with the operands in the order of its output, so it runs as a single
batched matmul. Everything else (scaling of the query, masked softmax, dropout on the
probabilities, the combination with the values) is Keras' own code, and the variables and
checkpoints are unchanged.

`use_fast_attention(encoder)` installs it on every transformer block of a built
`BertEncoderV2` whose attention has the standard layout (rank-4 [B, T, heads, dim]
projections attending over axis 1); other layouts keep Keras' implementation.
"""

import math
import types

import tensorflow as tf
import tf_keras

# Keras' equations for [B, T, heads, dim] projections attending over T.
KERAS_SCORES_EQUATION = "aecd,abcd->acbe"
SCORES_EQUATION = "abcd,aecd->acbe"  # query [B, T, N, H], key [B, S, N, H] -> [B, N, T, S]
COMBINE_EQUATION = "acbe,aecd->abcd"  # probs [B, N, T, S], value [B, S, N, H] -> [B, T, N, H]


def _compute_attention(self, query, key, value, attention_mask=None, training=None):
  """`MultiHeadAttention._compute_attention` with the scores as one batched matmul."""
  query = tf.multiply(query, 1.0 / math.sqrt(float(self._key_dim)))  # [B, T, N, H]
  attention_scores = tf.einsum(SCORES_EQUATION, query, key)  # [B, N, T, S]
  attention_scores = self._masked_softmax(attention_scores, attention_mask)
  attention_scores_dropout = self._dropout_layer(attention_scores, training=training)
  attention_output = tf.einsum(COMBINE_EQUATION, attention_scores_dropout,
                               value)  # [B, T, N, H]
  return attention_output, attention_scores


def _standard_layout(attention) -> bool:
  return (type(attention) is tf_keras.layers.MultiHeadAttention  # pylint: disable=unidiomatic-typecheck
          and getattr(attention, "_dot_product_equation", None) == KERAS_SCORES_EQUATION
          and getattr(attention, "_combine_equation", None) == COMBINE_EQUATION)


def use_fast_attention(encoder) -> int:
  """Installs the batched-matmul attention on the blocks of a built `encoder`.

  Args:
    encoder: a `BertEncoderV2` that has been called once (its attention layers exist).

  Returns:
    The number of attention layers that use it (idempotent).
  """
  count = 0
  for block in encoder.transformer_layers:
    attention = getattr(block, "_attention_layer", None)
    if attention is None or not _standard_layout(attention):
      continue
    if getattr(attention, "_realm_fast_attention", False):
      count += 1
      continue
    # Plain attributes, not tracked by Keras: the checkpoint does not change.
    object.__setattr__(attention, "_compute_attention",
                       types.MethodType(_compute_attention, attention))
    object.__setattr__(attention, "_realm_fast_attention", True)
    count += 1
  return count
