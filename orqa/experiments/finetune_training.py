"""ORQA fine-tuning as a library: `FinetuneConfig` and `train(config, model_dir, strategy)`.

The job of `python -m orqa.finetune` (its flags map one to one onto `FinetuneConfig`), also
callable from a notebook. It replaces the training loop of the original
`language/orqa/experiments/orqa_experiment.py`; the model is `orqa.models.orqa_model`, built
by `orqa.models.builder`, and its steps are `orqa.experiments.finetune_steps`.

Every `save_checkpoints_steps` steps (and at the end): a checkpoint in
`model_dir/checkpoints/`, an evaluation on `dev_path` (TensorBoard `logs/eval` and
`eval_results.jsonl`) and, when exact_match improves, the best export
`model_dir/export/best_default/` that `orqa.predict` and `export.serving` restore. The
config, with the span MLP width resolved, is saved as `model_dir/params.json`
(`FinetuneConfig.load` reads it back). Training resumes from the newest checkpoint.
"""

import dataclasses
import os
import time
from typing import Any, Dict, Optional

from absl import logging
import orbit
import tensorflow as tf

from orqa.data import block_records
from orqa.data import qa_data
from orqa.experiments import finetune_steps
from orqa.experiments import training_utils
from orqa.models import builder
from orqa.models import span_scorer
from realm_tf import errors
from realm_tf.modeling import config as config_lib
from realm_tf.modeling import optimizer as optimizer_lib
from realm_tf.retrieval import corpus_embedding
from realm_tf.retrieval import corpus_reader
from realm_tf.retrieval import export_dirs
from realm_tf.retrieval import searchers
from realm_tf.training import best_metric
from realm_tf.training import eval_results

BEST_DIR = "best_default"  # export/best_default/: the best checkpoint so far.
DEFAULT_SPAN_HIDDEN_SIZE = 256  # The original's span_hidden_size (orqa_experiment.py).


@dataclasses.dataclass
class FinetuneConfig:
  """One ORQA fine-tuning run (defaults: the original's `orqa_experiment` flags).

  Attributes:
    model: what builds the model (retriever module, block records, reader source, the
      `OrqaConfig` fields in `model.model`; `span_hidden_size` there may be None: the
      width of `init_span_scorer`, else 256).
    train_path, dev_path: QA jsonl files (`train_path` is not needed without training).
    num_eval_examples: evaluate on the first N dev examples (0: all).
    learning_rate, num_train_steps, num_warmup_steps: BERT AdamW schedule
      (None warmup = `min(10000, max(100, T // 10))`). `num_train_steps=0` trains nothing:
      checkpoint 0 of the initial model is saved (and evaluated with `dev_path`).
    batch_size, eval_batch_size: global batches (None eval = `batch_size`).
    save_checkpoints_steps, keep_checkpoint_max: checkpoint and eval period; kept.
    eval_before_training: on a fresh start, save and evaluate checkpoint 0.
    refresh_index_every_steps: re-embed the blocks with the current question tower every N
      steps (0: never; needs retrieval-corpus shards), at `block_seq_len` in batches of
      `refresh_batch_size`.
    log_every_steps: steps between progress lines and training summaries.
    seed: data order.
    init_span_scorer: span MLP weights (`span_scorer.npz`) for a fresh start.
  """
  model: builder.ModelParams
  train_path: Optional[str] = None
  dev_path: Optional[str] = None
  num_eval_examples: int = 0
  learning_rate: float = 1e-5
  batch_size: int = 1
  eval_batch_size: Optional[int] = None
  num_train_steps: int = 0
  num_warmup_steps: Optional[int] = None
  save_checkpoints_steps: int = 1000
  keep_checkpoint_max: int = 5
  eval_before_training: bool = False
  refresh_index_every_steps: int = 0
  block_seq_len: int = 288
  refresh_batch_size: int = 128
  log_every_steps: int = 100
  seed: int = 0
  init_span_scorer: Optional[str] = None

  @property
  def global_eval_batch_size(self) -> int:
    return self.eval_batch_size or self.batch_size

  def validate(self, num_replicas: int = 1) -> None:
    """Raises `errors.ArgumentError` naming the field of a value that cannot run."""
    for name in ("batch_size", "save_checkpoints_steps", "keep_checkpoint_max",
                 "log_every_steps"):
      if getattr(self, name) < 1:
        raise errors.ArgumentError(f"{name}={getattr(self, name)} must be positive.")
    if self.num_train_steps < 0:
      raise errors.ArgumentError(f"num_train_steps={self.num_train_steps} is negative.")
    for name, value in (("batch_size", self.batch_size),
                        ("eval_batch_size", self.global_eval_batch_size)):
      if value % num_replicas:
        raise errors.ArgumentError(f"{name}={value} is not a multiple of the "
                                   f"{num_replicas} replicas.")
    if not (self.model.reader_module_path or self.model.reader_preset):
      raise errors.ArgumentError("Give a reader: reader_module_path and/or reader_preset.")
    if self.refresh_index_every_steps and (
        self.model.block_records_path.endswith((".jsonl", ".jsonl.gz"))
        or block_records.is_raw_block_records(self.model.block_records_path)):
      raise errors.ArgumentError(
          "refresh_index_every_steps needs retrieval-corpus shards as block_records_path, "
          f"not {self.model.block_records_path!r}.")
    if self.num_train_steps and not self.train_path:
      raise errors.ArgumentError("train_path is required unless num_train_steps=0.")

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values: Dict[str, Any]) -> "FinetuneConfig":
    config_lib.check_known_keys(cls, values)
    values = dict(values, model=builder.ModelParams(**values["model"]))
    return cls(**values)

  def save(self, model_dir: str) -> str:
    """Writes `model_dir/params.json` atomically; returns its path."""
    return training_utils.write_params(model_dir, self.to_dict())

  @classmethod
  def load(cls, model_dir: str) -> "FinetuneConfig":
    """The config saved in `model_dir/params.json`."""
    return cls.from_dict(training_utils.read_params(model_dir))


