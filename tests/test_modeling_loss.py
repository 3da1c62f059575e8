"""The REALM objective and metrics against an independent NumPy version of
`language/realm/model.py`'s loss and metrics."""

import realm_tf  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import numpy as np
import pytest
import tensorflow as tf

from tests import modeling_testing
from realm_tf.modeling import realm_steps
from realm_tf.modeling.evidence import masked_span_evidence
from realm_tf.modeling.realm_model import (RealmModel, gold_log_probs_from_logits,
                                           off_policy_delay_mins, realm_objective)


def _np_log_softmax(x, axis):
  x = x - x.max(axis=axis, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


def _np_logsumexp(x, axis):
  mx = x.max(axis=axis, keepdims=True)
  return (mx + np.log(np.exp(x - mx).sum(axis=axis, keepdims=True))).squeeze(axis)


def numpy_realm_loss(scores, mlm_logits, targets, mask):
  """The REALM loss and the retrieval utility, in float64 NumPy loops."""
  scores, mlm_logits = np.float64(scores), np.float64(mlm_logits)
  b_size, n_size, m_size, _ = mlm_logits.shape
  cand = _np_log_softmax(scores, axis=-1)  # [B, N]
  mlm_log_probs = _np_log_softmax(mlm_logits, axis=-1)  # [B, N, M, V]
  gold = np.zeros([b_size, n_size, m_size])
  for b in range(b_size):
    for n in range(n_size):
      for m in range(m_size):
        gold[b, n, m] = mlm_log_probs[b, n, m, targets[b, m]]
  marginal = _np_logsumexp(cand[:, :, None] + gold, axis=1)  # [B, M]
  total = mask.sum()
  loss = -(marginal * mask).sum() / total if total else 0.0
  utility = ((marginal - gold[:, 0]) * mask).sum() / total if total else 0.0
  return loss, utility, marginal, gold


@pytest.mark.parametrize("masks", [
    [[1, 1, 1], [1, 0, 0], [0, 0, 0], [1, 1, 0]],  # masked-out tokens, an all-padding example
    [[0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]],  # no mask at all: loss 0, not NaN
])
def test_objective_matches_numpy(masks):
  rng = np.random.default_rng(0)
  b, n, m, v = 4, 5, 3, 11
  scores = rng.normal(size=[b, n]) * 3
  logits = rng.normal(size=[b, n, m, v]) * 2
  targets = rng.integers(0, v, size=[b, m])
  mask = np.array(masks)
  gold = gold_log_probs_from_logits(tf.constant(logits, tf.float32), tf.constant(targets))
  out = realm_objective(tf.constant(scores, tf.float32), gold, tf.constant(mask))
  loss, utility, marginal, np_gold = numpy_realm_loss(scores, logits, targets, mask)
  np.testing.assert_allclose(gold.numpy(), np_gold, atol=1e-5)
  np.testing.assert_allclose(out["marginal_log_probs"].numpy(), marginal, atol=1e-5)
  assert abs(float(out["loss"]) - loss) < 1e-5
  assert abs(float(out["retrieval_utility"]) - utility) < 1e-5
  assert np.isfinite(float(out["loss"]))


def test_per_token_marginal_differs_from_per_example():
  """Marginalization is per masked token (as the original code), not over the product."""
  rng = np.random.default_rng(1)
  scores, gold = rng.normal(size=[1, 3]), rng.normal(size=[1, 3, 2]) - 2
  out = realm_objective(tf.constant(scores, tf.float32), tf.constant(gold, tf.float32),
                        tf.ones([1, 2]))
  cand = _np_log_softmax(scores, -1)
  per_example = -_np_logsumexp(cand + gold.sum(-1), axis=1)[0] / 2
  per_token = -_np_logsumexp(cand[:, :, None] + gold, axis=1).sum() / 2
  assert abs(float(out["loss"]) - per_token) < 1e-5
  assert abs(per_token - per_example) > 1e-3


def test_loss_normalizer_splits_the_global_mean():
  rng = np.random.default_rng(2)
  scores, gold = rng.normal(size=[4, 3]), rng.normal(size=[4, 3, 2])
  mask = np.array([[1, 1], [1, 0], [0, 0], [1, 1]])
  full = realm_objective(tf.constant(scores), tf.constant(gold), tf.constant(mask))
  halves = [realm_objective(tf.constant(scores[s]), tf.constant(gold[s]),
                            tf.constant(mask[s]), loss_normalizer=mask.sum())
            for s in (slice(0, 2), slice(2, 4))]
  assert abs(sum(float(h["loss"]) for h in halves) - float(full["loss"])) < 1e-6


def test_off_policy_delay():
  ts = tf.constant([0, 1000, 1600], tf.int32)
  delay = off_policy_delay_mins(ts, now=tf.constant(2200.0, tf.float64))
  # (0 + 1200/60 + 600/60) / 3: the initial embedder (timestamp 0) counts as no delay.
  assert abs(float(delay) - 10.0) < 1e-9
  assert float(off_policy_delay_mins(tf.zeros([2], tf.int32))) == 0.0


@pytest.fixture(scope="module")
def tiny_model():
  config = modeling_testing.tiny_realm_config()
  tf.random.set_seed(1)
  return RealmModel(config)


def test_model_loss_matches_numpy_on_its_scores_and_logits(tiny_model):
  config = tiny_model.config
  features = modeling_testing.random_features(config, 4, seed=5,
                                           num_masks=np.array([2, 1, 0, 2]))
  out = tiny_model(features, training=False, return_logits=True)
  assert out["retrieval_scores"].shape == [4, config.num_candidates]
  assert out["mlm_logits"].shape == [4, config.num_candidates, config.max_masks,
                                     config.bert.vocab_size]
  loss, utility, _, _ = numpy_realm_loss(
      out["retrieval_scores"].numpy(), out["mlm_logits"].numpy(),
      features["mlm_targets"].numpy(), features["mlm_mask"].numpy())
  assert abs(float(out["loss"]) - loss) < 1e-5
  assert abs(float(out["retrieval_utility"]) - utility) < 1e-5
  # The scores are inner products of the two towers' embeddings.
  query_emb = tiny_model.embed_queries(features["query_inputs"]).numpy()
  cand_emb = tiny_model.embed_candidates(features["candidate_inputs"]).numpy()
  np.testing.assert_allclose(out["retrieval_scores"].numpy(),
                             np.einsum("bd,bnd->bn", query_emb, cand_emb), atol=1e-4)
  # Reader MLM logits of one candidate equal the reader on that candidate alone.
  joint = {k: v[:, 1] for k, v in zip(["input_word_ids", "input_mask", "input_type_ids"],
                                      features["joint_inputs"])}
  single = tiny_model.reader(joint, mlm_positions=features["mlm_positions"])
  np.testing.assert_allclose(single["mlm_logits"].numpy(), out["mlm_logits"][:, 1].numpy(),
                             atol=1e-4)


def test_null_document_gets_a_model_score(tiny_model):
  features = modeling_testing.random_features(tiny_model.config, 4, seed=6)
  out = tiny_model(features, training=False)
  null_scores = out["retrieval_scores"][:, 0].numpy()
  # Candidate 0 is the null document [CLS] [SEP] [SEP] in every example ...
  null_ids = features["candidate_inputs"].token_ids[:, 0].numpy()
  assert (null_ids == null_ids[0]).all()
  assert list(null_ids[0][:3]) == [modeling_testing.CLS_ID, modeling_testing.SEP_ID,
                                   modeling_testing.SEP_ID]
  # ... scored by the model: the same document embedding against different queries.
  assert np.ptp(null_scores) > 1e-4
  assert np.all(null_scores != 0.0)
  null_emb = tiny_model.embed_candidates(features["candidate_inputs"])[:, 0].numpy()
  np.testing.assert_allclose(null_emb, np.repeat(null_emb[:1], 4, axis=0), atol=1e-5)


def test_eval_metrics_match_the_model_outputs(tiny_model):
  features = modeling_testing.random_features(tiny_model.config, 4, seed=7)
  out = tiny_model(features, training=False)
  totals = realm_steps.make_eval_step(tiny_model)(features)
  metrics = realm_steps.eval_metrics({k: float(v) for k, v in totals.items()})
  mask = features["mlm_mask"].numpy().astype(np.float64)
  marginal = out["marginal_log_probs"].numpy()
  null = out["gold_log_probs"][:, 0].numpy()
  assert metrics["loss"] == pytest.approx(-(marginal * mask).sum() / mask.sum(), rel=1e-5)
  assert metrics["null_loss"] == pytest.approx(-(null * mask).sum() / mask.sum(), rel=1e-5)
  assert metrics["retrieval_utility"] == pytest.approx(
      ((marginal - null) * mask).sum() / mask.sum(), abs=1e-5)
  null_mass = np.exp(out["candidate_log_probs"][:, 0].numpy()).mean()
  assert 0.0 < null_mass < 1.0
  assert metrics["null_document_mass"] == pytest.approx(null_mass, rel=1e-5)
  assert metrics["eval_examples"] == 4
  evidence = masked_span_evidence(features["candidate_inputs"].token_ids,
                                  features["mlm_positions"], features["mlm_targets"],
                                  features["mlm_mask"])
  assert float(evidence["spans"]) > 0
  assert metrics["evidence_rate"] == float(evidence["evidence"] / evidence["spans"])


def test_dropout_only_in_training(tiny_model):
  features = modeling_testing.random_features(tiny_model.config, 2, seed=7)
  a = tiny_model(features, training=False)["loss"]
  b = tiny_model(features, training=False)["loss"]
  c = tiny_model(features, training=True)["loss"]
  assert float(a) == float(b)
  assert float(a) != float(c)
  emb = tiny_model.query_embedder
  q = features["query_inputs"]
  e1, e2 = emb(q, training=False), emb(q, training=True)
  assert not np.allclose(e1.numpy(), e2.numpy())
