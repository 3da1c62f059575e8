"""Checks on the sample corpus embedded in realm-tf (pure Python, no TensorFlow)."""
import json
import os
import re
import string

import pytest

SAMPLE_DIR = os.path.join(os.path.dirname(__file__), "..", "realm_tf", "sample_data")
PASSAGES_PATH = os.path.join(SAMPLE_DIR, "passages.jsonl")
QA_TRAIN_PATH = os.path.join(SAMPLE_DIR, "qa_train.jsonl")
QA_HELDOUT_PATH = os.path.join(SAMPLE_DIR, "qa_heldout.jsonl")

_PUNCT = set(string.punctuation)


def normalize(text):
  """SQuAD answer normalisation: lowercase, strip punctuation and articles."""
  text = text.lower()
  text = "".join(ch for ch in text if ch not in _PUNCT)
  text = re.sub(r"\b(a|an|the)\b", " ", text)
  return " ".join(text.split())


def _read_jsonl(path, keys):
  rows = []
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, 1):
      assert line.strip(), f"{path}:{lineno} is blank"
      row = json.loads(line)
      assert isinstance(row, dict), f"{path}:{lineno} is not an object"
      assert set(row) == keys, f"{path}:{lineno} has keys {sorted(row)}"
      rows.append(row)
  return rows


@pytest.fixture(scope="module")
def passages():
  return _read_jsonl(PASSAGES_PATH, {"id", "title", "text"})


@pytest.fixture(scope="module")
def qa_train():
  return _read_jsonl(QA_TRAIN_PATH, {"question", "answer"})


@pytest.fixture(scope="module")
def qa_heldout():
  return _read_jsonl(QA_HELDOUT_PATH, {"question", "answer"})


@pytest.fixture(scope="module")
def qa_pairs(qa_train, qa_heldout):
  return qa_train + qa_heldout


def test_passage_count_and_uniqueness(passages):
  assert len(passages) >= 150
  ids = [p["id"] for p in passages]
  titles = [p["title"] for p in passages]
  assert len(set(ids)) == len(ids)
  assert len(set(titles)) == len(titles)
  for p in passages:
    assert re.fullmatch(r"sample-\d{4}", p["id"]), p["id"]
    assert isinstance(p["title"], str) and p["title"].strip()


def test_passage_lengths(passages):
  for p in passages:
    assert isinstance(p["text"], str)
    n_words = len(p["text"].split())
    assert 40 <= n_words <= 200, (p["title"], n_words)
    n_sentences = len(re.findall(r"[.!?](?:\s|$)", p["text"]))
    assert n_sentences >= 3, (p["title"], n_sentences)


def test_corpus_has_non_ascii_text(passages):
  assert any(not p["text"].isascii() for p in passages)


def test_qa_format(qa_pairs):
  assert len(qa_pairs) >= 100
  for qa in qa_pairs:
    assert isinstance(qa["question"], str) and qa["question"].strip()
    assert isinstance(qa["answer"], list) and qa["answer"]
    assert all(isinstance(a, str) and a.strip() for a in qa["answer"])


def test_every_answer_recurs_across_passages(passages, qa_pairs):
  """Facts recur as in an encyclopedia: each answer occurs (case-sensitively, and after
  SQuAD normalisation) in at least two passages, so REALM can learn to retrieve another
  passage holding a masked fact once the passage it came from is removed."""
  texts = [p["text"] for p in passages]
  normalized_texts = [normalize(t) for t in texts]
  for qa in qa_pairs:
    answer = qa["answer"][0]
    exact = [i for i, t in enumerate(texts) if answer in t]
    assert len(exact) >= 2, (qa["question"], answer, len(exact))
    norm_answer = normalize(answer)
    assert norm_answer
    assert sum(norm_answer in t for t in normalized_texts) >= 2, (qa["question"], answer)


def test_heldout_split_shares_no_answer_or_question_with_train(qa_train, qa_heldout):
  """Held-out questions test generalization: no held-out answer string is a training
  answer, and no question appears on both sides."""
  assert len(qa_heldout) >= 100 and len(qa_train) >= 2 * len(qa_heldout)
  train_answers = {normalize(a) for qa in qa_train for a in qa["answer"]}
  for qa in qa_heldout:
    assert not {normalize(a) for a in qa["answer"]} & train_answers, qa
  questions = [qa["question"] for qa in qa_train + qa_heldout]
  assert len(set(questions)) == len(questions)


def test_questions_do_not_contain_answers(qa_pairs):
  for qa in qa_pairs:
    assert normalize(qa["answer"][0]) not in normalize(qa["question"]), qa
