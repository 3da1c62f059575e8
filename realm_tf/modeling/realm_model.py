"""The REALM pre-training model and objective (`language/realm/model.py`).

From a batch of featurized examples (`realm_tf.featurization`), `RealmModel`:

1. embeds the queries with the query tower: `query_emb` [B, D];
2. embeds the N candidates of every example (null document first) with the document tower,
   recomputed so that gradients reach it: `candidate_emb` [B, N, D];
3. scores them, `retrieval_scores = einsum('BD,BND->BN')`, and normalizes over the N
   candidates only: `candidate_log_probs = log_softmax(retrieval_scores)` [B, N];
4. runs the reader (BERT + MLM head) on the joint inputs `[CLS] query [SEP] body [SEP]`
   [B*N, Q+C] at the masked positions: `mlm_logits` [B, N, M, V], and takes the
   log-probabilities of the targets: `gold_log_probs` [B, N, M];
5. marginalizes over candidates *per masked token*:
   `marginal[b, m] = logsumexp_n(candidate_log_probs[b, n] + gold_log_probs[b, n, m])`;
6. loss = `-sum(marginal * mlm_mask) / sum(mlm_mask)` (0 when there is no mask), the mean
   over every real masked token of the batch.

Metrics: `retrieval_utility` = the same masked mean of
`marginal - gold_log_probs[:, 0]` (log p(y|x) - log p(y|null, x)), and
`off_policy_delay_mins` = the mean over examples of `(now - export_timestamp) / 60`, zero
for examples retrieved by the initial embedder (timestamp 0).

Under a `tf.distribute` strategy, pass the *global* number of masked tokens (and of
examples) as `loss_normalizer` (`example_normalizer`): each replica then returns its share
of the global mean, and the strategy's SUM of replica values equals the single-device
value on the same global batch (see `realm_tf.modeling.realm_steps`).
"""

from typing import Any, Dict, Optional, Union

import tensorflow as tf
import tf_keras

from realm_tf.modeling.config import RealmConfig
from realm_tf.modeling.embedder import ProjectedEmbedder, unpack_inputs
from realm_tf.modeling.reader import KnowledgeAugmentedEncoder


def flatten_candidates(inputs):
  """Merges the batch and candidate axes: each [B, N, L] tensor becomes [B*N, L]."""
  return tf.nest.map_structure(
      lambda t: tf.reshape(t, [-1, tf.shape(t)[-1]]), unpack_inputs(inputs))


def gold_log_probs_from_logits(mlm_logits: tf.Tensor, mlm_targets: tf.Tensor) -> tf.Tensor:
  """log_softmax(mlm_logits)[..., target]: [B, N, M, V] and [B, M] -> [B, N, M].

  Computed as `logit[target] - logsumexp(logits)`, which is `log_softmax` followed by the
  original's `batch_gather`, without materializing a second [B, N, M, V] tensor.
  """
  mlm_logits = tf.cast(mlm_logits, tf.float32)
  num_candidates = tf.shape(mlm_logits)[1]
  targets = tf.tile(tf.cast(mlm_targets, tf.int32)[:, None, :],
                    [1, num_candidates, 1])  # [B, N, M]
  gold_logits = tf.gather(mlm_logits, targets[..., None], batch_dims=3)[..., 0]  # [B, N, M]
  return gold_logits - tf.reduce_logsumexp(mlm_logits, axis=-1)  # [B, N, M]


