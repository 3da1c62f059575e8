r"""ScaNN vs exact brute force on real block embeddings: recall@10 and queries/s (JSON).

Step 1 (`--embed`, cached): the first `--num_blocks` passages of the 178k Wikipedia
corpus become retrieval shards (`realm_tf.corpus.build_retrieval_corpus`) and are embedded
by the refresh job's path (`corpus_embedding.embed_shards`) with a ProjectedEmbedder whose
BERT holds the all-MiniLM-L6-v2 weights (the 384->128 projection is freshly initialized:
no trained REALM embedder exists yet). `--num_queries` further passages, embedded the
same way, are the queries. Both arrays go to `--cache_dir` (block_emb checkpoint format).

Or (`--embedder_module`): an existing retriever module with its index
(`<module>/encoded/encoded.ckpt`, e.g. `orqa.ict --encode`'s or the refresh job's
`export/encoded/<ts>/embedder`) is searched with real questions (`--questions_path`, QA
jsonl) embedded by the module's own `projected_text` signature.

Step 2: exact top-10 with `BruteForceSearcher` is the reference; the ScaNN searcher built
with the refresh job's defaults (and optional overrides) is scored by recall@10, and both
are timed batched (all queries in one call) and one query per call.

  python bench/searchers.py --num_blocks=50000 --num_queries=1000 --seq_len=128 \
      --cache_dir=/tmp/realm_bench_searchers
  python bench/searchers.py --embedder_module=ict_dir/export/encoded/<ts>/embedder \
      --questions_path=../shared/data/qa/NQ-open.dpr-dev-from-train.jsonl
"""

import gzip
import json
import os
import time

from absl import app
from absl import flags
from absl import logging

import realm_tf  # pylint: disable=unused-import
import numpy as np
import tensorflow as tf

from realm_tf.corpus import build_retrieval_corpus
from realm_tf.modeling.config import BertConfig
from realm_tf.modeling.embedder import ProjectedEmbedder
from realm_tf.modeling import weights
from realm_tf.retrieval import block_emb_file
from realm_tf.retrieval import corpus_embedding
from realm_tf.retrieval import corpus_reader
from realm_tf.retrieval import searchers

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_blocks", 50000, "Indexed blocks (first passages of the corpus).")
flags.DEFINE_integer("num_queries", 1000, "Query passages (the ones after the blocks).")
flags.DEFINE_integer("seq_len", 128, "Candidate sequence length of the embedding pass.")
flags.DEFINE_integer("batch_size", 128, "Embedding batch size.")
flags.DEFINE_string("cache_dir", "/tmp/realm_bench_searchers", "Embeddings cache.")
flags.DEFINE_integer("k", 10, "Neighbours.")
flags.DEFINE_list("scann_overrides", [], "name=value ScaNN parameters, e.g. "
                  "num_leaves_to_search=40.")
flags.DEFINE_integer("single_query_count", 200, "Queries timed one per call.")
flags.DEFINE_string("embedder_module", None, "Search this module's own index instead.")
flags.DEFINE_string("questions_path", None, "QA jsonl whose questions are the queries "
                    "(with --embedder_module; the first --num_queries).")

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..",
                      "shared")
WIKI = os.path.join(SHARED, "data", "corpus", "enwiki2015-first30k.psgs100w.cap800.jsonl.gz")
MINILM = os.path.join(SHARED, "models", "all-MiniLM-L6-v2")


