"""Benchmark: ORQA fine-tuning steps, speed and memory against the machine's matmul limit.

Runs `orqa.experiments.finetune_steps.make_train_step` (question tower, exact search over K block
embeddings, has_answer over the retrieval beam, in-graph reader featurization of the top
R blocks, reader BERT, span scorer, early-update retriever loss and marginal reader loss,
BERT AdamW update) on synthetic data with the original's shapes: retrieval beam 5000,
reader beam 5 x 320 wordpieces, question 64, span MLP 256, spans up to 10 wordpieces.
The corpus is made up: a vocabulary of 30522 word-like tokens, K blocks of random words
(each containing the answer word, so every read block has gold spans), random block
embeddings and question tower (an exported embedder module of the preset, random init),
random reader. Every configuration runs in a fresh process and prints one JSON object
(then a JSON list): examples (questions)/s, achieved GFLOP/s (`realm_tf.modeling.flops`)
and its share of the float32 / bfloat16 matmul rate measured in the same process, peak
RSS and GPU memory, CPU and system time, losses.

  python bench/orqa_train_step.py --presets=tiny,minilm --batch_sizes=4 \
      --precision=float32 --recompute=off,on --jit=off --steps=3
"""

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import realm_tf  # noqa: E402,F401  (selects Keras 2 and oneDNN before TensorFlow loads)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import step_bench  # noqa: E402
from orqa.experiments import finetune_steps  # noqa: E402
from orqa.models import orqa_model, towers  # noqa: E402
from realm_tf.modeling.config import BertConfig  # noqa: E402
from realm_tf.modeling.embedder import ProjectedEmbedder  # noqa: E402
from realm_tf.modeling import flops as flops_lib  # noqa: E402
from realm_tf.modeling import optimizer as optimizer_lib  # noqa: E402
from realm_tf.modeling import precision as precision_lib  # noqa: E402
from realm_tf import tf_hub_modules as tf_hub  # noqa: E402
from realm_tf.tokenization import SPECIAL_TOKENS, Tokenizer  # noqa: E402

SHAPES = dict(retrieval_beam_size=5000, reader_beam_size=5, reader_seq_len=320,
              query_seq_len=64, span_hidden_size=256, max_span_width=10)
VOCAB_SIZE = 30522
ANSWER = "w7"


def write_corpus(work_dir: str, num_blocks: int, seed: int = 0) -> dict:
  """Vocabulary and block texts of the synthetic corpus (cached in work_dir)."""
  path = os.path.join(work_dir, "corpus.json")
  vocab_path = os.path.join(work_dir, "vocab.txt")
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  words = [f"w{i}" for i in range(VOCAB_SIZE - len(SPECIAL_TOKENS))]
  with open(vocab_path, "w", encoding="utf-8") as f:
    f.write("\n".join(list(SPECIAL_TOKENS) + words) + "\n")
  rng = np.random.default_rng(seed)
  pool = np.array(words[100:])
  titles, bodies = [], []
  for _ in range(num_blocks):
    body = list(pool[rng.integers(0, len(pool), size=290)])
    body[int(rng.integers(0, 60))] = ANSWER  # Inside the part the reader sees.
    titles.append(" ".join(pool[rng.integers(0, len(pool), size=3)]))
    bodies.append(" ".join(body))
  corpus = dict(vocab_path=vocab_path, titles=titles, bodies=bodies)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(corpus, f)
  return corpus


