"""The REALM pre-training job as a library: `PretrainJob` and `run(job)`.

`python -m realm_tf.pretrain` maps its flags onto a `PretrainJob` (the model's
`RealmConfig` plus where the data is and how the job runs) and calls `run`; a notebook can
do the same. `run` takes the model_dir's trainer lock, checks both corpora before writing
anything, builds the example streams, optionally warm-starts the retriever with ICT and
builds the initial index, starts the inline refresh job, and trains on Orbit
(`realm_tf.training.trainer`) to `config.num_train_steps`, writing `TRAINING_DONE` at the
end. A killed run resumes from its newest checkpoint.
"""

import dataclasses
import json
import os
from typing import Optional

from absl import logging
import tensorflow as tf

from realm_tf.featurization import Featurizer
from realm_tf.generation.stream import ExampleStream, split_shards
from realm_tf.ict import training as ict_training
from realm_tf.modeling.config import RealmConfig
from realm_tf.modeling import copy_circuit
from realm_tf.modeling import precision
from realm_tf.modeling.weights import load_pretrained_realm
from realm_tf.retrieval import answer_recall
from realm_tf.retrieval import block_emb_file
from realm_tf.retrieval import searchers
from realm_tf import sample_data
from realm_tf.training import corpora
from realm_tf.training import initial_index
from realm_tf.training import inline_refresh
from realm_tf.training import model_dir as model_dir_lib
from realm_tf.training import sample_setup
from realm_tf.training import strategies
from realm_tf.training.trainer import Trainer
from realm_tf.training import warm_start

TRAINING_DONE = "TRAINING_DONE"


READER_INITS = ("random", "copy_circuit")


@dataclasses.dataclass
class PretrainJob:
  """One pre-training run.

  Attributes:
    model_dir: checkpoints, exports, logs and `config.json` go here.
    config: the model and optimization (`RealmConfig`; saved as `config.json`).
    pretrain_corpus_path, retrieval_corpus_path: the corpora (builder prefixes,
      manifests or shard globs); both None: the embedded sample corpora, built under
      `model_dir/data`.
    eval_shards: the first sorted pre-training shards, used for evaluation only.
    num_shards_per_mips_refresh: training shards per pass of example generation.
    retrieval_batch_size: queries per retrieval call.
    export_steps: export, evaluation and best-export cadence.
    log_every_steps: progress and TensorBoard cadence.
    eval_qa_path: QA jsonl whose zero-shot answer recall is evaluated (None: none).
    bert_weights, embedder_weights: initial weights of the reader BERT and the embedder
      towers (None: random, or the embedder from `bert_weights`).
    reader_init: how a reader without `bert_weights` starts: "random" (BERT's
      initializer) or "copy_circuit" (`realm_tf.modeling.copy_circuit`, constructed
      weights that copy masked tokens from the passage).
    initial_embedder_module: the index used before the first refresh (None: the initial
      document tower's own, built at start).
    ict_steps, ict_batch_size, ict_learning_rate: the in-process ICT warm start of a
      fresh model (0 steps: none).
    refresh: "inline" (the refresh job as a supervised subprocess) or "external".
    searcher: the searcher of example generation and of the inline refresh job.
    data_service: a tf.data service dispatcher to generate examples on (None: in-process).
    strategy, tpu: the `tf.distribute` strategy (`realm_tf.training.strategies`).
  """
  model_dir: str
  config: RealmConfig
  pretrain_corpus_path: Optional[str] = None
  retrieval_corpus_path: Optional[str] = None
  eval_shards: int = 5
  num_shards_per_mips_refresh: int = 4
  retrieval_batch_size: int = 64
  export_steps: Optional[int] = None
  log_every_steps: int = 10
  eval_qa_path: Optional[str] = None
  bert_weights: Optional[str] = None
  embedder_weights: Optional[str] = None
  reader_init: str = "random"
  initial_embedder_module: Optional[str] = None
  ict_steps: int = 0
  ict_batch_size: int = 4096
  ict_learning_rate: float = 1e-4
  refresh: str = "inline"
  searcher: str = searchers.BRUTE_FORCE
  data_service: Optional[str] = None
  strategy: str = "default"
  tpu: Optional[str] = None

  def __post_init__(self):
    if self.reader_init not in READER_INITS:
      raise ValueError(f"reader_init={self.reader_init!r}: one of {READER_INITS}.")
    if self.reader_init != "random" and self.bert_weights:
      raise ValueError(f"reader_init={self.reader_init!r} and bert_weights="
                       f"{self.bert_weights!r} both give the reader's weights.")

  @property
  def sample(self) -> bool:
    """Whether the job runs on the embedded sample corpora."""
    return self.pretrain_corpus_path is None and self.retrieval_corpus_path is None


