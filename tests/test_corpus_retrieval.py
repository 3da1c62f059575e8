"""Tests of `realm_tf.corpus.build_retrieval_corpus`."""

import json
import os
import subprocess
import sys

import realm_tf  # pylint: disable=unused-import

import pytest
import tensorflow as tf

from realm_tf import tokenization
from realm_tf.corpus import manifest as manifest_lib
from realm_tf.corpus import build_retrieval_corpus
from realm_tf.corpus import records
from realm_tf.sample_data import PASSAGES_PATH

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_examples(prefix):
  paths = manifest_lib.resolve(prefix).shard_paths  # Through the manifest, in order.
  ds = tf.data.TFRecordDataset(paths, compression_type="GZIP")
  return [tf.train.Example.FromString(r.numpy()) for r in ds]


def values(example, name):
  feature = example.features.feature[name]
  kind = feature.WhichOneof("kind")
  return list(getattr(feature, kind).value)


def write_jsonl(path, rows):
  with open(path, "w", encoding="utf-8") as f:
    for row in rows:
      f.write(json.dumps(row, ensure_ascii=False) + "\n")
  return str(path)


def test_encode_example_matches_tf_serialization():
  features = {"b": ("bytes", [b"x", "Zürich".encode()]), "a": ("int64", [0, -1, 127,
                                                                         128, 30521,
                                                                         2**40]),
              "empty_i": ("int64", []), "empty_b": ("bytes", [])}
  proto = tf.train.Example(features=tf.train.Features(feature={
      "b": tf.train.Feature(bytes_list=tf.train.BytesList(value=features["b"][1])),
      "a": tf.train.Feature(int64_list=tf.train.Int64List(value=features["a"][1])),
      "empty_i": tf.train.Feature(int64_list=tf.train.Int64List(value=[])),
      "empty_b": tf.train.Feature(bytes_list=tf.train.BytesList(value=[])),
  }))
  assert records.encode_example(features) == proto.SerializeToString(deterministic=True)


def test_shard_ranges_follow_the_original():
  assert records.shard_ranges(10, 4) == [(0, 3), (3, 6), (6, 9), (9, 10)]
  assert records.shard_ranges(5, 4) == [(0, 2), (2, 4), (4, 5), (5, 5)]
  assert records.shard_ranges(0, 2) == [(0, 0), (0, 0)]


def test_passages_mode_features_exactly_as_spec(tmp_path, tiny_vocab_path):
  rows = [{"id": "d0", "title": "Eiffel tower", "text": "The tower was built in 1889."},
          {"title": "Paris", "body": "Paris is a city in France, café au lait."},
          {"title": "", "text": "New York"}]
  src = write_jsonl(tmp_path / "in.jsonl", rows)
  prefix = str(tmp_path / "out" / "blocks.tfr")
  result = build_retrieval_corpus.build(src, prefix, tiny_vocab_path, num_shards=2)
  assert result.num_records == 3
  assert sorted(os.listdir(tmp_path / "out")) == ["blocks.tfr.builds", "blocks.tfr.manifest.json"]
  assert [os.path.basename(p) for p in manifest_lib.resolve(prefix).shard_paths] == [
      "blocks.tfr-00000-of-00002", "blocks.tfr-00001-of-00002"]
  examples = read_examples(prefix)
  tokenizer = tokenization.Tokenizer(tiny_vocab_path)
  for example, row in zip(examples, rows):
    assert set(example.features.feature) == set(build_retrieval_corpus.FEATURES)
    body = row.get("text", row.get("body"))
    assert values(example, "title") == [row["title"].encode()]
    assert values(example, "body") == [body.encode()]
    for name, text in (("title", row["title"]), ("body", body)):
      tokens = tokenizer.tokenize(text)
      ids = values(example, f"{name}_token_ids")
      assert example.features.feature[f"{name}_token_ids"].HasField("int64_list")
      assert ids == [t.id for t in tokens]
      assert values(example, f"{name}_token_texts") == [t.text.encode() for t in tokens]
      assert values(example, f"{name}_token_starts") == [-1] * len(ids)
      assert values(example, f"{name}_token_stops") == [-1] * len(ids)
  with open(prefix + ".manifest.json") as f:
    manifest = json.load(f)
  assert manifest["count"] == 3 and manifest["num_shards"] == 2
  assert [s["count"] for s in manifest["shards"]] == [2, 1]
  assert manifest["shards"][0]["name"] == "blocks.tfr-00000-of-00002"
  assert manifest["mode"] == "passages" and manifest["do_lower_case"] is True
  assert len(manifest["source"]["sha256"]) == 64
  assert manifest["vocab"]["size"] == len(tokenizer.vocab)


