"""The trainer's start-up on a model_dir: leftovers removed, another model refused, one
trainer at a time (`realm_tf.training.model_dir`)."""

import json
import os
import subprocess
import sys

import pytest

from realm_tf import locks
from tests import modeling_testing
from realm_tf.modeling.config import BertConfig, RealmConfig
from realm_tf.training import model_dir as model_dir_lib
from tests.conftest import REPO_ROOT

LEFTOVERS = ["export/tf_hub/temp-500-123-456/embedder/saved_model.pb",
             "export/tf_hub_best/temp-500-123-789/bert/saved_model.pb",
             "temp-initial_embedder-123-456/encoded/encoded.ckpt.index",
             "checkpoints/ckpt-6_temp/part-00000-of-00001.data-00000-of-00001",
             "checkpoints/checkpoint.tmp5f3e2a", "config.json.tmp", "TRAINING_DONE.tmp",
             "export/tf_hub_best/best_metric.json.tmp-4242",
             "ict/checkpoints/ckpt-2_temp/part-00000-of-00001.index",
             "ict/data/.train.tfr.gz.tmp-4242"]
KEPT = ["export/tf_hub/500/embedder/saved_model.pb", "export/tf_hub/500/global_step.txt",
        "checkpoints/ckpt-6.index", "checkpoints/checkpoint", "config.json",
        "initial_embedder/encoded/encoded.ckpt.index", "ict/data/train.tfr.gz",
        "ict/checkpoints/ckpt-2.index",
        # The refresh job's own staging is the refresh job's to recover.
        "export/temp/400/embedder/saved_model.pb", "export/encoded/temp-400-1-2/x"]


def _touch(root, relative):
  path = os.path.join(root, relative)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.write("{}")


def _config(preset):
  bert = BertConfig.preset(preset, vocab_size=30)
  return modeling_testing.tiny_realm_config(bert=bert, embedder=bert, query_seq_len=8,
                                         candidate_seq_len=16)


def test_leftovers_of_killed_runs_are_removed_on_start(tmp_path):
  model_dir = str(tmp_path / "model")
  for relative in LEFTOVERS + KEPT:
    _touch(model_dir, relative)
  config = _config("tiny")
  with open(os.path.join(model_dir, "config.json"), "w", encoding="utf-8") as f:
    f.write(config.to_json())
  model_dir_lib.prepare(model_dir, config)
  for relative in LEFTOVERS:
    assert not os.path.exists(os.path.join(model_dir, relative)), relative
  for relative in KEPT:
    assert os.path.exists(os.path.join(model_dir, relative)), relative
  assert not os.path.exists(os.path.join(model_dir, "export/tf_hub/temp-500-123-456"))
  assert model_dir_lib.leftovers(model_dir) == []


def test_another_model_is_refused_before_config_json_is_rewritten(tmp_path):
  model_dir = str(tmp_path / "model")
  tiny = _config("tiny")
  _touch(model_dir, "checkpoints/ckpt-6.index")
  tiny.save(model_dir)
  before = open(os.path.join(model_dir, "config.json"), encoding="utf-8").read()
  with pytest.raises(model_dir_lib.ModelDirMismatchError, match="hidden_size") as info:
    model_dir_lib.check_config(model_dir, _config("mini"))
  assert os.path.join(model_dir, "config.json") in str(info.value)
  assert open(os.path.join(model_dir, "config.json"), encoding="utf-8").read() == before
  # Other loop settings are free to change on a resumed run.
  model_dir_lib.check_config(model_dir, RealmConfig.from_dict(
      dict(tiny.to_dict(), num_train_steps=999, learning_rate=0.5)))
  # Without checkpoints there is nothing to mismatch.
  os.remove(os.path.join(model_dir, "checkpoints", "ckpt-6.index"))
  model_dir_lib.check_config(model_dir, _config("mini"))


def _pretrain(model_dir, *flags):
  return subprocess.run([sys.executable, "-m", "realm_tf.pretrain",
                         f"--model_dir={model_dir}", *flags],
                        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                        check=False)


def test_pretrain_command_refuses_another_model_and_a_second_trainer(tmp_path):
  model_dir = tmp_path / "model"
  _touch(str(model_dir), "checkpoints/ckpt-6.index")
  # The sample run's vocabulary has its own size; a config of another encoder size.
  saved = json.loads(_config("mini").to_json())
  (model_dir / "config.json").write_text(json.dumps(saved))
  before = (model_dir / "config.json").read_text()
  proc = _pretrain(model_dir, "--num_train_steps=2")
  assert proc.returncode == 1, proc.stderr[-3000:]
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("ModelDirMismatchError: ") and "Traceback" not in proc.stderr
  assert (model_dir / "config.json").read_text() == before
  with locks.exclusive_lock(str(model_dir / model_dir_lib.LOCK_FILENAME), "a trainer"):
    proc = _pretrain(model_dir, "--num_train_steps=2")
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1].startswith("LockedError: ")
  assert "already running" in proc.stderr
