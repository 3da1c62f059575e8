"""REALM train and eval steps under any `tf.distribute` strategy.

`make_train_step(model, optimizer, strategy)` returns a `tf.function` that takes one
(distributed) global batch and returns the global-batch `loss`, `retrieval_utility` and
`off_policy_delay_mins`. Every replica normalizes by the *global* number of masked tokens
(examples for the delay), obtained with an all-reduce, so:

* the strategy's SUM of the replicas' values equals the single-device value on the same
  global batch (the original's masked mean over all tokens of the batch);
* the optimizer's default SUM all-reduce of the replicas' gradients is the gradient of that
  global mean (the replicas' gradients averaged), clipped afterwards.

With `jit_compile=True` the forward and backward pass of each replica is XLA-compiled;
the all-reduces and the optimizer update stay outside the compiled function.

With `micro_batches=k` (`RealmConfig.micro_batches`) each replica's batch is split into k
equal micro-batches that run one after the other (a `tf.while_loop` without parallel
iterations), their gradients summed before the one optimizer update: the same gradient
as the whole batch (each micro-batch is normalized by the whole batch's counts) with the
activation memory of one micro-batch.

During the first `RealmConfig.reader_only_steps` steps the towers' gradients are zero, so
only the reader trains. With `RealmConfig.freeze_reader` (`freeze_document_tower`) the
reader's (the document tower's) variables are left out of the step: no gradients, no
updates.

`make_eval_step(model, strategy)` returns the global batch's sums (negative
log-likelihoods, correct predictions, masked tokens, ...) of the marginal prediction and
of the null document alone; `eval_metrics` turns sums added over batches into the
token-weighted eval metrics (the pre-training job's evaluation).
"""

from typing import Callable, Dict, Optional

import tensorflow as tf

from realm_tf.modeling.embedder import unpack_inputs
from realm_tf.modeling.evidence import masked_span_evidence
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


def _micro_batch(features, index, num_micro_batches: int):
  """Micro-batch `index` of a batch: rows [index * b, (index + 1) * b) of every tensor."""
  def take(t):
    size = tf.shape(t)[0] // num_micro_batches
    return t[index * size:(index + 1) * size]
  return tf.nest.map_structure(take, features)


def _dense(grad):
  return tf.convert_to_tensor(grad) if isinstance(grad, tf.IndexedSlices) else grad


def make_train_step(model: RealmModel, optimizer, strategy: Optional[
    tf.distribute.Strategy] = None, jit_compile: bool = False,
                    micro_batches: Optional[int] = None) -> Callable:
  """A `tf.function(features) -> {loss, retrieval_utility, off_policy_delay_mins}`.

  Args:
    model: the `RealmModel` (built under `strategy.scope()`).
    optimizer: e.g. `create_optimizer(config)` (created under `strategy.scope()`).
    strategy: the distribution strategy (default: the current one).
    jit_compile: XLA-compile each replica's forward and backward pass.
    micro_batches: split each replica's batch into this many sequential micro-batches
      (default: `model.config.micro_batches`); it must divide the per-replica batch.

  The returned function takes one global batch, as a distributed value (from
  `strategy.experimental_distribute_dataset` or `distribute_datasets_from_function`) for a
  multi-replica strategy, or the batch itself for the default strategy, and trains on it
  once.
  """
  strategy = strategy or tf.distribute.get_strategy()
  if micro_batches is None:
    micro_batches = getattr(model.config, "micro_batches", 1)
  if micro_batches < 1:
    raise ValueError(f"micro_batches must be positive, got {micro_batches}.")

  frozen = set()
  if getattr(model.config, "freeze_reader", False):
    frozen |= {v.ref() for v in model.reader.trainable_variables}
  if getattr(model.config, "freeze_document_tower", False):
    frozen |= {v.ref() for v in model.document_embedder.trainable_variables}
  variables = [v for v in model.trainable_variables if v.ref() not in frozen]

  def forward_backward(features, num_masks, num_examples, now):
    with tf.GradientTape() as tape:
      outputs = model(features, training=True, loss_normalizer=num_masks,
                      example_normalizer=num_examples, now=now)
    grads = tape.gradient(outputs["loss"], variables)
    return _scalars(outputs), grads

  if jit_compile:
    forward_backward = tf.function(forward_backward, jit_compile=True)

  def accumulated(features, num_masks, num_examples, now):
    """Scalars and gradients summed over the micro-batches, run one at a time."""
    batch_size = tf.shape(features["mlm_mask"])[0]
    tf.debugging.assert_equal(batch_size % micro_batches, 0, message=(
        f"micro_batches={micro_batches} does not divide the per-replica batch"))
    # The first micro-batch outside the loop fixes which variables get gradients.
    scalars, grads = forward_backward(_micro_batch(features, 0, micro_batches), num_masks,
                                      num_examples, now)
    used = [g is not None for g in grads]
    grads = [_dense(g) for g in grads if g is not None]
    for i in tf.range(1, micro_batches):
      tf.autograph.experimental.set_loop_options(parallel_iterations=1)
      more_scalars, more_grads = forward_backward(
          _micro_batch(features, i, micro_batches), num_masks, num_examples, now)
      scalars = {k: v + more_scalars[k] for k, v in scalars.items()}
      more_grads = [_dense(m) for m in more_grads if m is not None]
      grads = [g + m for g, m in zip(grads, more_grads)]
    grads = iter(grads)
    return scalars, [next(grads) if u else None for u in used]

  reader_only_steps = getattr(model.config, "reader_only_steps", 0)
  towers = {v.ref() for v in (model.query_embedder.trainable_variables +
                              model.document_embedder.trainable_variables)}

  def hold_towers(grads):
    """Zero gradients for the query and document towers while only the reader trains."""
    trains = optimizer.iterations >= reader_only_steps
    return [g * tf.cast(trains, g.dtype) if g is not None and v.ref() in towers else g
            for g, v in zip(grads, variables)]

  def replica_step(features):
    num_masks, num_examples = _normalizers(features)
    now = tf.timestamp()  # Outside XLA: tf.timestamp cannot be compiled.
    if micro_batches == 1:
      scalars, grads = forward_backward(features, num_masks, num_examples, now)
    else:
      scalars, grads = accumulated(features, num_masks, num_examples, now)
    if reader_only_steps:
      grads = hold_towers(grads)
    # Variables the loss does not reach (the reader's pooler) have no gradient.
    optimizer.apply_gradients(
        [(g, v) for g, v in zip(grads, variables) if g is not None])
    return scalars

  @tf.function
  def train_step(features):
    per_replica = strategy.run(replica_step, args=(features,))
    return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
            for k, v in per_replica.items()}

  return train_step