def realm_objective(retrieval_scores: tf.Tensor, gold_log_probs: tf.Tensor,
                    mlm_mask: tf.Tensor,
                    loss_normalizer: Optional[tf.Tensor] = None) -> Dict[str, tf.Tensor]:
  """The REALM loss and retrieval utility (steps 3, 5 and 6 of the module docstring).

  Args:
    retrieval_scores: float [B, N] query-candidate inner products (candidate 0 = null).
    gold_log_probs: float [B, N, M] reader log-probabilities of the MLM targets.
    mlm_mask: [B, M] 1 for real masked tokens, 0 for padding.
    loss_normalizer: the number of masked tokens to divide by; defaults to sum(mlm_mask).
      Under a distribution strategy pass the global count across replicas.

  Returns:
    A dict of float32 tensors: `loss` [], `retrieval_utility` [], `candidate_log_probs`
    [B, N], `marginal_log_probs` [B, M], `num_masks` [] (local sum of mlm_mask).
  """
  retrieval_scores = tf.cast(retrieval_scores, tf.float32)
  gold_log_probs = tf.cast(gold_log_probs, tf.float32)
  mask = tf.cast(mlm_mask, tf.float32)  # [B, M]
  candidate_log_probs = tf.nn.log_softmax(retrieval_scores, axis=-1)  # [B, N]
  joint_log_probs = candidate_log_probs[:, :, None] + gold_log_probs  # [B, N, M]
  marginal_log_probs = tf.reduce_logsumexp(joint_log_probs, axis=1)  # [B, M]
  num_masks = tf.reduce_sum(mask)
  normalizer = num_masks if loss_normalizer is None else tf.cast(loss_normalizer, tf.float32)
  loss = -tf.math.divide_no_nan(tf.reduce_sum(marginal_log_probs * mask), normalizer)
  null_log_probs = gold_log_probs[:, 0, :]  # [B, M]
  utility = tf.math.divide_no_nan(
      tf.reduce_sum((marginal_log_probs - null_log_probs) * mask), normalizer)
  return dict(loss=loss, retrieval_utility=utility, candidate_log_probs=candidate_log_probs,
              marginal_log_probs=marginal_log_probs, num_masks=num_masks)


def off_policy_delay_mins(export_timestamp: tf.Tensor, now: Optional[tf.Tensor] = None,
                          example_normalizer: Optional[tf.Tensor] = None) -> tf.Tensor:
  """Mean minutes between retrieval-embedder export and now; 0 for timestamp 0.

  Args:
    export_timestamp: int [B] Unix seconds of the embedder export that retrieved.
    now: float64 [] Unix seconds; defaults to `tf.timestamp()` (which XLA cannot compile,
      so compiled steps pass it in).
    example_normalizer: number of examples to divide by; defaults to B.

  Returns:
    float64 [] mean delay in minutes.
  """
  if now is None:
    now = tf.timestamp()
  ts = tf.cast(export_timestamp, tf.float64)  # [B]
  delay = (tf.cast(now, tf.float64) - ts) / 60.0 * tf.cast(ts > 0, tf.float64)  # [B]
  if example_normalizer is None:
    example_normalizer = tf.size(ts)
  return tf.math.divide_no_nan(tf.reduce_sum(delay), tf.cast(example_normalizer, tf.float64))


