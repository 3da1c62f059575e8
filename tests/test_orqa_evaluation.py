"""Tests of orqa.evaluation.qa_metrics, orqa.data.block_records and the orqa.evaluate CLI."""
import conftest  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow)

import gzip
import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from orqa.data import block_records
from orqa import evaluate
from orqa.evaluation import qa_metrics
from realm_tf import errors


def _write_jsonl(path, records):
  with open(path, "w", encoding="utf-8") as f:
    for record in records:
      f.write(json.dumps(record) + "\n")
  return str(path)


@pytest.mark.parametrize("text,expected", [
    ("The Eiffel Tower", "eiffel tower"),
    ("  an   apple,  a PEAR!  ", "apple pear"),
    ("Theatre anthem", "theatre anthem"),  # articles only as whole words
    ("the", ""),
    ("U.S.A.", "usa"),
    ("rock-'n'-roll", "rocknroll"),
    ("Café", "cafe\u0301"),  # NFD keeps the combining accent (not punctuation)
    ("May 18 , 2018", "may 18 2018"),
    ("«quoted»", "«quoted»"),  # not in string.punctuation
    ("tab\tand\nnewline", "tab and newline"),
])
def test_normalize_answer(text, expected):
  assert qa_metrics.normalize_answer(text) == expected


def test_exact_match_score():
  assert qa_metrics.exact_match_score("the Eiffel tower.", "Eiffel Tower")
  assert qa_metrics.exact_match_score("Café", "cafe\u0301")
  assert not qa_metrics.exact_match_score("Café", "Cafe")  # accents are kept
  assert not qa_metrics.exact_match_score("Eiffel", "Eiffel Tower")


def test_regex_match_score():
  assert qa_metrics.regex_match_score("1889 or so", r"18\d\d")
  assert qa_metrics.regex_match_score("NEW YORK", r"new\s?york")  # case-insensitive
  # re.match is anchored at the start (not a search) ...
  assert not qa_metrics.regex_match_score("in 1889", r"18\d\d")
  # ... but not at the end, and MULTILINE does not let ^ skip the first line for match.
  assert qa_metrics.regex_match_score("Sept 5", r"Sept?(ember)?")
  assert not qa_metrics.regex_match_score("x\n1889", r"^1889")
  assert qa_metrics.regex_match_score("Ünïcode", r"ünïcode")
  # An invalid regex is simply wrong.
  assert not qa_metrics.regex_match_score("abc", r"(abc")


def test_is_correct():
  assert qa_metrics.is_correct(["Paris", "City of Light"], "the city of light", False)
  assert not qa_metrics.is_correct(["Paris"], "London", False)
  assert qa_metrics.is_correct([r"(", r"lon\w+"], "London", True)
  assert not qa_metrics.is_correct([], "anything", False)


def test_evaluate_predictions_impl_counts_missing_as_wrong():
  references = {"q1": ["Paris"], "q2": ["1889"], "q3": ["Nile"]}
  predictions = {"q1": "paris", "q2": "1890", "extra": "x"}
  metrics = qa_metrics.evaluate_predictions_impl(references, predictions, False)
  assert metrics == dict(missing_predictions=1, num_correct=1, num_total=3,
                         accuracy=pytest.approx(1 / 3))
  assert qa_metrics.evaluate_predictions_impl({}, {}, False)["accuracy"] == 0.0


def test_regex_flag_warning():
  assert qa_metrics.check_regex_flag("data/curatedtrec.test.jsonl", True)
  assert qa_metrics.check_regex_flag("data/CuratedTrec.resplit.dev.jsonl", True)
  assert qa_metrics.check_regex_flag("data/nq.jsonl", False)
  assert not qa_metrics.check_regex_flag("data/nq.jsonl", True)
  assert not qa_metrics.check_regex_flag("data/CuratedTrec.test.jsonl", False)


def test_evaluate_predictions_files(tmp_path):
  refs = _write_jsonl(tmp_path / "refs.jsonl", [
      {"question": "q1", "answer": ["Paris"]},
      {"question": "q2", "answer": ["1889"], "def_correct_predictions": ["in 1889"]},
      {"question": "q3", "answer": ["Nile"]}])
  preds = _write_jsonl(tmp_path / "preds.jsonl", [
      {"question": "q1", "prediction": "Paris."}, {"question": "q2", "prediction": "in 1889"}])
  metrics = qa_metrics.evaluate_predictions(refs, preds, False)
  assert (metrics["num_correct"], metrics["missing_predictions"]) == (1, 1)
  metrics = qa_metrics.evaluate_predictions(refs, preds, False,
                                            "answer_and_def_correct_predictions")
  assert metrics["num_correct"] == 2


