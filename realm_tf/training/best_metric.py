"""The best evaluation of a run, kept on disk in its best export as `best_metric.json`.

REALM pre-training (`export/tf_hub_best/`, on `retrieval_utility`) and ORQA fine-tuning
(`export/best_default/`, on `exact_match`) both keep their best export this way:
`{"metric": name, "value": v, "global_step": step, "metrics": {every eval metric}}`. The
value lives on disk, so it survives restarts (the original's exporter,
`language/common/utils/exporters.py`, kept it in memory).
"""

import json
import os
from typing import Any, Mapping, Optional

import tensorflow as tf

from realm_tf.retrieval import export_dirs

FILENAME = "best_metric.json"


def read(directory: str, metric: str) -> Optional[float]:
  """The best `metric` recorded in `directory` (None: no best export yet)."""
  path = os.path.join(directory, FILENAME)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path, "r") as f:
    record = json.load(f)
  if record.get("metric", metric) != metric:
    raise ValueError(f"{path} records the best {record['metric']}, not {metric}.")
  # Files written before the common format hold {metric: value, "global_step": step}.
  return float(record["value"] if "value" in record else record[metric])


def improves(value: float, best: Optional[float]) -> bool:
  """Whether `value` is a new best (higher is better; the first value always is)."""
  return best is None or value > best


def write(directory: str, metric: str, step: int, metrics: Mapping[str, Any]) -> str:
  """Writes `directory/best_metric.json` for `metrics` (which hold `metric`) at `step`,
  atomically; returns its path."""
  values = {k: v if isinstance(v, (str, int, bool)) else float(v)
            for k, v in metrics.items()}
  text = json.dumps(dict(metric=metric, value=float(metrics[metric]), global_step=int(step),
                         metrics=values), indent=2, sort_keys=True) + "\n"
  tf.io.gfile.makedirs(directory)
  path = os.path.join(directory, FILENAME)
  export_dirs.write_text_atomic(path, text)
  return path
