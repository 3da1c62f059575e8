r"""Featurized REALM examples per second on one CPU core (JSON on stdout).

Measures the in-graph path the training input pipeline uses: tokenize query sentences,
mask one salient span each, and build query / candidate / joint inputs for N candidates
(null document first), batched inside `tf.data` with one intra-op and inter-op thread.

  python bench/featurization_throughput.py --query_seq_len=96 --candidate_seq_len=288 \
      --num_candidates=8 --batch_size=128 --num_batches=40
"""

import json
import os
import re
import time

from absl import app
from absl import flags

import realm_tf  # pylint: disable=unused-import
import numpy as np
import tensorflow as tf

from realm_tf import sample_data
from realm_tf.featurization import Featurizer, prepend_null_document
from realm_tf.tokenization import Tokenizer

FLAGS = flags.FLAGS
flags.DEFINE_integer("query_seq_len", 96, "Q.")
flags.DEFINE_integer("candidate_seq_len", 288, "C.")
flags.DEFINE_integer("num_candidates", 8, "N including the null document.")
flags.DEFINE_integer("max_masks", 10, "M.")
flags.DEFINE_integer("batch_size", 128, "Examples featurized per batch.")
flags.DEFINE_integer("num_batches", 40, "Timed batches (after 3 warm-up batches).")
flags.DEFINE_string("vocab_path", None, "Vocab (default: ../shared BERT vocab if present, "
                    "else the sample vocab).")


def main(argv):
  del argv
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  bert_vocab = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "models",
                            "all-MiniLM-L6-v2", "vocab.txt")
  vocab = FLAGS.vocab_path or (bert_vocab if os.path.exists(bert_vocab)
                               else sample_data.VOCAB_PATH)
  tokenizer = Tokenizer(vocab)
  featurizer = Featurizer(FLAGS.query_seq_len, FLAGS.candidate_seq_len,
                          FLAGS.num_candidates, FLAGS.max_masks, tokenizer)
  with open(sample_data.PASSAGES_PATH, encoding="utf-8") as f:
    passages = [json.loads(line) for line in f]
  # Query sentences with a capitalised word as the span; corpus blocks as candidates.
  sentences, spans = [], []
  for p in passages:
    for sentence in re.findall(r"[^.]+\.", p["text"]):
      sentence = sentence.strip()
      match = re.search(r" ([A-Z][a-z]+)", sentence)
      if match:
        start = len(sentence[:match.start(1)].encode())
        sentences.append(sentence.encode())
        spans.append([start, start + len(match.group(1).encode())])
  titles = tokenizer.tokenize_ids([p["title"] for p in passages])
  bodies = tokenizer.tokenize_ids([p["text"] for p in passages])
  rng = np.random.default_rng(0)
  n = len(sentences)
  k = FLAGS.num_candidates - 1

  def featurize(indices):
    batch = tf.shape(indices)[0]
    texts = tf.gather(sentences, indices)
    span = tf.gather(tf.constant(spans, tf.int64), indices)
    masking = featurizer.tokenize_and_mask_tf(texts, span[:, :1], span[:, 1:])
    docs = tf.random.stateless_uniform([batch * k], [1, 2], 0, len(passages), tf.int32)
    cand_titles = prepend_null_document(
        tf.RaggedTensor.from_uniform_row_length(tf.gather(titles, docs), k))
    cand_bodies = prepend_null_document(
        tf.RaggedTensor.from_uniform_row_length(tf.gather(bodies, docs), k))
    return featurizer.featurize_examples_tf(masking, cand_titles, cand_bodies, 0)

  indices = rng.integers(0, n, [FLAGS.batch_size * (FLAGS.num_batches + 3)])
  dataset = (tf.data.Dataset.from_tensor_slices(indices).batch(FLAGS.batch_size)
             .map(featurize).prefetch(1))
  iterator = iter(dataset)
  for _ in range(3):
    next(iterator)
  start = time.perf_counter()
  count = 0
  for features in iterator:
    count += int(features["mlm_mask"].shape[0])
  elapsed = time.perf_counter() - start
  print(json.dumps({
      "benchmark": "featurization_throughput",
      "examples_per_sec": round(count / elapsed, 1),
      "examples": count, "seconds": round(elapsed, 3), "threads": 1,
      "query_seq_len": FLAGS.query_seq_len, "candidate_seq_len": FLAGS.candidate_seq_len,
      "num_candidates": FLAGS.num_candidates, "max_masks": FLAGS.max_masks,
      "batch_size": FLAGS.batch_size, "vocab": os.path.basename(os.path.dirname(vocab)),
  }))


if __name__ == "__main__":
  app.run(main)
