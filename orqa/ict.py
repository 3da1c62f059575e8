r"""ICT warm start of the retriever (language/orqa/experiments/ict_experiment.py):
`python -m orqa.ict`.

  python -m orqa.ict --model_dir=ict_dir --examples_path='ict_examples.tfr.gz' \
      [--init_hf_bert=all-MiniLM-L6-v2 | --init_checkpoint=... --bert_preset=base |
       --bert_preset=tiny --vocab_path=vocab.txt] \
      --batch_size=4096 --num_train_steps=100000 \
      [--encode --retrieval_corpus_path='blocks.tfr-*-of-*' --searcher=scann]

Trains one `ProjectedEmbedder` (BERT -> Dense(128) -> LayerNorm) on the Inverse Cloze
Task: a random sentence of a block is the query, its block (the sentence removed with
probability `--mask_rate`) the positive, the other blocks of the global batch the
negatives (gathered across replicas). BERT AdamW, lr 1e-4, the original's warmup. The
loop is the shared ICT job (`realm_tf.ict.training`, on Orbit); evaluation reads blocks
held out of training (`--eval_examples_path`, or every `--eval_holdout_every`-th block).

Outputs in `model_dir`:
  checkpoints/                  tf.train.CheckpointManager (training resumes from it)
  logs/{train,eval}/            TensorBoard scalars; eval_results.jsonl, ict_config.json
  export/tf_hub/<ts>/embedder/  the embedder module (docs/ARCHITECTURE.md; the original
                                named it `ict`), + global_step.txt
With `--encode`, the export is then embedded over `--retrieval_corpus_path` by the REALM
refresher's code and committed as
  export/encoded/<ts>/embedder/encoded/encoded.ckpt   block_emb [K, 128]
  export/encoded/<ts>/<scann|brute_force>/            the searcher
  export/encoded/<ts>/manifest.json
so `export/encoded/<ts>/embedder` is the `--retriever_module_path` of `orqa.finetune`
and the starting index of REALM pre-training. `ict_examples` come from
`python -m orqa.build_ict_examples`.
"""

import os
import time

import orqa  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow loads)
from absl import app
from absl import flags
from absl import logging
import tensorflow as tf
import tf_keras

from orqa.models import towers
from realm_tf import cli
from realm_tf.retrieval import refresher as refresher_lib
from realm_tf import tf_hub_modules as tf_hub
from realm_tf.ict import training as ict_training
from realm_tf.retrieval import export_dirs
from realm_tf.retrieval import searchers
from realm_tf.training import strategies

EXPORT_PREFIX = "tf_hub"
MODULE_NAME = "embedder"

FLAGS = flags.FLAGS


