"""Building an `OrqaModel` from flags / params, and its distributed train and eval steps.

Shared by `orqa.finetune` (training, evaluation, best export) and `orqa.predict`.
"""

import dataclasses
import os
from typing import Any, Callable, Dict, List, Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from orqa.data import block_records
from orqa.data import qa_data
from orqa.evaluation import qa_metrics
from orqa.models import orqa_model
from orqa.models import towers
from realm_tf import errors
from realm_tf.modeling import precision as precision_lib
from realm_tf.retrieval import block_emb_file
from realm_tf.retrieval import corpus_reader
from realm_tf.retrieval import searchers

# Per-question scalars summed over the global batch by the train step.
TRAIN_SUMS = ("loss", "retriever_loss", "reader_loss", "num_read_correct", "exact_match",
              "reader_oracle", "top_5_match", "num_questions", "reader_nonpad_ratio")
# Per-question values returned by the eval / predict step.
EVAL_KEYS = ("exact_match", "reader_oracle", "loss") + tuple(
    f"top_{k}_match" for k in orqa_model.TOP_K_MATCH)
PREDICT_KEYS = ("answer", "score", "block_ids", "predicted_block_id")
BEST_DIR = "best_default"


@dataclasses.dataclass
class ModelParams:
  """What rebuilds the model (written to `model_dir/params.json` by `orqa.finetune`)."""
  retriever_module_path: str
  block_records_path: str
  reader_module_path: Optional[str] = None
  reader_preset: Optional[str] = None
  reader_vocab_path: Optional[str] = None
  reader_do_lower_case: bool = True
  reader_dropout_rate: Optional[float] = None
  searcher: str = searchers.BRUTE_FORCE
  model: Dict[str, Any] = dataclasses.field(default_factory=dict)
  # "auto", "float32" or "mixed_bfloat16" (`realm_tf.modeling.precision`): the policy the
  # reader and span scorer are built with (a SavedModel tower keeps its own).
  precision: str = precision_lib.AUTO

  def orqa_config(self) -> orqa_model.OrqaConfig:
    return orqa_model.OrqaConfig(**self.model)


def load_block_records(path: str):
  """(titles, texts) of all blocks: retrieval-corpus TFRecords (`title`, `body`), a
  passages jsonl(.gz) (`title`, and `text` or else `body`), or the original raw-string
  `blocks.tfr` with its sibling `titles.tfr`."""
  if block_records.is_raw_block_records(path):
    # One pass over each file (load_block_texts per field would read blocks.tfr twice).
    return block_records.load_raw_block_records(path)
  titles = block_records.load_block_texts(path, "title")
  if _is_jsonl(path):
    try:
      return titles, block_records.load_block_texts(path, "text")
    except errors.InputFileError:
      return titles, block_records.load_block_texts(path, "body")
  return titles, block_records.load_block_texts(path, "body")


def load_block_index(params: ModelParams, num_neighbors: int) -> orqa_model.BlockIndex:
  """The frozen index: `<retriever_module_path>/encoded/encoded.ckpt` + block texts."""
  prefix = block_emb_file.checkpoint_prefix(params.retriever_module_path)
  block_emb = block_emb_file.read_block_emb(prefix)
  titles, bodies = load_block_records(params.block_records_path)
  logging.info("Block index %s: %s; %d block records in %s.", prefix, block_emb.shape,
               len(bodies), params.block_records_path)
  return orqa_model.BlockIndex(block_emb, titles, bodies, params.searcher, num_neighbors)


def _is_jsonl(path: str) -> bool:
  return path.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz"))


def check_block_records(params: ModelParams, retriever_tokenizer) -> None:
  """Refuses block records that do not belong to the retriever module's index.

  For retrieval-corpus shards (a realm_tf build), the corpus must be the one the
  module's `encoded/encoded.ckpt` embeds (the fingerprint in its `index_corpus.json`)
  and tokenized with the module's vocabulary (the manifest's vocabulary hash). A jsonl
  or the original raw `blocks.tfr` carries neither; the block count is still checked
  where the index is built.

  Raises:
    CorpusMismatchError: the index was built from another corpus or order.
    VocabMismatchError: the corpus was tokenized with another vocabulary.
  """
  path = params.block_records_path
  if _is_jsonl(path) or block_records.is_raw_block_records(path):
    return
  corpus = corpus_reader.open_corpus(path)
  corpus.check_vocab(retriever_tokenizer.vocab_path,
                     f"the vocabulary of the retriever module {params.retriever_module_path}")
  corpus.check_index(os.path.dirname(block_emb_file.checkpoint_prefix(
      params.retriever_module_path)))


def build_model(params: ModelParams, strategy: tf.distribute.Strategy,
                num_neighbors: Optional[int] = None,
                index: Optional[orqa_model.BlockIndex] = None) -> orqa_model.OrqaModel:
  """The model with its variables (under `strategy.scope()`); the index outside it."""
  config = params.orqa_config()
  if index is None:
    index = load_block_index(params, num_neighbors or config.retrieval_beam_size)
  with strategy.scope(), precision_lib.policy_scope(params.precision):
    tower, retriever_tokenizer = towers.load_embedder_module(params.retriever_module_path)
  check_block_records(params, retriever_tokenizer)
  with strategy.scope():
    reader, reader_tokenizer = towers.build_reader(towers.BertSource(
        path=params.reader_module_path, preset=params.reader_preset,
        vocab_path=params.reader_vocab_path, do_lower_case=params.reader_do_lower_case,
        dropout_rate=params.reader_dropout_rate, path_flag="--reader_module_path",
        preset_flag="--reader_preset"))
    model = orqa_model.OrqaModel(tower, retriever_tokenizer, reader, reader_tokenizer, index,
                                 config, name="orqa")
    model.build_variables()
  orqa_model.log_config(config)
  return model


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
