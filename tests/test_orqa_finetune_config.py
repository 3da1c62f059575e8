"""`orqa.experiments.finetune_training`: the typed fine-tuning config and `train(config, model_dir)`.

The entry point maps every flag onto one `FinetuneConfig` field; the config is saved as
`params.json` and reloads equal; values that cannot run are refused with an
`errors.ArgumentError` naming the field before anything is built or written; and `train`
runs from a config alone (as a notebook would call it), with checkpoints, evaluations and
the best export where `orqa.predict` reads them.
"""

import dataclasses
import os

import pytest

import export  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow loads)
from absl import flags

from orqa.data import jsonl_io
from orqa.experiments import finetune_training
from orqa.experiments import training_utils
from orqa import finetune
from orqa.models import builder
from orqa import predict
from realm_tf import errors
from realm_tf import sample_data
from realm_tf.training import eval_results
from tests import serving_testing


def _flag_config(*args):
  values = flags.FlagValues()
  finetune.define_flags(values)
  values(["orqa.finetune", "--model_dir=unused", "--retriever_module_path=m/embedder",
          "--block_records_path=blocks-*", "--num_train_steps=7", *args])
  return finetune.config_from_flags(values)


def test_every_flag_lands_in_the_config_and_the_saved_config_reloads_equal(tmp_path):
  config = _flag_config("--reader_preset=tiny", "--batch_size=4", "--eval_batch_size=8",
                        "--learning_rate=3e-4", "--reader_seq_len=96",
                        "--span_hidden_size=16", "--refresh_index_every_steps=5",
                        "--seed=3", "--train_path=train.jsonl", "--recompute_activations")
  assert (config.batch_size, config.global_eval_batch_size, config.num_train_steps) == (4, 8, 7)
  assert config.learning_rate == 3e-4 and config.seed == 3
  assert config.refresh_index_every_steps == 5 and config.train_path == "train.jsonl"
  assert config.model.reader_preset == "tiny"
  assert config.model.model["reader_seq_len"] == 96
  assert config.model.model["recompute_activations"] is True
  # The model part builds an OrqaConfig (no field the model does not know).
  assert config.model.orqa_config().span_hidden_size == 16

  config.save(str(tmp_path))
  assert finetune_training.FinetuneConfig.load(str(tmp_path)) == config


def test_every_flag_but_where_and_how_to_run_is_a_config_field():
  values = flags.FlagValues()
  finetune.define_flags(values)
  config = _flag_config("--reader_preset=tiny")
  names = ({f.name for f in dataclasses.fields(finetune_training.FinetuneConfig)}
           | {f.name for f in dataclasses.fields(builder.ModelParams)}
           | set(config.model.model))
  assert set(values) - names == {"model_dir", "strategy"}


def test_span_width_defaults_to_the_originals_and_an_explicit_one_is_kept():
  _, config = finetune_training.resolve_span_scorer(_flag_config("--reader_preset=tiny"))
  assert config.model.model["span_hidden_size"] == 256
  _, config = finetune_training.resolve_span_scorer(
      _flag_config("--reader_preset=tiny", "--span_hidden_size=24"))
  assert config.model.model["span_hidden_size"] == 24


@pytest.mark.parametrize("args, replicas, message", [
    (("--reader_preset=tiny", "--train_path=t.jsonl", "--batch_size=3"), 2,
     r"batch_size=3 is not a multiple of the 2 replicas"),
    (("--reader_preset=tiny", "--train_path=t.jsonl", "--batch_size=2",
      "--eval_batch_size=3"), 2, r"eval_batch_size=3 is not a multiple"),
    (("--train_path=t.jsonl",), 1, r"Give a reader"),
    (("--reader_preset=tiny",), 1, r"train_path is required unless num_train_steps=0"),
    (("--reader_preset=tiny", "--train_path=t.jsonl", "--refresh_index_every_steps=2",
      "--block_records_path=blocks.jsonl"), 1,
     r"refresh_index_every_steps needs retrieval-corpus shards .*'blocks.jsonl'"),
    (("--reader_preset=tiny", "--train_path=t.jsonl", "--save_checkpoints_steps=0"), 1,
     r"save_checkpoints_steps=0 must be positive"),
])
def test_values_that_cannot_run_are_refused_naming_the_field(args, replicas, message):
  config = _flag_config(*args)
  with pytest.raises(errors.ArgumentError, match=message):
    config.validate(num_replicas=replicas)


def test_unknown_keys_in_a_saved_config_are_refused(tmp_path):
  values = _flag_config("--reader_preset=tiny").to_dict()
  values["eval_throttle_secs"] = 600
  training_utils.write_params(str(tmp_path), values)
  with pytest.raises(errors.ArgumentError, match=r"eval_throttle_secs"):
    finetune_training.FinetuneConfig.load(str(tmp_path))


def test_train_from_a_config_alone(tmp_path, serving_shared_base):
  """A notebook's call: a config, a model_dir, no flags; 2 steps, 2 evaluations."""
  tiny_dir = serving_testing.cached_tiny_model(serving_shared_base)
  dev_path = str(tmp_path / "dev.jsonl")
  records = [r for _, r in jsonl_io.read_jsonl(sample_data.QA_TRAIN_PATH)]
  jsonl_io.write_jsonl(dev_path, records[:4])
  model = builder.ModelParams(
      retriever_module_path=os.path.join(tiny_dir, "retriever", "embedder"),
      block_records_path=os.path.join(tiny_dir, "blocks.jsonl"), reader_preset="tiny",
      reader_vocab_path=sample_data.VOCAB_PATH, searcher="brute_force", precision="float32",
      model=dict(retrieval_beam_size=8, reader_beam_size=2, reader_seq_len=64,
                 query_seq_len=32, span_hidden_size=16))
  config = finetune_training.FinetuneConfig(
      model=model, train_path=sample_data.QA_TRAIN_PATH, dev_path=dev_path, batch_size=2,
      num_train_steps=2, save_checkpoints_steps=1, eval_before_training=True,
      learning_rate=1e-4)
  model_dir = str(tmp_path / "orqa")
  metrics = finetune_training.train(config, model_dir)

  assert set(metrics) >= {"exact_match", "reader_oracle", "top_5_match"}
  assert [r["global_step"] for r in eval_results.read(model_dir)] == [0, 1, 2]
  assert finetune_training.FinetuneConfig.load(model_dir) == config
  assert os.path.exists(os.path.join(model_dir, "export", finetune_training.BEST_DIR,
                                     "best_metric.json"))
  # orqa.predict rebuilds and restores that model_dir from params.json alone.
  assert predict.predict(model_dir, dev_path, str(tmp_path / "pred.jsonl"), batch_size=2,
                         num_retrieved=2) == 4