def define_flags():
  """The original's flags plus initialization, held-out eval, export and encoding flags."""
  flags.DEFINE_string("model_dir", None, "Checkpoints, logs and exports go here.")
  flags.DEFINE_string("examples_path", None,
                      "Glob of ICT block examples (orqa.build_ict_examples).")
  flags.DEFINE_string("eval_examples_path", None,
                      "Glob of held-out eval block examples (default: every "
                      "--eval_holdout_every-th block of --examples_path, not trained on).")
  flags.DEFINE_integer("eval_holdout_every", 10,
                       "Without --eval_examples_path, hold out every k-th block for eval.")
  flags.DEFINE_integer("log_every_steps", 100, "Progress line and summary period.")
  flags.DEFINE_string("init_hf_bert", None, "Initial BERT: a Hugging Face BERT folder.")
  flags.DEFINE_string("init_checkpoint", None,
                      "Initial BERT: a TF1 BERT or TF2 checkpoint (with --bert_preset).")
  flags.DEFINE_string("bert_preset", "base",
                      "Encoder size for --init_checkpoint or random init: tiny, mini, "
                      "minilm, base.")
  flags.DEFINE_string("vocab_path", None,
                      "vocab.txt (default: the --init_hf_bert folder's).")
  flags.DEFINE_boolean("do_lower_case", True, "Uncased tokenization.")
  flags.DEFINE_integer("query_seq_len", 64, "Q.")
  flags.DEFINE_integer("block_seq_len", 288, "Block length.")
  flags.DEFINE_integer("projection_size", 128, "D.")
  flags.DEFINE_float("projection_dropout_rate", 0.1,
                     "Dropout on the projected embedding in training (the original: 0.1).")
  flags.DEFINE_float("bert_dropout_rate", None,
                     "Override of the BERT's hidden/attention dropout (default: its config's).")
  flags.DEFINE_float("mask_rate", 0.9, "Probability of removing the query from its block.")
  flags.DEFINE_float("learning_rate", 1e-4, "Peak learning rate.")
  flags.DEFINE_integer("batch_size", 4096, "Global batch size (in-batch negatives).")
  flags.DEFINE_integer("eval_batch_size", 32, "Global eval batch size.")
  flags.DEFINE_integer("num_train_steps", 100000, "Training steps.")
  flags.DEFINE_integer("num_warmup_steps", None,
                       "Default: min(10000, max(100, num_train_steps // 10)).")
  flags.DEFINE_integer("num_eval_steps", 10, "Eval batches per evaluation.")
  flags.DEFINE_integer("save_checkpoints_steps", 1000, "Checkpoint (and eval) period.")
  flags.DEFINE_integer("keep_checkpoint_max", 5, "Checkpoints kept.")
  flags.DEFINE_integer("seed", 0, "Seed of the initialization and the data.")
  flags.DEFINE_enum("strategy", "default", list(strategies.STRATEGIES),
                    "tf.distribute strategy.")
  flags.DEFINE_integer("exports_to_keep", 1, "tf_hub exports kept (the original: 1).")
  flags.DEFINE_boolean("encode", False,
                       "After training, embed --retrieval_corpus_path with the export and "
                       "commit export/encoded/<ts>/ (block_emb + searcher).")
  flags.DEFINE_string("retrieval_corpus_path", None,
                      "Retrieval corpus to encode: the builder's --output_prefix, its "
                      ".manifest.json or a glob of its shard names.")
  flags.DEFINE_alias("retrieval_corpus", "retrieval_corpus_path")
  flags.DEFINE_enum("searcher", searchers.SCANN, list(searchers.SEARCHER_TYPES),
                    "Searcher saved with the encoded index.")
  flags.DEFINE_integer("encode_batch_size", 256, "Batch size for embedding the corpus.")
  flags.DEFINE_integer("searcher_num_neighbors", 5000,
                       "Default k of the saved searcher (ORQA's beam; capped at K).")
  flags.mark_flags_as_required(["model_dir", "examples_path"])


def bert_source() -> towers.BertSource:
  if FLAGS.init_hf_bert and FLAGS.init_checkpoint:
    raise app.UsageError("Pass at most one of --init_hf_bert and --init_checkpoint.")
  return towers.BertSource(path=FLAGS.init_hf_bert or FLAGS.init_checkpoint,
                            preset=FLAGS.bert_preset, vocab_path=FLAGS.vocab_path,
                            do_lower_case=FLAGS.do_lower_case,
                            dropout_rate=FLAGS.bert_dropout_rate,
                            path_flag=("--init_hf_bert" if FLAGS.init_hf_bert
                                       else "--init_checkpoint"),
                            preset_flag="--bert_preset",
                            preset_given=bool(FLAGS["bert_preset"].present))


def export_embedder(embedder, tokenizer, model_dir: str, step: int,
                    query_seq_len: int, exports_to_keep: int = 1) -> str:
  """Writes `model_dir/export/tf_hub/<ts>/embedder` + global_step.txt atomically."""
  base = export_dirs.export_base(model_dir, EXPORT_PREFIX)
  final = os.path.join(base, str(export_dirs.new_timestamp(base)))
  staging = export_dirs.temp_dir_for(final)
  tf_hub.save_embedder(embedder, tokenizer, os.path.join(staging, MODULE_NAME),
                       query_seq_len)
  export_dirs.write_global_step(staging, step)
  export_dirs.commit_directory(staging, final)
  if exports_to_keep:
    export_dirs.clean_exports(model_dir, EXPORT_PREFIX, exports_to_keep)
  logging.info("Exported the embedder module to %s.", os.path.join(final, MODULE_NAME))
  return final


