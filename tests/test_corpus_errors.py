"""Bad input for the corpus builders: typed errors naming file and line, or counted skips."""

import json
import os

import realm_tf  # pylint: disable=unused-import

import pytest

from realm_tf.corpus import build_pretrain_corpus
from realm_tf.corpus import build_retrieval_corpus
from realm_tf.corpus import manifest as manifest_lib
from realm_tf import errors

GOOD = {"id": "g", "title": "Paris", "text": "Paris is a city in France."}

BAD_LINES = {
    "malformed_json": (b'{"title": "Paris", "text": ', "malformed JSON"),
    "missing_title": (b'{"text": "Paris is in France."}', "missing field 'title'"),
    "missing_text": (b'{"title": "Paris"}', "missing field 'text'"),
    "non_utf8": (b'{"title": "Paris", "text": "Caf\xe9 in France."}', "not valid UTF-8"),
    "lone_surrogate": (b'{"title": "Paris", "text": "x \\ud800 France"}', "surrogate"),
    "empty_text": (b'{"title": "Paris", "text": "  "}', "empty 'text'"),
    "not_an_object": (b'["Paris", "France"]', "JSON object"),
    "title_not_string": (b'{"title": 3, "text": "Paris in France."}', "must be a string"),
}


def _good_line(i):
  return json.dumps(dict(GOOD, id=f"g{i}")).encode()


def write_lines(path, lines):
  with open(path, "wb") as f:
    f.write(b"\n".join(lines) + b"\n")
  return str(path)


def _builders(tiny_vocab_path):
  return {
      "retrieval": lambda src, prefix, **kw: build_retrieval_corpus.build(
          src, prefix, tiny_vocab_path, num_shards=2, **kw),
      "pretrain": lambda src, prefix, **kw: build_pretrain_corpus.build(
          src, prefix, num_shards=2, eval_shards=1, **kw),
  }


@pytest.mark.parametrize("builder", ["retrieval", "pretrain"])
@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_bad_record_names_file_and_line(tmp_path, tiny_vocab_path, builder, case):
  line, message = BAD_LINES[case]
  src = write_lines(tmp_path / "in.jsonl", [_good_line(0), b"", line, _good_line(3)])
  out_dir = tmp_path / "out"
  build = _builders(tiny_vocab_path)[builder]
  with pytest.raises(errors.InputFileError, match=message) as info:
    build(src, str(out_dir / "corpus"))
  assert info.value.path == src and info.value.line_number == 3
  assert f"{src}:3:" in str(info.value)
  assert isinstance(info.value, ValueError)
  assert os.listdir(out_dir) == []  # Nothing partial, no temp dir left behind.

  result = build(src, str(out_dir / "corpus"), skip_bad_records=True)
  assert result.num_records == 2
  assert result.counters["bad_records_skipped"] == 1


def tree(root):
  """{relative path: bytes} of every file under root."""
  out = {}
  for directory, _, files in os.walk(root):
    for name in files:
      path = os.path.join(directory, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, root)] = f.read()
  return out


def test_failed_build_keeps_the_previous_corpus(tmp_path, tiny_vocab_path):
  good = write_lines(tmp_path / "good.jsonl", [_good_line(0), _good_line(1)])
  bad = write_lines(tmp_path / "bad.jsonl", [_good_line(0), b"{"])
  prefix = str(tmp_path / "out" / "blocks")
  build_retrieval_corpus.build(good, prefix, tiny_vocab_path, num_shards=2)
  before = tree(tmp_path / "out")
  with pytest.raises(errors.InputFileError):
    build_retrieval_corpus.build(bad, prefix, tiny_vocab_path, num_shards=2)
  assert tree(tmp_path / "out") == before
  # A new build with fewer shards replaces the old corpus entirely.
  build_retrieval_corpus.build(good, prefix, tiny_vocab_path, num_shards=1)
  assert sorted(os.listdir(tmp_path / "out")) == ["blocks.builds", "blocks.manifest.json"]
  assert [os.path.basename(p) for p in manifest_lib.resolve(prefix).shard_paths] == [
      "blocks-00000-of-00001"]


def _annotation(doc_id, ents, sents=None):
  record = {"id": doc_id, "ents": ents}
  if sents is not None:
    record["sents"] = sents
  return json.dumps(record).encode()


