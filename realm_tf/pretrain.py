r"""REALM pre-training: `python -m realm_tf.pretrain --model_dir=... [flags]`.

The original ran a trainer, gRPC example generators and a refresh job (`train_realm.py`,
`example_generator.py`, `refresh_doc_embeds.py` in `language/realm/`). Here the trainer
generates its examples with a `tf.data` pipeline (in-process, or on tf.data service
workers with `--data_service`), trains under a `tf.distribute` strategy, exports the
embedder and reader every `--export_steps`, and with `--refresh=inline` runs the refresh
job beside it, so one command runs the whole asynchronous loop.

With only `--model_dir`, it pre-trains a tiny model on the embedded sample corpus (the
corpora and an initial index are built under model_dir), with inline refresh.

The flags map onto a typed `realm_tf.training.pretraining.PretrainJob` (the model's
`RealmConfig` plus the data and how to run), which `pretraining.run` carries out.

A cluster run (flags as the original's `language/realm/local_launcher.sh`):

  python -m realm_tf.pretrain --model_dir=gs://bucket/realm --tpu=my-tpu \
    --pretrain_corpus_path='gs://.../pretrain-*' --retrieval_corpus_path='gs://.../blocks-*' \
    --vocab_path=gs://.../vocab.txt --bert_preset=base --init_hf_bert=/path/bert-base \
    --initial_embedder_module=gs://.../ict/embedder --batch_size=512 \
    --num_train_steps=200000 --refresh=external --data_service=grpc://dispatcher:5050
"""

import dataclasses

from absl import app
from absl import flags
from absl import logging

import realm_tf  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow)

