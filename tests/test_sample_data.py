"""Checks on the sample corpus embedded in realm-tf (pure Python, no TensorFlow)."""
import json
import os
import re
import string

import pytest

SAMPLE_DIR = os.path.join(os.path.dirname(__file__), "..", "realm_tf", "sample_data")
PASSAGES_PATH = os.path.join(SAMPLE_DIR, "passages.jsonl")
QA_PATH = os.path.join(SAMPLE_DIR, "qa.jsonl")

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
def qa_pairs():
  return _read_jsonl(QA_PATH, {"question", "answer"})


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


def test_answers_occur_in_exactly_one_passage(passages, qa_pairs):
  texts = [p["text"] for p in passages]
  normalized_texts = [normalize(t) for t in texts]
  for qa in qa_pairs:
    answer = qa["answer"][0]
    exact = [i for i, t in enumerate(texts) if answer in t]
    assert len(exact) == 1, (qa["question"], answer, len(exact))
    norm_answer = normalize(answer)
    assert norm_answer
    fuzzy = [i for i, t in enumerate(normalized_texts) if norm_answer in t]
    assert fuzzy == exact, (qa["question"], answer, fuzzy, exact)


def test_questions_do_not_contain_answers(qa_pairs):
  for qa in qa_pairs:
    assert normalize(qa["answer"][0]) not in normalize(qa["question"]), qa
