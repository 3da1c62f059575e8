"""export.serving: one SavedModel from question to answer.

A tiny untrained model on the sample corpus (`tests/serving_testing.py`) is exported; the
SavedModel must load in a fresh process with only `import tensorflow_text` (plus `import
scann` for ScaNN), list its signature in `saved_model_cli`, answer exactly as
`orqa.predict`, and answer malformed requests without failing.
"""

import json
import os
import subprocess
import sys

import pytest

import export  # pylint: disable=unused-import
import numpy as np
import tensorflow as tf

from export import serving
from tests import serving_testing
from orqa.models import answer_text
from orqa.data import jsonl_io
from orqa import predict
from orqa.data import qa_data
from realm_tf import errors
from realm_tf import sample_data
from realm_tf.tokenization import Tokenizer

NUM_QUESTIONS = 12


@pytest.fixture(scope="module")
def base_dir(serving_shared_base):
  return serving_shared_base


@pytest.fixture(scope="module")
def serving_dir(base_dir):
  return serving_testing.cached_serving_model(base_dir)


@pytest.fixture(scope="module")
def questions():
  return [r["question"] for _, r in jsonl_io.read_jsonl(sample_data.QA_TRAIN_PATH)][:NUM_QUESTIONS]


@pytest.fixture(scope="module")
def predictions(base_dir, serving_dir, questions, tmp_path_factory):
  del serving_dir  # Built first: it writes the model too.
  work = tmp_path_factory.mktemp("predict")
  dataset = str(work / "questions.jsonl")
  jsonl_io.write_jsonl(dataset, [{"question": q} for q in questions])
  output = str(work / "predictions.jsonl")
  predict.predict(os.path.join(base_dir, "model"), dataset, output, batch_size=4,
                  num_retrieved=5)
  return [r for _, r in jsonl_io.read_jsonl(output)]


@pytest.fixture(scope="module")
def loaded(serving_dir):
  return serving.load(serving_dir).signatures[serving.SIGNATURE_KEY]


_FRESH_PROCESS = r"""
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import tensorflow_text  # noqa: F401
if sys.argv[3] == "scann":
  import scann  # noqa: F401
import tensorflow as tf
assert "orqa" not in sys.modules and "realm_tf" not in sys.modules and "export" not in sys.modules
model = tf.saved_model.load(sys.argv[1])
questions = json.load(open(sys.argv[2]))
out = model.signatures["serving_default"](question=tf.constant(questions))
result = {k: v.numpy().tolist() for k, v in out.items()}
for k, v in result.items():
  if out[k].dtype == tf.string:
    result[k] = [[s.decode() for s in row] if isinstance(row, list) else row.decode()
                 for row in v]
print("RESULT" + json.dumps(result))
"""