def test_malformed_lines_name_file_and_line(tmp_path):
  path = tmp_path / "bad.jsonl"
  path.write_text('{"question": "q", "answer": ["a"]}\n\nnot json\n', encoding="utf-8")
  with pytest.raises(errors.InputFileError, match=r"bad.jsonl:3: not valid JSON"):
    qa_metrics.read_references(str(path))
  path.write_text('{"question": "q", "answer": [1]}\n', encoding="utf-8")
  with pytest.raises(errors.InputFileError, match=r"bad.jsonl:1: .*'answer'"):
    qa_metrics.read_references(str(path))
  path.write_text('{"prediction": "x"}\n', encoding="utf-8")
  with pytest.raises(errors.InputFileError, match=r"bad.jsonl:1: missing .*question"):
    qa_metrics.read_predictions(str(path))
  with pytest.raises(FileNotFoundError, match="missing.jsonl"):
    qa_metrics.read_references(str(tmp_path / "missing.jsonl"))


def test_answer_matcher_string_and_regex():
  match = qa_metrics.make_answer_matcher(["May 18 , 2018", "the"], is_regex=False)
  assert match("It opened on May 18, 2018 in Paris.")
  assert not match("It opened on May 18 2019.")
  assert not match("The theatre")  # "the" normalizes to nothing: never matches
  # Whole tokens only: "paris" is not found inside "parisian".
  match = qa_metrics.make_answer_matcher(["Paris"], is_regex=False)
  assert not match("A Parisian cafe.") and match("Cafes of PARIS!")
  match = qa_metrics.make_answer_matcher([r"Long Island|New\s?York", "("], is_regex=True)
  assert match("flew from new york in 1927")  # re.search, case-insensitive
  assert not match("flew from Boston")


def test_answer_recall_at_k():
  references = {"q1": ["Paris"], "q2": ["Nile"], "q3": ["1889"], "q4": ["x"]}
  retrieved = {
      "q1": ["Paris is big."] + ["nothing"] * 10,
      "q2": ["nothing"] * 3 + ["The Nile river."],
      "q3": ["nothing"] * 30,
  }
  recall = qa_metrics.answer_recall_at_k(references, retrieved, False, ks=(1, 5, 20))
  assert recall["top_k_accuracy"] == {"1": 0.25, "5": 0.5, "20": 0.5}
  assert recall["top_k_hits"] == {"1": 1, "5": 2, "20": 2}
  assert recall["num_questions"] == 4 and recall["missing_retrievals"] == 1
  with pytest.raises(ValueError):
    qa_metrics.answer_recall_at_k(references, retrieved, False, ks=(0,))


def test_evaluate_run_with_block_ids_and_output(tmp_path):
  refs = _write_jsonl(tmp_path / "curatedtrec.refs.jsonl", [
      {"question": "q1", "answer": [r"Pari?s"]}, {"question": "q2", "answer": ["Nile|Nil"]}])
  blocks = tmp_path / "blocks.jsonl.gz"
  with gzip.open(blocks, "wt", encoding="utf-8") as f:
    for text in ["The Nile flows.", "Paris is a city.", "Nothing here."]:
      f.write(json.dumps({"id": "x", "title": "t", "text": text}) + "\n")
  preds = _write_jsonl(tmp_path / "preds.jsonl", [
      {"question": "q1", "prediction": "Paris", "block_ids": [2, 1]},
      {"question": "q2", "prediction": "The Nile", "block_ids": [0]}])
  output = tmp_path / "out" / "metrics.json"
  metrics = evaluate.run(refs, preds, is_regex=True, blocks_path=str(blocks),
                         recall_ks=[1, 5], output_path=str(output))
  assert metrics["answer"]["num_correct"] == 1  # re.match: "The Nile" does not start with it
  assert metrics["retrieval"]["top_k_accuracy"] == {"1": 0.5, "5": 1.0}
  assert json.loads(output.read_text()) == metrics
  with pytest.raises(evaluate.PredictionsFormatError, match="--blocks_path"):
    evaluate.run(refs, preds, is_regex=True)
  bad = _write_jsonl(tmp_path / "bad.jsonl", [{"question": "q1", "block_ids": [7]}])
  with pytest.raises(evaluate.PredictionsFormatError, match="block 7"):
    evaluate.run(refs, bad, is_regex=True, blocks_path=str(blocks))


def test_block_texts_from_tfrecord_shards(tmp_path):
  prefix = str(tmp_path / "blocks.tfr")
  texts = ["zero", "one", "two", "three"]
  for shard, (start, stop) in enumerate([(0, 3), (3, 4)]):
    options = tf.io.TFRecordOptions(compression_type="GZIP" if shard == 0 else "")
    with tf.io.TFRecordWriter(f"{prefix}-{shard:05d}-of-00002", options) as writer:
      for text in texts[start:stop]:
        feature = {"body": tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[text.encode()]))}
        writer.write(tf.train.Example(features=tf.train.Features(
            feature=feature)).SerializeToString())
  assert block_records.load_block_texts(prefix) == texts
  assert block_records.load_block_texts(prefix + "-*") == texts
  with pytest.raises(FileNotFoundError):
    block_records.load_block_texts(str(tmp_path / "none.tfr"))


