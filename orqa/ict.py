r"""ICT warm start of the retriever (language/orqa/experiments/ict_experiment.py):
`python -m orqa.ict`.

  python -m orqa.ict --model_dir=ict_dir --examples_path='ict_examples.tfr.gz' \
      [--init_hf_bert=all-MiniLM-L6-v2 | --init_checkpoint=... --bert_preset=base |
       --bert_preset=tiny --vocab_path=vocab.txt] \
      --batch_size=4096 --num_train_steps=100000 \
      [--encode --retrieval_corpus_path='blocks.tfr-*-of-*' --searcher=scann]

The flags map onto `orqa.experiments.ict_job.IctJob`, which `ict_job.run` carries out.
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

import time
from typing import Optional

import orqa  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow loads)
from absl import app
from absl import flags
from absl import logging
import tf_keras

from orqa.experiments import ict_job
from orqa.models import towers
from realm_tf import cli
from realm_tf.ict import training as ict_training
from realm_tf.retrieval import searchers
from realm_tf.training import strategies

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS):
  """The original's flags plus initialization, held-out eval, export and encoding flags.

  Args:
    flag_values: where to define them (tests parse their own `flags.FlagValues`).
  """
  fv = dict(flag_values=flag_values)
  flags.DEFINE_string("model_dir", None, "Checkpoints, logs and exports go here.", **fv)
  flags.DEFINE_string("examples_path", None,
                      "Glob of ICT block examples (orqa.build_ict_examples).", **fv)
  flags.DEFINE_string("eval_examples_path", None,
                      "Glob of held-out eval block examples (default: every "
                      "--eval_holdout_every-th block of --examples_path, not trained on).", **fv)
  flags.DEFINE_integer("eval_holdout_every", 10,
                       "Without --eval_examples_path, hold out every k-th block for eval.", **fv)
  flags.DEFINE_integer("log_every_steps", 100, "Progress line and summary period.", **fv)
  flags.DEFINE_string("init_hf_bert", None, "Initial BERT: a Hugging Face BERT folder.", **fv)
  flags.DEFINE_string("init_checkpoint", None,
                      "Initial BERT: a TF1 BERT or TF2 checkpoint (with --bert_preset).", **fv)
  flags.DEFINE_string("bert_preset", "base",
                      "Encoder size for --init_checkpoint or random init: tiny, mini, "
                      "minilm, base.", **fv)
  flags.DEFINE_string("vocab_path", None,
                      "vocab.txt (default: the --init_hf_bert folder's).", **fv)
  flags.DEFINE_boolean("do_lower_case", True, "Uncased tokenization.", **fv)
  flags.DEFINE_integer("query_seq_len", 64, "Q.", **fv)
  flags.DEFINE_integer("block_seq_len", 288, "Block length.", **fv)
  flags.DEFINE_integer("projection_size", 128, "D.", **fv)
  flags.DEFINE_float("projection_dropout_rate", 0.1,
                     "Dropout on the projected embedding in training (the original: 0.1).", **fv)
  flags.DEFINE_float("bert_dropout_rate", None,
                     "Override of the BERT's hidden/attention dropout (default: its "
                     "config's).", **fv)
  flags.DEFINE_float("mask_rate", 0.9, "Probability of removing the query from its block.", **fv)
  flags.DEFINE_float("learning_rate", 1e-4, "Peak learning rate.", **fv)
  flags.DEFINE_integer("batch_size", 4096, "Global batch size (in-batch negatives).", **fv)
  flags.DEFINE_integer("eval_batch_size", 32, "Global eval batch size.", **fv)
  flags.DEFINE_integer("num_train_steps", 100000, "Training steps.", **fv)
  flags.DEFINE_integer("num_warmup_steps", None,
                       "Default: min(10000, max(100, num_train_steps // 10)).", **fv)
  flags.DEFINE_integer("num_eval_steps", 10, "Eval batches per evaluation.", **fv)
  flags.DEFINE_integer("save_checkpoints_steps", 1000, "Checkpoint (and eval) period.", **fv)
  flags.DEFINE_integer("keep_checkpoint_max", 5, "Checkpoints kept.", **fv)
  flags.DEFINE_integer("seed", 0, "Seed of the initialization and the data.", **fv)
  flags.DEFINE_enum("strategy", "default", list(strategies.STRATEGIES),
                    "tf.distribute strategy.", **fv)
  flags.DEFINE_integer("exports_to_keep", 1, "tf_hub exports kept (the original: 1).", **fv)
  flags.DEFINE_boolean("encode", False,
                       "After training, embed --retrieval_corpus_path with the export and "
                       "commit export/encoded/<ts>/ (block_emb + searcher).", **fv)
  flags.DEFINE_string("retrieval_corpus_path", None,
                      "Retrieval corpus to encode: the builder's --output_prefix, its "
                      ".manifest.json or a glob of its shard names.", **fv)
  flags.DEFINE_alias("retrieval_corpus", "retrieval_corpus_path", **fv)
  flags.DEFINE_enum("searcher", searchers.SCANN, list(searchers.SEARCHER_TYPES),
                    "Searcher saved with the encoded index.", **fv)
  flags.DEFINE_integer("encode_batch_size", 256, "Batch size for embedding the corpus.", **fv)
  flags.DEFINE_integer("searcher_num_neighbors", 5000,
                       "Default k of the saved searcher (ORQA's beam; capped at K).", **fv)
  flags.mark_flags_as_required(["model_dir", "examples_path"], **fv)


def job_from_flags(flag_values: Optional[flags.FlagValues] = None) -> ict_job.IctJob:
  """The `IctJob` of the flags (default: `FLAGS`)."""
  fv = FLAGS if flag_values is None else flag_values
  if fv.init_hf_bert and fv.init_checkpoint:
    raise app.UsageError("Pass at most one of --init_hf_bert and --init_checkpoint.")
  if fv.encode and not fv.retrieval_corpus_path:
    raise app.UsageError("--encode needs --retrieval_corpus_path.")
  bert = towers.BertSource(
      path=fv.init_hf_bert or fv.init_checkpoint, preset=fv.bert_preset,
      vocab_path=fv.vocab_path, do_lower_case=fv.do_lower_case,
      dropout_rate=fv.bert_dropout_rate,
      path_flag="--init_hf_bert" if fv.init_hf_bert else "--init_checkpoint",
      preset_flag="--bert_preset", preset_given=bool(fv["bert_preset"].present))
  ict = ict_training.IctConfig(
      query_seq_len=fv.query_seq_len, block_seq_len=fv.block_seq_len,
      mask_rate=fv.mask_rate, learning_rate=fv.learning_rate,
      num_train_steps=fv.num_train_steps, num_warmup_steps=fv.num_warmup_steps,
      batch_size=fv.batch_size, eval_batch_size=fv.eval_batch_size,
      num_eval_steps=fv.num_eval_steps, eval_every_steps=fv.save_checkpoints_steps,
      log_every_steps=fv.log_every_steps, keep_checkpoint_max=fv.keep_checkpoint_max,
      seed=fv.seed)
  return ict_job.IctJob(
      model_dir=fv.model_dir, examples_path=fv.examples_path, ict=ict, bert=bert,
      eval_examples_path=fv.eval_examples_path, eval_holdout_every=fv.eval_holdout_every,
      projection_size=fv.projection_size,
      projection_dropout_rate=fv.projection_dropout_rate,
      exports_to_keep=fv.exports_to_keep,
      retrieval_corpus_path=fv.retrieval_corpus_path if fv.encode else None,
      searcher=fv.searcher, searcher_num_neighbors=fv.searcher_num_neighbors,
      encode_batch_size=fv.encode_batch_size)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  job = job_from_flags()
  start = time.monotonic()
  tf_keras.utils.set_random_seed(FLAGS.seed)
  ict_job.run(job, strategies.make_strategy(FLAGS.strategy))
  logging.info("Done in %.1f s.", time.monotonic() - start)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
