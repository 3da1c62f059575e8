"""Tests of `realm_tf.corpus.build_pretrain_corpus` and its annotators."""

import json
import os

import realm_tf  # pylint: disable=unused-import

import pytest
import tensorflow as tf

from realm_tf.corpus import build_pretrain_corpus
from realm_tf.corpus import manifest as manifest_lib
from realm_tf.corpus import salient_spans as spans_lib
from realm_tf import sample_data
from realm_tf.sample_data import PASSAGES_PATH

TEXT = "Antonín Dvořák was born in Nelahozeves. He visited Zürich in 1890."


def read_examples(prefix):
  paths = manifest_lib.resolve(prefix).shard_paths  # Through the manifest, in order.
  ds = tf.data.TFRecordDataset(paths, compression_type="GZIP")
  return [tf.train.Example.FromString(r.numpy()) for r in ds]


def values(example, name):
  feature = example.features.feature[name]
  return list(getattr(feature, feature.WhichOneof("kind")).value)


def write_jsonl(path, rows):
  with open(path, "w", encoding="utf-8") as f:
    for row in rows:
      f.write(json.dumps(row, ensure_ascii=False) + "\n")
  return str(path)


def decoded(example, kind):
  """The UTF-8 substrings of `text` named by the byte offsets of `kind`."""
  text = values(example, "text")[0]
  starts = values(example, f"{kind}_byte_start")
  limits = values(example, f"{kind}_byte_limit")
  return [text[a:b].decode("utf-8") for a, b in zip(starts, limits)]


def check_invariants(example):
  assert set(example.features.feature) == set(build_pretrain_corpus.FEATURES)
  for name in ("sentence_byte_start", "sentence_byte_limit", "span_byte_start",
               "span_byte_limit"):
    assert example.features.feature[name].HasField("int64_list")
  sentences = list(zip(values(example, "sentence_byte_start"),
                       values(example, "sentence_byte_limit")))
  text_bytes = len(values(example, "text")[0])
  spans = list(zip(values(example, "span_byte_start"), values(example, "span_byte_limit")))
  assert spans
  for a, b in spans:
    assert 0 <= a < b <= text_bytes
    assert any(s <= a and b <= e for s, e in sentences)


def test_rules_annotator_non_ascii_byte_offsets(tmp_path):
  src = write_jsonl(tmp_path / "in.jsonl", [
      {"title": "Dvořák", "text": TEXT},
      {"title": "Empty", "text": "nothing salient here at all."}])
  prefix = str(tmp_path / "out" / "pretrain")
  result = build_pretrain_corpus.build(src, prefix, num_shards=2, eval_shards=1)
  (example,) = read_examples(prefix)
  check_invariants(example)
  assert values(example, "title") == ["Dvořák".encode()]
  assert decoded(example, "sentence") == [
      "Antonín Dvořák was born in Nelahozeves.", "He visited Zürich in 1890."]
  assert decoded(example, "span") == ["Antonín Dvořák", "Nelahozeves", "Zürich", "1890"]
  assert result.counters["passages_dropped_without_spans"] == 1
  assert sorted(os.listdir(tmp_path / "out")) == ["pretrain.builds", "pretrain.manifest.json"]
  assert [os.path.basename(p) for p in manifest_lib.resolve(prefix).shard_paths] == [
      "pretrain-00000-of-00002", "pretrain-00001-of-00002"]
  with open(prefix + ".manifest.json") as f:
    manifest = json.load(f)
  assert manifest["count"] == 1
  assert manifest["eval_shards"] == ["pretrain-00000-of-00002"]
  assert manifest["train_shards"] == ["pretrain-00001-of-00002"]
  assert "first 1 shards" in manifest["split_rule"]
  assert manifest["spans"]["name"] == "rules"
  assert manifest["counters"]["passages_dropped_without_spans"] == 1


