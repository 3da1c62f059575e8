"""Block texts by block id, for evaluating predictions that name retrieved blocks by id.

Block i is row i of the block index (DESIGN.md): line i of a passages jsonl(.gz)
(`{"id", "title", "text"}`), or record i of the sorted retrieval-corpus TFRecord shards
(GZIP or uncompressed, `body` feature).
"""

import glob as glob_lib
from typing import List

import tensorflow as tf

from orqa import jsonl_io

_GZIP_MAGIC = b"\x1f\x8b"


def _is_jsonl(path: str) -> bool:
  return path.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz"))


def _record_files(pattern: str) -> List[str]:
  files = sorted(tf.io.gfile.glob(pattern))
  if not files and not any(ch in pattern for ch in "*?["):
    files = sorted(tf.io.gfile.glob(glob_lib.escape(pattern) + "-*-of-*"))
  if not files:
    raise FileNotFoundError(f"No block record files match {pattern}")
  return files


def _compression(path: str) -> str:
  with tf.io.gfile.GFile(path, "rb") as f:
    return "GZIP" if f.read(2) == _GZIP_MAGIC else ""


def load_block_texts(path: str, text_field: str = "") -> List[str]:
  """All block texts, in block-id order.

  Args:
    path: a passages jsonl(.gz) file, or a TFRecord file, glob or shard prefix
      (`<prefix>-00000-of-000NN`).
    text_field: the jsonl field or TFRecord bytes feature holding the text
      (default "text" for jsonl, "body" for TFRecords).

  Raises:
    FileNotFoundError: nothing matches `path`.
    jsonl_io.JsonlFormatError: a jsonl line lacks the text field.
  """
  if _is_jsonl(path):
    text_field = text_field or "text"
    texts = []
    for line_number, record in jsonl_io.read_jsonl(path):
      value = record.get(text_field)
      if not isinstance(value, str):
        raise jsonl_io.JsonlFormatError(
            path, line_number, f"missing string field {text_field!r}")
      texts.append(value)
    return texts

  text_field = text_field or "body"
  texts = []
  spec = {text_field: tf.io.FixedLenFeature([], tf.string)}
  for filename in _record_files(path):
    dataset = tf.data.TFRecordDataset(filename, compression_type=_compression(filename))
    dataset = dataset.batch(4096).map(lambda x: tf.io.parse_example(x, spec)[text_field])
    for batch in dataset.as_numpy_iterator():
      texts.extend(t.decode("utf-8", errors="replace") for t in batch)
  return texts
