"""The pre-training CLI on the sample corpus: SIGKILL mid-run, resume, refreshed indexes used.

In a file of its own so that pytest-xdist runs it beside the other long tests.
"""
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from tests.conftest import REPO_ROOT


@pytest.mark.slow
def test_pretrain_killed_and_resumed_with_inline_refresh(tmp_path):
  """The CLI on the sample corpus: SIGKILL mid-run, resume, refreshed indexes used."""
  model_dir = str(tmp_path / "model")
  command = [sys.executable, "-m", "realm_tf.pretrain", f"--model_dir={model_dir}",
             "--num_train_steps=48", "--save_checkpoints_steps=6", "--export_steps=12",
             "--num_eval_steps=2", "--log_every_steps=6", "--candidate_seq_len=96",
             # Short passes (one shard each), so the steps after a refreshed index is
             # committed start new passes that retrieve from it.
             "--num_shards_per_mips_refresh=1",
             "--ict_steps=0"]  # the ICT warm start and its resume: tests/test_ict_training.py
  checkpoints = os.path.join(model_dir, "checkpoints")
  first = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
  deadline = time.time() + 600  # the initial index and the step-0 eval come first
  while time.time() < deadline and first.poll() is None:
    latest = tf.train.latest_checkpoint(checkpoints) if os.path.isdir(checkpoints) else None
    if latest and int(latest.rsplit("-", 1)[1]) >= 12:
      break
    time.sleep(1)
  assert first.poll() is None, "the first run ended before it could be killed"
  os.killpg(first.pid, signal.SIGKILL)  # the trainer and its refresh job
  first.wait()
  killed_at = int(tf.train.latest_checkpoint(checkpoints).rsplit("-", 1)[1])
  assert not os.path.exists(os.path.join(model_dir, "TRAINING_DONE"))

  second = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=600, check=False)  # a loaded 2-core machine
  log = second.stdout + second.stderr
  assert second.returncode == 0, log[-4000:]
  assert re.search(rf"Resumed from .*ckpt-{killed_at} at step {killed_at}", log)
  assert "Training done at step 48" in log
  assert os.path.exists(os.path.join(model_dir, "TRAINING_DONE"))
  assert tf.train.latest_checkpoint(checkpoints).endswith("ckpt-48")
  # The refresh job committed indexes and later examples were retrieved with them.
  assert os.listdir(os.path.join(model_dir, "export", "encoded"))
  timestamps = {int(t) for t in re.findall(r"index ts (\d+)", log)}
  assert any(t > 0 for t in timestamps), timestamps
  assert "[eval] step 48" in log
