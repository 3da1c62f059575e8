r"""Embeds every block of a retrieval corpus with an embedder module, by hand.

  python -m realm_tf.embed_corpus \
      --embedder=model_dir/export/tf_hub/<ts>/embedder \
      --retrieval_corpus_path='blocks.tfr-*-of-*' --vocab_path=vocab.txt \
      --output_dir=out [--task_index=0 --num_tasks=1] [--candidate_seq_len=288]

With one task it writes `out/encoded/encoded.ckpt` (`block_emb`); with several, each task
writes `out/partials/part-<i>-of-<n>.npy` and `--merge` writes the checkpoint. The
computation is `realm_tf.retrieval.corpus_embedding` (the refresh job's).
"""

import os

import realm_tf  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow loads)
from absl import flags
from absl import logging

from realm_tf import cli
from realm_tf.retrieval import block_emb_file
from realm_tf.retrieval import corpus_embedding
from realm_tf.retrieval import corpus_reader

FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string("embedder", None, "Embedder SavedModel (with a `projected` signature).")
  flags.DEFINE_string("retrieval_corpus_path", None, "Glob of the retrieval-corpus shards.")
  flags.DEFINE_string("vocab_path", None, "BERT vocab.txt of the embedder.")
  flags.DEFINE_boolean("do_lower_case", True, "Uncased tokenization.")
  flags.DEFINE_integer("candidate_seq_len", 288, "C, the candidate input length.")
  flags.DEFINE_boolean("separate_candidate_segments", True, "Segment ids 0/1 title/body.")
  flags.DEFINE_integer("batch_size", 256, "Global batch size.")
  flags.DEFINE_string("output_dir", None, "Where encoded/ or partials/ is written.")
  flags.DEFINE_integer("task_index", 0, "This worker's index.")
  flags.DEFINE_integer("num_tasks", 1, "The number of workers.")
  flags.DEFINE_boolean("merge", False, "Merge the partials of --num_tasks workers.")
  flags.mark_flags_as_required(["retrieval_corpus_path", "output_dir"])


def main(argv):
  del argv  # Unused.
  shard_paths = corpus_reader.list_shards(FLAGS.retrieval_corpus_path)
  counts, _ = corpus_reader.shard_counts(shard_paths)
  partials_dir = os.path.join(FLAGS.output_dir, block_emb_file.PARTIALS_DIR)
  prefix = os.path.join(FLAGS.output_dir, block_emb_file.ENCODED_DIR,
                        block_emb_file.CHECKPOINT_NAME)
  if FLAGS.merge:
    expected = [sum(counts[slice(*corpus_reader.shard_range(len(counts), t, FLAGS.num_tasks))])
                for t in range(FLAGS.num_tasks)]
    block_emb_file.write_block_emb(
        prefix, block_emb_file.merge_partials(partials_dir, FLAGS.num_tasks, expected))
    logging.info("Wrote block_emb [%d, ...] to %s", sum(counts), prefix)
    return
  featurizer = corpus_embedding.featurizer_for_documents(
      FLAGS.vocab_path, FLAGS.candidate_seq_len, FLAGS.do_lower_case,
      FLAGS.separate_candidate_segments)
  result = corpus_embedding.embed_task(
      shard_paths, counts, FLAGS.task_index, FLAGS.num_tasks,
      corpus_embedding.load_saved_model_embedder(FLAGS.embedder), featurizer,
      FLAGS.batch_size)
  if FLAGS.num_tasks == 1:
    block_emb_file.write_block_emb(prefix, result["block_emb"])
    logging.info("Wrote block_emb %s to %s", result["block_emb"].shape, prefix)
  else:
    path = block_emb_file.write_partial(partials_dir, FLAGS.task_index, FLAGS.num_tasks,
                                        result["block_emb"],
                                        {"shard_range": list(result["shard_range"])})
    logging.info("Wrote %d rows to %s", result["rows"], path)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
