r"""ORQA fine-tuning for open-domain QA: `python -m orqa.finetune`.

It replaces the original `language/orqa/experiments/orqa_experiment.py` (model:
`orqa.orqa_model`; directory layout: docs/ARCHITECTURE.md).

  python -m orqa.finetune --model_dir=orqa_dir \
      --retriever_module_path=realm_dir/export/encoded/<ts>/embedder \
      --reader_module_path=realm_dir/export/tf_hub/<ts>/bert \
      --block_records_path='blocks.tfr-*-of-*' \
      --train_path=NQ.resplit.train.jsonl --dev_path=NQ.resplit.dev.jsonl \
      --batch_size=8 --num_train_steps=... [--strategy=mirrored]

* `--retriever_module_path`: an embedder module (REALM's `export/encoded/<ts>/embedder`, or
  `orqa.ict --encode`'s) with its index `encoded/encoded.ckpt`. Its question tower is
  fine-tuned; the block embeddings stay frozen.
* the reader BERT: `--reader_module_path` = a reader module (`export/.../bert`), a Hugging
  Face BERT folder, or a TF checkpoint (with `--reader_preset`); or random init with
  `--reader_preset` and `--reader_vocab_path`.
* `--block_records_path`: the retrieval corpus the index was built from (block i = record
  i; `title` and `body`), a passages jsonl in the same order, or the original release's
  raw-string `blocks.tfr` (titles from the `titles.tfr` beside it).
* `--init_span_scorer`: the span MLP to start from, e.g. the `bert/span_scorer.npz` that
  `export.convert` writes for a fine-tuned ORQA / REALM-ORQA reader (default: random init).
  It sets `--span_hidden_size` (a different explicit value is an error naming the file and
  both shapes) and is used only on a fresh start (a checkpoint in model_dir wins).
* QA files: jsonl `{"question", "answer": [...]}`.

Every `--save_checkpoints_steps` steps (and at the end): a checkpoint in
`model_dir/checkpoints/`, an evaluation on `--dev_path` (exact_match, official_exact_match,
reader_oracle, top_k_match; TensorBoard `logs/eval` and `eval_results.jsonl`), and, when
exact_match improves, the best export `model_dir/export/best_default/` (`checkpoint/`
with a copy of the checkpoint, `best_metric.txt` = "<step> <value>", `all_metrics.txt`)
that `orqa.predict` restores.
Training resumes from the newest checkpoint. `--refresh_index_every_steps=N` re-embeds the
blocks with the current question tower every N steps (used as the document tower; no
public ORQA/REALM code does this).

`--num_train_steps=0` trains nothing: it writes `params.json` and checkpoint 0 of the
initial model (evaluated, and exported as the best, with `--dev_path`; `--train_path` is
not needed), so a converted fine-tuned model serves as it is (docs/CHECKPOINTS.md, recipe 3):

  python -m orqa.finetune --model_dir=orqa_nq --num_train_steps=0 \
      --retriever_module_path=converted/tf_hub/embedder \
      --reader_module_path=converted/tf_hub/bert \
      --init_span_scorer=converted/bert/span_scorer.npz --include_titles=false \
      --block_records_path=blocks.jsonl [--dev_path=NQ.resplit.dev.jsonl]
  python -m orqa.predict --model_dir=orqa_nq ...
  python -m export.serving --finetuned_model=orqa_nq ...
"""

import dataclasses
import json
import os
import time

import orqa  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow loads)
from absl import app
from absl import flags
from absl import logging
import tensorflow as tf
import tf_keras

from orqa import block_records
from orqa import finetune_lib
from orqa import jsonl_io
from orqa import qa_data
from orqa import span_scorer
from orqa import training_utils
from realm_tf import cli
from realm_tf.modeling import precision
from realm_tf.retrieval import corpus_embedding
from realm_tf.retrieval import corpus_reader
from realm_tf.retrieval import export_dirs
from realm_tf.retrieval import searchers

FLAGS = flags.FLAGS
DEFAULT_SPAN_HIDDEN_SIZE = 256  # The original's span_hidden_size (orqa_experiment.py).


