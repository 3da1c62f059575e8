"""Tests of orqa.data.qa_data: QA jsonl loading, the dev resplit and tf.data input."""
import conftest  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow)

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from orqa import create_data_splits
from orqa.data import qa_data
from realm_tf import errors


def _write(path, lines):
  path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
  return str(path)


def test_load_examples(tmp_path):
  path = _write(tmp_path / "qa.jsonl", [
      json.dumps({"question": "who built it", "answer": ["Eiffel", "Gustave Eiffel"]}),
      "",
      json.dumps({"question": "when", "answer": [], "id": "x"})])
  assert qa_data.load_examples(path) == [
      qa_data.QAExample("who built it", ["Eiffel", "Gustave Eiffel"]),
      qa_data.QAExample("when", [])]


@pytest.mark.parametrize("line,message", [
    ("{bad json", r"qa.jsonl:2: not valid JSON"),
    ("[1, 2]", r"qa.jsonl:2: expected a JSON object"),
    (json.dumps({"answer": ["a"]}), r"qa.jsonl:2: field 'question' must be a string"),
    (json.dumps({"question": "q", "answer": "a"}), r"qa.jsonl:2: field 'answer' must be"),
    (json.dumps({"question": "q", "answer": [1]}), r"qa.jsonl:2: field 'answer' must be"),
])
def test_load_examples_errors_name_file_and_line(tmp_path, line, message):
  path = _write(tmp_path / "qa.jsonl",
                [json.dumps({"question": "q", "answer": ["a"]}), line])
  with pytest.raises(errors.InputFileError, match=message):
    qa_data.load_examples(path)


def test_load_examples_errors_are_typed(tmp_path):
  path = _write(tmp_path / "qa.jsonl", [json.dumps({"question": 3, "answer": []})])
  with pytest.raises(qa_data.QADataError) as info:
    qa_data.load_examples(path)
  assert (info.value.path, info.value.line_number) == (path, 1)
  path = tmp_path / "bytes.jsonl"
  path.write_bytes(b'{"question": "\xff", "answer": []}\n')
  with pytest.raises(errors.InputFileError, match="UTF-8"):
    qa_data.load_examples(str(path))
  with pytest.raises(FileNotFoundError):
    qa_data.load_examples(str(tmp_path / "absent.jsonl"))


def test_resplit_follows_the_hash_buckets():
  questions = [f"question number {i}" for i in range(300)]
  buckets = tf.strings.to_hash_bucket_fast(questions, 100000).numpy()
  expected_dev = [q for q, b in zip(questions, buckets) if b % 10 == 0]
  np.testing.assert_array_equal(qa_data.is_resplit_dev(questions).numpy(),
                                buckets % 10 == 0)
  examples = [qa_data.QAExample(q, [str(i)]) for i, q in enumerate(questions)]
  train, dev = qa_data.resplit(examples)
  assert [e.question for e in dev] == expected_dev
  assert len(train) + len(dev) == 300 and 10 <= len(dev) <= 60
  assert not set(e.question for e in train) & set(expected_dev)
  assert qa_data.resplit([]) == ([], [])


def test_resplit_of_a_real_file_is_deterministic():
  path = conftest.shared_path("data", "qa", "NQ-open.dpr-dev-from-train.jsonl")
  examples = qa_data.load_examples(path)
  assert len(examples) == 8757
  train, dev = qa_data.resplit(examples)
  train_again, dev_again = qa_data.resplit(qa_data.load_examples(path))
  assert (train, dev) == (train_again, dev_again)
  assert len(train) + len(dev) == len(examples)
  # About one question in ten goes to dev (NQ-open: 8757 of 87925 in the original).
  assert 0.08 < len(dev) / len(examples) < 0.12


def test_resplit_reproduces_the_original_webquestions_counts():
  # The original README: WebQuestions resplit train 3417, dev 361 (of 3778 train).
  path = conftest.shared_path("data", "qa", "webquestions.train.jsonl")
  train, dev = qa_data.resplit(qa_data.load_examples(path))
  assert (len(train), len(dev)) == (3417, 361)