from realm_tf import cli
from realm_tf.modeling import architecture
from realm_tf.modeling.config import RealmConfig
from realm_tf.modeling import precision
from realm_tf.retrieval import searchers
from realm_tf import sample_data
from realm_tf.training import pretraining
from realm_tf.training import strategies

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS):
  """Defines the command-line flags (only when run as a program: tests import this
  module beside other entry points, and parse their own `flags.FlagValues`)."""
  fv = dict(flag_values=flag_values)
  flags.DEFINE_string("model_dir", None, "Checkpoints, exports, logs and config.json.", **fv)
  flags.DEFINE_string("pretrain_corpus_path", None, "Pre-training corpus: the builder's "
                      "--output_prefix, its .manifest.json or a glob of its shard names "
                      "(default: the sample corpus, built under model_dir/data).", **fv)
  flags.DEFINE_string("retrieval_corpus_path", None, "Retrieval corpus: the builder's "
                      "--output_prefix, its .manifest.json or a glob of its shard names.", **fv)
  flags.DEFINE_string("vocab_path", None, "BERT vocab (default: the sample vocab).", **fv)
  flags.DEFINE_boolean("do_lower_case", True, "Uncased tokenization.", **fv)
  flags.DEFINE_integer("eval_shards", None, "First sorted pre-training shards used for eval "
                       "(the original: 5; the sample corpus: 1).", **fv)
  flags.DEFINE_integer("num_shards_per_mips_refresh", None, "Training shards per generation "
                       "of examples (the original: 4; sample: 2).", **fv)
  flags.DEFINE_integer("retrieval_batch_size", None, "Queries per retrieval (original 64).", **fv)
  flags.DEFINE_string("initial_embedder_module", None, "Embedder module with "
                      "encoded/encoded.ckpt used before the first refresh (e.g. ICT); "
                      "a realm-tf module also initializes the embedder towers (BERT and "
                      "projection) unless --init_embedder is given; default: the "
                      "initial model's own document tower, indexed at start.", **fv)
  flags.DEFINE_string("eval_qa_path", None, "Open-QA jsonl ({question, answer}) whose "
                      "zero-shot answer recall@1/5/20 against the current index is "
                      "evaluated with the current query tower at every eval (default for "
                      "the sample run: its held-out questions).", **fv)
  flags.DEFINE_integer("ict_steps", None, "Steps of the in-process ICT warm start of the "
                       "retriever on the pre-training passages before REALM (0: none; "
                       "the sample run: the REALM paper's pipeline, ICT then REALM).", **fv)
  flags.DEFINE_integer("ict_batch_size", None, "ICT global batch (in-batch negatives).", **fv)
  flags.DEFINE_float("ict_learning_rate", None, "ICT peak learning rate.", **fv)
  flags.DEFINE_float("dropout_rate", None, "Dropout of both BERTs and of the embedder "
                     "projection (default: the presets' 0.1; the sample run: 0).", **fv)
  flags.DEFINE_string("data_service", None, "tf.data service dispatcher (grpc://host:port) "
                      "to generate examples on; see `python -m realm_tf.data_service`.", **fv)
  # Model and featurization (the flags of the original `train_realm.py`).
  flags.DEFINE_string("bert_preset", None, "Reader encoder size: tiny, mini, minilm, base.", **fv)
  flags.DEFINE_string("embedder_preset", None, "Embedder encoder size (default: as reader).", **fv)
  flags.DEFINE_integer("query_seq_len", None, "Q (original launcher: 96).", **fv)
  flags.DEFINE_integer("candidate_seq_len", None, "C (288).", **fv)
  flags.DEFINE_integer("num_candidates", None, "N including the null document (8).", **fv)
  flags.DEFINE_integer("max_masks", None, "M (10).", **fv)
  flags.DEFINE_boolean("share_embedders", True, "One tower for queries and documents.", **fv)
  flags.DEFINE_boolean("separate_candidate_segments", True, "Title/body segment ids 0/1.", **fv)
  flags.DEFINE_string("init_checkpoint", None, "BERT checkpoint (TF1, TF2 or HF folder) for "
                      "the reader and, unless --init_embedder is set, the embedder.", **fv)
  flags.DEFINE_string("init_hf_bert", None, "Hugging Face BERT folder, as --init_checkpoint.", **fv)
  flags.DEFINE_string("init_embedder", None, "BERT weights for the embedder towers.", **fv)
  flags.DEFINE_enum("reader_init", None, list(pretraining.READER_INITS), "Without "
                    "--init_checkpoint: a random reader, or constructed weights that copy "
                    "masked tokens from the passage (realm_tf.modeling.copy_circuit; "
                    "default: copy_circuit for the sample run, else random).", **fv)
  # Optimization and loop.
  flags.DEFINE_float("learning_rate", None, "Peak learning rate (original 3e-5).", **fv)
  flags.DEFINE_integer("batch_size", None, "Global training batch size (original 16).", **fv)
  flags.DEFINE_integer("eval_batch_size", None, "Global eval batch size.", **fv)
  flags.DEFINE_integer("num_train_steps", None, "Training steps.", **fv)
  flags.DEFINE_integer("save_checkpoints_steps", None, "Checkpoint cadence (original 1000).", **fv)
  flags.DEFINE_integer("keep_checkpoint_max", 5, "Checkpoints kept.", **fv)
  flags.DEFINE_integer("export_steps", None, "Export + eval cadence (default: "
                       "save_checkpoints_steps).", **fv)
  flags.DEFINE_integer("num_eval_steps", None, "Eval batches per evaluation.", **fv)
  flags.DEFINE_integer("log_every_steps", 10, "Progress and TensorBoard cadence.", **fv)
  flags.DEFINE_integer("seed", 0, "Seed of initialization and example generation.", **fv)
  flags.DEFINE_alias("tf_random_seed", "seed", **fv)  # The original's spelling.
  flags.DEFINE_boolean("jit_compile", None, "XLA-compile the train step (default: on with "
                       "a GPU or TPU).", **fv)
  flags.DEFINE_boolean("recompute_activations", False, "Recompute each transformer layer's "
                       "activations in the backward pass (less memory, ~1/3 more compute).", **fv)
  flags.DEFINE_enum("precision", "auto", list(precision.PRECISIONS),
                    "auto: mixed_bfloat16 where the device or CPU has bf16 units.", **fv)
  flags.DEFINE_integer("reader_only_steps", 0, "Train only the reader for this many first "
                       "steps (the query and document towers get zero gradients; 0: the "
                       "original).", **fv)
  flags.DEFINE_boolean("freeze_reader", False, "Leave the reader out of training, so only "
                       "the retriever towers learn (e.g. the sample run's copy-circuit "
                       "reader, which updates can erase).", **fv)
  flags.DEFINE_boolean("freeze_document_tower", False, "Leave the document tower out of "
                       "training (needs --noshare_embedders): the initial index never goes "
                       "stale and only the query tower learns to retrieve.", **fv)
  flags.DEFINE_integer("micro_batches", 1, "Sequential micro-batches per replica batch "
                       "(summed gradients; the memory of one micro-batch).", **fv)
  # Distribution and refresh.
  flags.DEFINE_enum("strategy", "default", list(strategies.STRATEGIES),
                    "tf.distribute strategy.", **fv)
  flags.DEFINE_string("tpu", None, "TPU name or address (implies --strategy=tpu).", **fv)
  flags.DEFINE_enum("refresh", "inline", ["inline", "external"], "Run the refresh job as a "
                    "supervised subprocess, or expect it to run elsewhere.", **fv)
  flags.DEFINE_enum("searcher", searchers.BRUTE_FORCE, list(searchers.SEARCHER_TYPES),
                    "Searcher of example generation (and of the inline refresh job): "
                    "brute_force (exact, in the tf.data graph; needed with --data_service) "
                    "or scann (the refresh job's saved ScaNN searcher).", **fv)

  # The embedded default: a tiny model on the sample corpus in a few minutes on a CPU.
