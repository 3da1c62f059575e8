"""Block texts by block id, for evaluating predictions that name retrieved blocks by id.

Block i is row i of the block index (docs/ARCHITECTURE.md): line i of a passages jsonl(.gz)
(`{"id", "title", "text"}`), record i of the retrieval-corpus TFRecord shards (in the order
of the corpus manifest, see `realm_tf.corpus.manifest`)
(GZIP or uncompressed, `tf.train.Example`s with `title` and `body`), or record i of the
original ORQA/REALM release's `blocks.tfr` (raw UTF-8 strings, no titles), whose
titles are record i of the sibling `titles.tfr`.
"""

import glob as glob_lib
import os
from typing import List, Tuple

from absl import logging
from google.protobuf import message
import tensorflow as tf

from orqa.data import jsonl_io
from realm_tf.corpus import manifest as manifest_lib
from realm_tf import errors

_GZIP_MAGIC = b"\x1f\x8b"
# The original release's title file, next to its blocks.tfr (record i = title of block i).
RAW_TITLES_FILENAME = "titles.tfr"


def _is_jsonl(path: str) -> bool:
  return path.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz"))


def _record_files(pattern: str) -> List[str]:
  """The record files of `pattern`, through the corpus manifest when there is one."""
  files = manifest_lib.resolve(pattern).shard_paths
  if not files and not any(ch in pattern for ch in "*?["):
    files = sorted(tf.io.gfile.glob(glob_lib.escape(pattern) + "-*-of-*"))
  if not files:
    raise FileNotFoundError(f"No block record files match {pattern}")
  return files


def _compression(path: str) -> str:
  with tf.io.gfile.GFile(path, "rb") as f:
    return "GZIP" if f.read(2) == _GZIP_MAGIC else ""


def _read_raw_strings(filename: str) -> List[str]:
  dataset = tf.data.TFRecordDataset(filename, compression_type=_compression(filename))
  texts = []
  for batch in dataset.batch(4096).as_numpy_iterator():
    texts.extend(t.decode("utf-8", errors="replace") for t in batch)
  return texts


def is_raw_block_records(path: str, text_field: str = "") -> bool:
  """Whether `path` holds raw-string records (the original `blocks.tfr`).

  The first record decides: raw unless it parses as a `tf.train.Example` with a `title`,
  `body` (or `text_field`) feature. A jsonl or an empty file is not raw.

  Raises:
    FileNotFoundError: nothing matches `path`.
  """
  if _is_jsonl(path):
    return False
  filename = _record_files(path)[0]
  dataset = tf.data.TFRecordDataset(filename, compression_type=_compression(filename))
  for record in dataset.take(1).as_numpy_iterator():
    try:
      example = tf.train.Example.FromString(record)
    except message.DecodeError:
      return True
    # Most text does not parse as a proto, but some does (as unknown fields): check keys.
    return not {"title", "body", text_field or "body"} & set(example.features.feature)
  return False


def load_raw_block_records(path: str) -> Tuple[List[str], List[str]]:
  """(titles, texts) of the original release's raw-string `blocks.tfr`.

  Args:
    path: the raw-string blocks file (one file; GZIP or uncompressed). Titles come from
      `titles.tfr` in the same directory (record i = title of block i); without it they
      are empty strings, with a warning.

  Raises:
    FileNotFoundError: nothing matches `path`.
    ValueError: `path` matches several files, or `titles.tfr` and the blocks file hold
      different numbers of records.
  """
  files = _record_files(path)
  if len(files) != 1:
    raise ValueError(f"Raw-string block records are one file (the original blocks.tfr); "
                     f"{path} matches {len(files)} files.")
  blocks_path = files[0]
  texts = _read_raw_strings(blocks_path)
  titles_path = os.path.join(os.path.dirname(blocks_path), RAW_TITLES_FILENAME)
  if titles_path == blocks_path or not tf.io.gfile.exists(titles_path):
    logging.warning("No %s next to %s: the %d blocks get empty titles.",
                    RAW_TITLES_FILENAME, blocks_path, len(texts))
    return [""] * len(texts), texts
  titles = _read_raw_strings(titles_path)
  if len(titles) != len(texts):
    raise ValueError(f"{titles_path} holds {len(titles)} titles but {blocks_path} holds "
                     f"{len(texts)} blocks; record i of both must be block i.")
  return titles, texts


def load_block_texts(path: str, text_field: str = "") -> List[str]:
  """All block texts, in block-id order.

  Args:
    path: a passages jsonl(.gz) file, a TFRecord file, glob or shard prefix
      (`<prefix>-00000-of-000NN`) of `tf.train.Example`s, or the original raw-string
      `blocks.tfr` (see `load_raw_block_records`).
    text_field: the jsonl field or TFRecord bytes feature holding the text
      (default "text" for jsonl, "body" for TFRecords). For a raw `blocks.tfr`, "title"
      gives the titles and anything else the block texts.

  Raises:
    FileNotFoundError: nothing matches `path`.
    errors.InputFileError: a jsonl line lacks the text field.
    ValueError: a raw `blocks.tfr` and its `titles.tfr` differ in length.
  """
  if _is_jsonl(path):
    text_field = text_field or "text"
    texts = []
    for line_number, record in jsonl_io.read_jsonl(path):
      value = record.get(text_field)
      if not isinstance(value, str):
        raise errors.InputFileError(
            path, line_number, f"missing string field {text_field!r}")
      texts.append(value)
    return texts

  if is_raw_block_records(path, text_field):
    titles, texts = load_raw_block_records(path)
    return titles if text_field == "title" else texts

  text_field = text_field or "body"
  texts = []
  spec = {text_field: tf.io.FixedLenFeature([], tf.string)}
  for filename in _record_files(path):
    dataset = tf.data.TFRecordDataset(filename, compression_type=_compression(filename))
    dataset = dataset.batch(4096).map(lambda x: tf.io.parse_example(x, spec)[text_field])
    for batch in dataset.as_numpy_iterator():
      texts.extend(t.decode("utf-8", errors="replace") for t in batch)
  return texts
