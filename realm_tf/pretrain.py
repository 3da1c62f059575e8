r"""REALM pre-training: `python -m realm_tf.pretrain --model_dir=... [flags]`.

The original ran a trainer, gRPC example generators and a refresh job (`train_realm.py`,
`example_generator.py`, `refresh_doc_embeds.py` in `language/realm/`). Here the trainer
generates its examples with a `tf.data` pipeline (in-process, or on tf.data service
workers with `--data_service`), trains under a `tf.distribute` strategy, exports the
embedder and reader every `--export_steps`, and with `--refresh=inline` runs the refresh
job beside it, so one command runs the whole asynchronous loop.

With only `--model_dir`, it pre-trains a tiny model on the embedded sample corpus (the
corpora and an initial index are built under model_dir), with inline refresh.

A cluster run (flags as the original's `language/realm/local_launcher.sh`):

  python -m realm_tf.pretrain --model_dir=gs://bucket/realm --tpu=my-tpu \
    --pretrain_corpus_path='gs://.../pretrain-*' --retrieval_corpus_path='gs://.../blocks-*' \
    --vocab_path=gs://.../vocab.txt --bert_preset=base --init_hf_bert=/path/bert-base \
    --initial_embedder_module=gs://.../ict/embedder --batch_size=512 \
    --num_train_steps=200000 --refresh=external --data_service=grpc://dispatcher:5050
"""

import dataclasses
import json
import os

from absl import app
from absl import flags
from absl import logging

import realm_tf  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow)
import tensorflow as tf

from realm_tf import cli
from realm_tf.featurization import Featurizer
from realm_tf.generation.stream import ExampleStream, split_shards
from realm_tf.ict import training as ict_training
from realm_tf.modeling import architecture
from realm_tf.modeling.config import RealmConfig
from realm_tf.modeling import precision
from realm_tf.modeling.weights import load_pretrained_realm
from realm_tf.retrieval import answer_recall, block_emb_file, searchers
from realm_tf import sample_data
from realm_tf.tokenization import Tokenizer
from realm_tf.training import corpora, inline_refresh, initial_index, sample_setup, strategies
from realm_tf.training import model_dir as model_dir_lib
from realm_tf.training.trainer import Trainer
from realm_tf.training import warm_start

FLAGS = flags.FLAGS


