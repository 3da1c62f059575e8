"""BERT encoders: `official.nlp.modeling.networks.BertEncoderV2` built from a `BertConfig`."""

from typing import Any, Dict, Union

import tensorflow as tf
import tf_keras
from official.nlp.modeling import networks

from realm_tf.modeling.config import BertConfig


@tf_keras.utils.register_keras_serializable(package="realm_tf")
def gelu_approximate(x):
  """The tanh approximation of GELU (original TF1 BERT, tf-models-official's default)."""
  return tf_keras.activations.gelu(x, approximate=True)


def get_activation(name: str):
  """The Keras activation for a `BertConfig.hidden_act` name."""
  if name == "gelu":
    return "gelu"  # tf_keras gelu, approximate=False: the exact erf GELU.
  if name == "gelu_approximate":
    return gelu_approximate
  return name


def as_bert_config(config: Union[BertConfig, Dict[str, Any]]) -> BertConfig:
  return config if isinstance(config, BertConfig) else BertConfig.from_dict(config)


def build_bert_encoder(config: Union[BertConfig, Dict[str, Any]],
                       name: str = "bert_encoder") -> networks.BertEncoderV2:
  """A `BertEncoderV2` with the shape, activation and dropout of `config`.

  Called with a dict of int32 [batch_size, seq_len] `input_word_ids`, `input_mask`,
  `input_type_ids`, it returns a dict with `sequence_output` [batch_size, seq_len, hidden]
  and `pooled_output` [batch_size, hidden] (among others).
  """
  config = as_bert_config(config)
  return networks.BertEncoderV2(
      vocab_size=config.vocab_size,
      hidden_size=config.hidden_size,
      num_layers=config.num_hidden_layers,
      num_attention_heads=config.num_attention_heads,
      max_sequence_length=config.max_position_embeddings,
      type_vocab_size=config.type_vocab_size,
      inner_dim=config.intermediate_size,
      inner_activation=get_activation(config.hidden_act),
      output_dropout=config.hidden_dropout_prob,
      attention_dropout=config.attention_probs_dropout_prob,
      initializer=tf_keras.initializers.TruncatedNormal(stddev=config.initializer_range),
      dict_outputs=True,
      name=name)


def encoder_inputs(token_ids: tf.Tensor, mask: tf.Tensor,
                   segment_ids: tf.Tensor) -> Dict[str, tf.Tensor]:
  """The TF2 BERT input dict from the original's (token_ids, mask, segment_ids)."""
  return dict(input_word_ids=tf.cast(token_ids, tf.int32),
              input_mask=tf.cast(mask, tf.int32),
              input_type_ids=tf.cast(segment_ids, tf.int32))


def dummy_inputs(batch_size: int = 1, seq_len: int = 4) -> Dict[str, tf.Tensor]:
  """All-zero (padding) encoder inputs, for building variables."""
  zeros = tf.zeros([batch_size, seq_len], tf.int32)
  return dict(input_word_ids=zeros, input_mask=tf.ones_like(zeros), input_type_ids=zeros)
