"""The ICT warm start as an Orbit job (language/orqa/experiments/ict_experiment.py).

`train(embedder, tokenizer, config, model_dir, train_paths, eval_paths)` trains a
`ProjectedEmbedder` on the Inverse Cloze Task with BERT's AdamW under a `tf.distribute`
strategy: `orbit.Controller` runs the loop, resumes from `model_dir/checkpoints/`,
logs progress with steps/s, and writes TensorBoard scalars to `model_dir/logs/{train,eval}`.
Each evaluation, on blocks held out from training, reports the original's metrics
(in-batch retrieval accuracy of masked and unmasked queries, loss) and, when given, the
zero-shot answer recall of QA questions against an index embedded by the tower as it is;
evaluations are appended to `model_dir/eval_results.jsonl`.
"""

import dataclasses
import json
import os
from typing import Callable, Dict, Optional, Sequence

from absl import logging
import orbit
import tensorflow as tf

from realm_tf.ict import dataset as ict_dataset
from realm_tf.ict import model as ict_model
from realm_tf.modeling.optimizer import bert_adamw
from realm_tf.retrieval import answer_recall
from realm_tf.tokenization import Tokenizer
from realm_tf.training import eval_results

CONFIG_FILENAME = "ict_config.json"


@dataclasses.dataclass
class IctConfig:
  """ICT hyperparameters (defaults: the original's `ict_experiment` flags).

  Attributes:
    query_seq_len, block_seq_len: Q (64) and the block length (288).
    mask_rate: probability of removing the query sentence from its block (0.9).
    learning_rate, num_train_steps, num_warmup_steps: BERT AdamW schedule (1e-4, 100k,
      None = the original's `min(10000, max(100, T // 10))`).
    batch_size: global batch (in-batch negatives; 4096).
    eval_batch_size, num_eval_steps: eval batches of held-out blocks (32 x 10).
    eval_every_steps: training steps between evaluations (and checkpoints).
    log_every_steps: steps between progress lines and training summaries.
    keep_checkpoint_max: checkpoints kept.
    seed: data order and the sentence choices.
  """
  query_seq_len: int = 64
  block_seq_len: int = 288
  mask_rate: float = 0.9
  learning_rate: float = 1e-4
  num_train_steps: int = 100000
  num_warmup_steps: Optional[int] = None
  batch_size: int = 4096
  eval_batch_size: int = 32
  num_eval_steps: int = 10
  eval_every_steps: int = 1000
  log_every_steps: int = 100
  keep_checkpoint_max: int = 5
  seed: int = 0

  def __post_init__(self):
    for name in ("num_train_steps", "batch_size", "eval_batch_size", "num_eval_steps",
                 "eval_every_steps", "log_every_steps"):
      if getattr(self, name) < 1:
        raise ValueError(f"IctConfig.{name} must be positive, got {getattr(self, name)}.")
    if not 0.0 <= self.mask_rate <= 1.0:
      raise ValueError(f"IctConfig.mask_rate must be in [0, 1], got {self.mask_rate}.")

  def save(self, model_dir: str) -> str:
    """Writes `model_dir/ict_config.json` atomically; returns its path."""
    tf.io.gfile.makedirs(model_dir)
    path = os.path.join(model_dir, CONFIG_FILENAME)
    with tf.io.gfile.GFile(path + ".tmp", "w") as f:
      f.write(json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n")
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
    return path


class _Sums:
  """Float variables summing `ict_model.SUM_KEYS` over steps (reset per loop)."""

  def __init__(self):
    self.variables = {k: tf.Variable(0.0, trainable=False, name=k,
                                     aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
                      for k in ict_model.SUM_KEYS}

  def reset(self):
    for v in self.variables.values():
      v.assign(0.0)

  def add(self, values):
    for k, v in self.variables.items():
      v.assign_add(tf.cast(values[k], tf.float32))

  def summarize(self) -> Dict[str, float]:
    return ict_model.summarize({k: float(v.numpy()) for k, v in self.variables.items()})


class IctRunner(orbit.StandardTrainer, orbit.StandardEvaluator):
  """Orbit trainer and evaluator of the ICT loss on one `ProjectedEmbedder`.

  Args:
    embedder: the shared query/block tower.
    optimizer: its optimizer (created under the strategy's scope).
    strategy: the distribution strategy.
    train_dataset, eval_dataset: distributed datasets of `ict_dataset` batches.
    global_batch_size: the training batch (the loss is its mean).
    index_fn: () -> block embeddings [K, D] of the index corpus with the tower as it is,
      for `zero_shot` (both None: no zero-shot recall).
    zero_shot: QA questions whose answer recall against `index_fn()` is evaluated.
  """

  def __init__(self, embedder, optimizer, strategy: tf.distribute.Strategy,
               train_dataset, eval_dataset, global_batch_size: int,
               index_fn: Optional[Callable[[], tf.Tensor]] = None,
               zero_shot: Optional[answer_recall.ZeroShotRecall] = None):
    self.embedder = embedder
    self.optimizer = optimizer
    self.strategy = strategy
    self.index_fn = index_fn
    self.zero_shot = zero_shot
    with strategy.scope():
      self.train_sums = _Sums()
      self.eval_sums = _Sums()
    self._train_step = ict_model.make_train_step(embedder, optimizer, global_batch_size,
                                                 strategy)
    self._eval_step = ict_model.make_eval_step(embedder, strategy)
    orbit.StandardTrainer.__init__(
        self, train_dataset, options=orbit.StandardTrainerOptions(use_tf_while_loop=False))
    orbit.StandardEvaluator.__init__(self, eval_dataset)

  def train_loop_begin(self):
    self.train_sums.reset()

  def train_step(self, iterator):
    self.train_sums.add(self._train_step(next(iterator)))

  def train_loop_end(self):
    metrics = self.train_sums.summarize()
    metrics["learning_rate"] = float(self.optimizer.learning_rate.numpy())
    return metrics

  def eval_begin(self):
    self.eval_sums.reset()

  def eval_step(self, iterator):
    self.eval_sums.add(self._eval_step(next(iterator)))

  def eval_end(self):
    metrics = self.eval_sums.summarize()
    if self.zero_shot is not None and self.index_fn is not None:
      metrics.update(self.zero_shot(
          lambda inputs: self.embedder(inputs, training=False), self.index_fn()))
    return metrics


def _distribute(strategy, dataset_fn):
  return strategy.distribute_datasets_from_function(lambda _: dataset_fn())


def train(embedder, tokenizer: Tokenizer, config: IctConfig, model_dir: str,
          train_paths: Sequence[str], eval_paths: Sequence[str],
          strategy: Optional[tf.distribute.Strategy] = None,
          index_fn: Optional[Callable[[], tf.Tensor]] = None,
          zero_shot: Optional[answer_recall.ZeroShotRecall] = None,
          holdout_every: int = 0) -> Dict[str, float]:
  """Trains `embedder` (built under `strategy`'s scope) with ICT; returns the last eval.

  Resumes from `model_dir/checkpoints/`; a finished run (checkpoint at
  `config.num_train_steps`) only evaluates. Batch sizes are global and must divide by
  the number of replicas.

  Args:
    embedder: the tower to train, built (`build_variables`) under the strategy's scope.
    tokenizer: its tokenizer (special token ids).
    config: the `IctConfig` (saved as `model_dir/ict_config.json`).
    model_dir: checkpoints, logs and eval_results.jsonl go here.
    train_paths, eval_paths: ICT block-example shards (`realm_tf.ict.examples`); the
      eval blocks should be held out from training.
    strategy: the distribution strategy (default: the current one).
    index_fn, zero_shot: see `IctRunner`.
    holdout_every: when > 0, every k-th block of `train_paths` is held out of training
      and `eval_paths` is ignored: evaluation reads those blocks.
  """
  strategy = strategy or tf.distribute.get_strategy()
  replicas = strategy.num_replicas_in_sync
  for name in ("batch_size", "eval_batch_size"):
    if getattr(config, name) % replicas:
      raise ValueError(f"IctConfig.{name}={getattr(config, name)} is not a multiple of the "
                       f"{replicas} replicas.")
  config.save(model_dir)
  with strategy.scope():
    optimizer = bert_adamw(config.learning_rate, config.num_train_steps,
                           config.num_warmup_steps)
    optimizer.build(embedder.trainable_variables)  # slots exist before a restore
  checkpoint = tf.train.Checkpoint(embedder=embedder, optimizer=optimizer)
  manager = tf.train.CheckpointManager(
      checkpoint, os.path.join(model_dir, "checkpoints"),
      max_to_keep=config.keep_checkpoint_max, step_counter=optimizer.iterations,
      checkpoint_interval=config.eval_every_steps)
  data = dict(query_seq_len=config.query_seq_len, block_seq_len=config.block_seq_len,
              mask_rate=config.mask_rate, cls_id=tokenizer.cls_id, sep_id=tokenizer.sep_id)

  def train_data():
    return ict_dataset.ict_dataset(train_paths, config.batch_size // replicas,
                                   seed=config.seed, training=True,
                                   holdout_every=holdout_every, **data)

  def eval_data():
    return ict_dataset.ict_dataset(train_paths if holdout_every else eval_paths,
                                   config.eval_batch_size // replicas, seed=config.seed,
                                   training=False, holdout_every=holdout_every,
                                   holdout=True, **data).repeat()

  if not any(True for _ in eval_data().take(1)):
    raise ValueError(f"The held-out ICT blocks ({list(eval_paths) or 'every '}"
                     f"{'' if eval_paths else f'{holdout_every}-th block of '}"
                     f"{list(train_paths)}) make no complete eval batch of "
                     f"{config.eval_batch_size}: lower the eval batch size or hold out more.")
  runner = IctRunner(embedder, optimizer, strategy, _distribute(strategy, train_data),
                     _distribute(strategy, eval_data), config.batch_size, index_fn,
                     zero_shot)
  logs = os.path.join(model_dir, "logs")

  def record(metrics):
    step = int(optimizer.iterations.numpy())
    eval_results.append(model_dir, step, metrics)
    recall = "".join(f"  zero-shot {k} {float(v):.3f}" for k, v in sorted(metrics.items())
                     if k.startswith("recall@"))
    print(f"[ict eval] step {step}: held-out retrieval accuracy {metrics['accuracy']:.3f} "
          f"(in batches of {config.eval_batch_size})  loss {metrics['loss']:.3f}{recall}",
          flush=True)

  controller = orbit.Controller(
      strategy=strategy, trainer=runner, evaluator=runner,
      global_step=optimizer.iterations, steps_per_loop=config.log_every_steps,
      checkpoint_manager=manager, summary_dir=os.path.join(logs, "train"),
      eval_summary_dir=os.path.join(logs, "eval"), eval_actions=[record])
  step = int(optimizer.iterations.numpy())
  if step == 0 and not manager.latest_checkpoint:
    # As the original's Estimator: the initial tower is checkpoint 0, so later
    # checkpoints fall on multiples of eval_every_steps.
    manager.save(checkpoint_number=0, check_interval=False)
  if step == 0 and not any(r["global_step"] == 0 for r in eval_results.read(model_dir)):
    controller.evaluate(steps=config.num_eval_steps)  # the untrained tower: the baseline
  if step >= config.num_train_steps:
    logging.info("ICT already trained to step %d.", step)
    return dict(runner.evaluate(tf.constant(config.num_eval_steps)))
  return dict(controller.train_and_evaluate(
      train_steps=config.num_train_steps, eval_steps=config.num_eval_steps,
      eval_interval=config.eval_every_steps))