def _answer_in_fresh_process(path, questions, tmp_path, searcher):
  questions_path = tmp_path / "questions.json"
  questions_path.write_text(json.dumps(questions))
  env = dict(os.environ, PYTHONPATH="")
  result = subprocess.run(
      [sys.executable, "-c", _FRESH_PROCESS, path, str(questions_path), searcher],
      capture_output=True, text=True, timeout=240, cwd=str(tmp_path), env=env, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  line = [l for l in result.stdout.splitlines() if l.startswith("RESULT")][-1]
  return json.loads(line[len("RESULT"):])


def test_fresh_process_answers_equal_orqa_predict(serving_dir, questions, predictions,
                                                  tmp_path):
  out = _answer_in_fresh_process(serving_dir, questions, tmp_path, "brute_force")
  for i, expected in enumerate(predictions):
    assert out["answer"][i] == expected["prediction"], i
    assert out["answer_score"][i] == pytest.approx(expected["score"], abs=1e-4)
    assert out["block_ids"][i] == expected["block_ids"]
    assert out["block_titles"][i] == expected["block_titles"]
    assert out["answer_block_id"][i] == expected["predicted_block_id"]
  assert any(a for a in out["answer"])


def test_answer_offsets_point_into_evidence(loaded, questions):
  out = loaded(question=tf.constant(questions))
  for i in range(len(questions)):
    text = out["answer_block_text"][i].numpy()
    start, end = int(out["answer_start"][i]), int(out["answer_end"][i])
    answer = out["answer"][i].numpy().decode()
    assert 0 <= start < end <= len(text)
    evidence = text[start:end].decode()
    # The highlighted original tokens hold the answer's tokens (spaces may differ).
    assert answer.replace(" ", "") in evidence.replace(" ", "")
    assert text.decode() in [t.decode() for t in out["block_texts"][i].numpy()] or (
        int(out["answer_block_id"][i]) not in out["block_ids"][i].numpy())


def test_saved_model_cli_lists_the_signature(serving_dir):
  cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
  result = subprocess.run([cli, "show", "--dir", serving_dir, "--all"], capture_output=True,
                          text=True, timeout=120, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  text = result.stdout
  assert "signature_def['serving_default']" in text
  assert "inputs['question'] tensor_info:" in text
  for key in serving.OUTPUT_KEYS:
    assert f"outputs['{key}'] tensor_info:" in text, key
  with open(os.path.join(serving_dir, serving.CONFIG_FILENAME), encoding="utf-8") as f:
    config = json.load(f)
  assert config["searcher"] == "brute_force" and config["top_k"] == 5


def test_malformed_requests(loaded):
  empty = loaded(question=tf.zeros([0], tf.string))
  assert empty["answer"].shape == [0] and empty["block_ids"].shape == [0, 5]
  blank = loaded(question=tf.constant(["", "   \t"]))
  assert blank["answer"].numpy().tolist() == [b"", b""]
  assert np.all(np.isneginf(blank["answer_score"].numpy()))
  assert np.all(blank["block_ids"].numpy() == -1)
  assert np.all(blank["answer_start"].numpy() == -1)
  long = loaded(question=tf.constant(["why " * 5000, "x" * 200000,
                                      b"\xff\xfe invalid utf-8 eiffel"]))
  assert long["answer"].shape == [3] and long["block_ids"].shape == [3, 5]
  with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):
    loaded(question=tf.constant([1, 2]))
  with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):
    loaded(question=tf.constant([["a"]]))
  # The model still serves after the bad requests.
  assert loaded(question=tf.constant(["where is the eiffel tower"]))["answer"].shape == [1]


def test_predict_answers_blank_questions_as_serving_and_names_bad_input(
    base_dir, serving_dir, loaded, questions, tmp_path):
  del serving_dir  # Built first: it writes the model too.
  model_dir = os.path.join(base_dir, "model")
  dataset = str(tmp_path / "questions.jsonl")
  jsonl_io.write_jsonl(dataset, [{"question": ""}, {"question": questions[0]},
                                 {"question": " \t"}])
  output = str(tmp_path / "predictions.jsonl")
  predict.predict(model_dir, dataset, output, batch_size=2, num_retrieved=5,
                  write_retrieved_texts=True)
  rows = [r for _, r in jsonl_io.read_jsonl(output)]
  served = loaded(question=tf.constant(["", questions[0], " \t"]))
  for i in (0, 2):  # As the serving model: no answer, no blocks.
    assert rows[i]["prediction"] == served["answer"][i].numpy().decode() == ""
    assert rows[i]["score"] is None and rows[i]["predicted_block_id"] == -1
    assert rows[i]["block_ids"] == [] and rows[i]["retrieved_texts"] == []
  assert rows[1]["prediction"] == served["answer"][1].numpy().decode()
  assert rows[1]["block_ids"] == served["block_ids"][1].numpy().tolist()
  # Bad arguments and input are refused before the model loads.
  for kwargs in ({"batch_size": 0}, {"num_retrieved": 0}):
    with pytest.raises(errors.ArgumentError):
      predict.predict(str(tmp_path / "no_model"), dataset, output, **kwargs)
  surrogate = tmp_path / "surrogate.jsonl"
  surrogate.write_text('\n{"question": "ok"}\n{"question": "x \\ud800"}\n')
  with pytest.raises(qa_data.QADataError, match="lone surrogate") as info:
    predict.predict(str(tmp_path / "no_model"), str(surrogate), output)
  assert info.value.line_number == 3


