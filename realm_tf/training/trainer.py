"""The REALM training loop: custom `strategy.run` steps, checkpoints, eval, exports.

Replaces the original's Estimator `train_and_evaluate` (`language/realm/train_realm.py`,
`language/common/utils/experiment_utils.py`) with:
* a `tf.train.CheckpointManager` (model + optimizer, slots included) that a killed run
  resumes from at the same step;
* periodic evaluation on the eval split, token-weighted over `num_eval_steps` batches:
  loss and MLM accuracy of the marginal prediction and of the null document alone (what
  the reader knows without retrieval), `retrieval_utility` (their log-likelihood
  difference) and `off_policy_delay_mins`; with QA questions, the zero-shot answer
  recall@k of the current index for them (the REALM paper's Table 2 metric); each
  evaluation is also appended to `eval_results.jsonl`;
* exports every `export_steps`: `export/tf_hub/<ts>` (the refresh job's input) and, when
  `retrieval_utility` improves, `export/tf_hub_best/<ts>` with the best value kept on disk
  so it survives restarts (the original kept it in memory);
* TensorBoard scalars under `logs/`, and progress with steps/s and examples/s.
"""

import json
import os
import time
from typing import Callable, Dict, Optional

from absl import logging
import tensorflow as tf

from realm_tf import tf_hub_modules as tf_hub
from realm_tf.generation.stream import ExampleStream
from realm_tf.modeling.config import RealmConfig
from realm_tf.modeling import precision
from realm_tf.modeling.optimizer import create_optimizer
from realm_tf.modeling.realm_model import RealmModel
from realm_tf.modeling.training import make_train_step
from realm_tf.retrieval import answer_recall
from realm_tf.retrieval import export_dirs
from realm_tf.tokenization import Tokenizer
from realm_tf.training import eval_results
from realm_tf.training import strategies

BEST_METRIC_FILE = "best_metric.json"
BEST_METRIC = "retrieval_utility"
EVAL_SUMS = ("nll", "null_nll", "correct", "null_correct", "masks", "delay", "examples")


def read_best_metric(model_dir: str) -> Optional[float]:
  """The best eval `retrieval_utility` so far (kept in export/tf_hub_best/)."""
  path = os.path.join(export_dirs.export_base(model_dir, "tf_hub_best"), BEST_METRIC_FILE)
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return float(json.load(f)[BEST_METRIC])


def write_best_metric(model_dir: str, value: float, step: int) -> None:
  base = export_dirs.export_base(model_dir, "tf_hub_best")
  os.makedirs(base, exist_ok=True)
  export_dirs.write_text_atomic(os.path.join(base, BEST_METRIC_FILE),
                                json.dumps({BEST_METRIC: value, "global_step": step}))


