"""Benchmark: REALM train-step throughput (examples/s) on the current device.

Runs `realm_tf.modeling.training.make_train_step` (forward + backward of both retriever
towers and the reader, BERT AdamW update) on random batches with the shapes of the
original launcher: Q=96, N=8 candidates x C=288, M=10 masks, vocab 30522. Prints one JSON
object per configuration and a JSON list at the end.

  python bench/realm_train_step.py --presets=tiny,minilm --batch_sizes=4,16 \
      --jit=off,on --precision=float32,mixed_bfloat16 --steps=3
"""

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import realm_tf  # noqa: E402,F401  (selects Keras 2 before TensorFlow is imported)
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from realm_tf.modeling import optimizer as optimizer_lib  # noqa: E402
from realm_tf.modeling import testing_utils, training  # noqa: E402
from realm_tf.modeling.config import RealmConfig  # noqa: E402
from realm_tf.modeling.realm_model import RealmModel  # noqa: E402


def run_one(preset, batch_size, jit, precision, steps, warmup_steps, seed=0):
  """Times `steps` train steps after `warmup_steps` (tracing/compilation) steps."""
  tf_keras.mixed_precision.set_global_policy(precision)
  try:
    config = RealmConfig.preset(preset, query_seq_len=96, candidate_seq_len=288,
                                num_candidates=8, max_masks=10, batch_size=batch_size)
    tf.random.set_seed(seed)
    model = RealmModel(config)
    optimizer = optimizer_lib.create_optimizer(config)
    step = training.make_train_step(model, optimizer, jit_compile=jit)
    features = testing_utils.random_features(config, batch_size, seed=seed)
    t0 = time.perf_counter()
    for _ in range(warmup_steps):
      out = step(features)
    float(out["loss"])
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
      out = step(features)
    loss = float(out["loss"])
    elapsed = time.perf_counter() - t0
  finally:
    tf_keras.mixed_precision.set_global_policy("float32")
  return dict(preset=preset, batch_size=batch_size, jit_compile=jit, precision=precision,
              query_seq_len=96, num_candidates=8, candidate_seq_len=288, max_masks=10,
              steps=steps, warmup_steps=warmup_steps, warmup_s=round(first, 2),
              s_per_step=round(elapsed / steps, 3),
              examples_per_s=round(batch_size * steps / elapsed, 3), loss=round(loss, 4))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--presets", default="tiny,minilm")
  parser.add_argument("--batch_sizes", default="4,16")
  parser.add_argument("--jit", default="off,on")
  parser.add_argument("--precision", default="float32")
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--warmup_steps", type=int, default=1)
  args = parser.parse_args()
  gpus = tf.config.list_physical_devices("GPU")
  device = gpus[0].name if gpus else f"cpu x{os.cpu_count()} ({platform.processor()})"
  results = []
  for preset in args.presets.split(","):
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
      for jit in args.jit.split(","):
        for precision in args.precision.split(","):
          r = run_one(preset, batch_size, jit == "on", precision, args.steps,
                      args.warmup_steps)
          r.update(device=device, tensorflow=tf.__version__)
          print(json.dumps(r), flush=True)
          results.append(r)
  print(json.dumps(results, indent=1))


if __name__ == "__main__":
  main()
