"""Reading jsonl(.gz) documents with precise errors, and atomic output directories."""

import gzip
import hashlib
import json
import os
import re
import shutil
import tempfile
from typing import Iterator, Optional, Tuple

from absl import logging


class CorpusFormatError(ValueError):
  """A bad input record. Names the file and the 1-based line number."""

  def __init__(self, path: str, line_number: int, reason: str):
    super().__init__(f"{path}:{line_number}: {reason}")
    self.path = path
    self.line_number = line_number
    self.reason = reason


class RecordError(ValueError):
  """A record-level problem, raised inside workers; the caller adds file and line."""


class AnnotationError(RecordError):
  """A problem with a record of the annotation file (not of the input file)."""


def open_binary(path: str):
  """Opens a plain or gzip-compressed (by `.gz` suffix) file for binary reading."""
  if path.endswith(".gz"):
    return gzip.open(path, "rb")
  return open(path, "rb")


def read_lines(path: str) -> Iterator[Tuple[int, bytes]]:
  """Yields (1-based line number, raw line bytes without the newline).

  Blank lines are skipped (a trailing newline at the end of the file is common), but
  they still count for line numbers.
  """
  with open_binary(path) as f:
    for line_number, line in enumerate(f, start=1):
      line = line.rstrip(b"\r\n")
      if line.strip():
        yield line_number, line


def decode_json_line(line: bytes) -> dict:
  """Strict UTF-8 decoding and JSON parsing of one line into a dict.

  Raises:
    RecordError: the bytes are not UTF-8, not JSON, or not a JSON object.
  """
  try:
    text = line.decode("utf-8")
  except UnicodeDecodeError as e:
    raise RecordError(f"not valid UTF-8 ({e.reason} at byte {e.start})") from None
  try:
    value = json.loads(text)
  except json.JSONDecodeError as e:
    raise RecordError(f"malformed JSON ({e.msg} at column {e.colno})") from None
  if not isinstance(value, dict):
    raise RecordError(f"expected a JSON object, got {type(value).__name__}")
  return value


def _check_utf8_string(value: str, field: str) -> None:
  # JSON escapes can smuggle lone surrogates ("\ud800") that have no UTF-8 form.
  try:
    value.encode("utf-8")
  except UnicodeEncodeError:
    raise RecordError(f"field {field!r} is not valid Unicode (lone surrogate)") from None


def parse_document(line: bytes) -> Tuple[Optional[str], str, str]:
  """Parses a `{"title", "text"|"body", "id"?}` line into (id, title, text).

  Raises:
    RecordError: malformed line, missing or non-string title/text, empty text.
  """
  record = decode_json_line(line)
  if "title" not in record:
    raise RecordError("missing field 'title'")
  if "text" in record:
    text_field = "text"
  elif "body" in record:
    text_field = "body"
  else:
    raise RecordError("missing field 'text' (or 'body')")
  title, text = record["title"], record[text_field]
  if not isinstance(title, str):
    raise RecordError(f"field 'title' must be a string, got {type(title).__name__}")
  if not isinstance(text, str):
    raise RecordError(
        f"field {text_field!r} must be a string, got {type(text).__name__}")
  _check_utf8_string(title, "title")
  _check_utf8_string(text, text_field)
  if not text.strip():
    raise RecordError(f"empty {text_field!r}")
  doc_id = record.get("id")
  if doc_id is not None:
    doc_id = str(doc_id)
  return doc_id, title, text


def file_sha256(path: str, chunk_bytes: int = 1 << 20) -> str:
  """Hex SHA-256 of a file's bytes (as stored, i.e. of the .gz for gzip input)."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(chunk_bytes), b""):
      digest.update(block)
  return digest.hexdigest()


def shard_name(prefix: str, index: int, num_shards: int, suffix: str = "") -> str:
  """`<prefix>-00003-of-00050<suffix>`, the original's shard naming (spec 1.2)."""
  return f"{prefix}-{index:05d}-of-{num_shards:05d}{suffix}"


class AtomicOutput:
  """Stages output files in a temp dir next to the prefix; moves them on commit.

  Use as a context manager. Files are written under `self.temp_dir`; `commit(names)`
  renames each into place (`os.replace` is atomic per file), the manifest last, and
  deletes shards of an earlier build with the same prefix that the new one does not
  overwrite. On an exception nothing is moved and the temp dir is removed, so a failed
  build leaves nothing at the output prefix.
  """

  def __init__(self, output_prefix: str, shard_suffix: str = ""):
    self.output_prefix = os.path.abspath(output_prefix)
    self.output_dir = os.path.dirname(self.output_prefix)
    self.shard_suffix = shard_suffix
    self.temp_dir = None

  def __enter__(self) -> "AtomicOutput":
    os.makedirs(self.output_dir, exist_ok=True)
    base = os.path.basename(self.output_prefix)
    self.temp_dir = tempfile.mkdtemp(prefix=f".{base}.tmp-", dir=self.output_dir)
    return self

  def temp_path(self, name: str) -> str:
    return os.path.join(self.temp_dir, name)

  def _stale_shards(self, keep) -> list:
    base = re.escape(os.path.basename(self.output_prefix))
    pattern = re.compile(
        rf"^{base}-\d{{5}}-of-\d{{5}}{re.escape(self.shard_suffix)}$")
    return [n for n in sorted(os.listdir(self.output_dir))
            if pattern.match(n) and n not in keep]

  def commit(self, names, last_name: Optional[str] = None) -> None:
    """Moves `names` (then `last_name`) from the temp dir to the output dir."""
    for stale in self._stale_shards(set(names)):
      logging.warning("Removing shard of an earlier build: %s", stale)
      os.remove(os.path.join(self.output_dir, stale))
    for name in list(names) + ([last_name] if last_name else []):
      os.replace(self.temp_path(name), os.path.join(self.output_dir, name))

  def __exit__(self, exc_type, exc, tb) -> bool:
    shutil.rmtree(self.temp_dir, ignore_errors=True)
    return False
