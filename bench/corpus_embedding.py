r"""Corpus embedding throughput: the whole path vs the bare encoder forward (JSON on stdout).

For each encoder shape (tiny: L2/H128, minilm: L6/H384) it builds retrieval-corpus shards
from the first `--num_blocks` passages of the 178k Wikipedia corpus (or the embedded
sample corpus when ../shared is absent) with `realm_tf.corpus.build_retrieval_corpus`,
then measures at the same batch size and sequence length:

* full path: `corpus_embedding.embed_shards` (GZIP reads, parsing, featurization in
  tf.data, the ProjectedEmbedder in a tf.function, scatter into [K, 128]) followed by
  `block_emb_file.write_block_emb`; blocks/s over the whole run (tracing included) and in
  steady state (from the end of the first batch);
* bare forward: the same Keras embedder on constant [B, L] inputs in a tf.function.

  python bench/corpus_embedding.py --shapes=tiny,minilm --seq_len=288 --batch_size=128 \
      --num_blocks=4096,1024
"""

import gzip
import json
import os
import tempfile
import time

from absl import app
from absl import flags

import realm_tf  # pylint: disable=unused-import
import tensorflow as tf

from realm_tf.corpus import build_retrieval_corpus
from realm_tf.modeling.config import BertConfig
from realm_tf.modeling.embedder import ProjectedEmbedder
from realm_tf.retrieval import block_emb_file
from realm_tf.retrieval import corpus_embedding
from realm_tf.retrieval import corpus_reader
from realm_tf import sample_data

FLAGS = flags.FLAGS
flags.DEFINE_list("shapes", ["tiny", "minilm"], "Encoder presets.")
flags.DEFINE_list("num_blocks", ["4096", "1024"], "Blocks per shape.")
flags.DEFINE_integer("seq_len", 288, "Candidate sequence length C.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_integer("num_shards", 4, "Shards of the benchmark corpus.")

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..",
                      "shared")
WIKI = os.path.join(SHARED, "data", "corpus", "enwiki2015-first30k.psgs100w.cap800.jsonl.gz")
BERT_VOCAB = os.path.join(SHARED, "models", "all-MiniLM-L6-v2", "vocab.txt")


def _write_input(path, num_blocks):
  """The first num_blocks passages as {title, text} jsonl."""
  source = WIKI if os.path.exists(WIKI) else sample_data.PASSAGES_PATH
  opener = gzip.open if source.endswith(".gz") else open
  lines = []
  while len(lines) < num_blocks:  # The sample corpus is small: repeat it.
    with opener(source, "rt", encoding="utf-8") as f:
      for line in f:
        d = json.loads(line)
        lines.append(json.dumps({"title": d.get("title", ""), "text": d.get("text", "")}))
        if len(lines) == num_blocks:
          break
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
  return source


def _bare_rate(embedder, batch_size, seq_len, num_batches):
  ids = tf.random.stateless_uniform([batch_size, seq_len], [0, 1], 5, 1000, tf.int32)
  ones = tf.ones_like(ids)
  zeros = tf.zeros_like(ids)

  @tf.function
  def forward():
    return embedder((ids, ones, zeros), training=False)

  forward().numpy()
  start = time.perf_counter()
  for _ in range(num_batches):
    forward().numpy()
  return num_batches * batch_size / (time.perf_counter() - start)


def main(argv):
  del argv
  vocab = BERT_VOCAB if os.path.exists(BERT_VOCAB) else sample_data.VOCAB_PATH
  results = {"seq_len": FLAGS.seq_len, "batch_size": FLAGS.batch_size,
             "cpu_count": os.cpu_count(), "runs": []}
  for shape, num_blocks in zip(FLAGS.shapes, [int(n) for n in FLAGS.num_blocks]):
    with tempfile.TemporaryDirectory() as tmp:
      source = _write_input(os.path.join(tmp, "docs.jsonl"), num_blocks)
      build_retrieval_corpus.build(os.path.join(tmp, "docs.jsonl"),
                                   os.path.join(tmp, "z", "blocks.tfr"), vocab,
                                   num_shards=FLAGS.num_shards, num_workers=1)
      paths = corpus_reader.list_shards(os.path.join(tmp, "z", "blocks.tfr"))
      featurizer = corpus_embedding.featurizer_for_documents(vocab, FLAGS.seq_len)
      config = BertConfig.preset(shape, vocab_size=len(open(vocab).read().splitlines()))
      embedder = ProjectedEmbedder(config).build_variables()

      def embed_fn(input_ids, input_mask, segment_ids):
        return embedder((input_ids, input_mask, segment_ids), training=False)

      marks = []
      start = time.perf_counter()
      block_emb = corpus_embedding.embed_shards(
          paths, embed_fn, featurizer, FLAGS.batch_size, num_blocks=num_blocks,
          on_batch=lambda done, total: marks.append((time.perf_counter(), done)))
      block_emb_file.write_block_emb(os.path.join(tmp, "out", "encoded.ckpt"), block_emb)
      wall = time.perf_counter() - start
      steady = (marks[-1][1] - marks[0][1]) / (marks[-1][0] - marks[0][0])
      bare = _bare_rate(embedder, FLAGS.batch_size, FLAGS.seq_len,
                        max(2, num_blocks // FLAGS.batch_size - 1))
      results["runs"].append({
          "shape": shape, "num_blocks": num_blocks, "corpus": os.path.basename(source),
          "full_path_blocks_per_sec_wall": num_blocks / wall,
          "full_path_blocks_per_sec_steady": steady,
          "bare_forward_blocks_per_sec": bare,
          "steady_ratio": steady / bare, "wall_ratio": num_blocks / wall / bare})
      print(json.dumps(results["runs"][-1]), flush=True)
  print(json.dumps(results, indent=2))


if __name__ == "__main__":
  app.run(main)