def test_real_vocab_sample_corpus_and_uid_match(tmp_path, bert_vocab_path):
  from realm_tf.featurization import documents  # pylint: disable=g-import-not-at-top
  prefix = str(tmp_path / "blocks")
  result = build_retrieval_corpus.build(PASSAGES_PATH, prefix, bert_vocab_path,
                                        num_shards=4)
  with open(PASSAGES_PATH, encoding="utf-8") as f:
    rows = [json.loads(line) for line in f]
  assert result.num_records == len(rows)
  examples = read_examples(prefix)
  tokenizer = tokenization.Tokenizer(bert_vocab_path)
  for example, row in list(zip(examples, rows))[:20]:
    body = values(example, "body")[0]
    assert body == row["text"].encode()
    assert values(example, "body_token_ids") == [t.id for t in tokenizer.tokenize(body)]
    uid = documents.get_document_uid(values(example, "title")[0], body)
    assert uid == documents.get_document_uid(row["title"].encode(), row["text"].encode())


def test_articles_mode_packs_within_budget(tmp_path, tiny_vocab_path):
  sentence = "The tower was built in 1889."  # 7 wordpieces with the tiny vocab.
  rows = [{"title": "Eiffel tower", "text": " ".join([sentence] * 9)},
          {"title": "List of towers", "text": sentence},
          {"title": "Paris", "text": "Paris &amp; France. A " + "a " * 39 + "city."},
          {"title": "Nile (disambiguation)", "text": sentence}]
  src = write_jsonl(tmp_path / "in.jsonl", rows)
  prefix = str(tmp_path / "blocks")
  result = build_retrieval_corpus.build(src, prefix, tiny_vocab_path, mode="articles",
                                        max_block_length=26, num_shards=1)
  examples = read_examples(prefix)
  tokenizer = tokenization.Tokenizer(tiny_vocab_path)
  bodies = [values(e, "body")[0].decode() for e in examples]
  # Budget 26 - 3 - 2 (title) = 21 = three sentences of 7.
  assert bodies[:3] == [" ".join([sentence] * 3)] * 3
  # HTML is unescaped; the 42-piece sentence is an over-long block of its own.
  assert bodies[3] == "Paris & France."
  assert bodies[4].startswith("A a a") and len(bodies) == 5
  assert result.counters["articles_dropped_by_title"] == 2
  assert result.counters["overlong_blocks"] == 1
  for example, body in zip(examples, bodies):
    ids = values(example, "body_token_ids")
    assert ids == [t.id for t in tokenizer.tokenize(body)]
    title_ids = values(example, "title_token_ids")
    assert 3 + len(title_ids) + len(ids) <= 26 or len(ids) == 42


def test_byte_identical_across_worker_counts(tmp_path, tiny_vocab_path):
  prefixes = []
  for workers in (1, 2):
    prefix = str(tmp_path / f"w{workers}" / "blocks")
    build_retrieval_corpus.build(PASSAGES_PATH, prefix, tiny_vocab_path, num_shards=3,
                                 num_workers=workers, chunk_size=16)
    prefixes.append(prefix)
  shards = [manifest_lib.resolve(p).shard_paths for p in prefixes]
  assert len(shards[0]) == 3
  for name_a, name_b in zip(*shards):
    with open(name_a, "rb") as a, open(name_b, "rb") as b:
      assert a.read() == b.read()


def test_command_line(tmp_path, tiny_vocab_path):
  prefix = str(tmp_path / "cli" / "docs.tfr")
  subprocess.run(
      [sys.executable, "-m", "realm_tf.corpus.build_retrieval_corpus",
       f"--input={PASSAGES_PATH}", f"--output_prefix={prefix}",
       f"--vocab_path={tiny_vocab_path}", "--num_shards=2", "--num_workers=1"],
      check=True, cwd=REPO_ROOT, capture_output=True)
  assert os.path.exists(prefix + ".manifest.json")
  (second,) = manifest_lib.resolve(prefix + "-00001-of-*").shard_paths
  assert os.path.exists(second) and second.endswith("docs.tfr-00001-of-00002")
