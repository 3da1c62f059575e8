"""Pieces shared by the ORQA training loops (`orqa.ict`, `orqa.finetune`).

* `make_strategy`: the default strategy or a `MirroredStrategy` over the local devices.
* `create_optimizer`: BERT's AdamW with the original's warmup formula.
* `CheckpointState`: a `tf.train.CheckpointManager` under `model_dir/checkpoints/` that
  resumes from the newest checkpoint.
* `Progress`: periodic log lines with the step, the values and steps/s (examples/s).
* `write_scalars`: TensorBoard scalars under `model_dir/logs/<name>/`.
* `write_params`: the run's parameters as `model_dir/params.json` (atomic).
"""

import json
import os
import time
from typing import Any, Dict, Optional

from absl import logging
import tensorflow as tf

from realm_tf.modeling.config import default_num_warmup_steps
from realm_tf.modeling.optimizer import BertAdamWeightDecay, BertLearningRateSchedule

CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"
PARAMS_FILENAME = "params.json"
STRATEGIES = ("default", "mirrored")


def make_strategy(name: str) -> tf.distribute.Strategy:
  """`default` (one device) or `mirrored` (MirroredStrategy over all local GPUs, or CPU)."""
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "default":
    return tf.distribute.get_strategy()
  raise ValueError(f"Unknown strategy {name!r}; expected one of {STRATEGIES}.")


def create_optimizer(learning_rate: float, num_train_steps: int,
                     num_warmup_steps: Optional[int] = None) -> BertAdamWeightDecay:
  """BERT AdamW, lr warmed up over `num_warmup_steps` (default: the original's
  `min(10000, max(100, T // 10))`) then decayed linearly to 0 at `num_train_steps`."""
  if num_train_steps < 1:
    raise ValueError(f"num_train_steps must be positive, got {num_train_steps}.")
  if num_warmup_steps is None:
    num_warmup_steps = default_num_warmup_steps(num_train_steps)
  schedule = BertLearningRateSchedule(learning_rate, num_train_steps, num_warmup_steps)
  return BertAdamWeightDecay(learning_rate=schedule)


class CheckpointState:
  """Checkpoints of `checkpoint` in `model_dir/checkpoints/`, resumable.

  Args:
    checkpoint: the `tf.train.Checkpoint` (model, optimizer, ...).
    model_dir: the run's directory.
    max_to_keep: checkpoints kept.
  """

  def __init__(self, checkpoint: tf.train.Checkpoint, model_dir: str, max_to_keep: int = 5):
    self.checkpoint = checkpoint
    self.manager = tf.train.CheckpointManager(
        checkpoint, os.path.join(model_dir, CHECKPOINT_DIR), max_to_keep=max_to_keep)

  def restore_latest(self) -> Optional[str]:
    """Restores the newest checkpoint if there is one; returns its path or None."""
    latest = self.manager.latest_checkpoint
    if latest:
      self.checkpoint.restore(latest).assert_existing_objects_matched()
      logging.info("Resumed from %s.", latest)
    return latest

  def save(self, step: int) -> str:
    path = self.manager.save(checkpoint_number=step)
    logging.info("Saved checkpoint %s.", path)
    return path


class Progress:
  """Logs `step/total`, scalar values and the rates every `interval_secs`.

  Args:
    total_steps: the last step.
    start_step: the step training starts (resumes) at.
    examples_per_step: the global batch size (for examples/s).
    interval_secs: minimum time between log lines.
  """

  def __init__(self, total_steps: int, start_step: int, examples_per_step: int,
               interval_secs: float = 10.0):
    self.total = total_steps
    self.examples_per_step = examples_per_step
    self.interval = interval_secs
    self.start_time = self.last_time = time.monotonic()
    self.start_step = self.last_step = start_step

  def steps_per_sec(self, step: int) -> float:
    return (step - self.start_step) / max(time.monotonic() - self.start_time, 1e-9)

  def update(self, step: int, values: Dict[str, float], force: bool = False) -> bool:
    """Logs if the interval has passed (or `force`); returns whether it logged."""
    now = time.monotonic()
    if not force and now - self.last_time < self.interval:
      return False
    rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
    self.last_time, self.last_step = now, step
    shown = " ".join(f"{k}={v:.4g}" for k, v in sorted(values.items()))
    logging.info("step %d/%d (%.1f%%) %s | %.2f steps/s, %.1f examples/s",
                 step, self.total, 100.0 * step / max(self.total, 1), shown, rate,
                 rate * self.examples_per_step)
    return True


class ScalarWriter:
  """TensorBoard scalars in `model_dir/logs/<name>/`."""

  def __init__(self, model_dir: str, name: str):
    self.writer = tf.summary.create_file_writer(os.path.join(model_dir, LOG_DIR, name))

  def write(self, step: int, values: Dict[str, float]) -> None:
    with self.writer.as_default(step=step):
      for key, value in values.items():
        tf.summary.scalar(key, value)
    self.writer.flush()


def write_params(model_dir: str, params: Dict[str, Any]) -> str:
  """Writes `model_dir/params.json` (sorted keys, as the original) atomically."""
  tf.io.gfile.makedirs(model_dir)
  path = os.path.join(model_dir, PARAMS_FILENAME)
  tmp = f"{path}.tmp-{os.getpid()}"
  with tf.io.gfile.GFile(tmp, "w") as f:
    f.write(json.dumps(params, indent=2, sort_keys=True) + "\n")
  tf.io.gfile.rename(tmp, path, overwrite=True)
  return path


def read_params(model_dir: str) -> Dict[str, Any]:
  """The `model_dir/params.json` of a run (FileNotFoundError naming the path)."""
  path = os.path.join(model_dir, PARAMS_FILENAME)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{path} not found: not an orqa.finetune model_dir?")
  with tf.io.gfile.GFile(path, "r") as f:
    return json.loads(f.read())


def to_floats(values: Dict[str, Any]) -> Dict[str, float]:
  return {k: float(v) for k, v in values.items()}
