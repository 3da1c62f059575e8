"""`python -m orqa.ict` maps its flags onto one typed `IctJob` (`orqa.experiments.ict_job`).

The job itself (train, export, encode) runs end to end in tests/test_orqa_e2e.py; the
shared ICT loop in tests/test_ict_training.py.
"""

import dataclasses

from absl import app
from absl import flags
import pytest

import orqa  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow loads)
from orqa.experiments import ict_job
from orqa import ict
from realm_tf.ict import training as ict_training


def _job(*args):
  values = flags.FlagValues()
  ict.define_flags(values)
  values(["orqa.ict", "--model_dir=out", "--examples_path=ict-*.tfr.gz", *args])
  return ict.job_from_flags(values)


def test_flags_map_onto_the_job_and_its_ict_config():
  job = _job("--bert_preset=tiny", "--vocab_path=vocab.txt", "--batch_size=64",
             "--num_train_steps=30", "--save_checkpoints_steps=10", "--seed=4",
             "--query_seq_len=32", "--block_seq_len=96", "--projection_size=16",
             "--encode", "--retrieval_corpus_path=blocks", "--searcher=brute_force",
             "--eval_holdout_every=5")
  assert (job.model_dir, job.examples_path) == ("out", "ict-*.tfr.gz")
  assert job.ict == ict_training.IctConfig(
      query_seq_len=32, block_seq_len=96, batch_size=64, num_train_steps=30,
      eval_every_steps=10, seed=4)
  assert job.bert.preset == "tiny" and job.bert.vocab_path == "vocab.txt"
  assert job.bert.path is None
  assert (job.projection_size, job.eval_holdout_every) == (16, 5)
  assert (job.retrieval_corpus_path, job.searcher) == ("blocks", "brute_force")
  # Without --encode no corpus is embedded, whatever --retrieval_corpus_path says.
  assert _job("--retrieval_corpus_path=blocks").retrieval_corpus_path is None


def test_every_flag_but_how_to_run_is_a_job_field():
  values = flags.FlagValues()
  ict.define_flags(values)
  names = ({f.name for f in dataclasses.fields(ict_job.IctJob)}
           | {f.name for f in dataclasses.fields(ict_training.IctConfig)})
  # Flags that are spelled differently in the config, or select how the job runs.
  mapped = {"init_hf_bert", "init_checkpoint", "bert_preset", "vocab_path",
            "do_lower_case", "bert_dropout_rate", "save_checkpoints_steps", "encode",
            "retrieval_corpus", "strategy"}
  assert set(values) - names == mapped


@pytest.mark.parametrize("args, message", [
    (("--init_hf_bert=a", "--init_checkpoint=b"), "at most one"),
    (("--encode",), "--encode needs --retrieval_corpus_path"),
])
def test_contradicting_flags_are_usage_errors(args, message):
  with pytest.raises(app.UsageError, match=message):
    _job(*args)


def test_a_glob_without_examples_is_refused_before_anything_is_built(tmp_path):
  job = _job("--bert_preset=tiny")
  job = dataclasses.replace(job, model_dir=str(tmp_path / "out"),
                            examples_path=str(tmp_path / "none-*.tfr.gz"))
  with pytest.raises(FileNotFoundError, match="No ICT examples match"):
    ict_job.run(job)
  assert not (tmp_path / "out").exists()
