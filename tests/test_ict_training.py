"""The shared ICT job (`realm_tf.ict.training.train`): held-out evaluation with a step-0
baseline, zero-shot answer recall against an index of the tower, config saved, resume."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from realm_tf import sample_data
from realm_tf.corpus import build_retrieval_corpus
from realm_tf.featurization import Featurizer
from realm_tf.ict import examples as ict_examples
from realm_tf.ict import training as ict_training
from tests import modeling_testing
from realm_tf.modeling.embedder import ProjectedEmbedder
from realm_tf.retrieval import answer_recall
from realm_tf.retrieval import corpus_embedding
from realm_tf.retrieval import corpus_reader
from realm_tf.tokenization import Tokenizer
from realm_tf.training import eval_results

BLOCK_SEQ_LEN = 32


def _passages():
  with open(sample_data.PASSAGES_PATH, encoding="utf-8") as f:
    records = [json.loads(line) for line in f if line.strip()]
  return [(r["title"], r["text"]) for r in records]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp("ict")
  tokenizer = Tokenizer(sample_data.VOCAB_PATH)
  examples_path = str(root / "ict.tfr.gz")
  counts = ict_examples.build(_passages(), examples_path, tokenizer)
  assert counts["blocks"] == sample_data.num_passages() and counts["empty"] == 0
  blocks = str(root / "blocks")
  build_retrieval_corpus.build(sample_data.PASSAGES_PATH, blocks, sample_data.VOCAB_PATH,
                               num_shards=1, num_workers=1)
  return tokenizer, examples_path, corpus_reader.list_shards(blocks)


def _job(tokenizer, retrieval_paths, seed=0):
  config = modeling_testing.tiny_bert_config(vocab_size=tokenizer.vocab_size, hidden_size=32,
                                          hidden_dropout_prob=0.0,
                                          attention_probs_dropout_prob=0.0)
  tf.keras.utils.set_random_seed(seed)
  tower = ProjectedEmbedder(config, projection_size=16, dropout_rate=0.0).build_variables()
  featurizer = Featurizer(16, BLOCK_SEQ_LEN, 2, 1, tokenizer)

  def index_fn():
    def embed(input_ids, input_mask, segment_ids):
      return tower((input_ids, input_mask, segment_ids), training=False)
    return corpus_embedding.embed_shards(retrieval_paths, embed, featurizer, 256)

  questions, answers = answer_recall.load_qa_pairs(sample_data.QA_HELDOUT_PATH)
  zero_shot = answer_recall.ZeroShotRecall(
      questions[:40], answers[:40], answer_recall.load_block_texts(retrieval_paths),
      lambda texts: featurizer.featurize_query_tf(tokenizer.tokenize_ids(texts)))
  return tower, index_fn, zero_shot


def test_held_out_eval_from_step_0_zero_shot_recall_and_resume(setup, tmp_path):
  tokenizer, examples_path, retrieval_paths = setup
  config = ict_training.IctConfig(query_seq_len=16, block_seq_len=BLOCK_SEQ_LEN,
                                  learning_rate=1e-3, num_train_steps=4, num_warmup_steps=1,
                                  batch_size=8, eval_batch_size=8, num_eval_steps=2,
                                  eval_every_steps=2, log_every_steps=2)
  model_dir = str(tmp_path / "ict")
  tower, index_fn, zero_shot = _job(tokenizer, retrieval_paths)
  last = ict_training.train(tower, tokenizer, config, model_dir, [examples_path], [],
                            index_fn=index_fn, zero_shot=zero_shot, holdout_every=10)
  records = eval_results.read(model_dir)
  # The untrained tower is evaluated first: the baseline every later number is read against.
  assert [r["global_step"] for r in records] == [0, 2, 4]
  state = tf.train.get_checkpoint_state(os.path.join(model_dir, "checkpoints"))
  assert [p.rsplit("-", 1)[1] for p in state.all_model_checkpoint_paths] == ["0", "2", "4"]
  for record in records:
    assert 0.0 <= record["accuracy"] <= 1.0 and np.isfinite(record["loss"])
    recalls = [record[f"recall@{k}"] for k in (1, 5, 20)]
    assert all(0.0 <= r <= 1.0 for r in recalls) and recalls == sorted(recalls)
  assert last["recall@5"] == pytest.approx(records[-1]["recall@5"])
  with open(os.path.join(model_dir, ict_training.CONFIG_FILENAME), encoding="utf-8") as f:
    assert json.load(f)["num_train_steps"] == 4
  weights = [v.numpy() for v in tower.trainable_variables]

  # A finished run resumes at its last step, trains nothing and evaluates once more.
  tower2, index_fn2, zero_shot2 = _job(tokenizer, retrieval_paths, seed=1)
  again = ict_training.train(tower2, tokenizer, config, model_dir, [examples_path], [],
                             index_fn=index_fn2, zero_shot=zero_shot2, holdout_every=10)
  for got, want in zip(tower2.trainable_variables, weights):
    np.testing.assert_array_equal(got.numpy(), want)
  assert again["recall@5"] == pytest.approx(last["recall@5"])
  assert [r["global_step"] for r in eval_results.read(model_dir)] == [0, 2, 4]


def test_held_out_blocks_that_make_no_eval_batch_are_an_error(setup, tmp_path):
  tokenizer, examples_path, retrieval_paths = setup
  config = ict_training.IctConfig(query_seq_len=16, block_seq_len=BLOCK_SEQ_LEN,
                                  num_train_steps=2, batch_size=8, eval_batch_size=512)
  tower, _, _ = _job(tokenizer, retrieval_paths)
  with pytest.raises(ValueError, match="no complete eval batch"):
    ict_training.train(tower, tokenizer, config, str(tmp_path / "ict"), [examples_path], [],
                       holdout_every=10)