def test_scann_variant_loads_with_import_scann(base_dir, questions, tmp_path):
  pytest.importorskip("scann")
  path = serving_testing.cached_serving_model(base_dir, "scann")
  out = _answer_in_fresh_process(path, questions[:4], tmp_path, "scann")
  assert len(out["answer"]) == 4
  ids = np.array(out["block_ids"])
  assert ids.shape == (4, 5) and ids.min() >= 0 and ids.max() < sample_data.num_passages()
  assert all(len(set(row)) == 5 for row in ids.tolist())


def test_export_is_atomic_and_refuses_to_overwrite(serving_dir, base_dir):
  with pytest.raises(serving.ServingError, match="exists"):
    serving.export_serving_model(os.path.join(base_dir, "model"), serving_dir)
  leftovers = [n for n in os.listdir(os.path.dirname(serving_dir)) if "tmp" in n]
  assert not leftovers


def test_in_graph_final_text_equals_get_final_text():
  tokenizer = Tokenizer(sample_data.VOCAB_PATH, do_lower_case=True)
  texts = [r["text"] for _, r in jsonl_io.read_jsonl(sample_data.PASSAGES_PATH)][:40]
  texts += ["Café ≠ naïve Ünïcode … résumé 1889. U.S.A. x\u200by ß straße", "",
            "Line\u2028separator, Paragraph\u2029separator\u1fefvaria"]
  mapping = answer_text.tokenize_with_original_mapping(texts, tokenizer)
  rng = np.random.default_rng(0)
  preds, spans, expected = [], [], []
  for i in range(len(texts)):
    ids = mapping.wordpiece_ids[i].numpy()
    token_map = mapping.token_map[i].numpy()
    orig = [t.decode() for t in mapping.orig_tokens[i].numpy()]
    starts = rng.integers(0, max(len(ids), 1), 20) if len(ids) else [None]
    for start in starts:
      if start is None:
        pieces, lo, hi = [], -1, -1
      else:
        end = min(len(ids) - 1, int(start) + int(rng.integers(0, 10)))
        pieces = tokenizer.convert_ids_to_tokens(ids[start:end + 1])
        lo, hi = int(token_map[start]), int(token_map[end])
      preds.append(" ".join(pieces))
      spans.append(orig[lo:hi + 1] if lo >= 0 else [])
      expected.append(answer_text.predicted_answer(orig, lo, hi, pieces, True))
  # A span that get_final_text trims (it ends inside a word).
  preds.append("the eiffel tower is a wrought")
  spans.append(["The", "Eiffel", "Tower", "is", "a", "wrought-iron"][:5] + ["wrought"])
  expected.append(answer_text.get_final_text(preds[-1], " ".join(spans[-1]), True))
  preds.append("the eiffel tow")
  spans.append(["The", "Eiffel", "Tower"])
  expected.append(answer_text.get_final_text(preds[-1], " ".join(spans[-1]), True))
  assert expected[-1] == "The Eiffel Tow"
  got = answer_text.final_text(tf.constant(preds), tf.ragged.constant(spans, tf.string),
                               tokenizer).numpy()
  assert [g.decode() for g in got] == expected


def test_token_byte_offsets_match_original_tokens():
  tokenizer = Tokenizer(sample_data.VOCAB_PATH, do_lower_case=True)
  texts = ["Café ≠ naïve\u200b Ünïcode … 1889. U.S.A.\x00x", "plain text, here.",
           "line\u2028sep\u2029para x\x1cy \u1fefz"]
  mapping = answer_text.tokenize_with_original_mapping(texts, tokenizer)
  starts, limits = answer_text.token_byte_offsets(tf.constant(texts), tokenizer)
  for i, text in enumerate(texts):
    raw = text.encode()
    tokens = [raw[s:e] for s, e in zip(starts[i].numpy(), limits[i].numpy())]
    assert tokens == mapping.orig_tokens[i].numpy().tolist()
  assert [t.decode() for t in mapping.orig_tokens[2].numpy()] == [
      "line", "sep", "para", "x", "y", "\u1fef", "z"]