def define_flags(flag_values: flags.FlagValues = FLAGS):
  """The original `orqa_experiment` flags plus batching, reader sources, eval and refresh.

  Args:
    flag_values: where to define them (tests parse their own `flags.FlagValues`).
  """
  fv = dict(flag_values=flag_values)
  flags.DEFINE_string("model_dir", None, "Checkpoints, logs, params.json and exports.", **fv)
  flags.DEFINE_string("retriever_module_path", None,
                      "Embedder module with encoded/encoded.ckpt (block_emb).", **fv)
  flags.DEFINE_string("reader_module_path", None,
                      "Reader BERT: a module (export/.../bert), a HF BERT folder or a TF "
                      "checkpoint. None: random init of --reader_preset.", **fv)
  flags.DEFINE_string("reader_preset", None,
                      "Encoder size for a TF checkpoint or random init (tiny, mini, minilm, "
                      "base).", **fv)
  flags.DEFINE_string("reader_vocab_path", None,
                      "Reader vocab.txt (modules and HF folders carry their own).", **fv)
  flags.DEFINE_boolean("reader_do_lower_case", True,
                       "Uncased reader tokenization (HF folders, checkpoints, random init).",
                       **fv)
  flags.DEFINE_float("reader_dropout_rate", None,
                     "Override of the reader BERT's dropout (not for reader modules).", **fv)
  flags.DEFINE_string("init_span_scorer", None,
                      "Span MLP weights to start from: a converted span_scorer.npz "
                      "(export.convert's <output>/bert/span_scorer.npz). Used only when "
                      "model_dir has no checkpoint yet. None: random init.", **fv)
  flags.DEFINE_string("block_records_path", None,
                      "Retrieval-corpus shards (glob or prefix), passages jsonl, or the "
                      "original raw-string blocks.tfr (+ titles.tfr beside it).", **fv)
  flags.DEFINE_string("train_path", None,
                      "Training QA jsonl (not needed with --num_train_steps=0).", **fv)
  flags.DEFINE_string("dev_path", None, "Dev QA jsonl for evaluation and model selection.",
                      **fv)
  flags.DEFINE_integer("num_eval_examples", 0,
                       "Evaluate on the first N dev examples (0: all).", **fv)
  flags.DEFINE_integer("retrieval_beam_size", 5000, "Blocks retrieved per question.", **fv)
  flags.DEFINE_integer("reader_beam_size", 5, "Top retrieved blocks read.", **fv)
  flags.DEFINE_integer("reader_seq_len", 320, "Reader input length.", **fv)
  flags.DEFINE_integer("query_seq_len", 64,
                       "Question length for the retriever (the original never truncated).",
                       **fv)
  flags.DEFINE_integer("span_hidden_size", None,
                       "Span MLP width S. Default: that of --init_span_scorer, else 256 (the "
                       "original's); with --init_span_scorer it must equal the file's.", **fv)
  flags.DEFINE_integer("max_span_width", 10, "Longest answer span in wordpieces.", **fv)
  flags.DEFINE_boolean("include_titles", True,
                       "Reader input [CLS] q [SEP] title [SEP] block [SEP] (False: the "
                       "original's [CLS] q [SEP] block [SEP]).", **fv)
  flags.DEFINE_enum("searcher", searchers.SCANN, list(searchers.SEARCHER_TYPES),
                    "Search over the frozen index: scann (the original; falls back to brute "
                    "force without scann) or brute_force (exact).", **fv)
  flags.DEFINE_float("learning_rate", 1e-5, "Peak learning rate.", **fv)
  flags.DEFINE_integer("batch_size", 1, "Global batch size (questions per step; the "
                       "original: 1).", **fv)
  flags.DEFINE_integer("eval_batch_size", None, "Default: --batch_size.", **fv)
  flags.DEFINE_integer("num_train_steps", None,
                       "Training steps. 0: no training; checkpoint 0 of the initial model "
                       "(e.g. converted weights) is saved, and evaluated with --dev_path, "
                       "for orqa.predict and export.serving.", lower_bound=0, **fv)
  flags.DEFINE_integer("num_warmup_steps", None,
                       "Default: min(10000, max(100, num_train_steps // 10)).", **fv)
  flags.DEFINE_integer("save_checkpoints_steps", 1000, "Checkpoint and eval period.", **fv)
  flags.DEFINE_integer("keep_checkpoint_max", 5, "Checkpoints kept.", **fv)
  flags.DEFINE_boolean("eval_before_training", False,
                       "On a fresh start, save checkpoint 0 and evaluate it (the untrained "
                       "model's metrics).", **fv)
  flags.DEFINE_integer("refresh_index_every_steps", 0,
                       "Re-embed the blocks with the current question tower every N steps "
                       "(0: never; needs retrieval-corpus shards as --block_records_path).",
                       **fv)
  flags.DEFINE_integer("block_seq_len", 288, "Block input length when re-embedding.", **fv)
  flags.DEFINE_integer("refresh_batch_size", 128, "Batch size when re-embedding.", **fv)
  flags.DEFINE_float("log_interval_secs", 10.0, "Progress log period.", **fv)
  flags.DEFINE_integer("seed", 0, "Seed of the initialization and the data.", **fv)
  flags.DEFINE_enum("strategy", "default", list(training_utils.STRATEGIES),
                    "tf.distribute strategy.", **fv)
  flags.DEFINE_boolean("recompute_activations", False,
                       "Recompute the reader's layer activations in the backward pass (less "
                       "memory, ~1/3 more reader compute; needs a Keras reader).", **fv)
  flags.DEFINE_enum("precision", "auto", list(precision.PRECISIONS),
                    "auto: mixed_bfloat16 where the device or CPU has bf16 units.", **fv)
  flags.DEFINE_boolean("jit_compile", None,
                       "XLA-compile the reader (default: on with a GPU or TPU).", **fv)
  flags.mark_flags_as_required(["model_dir", "retriever_module_path", "block_records_path",
                                "num_train_steps"], **fv)


