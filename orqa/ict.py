r"""ICT warm start of the retriever (spec 6.1, flags 7.7): `python -m orqa.ict`.

  python -m orqa.ict --model_dir=ict_dir --examples_path='ict_examples.tfr.gz' \
      [--init_hf_bert=all-MiniLM-L6-v2 | --init_checkpoint=... --bert_preset=base |
       --bert_preset=tiny --vocab_path=vocab.txt] \
      --batch_size=4096 --num_train_steps=100000 \
      [--encode --retrieval_corpus='blocks.tfr-*-of-*' --searcher=scann]

Trains one `ProjectedEmbedder` (BERT -> Dense(128) -> LayerNorm) on the Inverse Cloze
Task: a random sentence of a block is the query, its block (the sentence removed with
probability `--mask_rate`) the positive, the other blocks of the global batch the
negatives (gathered across replicas). BERT AdamW, lr 1e-4, the original's warmup.

Outputs in `model_dir`:
  checkpoints/                  tf.train.CheckpointManager (training resumes from it)
  logs/{train,eval}/            TensorBoard scalars
  export/tf_hub/<ts>/embedder/  the embedder module (DESIGN.md contract; the original
                                named it `ict`), + global_step.txt
With `--encode`, the export is then embedded over `--retrieval_corpus` by the REALM
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

from realm_tf import tf_hub_modules as tf_hub
from realm_tf.ict import dataset as ict_dataset
from realm_tf.ict import model as ict_model
from orqa import modules
from orqa import training_utils
from realm_tf import cli
from realm_tf import refresh
from realm_tf.retrieval import export_dirs
from realm_tf.retrieval import searchers

EXPORT_PREFIX = "tf_hub"
MODULE_NAME = "embedder"

FLAGS = flags.FLAGS
_FLAG_NAMES = []


def define_flags():
  """The original's flags (spec 7.7) plus initialization, export and encoding flags."""
  before = set(FLAGS)
  flags.DEFINE_string("model_dir", None, "Checkpoints, logs and exports go here.")
  flags.DEFINE_string("examples_path", None,
                      "Glob of ICT block examples (orqa.build_ict_examples).")
  flags.DEFINE_string("eval_examples_path", None,
                      "Glob of eval block examples (default: --examples_path).")
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
  flags.DEFINE_float("log_interval_secs", 10.0, "Progress log period.")
  flags.DEFINE_integer("seed", 0, "Seed of the initialization and the data.")
  flags.DEFINE_enum("strategy", "default", list(training_utils.STRATEGIES),
                    "tf.distribute strategy.")
  flags.DEFINE_integer("exports_to_keep", 1, "tf_hub exports kept (the original: 1).")
  flags.DEFINE_boolean("encode", False,
                       "After training, embed --retrieval_corpus with the export and "
                       "commit export/encoded/<ts>/ (block_emb + searcher).")
  flags.DEFINE_string("retrieval_corpus", None, "Glob of retrieval-corpus shards.")
  flags.DEFINE_enum("searcher", searchers.SCANN, list(searchers.SEARCHER_TYPES),
                    "Searcher saved with the encoded index.")
  flags.DEFINE_integer("encode_batch_size", 256, "Batch size for embedding the corpus.")
  flags.DEFINE_integer("searcher_num_neighbors", 5000,
                       "Default k of the saved searcher (ORQA's beam; capped at K).")
  flags.mark_flags_as_required(["model_dir", "examples_path"])
  _FLAG_NAMES[:] = sorted(set(FLAGS) - before)


