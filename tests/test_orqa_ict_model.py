"""ICT: block examples, in-batch-negative loss vs NumPy, 2-replica step."""
import gzip
import json

import numpy as np
import tensorflow as tf
import tf_keras

from orqa import build_ict_examples
from realm_tf.ict import dataset as ict_dataset
from realm_tf.ict import model as ict_model
from realm_tf.featurization import BertInputs
from tests import strategy_utils


class _TableEmbedder(tf_keras.layers.Layer):
  """Embeds a sequence as the masked sum of per-token vectors (a stand-in tower)."""

  def __init__(self, table):
    super().__init__()
    self.table = tf.Variable(table, dtype=tf.float32)

  def call(self, inputs, training=None):
    token_ids, mask, _ = inputs
    vectors = tf.gather(self.table, token_ids) * tf.cast(mask, tf.float32)[..., None]
    return tf.reduce_sum(vectors, axis=1)


def _features(rng, batch_size, query_len=5, block_len=7, vocab_size=20):
  def inputs(length):
    ids = rng.integers(1, vocab_size, size=[batch_size, length]).astype(np.int32)
    mask = (rng.random([batch_size, length]) < 0.8).astype(np.int32)
    mask[:, 0] = 1
    return BertInputs(tf.constant(ids * mask), tf.constant(mask),
                      tf.constant(np.zeros_like(ids)))
  return dict(query_inputs=inputs(query_len), block_inputs=inputs(block_len),
              mask_query=tf.constant(rng.random(batch_size) < 0.7))