def define_flags():
  """Defines the command-line flags (only when run as a program: tests import this
  module beside other entry points)."""
  flags.DEFINE_string("model_dir", None, "Checkpoints, exports, logs and config.json.")
  flags.DEFINE_string("pretrain_corpus_path", None, "Pre-training corpus: the builder's "
                      "--output_prefix, its .manifest.json or a glob of its shard names "
                      "(default: the sample corpus, built under model_dir/data).")
  flags.DEFINE_string("retrieval_corpus_path", None, "Retrieval corpus: the builder's "
                      "--output_prefix, its .manifest.json or a glob of its shard names.")
  flags.DEFINE_string("vocab_path", None, "BERT vocab (default: the sample vocab).")
  flags.DEFINE_boolean("do_lower_case", True, "Uncased tokenization.")
  flags.DEFINE_integer("eval_shards", None, "First sorted pre-training shards used for eval "
                       "(the original: 5; the sample corpus: 1).")
  flags.DEFINE_integer("num_shards_per_mips_refresh", None, "Training shards per generation "
                       "of examples (the original: 4; sample: 2).")
  flags.DEFINE_integer("retrieval_batch_size", None, "Queries per retrieval (original 64).")
  flags.DEFINE_string("initial_embedder_module", None, "Embedder module with "
                      "encoded/encoded.ckpt used before the first refresh (e.g. ICT); "
                      "a realm-tf module also initializes the embedder towers (BERT and "
                      "projection) unless --init_embedder is given; default: the "
                      "initial model's own document tower, indexed at start.")
  flags.DEFINE_string("eval_qa_path", None, "Open-QA jsonl ({question, answer}) whose "
                      "zero-shot answer recall@1/5/20 against the current index is "
                      "evaluated with the current query tower at every eval (default for "
                      "the sample run: its held-out questions).")
  flags.DEFINE_integer("ict_steps", None, "Steps of the in-process ICT warm start of the "
                       "retriever on the pre-training passages before REALM (0: none; "
                       "the sample run: the REALM paper's pipeline, ICT then REALM).")
  flags.DEFINE_integer("ict_batch_size", None, "ICT global batch (in-batch negatives).")
  flags.DEFINE_float("ict_learning_rate", None, "ICT peak learning rate.")
  flags.DEFINE_float("dropout_rate", None, "Dropout of both BERTs and of the embedder "
                     "projection (default: the presets' 0.1; the sample run: 0).")
  flags.DEFINE_string("data_service", None, "tf.data service dispatcher (grpc://host:port) "
                      "to generate examples on; see `python -m realm_tf.data_service`.")
  # Model and featurization (the flags of the original `train_realm.py`).
  flags.DEFINE_string("bert_preset", None, "Reader encoder size: tiny, mini, minilm, base.")
  flags.DEFINE_string("embedder_preset", None, "Embedder encoder size (default: as reader).")
  flags.DEFINE_integer("query_seq_len", None, "Q (original launcher: 96).")
  flags.DEFINE_integer("candidate_seq_len", None, "C (288).")
  flags.DEFINE_integer("num_candidates", None, "N including the null document (8).")
  flags.DEFINE_integer("max_masks", None, "M (10).")
  flags.DEFINE_boolean("share_embedders", True, "One tower for queries and documents.")
  flags.DEFINE_boolean("separate_candidate_segments", True, "Title/body segment ids 0/1.")
  flags.DEFINE_string("init_checkpoint", None, "BERT checkpoint (TF1, TF2 or HF folder) for "
                      "the reader and, unless --init_embedder is set, the embedder.")
  flags.DEFINE_string("init_hf_bert", None, "Hugging Face BERT folder, as --init_checkpoint.")
  flags.DEFINE_string("init_embedder", None, "BERT weights for the embedder towers.")
  # Optimization and loop.
  flags.DEFINE_float("learning_rate", None, "Peak learning rate (original 3e-5).")
  flags.DEFINE_integer("batch_size", None, "Global training batch size (original 16).")
  flags.DEFINE_integer("eval_batch_size", None, "Global eval batch size.")
  flags.DEFINE_integer("num_train_steps", None, "Training steps.")
  flags.DEFINE_integer("save_checkpoints_steps", None, "Checkpoint cadence (original 1000).")
  flags.DEFINE_integer("keep_checkpoint_max", 5, "Checkpoints kept.")
  flags.DEFINE_integer("export_steps", None, "Export + eval cadence (default: "
                       "save_checkpoints_steps).")
  flags.DEFINE_integer("num_eval_steps", None, "Eval batches per evaluation.")
  flags.DEFINE_integer("log_every_steps", 10, "Progress and TensorBoard cadence.")
  flags.DEFINE_integer("seed", 0, "Seed of initialization and example generation.")
  flags.DEFINE_alias("tf_random_seed", "seed")  # The original's spelling.
  flags.DEFINE_boolean("jit_compile", None, "XLA-compile the train step (default: on with "
                       "a GPU or TPU).")
  flags.DEFINE_boolean("recompute_activations", False, "Recompute each transformer layer's "
                       "activations in the backward pass (less memory, ~1/3 more compute).")
  flags.DEFINE_enum("precision", "auto", list(precision.PRECISIONS),
                    "auto: mixed_bfloat16 where the device or CPU has bf16 units.")
  flags.DEFINE_integer("micro_batches", 1, "Sequential micro-batches per replica batch "
                       "(summed gradients; the memory of one micro-batch).")
  # Distribution and refresh.
  flags.DEFINE_enum("strategy", "default", list(strategies.STRATEGIES),
                    "tf.distribute strategy.")
  flags.DEFINE_string("tpu", None, "TPU name or address (implies --strategy=tpu).")
  flags.DEFINE_enum("refresh", "inline", ["inline", "external"], "Run the refresh job as a "
                    "supervised subprocess, or expect it to run elsewhere.")
  flags.DEFINE_enum("searcher", searchers.BRUTE_FORCE, list(searchers.SEARCHER_TYPES),
                    "Searcher of example generation (and of the inline refresh job): "
                    "brute_force (exact, in the tf.data graph; needed with --data_service) "
                    "or scann (the refresh job's saved ScaNN searcher).")

  # The embedded default: a tiny model on the sample corpus in a few minutes on a CPU.