class Trainer:
  """Trains a `RealmModel` on an `ExampleStream` under a `tf.distribute` strategy.

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
    on_log: called at every log step (e.g. to supervise the refresh job).
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
    self.num_eval_steps = num_eval_steps
    self.log_every_steps = log_every_steps
    self.on_log = on_log
    self.zero_shot = zero_shot
    self.chief = strategies.is_chief(strategy)
    with strategy.scope(), precision.policy_scope(config.precision):
      self.model = RealmModel(config).build_variables()
      self.optimizer = create_optimizer(config)
      # Slots exist before a restore, so resumed runs get their exact values.
      self.optimizer.build(self.model.trainable_variables)
    self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, os.path.join(model_dir, "checkpoints"),
        max_to_keep=config.keep_checkpoint_max, step_counter=self.optimizer.iterations,
        checkpoint_interval=config.save_checkpoints_steps)
    self.train_step = make_train_step(self.model, self.optimizer, strategy, jit_compile)
    self.eval_step = self._make_eval_step()
    logs = os.path.join(model_dir, "logs")
    self.train_writer = tf.summary.create_file_writer(os.path.join(logs, "train"))
    self.eval_writer = tf.summary.create_file_writer(os.path.join(logs, "eval"))

  @property
  def step(self) -> int:
    return int(self.optimizer.iterations.numpy())

  def restore(self) -> bool:
    """Restores the newest checkpoint; returns whether there was one."""
    path = self.manager.restore_or_initialize()
    if path:
      logging.info("Resumed from %s at step %d", path, self.step)
    return bool(path)

  # ------------------------------------------------------------------------------ eval

  def _make_eval_step(self):
    model = self.model

    def replica_sums(features):
      out = model(features, training=False, return_logits=True)
      mask = tf.cast(features["mlm_mask"], tf.float32)  # [B, M]
      marginal = out["marginal_log_probs"]  # [B, M]
      null = out["gold_log_probs"][:, 0, :]  # [B, M], candidate 0 is the null document
      # The marginal prediction sum_z p(z|x) p(y|z,x) over the vocabulary.
      probs = tf.einsum("bn,bnmv->bmv", tf.exp(out["candidate_log_probs"]),
                        tf.nn.softmax(out["mlm_logits"], axis=-1))  # [B, M, V]
      targets = tf.cast(features["mlm_targets"], tf.int32)  # [B, M]
      hits = tf.cast(tf.equal(tf.argmax(probs, -1, output_type=tf.int32), targets),
                     tf.float32)
      # The reader's prediction from the null document alone: what it knows without
      # retrieval (the difference to the marginal is what retrieval buys).
      null_hits = tf.cast(tf.equal(tf.argmax(out["mlm_logits"][:, 0], -1,
                                             output_type=tf.int32), targets), tf.float32)
      timestamps = tf.cast(features["export_timestamp"], tf.float64)  # [B]
      delays = (tf.timestamp() - timestamps) / 60.0 * tf.cast(timestamps > 0, tf.float64)
      sums = dict(nll=-tf.reduce_sum(marginal * mask), null_nll=-tf.reduce_sum(null * mask),
                  correct=tf.reduce_sum(hits * mask),
                  null_correct=tf.reduce_sum(null_hits * mask), masks=tf.reduce_sum(mask),
                  delay=tf.reduce_sum(delays),
                  examples=tf.cast(tf.shape(mask)[0], tf.float64))
      return {k: tf.cast(v, tf.float64) for k, v in sums.items()}

    @tf.function
    def eval_step(features):
      sums = self.strategy.run(replica_sums, args=(features,))
      return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
              for k, v in sums.items()}

    return eval_step

  def evaluate(self) -> Dict[str, float]:
    """Metrics over `num_eval_steps` batches of the (deterministic) eval stream, and the
    zero-shot answer recall of `zero_shot`'s questions against the current index."""
    totals = dict.fromkeys(EVAL_SUMS, 0.0)
    dataset = self.eval_stream.dataset().take(self.num_eval_steps)
    for batch in self.strategy.experimental_distribute_dataset(dataset):
      for key, value in self.eval_step(batch).items():
        totals[key] += float(value)
    masks = max(totals["masks"], 1.0)
    metrics = dict(loss=totals["nll"] / masks, null_loss=totals["null_nll"] / masks,
                   retrieval_utility=(totals["null_nll"] - totals["nll"]) / masks,
                   mlm_accuracy=totals["correct"] / masks,
                   null_mlm_accuracy=totals["null_correct"] / masks,
                   off_policy_delay_mins=totals["delay"] / max(totals["examples"], 1.0),
                   eval_examples=totals["examples"])
    if self.zero_shot is not None:
      metrics.update(self.zero_shot_recall())
    with self.eval_writer.as_default(step=self.step):
      for key, value in metrics.items():
        tf.summary.scalar(key, value)
    self.eval_writer.flush()
    if self.chief:
      eval_results.append(self.model_dir, self.step, metrics)
    logging.info("eval at step %d: %s", self.step,
                 " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    recall = "".join(f"  zero-shot {k} {v:.3f}" for k, v in metrics.items()
                     if k.startswith("recall@"))
    print(f"[eval] step {self.step}: loss {metrics['loss']:.4f} (null document "
          f"{metrics['null_loss']:.4f})  retrieval_utility {metrics['retrieval_utility']:.4f}"
          f"  mlm_accuracy {metrics['mlm_accuracy']:.4f} (null document "
          f"{metrics['null_mlm_accuracy']:.4f})  off_policy_delay_mins "
          f"{metrics['off_policy_delay_mins']:.2f}{recall}", flush=True)
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

  # --------------------------------------------------------------------------- exports

  def export(self) -> Optional[Dict[str, float]]:
    """Evaluation, the latest export, and a best export when retrieval_utility improves."""
    step = self.step
    metrics = None
    if self.eval_stream is not None and self.num_eval_steps:
      metrics = self.evaluate()
    if self.chief:
      best = read_best_metric(self.model_dir)
      improved = metrics is not None and (best is None or metrics[BEST_METRIC] > best)
      path = tf_hub.export_modules(self.model, self.tokenizer, self.model_dir, step,
                                   also_to=("tf_hub_best",) if improved else ())
      if improved:
        write_best_metric(self.model_dir, metrics[BEST_METRIC], step)
      logging.info("Exported %s%s", path, " (new best)" if improved else "")
    return metrics

  # ----------------------------------------------------------------------------- train

  def _log(self, metrics, elapsed: float, steps: int) -> None:
    step = self.step
    steps_per_sec = steps / max(elapsed, 1e-9)
    examples_per_sec = steps_per_sec * self.config.batch_size
    counts = self.train_stream.counts()
    generation = self.train_stream.current
    values = {k: float(v) for k, v in metrics.items()}
    print(f"step {step}/{self.config.num_train_steps}: loss {values['loss']:.4f}  "
          f"retrieval_utility {values['retrieval_utility']:.4f}  {steps_per_sec:.2f} steps/s "
          f"{examples_per_sec:.1f} examples/s  index ts "
          f"{generation.export_timestamp if generation else '-'}", flush=True)
    if self.chief:
      with self.train_writer.as_default(step=step):
        for key, value in values.items():
          tf.summary.scalar(key, value)
        tf.summary.scalar("steps_per_sec", steps_per_sec)
        tf.summary.scalar("examples_per_sec", examples_per_sec)
        tf.summary.scalar("learning_rate", self.optimizer.learning_rate(step)
                          if callable(self.optimizer.learning_rate) else
                          self.optimizer.learning_rate)
        for key, value in counts.items():
          tf.summary.scalar(f"generation/{key}", value)
    logging.info("generation counters: %s", counts)

  def train(self) -> None:
    """Trains to `config.num_train_steps`, exporting and evaluating on the way."""
    num_steps = self.config.num_train_steps
    if self.step == 0 and self.eval_stream is not None and self.num_eval_steps:
      self.evaluate()  # the starting point (e.g. the ICT warm start) of the learning curve
    iterator, empty_passes = None, 0
    window_start, window_steps = time.time(), 0
    while self.step < num_steps:
      if iterator is None:
        iterator = iter(self.strategy.experimental_distribute_dataset(
            self.train_stream.dataset()))
        produced = False
      try:
        batch = next(iterator)
      except StopIteration:
        iterator = None
        empty_passes = 0 if produced else empty_passes + 1
        if empty_passes >= 3:
          raise RuntimeError(f"Three passes over the training shards produced no full "
                             f"batch of {self.config.batch_size} examples; counters: "
                             f"{self.train_stream.counts()}")
        continue
      produced = True
      metrics = self.train_step(batch)
      window_steps += 1
      step = self.step
      if self.chief:
        self.manager.save(checkpoint_number=step, check_interval=True)
      if step % self.log_every_steps == 0 or step == num_steps:
        self._log(metrics, time.time() - window_start, window_steps)
        window_start, window_steps = time.time(), 0
        if self.on_log:
          self.on_log()
      if step % self.export_steps == 0 and step < num_steps:
        self.export()
    if self.chief:
      self.manager.save(checkpoint_number=self.step, check_interval=False)
    self.export()
