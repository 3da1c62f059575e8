"""`python -m realm_tf.pretrain` maps its flags onto one typed `PretrainJob`
(`realm_tf.training.pretraining`): the sample run's defaults without corpora, the original
launcher's with them, every given flag over both. The job itself runs in
tests/test_pretrain_kill.py (the CLI) and tests/test_pretrain.py (the trainer)."""

import dataclasses

from absl import app
from absl import flags
import pytest

import realm_tf  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow loads)
from realm_tf import pretrain
from realm_tf import sample_data


def _job(*args):
  values = flags.FlagValues()
  pretrain.define_flags(values)
  values(["realm_tf.pretrain", "--model_dir=out", *args])
  return pretrain.job_from_flags(values)


def test_only_a_model_dir_is_the_sample_run():
  job = _job()
  assert job.sample and job.model_dir == "out"
  defaults = pretrain.SAMPLE_DEFAULTS
  assert job.config.vocab_path == sample_data.VOCAB_PATH
  assert job.config.bert.num_hidden_layers == 2  # The tiny preset.
  assert (job.config.batch_size, job.config.num_train_steps) == (
      defaults["batch_size"], defaults["num_train_steps"])
  assert (job.ict_steps, job.eval_shards, job.export_steps) == (
      defaults["ict_steps"], defaults["eval_shards"], defaults["export_steps"])
  assert (job.refresh, job.strategy, job.bert_weights) == ("inline", "default", None)


def test_given_flags_override_the_defaults():
  job = _job("--batch_size=4", "--num_train_steps=9", "--ict_steps=0", "--seed=7",
             "--tf_random_seed=7", "--export_steps=3", "--log_every_steps=2",
             "--refresh=external", "--searcher=brute_force", "--eval_shards=2")
  assert (job.config.batch_size, job.config.num_train_steps, job.config.seed) == (4, 9, 7)
  assert (job.ict_steps, job.export_steps, job.log_every_steps) == (0, 3, 2)
  assert (job.refresh, job.searcher, job.eval_shards) == ("external", "brute_force", 2)


def test_corpora_come_with_a_vocabulary_and_take_the_original_defaults():
  with pytest.raises(app.UsageError, match="go together"):
    _job("--pretrain_corpus_path=p")
  job = _job("--pretrain_corpus_path=p", "--retrieval_corpus_path=r",
             f"--vocab_path={sample_data.VOCAB_PATH}", "--bert_preset=tiny")
  assert not job.sample
  defaults = pretrain.ORIGINAL_DEFAULTS
  assert (job.config.batch_size, job.ict_steps, job.num_shards_per_mips_refresh) == (
      defaults["batch_size"], defaults["ict_steps"], defaults["num_shards_per_mips_refresh"])
  assert job.export_steps is None  # The trainer then exports every checkpoint.


def test_the_reader_starts_as_a_copy_circuit_only_without_weights():
  assert _job().reader_init == "copy_circuit"  # the sample run's default
  assert _job("--reader_init=random").reader_init == "random"
  corpora = ("--pretrain_corpus_path=p", "--retrieval_corpus_path=r",
             f"--vocab_path={sample_data.VOCAB_PATH}", "--bert_preset=tiny")
  assert _job(*corpora).reader_init == "random"  # the original's
  with pytest.raises(app.UsageError, match="--reader_init=copy_circuit and --init_hf_bert"):
    _job("--reader_init=copy_circuit", "--init_hf_bert=some/folder")
  with pytest.raises(ValueError, match="reader_init='bert'"):
    dataclasses.replace(_job(), reader_init="bert")
  with pytest.raises(ValueError, match="both give the reader's weights"):
    dataclasses.replace(_job(), bert_weights="some/folder")


def test_freeze_flags_reach_the_config():
  assert not _job().config.freeze_reader and not _job().config.freeze_document_tower
  config = _job("--freeze_reader", "--noshare_embedders", "--freeze_document_tower").config
  assert config.freeze_reader and config.freeze_document_tower
  with pytest.raises(ValueError, match="freeze_document_tower needs share_embedders=False"):
    _job("--freeze_document_tower")