def bert_source() -> modules.BertSource:
  if FLAGS.init_hf_bert and FLAGS.init_checkpoint:
    raise app.UsageError("Pass at most one of --init_hf_bert and --init_checkpoint.")
  return modules.BertSource(path=FLAGS.init_hf_bert or FLAGS.init_checkpoint,
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
  options = refresh.RefreshOptions(
      candidate_seq_len=block_seq_len, vocab_path=tokenizer.vocab_path,
      do_lower_case=tokenizer.do_lower_case, batch_size=batch_size, searcher=searcher,
      num_neighbors=num_neighbors)
  refresher = refresh.Refresher(model_dir, retrieval_corpus, options, strategy=strategy)
  options.num_neighbors = min(num_neighbors, refresher.num_blocks)
  with refresher.lock(wait_secs=0):  # A refresh job on this model_dir would race.
    encoded = refresher.refresh_once()
  if encoded is None:
    raise RuntimeError(f"No tf_hub export in {model_dir} newer than its encoded exports.")
  logging.info("Retriever module with its index: %s", os.path.join(encoded, MODULE_NAME))
  return encoded


def evaluate(eval_step, strategy, dataset_fn, num_steps: int):
  """The summarized metrics over `num_steps` eval batches (fewer if the data ends)."""
  sums = None
  dataset = strategy.experimental_distribute_dataset(dataset_fn())
  for i, batch in enumerate(dataset):
    if i >= num_steps:
      break
    values = training_utils.to_floats(eval_step(batch))
    sums = values if sums is None else {k: sums[k] + values[k] for k in sums}
  if sums is None:
    raise ValueError("The eval data has no complete batch: lower --eval_batch_size.")
  return ict_model.summarize(sums)


def train(strategy: tf.distribute.Strategy):
  """Runs ICT training; returns the export directory and the tokenizer."""
  model_dir = FLAGS.model_dir
  num_replicas = strategy.num_replicas_in_sync
  for name in ("batch_size", "eval_batch_size"):
    if getattr(FLAGS, name) % num_replicas:
      raise app.UsageError(f"--{name}={getattr(FLAGS, name)} is not a multiple of the "
                           f"{num_replicas} replicas.")
  with strategy.scope():
    embedder, tokenizer = modules.build_embedder(bert_source(), FLAGS.projection_size,
                                                 FLAGS.projection_dropout_rate)
    optimizer = training_utils.create_optimizer(FLAGS.learning_rate, FLAGS.num_train_steps,
                                                FLAGS.num_warmup_steps)
    optimizer.build(embedder.trainable_variables)  # Slots exist before a restore.
    checkpoint = tf.train.Checkpoint(embedder=embedder, optimizer=optimizer)
  state = training_utils.CheckpointState(checkpoint, model_dir, FLAGS.keep_checkpoint_max)
  state.restore_latest()
  training_utils.write_params(model_dir, {k: FLAGS[k].value for k in _FLAG_NAMES})

  paths = sorted(tf.io.gfile.glob(FLAGS.examples_path))
  eval_paths = sorted(tf.io.gfile.glob(FLAGS.eval_examples_path or FLAGS.examples_path))
  if not paths or not eval_paths:
    raise FileNotFoundError(f"No ICT examples match {FLAGS.examples_path!r} / "
                            f"{FLAGS.eval_examples_path!r}.")
  step = int(optimizer.iterations.numpy())
  data_kwargs = dict(query_seq_len=FLAGS.query_seq_len, block_seq_len=FLAGS.block_seq_len,
                     mask_rate=FLAGS.mask_rate, cls_id=tokenizer.cls_id,
                     sep_id=tokenizer.sep_id)
  train_data = ict_dataset.ict_dataset(paths, FLAGS.batch_size, seed=FLAGS.seed + step,
                                       training=True, **data_kwargs)
  train_iterator = iter(strategy.experimental_distribute_dataset(train_data))

  def eval_data():
    return ict_dataset.ict_dataset(eval_paths, FLAGS.eval_batch_size, seed=FLAGS.seed,
                                   training=False, **data_kwargs)

  train_step = ict_model.make_train_step(embedder, optimizer, FLAGS.batch_size, strategy)
  eval_step = ict_model.make_eval_step(embedder, strategy)
  train_writer = training_utils.ScalarWriter(model_dir, "train")
  eval_writer = training_utils.ScalarWriter(model_dir, "eval")
  progress = training_utils.Progress(FLAGS.num_train_steps, step, FLAGS.batch_size,
                                     FLAGS.log_interval_secs)
  sums = None
  while step < FLAGS.num_train_steps:
    values = training_utils.to_floats(train_step(next(train_iterator)))
    step += 1
    sums = values if sums is None else {k: sums[k] + values[k] for k in sums}
    last = step == FLAGS.num_train_steps
    if progress.update(step, ict_model.summarize(values), force=last):
      metrics = ict_model.summarize(sums)
      metrics["learning_rate"] = float(optimizer.learning_rate.numpy())
      metrics["steps_per_sec"] = progress.steps_per_sec(step)
      train_writer.write(step, metrics)
      sums = None
    if last or step % FLAGS.save_checkpoints_steps == 0:
      state.save(step)
      metrics = evaluate(eval_step, strategy, eval_data, FLAGS.num_eval_steps)
      logging.info("eval at step %d: %s", step,
                   " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
      eval_writer.write(step, metrics)
  export = export_embedder(embedder, tokenizer, model_dir, step, FLAGS.query_seq_len,
                           FLAGS.exports_to_keep)
  return export, tokenizer


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if FLAGS.encode and not FLAGS.retrieval_corpus:
    raise app.UsageError("--encode needs --retrieval_corpus.")
  start = time.monotonic()
  tf_keras.utils.set_random_seed(FLAGS.seed)
  strategy = training_utils.make_strategy(FLAGS.strategy)
  _, tokenizer = train(strategy)
  if FLAGS.encode:
    encode_export(FLAGS.model_dir, FLAGS.retrieval_corpus, tokenizer, FLAGS.block_seq_len,
                  FLAGS.searcher, FLAGS.searcher_num_neighbors, FLAGS.encode_batch_size,
                  strategy)
  logging.info("Done in %.1f s.", time.monotonic() - start)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
