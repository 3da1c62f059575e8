"""The REALM pre-training job as an Orbit loop: steps, checkpoints, eval, exports.

Replaces the original's Estimator `train_and_evaluate` (`language/realm/train_realm.py`,
`language/common/utils/experiment_utils.py`). `Trainer` builds the model and optimizer
under the strategy and drives `RealmRunner` (an `orbit.StandardTrainer` +
`orbit.AbstractEvaluator`) with `orbit.Controller`, as ICT and ORQA fine-tuning do:
* a `tf.train.CheckpointManager` (model + optimizer, slots included) that a killed run
  resumes from at the same step, written every `save_checkpoints_steps`;
* the examples come from an `ExampleStream`: each pass over the training shards
  retrieves with the newest committed index, and the runner's iterator starts the next
  pass when one ends, so refreshed indexes are picked up without a restart;
* periodic evaluation on the eval split, token-weighted over `num_eval_steps` batches:
  loss and MLM accuracy of the marginal prediction and of the null document alone (what
  the reader knows without retrieval), `retrieval_utility` (their log-likelihood
  difference) and `off_policy_delay_mins`; with QA questions, the zero-shot answer
  recall@k of the current index for them (the REALM paper's Table 2 metric); each
  evaluation is also appended to `eval_results.jsonl`;
* exports every `export_steps`: `export/tf_hub/<ts>` (the refresh job's input) and, when
  `retrieval_utility` improves, `export/tf_hub_best/<ts>` with `best_metric.json`
  (`realm_tf.training.best_metric`);
* TensorBoard scalars under `logs/{train,eval}`, and progress lines with steps/s and
  examples/s every `log_every_steps`.
"""

import os
import time
from typing import Callable, Dict, Optional

from absl import logging
import orbit
import tensorflow as tf

from realm_tf.generation.stream import ExampleStream
from realm_tf.modeling.config import RealmConfig
from realm_tf.modeling.optimizer import create_optimizer
from realm_tf.modeling import precision
from realm_tf.modeling.realm_model import RealmModel
from realm_tf.modeling import realm_steps
from realm_tf.retrieval import answer_recall
from realm_tf.retrieval import export_dirs
from realm_tf import tf_hub_modules as tf_hub
from realm_tf.tokenization import Tokenizer
from realm_tf.training import best_metric
from realm_tf.training import eval_results
from realm_tf.training import strategies

BEST_METRIC = "retrieval_utility"


def read_best_metric(model_dir: str) -> Optional[float]:
  """The best eval `retrieval_utility` so far (kept in export/tf_hub_best/)."""
  return best_metric.read(export_dirs.export_base(model_dir, "tf_hub_best"), BEST_METRIC)


class _Batches:
  """Endless iterator over a stream's distributed batches.

  When a pass over the stream ends, the next one starts (with the newest committed index).
  Three passes in a row without one full batch raise.
  """

  def __init__(self, stream: ExampleStream, strategy: tf.distribute.Strategy):
    self.stream = stream
    self.strategy = strategy
    self._iterator = None
    self._produced = False
    self._empty_passes = 0

  def __iter__(self):
    return self

  def __next__(self):
    while True:
      if self._iterator is None:
        self._iterator = iter(self.strategy.experimental_distribute_dataset(
            self.stream.dataset()))
        self._produced = False
      try:
        batch = next(self._iterator)
      except StopIteration:
        self._iterator = None
        self._empty_passes = 0 if self._produced else self._empty_passes + 1
        if self._empty_passes >= 3:
          raise RuntimeError(  # pylint: disable=raise-missing-from
              f"Three passes over the training shards produced no full batch of "
              f"{self.stream.batch_size} examples; counters: {self.stream.counts()}")
        continue
      self._produced = True
      return batch