def _examples():
  return [qa_data.QAExample("q0", ["a"]), qa_data.QAExample("q1", ["b", "c"]),
          qa_data.QAExample("q2", []), qa_data.QAExample("q3", ["d", "e", "f"]),
          qa_data.QAExample("q4", ["g"])]


def test_dataset_unbatched_like_the_original():
  elements = list(qa_data.make_dataset(_examples()).as_numpy_iterator())
  assert [e["question"] for e in elements] == [b"q0", b"q1", b"q2", b"q3", b"q4"]
  assert elements[1]["answers"].tolist() == [b"b", b"c"]
  assert elements[2]["answers"].shape == (0,)


def test_dataset_ragged_batches():
  batches = list(qa_data.make_dataset(_examples(), batch_size=2))
  assert [b["question"].numpy().tolist() for b in batches] == [
      [b"q0", b"q1"], [b"q2", b"q3"], [b"q4"]]
  assert isinstance(batches[1]["answers"], tf.RaggedTensor)
  assert batches[1]["answers"].to_list() == [[], [b"d", b"e", b"f"]]
  dropped = list(qa_data.make_dataset(_examples(), batch_size=2, drop_remainder=True))
  assert len(dropped) == 2


def test_dataset_padded_batches():
  batches = list(qa_data.make_dataset(_examples(), batch_size=2, pad_answers=True)
                 .as_numpy_iterator())
  assert batches[1]["answers"].tolist() == [[b"", b"", b""], [b"d", b"e", b"f"]]
  assert batches[1]["num_answers"].tolist() == [0, 3]
  assert batches[0]["answers"].tolist() == [[b"a", b""], [b"b", b"c"]]


def test_dataset_shuffle_and_repeat(tmp_path):
  examples = [qa_data.QAExample(f"q{i}", [str(i)]) for i in range(50)]
  dataset = qa_data.make_dataset(examples, batch_size=10, shuffle=True, repeat=True,
                                 seed=3)
  epoch = [q for batch in dataset.take(5) for q in batch["question"].numpy().tolist()]
  assert sorted(epoch) == sorted(f"q{i}".encode() for i in range(50))
  assert epoch != [f"q{i}".encode() for i in range(50)]
  # Answers stay with their question after shuffling.
  for batch in dataset.take(3):
    for question, answers in zip(batch["question"].numpy(), batch["answers"].to_list()):
      assert answers == [question[1:]]
  path = tmp_path / "qa.jsonl"
  path.write_text("".join(json.dumps({"question": e.question, "answer": e.answers}) + "\n"
                          for e in examples), encoding="utf-8")
  train = qa_data.load_dataset(str(path), batch_size=8, training=True, seed=1)
  assert len(list(train.take(20))) == 20  # repeats
  dev = qa_data.load_dataset(str(path), batch_size=8)
  assert sum(int(b["question"].shape[0]) for b in dev) == 50
  with pytest.raises(ValueError):
    qa_data.make_dataset([])


def test_create_data_splits(tmp_path):
  examples = [qa_data.QAExample(f"question {i}", [f"a{i}"]) for i in range(200)]
  train_path = tmp_path / "train.jsonl"
  train_path.write_text("".join(
      json.dumps({"question": e.question, "answer": e.answers, "id": i}) + "\n"
      for i, e in enumerate(examples)), encoding="utf-8")
  test_path = _write(tmp_path / "test.jsonl", [json.dumps({"question": "t", "answer": ["x"]})])
  out = tmp_path / "resplit"
  counts = create_data_splits.create_data_splits(str(train_path), "Sample", str(out),
                                                 test_path)
  expected_train, expected_dev = qa_data.resplit(examples)
  assert counts == {"train": len(expected_train), "dev": len(expected_dev), "test": 1}
  assert qa_data.load_examples(str(out / "Sample.resplit.dev.jsonl")) == expected_dev
  assert qa_data.load_examples(str(out / "Sample.resplit.train.jsonl")) == expected_train
  umask = os.umask(0)
  os.umask(umask)
  assert os.stat(out / "Sample.resplit.dev.jsonl").st_mode & 0o777 == 0o666 & ~umask
  assert sorted(os.listdir(out)) == ["Sample.resplit.dev.jsonl", "Sample.resplit.test.jsonl",
                                     "Sample.resplit.train.jsonl"]