def encode_export(model_dir: str, retrieval_corpus: str, tokenizer, block_seq_len: int,
                  searcher: str, num_neighbors: int, batch_size: int,
                  strategy=None) -> str:
  """Embeds the corpus with the newest tf_hub export (REALM's refresher, once) and
  commits `export/encoded/<ts>/`; returns that directory."""
  options = refresher_lib.RefreshOptions(
      candidate_seq_len=block_seq_len, vocab_path=tokenizer.vocab_path,
      do_lower_case=tokenizer.do_lower_case, batch_size=batch_size, searcher=searcher,
      num_neighbors=num_neighbors)
  refresher = refresher_lib.Refresher(model_dir, retrieval_corpus, options, strategy=strategy)
  options.num_neighbors = min(num_neighbors, refresher.num_blocks)
  with refresher.lock(wait_secs=0):  # A refresh job on this model_dir would race.
    encoded = refresher.refresh_once()
  if encoded is None:
    raise RuntimeError(f"No tf_hub export in {model_dir} newer than its encoded exports.")
  logging.info("Retriever module with its index: %s", os.path.join(encoded, MODULE_NAME))
  return encoded


def ict_config() -> ict_training.IctConfig:
  """The `IctConfig` of the flags."""
  return ict_training.IctConfig(
      query_seq_len=FLAGS.query_seq_len, block_seq_len=FLAGS.block_seq_len,
      mask_rate=FLAGS.mask_rate, learning_rate=FLAGS.learning_rate,
      num_train_steps=FLAGS.num_train_steps, num_warmup_steps=FLAGS.num_warmup_steps,
      batch_size=FLAGS.batch_size, eval_batch_size=FLAGS.eval_batch_size,
      num_eval_steps=FLAGS.num_eval_steps, eval_every_steps=FLAGS.save_checkpoints_steps,
      log_every_steps=FLAGS.log_every_steps, keep_checkpoint_max=FLAGS.keep_checkpoint_max,
      seed=FLAGS.seed)


def train(strategy: tf.distribute.Strategy):
  """Runs ICT training (the shared `realm_tf.ict.training` job); returns the export
  directory and the tokenizer."""
  paths = sorted(tf.io.gfile.glob(FLAGS.examples_path))
  eval_paths = sorted(tf.io.gfile.glob(FLAGS.eval_examples_path)) if (
      FLAGS.eval_examples_path) else []
  if not paths or (FLAGS.eval_examples_path and not eval_paths):
    raise FileNotFoundError(f"No ICT examples match {FLAGS.examples_path!r} / "
                            f"{FLAGS.eval_examples_path!r}.")
  with strategy.scope():
    embedder, tokenizer = towers.build_embedder(bert_source(), FLAGS.projection_size,
                                                 FLAGS.projection_dropout_rate)
  config = ict_config()
  ict_training.train(embedder, tokenizer, config, FLAGS.model_dir, paths, eval_paths,
                     strategy, holdout_every=0 if eval_paths else FLAGS.eval_holdout_every)
  export = export_embedder(embedder, tokenizer, FLAGS.model_dir, config.num_train_steps,
                           FLAGS.query_seq_len, FLAGS.exports_to_keep)
  return export, tokenizer


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if FLAGS.encode and not FLAGS.retrieval_corpus_path:
    raise app.UsageError("--encode needs --retrieval_corpus_path.")
  start = time.monotonic()
  tf_keras.utils.set_random_seed(FLAGS.seed)
  strategy = strategies.make_strategy(FLAGS.strategy)
  _, tokenizer = train(strategy)
  if FLAGS.encode:
    encode_export(FLAGS.model_dir, FLAGS.retrieval_corpus_path, tokenizer, FLAGS.block_seq_len,
                  FLAGS.searcher, FLAGS.searcher_num_neighbors, FLAGS.encode_batch_size,
                  strategy)
  logging.info("Done in %.1f s.", time.monotonic() - start)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
