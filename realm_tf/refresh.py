r"""The refresh job: re-embeds the corpus with each new embedder export of a REALM run.

  python -m realm_tf.refresh --model_dir=model_dir \
      --retrieval_corpus_path=data/blocks [--searcher=scann|brute_force] \
      [--start_at_step=0] [--poll_interval_secs=30] [--once]

Flags map onto `realm_tf.retrieval.refresher` (`RefreshOptions`, `Refresher`), which
describes the loop, its crash safety and the multi-worker split. `--once` handles the
newest pending export, if any, and exits. `--lock_wait_secs` bounds the wait for another
refresh job on the same model_dir. With `--parent_pid` (set by the trainer's inline
refresh) the job exits when that process dies. The featurizer parameters come from
`model_dir/config.json`; flags override them.
"""

import realm_tf  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow loads)
from absl import flags
import tensorflow as tf

from realm_tf import cli
from realm_tf import processes
from realm_tf.retrieval import refresher as refresher_lib
from realm_tf.retrieval import searchers
from realm_tf.training import strategies

FLAGS = flags.FLAGS


def define_flags():
  """The original `refresh_doc_embeds` flags plus the searcher, polling, worker flags."""
  flags.DEFINE_string("model_dir", None, "The trainer's model directory.")
  flags.DEFINE_enum("strategy", "default", list(strategies.STRATEGIES),
                    "tf.distribute strategy of the embedding (as every training job's).")
  flags.DEFINE_boolean("use_tpu", False, "The original's spelling of --strategy=tpu.")
  flags.DEFINE_list("tpu_workers", None, "TPU name(s) / grpc addresses (the first is used).")
  flags.DEFINE_integer("tpu_cores", None, "TPU cores per worker (informational; the "
                       "strategy uses all cores of the TPU).")
  flags.DEFINE_integer("predict_batch_size", 256, "Global embedding batch size.")
  flags.DEFINE_integer("start_at_step", 0, "Ignore exports from earlier steps.")
  flags.DEFINE_string("retrieval_corpus_path", None, "Retrieval corpus: the builder's "
                      "--output_prefix, its .manifest.json or a glob of its shard names.")
  flags.DEFINE_enum("searcher", searchers.SCANN, list(searchers.SEARCHER_TYPES),
                    "The searcher saved with each index (ScaNN falls back to brute force "
                    "when scann cannot be imported).")
  flags.DEFINE_float("poll_interval_secs", 30.0, "Sleep between polls when idle.")
  flags.DEFINE_boolean("once", False, "Embed the newest pending export, then exit.")
  flags.DEFINE_integer("encoded_to_keep", 3, "Encoded exports kept.")
  flags.DEFINE_integer("num_neighbors", 100, "Default k of the saved searcher.")
  flags.DEFINE_integer("task_index", 0, "This worker's index (0 = chief).")
  flags.DEFINE_integer("num_tasks", 1, "The number of embedding workers.")
  flags.DEFINE_enum("distribution", "default", ["default", "mirrored"],
                    "Older spelling of --strategy=default|mirrored.")
  flags.DEFINE_integer("candidate_seq_len", None, "Override of config.json.")
  flags.DEFINE_string("vocab_path", None, "Override of config.json.")
  flags.DEFINE_boolean("do_lower_case", None, "Override of config.json.")
  flags.DEFINE_boolean("separate_candidate_segments", None, "Override of config.json.")
  flags.DEFINE_integer("scann_num_leaves", None, "Default: round(sqrt(K)).")
  flags.DEFINE_integer("scann_num_leaves_to_search", None, "Default: ceil(leaves / 10).")
  flags.DEFINE_integer("scann_reorder_num_neighbors", None,
                       "Exact reordering of the best N (0: none). Default: 100.")
  flags.DEFINE_float("lock_wait_secs", 120.0, "How long to wait for another refresh job "
                     "of the same model_dir and task to exit before giving up.")
  flags.DEFINE_integer("parent_pid", None, "Exit when this process (the trainer) dies.")
  flags.mark_flags_as_required(["model_dir", "retrieval_corpus_path"])


def strategy_from_flags() -> tf.distribute.Strategy:
  """The strategy of --strategy (or of the original's --use_tpu / --tpu_workers)."""
  name = "tpu" if FLAGS.use_tpu else FLAGS.strategy
  if name == "default" and FLAGS.distribution != "default":
    name = FLAGS.distribution
  tpu = FLAGS.tpu_workers[0] if name == "tpu" and FLAGS.tpu_workers else None
  return strategies.make_strategy(name, tpu)


def main(argv):
  del argv  # Unused.
  processes.watch_parent(FLAGS.parent_pid)
  scann_params = {"num_leaves": FLAGS.scann_num_leaves,
                  "num_leaves_to_search": FLAGS.scann_num_leaves_to_search,
                  "reorder_num_neighbors": FLAGS.scann_reorder_num_neighbors}
  options = refresher_lib.options_from_config(
      FLAGS.model_dir, candidate_seq_len=FLAGS.candidate_seq_len, vocab_path=FLAGS.vocab_path,
      do_lower_case=FLAGS.do_lower_case,
      separate_candidate_segments=FLAGS.separate_candidate_segments,
      batch_size=FLAGS.predict_batch_size, start_at_step=FLAGS.start_at_step,
      searcher=FLAGS.searcher,
      searcher_params={k: v for k, v in scann_params.items()
                       if v is not None and FLAGS.searcher == searchers.SCANN},
      num_neighbors=FLAGS.num_neighbors, poll_interval_secs=FLAGS.poll_interval_secs,
      encoded_to_keep=FLAGS.encoded_to_keep, task_index=FLAGS.task_index,
      num_tasks=FLAGS.num_tasks)
  refresher = refresher_lib.Refresher(FLAGS.model_dir, FLAGS.retrieval_corpus_path, options,
                                    strategy=strategy_from_flags())
  with refresher.lock(wait_secs=FLAGS.lock_wait_secs):
    refresher.run(once=FLAGS.once)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