def test_precomputed_annotator_converts_characters_to_bytes(tmp_path):
  src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "title": "T", "text": TEXT}])
  start = TEXT.index("Zürich")
  ann = write_jsonl(tmp_path / "ann.jsonl", [{
      "id": "a", "sents": [[0, 40], [40, len(TEXT)]],
      "ents": [[0, 14, "PERSON"], [start, start + 6, "GPE"],
               [TEXT.index("1890"), len(TEXT) - 1, "DATE"],
               [TEXT.index("born"), TEXT.index("born") + 4, "CARDINAL"],  # not salient
               [30, 45, "ORG"]]}])  # crosses the sentence boundary: dropped
  prefix = str(tmp_path / "pre")
  result = build_pretrain_corpus.build(src, prefix, spans=f"precomputed:{ann}",
                                       num_shards=1, eval_shards=0)
  (example,) = read_examples(prefix)
  check_invariants(example)
  assert decoded(example, "span") == ["Antonín Dvořák", "Zürich", "1890"]
  assert decoded(example, "sentence")[1] == "He visited Zürich in 1890."
  assert result.counters["spans_dropped_crossing_sentences"] == 1
  with open(prefix + ".manifest.json") as f:
    assert json.load(f)["spans"]["annotations"]["path"] == os.path.abspath(ann)


def test_sample_corpus_invariants_and_worker_determinism(tmp_path):
  prefixes = []
  for workers in (1, 2):
    prefix = str(tmp_path / f"w{workers}" / "pretrain")
    result = build_pretrain_corpus.build(PASSAGES_PATH, prefix, num_shards=6,
                                         num_workers=workers, chunk_size=16)
    prefixes.append(prefix)
  # Every sample passage has a salient span.
  assert result.num_records == sample_data.num_passages()
  for example in read_examples(prefixes[0]):
    check_invariants(example)
  shards = [manifest_lib.resolve(p).shard_paths for p in prefixes]
  assert len(shards[0]) == 6
  for name_a, name_b in zip(*shards):
    with open(name_a, "rb") as a, open(name_b, "rb") as b:
      assert a.read() == b.read()


def test_eval_shards_must_leave_a_train_split(tmp_path):
  with pytest.raises(ValueError, match="eval_shards"):
    build_pretrain_corpus.build(PASSAGES_PATH, str(tmp_path / "p"), num_shards=5,
                                eval_shards=5)


def test_spacy_missing_pipeline_is_a_clear_error(tmp_path):
  with pytest.raises(spans_lib.AnnotatorUnavailableError,
                     match="spacy|spaCy"):
    build_pretrain_corpus.build(PASSAGES_PATH, str(tmp_path / "p"), spans="spacy",
                                spacy_model="no_such_pipeline_xyz", num_shards=2,
                                eval_shards=1)
  assert not os.path.exists(tmp_path / "p-00000-of-00002")


def _spacy_pipeline_dir(tmp_path):
  """A small spaCy pipeline (sentencizer + entity ruler) saved to disk: no download."""
  spacy = pytest.importorskip("spacy")
  nlp = spacy.blank("en")
  nlp.add_pipe("sentencizer")
  ruler = nlp.add_pipe("entity_ruler")
  ruler.add_patterns([
      {"label": "PERSON", "pattern": "Antonín Dvořák"},
      {"label": "GPE", "pattern": "Zürich"},
      {"label": "DATE", "pattern": "1890"},
      {"label": "CARDINAL", "pattern": "He"}])
  path = tmp_path / "spacy_pipeline"
  nlp.to_disk(path)
  return str(path)


def test_spacy_annotator(tmp_path):
  model = _spacy_pipeline_dir(tmp_path)
  src = write_jsonl(tmp_path / "in.jsonl", [{"title": "T", "text": TEXT}])
  prefix = str(tmp_path / "pre")
  build_pretrain_corpus.build(src, prefix, spans="spacy", spacy_model=model,
                              num_shards=1, eval_shards=0)
  (example,) = read_examples(prefix)
  check_invariants(example)
  assert decoded(example, "span") == ["Antonín Dvořák", "Zürich", "1890"]
  assert decoded(example, "sentence") == [
      "Antonín Dvořák was born in Nelahozeves.", "He visited Zürich in 1890."]


def test_spacy_installed_english_pipeline(tmp_path):
  spacy = pytest.importorskip("spacy")
  try:
    spacy.load("en_core_web_sm")
  except OSError:
    pytest.skip("no spaCy English pipeline (en_core_web_sm) installed")
  src = write_jsonl(tmp_path / "in.jsonl", [{"title": "T", "text": TEXT}])
  prefix = str(tmp_path / "pre")
  build_pretrain_corpus.build(src, prefix, spans="spacy", num_shards=1, eval_shards=0)
  (example,) = read_examples(prefix)
  check_invariants(example)
  assert "Zürich" in decoded(example, "span")
