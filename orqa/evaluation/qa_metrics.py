"""Open-domain QA evaluation: exact/regex match of answers and retrieval answer recall.

The answer metrics are the original `language/orqa/utils/eval_utils.py`: SQuAD-style
normalization and exact match against any reference answer, or, for CuratedTREC whose
references are regular expressions, an anchored case-insensitive regex match.

Retrieval answer recall@k (the share of questions with an answer in one of the top-k
retrieved blocks) follows DPR / Pyserini: a normalized answer must occur as a contiguous
run of whole tokens in the normalized block text ("string" match; the normalization and
matching live in `realm_tf.retrieval.answer_recall`, shared with pre-training), or, for regex references, the pattern must be found anywhere in the block
(`re.search`, case-insensitive).
"""

from typing import Dict, Iterable, List, Mapping, Sequence

from absl import logging

from orqa.data import jsonl_io
from realm_tf import errors
from realm_tf.retrieval.answer_recall import (compile_regex, make_answer_matcher,
                                              normalize_answer)

DEFAULT_RECALL_KS = (1, 5, 20, 100)
ANSWER_FIELDS = ("answer", "answer_and_def_correct_predictions")


def exact_match_score(prediction: str, ground_truth: str) -> bool:
  """Whether the normalized prediction equals the normalized ground truth."""
  return normalize_answer(prediction) == normalize_answer(ground_truth)


def regex_match_score(prediction: str, ground_truth: str) -> bool:
  """Whether the regex `ground_truth` matches at the start of `prediction` (`re.match`).

  Case-insensitive, Unicode, multiline, as the original. An invalid regex gives False.
  """
  regex = compile_regex(ground_truth)
  return regex is not None and regex.match(prediction) is not None


def is_correct(answers: Sequence[str], prediction: str, is_regex: bool) -> bool:
  """Max of the match score over the reference answers (False when there are none)."""
  metric_fn = regex_match_score if is_regex else exact_match_score
  return any(metric_fn(prediction, answer) for answer in answers)


def evaluate_predictions_impl(references: Mapping[str, Sequence[str]],
                              predictions: Mapping[str, str],
                              is_regex: bool) -> Dict[str, float]:
  """Answer accuracy over `references` ({question: answers}).

  Args:
    references: {question: reference answers (strings or regexes)}.
    predictions: {question: predicted answer}. Questions without a prediction count
      as wrong.
    is_regex: whether the references are regular expressions (CuratedTREC).

  Returns:
    {"missing_predictions", "num_correct", "num_total", "accuracy"}; accuracy is
    num_correct / len(references) (0.0 for no references).
  """
  missing = 0
  correct = 0
  for question, answers in references.items():
    if question in predictions:
      correct += int(is_correct(answers, predictions[question], is_regex))
    else:
      missing += 1
  total = len(references)
  return dict(missing_predictions=missing, num_correct=correct, num_total=total,
              accuracy=correct / total if total else 0.0)


def check_regex_flag(references_path: str, is_regex: bool) -> bool:
  """Logs a warning when `is_regex` disagrees with a CuratedTREC references path.

  Returns:
    True when they agree.
  """
  agree = is_regex == ("curatedtrec" in references_path.lower())
  if not agree:
    logging.warning("Regex evaluation should (only) be applied to CuratedTrec "
                    "(is_regex=%s, references %s).", is_regex, references_path)
  return agree


def _string_list(value, path: str, line_number: int, field: str) -> List[str]:
  if isinstance(value, str):
    return [value]
  if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
    raise errors.InputFileError(
        path, line_number, f"field {field!r} must be a list of strings, got {value!r}")
  return value


def _required(record, field: str, path: str, line_number: int):
  if field not in record:
    raise errors.InputFileError(path, line_number, f"missing field {field!r}")
  return record[field]


def read_references(path: str, answer_field: str = "answer") -> Dict[str, List[str]]:
  """{question: answers} from a references jsonl (later duplicates win, as the original).

  Args:
    path: jsonl of `{"question", "answer": [...]}`.
    answer_field: "answer", or "answer_and_def_correct_predictions" (EfficientQA test
      data: `answer` plus the post-hoc rated `def_correct_predictions`).
  """
  if answer_field not in ANSWER_FIELDS:
    raise ValueError(f"answer_field must be one of {ANSWER_FIELDS}, got {answer_field!r}")
  references = {}
  for line_number, record in jsonl_io.read_jsonl(path):
    question = _required(record, "question", path, line_number)
    if not isinstance(question, str):
      raise errors.InputFileError(path, line_number, "field 'question' must be a string")
    answers = _string_list(_required(record, "answer", path, line_number), path,
                           line_number, "answer")
    if answer_field == "answer_and_def_correct_predictions":
      answers = answers + _string_list(record.get("def_correct_predictions", []), path,
                                       line_number, "def_correct_predictions")
    references[question] = answers
  return references


