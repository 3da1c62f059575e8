"""BERT's AdamW (no bias correction) and learning-rate schedule against NumPy."""

import realm_tf  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.modeling import optimizer as optimizer_lib
from realm_tf.modeling.config import RealmConfig, default_num_warmup_steps


def numpy_lr(step, init_lr, total, warmup):
  decayed = init_lr * (1.0 - min(step, total) / total)
  return init_lr * step / warmup if step < warmup else decayed


@pytest.mark.parametrize("total,expected", [(50, 100), (1000, 100), (5000, 500),
                                            (200000, 10000)])
def test_default_warmup(total, expected):
  assert default_num_warmup_steps(total) == expected
  assert RealmConfig(num_train_steps=total).warmup_steps == expected


def test_schedule_matches_formula():
  schedule = optimizer_lib.BertLearningRateSchedule(3e-5, 1000, 100)
  for step in (0, 1, 50, 99, 100, 101, 500, 999, 1000, 1500):
    assert float(schedule(step)) == pytest.approx(numpy_lr(step, 3e-5, 1000, 100),
                                                  rel=1e-6, abs=1e-12)
  # The original's small drop at the end of warmup: 99/100 of init_lr, then 90/100.
  assert float(schedule(99)) == pytest.approx(3e-5 * 0.99)
  assert float(schedule(100)) == pytest.approx(3e-5 * 0.9)


def test_first_three_updates_match_numpy_reference():
  rng = np.random.default_rng(0)
  init = {"dense/kernel": rng.normal(size=[3, 4]),
          "dense/bias": rng.normal(size=[4]),
          "encoder/layer_norm/gamma": rng.normal(size=[4]),
          "transform/LayerNorm/beta": rng.normal(size=[4]),
          "word_embeddings/embeddings": rng.normal(size=[5, 4])}
  variables = [tf.Variable(v.astype(np.float32), name=k) for k, v in init.items()]
  init_lr, total, warmup = 0.1, 10, 2
  opt = optimizer_lib.BertAdamWeightDecay(
      learning_rate=optimizer_lib.BertLearningRateSchedule(init_lr, total, warmup))
  params = {k: v.astype(np.float32).astype(np.float64) for k, v in init.items()}
  m = {k: np.zeros_like(v) for k, v in params.items()}
  v2 = {k: np.zeros_like(v) for k, v in params.items()}
  for step in range(3):
    grads = {k: rng.normal(size=v.shape) * (3.0 if step == 0 else 0.2)
             for k, v in params.items()}
    grads = {k: g.astype(np.float32).astype(np.float64) for k, g in grads.items()}
    tf_grads = [tf.constant(grads[k], tf.float32) for k in init]
    # The embedding gradient arrives sparse, as from a gather (rows 1 and 3 twice).
    emb = grads["word_embeddings/embeddings"]
    emb[[0, 2, 4]] = 0.0
    tf_grads[-1] = tf.IndexedSlices(
        tf.constant(np.stack([emb[1] / 2, emb[3], emb[1] / 2]), tf.float32),
        tf.constant([1, 3, 1]), tf.constant([5, 4]))
    opt.apply_gradients(zip(tf_grads, variables))
    # NumPy reference of the BERT update rule.
    norm = np.sqrt(sum((g ** 2).sum() for g in grads.values()))
    scale = 1.0 / max(norm, 1.0)
    if step == 0:
      assert norm > 1.0  # Clipping is exercised.
    lr = numpy_lr(step, init_lr, total, warmup)
    for k in params:
      g = grads[k] * scale
      m[k] = 0.9 * m[k] + 0.1 * g
      v2[k] = 0.999 * v2[k] + 0.001 * g * g
      update = m[k] / (np.sqrt(v2[k]) + 1e-6)
      if not any(p in k for p in ("LayerNorm", "layer_norm", "bias")):
        update += 0.01 * params[k]
      params[k] = params[k] - lr * update
    for k, var in zip(init, variables):
      np.testing.assert_allclose(var.numpy(), params[k], atol=1e-6, err_msg=f"{k} @ {step}")
  assert int(opt.iterations) == 3


def test_weight_decay_exclusions():
  opt = optimizer_lib.BertAdamWeightDecay()
  for name, expected in [("a/dense/kernel", True), ("a/LayerNorm/gamma", False),
                         ("a/self_attention_layer_norm/beta", False), ("a/bias", False),
                         ("word_embeddings/embeddings", True)]:
    assert opt.use_weight_decay(tf.Variable(0.0, name=name)) == expected, name


def test_config_and_checkpoint_round_trip(tmp_path):
  config = RealmConfig(num_train_steps=1000, learning_rate=1e-4)
  opt = optimizer_lib.create_optimizer(config)
  restored = optimizer_lib.BertAdamWeightDecay.from_config(opt.get_config())
  assert restored.get_config() == opt.get_config()
  assert restored.learning_rate is not None
  var = tf.Variable(np.ones([2, 2], np.float32), name="dense/kernel")
  opt.apply_gradients([(tf.ones([2, 2]), var)])
  path = tf.train.Checkpoint(optimizer=opt, var=var).save(str(tmp_path / "ckpt"))
  var2 = tf.Variable(np.zeros([2, 2], np.float32), name="dense/kernel")
  restored.build([var2])
  tf.train.Checkpoint(optimizer=restored, var=var2).read(path).assert_existing_objects_matched()
  assert int(restored.iterations) == 1
  np.testing.assert_allclose(restored._adam_m[0].numpy(), opt._adam_m[0].numpy())  # pylint: disable=protected-access