class RealmRunner(orbit.StandardTrainer, orbit.AbstractEvaluator):
  """Orbit trainer and evaluator of one `RealmModel` (the loop is `orbit.Controller`).

  A training loop's output is the mean of the steps' `loss`, `retrieval_utility` and
  `off_policy_delay_mins`, the learning rate, steps/s, examples/s and the example
  generation counters. Evaluation sums over `num_steps` batches of the (deterministic)
  eval stream, plus the zero-shot answer recall of `zero_shot`'s questions.
  """

  def __init__(self, model: RealmModel, optimizer, strategy: tf.distribute.Strategy,
               config: RealmConfig, train_stream: ExampleStream,
               eval_stream: Optional[ExampleStream], jit_compile: bool = False,
               zero_shot: Optional[answer_recall.ZeroShotRecall] = None):
    self.model = model
    self.optimizer = optimizer
    self.strategy = strategy
    self.config = config
    self.train_stream = train_stream
    self.eval_stream = eval_stream
    self.zero_shot = zero_shot
    self._train_step = realm_steps.make_train_step(model, optimizer, strategy, jit_compile)
    self._eval_step = realm_steps.make_eval_step(model, strategy)
    self._sums, self._steps = None, 0
    self._loop_start = None
    # Python-driven loops: a new pass over the stream (maybe a new index) starts between
    # steps.
    orbit.StandardTrainer.__init__(self, _Batches(train_stream, strategy),
                                   options=orbit.StandardTrainerOptions(
                                       use_tf_function=False, use_tf_while_loop=False))

  def train_loop_begin(self):
    self._sums, self._steps = None, 0
    self._loop_start = time.monotonic()

  def train_step(self, iterator):
    values = self._train_step(next(iterator))
    self._sums = values if self._sums is None else {
        k: self._sums[k] + values[k] for k in self._sums}
    self._steps += 1

  def train_loop_end(self):
    steps = self._steps
    metrics = {k: float(v) / steps for k, v in self._sums.items()}
    step = self.optimizer.iterations
    rate = self.optimizer.learning_rate
    metrics["learning_rate"] = float(rate(step) if callable(rate) else rate)
    metrics["steps_per_sec"] = steps / max(time.monotonic() - self._loop_start, 1e-9)
    metrics["examples_per_sec"] = metrics["steps_per_sec"] * self.config.batch_size
    metrics.update({f"generation/{k}": float(v)
                    for k, v in self.train_stream.counts().items()})
    return metrics

  def evaluate(self, num_steps):
    """Metrics over `num_steps` batches of the eval stream, and the zero-shot recall."""
    totals = dict.fromkeys(realm_steps.EVAL_SUMS, 0.0)
    dataset = self.eval_stream.dataset().take(int(num_steps))
    for batch in self.strategy.experimental_distribute_dataset(dataset):
      for key, value in self._eval_step(batch).items():
        totals[key] += float(value)
    metrics = realm_steps.eval_metrics(totals)
    if self.zero_shot is not None:
      metrics.update(self.zero_shot_recall())
    return metrics

  def zero_shot_recall(self) -> Dict[str, float]:
    """Answer recall@k of the QA questions, embedded by the query tower as it is now,
    against the index the training examples are currently retrieved from (the REALM
    paper's zero-shot retrieval metric)."""
    index = self.train_stream.index()
    block_emb = tf.train.load_checkpoint(index.block_emb_path).get_tensor("block_emb")
    recall = self.zero_shot(lambda inputs: self.model.embed_queries(inputs, training=False),
                            block_emb)
    recall["index_timestamp"] = index.export_timestamp
    return recall