# Defaults: the sample run's, and the original launcher's.
SAMPLE_DEFAULTS = dict(bert_preset="tiny", query_seq_len=48, candidate_seq_len=128,
                       num_candidates=4, max_masks=5, learning_rate=1e-3, batch_size=8,
                       eval_batch_size=8, num_train_steps=300, save_checkpoints_steps=100,
                       export_steps=100, num_eval_steps=8, eval_shards=1,
                       num_shards_per_mips_refresh=2, retrieval_batch_size=16,
                       ict_steps=300, ict_batch_size=32, ict_learning_rate=5e-4,
                       dropout_rate=0.0)
ORIGINAL_DEFAULTS = dict(bert_preset="base", query_seq_len=96, candidate_seq_len=288,
                         num_candidates=8, max_masks=10, learning_rate=3e-5, batch_size=16,
                         eval_batch_size=16, num_train_steps=200000,
                         save_checkpoints_steps=1000, export_steps=None, num_eval_steps=50,
                         eval_shards=5, num_shards_per_mips_refresh=4,
                         retrieval_batch_size=64, ict_steps=0, ict_batch_size=4096,
                         ict_learning_rate=1e-4, dropout_rate=None)


def _flag(name, defaults):
  value = getattr(FLAGS, name)
  return defaults[name] if value is None else value


def embedder_weights_setting(bert_weights: architecture.Setting) -> architecture.Setting:
  """Where the embedder towers' weights come from: --init_embedder; else a realm-tf
  --initial_embedder_module (e.g. the ICT export), whole towers as the original's
  `embedder_hub_module_handle`; else the reader's BERT weights."""
  if FLAGS.init_embedder:
    return architecture.Setting("--init_embedder", FLAGS.init_embedder)
  module = FLAGS.initial_embedder_module
  if module and architecture.read_module_architecture(module) is not None:
    return architecture.Setting("--initial_embedder_module", module)
  return bert_weights


def _architecture_settings(defaults, vocab_path: str) -> dict:
  """The flags that shape the model, for `architecture.realm_architecture`."""
  setting = architecture.Setting
  bert_preset = setting("--bert_preset", _flag("bert_preset", defaults),
                        given=FLAGS.bert_preset is not None)
  embedder_preset = (setting("--embedder_preset", FLAGS.embedder_preset)
                     if FLAGS.embedder_preset else
                     dataclasses.replace(bert_preset, given=False))
  bert_weights = (setting("--init_hf_bert", FLAGS.init_hf_bert) if FLAGS.init_hf_bert else
                  setting("--init_checkpoint", FLAGS.init_checkpoint))
  embedder_weights = embedder_weights_setting(bert_weights)
  return dict(vocab=setting("--vocab_path", vocab_path, given=FLAGS.vocab_path is not None),
              do_lower_case=setting("--do_lower_case", FLAGS.do_lower_case),
              bert_preset=bert_preset, embedder_preset=embedder_preset,
              bert_weights=bert_weights, embedder_weights=embedder_weights,
              initial_embedder_module=setting("--initial_embedder_module",
                                              FLAGS.initial_embedder_module))


