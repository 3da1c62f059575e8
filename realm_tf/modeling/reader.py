"""The knowledge-augmented encoder (REALM's reader): BERT with its masked-LM head.

The original used a TF-Hub BERT module with its `tokens` and `mlm` signatures.
Here one Keras model holds `BertEncoderV2` and `MaskedLMHead` (output weights tied to the
encoder's word embeddings).
"""

from typing import Any, Dict, Union

import tensorflow as tf
import tf_keras

from realm_tf.modeling import attention
from realm_tf.modeling import encoders
from realm_tf.modeling import recompute
from realm_tf.modeling.config import BertConfig
from realm_tf.modeling.embedder import unpack_inputs
from realm_tf.modeling.mlm_head import MaskedLMHead


@tf_keras.utils.register_keras_serializable(package="realm_tf")
class KnowledgeAugmentedEncoder(tf_keras.Model):
  """BERT + MLM head.

  Args:
    encoder_config: `BertConfig` (or its dict) of the BERT encoder.
    recompute_activations: recompute each transformer layer's activations in the backward
      pass instead of keeping them (`realm_tf.modeling.recompute`).

  Call inputs: the encoder inputs (a dict with `input_word_ids`, `input_mask`,
  `input_type_ids`, or a `BertInputs` tuple) of int32 [batch_size, seq_len]; and optional
  `mlm_positions` int32 [batch_size, num_masks].

  Returns a dict: `sequence_output` [batch_size, seq_len, hidden], `pooled_output`
  [batch_size, hidden], and with mlm_positions `mlm_logits` float32
  [batch_size, num_masks, vocab_size].
  """

  def __init__(self, encoder_config: Union[BertConfig, Dict[str, Any]],
               recompute_activations: bool = False, **kwargs):
    super().__init__(**kwargs)
    self._encoder_config = encoders.as_bert_config(encoder_config)
    self.recompute_activations = recompute_activations
    self.encoder = encoders.build_bert_encoder(self._encoder_config, name="bert_encoder")
    # The head ties its output weights to the word embeddings, which exist once the
    # encoder is built (as in tf-models-official's BertPretrainerV2).
    with tf.name_scope(self.name):
      self.encoder(encoders.dummy_inputs(), training=False)
    attention.use_fast_attention(self.encoder)
    self.masked_lm = MaskedLMHead(
        embedding_table=self.encoder.get_embedding_table(),
        activation=encoders.get_activation(self._encoder_config.hidden_act),
        initializer=tf_keras.initializers.TruncatedNormal(
            stddev=self._encoder_config.initializer_range),
        name="cls/predictions")

  @property
  def encoder_config(self) -> BertConfig:
    return self._encoder_config

  def call(self, inputs, mlm_positions=None, training=None):
    if self.recompute_activations:
      outputs = recompute.encoder_outputs(self.encoder, unpack_inputs(inputs), training)
    else:
      outputs = self.encoder(unpack_inputs(inputs), training=training)
    result = dict(sequence_output=outputs["sequence_output"],
                  pooled_output=outputs["pooled_output"])
    if mlm_positions is not None:
      logits = self.masked_lm(outputs["sequence_output"], mlm_positions)
      result["mlm_logits"] = tf.cast(logits, tf.float32)  # [batch_size, M, vocab_size]
    return result

  def build_variables(self):
    """Creates the variables by calling the model on a dummy batch."""
    self(encoders.dummy_inputs(), mlm_positions=tf.zeros([1, 1], tf.int32), training=False)
    return self

  def build_from_config(self, config):
    """Keras deserialization: create the variables with a dummy batch."""
    del config  # The recorded input shapes are not needed.
    self.build_variables()

  def get_config(self):
    return dict(encoder_config=self._encoder_config.to_dict(),
                recompute_activations=self.recompute_activations, name=self.name)

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**config)
