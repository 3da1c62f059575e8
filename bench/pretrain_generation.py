r"""REALM pre-training input benchmark (JSON lines on stdout).

1. Example generation throughput (examples/s) of the training stream with exact in-graph
   search and with the ScaNN searcher, over the 178k-passage corpus of ../shared (block
   embeddings from a random tiny embedder stand in for a trained index: speed does not
   depend on what the vectors are).
2. Trainer step time with live example generation vs. the same batches cached in memory,
   for tiny and MiniLM encoder shapes (Q=96, C=288, N=8, M=10).

  python bench/pretrain_generation.py --work_dir=/tmp/realm_bench --num_passages=178516
"""

import json
import os
import time

from absl import app
from absl import flags

import realm_tf  # pylint: disable=unused-import
import numpy as np
import tensorflow as tf

from realm_tf.corpus import build_pretrain_corpus, build_retrieval_corpus
from realm_tf.featurization import Featurizer
from realm_tf.generation.stream import ExampleStream
from realm_tf.modeling.config import BertConfig, RealmConfig
from realm_tf.modeling.optimizer import create_optimizer
from realm_tf.modeling.realm_model import RealmModel
from realm_tf.modeling.realm_steps import make_train_step
from realm_tf.retrieval import block_emb_file, corpus_reader, export_dirs, searchers
from realm_tf import tf_hub_modules as tf_hub
from realm_tf.tokenization import Tokenizer

FLAGS = flags.FLAGS
flags.DEFINE_string("work_dir", "/tmp/realm_bench", "Corpora and the index are built here.")
flags.DEFINE_string("shared_dir", os.path.join(os.path.dirname(__file__), "..", "..",
                                               "shared"), "The ../shared folder.")
flags.DEFINE_integer("num_passages", 178516, "Passages of the 178k corpus to use.")
flags.DEFINE_integer("generation_batches", 20, "Batches timed per searcher.")
flags.DEFINE_integer("generation_batch_size", 64, "Examples per generation batch.")
flags.DEFINE_list("presets", ["tiny", "minilm"], "Encoder shapes for the step timing.")
flags.DEFINE_list("batch_sizes", ["4", "16"], "Batch sizes for the step timing.")
flags.DEFINE_integer("train_steps", 3, "Timed train steps per setting (after 1 warm-up).")

Q, C, N, M = 96, 288, 8, 10


def _emit(**record):
  print(json.dumps(record), flush=True)


def prepare_corpora(work_dir: str, vocab_path: str):
  """Pre-training and retrieval shards of the first `num_passages` passages."""
  source = os.path.join(FLAGS.shared_dir, "data", "corpus",
                        "enwiki2015-first30k.psgs100w.cap800.jsonl.gz")
  subset = os.path.join(work_dir, f"passages-{FLAGS.num_passages}.jsonl")
  if not os.path.exists(subset):
    import gzip  # pylint: disable=g-import-not-at-top
    with gzip.open(source, "rt", encoding="utf-8") as f, open(subset + ".tmp", "w") as out:
      for i, line in enumerate(f):
        if i >= FLAGS.num_passages:
          break
        out.write(line)
    os.replace(subset + ".tmp", subset)
  pretrain = os.path.join(work_dir, "pretrain", "pretrain")
  retrieval = os.path.join(work_dir, "retrieval", "blocks")
  for prefix in (pretrain, retrieval):
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
  if not os.path.exists(pretrain + ".manifest.json"):
    build_pretrain_corpus.build(subset, pretrain, num_shards=20, eval_shards=2,
                                num_workers=os.cpu_count())
  if not os.path.exists(retrieval + ".manifest.json"):
    build_retrieval_corpus.build(subset, retrieval, vocab_path, num_shards=20,
                                 num_workers=os.cpu_count())
  return corpus_reader.list_shards(pretrain), corpus_reader.list_shards(retrieval)


