"""The distributed train and predict steps of an `OrqaModel`, and its eval metrics.

Shared by ORQA fine-tuning (`orqa.experiments.finetune_training`) and `orqa.predict`.
"""

from typing import Any, Callable, Dict, List, Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from orqa.data import qa_data
from orqa.evaluation import qa_metrics
from orqa.models import orqa_model

# Per-question scalars summed over the global batch by the train step.
TRAIN_SUMS = ("loss", "retriever_loss", "reader_loss", "num_read_correct", "exact_match",
              "reader_oracle", "top_5_match", "num_questions", "reader_nonpad_ratio")
# Per-question values returned by the eval / predict step.
EVAL_KEYS = ("exact_match", "reader_oracle", "loss") + tuple(
    f"top_{k}_match" for k in orqa_model.TOP_K_MATCH)
PREDICT_KEYS = ("answer", "score", "block_ids", "predicted_block_id")



def distribute(strategy: tf.distribute.Strategy, dataset: tf.data.Dataset):
  """The dataset split across replicas; string inputs stay on the host."""
  options = tf.distribute.InputOptions(experimental_fetch_to_device=False)
  return strategy.experimental_distribute_dataset(dataset, options)


def make_train_step(model: orqa_model.OrqaModel, optimizer, global_batch_size: int,
                    strategy: tf.distribute.Strategy) -> Callable:
  """A `tf.function(batch) -> {TRAIN_SUMS}` (sums over the global batch) training once.

  Each replica's loss is its summed per-question loss over `global_batch_size`, so the
  all-reduced (summed) gradient is that of the global-batch mean of the original's loss.
  """

  def replica_step(batch):
    with tf.GradientTape() as tape:
      outputs = model(batch["question"], batch["answers"], training=True)
      loss = tf.nn.compute_average_loss(outputs["loss"], global_batch_size=global_batch_size)
    variables = model.trainable_variables
    grads = tape.gradient(loss, variables)
    optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
    num = tf.cast(tf.shape(outputs["loss"])[0], tf.float32)
    sums = {k: tf.reduce_sum(tf.cast(outputs[k], tf.float32)) for k in TRAIN_SUMS
            if k not in ("num_questions", "reader_nonpad_ratio")}
    sums["num_questions"] = num
    sums["reader_nonpad_ratio"] = outputs["reader_nonpad_ratio"] * num
    return sums

  @tf.function
  def train_step(batch):
    per_replica = strategy.run(replica_step, args=(batch,))
    return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
            for k, v in per_replica.items()}

  return train_step


def make_predict_step(model: orqa_model.OrqaModel, strategy: tf.distribute.Strategy,
                      with_labels: bool, retrieval_beam_size: Optional[int] = None
                      ) -> Callable:
  """A `tf.function(batch) -> {key: [local results]}` of per-question values (no dropout).

  With labels: `EVAL_KEYS` and the predictions; without: the predictions only.
  """
  keys = PREDICT_KEYS + (EVAL_KEYS if with_labels else ())

  def replica_step(batch):
    answers = batch["answers"] if with_labels else None
    outputs = model(batch["question"], answers, training=False,
                    retrieval_beam_size=retrieval_beam_size, with_text=True)
    return {k: outputs[k] for k in keys}

  @tf.function
  def predict_step(batch):
    per_replica = strategy.run(replica_step, args=(batch,))
    return {k: strategy.experimental_local_results(v) for k, v in per_replica.items()}

  return predict_step


def padded_dataset(examples: Sequence[qa_data.QAExample], batch_size: int) -> tf.data.Dataset:
  """Batches of every example once, the last one padded with empty questions.

  Elements: question [b], answers [b, A] padded with "", index int64 [b] (-1: padding).
  """
  num_pad = -len(examples) % batch_size
  padded = list(examples) + [qa_data.QAExample("", [])] * num_pad
  questions, answers = qa_data.examples_to_tensors(padded)
  index = tf.constant(list(range(len(examples))) + [-1] * num_pad, tf.int64)
  dataset = tf.data.Dataset.from_tensor_slices(
      {"question": questions, "answers": answers.to_tensor(""), "index": index})
  return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def run_predictions(predict_step, strategy, examples: Sequence[qa_data.QAExample],
                    batch_size: int, log_every: int = 0) -> List[Dict[str, Any]]:
  """Per-example results (numpy / str values) of `predict_step`, in input order."""
  results: List[Optional[Dict[str, Any]]] = [None] * len(examples)
  for step, batch in enumerate(distribute(strategy, padded_dataset(examples, batch_size))):
    outputs = predict_step(batch)
    indexes = np.concatenate([t.numpy() for t in strategy.experimental_local_results(
        batch["index"])])
    values = {k: np.concatenate([t.numpy() for t in v]) for k, v in outputs.items()}
    for row, i in enumerate(indexes):
      if i >= 0:
        results[i] = {k: v[row] for k, v in values.items()}
    if log_every and (step + 1) % log_every == 0:
      logging.info("Predicted %d/%d questions.", min((step + 1) * batch_size, len(examples)),
                   len(examples))
  for result in results:
    answer = result["answer"]
    result["answer"] = answer.decode("utf-8", errors="replace") if isinstance(
        answer, bytes) else str(answer)
  return results


def eval_metrics(examples: Sequence[qa_data.QAExample],
                 results: Sequence[Dict[str, Any]]) -> Dict[str, float]:
  """The original's eval metrics (`orqa_model.py`): exact_match (token level),
  official_exact_match (normalized strings), reader_oracle, top_k_match, loss."""
  n = max(len(examples), 1)
  metrics = {k: float(sum(float(r[k]) for r in results)) / n for k in EVAL_KEYS}
  metrics["official_exact_match"] = sum(
      qa_metrics.is_correct(e.answers, r["answer"], is_regex=False)
      for e, r in zip(examples, results)) / n
  metrics["num_questions"] = float(len(examples))
  return metrics
