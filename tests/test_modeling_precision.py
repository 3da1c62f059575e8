"""Precision choice from the hardware, the bfloat16 path's numerics, the fast attention."""

import realm_tf  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from realm_tf.modeling import attention, encoders, precision
from tests import modeling_testing
from realm_tf.modeling import optimizer as optimizer_lib
from realm_tf.modeling.realm_model import RealmModel

AVX2_FLAGS = "fpu vme sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi2 adx"


def _cpuinfo(tmp_path, flags):
  path = tmp_path / "cpuinfo"
  path.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n\n"
                  f"processor\t: 1\nflags\t\t: {flags}\n")
  return str(path)


@pytest.mark.skipif(precision.accelerator() is not None, reason="decided by the device")
@pytest.mark.parametrize("extra,expected", [
    ("", "float32"),
    (" avx512f avx512_vnni", "float32"),
    (" avx512f avx512_bf16", "mixed_bfloat16"),
    (" amx_tile amx_bf16", "mixed_bfloat16"),
])
def test_auto_precision_follows_the_cpu_flags(tmp_path, extra, expected):
  path = _cpuinfo(tmp_path, AVX2_FLAGS + extra)
  assert precision.resolve_precision("auto", cpuinfo_path=path) == expected
  # An explicit choice is kept whatever the CPU.
  assert precision.resolve_precision("float32", cpuinfo_path=path) == "float32"
  assert precision.resolve_precision("mixed_bfloat16", cpuinfo_path=path) == "mixed_bfloat16"


def test_this_machine_gets_what_its_cpu_has():
  if precision.accelerator() is not None:
    assert precision.resolve_precision() in (precision.FLOAT32, precision.MIXED_BFLOAT16)
    assert precision.resolve_jit_compile() is True
    return
  expected = "mixed_bfloat16" if precision.cpu_has_bf16() else "float32"
  assert precision.resolve_precision() == expected
  assert precision.resolve_jit_compile() is False
  assert precision.resolve_jit_compile(True) is True


def test_missing_cpuinfo_and_bad_names(tmp_path):
  assert precision.cpu_flags(str(tmp_path / "absent")) == frozenset()
  with pytest.raises(ValueError, match="float16"):
    precision.resolve_precision("float16")


def test_policy_scope_sets_and_restores_the_global_policy():
  before = tf_keras.mixed_precision.global_policy().name
  with precision.policy_scope("mixed_bfloat16") as name:
    assert name == "mixed_bfloat16"
    layer = tf_keras.layers.Dense(2)
  assert tf_keras.mixed_precision.global_policy().name == before
  assert layer.compute_dtype == "bfloat16" and layer.variable_dtype == "float32"


def _model(prec, weights=None):
  config = modeling_testing.tiny_realm_config()
  with precision.policy_scope(prec):
    model = RealmModel(config).build_variables()
  if weights is not None:
    model.set_weights(weights)
  return model, config


def test_mixed_bfloat16_matches_float32_on_a_tiny_model():
  tf.random.set_seed(0)
  model32, config = _model("float32")
  weights = model32.get_weights()
  model16, _ = _model("mixed_bfloat16", weights)
  assert model16.reader.encoder.transformer_layers[0].compute_dtype == "bfloat16"
  assert all(v.dtype == tf.float32 for v in model16.weights)  # float32 master weights
  features = modeling_testing.random_features(config, 3, seed=0)
  out32 = model32(features, training=False)
  out16 = model16(features, training=False)
  for key in ("loss", "gold_log_probs", "retrieval_scores"):
    assert out16[key].dtype == tf.float32  # losses and what they read stay float32
  assert float(out16["loss"]) == pytest.approx(float(out32["loss"]), rel=1e-2)
  np.testing.assert_allclose(out16["candidate_log_probs"].numpy(),
                             out32["candidate_log_probs"].numpy(), atol=0.05)

  # The same training curve (dropout off in both: evaluation mode gradients).
  curves = {}
  for name, model in (("float32", model32), ("mixed_bfloat16", model16)):
    opt = optimizer_lib.BertAdamWeightDecay(learning_rate=1e-3)
    losses = []
    for _ in range(6):
      with tf.GradientTape() as tape:
        loss = model(features, training=False)["loss"]
      grads = tape.gradient(loss, model.trainable_variables)
      assert all(g is None or g.dtype == tf.float32 for g in grads)
      opt.apply_gradients([(g, v) for g, v in zip(grads, model.trainable_variables)
                           if g is not None])
      losses.append(float(loss))
    curves[name] = losses
  assert curves["float32"][-1] < curves["float32"][0] - 0.5  # it learns
  np.testing.assert_allclose(curves["mixed_bfloat16"], curves["float32"], rtol=0.03)


def test_fast_attention_equals_keras_attention():
  config = modeling_testing.tiny_bert_config(hidden_dropout_prob=0.0,
                                          attention_probs_dropout_prob=0.0)
  inputs = encoders.dummy_inputs(batch_size=2, seq_len=7)
  inputs["input_word_ids"] = tf.constant(
      np.random.default_rng(0).integers(5, 200, size=[2, 7]), tf.int32)
  inputs["input_mask"] = tf.constant([[1] * 7, [1] * 4 + [0] * 3], tf.int32)
  keras_encoder = encoders.build_bert_encoder(config)
  keras_encoder(inputs)
  fast_encoder = encoders.build_bert_encoder(config)
  fast_encoder(inputs)
  fast_encoder.set_weights(keras_encoder.get_weights())
  assert attention.use_fast_attention(fast_encoder) == config.num_hidden_layers
  assert attention.use_fast_attention(fast_encoder) == config.num_hidden_layers  # idempotent
  results = []
  for encoder in (keras_encoder, fast_encoder):
    with tf.GradientTape() as tape:
      out = encoder(inputs, training=False)["sequence_output"]
      loss = tf.reduce_sum(tf.square(out))
    grads = tape.gradient(loss, encoder.trainable_variables)
    results.append((out, [g for g in grads if g is not None]))
  (out_a, grads_a), (out_b, grads_b) = results
  np.testing.assert_allclose(out_b.numpy(), out_a.numpy(), atol=1e-5)
  for a, b in zip(grads_a, grads_b):
    np.testing.assert_allclose(tf.convert_to_tensor(b).numpy(),
                               tf.convert_to_tensor(a).numpy(), atol=1e-4, rtol=1e-4)
  # The models install it on every block.
  model = RealmModel(modeling_testing.tiny_realm_config())
  for encoder in (model.reader.encoder, model.document_embedder.encoder):
    assert all(block._attention_layer._realm_fast_attention  # pylint: disable=protected-access
               for block in encoder.transformer_layers)
