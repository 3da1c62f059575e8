r"""Scores open-domain QA predictions: answer accuracy and retrieval answer recall@k.

  python -m orqa.evaluate --references=NQ-open.dev.jsonl --predictions=predictions.jsonl \
      [--is_regex] [--answer_field=answer] [--blocks_path=passages.jsonl.gz] \
      [--output=metrics.json]

References: jsonl `{"question", "answer": [...]}` (regexes for CuratedTREC, with
`--is_regex`). Predictions: jsonl keyed by `question`, with

* `prediction` (string): scored by exact match (or regex match), as the original
  `evaluate_predictions.py`, which printed `Accuracy: x.xxxx (c/t)`;
* retrieved blocks, best first, as texts (`retrieved_texts`) or as block ids
  (`block_ids`, looked up in `--blocks_path`): scored by answer recall@k.

Missing predictions count as wrong. `--output` receives the metrics as JSON, with the
retrieval part in the DPR / Pyserini layout (`{"top_k_accuracy": {"1": ...}, ...}`).
"""

from typing import Dict, List, Optional

from absl import app
from absl import flags

from orqa.data import block_records
from orqa.evaluation import qa_metrics
from orqa.data import jsonl_io
from realm_tf import cli
from realm_tf import errors

TEXT_FIELDS = qa_metrics.RETRIEVED_TEXT_FIELDS
ID_FIELDS = qa_metrics.RETRIEVED_ID_FIELDS

FLAGS = flags.FLAGS


def define_flags():
  """Defines the command-line flags (only when run as a program: tests import this
  module beside other entry points)."""
  flags.DEFINE_string("references", None,
                      "jsonl references: `question` and `answer` (a list of answers).")
  flags.DEFINE_string("predictions", None,
                      "jsonl predictions: `question`, and `prediction` and/or retrieved "
                      f"blocks ({', '.join(TEXT_FIELDS + ID_FIELDS)}).")
  flags.DEFINE_alias("references_path", "references")
  flags.DEFINE_alias("predictions_path", "predictions")
  flags.DEFINE_boolean("is_regex", False,
                       "Reference answers are regular expressions (CuratedTREC only).")
  flags.DEFINE_enum("answer_field", "answer", list(qa_metrics.ANSWER_FIELDS),
                    "Reference answers: `answer`, or `answer` plus EfficientQA's "
                    "`def_correct_predictions`.")
  flags.DEFINE_string("blocks_path", None,
                      "Block texts for predictions that carry block ids: a passages "
                      "jsonl(.gz) (line i = block i), retrieval-corpus TFRecords, or the "
                      "original raw-string blocks.tfr.")
  flags.DEFINE_string("block_text_field", "",
                      "Text field of --blocks_path (default: text for jsonl, body for "
                      "TFRecords).")
  flags.DEFINE_list("recall_ks", [str(k) for k in qa_metrics.DEFAULT_RECALL_KS],
                    "Cut-offs k of the answer recall@k.")
  flags.DEFINE_string("output", None, "Optional JSON file for the metrics (written atomically).")


class PredictionsFormatError(errors.RealmInputError):
  """Predictions whose retrieved blocks cannot be resolved."""


def retrieved_texts(predictions: Dict[str, dict], predictions_path: str,
                    blocks_path: Optional[str] = None,
                    block_text_field: str = "") -> Dict[str, List[str]]:
  """{question: retrieved block texts} for the predictions that carry retrieved blocks.

  Raises:
    PredictionsFormatError: ids are given but no `blocks_path`, or an id is out of range
      or not an integer.
  """
  texts = {}
  ids = {}
  for question, record in predictions.items():
    text_field = next((f for f in TEXT_FIELDS if f in record), None)
    id_field = next((f for f in ID_FIELDS if f in record), None)
    if text_field:
      texts[question] = list(record[text_field])  # Lists of strings (read_predictions).
    elif id_field:
      ids[question] = record[id_field]
  if ids:
    if not blocks_path:
      raise PredictionsFormatError(
          f"{predictions_path} names retrieved blocks by id: pass --blocks_path.")
    blocks = block_records.load_block_texts(blocks_path, block_text_field)
    for question, block_ids in ids.items():
      resolved = []
      for block_id in block_ids:
        if (not isinstance(block_id, int) or isinstance(block_id, bool) or
            not 0 <= block_id < len(blocks)):
          raise PredictionsFormatError(
              f"{predictions_path}: question {question!r} names block {block_id!r}, "
              f"but {blocks_path} holds blocks 0..{len(blocks) - 1}.")
        resolved.append(blocks[block_id])
      texts[question] = resolved
  return texts


def run(references_path: str, predictions_path: str, is_regex: bool = False,
        answer_field: str = "answer", blocks_path: Optional[str] = None,
        block_text_field: str = "", recall_ks=qa_metrics.DEFAULT_RECALL_KS,
        output_path: Optional[str] = None) -> dict:
  """Computes (and prints, and optionally writes) every metric the predictions allow."""
  qa_metrics.check_regex_flag(references_path, is_regex)
  references = qa_metrics.read_references(references_path, answer_field)
  if not references:
    raise errors.InputFileError(references_path, None, "holds no references: nothing to "
                                "score (an accuracy of 0/0 would mean nothing).")
  predictions = qa_metrics.read_predictions(predictions_path)
  print(f"Found {len(references)} references in {references_path}")
  print(f"Found {len(predictions)} predictions in {predictions_path}")
  metrics = {"references": references_path, "predictions": predictions_path,
             "is_regex": is_regex}

  answers = {q: r["prediction"] for q, r in predictions.items() if "prediction" in r}
  if answers:
    em = qa_metrics.evaluate_predictions_impl(references, answers, is_regex)
    metrics["answer"] = em
    print(f"Found {em['missing_predictions']} missing predictions.")
    print(f"Accuracy: {em['accuracy']:.4f} ({em['num_correct']}/{em['num_total']})")

  retrieved = retrieved_texts(predictions, predictions_path, blocks_path, block_text_field)
  if retrieved:
    recall = qa_metrics.answer_recall_at_k(references, retrieved, is_regex,
                                           [int(k) for k in recall_ks])
    metrics["retrieval"] = recall
    for k, value in recall["top_k_accuracy"].items():
      print(f"Answer recall@{k}: {value:.4f} ({recall['top_k_hits'][k]}/"
            f"{recall['num_questions']})")

  if not answers and not retrieved:
    raise PredictionsFormatError(
        f"{predictions_path} has neither `prediction` nor retrieved blocks "
        f"({', '.join(TEXT_FIELDS + ID_FIELDS)}).")
  if output_path:
    jsonl_io.write_json(output_path, metrics)
  return metrics


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  run(FLAGS.references, FLAGS.predictions, FLAGS.is_regex, FLAGS.answer_field,
      FLAGS.blocks_path, FLAGS.block_text_field, FLAGS.recall_ks, FLAGS.output)


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["references", "predictions"])
  cli.run(main)
