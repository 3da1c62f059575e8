"""Configs, Keras get_config/from_config and tf.train.Checkpoint round trips."""

import realm_tf  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import json

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tests import modeling_testing
from realm_tf.modeling.config import PRESETS, BertConfig, RealmConfig
from realm_tf.modeling.embedder import ProjectedEmbedder
from realm_tf.modeling.reader import KnowledgeAugmentedEncoder
from realm_tf.modeling.realm_model import RealmModel


def test_presets():
  shapes = {name: (c.num_hidden_layers, c.hidden_size, c.num_attention_heads)
            for name, c in PRESETS.items()}
  assert shapes == {"tiny": (2, 128, 2), "mini": (4, 256, 4), "minilm": (6, 384, 12),
                    "base": (12, 768, 12)}
  config = RealmConfig.preset("base", embedder_preset="tiny")
  assert config.bert.hidden_size == 768 and config.embedder.hidden_size == 128
  assert (config.query_seq_len, config.candidate_seq_len, config.num_candidates,
          config.max_masks, config.learning_rate, config.projection_size) == (
              96, 288, 8, 10, 3e-5, 128)
  assert config.share_embedders and config.separate_candidate_segments


def test_config_json_round_trip(tmp_path):
  config = RealmConfig.preset("tiny", share_embedders=False, num_train_steps=1000,
                              seed=7)
  path = config.save(str(tmp_path))
  assert path.endswith("config.json")
  loaded = RealmConfig.load(str(tmp_path))
  assert loaded == config
  assert RealmConfig.from_json(config.to_json()) == config
  assert json.loads(open(path).read())["bert"]["num_hidden_layers"] == 2
  with pytest.raises(ValueError, match="unknown_key"):
    RealmConfig.from_dict(dict(config.to_dict(), unknown_key=1))
  # A config.json of an earlier version: its unused Estimator-era keys are dropped and
  # tf_random_seed is read as seed.
  legacy = dict(config.to_dict(), eval_throttle_secs=600, bert_hub_module_handle="x",
                train_preprocessing_servers=None)
  legacy["tf_random_seed"] = legacy.pop("seed")
  assert RealmConfig.from_dict(legacy) == config


def test_config_validation():
  with pytest.raises(ValueError, match="vocab_size"):
    RealmConfig(bert=BertConfig(vocab_size=10), embedder=BertConfig(vocab_size=20))
  with pytest.raises(ValueError, match="max_position_embeddings"):
    RealmConfig(query_seq_len=300, candidate_seq_len=288)
  with pytest.raises(ValueError, match="hidden_act"):
    BertConfig(hidden_act="elu")
  hf = BertConfig.from_hf_dict({"hidden_size": 64, "num_attention_heads": 2,
                                "hidden_act": "gelu_new", "model_type": "bert",
                                "architectures": ["BertModel"]})
  assert hf.hidden_act == "gelu_approximate" and hf.hidden_size == 64


def _assert_same_outputs(a, b):
  for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5)


@pytest.mark.parametrize("share", [True, False])
def test_realm_model_get_config_and_checkpoint_round_trip(tmp_path, share):
  config = modeling_testing.tiny_realm_config(share_embedders=share)
  features = modeling_testing.random_features(config, 2, seed=0)
  model = RealmModel(config).build_variables()
  ref = model(features, training=False, now=tf.constant(1.8e9, tf.float64))
  assert (model.query_embedder is model.document_embedder) == share

  clone = RealmModel.from_config(model.get_config())
  assert clone.get_config() == model.get_config()
  path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
  tf.train.Checkpoint(model=clone).read(path).assert_existing_objects_matched()
  out = clone(features, training=False, now=tf.constant(1.8e9, tf.float64))
  for key in ("loss", "retrieval_scores", "gold_log_probs"):
    np.testing.assert_allclose(out[key].numpy(), ref[key].numpy(), atol=1e-5)
  assert len(clone.trainable_variables) == len(model.trainable_variables)
  # Keras serialization through the registered class names.
  revived = tf_keras.utils.deserialize_keras_object(
      tf_keras.utils.serialize_keras_object(model))
  assert isinstance(revived, RealmModel) and revived.config == model.config


def test_embedder_and_reader_round_trip(tmp_path):
  bert = modeling_testing.tiny_bert_config()
  inputs = dict(input_word_ids=tf.constant([[2, 7, 8, 3, 0]]),
                input_mask=tf.constant([[1, 1, 1, 1, 0]]),
                input_type_ids=tf.zeros([1, 5], tf.int32))
  positions = tf.constant([[1, 2]])
  embedder = ProjectedEmbedder(bert, projection_size=16)
  reader = KnowledgeAugmentedEncoder(bert)
  emb, rd = embedder(inputs), reader(inputs, mlm_positions=positions)
  assert emb.shape == [1, 16] and rd["mlm_logits"].shape == [1, 2, bert.vocab_size]
  for model, ref, call in ((embedder, emb, lambda m: m(inputs)),
                           (reader, rd, lambda m: m(inputs, mlm_positions=positions))):
    clone = type(model).from_config(model.get_config())
    call(clone)
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / model.name))
    tf.train.Checkpoint(model=clone).read(path).assert_existing_objects_matched()
    _assert_same_outputs(call(clone), ref)
  # BertInputs tuples and the original's input names are accepted too.
  _assert_same_outputs(embedder((inputs["input_word_ids"], inputs["input_mask"],
                                 inputs["input_type_ids"])), emb)
  _assert_same_outputs(embedder(dict(input_ids=inputs["input_word_ids"],
                                     input_mask=inputs["input_mask"],
                                     segment_ids=inputs["input_type_ids"])), emb)
  # MLM head config (the embedding table comes from the owner).
  head_config = reader.masked_lm.get_config()
  head = type(reader.masked_lm).from_config(
      dict(head_config, embedding_table=reader.encoder.get_embedding_table()))
  assert head.get_config() == head_config
  with pytest.raises(ValueError, match="embedding_table"):
    type(reader.masked_lm).from_config(head_config)


def test_embedder_matches_spec_layers():
  """pooled -> Dense(D) -> LayerNorm(1e-3) (no dropout at inference)."""
  bert = modeling_testing.tiny_bert_config()
  embedder = ProjectedEmbedder(bert, projection_size=16)
  inputs = dict(input_word_ids=tf.constant([[2, 9, 3]]), input_mask=tf.ones([1, 3], tf.int32),
                input_type_ids=tf.zeros([1, 3], tf.int32))
  out = embedder(inputs).numpy()
  pooled = embedder.encoder(inputs)["pooled_output"].numpy()
  x = pooled @ embedder.projection.kernel.numpy() + embedder.projection.bias.numpy()
  mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
  expected = ((x - mean) / np.sqrt(var + 1e-3) * embedder.layer_norm.gamma.numpy() +
              embedder.layer_norm.beta.numpy())
  np.testing.assert_allclose(out, expected, atol=1e-5)
  assert embedder.layer_norm.epsilon == 1e-3


def test_mixed_bfloat16_policy():
  config = modeling_testing.tiny_realm_config()
  features = modeling_testing.random_features(config, 2, seed=1)
  tf_keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    model = RealmModel(config)
    out = model(features, training=False)
  finally:
    tf_keras.mixed_precision.set_global_policy("float32")
  assert out["loss"].dtype == tf.float32 and np.isfinite(float(out["loss"]))
  assert model.reader.encoder.get_embedding_table().dtype == tf.float32
