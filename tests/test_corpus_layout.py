"""Corpus builds as versions behind one manifest: resolution, validation, clean-up, locks."""

import gzip
import json
import os
import subprocess
import sys

import realm_tf  # pylint: disable=unused-import

import pytest
import tensorflow as tf

from realm_tf import errors
from realm_tf import locks
from realm_tf.corpus import build_pretrain_corpus
from realm_tf.corpus import build_retrieval_corpus
from realm_tf.corpus import io as corpus_io
from realm_tf.corpus import manifest as manifest_lib
from realm_tf.retrieval import corpus_reader
from tests import retrieval_testing
from tests.conftest import REPO_ROOT


def write_docs(path, texts):
  with open(path, "w", encoding="utf-8") as f:
    for i, text in enumerate(texts):
      f.write(json.dumps({"id": str(i), "title": f"T{i}", "text": text}) + "\n")
  return str(path)


def bodies(paths):
  ds = tf.data.TFRecordDataset(list(paths), compression_type="GZIP")
  return [tf.train.Example.FromString(r.numpy()).features.feature["body"].bytes_list.value[0]
          .decode() for r in ds]


def tree(root):
  out = {}
  for directory, _, files in os.walk(root):
    for name in files:
      with open(os.path.join(directory, name), "rb") as f:
        out[os.path.relpath(os.path.join(directory, name), root)] = f.read()
  return out


TEXTS = [f"Paris is city number {i}." for i in range(7)]


@pytest.fixture
def built(tmp_path, tiny_vocab_path):
  src = write_docs(tmp_path / "in.jsonl", TEXTS)
  prefix = str(tmp_path / "out" / "blocks")
  build_retrieval_corpus.build(src, prefix, tiny_vocab_path, num_shards=3)
  return prefix


def test_every_spelling_of_a_corpus_path_follows_the_manifest(built):
  shards = manifest_lib.resolve(built).shard_paths
  assert len(shards) == 3 and all(".builds" in p for p in shards)
  for spelling in (built, built + ".manifest.json", built + "-*", built + "-*-of-*",
                   built + "-0000[0-2]-of-00003"):
    files = manifest_lib.resolve(spelling)
    assert files.shard_paths == shards, spelling
    assert files.manifest_path == built + ".manifest.json", spelling
    assert corpus_reader.list_shards(spelling) == shards
  # A glob of some of the shard names selects those shards (not a whole build).
  first = manifest_lib.resolve(built + "-00000-*")
  assert first.shard_paths == shards[:1] and first.manifest_path is None
  assert bodies(shards) == TEXTS
  corpus = corpus_reader.open_corpus(built + "-*")
  assert corpus.counts == [3, 3, 1] and corpus.num_blocks == 7
  with pytest.raises(corpus_reader.CorpusError, match="manifest.json"):
    corpus_reader.list_shards(built + "-99*")


def test_unmanaged_shards_and_the_unversioned_layout_are_still_read(tmp_path, built,
                                                                   tiny_vocab_path):
  # Shards of other tools, without a manifest: a plain glob.
  blocks = retrieval_testing.random_blocks(5, 20, seed=1)
  paths = retrieval_testing.write_shards(str(tmp_path / "ext" / "z.tfr"), blocks, [3, 2])
  assert manifest_lib.resolve(str(tmp_path / "ext" / "z.tfr-*")).shard_paths == paths
  # The unversioned layout (shards beside a manifest without "directory") still reads,
  # and a rebuild migrates it: the new build replaces the flat shards.
  flat_dir = tmp_path / "flat"
  flat_dir.mkdir()
  manifest = json.load(open(built + ".manifest.json"))
  for entry, path in zip(manifest["shards"], manifest_lib.resolve(built).shard_paths):
    os.link(path, flat_dir / entry["name"])
  del manifest["directory"]
  (flat_dir / "blocks.manifest.json").write_text(json.dumps(manifest))
  flat = str(flat_dir / "blocks")
  assert bodies(manifest_lib.resolve(flat + "-*").shard_paths) == TEXTS
  src = write_docs(tmp_path / "in2.jsonl", TEXTS[:2])
  build_retrieval_corpus.build(src, flat, tiny_vocab_path, num_shards=1)
  assert sorted(os.listdir(flat_dir)) == ["blocks.builds", "blocks.manifest.json"]
  assert bodies(manifest_lib.resolve(flat + "-*").shard_paths) == TEXTS[:2]


def test_rebuilds_keep_the_previous_build_and_the_fingerprint_follows_content(
    tmp_path, built, tiny_vocab_path):
  first = json.load(open(built + ".manifest.json"))
  src = write_docs(tmp_path / "same.jsonl", TEXTS)
  build_retrieval_corpus.build(src, built, tiny_vocab_path, num_shards=3)
  second = json.load(open(built + ".manifest.json"))
  assert second["directory"] != first["directory"]
  assert second["content_sha256"] == first["content_sha256"]  # Same records, same order.
  reordered = write_docs(tmp_path / "reordered.jsonl", TEXTS[::-1])
  build_retrieval_corpus.build(reordered, built, tiny_vocab_path, num_shards=3)
  third = json.load(open(built + ".manifest.json"))
  assert third["content_sha256"] != first["content_sha256"]
  builds = sorted(os.listdir(built + ".builds"))
  # The new build and the one it replaced (a job may still read it); no older ones.
  assert [b for b in builds if not b.startswith(".")] == sorted(
      [os.path.basename(second["directory"]), os.path.basename(third["directory"])])
  corpus = corpus_reader.open_corpus(built)
  assert corpus.fingerprint == third["content_sha256"]
  # Computed from the files, the fingerprint agrees with the manifest.
  assert corpus_reader.corpus_fingerprint(corpus.shard_paths, corpus.counts) == \
      third["content_sha256"]


