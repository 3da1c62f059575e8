"""Activation recomputation: the same outputs and gradients as keeping the activations."""

import realm_tf  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
from official.nlp.modeling import layers as nlp_layers

import tf_keras

from realm_tf.modeling.config import RealmConfig
from realm_tf.modeling import encoders, realm_steps, recompute
from realm_tf.modeling.realm_model import RealmModel
from tests import modeling_testing

TOLERANCE = 1e-6


def _encoder_and_inputs(dropout=0.3):
  config = modeling_testing.tiny_bert_config(hidden_dropout_prob=dropout,
                                          attention_probs_dropout_prob=dropout)
  encoder = encoders.build_bert_encoder(config)
  ids = np.random.default_rng(0).integers(5, config.vocab_size, size=[3, 10])
  mask = np.array([[1] * 10, [1] * 6 + [0] * 4, [1] * 3 + [0] * 7])
  inputs = dict(input_word_ids=tf.constant(ids, tf.int32),
                input_mask=tf.constant(mask, tf.int32),
                input_type_ids=tf.zeros([3, 10], tf.int32))
  encoder(inputs, training=False)
  return encoder, inputs


def _loss_and_grads(encoder, inputs, recompute_on, compiled=False, seed=5):
  def loss_and_grads():
    with tf.GradientTape() as tape:
      out = recompute.encoder_outputs(encoder, inputs, training=True, recompute=recompute_on)
      loss = (tf.reduce_sum(tf.square(out["sequence_output"])) +
              tf.reduce_sum(out["pooled_output"]))
    return loss, tape.gradient(loss, encoder.trainable_variables)

  fn = tf.function(loss_and_grads) if compiled else loss_and_grads
  tf.random.set_seed(seed)
  return fn()


def _max_diff(grads_a, grads_b):
  return max(float(tf.reduce_max(tf.abs(tf.convert_to_tensor(a) - tf.convert_to_tensor(b))))
             for a, b in zip(grads_a, grads_b))


def test_inference_outputs_equal_the_keras_call():
  encoder, inputs = _encoder_and_inputs()
  expected = encoder(inputs, training=False)
  for recompute_on in (False, True):
    got = recompute.encoder_outputs(encoder, inputs, training=False, recompute=recompute_on)
    for key in ("sequence_output", "pooled_output"):
      np.testing.assert_array_equal(got[key].numpy(), expected[key].numpy())


@pytest.mark.parametrize("compiled", [False, True])
def test_recomputed_gradients_equal_kept_ones_with_dropout(compiled):
  encoder, inputs = _encoder_and_inputs(dropout=0.3)
  loss_kept, grads_kept = _loss_and_grads(encoder, inputs, False, compiled)
  loss_rec, grads_rec = _loss_and_grads(encoder, inputs, True, compiled)
  assert all(g is not None for g in grads_rec)
  assert float(loss_rec) == float(loss_kept)
  assert _max_diff(grads_rec, grads_kept) <= TOLERANCE
  # Dropout is on: another seed draws other masks and another loss.
  loss_other, _ = _loss_and_grads(encoder, inputs, True, compiled, seed=6)
  assert abs(float(loss_other) - float(loss_rec)) > 1e-3


def test_each_block_runs_again_in_the_backward_pass():
  encoder, inputs = _encoder_and_inputs()
  original = nlp_layers.TransformerEncoderBlock.call
  calls = []

  def counting_call(self, *args, **kwargs):
    calls.append(self.name)
    return original(self, *args, **kwargs)

  with mock.patch.object(nlp_layers.TransformerEncoderBlock, "call", counting_call):
    for recompute_on, expected in ((False, 2), (True, 4)):
      del calls[:]
      _loss_and_grads(encoder, inputs, recompute_on)
      assert len(calls) == expected, (recompute_on, calls)


def test_realm_model_gradients_with_and_without_recomputation():
  base = modeling_testing.tiny_realm_config(
      bert=modeling_testing.tiny_bert_config(hidden_dropout_prob=0.0,
                                          attention_probs_dropout_prob=0.0),
      embedder=modeling_testing.tiny_bert_config(hidden_dropout_prob=0.0,
                                              attention_probs_dropout_prob=0.0),
      embedder_dropout_rate=0.0)
  features = modeling_testing.random_features(base, 3, seed=0)
  results = {}
  weights = None
  for recompute_on in (False, True):
    config = RealmConfig.from_dict(dict(base.to_dict(), recompute_activations=recompute_on))
    model = RealmModel(config).build_variables()
    assert model.reader.recompute_activations == recompute_on
    assert model.document_embedder.recompute_activations == recompute_on
    if weights is None:
      weights = model.get_weights()
    model.set_weights(weights)
    with tf.GradientTape() as tape:
      loss = model(features, training=True)["loss"]
    grads = tape.gradient(loss, model.trainable_variables)
    results[recompute_on] = (float(loss), [None if g is None else tf.convert_to_tensor(g)
                                           for g in grads])
  (loss_a, grads_a), (loss_b, grads_b) = results[False], results[True]
  assert loss_a == pytest.approx(loss_b, abs=TOLERANCE)
  assert [g is None for g in grads_a] == [g is None for g in grads_b]
  used = [(a, b) for a, b in zip(grads_a, grads_b) if a is not None]
  assert _max_diff(*zip(*used)) <= TOLERANCE


def test_micro_batches_give_the_whole_batch_update():
  no_dropout = modeling_testing.tiny_bert_config(hidden_dropout_prob=0.0,
                                              attention_probs_dropout_prob=0.0)
  config = modeling_testing.tiny_realm_config(bert=no_dropout, embedder=no_dropout,
                                           embedder_dropout_rate=0.0, batch_size=4)
  features = modeling_testing.random_features(config, 4, seed=3)
  tf.random.set_seed(0)
  weights = RealmModel(config).build_variables().get_weights()
  results = []
  for micro_batches in (1, 2):
    model = RealmModel(RealmConfig.from_dict(dict(config.to_dict(),
                                                  micro_batches=micro_batches)))
    model.build_variables().set_weights(weights)
    step = realm_steps.make_train_step(model, tf_keras.optimizers.SGD(0.5))
    out = step(features)
    results.append(({k: float(v) for k, v in out.items()}, model.get_weights()))
  (out_a, weights_a), (out_b, weights_b) = results
  for key in out_a:
    assert out_b[key] == pytest.approx(out_a[key], rel=1e-5, abs=1e-6), key
  changed = 0
  for before, a, b in zip(weights, weights_a, weights_b):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    changed += not np.allclose(a, before)
  assert changed > len(weights) // 2
  with pytest.raises(ValueError, match="micro_batches"):
    RealmConfig.from_dict(dict(config.to_dict(), micro_batches=3))


def test_config_round_trip_and_keras_config():
  config = modeling_testing.tiny_realm_config(recompute_activations=True,
                                           precision="mixed_bfloat16", jit_compile=False)
  again = RealmConfig.from_json(config.to_json())
  assert again.recompute_activations and again.precision == "mixed_bfloat16"
  assert again.jit_compile is False
  model = RealmModel(config)
  assert model.reader.get_config()["recompute_activations"] is True
  assert model.document_embedder.get_config()["recompute_activations"] is True
  with pytest.raises(ValueError, match="precision"):
    modeling_testing.tiny_realm_config(precision="float16")