def resolve_span_scorer(config: FinetuneConfig):
  """(span_scorer.npz arrays or None, config with the span MLP width S set).

  S is that of `init_span_scorer` when given (`SpanWeightsError` naming the file and the
  shapes when an explicit width differs), else the explicit width, else 256.
  """
  requested = config.model.model.get("span_hidden_size")
  arrays = None
  if config.init_span_scorer:
    arrays = span_scorer.read_weights(config.init_span_scorer, span_hidden_size=requested)
    width = int(arrays["span_logits/kernel"].shape[0])
  else:
    width = requested or DEFAULT_SPAN_HIDDEN_SIZE
  model = dataclasses.replace(config.model,
                              model=dict(config.model.model, span_hidden_size=width))
  return arrays, dataclasses.replace(config, model=model)


class BestExporter:
  """Keeps `model_dir/export/best_default/` on the best `exact_match` so far.

  The export holds `checkpoint/` (a copy of the checkpoint) and `best_metric.json`
  (`realm_tf.training.best_metric`: the value, its step and every eval metric), and is
  replaced atomically.
  """

  def __init__(self, model_dir: str, metric: str = "exact_match"):
    self.directory = os.path.join(model_dir, export_dirs.EXPORT_DIR, BEST_DIR)
    self.metric = metric

  def best(self) -> Optional[float]:
    return best_metric.read(self.directory, self.metric)

  def maybe_export(self, checkpoint_path: str, step: int, metrics) -> bool:
    value = metrics[self.metric]
    if not best_metric.improves(value, self.best()):
      return False
    staging = export_dirs.temp_dir_for(self.directory)
    target = os.path.join(staging, "checkpoint")
    tf.io.gfile.makedirs(target)
    for path in tf.io.gfile.glob(checkpoint_path + ".*"):
      tf.io.gfile.copy(path, os.path.join(target, os.path.basename(path)))
    best_metric.write(staging, self.metric, step, metrics)
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