@pytest.mark.parametrize("kwargs,message", [
    ({"chunk_size": 0}, "chunk_size"), ({"num_shards": 0}, "num_shards"),
    ({"num_workers": 0}, "num_workers"), ({"mode": "pages"}, "mode"),
    ({"total_documents": -1}, "total_documents")])
def test_invalid_arguments_are_refused_before_anything_is_touched(tmp_path, built,
                                                                  tiny_vocab_path, kwargs,
                                                                  message):
  before = tree(tmp_path / "out")
  src = write_docs(tmp_path / "new.jsonl", ["Rome is a city."])
  with pytest.raises(errors.ArgumentError, match=message):
    build_retrieval_corpus.build(src, built, tiny_vocab_path, **kwargs)
  assert tree(tmp_path / "out") == before
  fresh = tmp_path / "fresh"
  with pytest.raises(errors.ArgumentError):
    build_retrieval_corpus.build(src, str(fresh / "b"), tiny_vocab_path, **kwargs)
  assert not fresh.exists()


@pytest.mark.parametrize("content", [b"", b"\n  \n\n"])
def test_an_empty_result_is_an_error_unless_allowed(tmp_path, built, tiny_vocab_path,
                                                    content):
  before = tree(tmp_path / "out")
  empty = tmp_path / "empty.jsonl"
  empty.write_bytes(content)
  with pytest.raises(corpus_io.EmptyCorpusError, match="allow_empty"):
    build_retrieval_corpus.build(str(empty), built, tiny_vocab_path, num_shards=2)
  assert tree(tmp_path / "out") == before
  # Pre-training passages without any salient span are all dropped: empty too.
  no_spans = write_docs(tmp_path / "no_spans.jsonl", ["nothing salient here."])
  with pytest.raises(corpus_io.EmptyCorpusError):
    build_pretrain_corpus.build(no_spans, str(tmp_path / "p" / "pre"), num_shards=2,
                                eval_shards=1)
  assert not (tmp_path / "p" / "pre.manifest.json").exists()
  result = build_retrieval_corpus.build(str(empty), built, tiny_vocab_path, num_shards=2,
                                        allow_empty=True)
  assert result.num_records == 0
  assert json.load(open(built + ".manifest.json"))["count"] == 0


def test_command_line_refuses_bad_flags_in_one_line(tmp_path, built, tiny_vocab_path):
  before = tree(tmp_path / "out")
  src = write_docs(tmp_path / "new.jsonl", ["Rome is a city."])
  for flag in ("--chunk_size=0", "--num_shards=0"):
    proc = subprocess.run(
        [sys.executable, "-m", "realm_tf.corpus.build_retrieval_corpus", f"--input={src}",
         f"--output_prefix={built}", f"--vocab_path={tiny_vocab_path}", flag],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("ArgumentError: --")
    assert "Traceback" not in proc.stderr
  assert tree(tmp_path / "out") == before


def test_leftovers_of_killed_builds_are_removed(tmp_path, built, tiny_vocab_path):
  stale = [os.path.join(built + ".builds", ".tmp-20200101-000000-1"),
           str(tmp_path / "out" / ".blocks.tmp-abc123")]  # the earlier layout's
  for path in stale:
    os.makedirs(path)
    open(os.path.join(path, "records.spool"), "wb").close()
  src = write_docs(tmp_path / "again.jsonl", TEXTS[:3])
  build_retrieval_corpus.build(src, built, tiny_vocab_path, num_shards=1)
  assert not any(os.path.exists(p) for p in stale)
  assert bodies(manifest_lib.resolve(built).shard_paths) == TEXTS[:3]


def test_a_second_build_of_the_same_prefix_is_refused(tmp_path, built, tiny_vocab_path):
  before = tree(tmp_path / "out")
  src = write_docs(tmp_path / "again.jsonl", TEXTS[:3])
  with locks.exclusive_lock(os.path.join(built + ".builds", ".lock"), "a build"):
    with pytest.raises(locks.LockedError, match="already running"):
      build_retrieval_corpus.build(src, built, tiny_vocab_path, num_shards=1)
  assert tree(tmp_path / "out") == before


def test_truncated_gzip_input_names_the_file_and_line(tmp_path, tiny_vocab_path):
  lines = b"".join(json.dumps({"title": "T", "text": f"Paris {i} " * 50}).encode() + b"\n"
                   for i in range(200))
  path = tmp_path / "in.jsonl.gz"
  data = gzip.compress(lines)
  path.write_bytes(data[:len(data) // 2])
  for build in (lambda out: build_retrieval_corpus.build(str(path), out, tiny_vocab_path,
                                                         num_shards=1),
                lambda out: build_pretrain_corpus.build(str(path), out, num_shards=2,
                                                        eval_shards=1)):
    with pytest.raises(errors.InputFileError, match="truncated or corrupt gzip") as info:
      build(str(tmp_path / "o" / "c"))
    assert info.value.path == str(path) and info.value.line_number > 1
    assert not os.path.exists(tmp_path / "o" / "c.manifest.json")
