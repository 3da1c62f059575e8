"""REALM train and eval steps under any `tf.distribute` strategy.

`make_train_step(model, optimizer, strategy)` returns a `tf.function` that takes one
(distributed) global batch and returns the global-batch `loss`, `retrieval_utility` and
`off_policy_delay_mins`. Every replica normalizes by the *global* number of masked tokens
(examples for the delay), obtained with an all-reduce, so:

* the strategy's SUM of the replicas' values equals the single-device value on the same
  global batch (the original's masked mean over all tokens of the batch, spec 4.3);
* the optimizer's default SUM all-reduce of the replicas' gradients is the gradient of that
  global mean (the replicas' gradients averaged), clipped afterwards (spec 4.4).

With `jit_compile=True` the forward and backward pass of each replica is XLA-compiled;
the all-reduces and the optimizer update stay outside the compiled function.
"""

from typing import Callable, Dict, Optional

import tensorflow as tf

from realm_tf.modeling.realm_model import RealmModel

METRIC_KEYS = ("loss", "retrieval_utility", "off_policy_delay_mins")


def _normalizers(features):
  """Global counts of masked tokens and of examples (all-reduced across replicas)."""
  ctx = tf.distribute.get_replica_context()
  num_masks = tf.reduce_sum(tf.cast(features["mlm_mask"], tf.float32))
  num_examples = tf.cast(tf.shape(features["mlm_mask"])[0], tf.float32)
  if ctx is not None and ctx.num_replicas_in_sync > 1:
    num_masks, num_examples = ctx.all_reduce(tf.distribute.ReduceOp.SUM,
                                             [num_masks, num_examples])
  return num_masks, num_examples


def _scalars(outputs) -> Dict[str, tf.Tensor]:
  return {k: outputs[k] for k in METRIC_KEYS}


def make_train_step(model: RealmModel, optimizer, strategy: Optional[
    tf.distribute.Strategy] = None, jit_compile: bool = False) -> Callable:
  """A `tf.function(features) -> {loss, retrieval_utility, off_policy_delay_mins}`.

  Args:
    model: the `RealmModel` (built under `strategy.scope()`).
    optimizer: e.g. `create_optimizer(config)` (created under `strategy.scope()`).
    strategy: the distribution strategy (default: the current one).
    jit_compile: XLA-compile each replica's forward and backward pass.

  The returned function takes one global batch, as a distributed value (from
  `strategy.experimental_distribute_dataset` or `distribute_datasets_from_function`) for a
  multi-replica strategy, or the batch itself for the default strategy, and trains on it
  once.
  """
  strategy = strategy or tf.distribute.get_strategy()

  def forward_backward(features, num_masks, num_examples, now):
    with tf.GradientTape() as tape:
      outputs = model(features, training=True, loss_normalizer=num_masks,
                      example_normalizer=num_examples, now=now)
    variables = model.trainable_variables
    grads = tape.gradient(outputs["loss"], variables)
    return _scalars(outputs), grads

  if jit_compile:
    forward_backward = tf.function(forward_backward, jit_compile=True)

  def replica_step(features):
    num_masks, num_examples = _normalizers(features)
    now = tf.timestamp()  # Outside XLA: tf.timestamp cannot be compiled.
    scalars, grads = forward_backward(features, num_masks, num_examples, now)
    # Variables the loss does not reach (the reader's pooler) have no gradient.
    optimizer.apply_gradients(
        [(g, v) for g, v in zip(grads, model.trainable_variables) if g is not None])
    return scalars

  @tf.function
  def train_step(features):
    per_replica = strategy.run(replica_step, args=(features,))
    return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
            for k, v in per_replica.items()}

  return train_step


def make_eval_step(model: RealmModel, strategy: Optional[tf.distribute.Strategy] = None,
                   jit_compile: bool = False) -> Callable:
  """A `tf.function(features) -> {loss, retrieval_utility, off_policy_delay_mins}`
  computing the global-batch values without dropout (stream them with Keras `Mean`)."""
  strategy = strategy or tf.distribute.get_strategy()

  def forward(features, num_masks, num_examples, now):
    return _scalars(model(features, training=False, loss_normalizer=num_masks,
                          example_normalizer=num_examples, now=now))

  if jit_compile:
    forward = tf.function(forward, jit_compile=True)

  def replica_step(features):
    num_masks, num_examples = _normalizers(features)
    return forward(features, num_masks, num_examples, tf.timestamp())

  @tf.function
  def eval_step(features):
    per_replica = strategy.run(replica_step, args=(features,))
    return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
            for k, v in per_replica.items()}

  return eval_step
