"""The ORQA fine-tuning model_dir's names and its `params.json` (written atomically).

`orqa.finetune` writes them; `orqa.predict` and `export.serving` read them.
"""

import json
import os
from typing import Any, Dict

import tensorflow as tf

CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"
PARAMS_FILENAME = "params.json"


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