def refresh_index(model, config: FinetuneConfig, strategy) -> None:
  """Re-embeds every block with the current question tower and swaps the index."""
  start = time.monotonic()
  shard_paths = corpus_reader.list_shards(config.model.block_records_path)
  tokenizer = model.retriever_tokenizer
  featurizer = corpus_embedding.featurizer_for_documents(
      tokenizer.vocab_path, config.block_seq_len, tokenizer.do_lower_case)

  def embed(input_ids, input_mask, segment_ids):
    return model.question_tower(dict(input_word_ids=input_ids, input_mask=input_mask,
                                      input_type_ids=segment_ids), training=False)

  block_emb = corpus_embedding.embed_shards(
      shard_paths, embed, featurizer, config.refresh_batch_size,
      num_blocks=model.index.num_blocks, strategy=strategy)
  model.index.assign(block_emb)
  logging.info("Re-embedded %d blocks in %.1f s.", model.index.num_blocks,
               time.monotonic() - start)


class FinetuneRunner(orbit.StandardTrainer, orbit.AbstractEvaluator):
  """Orbit trainer and evaluator of one `OrqaModel` (the loop is `orbit.Controller`).

  Training runs `finetune_steps.make_train_step` and, every `refresh_index_every_steps`
  steps, re-embeds the blocks first; its output per loop is the mean of the per-question
  values, the learning rate and examples/s. Evaluation predicts the dev questions and
  scores them with `finetune_steps.eval_metrics` ({} without dev questions).
  """

  def __init__(self, model, optimizer, strategy: tf.distribute.Strategy,
               config: FinetuneConfig, train_dataset, dev_examples):
    self.model = model
    self.optimizer = optimizer
    self.strategy = strategy
    self.config = config
    self.dev_examples = dev_examples
    self._sums = None
    self._loop_start = None
    self._make_steps()
    # Python-driven loops: the index refresh and the per-question sums run between steps.
    orbit.StandardTrainer.__init__(self, train_dataset, options=orbit.StandardTrainerOptions(
        use_tf_function=False, use_tf_while_loop=False))

  def _make_steps(self):
    self._train_step = finetune_steps.make_train_step(self.model, self.optimizer,
                                                    self.config.batch_size, self.strategy)
    self._eval_step = finetune_steps.make_predict_step(self.model, self.strategy,
                                                     with_labels=True)

  def train_loop_begin(self):
    self._sums = None
    self._loop_start = time.monotonic()

  def train_step(self, iterator):
    step = int(self.optimizer.iterations.numpy())
    every = self.config.refresh_index_every_steps
    if every and step and step % every == 0:
      refresh_index(self.model, self.config, self.strategy)
      if self.model.index.searcher_type == searchers.SCANN:
        self._make_steps()  # The new searcher must be traced in.
    values = training_utils.to_floats(self._train_step(next(iterator)))
    self._sums = values if self._sums is None else {
        k: self._sums[k] + values[k] for k in self._sums}

  def train_loop_end(self):
    metrics = _mean(self._sums)
    metrics["learning_rate"] = float(self.optimizer.learning_rate.numpy())
    metrics["examples_per_sec"] = self._sums["num_questions"] / max(
        time.monotonic() - self._loop_start, 1e-9)
    return metrics

  def evaluate(self, num_steps):
    del num_steps  # Always every dev question.
    if not self.dev_examples:
      return {}
    results = finetune_steps.run_predictions(self._eval_step, self.strategy,
                                           self.dev_examples,
                                           self.config.global_eval_batch_size)
    return finetune_steps.eval_metrics(self.dev_examples, results)


