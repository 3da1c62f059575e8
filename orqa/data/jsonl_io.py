"""JSON-lines reading with errors that name the file and line, and atomic writes.

Plain or gzip-compressed (by the `.gz` suffix) files on any `tf.io.gfile` path are read.
Outputs are written to a temporary file next to the destination and renamed into place,
so a reader never sees a half-written file.
"""

import gzip
import json
import os
import tempfile
from typing import Any, Dict, Iterable, Iterator, Tuple

import tensorflow as tf

from realm_tf import errors


def read_jsonl(path: str) -> Iterator[Tuple[int, Dict[str, Any]]]:
  """Yields (1-based line number, JSON object) for every non-blank line of `path`.

  Raises:
    FileNotFoundError: `path` does not exist.
    errors.InputFileError: a line is not UTF-8, not JSON, or not a JSON object.
  """
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"File not found: {path}")
  with tf.io.gfile.GFile(path, "rb") as raw:
    stream = gzip.GzipFile(fileobj=raw) if path.endswith(".gz") else raw
    for line_number, line in enumerate(stream, start=1):
      if not line.strip():
        continue
      try:
        record = json.loads(line.decode("utf-8"))
      except UnicodeDecodeError as e:
        raise errors.InputFileError(path, line_number, f"not valid UTF-8: {e}") from e
      except json.JSONDecodeError as e:
        raise errors.InputFileError(path, line_number, f"not valid JSON: {e}") from e
      if not isinstance(record, dict):
        raise errors.InputFileError(path, line_number,
                               f"expected a JSON object, got {type(record).__name__}")
      yield line_number, record


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def _atomic_write_text(path: str, text: str) -> None:
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=directory, delete=False,
                                   prefix=f".{os.path.basename(path)}.",
                                   suffix=".tmp") as f:
    f.write(text)
  try:
    os.chmod(f.name, 0o666 & ~_umask())  # NamedTemporaryFile creates files 0600
    os.replace(f.name, path)
  except BaseException:
    os.remove(f.name)
    raise


def write_json(path: str, value: Any) -> None:
  """Writes `value` as indented JSON (keys in insertion order), atomically (temp + rename)."""
  _atomic_write_text(path, json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path: str, records: Iterable[Dict[str, Any]]) -> None:
  """Writes one JSON object per line (UTF-8, not ASCII-escaped), atomically."""
  _atomic_write_text(
      path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
