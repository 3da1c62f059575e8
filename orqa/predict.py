r"""Predictions of a fine-tuned ORQA model: `python -m orqa.predict`.

It replaces the original `language/orqa/predict/orqa_predict.py`.

  python -m orqa.predict --model_dir=orqa_dir --dataset_path=questions.jsonl \
      --predictions_path=predictions.jsonl [--batch_size=16] [--num_retrieved=100] \
      [--write_retrieved_texts]

Rebuilds the model of `model_dir/params.json` (written by `orqa.finetune`) and restores
the best checkpoint `model_dir/export/best_default/checkpoint/` (the first `*.index`, as
the original; `--checkpoint_path` overrides; without a best export, the newest training
checkpoint). Each input line (`{"question", ...}`; other fields are kept, as the
original) gets

  prediction      the answer string;
  score           its span score (reader span logit + retriever logit);
  block_ids       the top `--num_retrieved` retrieved blocks (block i = row i of the index);
  block_titles    their titles;
  retrieved_texts their texts (with --write_retrieved_texts);
  predicted_block_id  the block the answer comes from.

`python -m orqa.evaluate --references=... --predictions=... [--blocks_path=<shards>]`
scores the file (exact match and answer recall@k).
"""

import os
import time

import orqa  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow loads)
from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from orqa.data import jsonl_io
from orqa.data import qa_data
from orqa.experiments import finetune_steps
from orqa.experiments import finetune_training
from orqa.experiments import training_utils
from orqa.models import builder
from realm_tf import cli
from realm_tf import errors
from realm_tf.retrieval import export_dirs
from realm_tf.training import strategies

FLAGS = flags.FLAGS


def define_flags():
  """The original `orqa_predict` flags plus batching and retrieval output."""
  flags.DEFINE_string("model_dir", None, "An orqa.finetune model_dir.")
  flags.DEFINE_string("dataset_path", None, "Questions jsonl (`question`; answers unused).")
  flags.DEFINE_string("predictions_path", None, "Output jsonl.")
  flags.DEFINE_string("checkpoint_path", None,
                      "Checkpoint prefix to restore (default: the best export).")
  flags.DEFINE_integer("batch_size", 16, "Questions per step.")
  flags.DEFINE_integer("num_retrieved", 100,
                       "Retrieved block ids written per question (the retrieval beam; at "
                       "least the reader beam).")
  flags.DEFINE_boolean("write_retrieved_texts", False, "Also write the retrieved texts.")
  flags.DEFINE_boolean("print_prediction_samples", True,
                       "Log predictions at power-of-two indexes.")
  flags.DEFINE_enum("strategy", "default", list(strategies.STRATEGIES),
                    "tf.distribute strategy.")
  flags.mark_flags_as_required(["model_dir", "dataset_path", "predictions_path"])


def checkpoint_to_restore(model_dir: str, checkpoint_path=None) -> str:
  """The best export's checkpoint, else the newest training checkpoint.

  Raises:
    FileNotFoundError: neither exists.
  """
  if checkpoint_path:
    return checkpoint_path
  best = os.path.join(model_dir, export_dirs.EXPORT_DIR, finetune_training.BEST_DIR, "checkpoint")
  indexes = sorted(tf.io.gfile.glob(os.path.join(best, "*.index")))
  if indexes:
    return indexes[0][:-len(".index")]
  latest = tf.train.latest_checkpoint(os.path.join(model_dir, training_utils.CHECKPOINT_DIR))
  if latest:
    logging.warning("No best export in %s; restoring the newest checkpoint %s.", best,
                    latest)
    return latest
  raise FileNotFoundError(f"No checkpoint in {best} nor in "
                          f"{os.path.join(model_dir, training_utils.CHECKPOINT_DIR)}.")


def load_predictor(model_dir: str, strategy, num_retrieved: int, checkpoint_path=None):
  """(model, predict_step) with the restored weights of `model_dir`."""
  params = training_utils.read_params(model_dir)
  model_params = builder.ModelParams(**params["model"])
  config = model_params.orqa_config()
  beam = max(num_retrieved, config.reader_beam_size)
  model = builder.build_model(model_params, strategy, num_neighbors=beam)
  items = dict(model=model)
  if params.get("refresh_index_every_steps"):
    items["block_emb"] = model.index.block_emb
  path = checkpoint_to_restore(model_dir, checkpoint_path)
  with strategy.scope():
    tf.train.Checkpoint(**items).read(path).expect_partial().assert_existing_objects_matched()
  if params.get("refresh_index_every_steps"):
    model.index.assign(model.index.block_emb.numpy())
  logging.info("Restored %s.", path)
  return model, finetune_steps.make_predict_step(model, strategy, with_labels=False,
                                               retrieval_beam_size=beam)