def model_params(span_hidden_size: int) -> finetune_lib.ModelParams:
  """The model of the flags; `span_hidden_size` as resolved by `span_init()`."""
  return finetune_lib.ModelParams(
      retriever_module_path=FLAGS.retriever_module_path,
      block_records_path=FLAGS.block_records_path,
      reader_module_path=FLAGS.reader_module_path, reader_preset=FLAGS.reader_preset,
      reader_vocab_path=FLAGS.reader_vocab_path,
      reader_do_lower_case=FLAGS.reader_do_lower_case,
      reader_dropout_rate=FLAGS.reader_dropout_rate, searcher=FLAGS.searcher,
      precision=FLAGS.precision,
      model=dict(retrieval_beam_size=FLAGS.retrieval_beam_size,
                 reader_beam_size=FLAGS.reader_beam_size,
                 reader_seq_len=FLAGS.reader_seq_len, query_seq_len=FLAGS.query_seq_len,
                 span_hidden_size=span_hidden_size,
                 max_span_width=FLAGS.max_span_width, include_titles=FLAGS.include_titles,
                 recompute_activations=FLAGS.recompute_activations,
                 jit_compile=FLAGS.jit_compile))


def span_init():
  """(span_scorer.npz arrays or None, span MLP width S) of --init_span_scorer and
  --span_hidden_size (SpanWeightsError naming the file and the shapes on a mismatch)."""
  if not FLAGS.init_span_scorer:
    return None, FLAGS.span_hidden_size or DEFAULT_SPAN_HIDDEN_SIZE
  arrays = span_scorer.read_weights(FLAGS.init_span_scorer,
                                    span_hidden_size=FLAGS.span_hidden_size)
  return arrays, int(arrays["span_logits/kernel"].shape[0])


class BestExporter:
  """Keeps `model_dir/export/best_default/` on the best `exact_match` so far.

  The best value lives on disk (`best_metric.txt`), so it survives restarts (the
  original's exporter in `language/common/utils/exporters.py` kept it in memory).
  """

  def __init__(self, model_dir: str, metric: str = "exact_match"):
    self.directory = os.path.join(model_dir, export_dirs.EXPORT_DIR, finetune_lib.BEST_DIR)
    self.metric = metric

  def best(self):
    path = os.path.join(self.directory, "best_metric.txt")
    if not tf.io.gfile.exists(path):
      return None
    with tf.io.gfile.GFile(path, "r") as f:
      return float(f.read().split()[1])

  def maybe_export(self, checkpoint_path: str, step: int, metrics) -> bool:
    value = metrics[self.metric]
    best = self.best()
    if best is not None and value <= best:
      return False
    staging = export_dirs.temp_dir_for(self.directory)
    target = os.path.join(staging, "checkpoint")
    tf.io.gfile.makedirs(target)
    for path in tf.io.gfile.glob(checkpoint_path + ".*"):
      tf.io.gfile.copy(path, os.path.join(target, os.path.basename(path)))
    with tf.io.gfile.GFile(os.path.join(staging, "best_metric.txt"), "w") as f:
      f.write(f"{step} {value}\n")
    with tf.io.gfile.GFile(os.path.join(staging, "all_metrics.txt"), "w") as f:
      f.write(json.dumps(dict(metrics, global_step=step), indent=2, sort_keys=True) + "\n")
    old = None
    if tf.io.gfile.exists(self.directory):
      old = export_dirs.temp_dir_for(self.directory)
      tf.io.gfile.rename(self.directory, old)
    tf.io.gfile.rename(staging, self.directory)
    if old:
      export_dirs.remove_tree(old)
    logging.info("New best %s=%.4f at step %d: exported %s.", self.metric, value, step,
                 self.directory)
    return True