def _log_softmax(x):
  x = x - x.max(axis=-1, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def test_in_batch_loss_and_metrics_match_numpy():
  rng = np.random.default_rng(0)
  table = rng.normal(size=[20, 6]).astype(np.float32)
  embedder = _TableEmbedder(table)
  features = _features(rng, batch_size=5)
  outputs = ict_model.ict_outputs(embedder, features, training=False)

  def embed(inputs):
    return (table[inputs.token_ids.numpy()] * inputs.mask.numpy()[..., None]).sum(1)

  query = embed(features["query_inputs"])
  block = embed(features["block_inputs"])
  logits = query @ block.T  # [5, 5]: every query against every block of the batch
  expected_loss = -np.diag(_log_softmax(logits))
  np.testing.assert_allclose(outputs["logits"].numpy(), logits, rtol=1e-5, atol=1e-4)
  np.testing.assert_array_equal(outputs["labels"].numpy(), np.arange(5))
  np.testing.assert_allclose(outputs["per_example_loss"].numpy(), expected_loss, rtol=1e-5,
                             atol=1e-4)

  correct = logits.argmax(-1) == np.arange(5)
  masked = features["mask_query"].numpy()
  metrics = ict_model.summarize({k: float(outputs[k]) for k in ict_model.SUM_KEYS})
  assert np.isclose(metrics["loss"], expected_loss.mean(), rtol=1e-5)
  assert np.isclose(metrics["actual_mask_ratio"], masked.mean())
  assert np.isclose(metrics["masked_accuracy"], correct[masked].mean() if masked.any() else 0)
  assert np.isclose(metrics["unmasked_accuracy"],
                    correct[~masked].mean() if (~masked).any() else 0)
  assert np.isclose(metrics["query_non_padding"],
                    features["query_inputs"].mask.numpy().mean())
  assert np.isclose(metrics["block_non_padding"],
                    features["block_inputs"].mask.numpy().mean())


def test_build_ict_examples_sentences_and_tokens(tmp_path, tiny_vocab_path, tiny_tokenizer):
  passages = tmp_path / "passages.jsonl.gz"
  with gzip.open(passages, "wt", encoding="utf-8") as f:
    f.write(json.dumps({"title": "Paris", "text": "Paris is a city. The Eiffel tower "
                        "was built in 1889. France, new york."}) + "\n")
    f.write(json.dumps({"title": "Nile", "text": "The river Nile."}) + "\n")
  output = str(tmp_path / "out" / "ict.tfr.gz")
  counts = build_ict_examples.build(str(passages), output, tiny_vocab_path)
  assert (counts["blocks"], counts["sentences"], counts["empty"]) == (2, 4, 0)
  records = [tf.io.parse_single_example(r, ict_dataset.ICT_FEATURES)
             for r in tf.data.TFRecordDataset(output, "GZIP")]
  ids = lambda text: tiny_tokenizer.tokenize_ids([text])[0].numpy().tolist()
  first = {k: v.numpy().tolist() for k, v in records[0].items()}
  assert first["title_ids"] == ids("Paris")
  sentences = ["Paris is a city.", "The Eiffel tower was built in 1889.",
               "France, new york."]
  assert first["token_ids"] == sum((ids(s) for s in sentences), [])
  assert first["sentence_starts"] == [0, len(ids(sentences[0])),
                                      len(ids(sentences[0])) + len(ids(sentences[1]))]
  # The whole passage tokenizes the same as its sentences one by one.
  assert first["token_ids"] == ids(" ".join(sentences))
  assert records[1]["sentence_starts"].numpy().tolist() == [0]
  assert counts["tokens"] == len(first["token_ids"]) + len(ids("The river Nile."))
  # What the ICT dataset reads.
  batch = next(iter(ict_dataset.ict_dataset([output], 2, query_seq_len=8,
                                            block_seq_len=16, mask_rate=0.0,
                                            cls_id=2, sep_id=3, training=False)))
  assert batch["block_inputs"].token_ids.shape == (2, 16)


def test_one_batched_train_step_on_two_replicas_equals_one_device():
  result = strategy_utils.run_with_logical_cpus("""
import numpy as np
import tf_keras
from realm_tf.ict import model as ict_model
from realm_tf.featurization import BertInputs
from tests import modeling_testing
from realm_tf.modeling.embedder import ProjectedEmbedder

rng = np.random.default_rng(3)
def inputs(batch, length, segments):
  ids = rng.integers(5, 60, size=[batch, length]).astype(np.int32)
  mask = np.ones_like(ids)
  mask[:, length - 2:] = rng.integers(0, 2, size=[batch, 2])
  seg = np.zeros_like(ids)
  if segments:
    seg[:, length // 2:] = 1
  return BertInputs(ids * mask, mask, seg * mask)
features = dict(query_inputs=inputs(4, 6, False), block_inputs=inputs(4, 10, True),
                mask_query=np.array([True, False, True, True]))
config = modeling_testing.tiny_bert_config(vocab_size=60, hidden_size=32,
                                        hidden_dropout_prob=0.0,
                                        attention_probs_dropout_prob=0.0)
reference = ProjectedEmbedder(config, projection_size=8, dropout_rate=0.0).build_variables()
weights = reference.get_weights()
initial = [v.numpy() for v in reference.trainable_variables]

def run(strategy):
  with strategy.scope():
    embedder = ProjectedEmbedder(config, projection_size=8, dropout_rate=0.0)
    embedder.build_variables()
    embedder.set_weights(weights)
    optimizer = tf_keras.optimizers.SGD(0.5)
  step = ict_model.make_train_step(embedder, optimizer, 4, strategy)
  batch = next(iter(strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensors(features))))
  sums = {k: float(v) for k, v in step(batch).items()}
  return sums, [v.numpy() for v in embedder.trainable_variables]

single, single_vars = run(tf.distribute.get_strategy())
mirrored, mirrored_vars = run(mirrored_strategy())
emit(dict(single=single, mirrored=mirrored,
          max_var_diff=max(float(np.abs(a - b).max())
                           for a, b in zip(single_vars, mirrored_vars)),
          max_update=max(float(np.abs(a - b).max()) for a, b in zip(single_vars, initial)),
          num_updated=sum(not np.allclose(a, b) for a, b in zip(single_vars, initial)),
          num_vars=len(initial)))
""")
  single, mirrored = result["single"], result["mirrored"]
  assert single["num_examples"] == mirrored["num_examples"] == 4
  for key in ict_model.SUM_KEYS:
    np.testing.assert_allclose(mirrored[key], single[key], rtol=1e-5, atol=1e-5,
                               err_msg=key)
  # Same gradient (queries scored against the blocks of both replicas) -> same update, up
  # to float32 summation order (the cross-replica sum adds in another order; 1.7e-5 seen).
  assert result["max_update"] > 1e-2, result
  assert result["max_var_diff"] < 1e-4, result
  assert result["num_updated"] >= result["num_vars"] - 2, result  # All but key biases.