def train(config: FinetuneConfig, model_dir: str,
          strategy: Optional[tf.distribute.Strategy] = None) -> Dict[str, float]:
  """Fine-tunes ORQA per `config` into `model_dir`; returns the last eval metrics.

  Checkpoints and evaluates every `save_checkpoints_steps` steps and at the end (the
  module docstring). With `num_train_steps=0` nothing is trained: checkpoint 0 of the
  initial model is saved (and evaluated, with `dev_path`), a complete model_dir for
  orqa.predict and export.serving.

  Raises:
    errors.ArgumentError: a config value that cannot run (`FinetuneConfig.validate`).
  """
  strategy = strategy or tf.distribute.get_strategy()
  config.validate(strategy.num_replicas_in_sync)
  span_arrays, config = resolve_span_scorer(config)  # Before building: the file sets S.
  model = builder.build_model(config.model, strategy)
  refreshing = bool(config.refresh_index_every_steps)
  with strategy.scope():
    # num_train_steps=0 never steps the optimizer: any schedule will do.
    optimizer = optimizer_lib.bert_adamw(
        config.learning_rate, max(config.num_train_steps, 1), config.num_warmup_steps)
    optimizer.build(model.trainable_variables)
    items = dict(model=model, optimizer=optimizer)
    if refreshing:
      items["block_emb"] = model.index.block_emb  # The refreshed index is model state.
    checkpoint = tf.train.Checkpoint(**items)
  manager = tf.train.CheckpointManager(
      checkpoint, os.path.join(model_dir, training_utils.CHECKPOINT_DIR),
      max_to_keep=config.keep_checkpoint_max)
  resumed = manager.latest_checkpoint
  if resumed:
    checkpoint.restore(resumed).assert_existing_objects_matched()
    logging.info("Resumed from %s.", resumed)
    if refreshing:
      model.index.assign(model.index.block_emb.numpy())  # Rebuild an approximate searcher.
  if span_arrays is not None:
    if resumed:
      logging.info("init_span_scorer=%s not used: the span MLP of %s is restored.",
                   config.init_span_scorer, resumed)
    else:
      span_scorer.assign_weights(model.span_scorer, span_arrays, config.init_span_scorer)
      logging.info("Span MLP initialized from %s.", config.init_span_scorer)
  config.save(model_dir)

  dev_examples = qa_data.load_examples(config.dev_path) if config.dev_path else []
  if config.num_eval_examples:
    dev_examples = dev_examples[:config.num_eval_examples]
  step = int(optimizer.iterations.numpy())
  dataset = None
  if step < config.num_train_steps:
    train_examples = qa_data.load_examples(config.train_path)
    dataset = qa_data.make_dataset(train_examples, batch_size=config.batch_size,
                                   shuffle=True, repeat=True, seed=config.seed + step,
                                   pad_answers=True, drop_remainder=True)
    dataset = finetune_steps.distribute(strategy, dataset.map(
        lambda b: {"question": b["question"], "answers": b["answers"]}))
  runner = FinetuneRunner(model, optimizer, strategy, config, dataset, dev_examples)
  exporter = BestExporter(model_dir)

  def record(metrics):
    if metrics:
      step = int(optimizer.iterations.numpy())
      eval_results.append(model_dir, step, metrics)
      exporter.maybe_export(manager.latest_checkpoint, step, metrics)

  logs = os.path.join(model_dir, training_utils.LOG_DIR)
  controller = orbit.Controller(
      strategy=strategy, trainer=runner if dataset is not None else None, evaluator=runner,
      global_step=optimizer.iterations, steps_per_loop=config.log_every_steps,
      summary_dir=os.path.join(logs, "train"), eval_summary_dir=os.path.join(logs, "eval"),
      eval_actions=[record])

  def checkpoint_and_evaluate():
    manager.save(checkpoint_number=int(optimizer.iterations.numpy()))
    return dict(controller.evaluate(steps=-1)) if dev_examples else {}

  metrics = {}
  # Checkpoint 0 (evaluated with dev examples): when asked, and without training, where it
  # is the model orqa.predict and export.serving read (e.g. converted weights).
  if step == 0 and (config.eval_before_training or config.num_train_steps == 0):
    metrics = checkpoint_and_evaluate()
  while step < config.num_train_steps:
    every = config.save_checkpoints_steps
    step = min(config.num_train_steps, (step // every + 1) * every)
    controller.train(steps=step, checkpoint_at_completion=False)
    metrics = checkpoint_and_evaluate()
  return metrics


def _mean(sums):
  n = max(sums["num_questions"], 1.0)
  return {k: v / n for k, v in sums.items() if k != "num_questions"}