# Defaults: the sample run's, and the original launcher's.
SAMPLE_DEFAULTS = dict(bert_preset="tiny", query_seq_len=48, candidate_seq_len=128,
                       num_candidates=4, max_masks=5, learning_rate=1e-4, batch_size=8,
                       eval_batch_size=8, num_train_steps=300, save_checkpoints_steps=100,
                       export_steps=100, num_eval_steps=8, eval_shards=1,
                       num_shards_per_mips_refresh=2, retrieval_batch_size=16,
                       ict_steps=300, ict_batch_size=32, ict_learning_rate=2e-4,
                       dropout_rate=0.0, reader_init="copy_circuit")
ORIGINAL_DEFAULTS = dict(bert_preset="base", query_seq_len=96, candidate_seq_len=288,
                         num_candidates=8, max_masks=10, learning_rate=3e-5, batch_size=16,
                         eval_batch_size=16, num_train_steps=200000,
                         save_checkpoints_steps=1000, export_steps=None, num_eval_steps=50,
                         eval_shards=5, num_shards_per_mips_refresh=4,
                         retrieval_batch_size=64, ict_steps=0, ict_batch_size=4096,
                         ict_learning_rate=1e-4, dropout_rate=None, reader_init="random")


def _flag(fv, name, defaults):
  value = getattr(fv, name)
  return defaults[name] if value is None else value


def embedder_weights_from_flags(fv, bert_weights: architecture.Setting
                                ) -> architecture.Setting:
  """Where the embedder towers' weights come from: --init_embedder; else a realm-tf
  --initial_embedder_module (e.g. the ICT export), whole towers as the original's
  `embedder_hub_module_handle`; else the reader's BERT weights."""
  if fv.init_embedder:
    return architecture.Setting("--init_embedder", fv.init_embedder)
  module = fv.initial_embedder_module
  if module and architecture.read_module_architecture(module) is not None:
    return architecture.Setting("--initial_embedder_module", module)
  return bert_weights


def _bert_weights_from_flags(fv) -> architecture.Setting:
  setting = architecture.Setting
  return (setting("--init_hf_bert", fv.init_hf_bert) if fv.init_hf_bert else
          setting("--init_checkpoint", fv.init_checkpoint))


def _architecture_from_flags(fv, defaults, vocab_path: str) -> dict:
  """The flags that shape the model, for `architecture.realm_architecture`."""
  setting = architecture.Setting
  bert_preset = setting("--bert_preset", _flag(fv, "bert_preset", defaults),
                        given=fv.bert_preset is not None)
  embedder_preset = (setting("--embedder_preset", fv.embedder_preset)
                     if fv.embedder_preset else
                     dataclasses.replace(bert_preset, given=False))
  bert_weights = _bert_weights_from_flags(fv)
  return dict(vocab=setting("--vocab_path", vocab_path, given=fv.vocab_path is not None),
              do_lower_case=setting("--do_lower_case", fv.do_lower_case),
              bert_preset=bert_preset, embedder_preset=embedder_preset,
              bert_weights=bert_weights,
              embedder_weights=embedder_weights_from_flags(fv, bert_weights),
              initial_embedder_module=setting("--initial_embedder_module",
                                              fv.initial_embedder_module))


