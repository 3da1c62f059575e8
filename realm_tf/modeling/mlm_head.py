"""BERT's masked-LM head (the `mlm` signature of the original's BERT hub module).

Gathers the encoder's sequence output at `mlm_positions`, then transform Dense(hidden) with
BERT's activation, LayerNorm (epsilon 1e-12), a matmul with the *tied* word-embedding
table and an output bias: `official.nlp.modeling.layers.MaskedLM`, whose variable names
(`transform/dense`, `transform/LayerNorm`, `output_bias`) and checkpoint keys (`dense`,
`layer_norm`, `bias`) match tf-models-official's BERT pre-training checkpoints. This
subclass adds a `get_config` (the embedding table itself is supplied by the owning model).
"""

import tensorflow as tf
import tf_keras
from official.nlp.modeling import layers


@tf_keras.utils.register_keras_serializable(package="realm_tf")
class MaskedLMHead(layers.MaskedLM):
  """MLM head: sequence [B, L, H] and positions int32 [B, M] -> logits [B, M, V].

  Args:
    embedding_table: the encoder's word embeddings [V, H] (output weights are tied).
    activation: activation of the transform dense layer (BERT's hidden_act).
    initializer: initializer of the transform dense layer.
    output: "logits" or "predictions" (log-probabilities).
  """

  def __init__(self, embedding_table, activation=None, initializer="glorot_uniform",
               output="logits", **kwargs):
    super().__init__(embedding_table=embedding_table, activation=activation,
                     initializer=initializer, output=output, **kwargs)
    self._activation_config = tf_keras.activations.serialize(
        tf_keras.activations.get(activation))
    self._initializer_config = tf_keras.initializers.serialize(self.initializer)

  def call(self, sequence_data, masked_positions):
    logits = super().call(sequence_data, tf.cast(masked_positions, tf.int32))
    return logits  # [batch_size, num_positions, vocab_size]

  def get_config(self):
    """Serializable arguments; `from_config` needs an `embedding_table` entry added."""
    return dict(activation=self._activation_config,
                initializer=self._initializer_config,
                output=self._output_type,
                name=self.name)

  @classmethod
  def from_config(cls, config, custom_objects=None):
    config = dict(config)
    if "embedding_table" not in config:
      raise ValueError("MaskedLMHead.from_config needs config['embedding_table'] (the "
                       "encoder's word embeddings, shared with the head).")
    config["activation"] = tf_keras.activations.deserialize(config["activation"])
    config["initializer"] = tf_keras.initializers.deserialize(config["initializer"])
    return cls(**config)