def test_block_texts_from_original_raw_blocks_tfr(tmp_path):
  # The original release's blocks.tfr: raw UTF-8 strings, titles in titles.tfr.
  titles, texts = ["Paris", "Zürich", ""], ["Paris is in France.", "Zürich liegt.", "x"]
  for name, values in (("blocks.tfr", texts), ("titles.tfr", titles)):
    with tf.io.TFRecordWriter(str(tmp_path / name)) as writer:
      for value in values:
        writer.write(value.encode("utf-8"))
  blocks = str(tmp_path / "blocks.tfr")
  assert block_records.is_raw_block_records(blocks)
  assert block_records.load_raw_block_records(blocks) == (titles, texts)
  assert block_records.load_block_texts(blocks) == texts
  assert block_records.load_block_texts(blocks, "title") == titles
  with tf.io.TFRecordWriter(str(tmp_path / "titles.tfr")) as writer:
    writer.write(b"Paris")
  with pytest.raises(ValueError, match=r"titles\.tfr holds 1 titles but .*blocks\.tfr "
                     r"holds 3 blocks"):
    block_records.load_raw_block_records(blocks)
  tf.io.gfile.remove(str(tmp_path / "titles.tfr"))
  assert block_records.load_raw_block_records(blocks) == (["", "", ""], texts)

def test_evaluate_cli(tmp_path):
  refs = _write_jsonl(tmp_path / "refs.jsonl", [
      {"question": "q1", "answer": ["Paris"]}, {"question": "q2", "answer": ["Nile"]},
      {"question": "q3", "answer": ["1889"]}])
  preds = _write_jsonl(tmp_path / "preds.jsonl", [
      {"question": "q1", "prediction": "paris", "retrieved_texts": ["in Paris"]},
      {"question": "q2", "prediction": "Amazon", "retrieved_texts": ["x", "Nile"]}])
  output = tmp_path / "metrics.json"
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run(
      [sys.executable, "-m", "orqa.evaluate", f"--references={refs}",
       f"--predictions={preds}", f"--output={output}", "--recall_ks=1,5"],
      cwd=conftest.REPO_ROOT, env=env, capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr
  assert "Found 1 missing predictions." in result.stdout
  assert "Accuracy: 0.3333 (1/3)" in result.stdout
  assert "Answer recall@5: 0.6667 (2/3)" in result.stdout
  metrics = json.loads(output.read_text())
  assert metrics["retrieval"]["top_k_accuracy"] == {"1": pytest.approx(1 / 3),
                                                    "5": pytest.approx(2 / 3)}
  assert metrics["retrieval"]["num_questions"] == 3


@pytest.mark.parametrize("record,message", [
    ({"question": "q1", "retrieved_texts": "Paris is big."}, "'retrieved_texts' must be a "
     "list of strings"),
    ({"question": "q1", "block_texts": ["Paris", 3]}, "'block_texts' must be a list of "
     "strings"),
    ({"question": "q1", "block_ids": [True, 0]}, "'block_ids' must be a list of integers"),
    ({"question": "q1", "retrieved_block_ids": "01"}, "must be a list of integers")])
def test_retrieved_blocks_of_the_wrong_type_name_file_and_line(tmp_path, record, message):
  # A string was scored character by character; booleans passed as block ids 0 and 1.
  refs = _write_jsonl(tmp_path / "refs.jsonl", [{"question": "q1", "answer": ["Paris"]}])
  preds = _write_jsonl(tmp_path / "preds.jsonl", [{"question": "q0", "prediction": "x"},
                                                  record])
  with pytest.raises(errors.InputFileError, match=message) as info:
    evaluate.run(refs, preds, blocks_path=str(tmp_path / "unused.jsonl"))
  assert info.value.path == preds and info.value.line_number == 2


def test_empty_references_are_an_error(tmp_path):
  refs = tmp_path / "refs.jsonl"
  refs.write_text("\n")
  preds = _write_jsonl(tmp_path / "preds.jsonl", [{"question": "q1", "prediction": "x"}])
  result = subprocess.run(
      [sys.executable, "-m", "orqa.evaluate", f"--references={refs}",
       f"--predictions={preds}"], cwd=conftest.REPO_ROOT, capture_output=True, text=True,
      check=False)
  assert result.returncode == 1
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("InputFileError: ") and str(refs) in last and "no references" in last
  assert "Traceback" not in result.stderr