def read_questions(dataset_path: str):
  """The records of a questions jsonl, each with a string `question` of valid Unicode.

  Raises:
    QADataError: names the file and line of a record without one.
  """
  records = []
  for line_number, record in jsonl_io.read_jsonl(dataset_path):
    question = record.get("question")
    if not isinstance(question, str):
      raise qa_data.QADataError(dataset_path, line_number, "field 'question' must be a string")
    try:
      question.encode("utf-8")
    except UnicodeEncodeError:
      raise qa_data.QADataError(dataset_path, line_number, "field 'question' is not valid "
                                "Unicode (a lone surrogate)") from None
    records.append(record)
  return records


# What a blank question gets, as the serving model answers it: no answer, no blocks.
_NO_ANSWER = dict(prediction="", score=None, predicted_block_id=-1, block_ids=[],
                  block_titles=[])


def predict(model_dir: str, dataset_path: str, predictions_path: str, batch_size: int = 16,
            num_retrieved: int = 100, write_retrieved_texts: bool = False,
            checkpoint_path=None, strategy=None, print_samples: bool = False) -> int:
  """Writes the predictions file; returns the number of questions.

  A blank question gets the empty prediction (score null, no retrieved blocks), as the
  serving model answers it.

  Raises:
    ArgumentError: `batch_size` or `num_retrieved` is not positive, or `batch_size` is
      not a multiple of the replicas.
    QADataError: a record without a string question of valid Unicode (file and line).
  """
  strategy = strategy or tf.distribute.get_strategy()
  for name, value in (("batch_size", batch_size), ("num_retrieved", num_retrieved)):
    if value < 1:
      raise errors.ArgumentError(f"--{name}={value} must be positive.")
  if batch_size % strategy.num_replicas_in_sync:
    raise errors.ArgumentError(f"--batch_size={batch_size} is not a multiple of the "
                               f"{strategy.num_replicas_in_sync} replicas.")
  records = read_questions(dataset_path)
  asked = [i for i, r in enumerate(records) if r["question"].strip()]
  model, predict_step = load_predictor(model_dir, strategy, num_retrieved, checkpoint_path)
  examples = [qa_data.QAExample(records[i]["question"], []) for i in asked]
  start = time.monotonic()
  results = [None] * len(records)
  if examples:
    for i, result in zip(asked, finetune_steps.run_predictions(
        predict_step, strategy, examples, batch_size, log_every=50)):
      results[i] = result
  titles = model.index.titles.numpy()
  bodies = model.index.bodies.numpy() if write_retrieved_texts else None
  outputs = []
  for i, (record, result) in enumerate(zip(records, results)):
    if result is None:
      outputs.append(dict(record, **_NO_ANSWER,
                          **({"retrieved_texts": []} if bodies is not None else {})))
      continue
    ids = [int(b) for b in result["block_ids"][:num_retrieved] if b >= 0]
    output = dict(record, prediction=result["answer"], score=float(result["score"]),
                  predicted_block_id=int(result["predicted_block_id"]), block_ids=ids,
                  block_titles=[titles[b].decode("utf-8", errors="replace") for b in ids])
    if bodies is not None:
      output["retrieved_texts"] = [bodies[b].decode("utf-8", errors="replace") for b in ids]
    outputs.append(output)
    if print_samples and (i & (i - 1)) == 0:
      logging.info("[%d] %s -> %s", i, record["question"], result["answer"])
  if not records:
    logging.warning("%s holds no questions.", dataset_path)
  jsonl_io.write_jsonl(predictions_path, outputs)
  elapsed = time.monotonic() - start
  logging.info("Wrote %d predictions to %s (%.1f questions/s).", len(outputs),
               predictions_path, len(outputs) / max(elapsed, 1e-9))
  return len(outputs)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  predict(FLAGS.model_dir, FLAGS.dataset_path, FLAGS.predictions_path, FLAGS.batch_size,
          FLAGS.num_retrieved, FLAGS.write_retrieved_texts, FLAGS.checkpoint_path,
          strategies.make_strategy(FLAGS.strategy), FLAGS.print_prediction_samples)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