def questions(batch_size: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  pool = np.array([f"w{i}" for i in range(100, VOCAB_SIZE - len(SPECIAL_TOKENS))])
  texts = [" ".join(pool[rng.integers(0, len(pool), size=14)]) for _ in range(batch_size)]
  return dict(question=tf.constant(texts),
              answers=tf.constant([[ANSWER, ""]] * batch_size))


def build(args, corpus, work_dir):
  """(model, optimizer, train step, batch, config) of one configuration."""
  preset = args["preset"]
  bert = BertConfig.preset(preset, vocab_size=VOCAB_SIZE)
  tokenizer = Tokenizer(corpus["vocab_path"])
  module_path = os.path.join(work_dir, f"embedder_{preset}_{bert.num_hidden_layers}")
  if not os.path.exists(module_path):
    tf.random.set_seed(1)
    embedder = ProjectedEmbedder(bert).build_variables()
    tf_hub.save_embedder(embedder, tokenizer, module_path,
                         query_seq_len=SHAPES["query_seq_len"])
  tf.random.set_seed(0)
  rng = np.random.default_rng(0)
  block_emb = rng.normal(size=[len(corpus["bodies"]), 128]).astype(np.float32)
  index = orqa_model.BlockIndex(block_emb, corpus["titles"], corpus["bodies"],
                                num_neighbors=SHAPES["retrieval_beam_size"])
  config = orqa_model.OrqaConfig(recompute_activations=args["recompute"],
                                 jit_compile=args["jit_compile"], **SHAPES)
  strategy = tf.distribute.get_strategy()
  with precision_lib.policy_scope(args["precision"]):
    tower, retriever_tokenizer = towers.load_embedder_module(module_path)
    reader, reader_tokenizer = towers.build_reader(towers.BertSource(
        preset=preset, vocab_path=corpus["vocab_path"]))
    model = orqa_model.OrqaModel(tower, retriever_tokenizer, reader, reader_tokenizer,
                                 index, config, name="orqa").build_variables()
  optimizer = optimizer_lib.bert_adamw(1e-5, 1000)
  step = finetune_steps.make_train_step(model, optimizer, args["batch_size"], strategy)
  return model, optimizer, step, questions(args["batch_size"]), config, bert


def forward_flops(bert: BertConfig, batch_size: int, num_blocks: int) -> dict:
  """Forward FLOPs by component (question tower and reader of the same preset)."""
  return flops_lib.orqa_forward_flops(
      bert, bert, batch_size, SHAPES["query_seq_len"], SHAPES["reader_beam_size"],
      SHAPES["reader_seq_len"], SHAPES["span_hidden_size"], SHAPES["max_span_width"],
      num_blocks)


def run_one(args) -> dict:
  """Times one configuration (in this process)."""
  corpus = write_corpus(args["work_dir"], args["num_blocks"])
  resolved = precision_lib.resolve_precision(args["precision"])
  step_bench.reset_gpu_peak()
  _, _, step, batch, config, bert = build(args, corpus, args["work_dir"])
  jit = precision_lib.resolve_jit_compile(config.jit_compile)
  read = lambda out: float(out["loss"]) / max(float(out["num_questions"]), 1.0)
  forward = forward_flops(bert, args["batch_size"], len(corpus["bodies"]))
  result = dict(step="orqa", preset=args["preset"], num_layers=bert.num_hidden_layers,
                batch_size=args["batch_size"], precision=resolved,
                recompute_activations=config.recompute_activations, jit_compile=jit,
                **SHAPES, num_blocks=len(corpus["bodies"]), steps=args["steps"],
                warmup_steps=args["warmup_steps"],
                **step_bench.timed_step_fields(
                    lambda: step(batch), read, args["warmup_steps"], args["steps"],
                    bfloat16=resolved == precision_lib.MIXED_BFLOAT16,
                    flops_per_step=flops_lib.orqa_train_flops(forward),
                    batch_size=args["batch_size"]))
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
  parser.add_argument("--num_blocks", type=int, default=6000,
                      help="Blocks in the synthetic index (>= the beam of 5000).")
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--warmup_steps", type=int, default=1)
  parser.add_argument("--work_dir", default=None,
                      help="Where the synthetic corpus and modules go (default: a temp dir).")
  parser.add_argument("--output", default=None, help="Also write the JSON list here.")
  parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.one:
    print(json.dumps(run_one(json.loads(args.one))), flush=True)
    return
  work_dir = args.work_dir or tempfile.mkdtemp(prefix="orqa_bench_")
  os.makedirs(work_dir, exist_ok=True)
  results = []
  for preset in args.presets.split(","):
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
      for precision in args.precision.split(","):
        for recompute in args.recompute.split(","):
          for jit in args.jit.split(","):
            one = dict(preset=preset, batch_size=batch_size, precision=precision,
                       recompute=_bool(recompute), jit_compile=_bool(jit),
                       num_blocks=args.num_blocks,
                       steps=args.steps, warmup_steps=args.warmup_steps, work_dir=work_dir)
            result = step_bench.run_isolated(os.path.abspath(__file__), one)
            print(json.dumps(result), flush=True)
            results.append(result)
  print(json.dumps(results, indent=1))
  if args.output:
    with open(args.output, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  main()