EVAL_RESULTS_FILENAME = "eval_results.jsonl"


def append_eval_results(model_dir: str, step: int, metrics) -> None:
  """Adds `{"global_step", **metrics}` to `model_dir/eval_results.jsonl` (rewritten
  atomically)."""
  path = os.path.join(model_dir, EVAL_RESULTS_FILENAME)
  records = [r for _, r in jsonl_io.read_jsonl(path)] if tf.io.gfile.exists(path) else []
  records.append(dict(global_step=step, **metrics))
  jsonl_io.write_jsonl(path, records)


def refresh_index(model, strategy) -> None:
  """Re-embeds every block with the current question tower and swaps the index."""
  start = time.monotonic()
  shard_paths = corpus_reader.list_shards(FLAGS.block_records_path)
  tokenizer = model.retriever_tokenizer
  featurizer = corpus_embedding.featurizer_for_documents(
      tokenizer.vocab_path, FLAGS.block_seq_len, tokenizer.do_lower_case)

  def embed(input_ids, input_mask, segment_ids):
    return model.question_tower(dict(input_word_ids=input_ids, input_mask=input_mask,
                                      input_type_ids=segment_ids), training=False)

  block_emb = corpus_embedding.embed_shards(
      shard_paths, embed, featurizer, FLAGS.refresh_batch_size,
      num_blocks=model.index.num_blocks, strategy=strategy)
  model.index.assign(block_emb)
  logging.info("Re-embedded %d blocks in %.1f s.", model.index.num_blocks,
               time.monotonic() - start)


