"""Start-up of the trainer on a model_dir: one trainer at a time, no leftovers, same model.

`prepare(model_dir, config)` runs before the trainer writes anything:

* it takes the trainer's exclusive lock on `model_dir/trainer.lock` for the life of the
  process (a second trainer on the same model_dir exits with a message; the kernel
  drops the lock when the process dies, SIGKILL included);
* it refuses flags that describe another model than the checkpoints in model_dir
  (`config.json` differs in the encoder sizes or tower sharing) before `config.json` is
  rewritten;
* it deletes what killed runs of the trainer leave behind: export staging directories
  (`export/tf_hub/temp-*`, `export/tf_hub_best/temp-*`), the initial index's
  (`temp-initial_embedder-*`), TensorFlow's checkpoint temporaries (`checkpoints/*_temp`,
  `checkpoints/checkpoint.tmp*`), the same of the ICT warm start under `ict/`, and the
  temp files of atomic writes (`*.tmp`, `*.tmp-<pid>`). The refresh job's own staging (`export/temp`, `export/encoded/temp-*`)
  is the refresh job's to clean (it does on start).
"""

import glob
import json
import os
import shutil
from typing import List

from absl import logging

from realm_tf import errors
from realm_tf import locks
from realm_tf.modeling.config import RealmConfig

LOCK_FILENAME = "trainer.lock"
CONFIG_FILENAME = "config.json"
CHECKPOINT_DIR = "checkpoints"
# Fields of config.json that decide the variables of the checkpoints.
MODEL_FIELDS = ("bert", "embedder", "share_embedders")

_held_locks = []  # Kept open for the life of the process.


class ModelDirMismatchError(errors.RealmInputError):
  """The flags describe another model than the checkpoints already in model_dir."""


def acquire(model_dir: str) -> None:
  """Holds the trainer lock of `model_dir` until the process exits (idempotent)."""
  path = os.path.abspath(os.path.join(model_dir, LOCK_FILENAME))
  if any(p == path for p, _ in _held_locks):
    return
  lock = locks.exclusive_lock(path, f"A trainer of {model_dir}", wait_secs=0)
  lock.__enter__()  # pylint: disable=unnecessary-dunder-call  (held until exit)
  _held_locks.append((path, lock))


def leftovers(model_dir: str) -> List[str]:
  """The paths of killed runs' temporaries in `model_dir` (see the module docstring)."""
  patterns = ["export/tf_hub/temp-*", "export/tf_hub_best/temp-*", "temp-initial_embedder-*",
              "checkpoints/*_temp", "checkpoints/checkpoint.tmp*", "*.tmp", "*.tmp-*",
              "export/tf_hub_best/*.tmp-*",
              # The in-process ICT warm start's (realm_tf.training.warm_start).
              "ict/checkpoints/*_temp", "ict/checkpoints/checkpoint.tmp*", "ict/data/.*.tmp-*",
              "ict/*.tmp", "ict/*.tmp-*"]
  found = []
  for pattern in patterns:
    found += glob.glob(os.path.join(glob.escape(model_dir), pattern))
  return sorted(set(found))


def remove_leftovers(model_dir: str) -> List[str]:
  """Deletes `leftovers(model_dir)`; returns what was deleted. Hold the lock first."""
  removed = leftovers(model_dir)
  for path in removed:
    logging.warning("Removing a leftover of a killed run: %s", path)
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path, ignore_errors=True)
    else:
      os.remove(path)
  return removed


def check_config(model_dir: str, config: RealmConfig) -> None:
  """Refuses a config whose model differs from the one checkpointed in `model_dir`.

  Raises:
    ModelDirMismatchError: names config.json and the fields that differ.
  """
  path = os.path.join(model_dir, CONFIG_FILENAME)
  checkpoints = os.path.join(model_dir, CHECKPOINT_DIR)
  if not os.path.exists(path) or not glob.glob(os.path.join(glob.escape(checkpoints),
                                                           "*.index")):
    return
  try:
    with open(path, encoding="utf-8") as f:
      saved = json.load(f)
  except (OSError, ValueError) as e:
    raise errors.InputFileError(path, None, f"unreadable ({e})") from None
  new = config.to_dict()
  differ = [k for k in MODEL_FIELDS if k in saved and saved[k] != new.get(k)]
  if differ:
    details = "; ".join(
        f"{k}: {_diff(saved[k], new[k])}" for k in differ)
    raise ModelDirMismatchError(
        f"{model_dir} holds checkpoints of another model than the flags describe "
        f"({details}; saved in {path}). Use another --model_dir, or the flags of that run.")


def _diff(old, new) -> str:
  if isinstance(old, dict) and isinstance(new, dict):
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys)
  return f"{old!r} -> {new!r}"


def prepare(model_dir: str, config: RealmConfig) -> None:
  """Lock, config check and clean-up; call before the trainer writes to `model_dir`."""
  os.makedirs(model_dir, exist_ok=True)
  acquire(model_dir)
  check_config(model_dir, config)
  remove_leftovers(model_dir)