# Retrieved blocks of a prediction: texts (lists of strings) or ids (lists of integers).
RETRIEVED_TEXT_FIELDS = ("retrieved_texts", "block_texts")
RETRIEVED_ID_FIELDS = ("block_ids", "retrieved_block_ids")


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def read_predictions(path: str) -> Dict[str, dict]:
  """{question: prediction record} from a predictions jsonl (later duplicates win).

  Raises:
    errors.InputFileError: a record lacks a string question, has a non-string prediction, or
      retrieved blocks that are not a list of strings (texts) or of integers (ids).
  """
  predictions = {}
  for line_number, record in jsonl_io.read_jsonl(path):
    question = _required(record, "question", path, line_number)
    if not isinstance(question, str):
      raise errors.InputFileError(path, line_number, "field 'question' must be a string")
    if "prediction" in record and not isinstance(record["prediction"], str):
      raise errors.InputFileError(path, line_number,
                                      "field 'prediction' must be a string")
    for field in RETRIEVED_TEXT_FIELDS:
      value = record.get(field)
      if field in record and not (isinstance(value, list) and
                                  all(isinstance(v, str) for v in value)):
        raise errors.InputFileError(path, line_number,
                                        f"field {field!r} must be a list of strings")
    for field in RETRIEVED_ID_FIELDS:
      value = record.get(field)
      if field in record and not (isinstance(value, list) and all(map(_is_int, value))):
        raise errors.InputFileError(path, line_number,
                                        f"field {field!r} must be a list of integers")
    predictions[question] = record
  return predictions


def evaluate_predictions(references_path: str, predictions_path: str, is_regex: bool,
                         answer_field: str = "answer") -> Dict[str, float]:
  """Reads both jsonl files (keyed by question) and returns `evaluate_predictions_impl`."""
  check_regex_flag(references_path, is_regex)
  references = read_references(references_path, answer_field)
  predictions = {q: r["prediction"] for q, r in read_predictions(predictions_path).items()
                 if "prediction" in r}
  logging.info("Found %d references in %s", len(references), references_path)
  logging.info("Found %d predictions in %s", len(predictions), predictions_path)
  return evaluate_predictions_impl(references, predictions, is_regex)


# ----------------------------------------------------------------------------------------
# Retrieval answer recall.


def answer_recall_at_k(references: Mapping[str, Sequence[str]],
                       retrieved: Mapping[str, Sequence[str]],
                       is_regex: bool,
                       ks: Iterable[int] = DEFAULT_RECALL_KS) -> Dict[str, object]:
  """Top-k retrieval answer recall in the DPR / Pyserini JSON layout.

  Args:
    references: {question: answers}; the denominator is len(references).
    retrieved: {question: retrieved block texts, best first}. Questions absent from it
      count as not answered at any k.
    is_regex: regex references (CuratedTREC).
    ks: the cut-offs.

  Returns:
    {"top_k_accuracy": {"1": recall@1, ...}, "top_k_hits": {"1": count, ...},
     "num_questions": n, "missing_retrievals": m}.
  """
  ks = sorted(set(int(k) for k in ks))
  if not ks or ks[0] < 1:
    raise ValueError(f"recall cut-offs must be positive integers, got {ks}")
  hits = {k: 0 for k in ks}
  missing = 0
  for question, answers in references.items():
    if question not in retrieved:
      missing += 1
      continue
    matcher = make_answer_matcher(answers, is_regex)
    texts = retrieved[question]
    first_hit = next((i for i, text in enumerate(texts[:ks[-1]]) if matcher(text)), None)
    if first_hit is not None:
      for k in ks:
        if first_hit < k:
          hits[k] += 1
  total = len(references)
  return {
      "top_k_accuracy": {str(k): hits[k] / total if total else 0.0 for k in ks},
      "top_k_hits": {str(k): hits[k] for k in ks},
      "num_questions": total,
      "missing_retrievals": missing,
  }
