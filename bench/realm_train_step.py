"""Benchmark: REALM train steps, speed and memory against the machine's matmul limit.

Runs `realm_tf.modeling.realm_steps.make_train_step` (forward and backward of the query
tower, the document tower on every candidate and the reader with its MLM head, BERT AdamW
update) on a random batch with the original launcher's shapes (Q 96, N 8 candidates x C
288, M 10 masks, vocab 30522) and random-init encoders of a preset (tiny L2/H128, minilm
L6/H384, base L12/H768). Every configuration runs in a fresh process and reports
(one JSON object per line, then a JSON list; `--output` also writes the list):

* examples/s, s/step, CPU and system seconds per step;
* achieved GFLOP/s (FLOPs from the shapes: `realm_tf.modeling.flops`) and its share of
  the float32 (and, for bfloat16, the bfloat16) matmul rate measured in the same process,
  before and after the timed steps;
* peak memory: the process's peak RSS (`ru_maxrss`) and, on a GPU, the peak device memory;
* the losses of the timed steps (`--steps=200` gives a loss curve to compare precisions).

On a GPU it runs unchanged; `--jit=auto --precision=auto` then means XLA and
mixed_bfloat16 (on GPUs of compute capability 8.0+).

  python bench/realm_train_step.py --presets=tiny,minilm --batch_sizes=4 \
      --precision=float32,mixed_bfloat16 --recompute=off,on --jit=off,on --steps=3
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import realm_tf  # noqa: E402,F401  (selects Keras 2 and oneDNN before TensorFlow loads)
import tensorflow as tf  # noqa: E402

import step_bench  # noqa: E402
from realm_tf.modeling.config import RealmConfig  # noqa: E402
from realm_tf.modeling import flops as flops_lib  # noqa: E402
from realm_tf.modeling import optimizer as optimizer_lib  # noqa: E402
from realm_tf.modeling import precision as precision_lib  # noqa: E402
from realm_tf.modeling.realm_model import RealmModel  # noqa: E402
from realm_tf.modeling import realm_steps  # noqa: E402
from tests import modeling_testing  # noqa: E402

SHAPES = dict(query_seq_len=96, candidate_seq_len=288, num_candidates=8, max_masks=10)


def make_config(preset: str, batch_size: int, recompute: bool, precision: str,
                jit_compile, num_layers=None, micro_batches: int = 1) -> RealmConfig:
  overrides = {} if num_layers is None else dict(num_hidden_layers=num_layers)
  config = RealmConfig.preset(preset, batch_size=batch_size, recompute_activations=recompute,
                              precision=precision, jit_compile=jit_compile,
                              micro_batches=micro_batches, **SHAPES)
  if overrides:
    bert = config.bert.__class__.preset(preset, **overrides)
    config = RealmConfig.from_dict(dict(config.to_dict(), bert=bert.to_dict(),
                                        embedder=bert.to_dict()))
  return config


def build_step(config: RealmConfig, seed: int = 0):
  """(model, train step, features) with the config's precision and XLA choice."""
  tf.random.set_seed(seed)
  with precision_lib.policy_scope(config.precision):
    model = RealmModel(config).build_variables()
  optimizer = optimizer_lib.create_optimizer(config)
  step = realm_steps.make_train_step(model, optimizer,
                                  jit_compile=precision_lib.resolve_jit_compile(
                                      config.jit_compile))
  features = modeling_testing.random_features(config, config.batch_size, seed=seed)
  return model, optimizer, step, features


def run_one(args) -> dict:
  """Times one configuration (in this process)."""
  config = make_config(args["preset"], args["batch_size"], args["recompute"],
                       args["precision"], args["jit_compile"], args.get("num_layers"),
                       args.get("micro_batches", 1))
  resolved = precision_lib.resolve_precision(config.precision)
  jit = precision_lib.resolve_jit_compile(config.jit_compile)
  step_bench.reset_gpu_peak()
  _, _, step, features = build_step(config)
  result = dict(step="realm", preset=args["preset"], num_layers=config.bert.num_hidden_layers,
                batch_size=config.batch_size, precision=resolved,
                recompute_activations=config.recompute_activations, jit_compile=jit,
                micro_batches=config.micro_batches, **SHAPES, steps=args["steps"],
                warmup_steps=args["warmup_steps"],
                **step_bench.timed_step_fields(
                    lambda: step(features), lambda out: float(out["loss"]),
                    args["warmup_steps"], args["steps"],
                    bfloat16=resolved == precision_lib.MIXED_BFLOAT16,
                    flops_per_step=flops_lib.realm_train_flops(config, config.batch_size),
                    batch_size=config.batch_size))
  result.update(step_bench.device_description())
  return result


def _bool(value: str):
  return {"on": True, "off": False, "auto": None}[value]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--presets", default="tiny,minilm")
  parser.add_argument("--batch_sizes", default="4")
  parser.add_argument("--precision", default="float32",
                      help="Comma list of auto, float32, mixed_bfloat16.")
  parser.add_argument("--recompute", default="off", help="Comma list of off, on.")
  parser.add_argument("--jit", default="off", help="Comma list of off, on, auto.")
  parser.add_argument("--num_layers", type=int, default=None,
                      help="Override the presets' layer count (quick experiments).")
  parser.add_argument("--micro_batches", type=int, default=1,
                      help="Sequential micro-batches per batch (summed gradients).")
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--warmup_steps", type=int, default=1)
  parser.add_argument("--output", default=None, help="Also write the JSON list here.")
  parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.one:
    print(json.dumps(run_one(json.loads(args.one))), flush=True)
    return
  results = []
  for preset in args.presets.split(","):
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
      for precision in args.precision.split(","):
        for recompute in args.recompute.split(","):
          for jit in args.jit.split(","):
            one = dict(preset=preset, batch_size=batch_size, precision=precision,
                       recompute=_bool(recompute), jit_compile=_bool(jit),
                       num_layers=args.num_layers, micro_batches=args.micro_batches,
                       steps=args.steps,
                       warmup_steps=args.warmup_steps)
            result = step_bench.run_isolated(os.path.abspath(__file__), one)
            print(json.dumps(result), flush=True)
            results.append(result)
  print(json.dumps(results, indent=1))
  if args.output:
    with open(args.output, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  main()
