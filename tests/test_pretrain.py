"""The pre-training job resumes with identical optimizer state (the CLI killed and resumed:
tests/test_pretrain_kill.py)."""
import os

import numpy as np
import tensorflow as tf

from realm_tf.featurization import Featurizer
from realm_tf.generation.stream import ExampleStream
from tests import modeling_testing
from realm_tf.modeling.config import BertConfig
from realm_tf.retrieval import corpus_reader
from realm_tf.tokenization import Tokenizer
from realm_tf import sample_data
from realm_tf.training import sample_setup
from realm_tf.training.initial_index import build_initial_embedder_module
from realm_tf.training.trainer import Trainer, read_best_metric


def _trainer(model_dir, corpora, steps):
  tokenizer = Tokenizer(sample_data.VOCAB_PATH)
  bert = BertConfig.preset("tiny", vocab_size=tokenizer.vocab_size)
  config = modeling_testing.tiny_realm_config(
      query_seq_len=48, candidate_seq_len=64, num_candidates=3, max_masks=4, bert=bert,
      embedder=bert, num_train_steps=steps, batch_size=4, eval_batch_size=4,
      save_checkpoints_steps=2, learning_rate=1e-3)
  featurizer = Featurizer(48, 64, 3, 4, tokenizer)
  pretrain = corpus_reader.list_shards(corpora[0])  # Through the corpus manifests.
  retrieval = corpus_reader.list_shards(corpora[1])
  common = dict(model_dir=model_dir, retrieval_paths=retrieval, featurizer=featurizer,
                retrieval_batch_size=8)
  train = ExampleStream(pretrain_paths=pretrain[1:], batch_size=4, training=True, **common)
  evaluation = ExampleStream(pretrain_paths=pretrain[:1], batch_size=4, training=False,
                             **common)
  trainer = Trainer(config, model_dir, tf.distribute.get_strategy(), tokenizer, train,
                    evaluation, export_steps=100, num_eval_steps=2, log_every_steps=2)
  return trainer, tokenizer, featurizer, retrieval


def _checkpoint_steps(model_dir):
  state = tf.train.get_checkpoint_state(os.path.join(model_dir, "checkpoints"))
  return sorted(int(p.rsplit("-", 1)[1]) for p in state.all_model_checkpoint_paths)


def test_resume_restores_step_and_optimizer_slots(tmp_path):
  model_dir = str(tmp_path / "model")
  corpora = sample_setup.prepare_sample_corpora(model_dir)
  trainer, tokenizer, featurizer, retrieval = _trainer(model_dir, corpora, steps=4)
  assert not trainer.restore()
  initial = build_initial_embedder_module(trainer.model, tokenizer, featurizer, retrieval,
                                          os.path.join(model_dir, "initial"), batch_size=64)
  trainer.train_stream.initial_embedder = trainer.eval_stream.initial_embedder = initial
  trainer.train()
  assert trainer.step == 4
  # The starting model is checkpoint 0; the rest fall on multiples of the interval.
  assert _checkpoint_steps(model_dir) == [0, 2, 4]
  slots = {v.name: v.numpy() for v in trainer.optimizer.variables()}
  weights = [v.numpy() for v in trainer.model.trainable_variables]
  # The final export evaluated and recorded the best retrieval_utility on disk.
  assert read_best_metric(model_dir) is not None
  assert sorted(os.listdir(os.path.join(model_dir, "export", "tf_hub"))) != []

  resumed, *_ = _trainer(model_dir, corpora, steps=6)
  assert resumed.restore()
  assert resumed.step == 4
  for variable in resumed.optimizer.variables():
    np.testing.assert_array_equal(variable.numpy(), slots[variable.name], variable.name)
  for got, want in zip(resumed.model.trainable_variables, weights):
    np.testing.assert_array_equal(got.numpy(), want)
  resumed.train_stream.initial_embedder = resumed.eval_stream.initial_embedder = initial
  resumed.train()
  assert resumed.step == 6