def prepare_index(work_dir, model, tokenizer, num_blocks):
  """An encoded export with random block embeddings and both searchers."""
  encoded = os.path.join(work_dir, "model", "export", "encoded", "1")
  if not os.path.isdir(encoded):
    staging = export_dirs.temp_dir_for(encoded)
    tf_hub.save_embedder(model.document_embedder, tokenizer,
                         os.path.join(staging, "embedder"), Q)
    block_emb = np.random.default_rng(0).normal(size=[num_blocks, 128]).astype(np.float32)
    block_emb_file.write_block_emb(
        block_emb_file.checkpoint_prefix(os.path.join(staging, "embedder")), block_emb)
    start = time.time()
    scann = searchers.build_searcher(searchers.SCANN, block_emb, N)
    _emit(benchmark="scann_build", num_blocks=num_blocks, seconds=round(time.time() - start, 1))
    scann.save(os.path.join(staging, "scann"))
    with open(os.path.join(staging, "manifest.json"), "w") as f:
      json.dump({"searcher": {"type": "scann", "dir": "scann", "num_neighbors": N}}, f)
    export_dirs.commit_directory(staging, encoded)
  return os.path.dirname(os.path.dirname(os.path.dirname(encoded)))


def config_for(preset: str, vocab_size: int, batch_size: int) -> RealmConfig:
  bert = BertConfig.preset(preset, vocab_size=vocab_size)
  return RealmConfig(bert=bert, embedder=bert, query_seq_len=Q, candidate_seq_len=C,
                     num_candidates=N, max_masks=M, batch_size=batch_size,
                     num_train_steps=1000)


def main(argv):
  del argv
  vocab_path = os.path.join(FLAGS.shared_dir, "models", "all-MiniLM-L6-v2", "vocab.txt")
  os.makedirs(FLAGS.work_dir, exist_ok=True)
  tokenizer = Tokenizer(vocab_path)
  featurizer = Featurizer(Q, C, N, M, tokenizer)
  pretrain, retrieval = prepare_corpora(FLAGS.work_dir, vocab_path)
  tiny = RealmModel(config_for("tiny", tokenizer.vocab_size, 4)).build_variables()
  model_dir = prepare_index(FLAGS.work_dir, tiny, tokenizer, FLAGS.num_passages)

  def stream(searcher, batch_size):
    return ExampleStream(model_dir, pretrain[2:], retrieval, featurizer, batch_size,
                         training=True, shards_per_pass=4, searcher=searcher)

  for searcher in ("brute_force", "scann"):
    iterator = iter(stream(searcher, FLAGS.generation_batch_size).dataset())
    next(iterator)  # builds the index element and warms up
    start = time.time()
    for _ in range(FLAGS.generation_batches):
      next(iterator)
    elapsed = time.time() - start
    _emit(benchmark="example_generation", searcher=searcher, num_blocks=FLAGS.num_passages,
          examples_per_sec=round(FLAGS.generation_batches * FLAGS.generation_batch_size /
                                 elapsed, 1))

  for preset in FLAGS.presets:
    for batch_size in map(int, FLAGS.batch_sizes):
      config = config_for(preset, tokenizer.vocab_size, batch_size)
      model = RealmModel(config).build_variables()
      step = make_train_step(model, create_optimizer(config))
      live = iter(stream("brute_force", batch_size).dataset())
      cached = [next(live) for _ in range(FLAGS.train_steps + 1)]
      step(cached[0])
      start = time.time()
      for batch in cached[1:]:
        step(batch)
      cached_time = (time.time() - start) / FLAGS.train_steps
      start = time.time()
      for _ in range(FLAGS.train_steps):
        step(next(live))
      live_time = (time.time() - start) / FLAGS.train_steps
      _emit(benchmark="train_step_live_vs_cached", preset=preset, batch_size=batch_size,
            cached_sec_per_step=round(cached_time, 3), live_sec_per_step=round(live_time, 3),
            ratio=round(live_time / cached_time, 3))


if __name__ == "__main__":
  app.run(main)
