"""The Inverse Cloze Task model (language/orqa/models/ict_model.py): one tower, in-batch
negatives across replicas.

The same `ProjectedEmbedder` embeds the pseudo-queries `[CLS] q [SEP]` (segment ids 0) and
the blocks `[CLS] title [SEP] block [SEP]`. Each query is scored against every block of
the *global* batch: the replicas' block embeddings are concatenated with
`ReplicaContext.all_gather` (the original's `cross_shard_concat`; gradients flow back to
every replica), and the label of local query i on replica r is `r * local_batch + i`.
The loss is the softmax cross-entropy per query.

Step functions return *sums* over the global batch (loss, correct predictions, mask
counts); `summarize` turns them into the original's eval metrics.
"""

from typing import Callable, Dict, Optional

import tensorflow as tf

SUM_KEYS = ("loss_sum", "num_examples", "query_tokens", "query_positions",
            "block_tokens", "block_positions", "num_masked", "masked_correct",
            "unmasked_correct")


def in_batch_logits(query_emb, block_emb):
  """Scores of every local query against every block of the global batch.

  Args:
    query_emb: float32 [local_batch, D].
    block_emb: float32 [local_batch, D].

  Returns:
    logits float32 [local_batch, global_batch] and labels int32 [local_batch] (the
    column of each query's own block).
  """
  ctx = tf.distribute.get_replica_context()
  local_batch = tf.shape(query_emb)[0]
  offset = tf.constant(0, tf.int32)
  if ctx is not None and ctx.num_replicas_in_sync > 1:
    block_emb = ctx.all_gather(block_emb, axis=0)  # [global_batch, D]
    offset = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * local_batch
  logits = tf.matmul(query_emb, block_emb, transpose_b=True)  # [local_batch, global_batch]
  labels = offset + tf.range(local_batch, dtype=tf.int32)  # [local_batch]
  return logits, labels


def ict_outputs(embedder, features: Dict[str, object], training: bool) -> Dict[str, tf.Tensor]:
  """Per-query loss and the metric sums of one (per-replica) batch.

  Args:
    embedder: the shared tower, (token_ids, mask, segment_ids) [b, L] -> [b, D].
    features: `realm_tf.ict.dataset` batch: query_inputs [b, Q], block_inputs [b, B]
      (BertInputs), mask_query bool [b].
    training: dropout on.

  Returns:
    dict: `per_example_loss` [b], `logits` [b, global_b], `labels` [b], and the
    `SUM_KEYS` scalars (sums over this replica's batch).
  """
  query = features["query_inputs"]
  block = features["block_inputs"]
  query_emb = embedder((query.token_ids, query.mask, tf.zeros_like(query.segment_ids)),
                       training=training)  # [b, D]
  block_emb = embedder((block.token_ids, block.mask, block.segment_ids),
                       training=training)  # [b, D]
  logits, labels = in_batch_logits(query_emb, block_emb)
  per_example_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=labels, logits=logits)  # [b]
  correct = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels),
                    tf.float32)  # [b]
  masked = tf.cast(features["mask_query"], tf.float32)  # [b]
  return dict(
      per_example_loss=per_example_loss, logits=logits, labels=labels,
      loss_sum=tf.reduce_sum(per_example_loss),
      num_examples=tf.cast(tf.shape(labels)[0], tf.float32),
      query_tokens=tf.reduce_sum(tf.cast(query.mask, tf.float32)),
      query_positions=tf.cast(tf.size(query.mask), tf.float32),
      block_tokens=tf.reduce_sum(tf.cast(block.mask, tf.float32)),
      block_positions=tf.cast(tf.size(block.mask), tf.float32),
      num_masked=tf.reduce_sum(masked),
      masked_correct=tf.reduce_sum(correct * masked),
      unmasked_correct=tf.reduce_sum(correct * (1.0 - masked)))


def summarize(sums: Dict[str, float]) -> Dict[str, float]:
  """The original's metrics from summed values: loss (mean), query/block_non_padding,
  actual_mask_ratio, masked/unmasked_accuracy, and accuracy."""
  n = max(float(sums["num_examples"]), 1.0)
  num_masked = float(sums["num_masked"])
  num_unmasked = float(sums["num_examples"]) - num_masked
  return dict(
      loss=float(sums["loss_sum"]) / n,
      query_non_padding=float(sums["query_tokens"]) / max(float(sums["query_positions"]), 1),
      block_non_padding=float(sums["block_tokens"]) / max(float(sums["block_positions"]), 1),
      actual_mask_ratio=num_masked / n,
      masked_accuracy=float(sums["masked_correct"]) / max(num_masked, 1.0),
      unmasked_accuracy=float(sums["unmasked_correct"]) / max(num_unmasked, 1.0),
      accuracy=(float(sums["masked_correct"]) + float(sums["unmasked_correct"])) / n)


def _reduce_sums(strategy, per_replica):
  return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica[k], axis=None)
          for k in SUM_KEYS}


def make_train_step(embedder, optimizer, global_batch_size: int,
                    strategy: Optional[tf.distribute.Strategy] = None) -> Callable:
  """A `tf.function(distributed batch) -> {SUM_KEYS}` training once on a global batch.

  Each replica's loss is its summed per-query loss over `global_batch_size`, so the
  optimizer's all-reduced (summed) gradient is the gradient of the global-batch mean
  (including the gradient that reaches each replica's blocks through `all_gather`).
  """
  strategy = strategy or tf.distribute.get_strategy()

  def replica_step(features):
    with tf.GradientTape() as tape:
      outputs = ict_outputs(embedder, features, training=True)
      loss = tf.nn.compute_average_loss(outputs["per_example_loss"],
                                        global_batch_size=global_batch_size)
    variables = embedder.trainable_variables
    grads = tape.gradient(loss, variables)
    optimizer.apply_gradients(
        [(g, v) for g, v in zip(grads, variables) if g is not None])
    return {k: outputs[k] for k in SUM_KEYS}

  @tf.function
  def train_step(features):
    return _reduce_sums(strategy, strategy.run(replica_step, args=(features,)))

  return train_step


def make_eval_step(embedder, strategy: Optional[tf.distribute.Strategy] = None) -> Callable:
  """A `tf.function(distributed batch) -> {SUM_KEYS}` without dropout."""
  strategy = strategy or tf.distribute.get_strategy()

  def replica_step(features):
    outputs = ict_outputs(embedder, features, training=False)
    return {k: outputs[k] for k in SUM_KEYS}

  @tf.function
  def eval_step(features):
    return _reduce_sums(strategy, strategy.run(replica_step, args=(features,)))

  return eval_step