def train(strategy: tf.distribute.Strategy):
  """Fine-tunes per the flags (module docstring); returns the last eval metrics.

  With --num_train_steps=0 nothing is trained: checkpoint 0 of the initial model is saved
  (and evaluated, with --dev_path), a complete model_dir for orqa.predict and
  export.serving.
  """
  model_dir = FLAGS.model_dir
  eval_batch_size = FLAGS.eval_batch_size or FLAGS.batch_size
  for name, value in (("batch_size", FLAGS.batch_size), ("eval_batch_size", eval_batch_size)):
    if value % strategy.num_replicas_in_sync:
      raise app.UsageError(f"--{name}={value} is not a multiple of the "
                           f"{strategy.num_replicas_in_sync} replicas.")
  if FLAGS.refresh_index_every_steps and (
      FLAGS.block_records_path.endswith((".jsonl", ".jsonl.gz"))
      or block_records.is_raw_block_records(FLAGS.block_records_path)):
    raise app.UsageError("--refresh_index_every_steps needs retrieval-corpus shards as "
                         "--block_records_path.")
  if FLAGS.num_train_steps and not FLAGS.train_path:
    raise app.UsageError("--train_path is required unless --num_train_steps=0.")
  span_arrays, span_hidden_size = span_init()  # Before building: the file sets S.
  params = model_params(span_hidden_size)
  model = finetune_lib.build_model(params, strategy)
  with strategy.scope():
    # --num_train_steps=0 never steps the optimizer: any schedule will do.
    optimizer = training_utils.create_optimizer(
        FLAGS.learning_rate, max(FLAGS.num_train_steps, 1), FLAGS.num_warmup_steps)
    optimizer.build(model.trainable_variables)
    items = dict(model=model, optimizer=optimizer)
    if FLAGS.refresh_index_every_steps:
      items["block_emb"] = model.index.block_emb  # The refreshed index is model state.
    checkpoint = tf.train.Checkpoint(**items)
  state = training_utils.CheckpointState(checkpoint, model_dir, FLAGS.keep_checkpoint_max)
  resumed = state.restore_latest()
  if resumed and FLAGS.refresh_index_every_steps:
    model.index.assign(model.index.block_emb.numpy())  # Rebuild an approximate searcher.
  if span_arrays is not None:
    if resumed:
      logging.info("--init_span_scorer=%s not used: the span MLP of %s is restored.",
                   FLAGS.init_span_scorer, resumed)
    else:
      span_scorer.assign_weights(model.span_scorer, span_arrays, FLAGS.init_span_scorer)
      logging.info("Span MLP initialized from %s.", FLAGS.init_span_scorer)
  training_utils.write_params(model_dir, dict(
      model=dataclasses.asdict(params), refresh_index_every_steps=FLAGS.refresh_index_every_steps,
      learning_rate=FLAGS.learning_rate, batch_size=FLAGS.batch_size,
      num_train_steps=FLAGS.num_train_steps, train_path=FLAGS.train_path,
      dev_path=FLAGS.dev_path, eval_batch_size=eval_batch_size,
      init_span_scorer=FLAGS.init_span_scorer))

  dev_examples = qa_data.load_examples(FLAGS.dev_path) if FLAGS.dev_path else []
  if FLAGS.num_eval_examples:
    dev_examples = dev_examples[:FLAGS.num_eval_examples]
  step = int(optimizer.iterations.numpy())
  iterator = None
  if step < FLAGS.num_train_steps:
    train_examples = qa_data.load_examples(FLAGS.train_path)
    dataset = qa_data.make_dataset(train_examples, batch_size=FLAGS.batch_size, shuffle=True,
                                   repeat=True, seed=FLAGS.seed + step, pad_answers=True,
                                   drop_remainder=True)
    dataset = dataset.map(lambda b: {"question": b["question"], "answers": b["answers"]})
    iterator = iter(finetune_lib.distribute(strategy, dataset))

  def make_steps():
    return (finetune_lib.make_train_step(model, optimizer, FLAGS.batch_size, strategy),
            finetune_lib.make_predict_step(model, strategy, with_labels=True))

  train_step, eval_step = make_steps()
  train_writer = training_utils.ScalarWriter(model_dir, "train")
  eval_writer = training_utils.ScalarWriter(model_dir, "eval")
  exporter = BestExporter(model_dir)
  progress = training_utils.Progress(FLAGS.num_train_steps, step, FLAGS.batch_size,
                                     FLAGS.log_interval_secs)
  sums = None
  metrics = {}

  def checkpoint_and_evaluate():
    path = state.save(step)
    if not dev_examples:
      return {}
    start = time.monotonic()
    results = finetune_lib.run_predictions(eval_step, strategy, dev_examples,
                                           eval_batch_size)
    metrics = finetune_lib.eval_metrics(dev_examples, results)
    logging.info("eval at step %d (%.1f s): %s", step, time.monotonic() - start,
                 " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
    eval_writer.write(step, metrics)
    append_eval_results(model_dir, step, metrics)
    exporter.maybe_export(path, step, metrics)
    return metrics

  # Checkpoint 0 (evaluated with dev examples): when asked, and without training, where it
  # is the model orqa.predict and export.serving read (e.g. converted weights).
  if step == 0 and (FLAGS.eval_before_training or FLAGS.num_train_steps == 0):
    metrics = checkpoint_and_evaluate()
  while step < FLAGS.num_train_steps:
    if FLAGS.refresh_index_every_steps and step and (
        step % FLAGS.refresh_index_every_steps == 0):
      refresh_index(model, strategy)
      if model.index.searcher_type == searchers.SCANN:
        train_step, eval_step = make_steps()  # The new searcher must be traced in.
    values = training_utils.to_floats(train_step(next(iterator)))
    step += 1
    sums = values if sums is None else {k: sums[k] + values[k] for k in sums}
    last = step == FLAGS.num_train_steps
    if progress.update(step, _mean(values), force=last):
      summary = _mean(sums)
      summary["learning_rate"] = float(optimizer.learning_rate.numpy())
      summary["steps_per_sec"] = progress.steps_per_sec(step)
      train_writer.write(step, summary)
      sums = None
    if last or step % FLAGS.save_checkpoints_steps == 0:
      metrics = checkpoint_and_evaluate()
  return metrics


def _mean(sums):
  n = max(sums["num_questions"], 1.0)
  return {k: v / n for k, v in sums.items() if k != "num_questions"}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not (FLAGS.reader_module_path or FLAGS.reader_preset):
    raise app.UsageError("Pass --reader_module_path and/or --reader_preset.")
  start = time.monotonic()
  tf_keras.utils.set_random_seed(FLAGS.seed)
  train(training_utils.make_strategy(FLAGS.strategy))
  logging.info("Done in %.1f s.", time.monotonic() - start)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
