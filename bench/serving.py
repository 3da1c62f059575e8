r"""Serving SavedModel benchmark: size, load time, p50/p95 latency at batch 1 and 32.

  python bench/serving.py [--finetuned_model=<model_dir>] [--work_dir=/tmp/serving_bench] \
      [--searchers=brute_force,scann] [--iterations=20]

Without --finetuned_model, the tiny sample-corpus model of `tests/serving_testing.py` is
built (the sample corpus; tiny BERTs, reader_seq_len 128, 3 blocks read). Each searcher's
export is loaded in a fresh process (`import tensorflow_text`, `scann`), warmed up, then
timed on sample questions. Prints one JSON object.
"""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import export  # pylint: disable=unused-import,g-import-not-at-top
from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS

_TIMER = r"""
import json, os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
start = time.monotonic()
import tensorflow_text  # noqa
if sys.argv[2] == "scann":
  import scann  # noqa
import tensorflow as tf
imported = time.monotonic()
model = tf.saved_model.load(sys.argv[1])
serve = model.signatures["serving_default"]
loaded = time.monotonic()
questions = json.loads(sys.argv[3])
iterations = int(sys.argv[4])
serve(question=tf.constant(questions[:1]))
first = time.monotonic() - loaded
result = dict(import_s=imported - start, load_s=loaded - imported, first_call_s=first)
for batch in (1, 32):
  qs = [questions[i % len(questions)] for i in range(batch)]
  serve(question=tf.constant(qs))
  times = []
  for _ in range(iterations):
    t = time.monotonic()
    serve(question=tf.constant(qs))
    times.append(time.monotonic() - t)
  times.sort()
  result[f"batch{batch}_p50_ms"] = 1000 * times[len(times) // 2]
  result[f"batch{batch}_p95_ms"] = 1000 * times[min(len(times) - 1, int(0.95 * len(times)))]
print("RESULT" + json.dumps(result))
"""


def define_flags():
  flags.DEFINE_string("finetuned_model", None, "orqa.finetune model_dir (default: tiny).")
  flags.DEFINE_string("work_dir", "/tmp/serving_bench", "Where exports are written.")
  flags.DEFINE_list("searchers", ["brute_force", "scann"], "Searchers to benchmark.")
  flags.DEFINE_integer("iterations", 20, "Timed calls per batch size.")


def _size(path):
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def main(argv):
  del argv
  from export import serving  # pylint: disable=g-import-not-at-top
  from tests import serving_testing  # pylint: disable=g-import-not-at-top
  from orqa.data import jsonl_io  # pylint: disable=g-import-not-at-top
  from realm_tf import sample_data  # pylint: disable=g-import-not-at-top
  os.makedirs(FLAGS.work_dir, exist_ok=True)
  model_dir = FLAGS.finetuned_model
  if not model_dir:
    model_dir = os.path.join(FLAGS.work_dir, "model")
    if not os.path.exists(os.path.join(model_dir, "params.json")):
      serving_testing.make_tiny_finetuned_model(model_dir)
  questions = [r["question"] for _, r in jsonl_io.read_jsonl(sample_data.QA_TRAIN_PATH)][:64]
  report = dict(finetuned_model=model_dir, results={})
  for searcher in FLAGS.searchers:
    path = os.path.join(FLAGS.work_dir, f"serving_{searcher}")
    start = time.monotonic()
    serving.export_serving_model(model_dir, path, searcher=searcher, overwrite=True)
    export_s = time.monotonic() - start
    out = subprocess.run([sys.executable, "-c", _TIMER, path, searcher, json.dumps(questions),
                          str(FLAGS.iterations)], capture_output=True, text=True, check=True)
    line = [l for l in out.stdout.splitlines() if l.startswith("RESULT")][-1]
    result = json.loads(line[len("RESULT"):])
    result.update(export_s=export_s, size_mb=_size(path) / 2**20)
    with open(os.path.join(path, serving.CONFIG_FILENAME), encoding="utf-8") as f:
      result["num_blocks"] = json.load(f)["num_blocks"]
    report["results"][searcher] = result
  print(json.dumps(report, indent=2, sort_keys=True))


if __name__ == "__main__":
  define_flags()
  app.run(main)