def build_config(sample: bool, vocab_path: str) -> RealmConfig:
  """The RealmConfig from flags over the sample or the original defaults. The model's
  architecture is that recorded with its initial weights (--init_checkpoint,
  --init_hf_bert, --init_embedder); a flag that contradicts it is an error."""
  defaults = SAMPLE_DEFAULTS if sample else ORIGINAL_DEFAULTS
  arch = architecture.realm_architecture(**_architecture_settings(defaults, vocab_path))
  for note in arch.notes:
    logging.warning("%s", note)
  bert, embedder = arch.bert, arch.embedder
  dropout = _flag("dropout_rate", defaults)
  if dropout is not None:
    rates = dict(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    bert, embedder = (dataclasses.replace(c, **rates) for c in (bert, embedder))
  extra = {} if dropout is None else dict(embedder_dropout_rate=dropout)
  return RealmConfig(**extra,
      bert=bert, embedder=embedder, projection_size=arch.projection_size,
      embedder_layer_norm_epsilon=arch.projection_layer_norm_epsilon,
      share_embedders=FLAGS.share_embedders,
      separate_candidate_segments=FLAGS.separate_candidate_segments,
      query_seq_len=_flag("query_seq_len", defaults),
      candidate_seq_len=_flag("candidate_seq_len", defaults),
      num_candidates=_flag("num_candidates", defaults), max_masks=_flag("max_masks", defaults),
      vocab_path=vocab_path, do_lower_case=FLAGS.do_lower_case,
      learning_rate=_flag("learning_rate", defaults),
      num_train_steps=_flag("num_train_steps", defaults),
      batch_size=_flag("batch_size", defaults),
      eval_batch_size=_flag("eval_batch_size", defaults),
      num_eval_steps=_flag("num_eval_steps", defaults),
      save_checkpoints_steps=_flag("save_checkpoints_steps", defaults),
      keep_checkpoint_max=FLAGS.keep_checkpoint_max, seed=FLAGS.seed,
      recompute_activations=FLAGS.recompute_activations, precision=FLAGS.precision,
      jit_compile=FLAGS.jit_compile, micro_batches=FLAGS.micro_batches)


def main(argv):
  del argv
  model_dir = FLAGS.model_dir
  os.makedirs(model_dir, exist_ok=True)
  sample = FLAGS.pretrain_corpus_path is None and FLAGS.retrieval_corpus_path is None
  if sample:
    pretrain_glob, retrieval_glob = sample_setup.prepare_sample_corpora(model_dir)
    vocab_path = FLAGS.vocab_path or sample_data.VOCAB_PATH
  else:
    if not (FLAGS.pretrain_corpus_path and FLAGS.retrieval_corpus_path and FLAGS.vocab_path):
      raise app.UsageError("--pretrain_corpus_path, --retrieval_corpus_path and "
                           "--vocab_path go together (omit all three for the sample run)")
    pretrain_glob, retrieval_glob = FLAGS.pretrain_corpus_path, FLAGS.retrieval_corpus_path
    vocab_path = FLAGS.vocab_path
  defaults = SAMPLE_DEFAULTS if sample else ORIGINAL_DEFAULTS
  tf.random.set_seed(FLAGS.seed)
  config = build_config(sample, vocab_path)
  model_dir_lib.prepare(model_dir, config)  # One trainer, the same model, no leftovers.
  # Both corpora checked before anything is written: the vocabulary, every shard whole.
  pretrain_paths, retrieval = corpora.open_corpora(pretrain_glob, retrieval_glob, vocab_path)
  config.save(model_dir)  # config.json: the refresh job rebuilds its featurizer from it

  strategy = strategies.make_strategy(FLAGS.strategy, FLAGS.tpu)
  tokenizer = Tokenizer(vocab_path, do_lower_case=FLAGS.do_lower_case)
  featurizer = Featurizer(config.query_seq_len, config.candidate_seq_len,
                          config.num_candidates, config.max_masks, tokenizer,
                          config.separate_candidate_segments)
  eval_paths, train_paths = split_shards(pretrain_paths, _flag("eval_shards", defaults))
  retrieval_paths = retrieval.shard_paths
  common = dict(model_dir=model_dir, retrieval_paths=retrieval_paths, featurizer=featurizer,
                retrieval_batch_size=_flag("retrieval_batch_size", defaults),
                data_service=FLAGS.data_service, seed=FLAGS.seed,
                searcher=FLAGS.searcher, corpus_fingerprint=retrieval.fingerprint)
  train_stream = ExampleStream(
      pretrain_paths=train_paths, batch_size=config.batch_size, training=True,
      shards_per_pass=_flag("num_shards_per_mips_refresh", defaults), **common)
  eval_stream = ExampleStream(pretrain_paths=eval_paths, batch_size=config.eval_batch_size,
                              training=False, **common)
  zero_shot = None
  eval_qa_path = FLAGS.eval_qa_path or (sample_data.QA_HELDOUT_PATH if sample else None)
  if eval_qa_path:
    questions, answers = answer_recall.load_qa_pairs(eval_qa_path)
    zero_shot = answer_recall.ZeroShotRecall(
        questions, answers, answer_recall.load_block_texts(retrieval_paths),
        lambda texts: featurizer.featurize_query_tf(tokenizer.tokenize_ids(texts)))
  refresh = None
  if FLAGS.refresh == "inline":
    refresh = inline_refresh.InlineRefresh(model_dir, retrieval_glob, FLAGS.searcher)
  export_steps = _flag("export_steps", defaults) or config.save_checkpoints_steps
  trainer = Trainer(config, model_dir, strategy, tokenizer, train_stream, eval_stream,
                    export_steps=export_steps, num_eval_steps=config.num_eval_steps or 0,
                    log_every_steps=FLAGS.log_every_steps,
                    jit_compile=precision.resolve_jit_compile(config.jit_compile),
                    on_log=refresh.check if refresh else None, zero_shot=zero_shot)
  if not trainer.restore():
    bert_init = FLAGS.init_hf_bert or FLAGS.init_checkpoint
    reports = load_pretrained_realm(
        trainer.model, bert_path=bert_init,
        embedder_path=embedder_weights_setting(architecture.Setting("", bert_init)).value)
    for name, report in reports.items():
      logging.info("Initialized %s: %s", name, report)
    ict_steps = _flag("ict_steps", defaults)
    if ict_steps:
      ict_config = ict_training.IctConfig(
          query_seq_len=config.query_seq_len, block_seq_len=config.candidate_seq_len,
          learning_rate=_flag("ict_learning_rate", defaults), num_train_steps=ict_steps,
          num_warmup_steps=max(1, ict_steps // 6), batch_size=_flag("ict_batch_size", defaults),
          eval_batch_size=_flag("ict_batch_size", defaults), num_eval_steps=2,
          eval_every_steps=max(1, ict_steps // 3), log_every_steps=max(1, ict_steps // 6),
          seed=FLAGS.seed)
      warm_start.ict_warm_start(trainer.model, tokenizer, featurizer, ict_config, model_dir,
                                train_paths, eval_paths, retrieval_paths, strategy,
                                zero_shot)
  if FLAGS.initial_embedder_module:  # Given, not ours to re-embed: refused if stale.
    retrieval.check_index(os.path.dirname(block_emb_file.checkpoint_prefix(
        FLAGS.initial_embedder_module)))
  initial = FLAGS.initial_embedder_module or initial_index.build_initial_embedder_module(
      trainer.model, tokenizer, featurizer, retrieval_paths,
      os.path.join(model_dir, "initial_embedder"), corpus_info=retrieval.describe())
  train_stream.initial_embedder = eval_stream.initial_embedder = initial

  done_path = os.path.join(model_dir, "TRAINING_DONE")
  if os.path.exists(done_path):
    os.remove(done_path)  # a resumed or extended run is not done
  if refresh:
    refresh.start()
  try:
    trainer.train()
  except BaseException as e:
    if refresh:
      refresh.terminate()
    if isinstance(e, (tf.errors.DataLossError, tf.errors.InvalidArgumentError,
                      UnicodeDecodeError)):
      bad = corpora.name_read_error(pretrain_paths, retrieval_paths)  # Shard and record.
      if bad is not None:
        raise bad from e
    raise
  with open(done_path + ".tmp", "w", encoding="utf-8") as f:
    f.write("done\n")
  os.replace(done_path + ".tmp", done_path)  # the refresh job exits when it sees this
  if refresh:
    refresh.finish()
  counts = train_stream.counts()
  print(f"Training done at step {trainer.step}; example generation counters: "
        f"{json.dumps(counts)}; model_dir: {model_dir}", flush=True)


if __name__ == "__main__":
  define_flags()
  flags.mark_flag_as_required("model_dir")
  cli.run(main)