def config_from_flags(fv, sample: bool, vocab_path: str) -> RealmConfig:
  """The RealmConfig from flags over the sample or the original defaults. The model's
  architecture is that recorded with its initial weights (--init_checkpoint,
  --init_hf_bert, --init_embedder); a flag that contradicts it is an error."""
  defaults = SAMPLE_DEFAULTS if sample else ORIGINAL_DEFAULTS
  arch = architecture.realm_architecture(**_architecture_from_flags(fv, defaults, vocab_path))
  for note in arch.notes:
    logging.warning("%s", note)
  bert, embedder = arch.bert, arch.embedder
  dropout = _flag(fv, "dropout_rate", defaults)
  if dropout is not None:
    rates = dict(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    bert, embedder = (dataclasses.replace(c, **rates) for c in (bert, embedder))
  extra = {} if dropout is None else dict(embedder_dropout_rate=dropout)
  value = lambda name: _flag(fv, name, defaults)  # pylint: disable=unnecessary-lambda-assignment
  return RealmConfig(**extra,
      bert=bert, embedder=embedder, projection_size=arch.projection_size,
      embedder_layer_norm_epsilon=arch.projection_layer_norm_epsilon,
      share_embedders=fv.share_embedders,
      separate_candidate_segments=fv.separate_candidate_segments,
      query_seq_len=value("query_seq_len"), candidate_seq_len=value("candidate_seq_len"),
      num_candidates=value("num_candidates"), max_masks=value("max_masks"),
      vocab_path=vocab_path, do_lower_case=fv.do_lower_case,
      learning_rate=value("learning_rate"), num_train_steps=value("num_train_steps"),
      batch_size=value("batch_size"), eval_batch_size=value("eval_batch_size"),
      num_eval_steps=value("num_eval_steps"),
      save_checkpoints_steps=value("save_checkpoints_steps"),
      keep_checkpoint_max=fv.keep_checkpoint_max, seed=fv.seed,
      recompute_activations=fv.recompute_activations, precision=fv.precision,
      jit_compile=fv.jit_compile, micro_batches=fv.micro_batches,
      reader_only_steps=fv.reader_only_steps, freeze_reader=bool(fv.freeze_reader),
      freeze_document_tower=bool(fv.freeze_document_tower))


def job_from_flags(fv=None) -> pretraining.PretrainJob:
  """The `PretrainJob` of the flags (default: `FLAGS`): the sample run's defaults when no
  corpus is given, the original launcher's otherwise."""
  fv = FLAGS if fv is None else fv
  sample = fv.pretrain_corpus_path is None and fv.retrieval_corpus_path is None
  if sample:
    vocab_path = fv.vocab_path or sample_data.VOCAB_PATH
  else:
    if not (fv.pretrain_corpus_path and fv.retrieval_corpus_path and fv.vocab_path):
      raise app.UsageError("--pretrain_corpus_path, --retrieval_corpus_path and "
                           "--vocab_path go together (omit all three for the sample run)")
    vocab_path = fv.vocab_path
  defaults = SAMPLE_DEFAULTS if sample else ORIGINAL_DEFAULTS
  bert_weights = _bert_weights_from_flags(fv)
  if bert_weights.value and fv.reader_init:
    raise app.UsageError(f"--reader_init={fv.reader_init} and {bert_weights.name} both "
                         "say how the reader starts; give one.")
  return pretraining.PretrainJob(
      model_dir=fv.model_dir, config=config_from_flags(fv, sample, vocab_path),
      pretrain_corpus_path=fv.pretrain_corpus_path,
      retrieval_corpus_path=fv.retrieval_corpus_path,
      eval_shards=_flag(fv, "eval_shards", defaults),
      num_shards_per_mips_refresh=_flag(fv, "num_shards_per_mips_refresh", defaults),
      retrieval_batch_size=_flag(fv, "retrieval_batch_size", defaults),
      export_steps=_flag(fv, "export_steps", defaults), log_every_steps=fv.log_every_steps,
      eval_qa_path=fv.eval_qa_path, bert_weights=bert_weights.value,
      embedder_weights=embedder_weights_from_flags(fv, bert_weights).value,
      reader_init="random" if bert_weights.value else _flag(fv, "reader_init", defaults),
      initial_embedder_module=fv.initial_embedder_module,
      ict_steps=_flag(fv, "ict_steps", defaults),
      ict_batch_size=_flag(fv, "ict_batch_size", defaults),
      ict_learning_rate=_flag(fv, "ict_learning_rate", defaults), refresh=fv.refresh,
      searcher=fv.searcher, data_service=fv.data_service, strategy=fv.strategy, tpu=fv.tpu)


def main(argv):
  del argv
  pretraining.run(job_from_flags())


if __name__ == "__main__":
  define_flags()
  flags.mark_flag_as_required("model_dir")
  cli.run(main)