@tf_keras.utils.register_keras_serializable(package="realm_tf")
class RealmModel(tf_keras.Model):
  """REALM: retriever towers + knowledge-augmented encoder, returning the loss and metrics.

  Args:
    config: a `RealmConfig` (or its dict).
    train_document_tower: when False, candidate embeddings are computed under
      `stop_gradient`, so no gradient reaches the document tower through them (with
      shared embedders the query path still trains the shared weights). To exclude the
      document tower's variables from training altogether, use `share_embedders=False`
      and `RealmConfig.freeze_document_tower` (the train step leaves them out).

  Attributes:
    document_embedder: the document tower (`ProjectedEmbedder`), exported as `embedder`.
    query_embedder: the query tower; the same object unless `share_embedders=False`.
    reader: the `KnowledgeAugmentedEncoder`, exported as `bert`.

  Call: `model(features, training=..., loss_normalizer=None, example_normalizer=None,
  now=None, return_logits=False)` with the batched feature dict of
  `realm_tf.featurization` (`query_inputs` [B, Q], `candidate_inputs` [B, N, C],
  `joint_inputs` [B, N, Q+C], `mlm_targets` / `mlm_positions` / `mlm_mask` [B, M],
  `export_timestamp` [B]). Returns a dict: `loss`, `retrieval_utility`,
  `off_policy_delay_mins` (float64), `num_masks` (scalars); `retrieval_scores` and
  `candidate_log_probs` [B, N]; `gold_log_probs` [B, N, M]; `marginal_log_probs` [B, M];
  and with return_logits, `mlm_logits` [B, N, M, V].
  """

  def __init__(self, config: Union[RealmConfig, Dict[str, Any]],
               train_document_tower: bool = True, **kwargs):
    kwargs.setdefault("name", "realm")
    super().__init__(**kwargs)
    if isinstance(config, dict):
      config = RealmConfig.from_dict(config)
    self._config = config
    self.train_document_tower = train_document_tower
    embedder_kwargs = dict(projection_size=config.projection_size,
                           dropout_rate=config.embedder_dropout_rate,
                           layer_norm_epsilon=config.embedder_layer_norm_epsilon,
                           recompute_activations=config.recompute_activations)
    self.document_embedder = ProjectedEmbedder(config.embedder, name="embedder",
                                               **embedder_kwargs)
    if config.share_embedders:
      self.query_embedder = self.document_embedder
    else:
      self.query_embedder = ProjectedEmbedder(config.embedder, name="query_embedder",
                                              **embedder_kwargs)
    self.reader = KnowledgeAugmentedEncoder(
        config.bert, recompute_activations=config.recompute_activations, name="bert")

  @property
  def config(self) -> RealmConfig:
    return self._config

  def embed_queries(self, query_inputs, training=None) -> tf.Tensor:
    """Query embeddings: BertInputs [B, Q] -> [B, D]."""
    return self.query_embedder(unpack_inputs(query_inputs), training=training)

  def embed_candidates(self, candidate_inputs, training=None) -> tf.Tensor:
    """Candidate embeddings: BertInputs [B, N, C] -> [B, N, D]."""
    token_ids = unpack_inputs(candidate_inputs)["input_word_ids"]
    batch_size, num_candidates = tf.shape(token_ids)[0], tf.shape(token_ids)[1]
    flat_emb = self.document_embedder(flatten_candidates(candidate_inputs),
                                      training=training)  # [B*N, D]
    return tf.reshape(flat_emb, [batch_size, num_candidates, -1])  # [B, N, D]

  def call(self, features, training=None, loss_normalizer=None, example_normalizer=None,
           now=None, return_logits=False):
    query_emb = self.embed_queries(features["query_inputs"], training=training)  # [B, D]
    candidate_emb = self.embed_candidates(features["candidate_inputs"],
                                          training=training)  # [B, N, D]
    if not self.train_document_tower:
      candidate_emb = tf.stop_gradient(candidate_emb)
    retrieval_scores = tf.einsum("BD,BND->BN", query_emb, candidate_emb)  # [B, N]

    joint_inputs = unpack_inputs(features["joint_inputs"])
    token_ids = joint_inputs["input_word_ids"]  # [B, N, Q+C]
    batch_size, num_candidates = tf.shape(token_ids)[0], tf.shape(token_ids)[1]
    mlm_positions = tf.cast(features["mlm_positions"], tf.int32)  # [B, M]
    num_masks = tf.shape(mlm_positions)[1]
    flat_positions = tf.reshape(
        tf.tile(mlm_positions[:, None, :], [1, num_candidates, 1]), [-1, num_masks])  # [B*N, M]
    reader_outputs = self.reader(flatten_candidates(joint_inputs),
                                 mlm_positions=flat_positions, training=training)
    flat_logits = reader_outputs["mlm_logits"]  # [B*N, M, V]
    mlm_logits = tf.reshape(
        flat_logits, [batch_size, num_candidates, num_masks, -1])  # [B, N, M, V]
    gold_log_probs = gold_log_probs_from_logits(mlm_logits, features["mlm_targets"])

    outputs = realm_objective(retrieval_scores, gold_log_probs, features["mlm_mask"],
                              loss_normalizer=loss_normalizer)
    outputs["off_policy_delay_mins"] = off_policy_delay_mins(
        features["export_timestamp"], now=now, example_normalizer=example_normalizer)
    outputs["retrieval_scores"] = retrieval_scores
    outputs["gold_log_probs"] = gold_log_probs
    if return_logits:
      outputs["mlm_logits"] = mlm_logits
    return outputs

  def build_variables(self):
    """Creates every variable (all towers and the reader) with a dummy forward pass."""
    self.query_embedder.build_variables()
    self.document_embedder.build_variables()
    self.reader.build_variables()
    return self

  def build_from_config(self, config):
    """Keras deserialization: create the variables with a dummy batch."""
    del config  # The recorded input shapes are not needed.
    self.build_variables()

  def get_config(self):
    return dict(config=self._config.to_dict(),
                train_document_tower=self.train_document_tower,
                name=self.name)

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**config)
