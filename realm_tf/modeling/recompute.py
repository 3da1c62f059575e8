"""Activation recomputation per transformer layer for `BertEncoderV2` (gradient checkpointing).

Training a BERT keeps, for the backward pass, every intermediate tensor of every layer:
for MiniLM at the REALM reader's 384 tokens that is about 80 KB per token and layer
(attention probabilities before and after dropout, their dropout mask, the feed-forward
activations, LayerNorm statistics), some 10 GB at batch 4. With recomputation the forward
pass keeps only each layer's input, and the backward pass runs the layer's forward again
just before its gradient is needed (`tf.recompute_grad`), so at most one layer's
intermediates exist at a time, for about a third more compute.

`encoder_outputs(encoder, inputs, training, recompute=True)` runs the encoder that way.
It is `BertEncoderV2.call` (embeddings, attention mask, the transformer blocks, the
pooler) over the encoder's own layers and variables; only the blocks are wrapped.

Dropout inside a recomputed block must draw the same masks twice. Each block call draws
one seed (a stateful random op, run once, in the forward pass); while the block runs,
its Dropout layers use stateless dropout seeded from it (one sub-seed per dropout call,
in call order), so the forward and the recomputation agree exactly and the gradients are
those of that forward pass. The masks follow the same distribution as Keras' stateful
dropout, not the same random stream: with recomputation a run is not bit-identical to
one without.
"""

import contextlib
from typing import Dict

import tensorflow as tf
import tf_keras

_SEED_RANGE = 2**24


class _SeededDropout:
  """Stands in for a Dropout layer's random generator: stateless dropout from one seed.

  The k-th dropout call draws its mask from `fold_in(seed, k)`.
  """

  def __init__(self, seed: tf.Tensor):
    self._seed = seed  # int32 [2]
    self._count = 0

  def dropout(self, inputs, rate, noise_shape=None):
    seed = tf.random.experimental.stateless_fold_in(self._seed, self._count)
    self._count += 1
    return tf.nn.experimental.stateless_dropout(inputs, rate=rate, seed=seed,
                                                noise_shape=noise_shape)


def _dropout_layers(layer):
  return [m for m in layer.submodules if isinstance(m, tf_keras.layers.Dropout)]


@contextlib.contextmanager
def seeded_dropout(layer, seed: tf.Tensor):
  """Within the context, every Dropout layer under `layer` draws from `seed` (int32 [2]).

  The calls are numbered in order from 0, so running the same layer code twice in two
  such contexts with the same seed draws the same masks.
  """
  layers = _dropout_layers(layer)
  source = _SeededDropout(seed)
  saved = [d.__dict__.get("_random_generator") for d in layers]
  for d in layers:
    # A plain attribute, not tracked by Keras (nothing is added to the checkpoint).
    object.__setattr__(d, "_random_generator", source)
  try:
    yield
  finally:
    for d, generator in zip(layers, saved):
      object.__setattr__(d, "_random_generator", generator)


def block_forward(block, x: tf.Tensor, attention_mask: tf.Tensor, training,
                  recompute: bool = True) -> tf.Tensor:
  """One `TransformerEncoderBlock` on x [B, L, H] with seeded dropout; with `recompute`,
  its intermediates are recomputed in the backward pass instead of kept.

  The mask and the seed are arguments of the recomputed function, not captured: the
  recomputation then depends on the incoming gradient through all of its inputs, so
  graph optimizations cannot merge it with the forward pass (which would keep, say, the
  forward pass's dropout randomness alive until the backward pass).
  """
  # Integers below 2**24 are exact in float32: the seed travels as a float argument.
  seed = tf.random.uniform([2], maxval=_SEED_RANGE, dtype=tf.int32)

  def forward(x, attention_mask, seed):
    with seeded_dropout(block, tf.cast(seed, tf.int32)):
      return block([x, attention_mask], training=training)  # [B, L, H]

  args = (x, attention_mask, tf.cast(seed, tf.float32))
  return tf.recompute_grad(forward)(*args) if recompute else forward(*args)


def encoder_outputs(encoder, inputs: Dict[str, tf.Tensor], training=None,
                    recompute: bool = True) -> Dict[str, tf.Tensor]:
  """`BertEncoderV2` outputs with each transformer block recomputed in the backward pass.

  Args:
    encoder: a `official.nlp.modeling.networks.BertEncoderV2` (built or not).
    inputs: `input_word_ids`, `input_mask`, `input_type_ids`, int32 [B, L].
    training: dropout on or off (None: Keras' learning phase).
    recompute: False keeps the intermediates (the same dropout masks for the same seeds,
      hence the same values and gradients: the reference the tests compare with).

  Returns:
    `sequence_output` [B, L, H] and `pooled_output` [B, H].
  """
  config = encoder.get_config()
  unsupported = [k for k in ("output_range", "return_attention_scores", "with_dense_inputs",
                             "return_word_embeddings") if config.get(k)]
  if unsupported:
    raise ValueError(f"encoder_outputs does not support BertEncoderV2 options {unsupported}.")
  if training is None:
    training = tf_keras.backend.learning_phase()
  if not encoder.built:
    encoder(inputs, training=False)  # Creates the variables with Keras' own call.
  word_ids = inputs["input_word_ids"]
  word_embeddings = encoder.get_embedding_layer()(word_ids)  # [B, L, E]
  # pylint: disable=protected-access
  embeddings = encoder._get_embeddings(word_ids, inputs["input_type_ids"], word_embeddings,
                                       None, None)
  embeddings = encoder._embedding_norm_layer(embeddings)
  embeddings = encoder._embedding_dropout(embeddings, training=training)
  if encoder._embedding_projection is not None:
    embeddings = encoder._embedding_projection(embeddings)
  attention_mask = encoder._attention_mask_layer(embeddings, inputs["input_mask"])  # [B, L, L]
  # pylint: enable=protected-access
  x = embeddings  # [B, L, H]
  for block in encoder.transformer_layers:
    x = block_forward(block, x, attention_mask, training, recompute)
  pooled_output = encoder.pooler_layer(x[:, 0, :])  # [B, H]
  return dict(sequence_output=x, pooled_output=pooled_output)