class Trainer:
  """Trains a `RealmModel` on an `ExampleStream` under a `tf.distribute` strategy.

  The model and optimizer exist (and the newest checkpoint is restored) on construction,
  so a caller can warm-start a fresh model before `train()`.

  Args:
    config: the `RealmConfig` (batch sizes are global).
    model_dir: checkpoints, exports and logs go here.
    strategy: the distribution strategy.
    tokenizer: exported with the modules.
    train_stream, eval_stream: example streams (the eval one deterministic).
    export_steps: export, evaluate and maybe export-best every this many steps.
    num_eval_steps: eval batches per evaluation.
    log_every_steps: progress and TensorBoard cadence.
    jit_compile: XLA-compile the forward/backward pass.
    on_log: called after every training loop (e.g. to supervise the refresh job).
    zero_shot: questions whose zero-shot answer recall is evaluated (None: none).
  """

  def __init__(self, config: RealmConfig, model_dir: str, strategy: tf.distribute.Strategy,
               tokenizer: Tokenizer, train_stream: ExampleStream,
               eval_stream: Optional[ExampleStream], export_steps: int,
               num_eval_steps: int, log_every_steps: int = 10, jit_compile: bool = False,
               on_log: Optional[Callable[[], None]] = None,
               zero_shot: Optional[answer_recall.ZeroShotRecall] = None):
    self.config = config
    self.model_dir = model_dir
    self.strategy = strategy
    self.tokenizer = tokenizer
    self.train_stream = train_stream
    self.eval_stream = eval_stream
    self.export_steps = export_steps
    self.num_eval_steps = num_eval_steps if eval_stream is not None else 0
    self.log_every_steps = log_every_steps
    self.chief = strategies.is_chief(strategy)
    with strategy.scope(), precision.policy_scope(config.precision):
      self.model = RealmModel(config).build_variables()
      self.optimizer = create_optimizer(config)
      # Slots exist before a restore, so resumed runs get their exact values.
      self.optimizer.build(self.model.trainable_variables)
    self.manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=self.model, optimizer=self.optimizer),
        os.path.join(model_dir, "checkpoints"), max_to_keep=config.keep_checkpoint_max,
        step_counter=self.optimizer.iterations,
        checkpoint_interval=config.save_checkpoints_steps)
    self.runner = RealmRunner(self.model, self.optimizer, strategy, config, train_stream,
                              eval_stream, jit_compile, zero_shot)
    actions = [self._print_progress] + ([lambda _: on_log()] if on_log else [])
    logs = os.path.join(model_dir, "logs")
    # Restores the newest checkpoint, if any.
    self.controller = orbit.Controller(
        strategy=strategy, trainer=self.runner, evaluator=self.runner,
        global_step=self.optimizer.iterations, steps_per_loop=self._steps_to_boundary,
        checkpoint_manager=self.manager, summary_dir=os.path.join(logs, "train"),
        eval_summary_dir=os.path.join(logs, "eval"), train_actions=actions,
        eval_actions=[self._record_eval])

  @property
  def step(self) -> int:
    return int(self.optimizer.iterations.numpy())

  def restore(self) -> bool:
    """Whether the run resumed from a checkpoint (restored on construction)."""
    path = self.manager.latest_checkpoint
    if path:
      logging.info("Resumed from %s at step %d", path, self.step)
    return bool(path)

  def _steps_to_boundary(self, step: int) -> int:
    """Steps to the next progress line or checkpoint (a training loop's length)."""
    every = (self.log_every_steps, self.config.save_checkpoints_steps)
    return min(e - step % e for e in every if e)

  def _print_progress(self, metrics) -> None:
    step = self.step
    if step % self.log_every_steps and step != self.config.num_train_steps:
      return
    generation = self.train_stream.current
    print(f"step {step}/{self.config.num_train_steps}: loss {metrics['loss']:.4f}  "
          f"retrieval_utility {metrics['retrieval_utility']:.4f}  "
          f"{metrics['steps_per_sec']:.2f} steps/s {metrics['examples_per_sec']:.1f} "
          f"examples/s  index ts {generation.export_timestamp if generation else '-'}",
          flush=True)

  def _record_eval(self, metrics) -> None:
    metrics = {k: v for k, v in metrics.items() if k != "steps_per_second"}
    if self.chief:
      eval_results.append(self.model_dir, self.step, metrics)
    zero_shot = "".join(f"  zero-shot {k} {v:.3f}" for k, v in metrics.items()
                        if k.startswith("recall@") or k == "query_cosine")
    print(f"[eval] step {self.step}: loss {metrics['loss']:.4f} (null document "
          f"{metrics['null_loss']:.4f})  retrieval_utility {metrics['retrieval_utility']:.4f}"
          f"  mlm_accuracy {metrics['mlm_accuracy']:.4f} (null document "
          f"{metrics['null_mlm_accuracy']:.4f})  null_document_mass "
          f"{metrics['null_document_mass']:.3f}  evidence_rate {metrics['evidence_rate']:.3f}  "
          f"off_policy_delay_mins {metrics['off_policy_delay_mins']:.2f}{zero_shot}",
          flush=True)

  def evaluate(self) -> Dict[str, float]:
    """One evaluation (TensorBoard `logs/eval`, `eval_results.jsonl`, a printed line)."""
    return dict(self.controller.evaluate(steps=self.num_eval_steps))

  def export(self) -> Optional[Dict[str, float]]:
    """Evaluation, the latest export, and a best export when retrieval_utility improves."""
    metrics = self.evaluate() if self.num_eval_steps else None
    if self.chief:
      best_dir = export_dirs.export_base(self.model_dir, "tf_hub_best")
      improved = metrics is not None and best_metric.improves(
          metrics[BEST_METRIC], best_metric.read(best_dir, BEST_METRIC))
      path = tf_hub.export_modules(self.model, self.tokenizer, self.model_dir, self.step,
                                   also_to=("tf_hub_best",) if improved else ())
      if improved:
        best_metric.write(best_dir, BEST_METRIC, self.step, metrics)
      logging.info("Exported %s%s", path, " (new best)" if improved else "")
    return metrics

  def train(self) -> None:
    """Trains to `config.num_train_steps`, exporting and evaluating every `export_steps`."""
    num_steps = self.config.num_train_steps
    if self.step == 0 and self.chief and not self.manager.latest_checkpoint:
      # As the original's Estimator: the (warm-started) model is checkpoint 0, so later
      # checkpoints fall on multiples of save_checkpoints_steps.
      self.manager.save(checkpoint_number=0, check_interval=False)
    if self.step == 0 and self.num_eval_steps and not any(
        r["global_step"] == 0 for r in eval_results.read(self.model_dir)):
      self.evaluate()  # the starting point (e.g. the ICT warm start) of the learning curve
    exported = False
    while self.step < num_steps:
      target = min(num_steps, (self.step // self.export_steps + 1) * self.export_steps)
      self.controller.train(steps=target, checkpoint_at_completion=target == num_steps)
      self.export()
      exported = self.step == num_steps
    if not exported:  # A finished run, restarted: save and export the final model again.
      if self.chief:
        self.manager.save(checkpoint_number=self.step, check_interval=False)
      self.export()