EVAL_SUMS = ("nll", "null_nll", "correct", "null_correct", "masks", "null_mass", "delay",
             "examples", "spans", "evidence")


def make_eval_step(model: RealmModel,
                   strategy: Optional[tf.distribute.Strategy] = None) -> Callable:
  """A `tf.function(features) -> {EVAL_SUMS: float64}`: the global batch's sums, without
  dropout, that `eval_metrics` turns into token-weighted metrics over many batches.

  `nll` is the marginal prediction's and `null_nll` the null document's (candidate 0)
  negative log-likelihood of the masked tokens; `correct` / `null_correct` count the
  masked tokens whose argmax prediction is right, the marginal one being
  sum_z p(z|x) p(y|z,x) over the vocabulary; `null_mass` sums the examples' retrieval
  probability of the null document; `delay` sums the examples' index staleness in minutes;
  `spans` and `evidence` count the masked spans and those found verbatim in one of their
  retrieved candidates (`evidence.masked_span_evidence`).
  """
  strategy = strategy or tf.distribute.get_strategy()

  def replica_sums(features):
    out = model(features, training=False, return_logits=True)
    mask = tf.cast(features["mlm_mask"], tf.float32)  # [B, M]
    marginal = out["marginal_log_probs"]  # [B, M]
    null = out["gold_log_probs"][:, 0, :]  # [B, M], candidate 0 is the null document
    probs = tf.einsum("bn,bnmv->bmv", tf.exp(out["candidate_log_probs"]),
                      tf.nn.softmax(out["mlm_logits"], axis=-1))  # [B, M, V]
    targets = tf.cast(features["mlm_targets"], tf.int32)  # [B, M]
    hits = tf.cast(tf.equal(tf.argmax(probs, -1, output_type=tf.int32), targets),
                   tf.float32)
    null_hits = tf.cast(tf.equal(tf.argmax(out["mlm_logits"][:, 0], -1,
                                           output_type=tf.int32), targets), tf.float32)
    timestamps = tf.cast(features["export_timestamp"], tf.float64)  # [B]
    delays = (tf.timestamp() - timestamps) / 60.0 * tf.cast(timestamps > 0, tf.float64)
    sums = dict(nll=-tf.reduce_sum(marginal * mask), null_nll=-tf.reduce_sum(null * mask),
                correct=tf.reduce_sum(hits * mask),
                null_correct=tf.reduce_sum(null_hits * mask), masks=tf.reduce_sum(mask),
                null_mass=tf.reduce_sum(tf.exp(out["candidate_log_probs"][:, 0])),
                delay=tf.reduce_sum(delays),
                examples=tf.cast(tf.shape(mask)[0], tf.float64),
                **masked_span_evidence(
                    unpack_inputs(features["candidate_inputs"])["input_word_ids"],
                    features["mlm_positions"], features["mlm_targets"], features["mlm_mask"]))
    return {k: tf.cast(v, tf.float64) for k, v in sums.items()}

  @tf.function
  def eval_step(features):
    per_replica = strategy.run(replica_sums, args=(features,))
    return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
            for k, v in per_replica.items()}

  return eval_step


def eval_metrics(totals: Dict[str, float]) -> Dict[str, float]:
  """Token-weighted metrics from `make_eval_step` sums (added over batches): `loss` and
  `mlm_accuracy` of the marginal prediction, `null_loss` and `null_mlm_accuracy` of the
  null document alone (what the reader knows without retrieval), `retrieval_utility`
  (their log-likelihood difference), `null_document_mass` (the mean retrieval probability
  of the null document: at 0 or 1 the retrieval softmax has saturated and the retriever
  no longer learns), `evidence_rate` (the share of masked spans found verbatim in one of
  their retrieved candidates: a retriever that learns from REALM's signal raises it),
  `off_policy_delay_mins` and `eval_examples`."""
  masks = max(float(totals["masks"]), 1.0)
  examples = max(float(totals["examples"]), 1.0)
  spans = max(float(totals["spans"]), 1.0)
  return dict(loss=float(totals["nll"]) / masks, null_loss=float(totals["null_nll"]) / masks,
              retrieval_utility=float(totals["null_nll"] - totals["nll"]) / masks,
              mlm_accuracy=float(totals["correct"]) / masks,
              null_mlm_accuracy=float(totals["null_correct"]) / masks,
              null_document_mass=float(totals["null_mass"]) / examples,
              evidence_rate=float(totals["evidence"]) / spans,
              off_policy_delay_mins=float(totals["delay"]) / examples,
              eval_examples=float(totals["examples"]))
