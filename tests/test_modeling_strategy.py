"""REALM training under a 2-replica MirroredStrategy equals the default strategy.

Runs in a subprocess with two logical CPU devices (`tests/strategy_utils.py`).
"""

import realm_tf  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

from tests import strategy_utils

_SCRIPT = """
import time
import numpy as np
import tensorflow as tf
from realm_tf.modeling import optimizer as optimizer_lib
from realm_tf.modeling.realm_model import RealmModel
from realm_tf.modeling import realm_steps
from tests import modeling_testing

no_dropout = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)

def run(strategy, config, initial, batches):
  with strategy.scope():
    model = RealmModel(config).build_variables()
    model.set_weights(initial)
    optimizer = optimizer_lib.create_optimizer(config)
  train_step = realm_steps.make_train_step(model, optimizer, strategy)
  eval_step = realm_steps.make_eval_step(model, strategy)
  results = []
  for batch in batches:
    n = strategy.num_replicas_in_sync
    if n > 1:
      def value_fn(ctx, batch=batch):
        return tf.nest.map_structure(
            lambda t: tf.split(t, n, axis=0)[ctx.replica_id_in_sync_group], batch)
      batch = strategy.experimental_distribute_values_from_function(value_fn)
    e = realm_steps.eval_metrics(eval_step(batch))
    r = train_step(batch)
    results.append([float(e["loss"]), float(e["retrieval_utility"]), float(r["loss"]),
                    float(r["retrieval_utility"]), float(r["off_policy_delay_mins"])])
  return results, model.get_weights()

strategy = mirrored_strategy()
out = dict(replicas=strategy.num_replicas_in_sync)
for share in (True, False):
  config = modeling_testing.tiny_realm_config(
      bert=modeling_testing.tiny_bert_config(**no_dropout),
      embedder=modeling_testing.tiny_bert_config(**no_dropout),
      embedder_dropout_rate=0.0, num_warmup_steps=1, learning_rate=1e-3,
      share_embedders=share)
  # The replicas' halves hold different numbers of masks: per-replica means would differ.
  ts = np.array([0, 1_700_000_000, 1_700_000_000, 0])
  batches = [modeling_testing.random_features(config, 4, seed=3, num_masks=np.array([2, 2, 1, 0]),
                                           export_timestamp=ts),
             modeling_testing.random_features(config, 4, seed=4, num_masks=np.array([0, 1, 2, 2]),
                                           export_timestamp=ts)]
  tf.random.set_seed(0)
  initial = RealmModel(config).build_variables().get_weights()
  start = time.time()
  default, default_weights = run(tf.distribute.get_strategy(), config, initial, batches)
  mirrored, mirrored_weights = run(strategy, config, initial, batches)
  out[str(share)] = dict(
      default=default, mirrored=mirrored, elapsed_mins=(time.time() - start) / 60,
      max_weight_diff=max(float(np.abs(a - b).max())
                          for a, b in zip(default_weights, mirrored_weights)),
      max_update=max(float(np.abs(a - b).max()) for a, b in zip(default_weights, initial)))
emit(out)
"""


def test_mirrored_strategy_matches_default_strategy():
  result = strategy_utils.run_with_logical_cpus(_SCRIPT)
  assert result["replicas"] == 2
  for share in ("True", "False"):
    r = result[share]
    for default, mirrored in zip(r["default"], r["mirrored"]):
      for name, d, m in zip(["eval_loss", "eval_utility", "loss", "utility", "delay"],
                            default, mirrored):
        # The delay is measured against the wall clock at each call: allow the time the
        # two runs took.
        tol = r["elapsed_mins"] + 0.01 if name == "delay" else 1e-5 * max(1.0, abs(d))
        assert abs(d - m) <= tol, (share, name, r)
    # Two optimizer steps (lr 1e-3) moved the weights, the same way under both
    # strategies; Adam without bias correction turns rounding noise in near-zero
    # gradients into full-size steps, hence the tolerance of a fraction of one step.
    assert r["max_update"] > 1e-3, r
    assert r["max_weight_diff"] < 2e-4, r
