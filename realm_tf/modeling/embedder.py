"""The retriever tower: BERT pooled output -> Dense(D) -> LayerNorm -> dropout (training).

This is the original's ICT / REALM `embedder` module (`projected` signature,
`language/orqa/models/ict_model.py`): `tf.layers.dense(128)` with the default
glorot-uniform kernel and a bias, no activation, then a Keras `LayerNormalization` with
its default epsilon 1e-3, then `dropout(rate=0.1)` on the projected embedding only when
training.
"""

from typing import Any, Dict, Union

import tensorflow as tf
import tf_keras

from realm_tf.modeling import attention
from realm_tf.modeling import encoders
from realm_tf.modeling import recompute
from realm_tf.modeling.config import BertConfig


def unpack_inputs(inputs) -> Dict[str, tf.Tensor]:
  """Encoder input dict from a dict (TF2 hub or original names) or a BertInputs tuple."""
  if isinstance(inputs, dict):
    if "input_word_ids" in inputs:
      return encoders.encoder_inputs(inputs["input_word_ids"], inputs["input_mask"],
                                     inputs["input_type_ids"])
    return encoders.encoder_inputs(inputs["input_ids"], inputs["input_mask"],
                                   inputs["segment_ids"])
  token_ids, mask, segment_ids = inputs
  return encoders.encoder_inputs(token_ids, mask, segment_ids)


@tf_keras.utils.register_keras_serializable(package="realm_tf")
class ProjectedEmbedder(tf_keras.Model):
  """BERT + projection: int32 [batch_size, seq_len] x 3 -> float32 [batch_size, D].

  Args:
    encoder_config: `BertConfig` (or its dict) of the BERT encoder.
    projection_size: D, the retrieval embedding size (128).
    dropout_rate: dropout on the projected embedding, applied only with training=True.
    layer_norm_epsilon: epsilon of the LayerNorm after the projection (1e-3).
    recompute_activations: recompute each transformer layer's activations in the backward
      pass instead of keeping them (`realm_tf.modeling.recompute`): less memory, about a
      third more compute.

  Call inputs: a dict with `input_word_ids`, `input_mask`, `input_type_ids` (or the
  original's `input_ids`, `input_mask`, `segment_ids`), or a `BertInputs` tuple.
  """

  def __init__(self, encoder_config: Union[BertConfig, Dict[str, Any]],
               projection_size: int = 128, dropout_rate: float = 0.1,
               layer_norm_epsilon: float = 1e-3, recompute_activations: bool = False,
               **kwargs):
    super().__init__(**kwargs)
    self._encoder_config = encoders.as_bert_config(encoder_config)
    self._projection_size = projection_size
    self._dropout_rate = dropout_rate
    self._layer_norm_epsilon = layer_norm_epsilon
    self.recompute_activations = recompute_activations
    self.encoder = encoders.build_bert_encoder(self._encoder_config, name="bert_encoder")
    # Built now (as the reader's) so that its attention layers exist for the fast kernel.
    with tf.name_scope(self.name):
      self.encoder(encoders.dummy_inputs(), training=False)
    attention.use_fast_attention(self.encoder)
    self.projection = tf_keras.layers.Dense(
        projection_size, kernel_initializer="glorot_uniform", name="projection")
    self.layer_norm = tf_keras.layers.LayerNormalization(
        axis=-1, epsilon=layer_norm_epsilon, name="projection_layer_norm")
    self.dropout = tf_keras.layers.Dropout(dropout_rate, name="projection_dropout")

  @property
  def encoder_config(self) -> BertConfig:
    return self._encoder_config

  @property
  def projection_size(self) -> int:
    return self._projection_size

  def call(self, inputs, training=None):
    if self.recompute_activations:
      outputs = recompute.encoder_outputs(self.encoder, unpack_inputs(inputs), training)
    else:
      outputs = self.encoder(unpack_inputs(inputs), training=training)
    pooled = outputs["pooled_output"]  # [batch_size, hidden_size]
    projected = self.projection(pooled)  # [batch_size, D]
    projected = self.layer_norm(projected)
    projected = self.dropout(projected, training=training)
    return tf.cast(projected, tf.float32)  # [batch_size, D]

  def build_variables(self):
    """Creates the variables by calling the model on a dummy batch."""
    self(encoders.dummy_inputs(), training=False)
    return self

  def build_from_config(self, config):
    """Keras deserialization: create the variables with a dummy batch."""
    del config  # The recorded input shapes are not needed.
    self.build_variables()

  def get_config(self):
    return dict(encoder_config=self._encoder_config.to_dict(),
                projection_size=self._projection_size,
                dropout_rate=self._dropout_rate,
                layer_norm_epsilon=self._layer_norm_epsilon,
                recompute_activations=self.recompute_activations,
                name=self.name)

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**config)