def _embed(cache_dir):
  """Embeds blocks and queries once; returns (block_emb, query_emb, info)."""
  info_path = os.path.join(cache_dir, "info.json")
  if os.path.exists(info_path):
    with open(info_path) as f:
      info = json.load(f)
    if (info["num_blocks"], info["num_queries"], info["seq_len"]) == (
        FLAGS.num_blocks, FLAGS.num_queries, FLAGS.seq_len):
      return (block_emb_file.read_block_emb(os.path.join(cache_dir, "blocks", "encoded.ckpt")),
              block_emb_file.read_block_emb(os.path.join(cache_dir, "queries", "encoded.ckpt")),
              info)
    raise ValueError(f"{cache_dir} holds another configuration: {info}")
  if not os.path.exists(WIKI) or not os.path.exists(MINILM):
    raise FileNotFoundError(f"This benchmark needs {WIKI} and {MINILM}.")
  os.makedirs(cache_dir, exist_ok=True)
  vocab = os.path.join(MINILM, "vocab.txt")
  config = BertConfig.preset("minilm", vocab_size=len(open(vocab).read().splitlines()))
  embedder = ProjectedEmbedder(config).build_variables()
  report = weights.load_bert_weights(embedder.encoder, config, MINILM)
  logging.info("Loaded MiniLM: %s", report)
  featurizer = corpus_embedding.featurizer_for_documents(vocab, FLAGS.seq_len)

  def embed_fn(input_ids, input_mask, segment_ids):
    return embedder((input_ids, input_mask, segment_ids), training=False)

  out = {}
  with gzip.open(WIKI, "rt", encoding="utf-8") as f:
    lines = [next(f) for _ in range(FLAGS.num_blocks + FLAGS.num_queries)]
  timings = {}
  for name, part in (("blocks", lines[:FLAGS.num_blocks]),
                     ("queries", lines[FLAGS.num_blocks:])):
    docs = os.path.join(cache_dir, f"{name}.jsonl")
    with open(docs, "w", encoding="utf-8") as f:
      f.writelines(part)
    prefix = os.path.join(cache_dir, f"{name}_corpus", "z.tfr")
    build_retrieval_corpus.build(docs, prefix, vocab, num_shards=8, num_workers=1)
    paths = corpus_reader.list_shards(prefix)
    start = time.perf_counter()
    out[name] = corpus_embedding.embed_shards(paths, embed_fn, featurizer, FLAGS.batch_size,
                                              num_blocks=len(part), log_interval_secs=30)
    timings[name] = {"rows": len(part), "secs": time.perf_counter() - start}
    block_emb_file.write_block_emb(os.path.join(cache_dir, name, "encoded.ckpt"), out[name])
  info = {"num_blocks": FLAGS.num_blocks, "num_queries": FLAGS.num_queries,
          "seq_len": FLAGS.seq_len, "embedding_timings": timings,
          "embedder": "ProjectedEmbedder(all-MiniLM-L6-v2 BERT, fresh 384->128 projection)"}
  with open(info_path, "w") as f:
    json.dump(info, f, indent=2)
  return out["blocks"], out["queries"], info


def _module_index():
  """(block_emb, question embeddings, info) of --embedder_module and --questions_path."""
  import tensorflow_text  # pylint: disable=g-import-not-at-top,unused-import  (tokenizer ops)
  block_emb = block_emb_file.read_block_emb(block_emb_file.checkpoint_prefix(FLAGS.embedder_module))
  with open(FLAGS.questions_path, encoding="utf-8") as f:
    questions = [json.loads(line)["question"] for line in f][:FLAGS.num_queries]
  embed = tf.saved_model.load(FLAGS.embedder_module).signatures["projected_text"]
  queries = np.concatenate([embed(text=tf.constant(questions[i:i + 256]))["default"].numpy()
                            for i in range(0, len(questions), 256)])  # [num_queries, D]
  return block_emb, queries, {"embedder_module": FLAGS.embedder_module,
                              "questions_path": FLAGS.questions_path}


def _time(fn, repeats=3):
  fn()  # Warm-up (tracing).
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - start)
  return best


def _qps(searcher, queries, k):
  batched = _time(lambda: searcher.search(queries, k)[0].numpy())
  singles = queries[:FLAGS.single_query_count]

  def one_by_one():
    for i in range(len(singles)):
      searcher.search(singles[i:i + 1], k)[0].numpy()

  single = _time(one_by_one, repeats=1)
  return {"batched_qps": len(queries) / batched, "single_query_qps": len(singles) / single}


def main(argv):
  del argv
  if FLAGS.embedder_module:
    block_emb, queries, info = _module_index()
  else:
    block_emb, queries, info = _embed(FLAGS.cache_dir)
  k = FLAGS.k
  overrides = {}
  for item in FLAGS.scann_overrides:
    name, value = item.split("=")
    overrides[name] = float(value) if "." in value else int(value)
  brute = searchers.BruteForceSearcher(block_emb, k)
  exact_ids = brute.search(queries, k)[0].numpy()
  start = time.perf_counter()
  scann = searchers.build_searcher("scann", block_emb, k, **overrides)
  build_secs = time.perf_counter() - start
  ids = scann.search(queries, k)[0].numpy()
  recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ids, exact_ids)]))
  result = {
      "num_blocks": int(block_emb.shape[0]), "dims": int(block_emb.shape[1]),
      "num_queries": int(queries.shape[0]), "k": k, "embeddings": info,
      "scann_params": scann.params(), "scann_build_secs": build_secs,
      "scann_recall_at_k": recall,
      "brute_force": _qps(brute, queries, k), "scann": _qps(scann, queries, k),
      "cpu_count": os.cpu_count()}
  for mode in ("batched_qps", "single_query_qps"):
    result[f"speedup_{mode}"] = result["scann"][mode] / result["brute_force"][mode]
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  app.run(main)