ANNOTATION_CASES = {
    "id_mismatch": (_annotation("other", [[0, 5, "GPE"]]), "does not match"),
    "offsets_out_of_range": (_annotation("g1", [[20, 99, "GPE"]]), "out of range"),
    "negative_offsets": (_annotation("g1", [[-1, 5, "GPE"]]), "out of range"),
    "sentence_out_of_range": (_annotation("g1", [[0, 5, "GPE"]], [[0, 400]]),
                              "out of range"),
    "malformed_entity": (_annotation("g1", [["a", 5, "GPE"]]), "not \\[start, end"),
    "malformed_json": (b'{"id": "g1", "ents": [', "malformed JSON"),
    "missing_ents": (b'{"id": "g1"}', "'ents'"),
}


@pytest.mark.parametrize("case", sorted(ANNOTATION_CASES))
def test_bad_annotation_names_annotation_file_and_line(tmp_path, case):
  line, message = ANNOTATION_CASES[case]
  src = write_lines(tmp_path / "in.jsonl", [_good_line(0), _good_line(1), _good_line(2)])
  ann = write_lines(tmp_path / "ann.jsonl", [
      _annotation("g0", [[0, 5, "GPE"]]), line, _annotation("g2", [[0, 5, "GPE"]])])
  prefix = str(tmp_path / "out" / "pre")
  with pytest.raises(errors.InputFileError, match=message) as info:
    build_pretrain_corpus.build(src, prefix, spans=f"precomputed:{ann}", num_shards=2,
                                eval_shards=1)
  assert info.value.path == ann and info.value.line_number == 2
  assert os.listdir(tmp_path / "out") == []
  result = build_pretrain_corpus.build(src, prefix, spans=f"precomputed:{ann}",
                                       num_shards=2, eval_shards=1,
                                       skip_bad_records=True)
  assert result.num_records == 2 and result.counters["bad_records_skipped"] == 1


def test_annotation_file_length_mismatch(tmp_path):
  src = write_lines(tmp_path / "in.jsonl", [_good_line(0), _good_line(1)])
  short = write_lines(tmp_path / "short.jsonl", [_annotation("g0", [[0, 5, "GPE"]])])
  with pytest.raises(errors.InputFileError, match="ended before") as info:
    build_pretrain_corpus.build(src, str(tmp_path / "a" / "p"),
                                spans=f"precomputed:{short}", num_shards=2,
                                eval_shards=1)
  assert info.value.path == short and info.value.line_number == 2
  long = write_lines(tmp_path / "long.jsonl", [
      _annotation(f"g{i}", [[0, 5, "GPE"]]) for i in range(3)])
  with pytest.raises(errors.InputFileError, match="more records") as info:
    build_pretrain_corpus.build(src, str(tmp_path / "b" / "p"),
                                spans=f"precomputed:{long}", num_shards=2,
                                eval_shards=1)
  assert info.value.line_number == 3
  assert not os.listdir(tmp_path / "a") and not os.listdir(tmp_path / "b")


def test_gzip_input_and_missing_input(tmp_path, tiny_vocab_path):
  import gzip  # pylint: disable=g-import-not-at-top
  path = tmp_path / "in.jsonl.gz"
  with gzip.open(path, "wb") as f:
    f.write(_good_line(0) + b"\n" + b"{broken\n")
  with pytest.raises(errors.InputFileError) as info:
    build_retrieval_corpus.build(str(path), str(tmp_path / "o" / "b"), tiny_vocab_path,
                                 num_shards=1)
  assert info.value.line_number == 2
  with pytest.raises(FileNotFoundError):
    build_retrieval_corpus.build(str(tmp_path / "nope.jsonl"), str(tmp_path / "o" / "b"),
                                 tiny_vocab_path)


def test_command_line_reports_bad_input_in_one_line(tmp_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  src = write_lines(tmp_path / "in.jsonl", [_good_line(0), b'{"title": "x"}'])
  proc = subprocess.run(
      [sys.executable, "-m", "realm_tf.corpus.build_pretrain_corpus", f"--input={src}",
       f"--output_prefix={tmp_path / 'out' / 'p'}", "--num_shards=2", "--eval_shards=1",
       "--num_workers=1"],
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
      capture_output=True, text=True)
  assert proc.returncode == 1
  assert f"InputFileError: {src}:2: missing field 'text'" in proc.stderr
  assert "Traceback" not in proc.stderr
  assert os.listdir(tmp_path / "out") == []