def _ict_config(job: PretrainJob) -> ict_training.IctConfig:
  """The warm start's `IctConfig`: the REALM input lengths, a short schedule."""
  steps = job.ict_steps
  return ict_training.IctConfig(
      query_seq_len=job.config.query_seq_len, block_seq_len=job.config.candidate_seq_len,
      learning_rate=job.ict_learning_rate, num_train_steps=steps,
      num_warmup_steps=max(1, steps // 6), batch_size=job.ict_batch_size,
      eval_batch_size=job.ict_batch_size, num_eval_steps=2,
      eval_every_steps=max(1, steps // 3), log_every_steps=max(1, steps // 6),
      seed=job.config.seed)


def run(job: PretrainJob) -> Trainer:
  """Pre-trains per `job` (resuming from `model_dir`); returns the finished `Trainer`.

  Raises:
    errors.RealmInputError subclasses: a bad corpus, vocabulary or index, naming the file.
    RuntimeError: the model_dir is used by another trainer.
  """
  config, model_dir = job.config, job.model_dir
  os.makedirs(model_dir, exist_ok=True)
  if job.sample:
    pretrain_glob, retrieval_glob = sample_setup.prepare_sample_corpora(model_dir)
  else:
    pretrain_glob, retrieval_glob = job.pretrain_corpus_path, job.retrieval_corpus_path
  tf.random.set_seed(config.seed)
  model_dir_lib.prepare(model_dir, config)  # One trainer, the same model, no leftovers.
  # Both corpora checked before anything is written: the vocabulary, every shard whole.
  pretrain_paths, retrieval = corpora.open_corpora(pretrain_glob, retrieval_glob,
                                                   config.vocab_path)
  config.save(model_dir)  # config.json: the refresh job rebuilds its featurizer from it

  strategy = strategies.make_strategy(job.strategy, job.tpu)
  featurizer = Featurizer.from_config(config)
  tokenizer = featurizer.tokenizer
  eval_paths, train_paths = split_shards(pretrain_paths, job.eval_shards)
  retrieval_paths = retrieval.shard_paths
  common = dict(model_dir=model_dir, retrieval_paths=retrieval_paths, featurizer=featurizer,
                retrieval_batch_size=job.retrieval_batch_size,
                data_service=job.data_service, seed=config.seed, searcher=job.searcher,
                corpus_fingerprint=retrieval.fingerprint)
  train_stream = ExampleStream(pretrain_paths=train_paths, batch_size=config.batch_size,
                               training=True,
                               shards_per_pass=job.num_shards_per_mips_refresh, **common)
  eval_stream = ExampleStream(pretrain_paths=eval_paths, batch_size=config.eval_batch_size,
                              training=False, **common)
  zero_shot = None
  eval_qa_path = job.eval_qa_path or (sample_data.QA_HELDOUT_PATH if job.sample else None)
  if eval_qa_path:
    questions, answers = answer_recall.load_qa_pairs(eval_qa_path)
    zero_shot = answer_recall.ZeroShotRecall(
        questions, answers, answer_recall.load_block_texts(retrieval_paths),
        lambda texts: featurizer.featurize_query_tf(tokenizer.tokenize_ids(texts)))
  refresh = None
  if job.refresh == "inline":
    refresh = inline_refresh.InlineRefresh(model_dir, retrieval_glob, job.searcher)
  trainer = Trainer(config, model_dir, strategy, tokenizer, train_stream, eval_stream,
                    export_steps=job.export_steps or config.save_checkpoints_steps,
                    num_eval_steps=config.num_eval_steps or 0,
                    log_every_steps=job.log_every_steps,
                    jit_compile=precision.resolve_jit_compile(config.jit_compile),
                    on_log=refresh.check if refresh else None, zero_shot=zero_shot)
  if not trainer.restore():
    reports = load_pretrained_realm(trainer.model, bert_path=job.bert_weights,
                                    embedder_path=job.embedder_weights)
    if job.reader_init == "copy_circuit":
      reports["bert"] = copy_circuit.initialize_reader(trainer.model.reader,
                                                       tokenizer.mask_id, config.seed)
    for name, report in reports.items():
      logging.info("Initialized %s: %s", name, report)
    if job.ict_steps:
      warm_start.ict_warm_start(trainer.model, tokenizer, featurizer, _ict_config(job),
                                model_dir, train_paths, eval_paths, retrieval_paths,
                                strategy, zero_shot)
  if job.initial_embedder_module:  # Given, not ours to re-embed: refused if stale.
    retrieval.check_index(os.path.dirname(block_emb_file.checkpoint_prefix(
        job.initial_embedder_module)))
  initial = job.initial_embedder_module or initial_index.build_initial_embedder_module(
      trainer.model, tokenizer, featurizer, retrieval_paths,
      os.path.join(model_dir, "initial_embedder"), corpus_info=retrieval.describe())
  train_stream.initial_embedder = eval_stream.initial_embedder = initial

  done_path = os.path.join(model_dir, TRAINING_DONE)
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
  print(f"Training done at step {trainer.step}; example generation counters: "
        f"{json.dumps(train_stream.counts())}; model_dir: {model_dir}", flush=True)
  return trainer
