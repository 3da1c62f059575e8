"""Every evaluation of a run, one JSON object a line, in `model_dir/eval_results.jsonl`.

Pre-training, ICT and ORQA fine-tuning append `{"global_step": step, **metrics}` after each
evaluation, so a run's learning curve can be read without TensorBoard (the demo's
before/after table reads it). The file is rewritten atomically (temp file + rename), so a
reader never sees a partial line, even after a crash.
"""

import json
import os
from typing import Any, Dict, List, Mapping

import tensorflow as tf

from realm_tf.retrieval import export_dirs

EVAL_RESULTS_FILENAME = "eval_results.jsonl"


def path_in(model_dir: str) -> str:
  return os.path.join(model_dir, EVAL_RESULTS_FILENAME)


def read(model_dir: str) -> List[Dict[str, Any]]:
  """The recorded evaluations, oldest first ([] when there are none)."""
  path = path_in(model_dir)
  if not tf.io.gfile.exists(path):
    return []
  with tf.io.gfile.GFile(path, "r") as f:
    return [json.loads(line) for line in f.read().splitlines() if line.strip()]


def append(model_dir: str, step: int, metrics: Mapping[str, Any]) -> None:
  """Adds `{"global_step": step, **metrics}` (values as plain floats/ints/strings)."""
  records = read(model_dir)
  record = {"global_step": int(step)}
  for key, value in metrics.items():
    record[key] = value if isinstance(value, (str, int, bool)) else float(value)
  records.append(record)
  tf.io.gfile.makedirs(model_dir)
  export_dirs.write_text_atomic(
      path_in(model_dir), "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
