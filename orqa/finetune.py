r"""ORQA fine-tuning for open-domain QA: `python -m orqa.finetune`.

It replaces the original `language/orqa/experiments/orqa_experiment.py`. This module only
maps the flags onto a `FinetuneConfig` (one field per flag) and calls
`orqa.experiments.finetune_training.train(config, model_dir)`, which a notebook can call too (model:
`orqa.models.orqa_model`; directory layout: docs/ARCHITECTURE.md).

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
with a copy of the checkpoint, and `best_metric.json`: the value, its step, every metric)
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

import time
from typing import Optional

import orqa  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow loads)
from absl import app
from absl import flags
from absl import logging
import tf_keras

from orqa.experiments import finetune_training
from orqa.models import builder
from realm_tf import cli
from realm_tf.modeling import precision
from realm_tf.retrieval import searchers
from realm_tf.training import strategies

FLAGS = flags.FLAGS


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
  flags.DEFINE_integer("log_every_steps", 100,
                       "Steps between progress lines and training summaries.", **fv)
  flags.DEFINE_integer("seed", 0, "Seed of the initialization and the data.", **fv)
  flags.DEFINE_enum("strategy", "default", list(strategies.STRATEGIES),
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


def config_from_flags(flag_values: Optional[flags.FlagValues] = None
                      ) -> finetune_training.FinetuneConfig:
  """The `FinetuneConfig` of the flags (one field per flag; default: `FLAGS`)."""
  fv = FLAGS if flag_values is None else flag_values
  model = builder.ModelParams(
      retriever_module_path=fv.retriever_module_path,
      block_records_path=fv.block_records_path,
      reader_module_path=fv.reader_module_path, reader_preset=fv.reader_preset,
      reader_vocab_path=fv.reader_vocab_path, reader_do_lower_case=fv.reader_do_lower_case,
      reader_dropout_rate=fv.reader_dropout_rate, searcher=fv.searcher,
      precision=fv.precision,
      model=dict(retrieval_beam_size=fv.retrieval_beam_size,
                 reader_beam_size=fv.reader_beam_size, reader_seq_len=fv.reader_seq_len,
                 query_seq_len=fv.query_seq_len, span_hidden_size=fv.span_hidden_size,
                 max_span_width=fv.max_span_width, include_titles=fv.include_titles,
                 recompute_activations=fv.recompute_activations,
                 jit_compile=fv.jit_compile))
  return finetune_training.FinetuneConfig(
      model=model, train_path=fv.train_path, dev_path=fv.dev_path,
      num_eval_examples=fv.num_eval_examples, learning_rate=fv.learning_rate,
      batch_size=fv.batch_size, eval_batch_size=fv.eval_batch_size,
      num_train_steps=fv.num_train_steps, num_warmup_steps=fv.num_warmup_steps,
      save_checkpoints_steps=fv.save_checkpoints_steps,
      keep_checkpoint_max=fv.keep_checkpoint_max,
      eval_before_training=fv.eval_before_training,
      refresh_index_every_steps=fv.refresh_index_every_steps,
      block_seq_len=fv.block_seq_len, refresh_batch_size=fv.refresh_batch_size,
      log_every_steps=fv.log_every_steps, seed=fv.seed,
      init_span_scorer=fv.init_span_scorer)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = config_from_flags()
  start = time.monotonic()
  tf_keras.utils.set_random_seed(FLAGS.seed)
  finetune_training.train(config, FLAGS.model_dir,
                          strategies.make_strategy(FLAGS.strategy))
  logging.info("Done in %.1f s.", time.monotonic() - start)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
