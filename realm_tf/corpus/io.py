"""Reading jsonl(.gz) documents with precise errors, and versioned, atomic corpus output."""

import gzip
import json
import os
import re
import shutil
import time
import zlib
from typing import Iterator, Optional, Sequence, Tuple

from absl import logging

from realm_tf.corpus import manifest as manifest_lib
from realm_tf import errors
from realm_tf import locks


class RecordError(errors.RealmInputError):
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
  line_number = 0
  with open_binary(path) as f:
    try:
      for line_number, line in enumerate(f, start=1):
        line = line.rstrip(b"\r\n")
        if line.strip():
          yield line_number, line
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
      raise errors.InputFileError(path, line_number + 1,
                              f"truncated or corrupt gzip data ({e})") from None


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


file_sha256 = manifest_lib.file_sha256


def shard_name(prefix: str, index: int, num_shards: int, suffix: str = "") -> str:
  """`<prefix>-00003-of-00050<suffix>`, the original's shard naming."""
  return f"{prefix}-{index:05d}-of-{num_shards:05d}{suffix}"


class EmptyCorpusError(errors.RealmInputError):
  """A build produced no records (and `--allow_empty` was not given)."""


# Test hook: pause (forever) at this named point of a commit after touching
# <PAUSE_DIR>/<name>, so that a test can kill the build there.
PAUSE_AT_ENV = "REALM_TF_CORPUS_PAUSE_AT"
PAUSE_DIR_ENV = "REALM_TF_CORPUS_PAUSE_DIR"
PAUSE_POINTS = ("shards_written", "build_renamed", "manifest_replaced")


def pause_point(name: str) -> None:
  """Test hook: blocks forever at `name` if $REALM_TF_CORPUS_PAUSE_AT names it."""
  if name not in os.environ.get(PAUSE_AT_ENV, "").split(","):
    return
  with open(os.path.join(os.environ.get(PAUSE_DIR_ENV, "."), name), "w",
            encoding="utf-8") as f:
    f.write(str(os.getpid()))
  logging.warning("Paused at %s (test hook %s).", name, PAUSE_AT_ENV)
  while True:
    time.sleep(3600)


def _fsync(path: str) -> None:
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


class VersionedOutput:
  """A corpus build staged in `<prefix>.builds/.tmp-<id>/` and committed as a whole.

  Use as a context manager; it holds the build lock of the prefix (a second build of
  the same prefix fails with `LockedError`) and removes the leftovers of killed builds.
  Files are written under `temp_path(name)`; `commit(names, manifest)` renames the
  directory to `<prefix>.builds/<id>/` and then atomically replaces
  `<prefix>.manifest.json` (see `realm_tf.corpus.manifest`). On an exception before the
  commit the staging directory is removed and the previous corpus stays as it was.
  """

  def __init__(self, output_prefix: str, shard_suffix: str = ""):
    self.output_prefix = os.path.abspath(output_prefix)
    self.output_dir = os.path.dirname(self.output_prefix)
    self.base = os.path.basename(self.output_prefix)
    self.shard_suffix = shard_suffix
    self.builds_dir = manifest_lib.builds_dir(self.output_prefix)
    self.manifest_path = manifest_lib.manifest_path(self.output_prefix)
    self.build_id = None
    self.temp_dir = None
    self.final_dir = None
    self._lock = None

  def __enter__(self) -> "VersionedOutput":
    os.makedirs(self.builds_dir, exist_ok=True)
    self._lock = locks.exclusive_lock(os.path.join(self.builds_dir, ".lock"),
                                      f"A corpus build of {self.output_prefix}")
    self._lock.__enter__()
    try:
      self.clean_leftovers()
      self.build_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-{os.getpid()}"
      while os.path.exists(os.path.join(self.builds_dir, self.build_id)):
        self.build_id += "x"
      self.temp_dir = os.path.join(self.builds_dir,
                                   manifest_lib.TEMP_BUILD_PREFIX + self.build_id)
      os.makedirs(self.temp_dir)
    except BaseException:
      self._lock.__exit__(None, None, None)
      raise
    return self

  def clean_leftovers(self) -> None:
    """Removes staging directories of killed builds (this one holds the lock)."""
    for name in os.listdir(self.builds_dir):
      if name.startswith(manifest_lib.TEMP_BUILD_PREFIX):
        logging.warning("Removing the staging directory of a killed build: %s", name)
        shutil.rmtree(os.path.join(self.builds_dir, name), ignore_errors=True)
    # Staging directories of the earlier, unversioned layout.
    for name in os.listdir(self.output_dir):
      if name.startswith(f".{self.base}.tmp-"):
        logging.warning("Removing the staging directory of a killed build: %s", name)
        shutil.rmtree(os.path.join(self.output_dir, name), ignore_errors=True)

  def temp_path(self, name: str) -> str:
    return os.path.join(self.temp_dir, name)

  def _current_directory(self) -> Optional[str]:
    """The build directory the current manifest points at, or None."""
    try:
      manifest = manifest_lib.read_manifest(self.manifest_path)
    except errors.RealmInputError:
      return None
    directory = manifest.get("directory")
    return os.path.normpath(os.path.join(self.output_dir, directory)) if directory else None

  def commit(self, names: Sequence[str], manifest: dict) -> str:
    """Publishes the staged shards `names` with `manifest`; returns the manifest path."""
    for name in names:
      _fsync(self.temp_path(name))
    pause_point("shards_written")
    previous = self._current_directory()
    self.final_dir = os.path.join(self.builds_dir, self.build_id)
    os.rename(self.temp_dir, self.final_dir)
    _fsync(self.builds_dir)
    pause_point("build_renamed")
    manifest = dict(manifest, build_id=self.build_id,
                    directory=os.path.relpath(self.final_dir, self.output_dir))
    staged_manifest = f"{self.manifest_path}.tmp-{os.getpid()}"
    manifest_lib.write_manifest(staged_manifest, manifest)
    os.replace(staged_manifest, self.manifest_path)  # The commit point.
    _fsync(self.output_dir)
    pause_point("manifest_replaced")
    self._remove_old_builds(keep={self.final_dir, previous})
    return self.manifest_path

  def _remove_old_builds(self, keep) -> None:
    """Deletes builds other than `keep` and the shards of the unversioned layout."""
    for name in os.listdir(self.builds_dir):
      path = os.path.join(self.builds_dir, name)
      if name.startswith(".") or path in keep or not os.path.isdir(path):
        continue
      logging.info("Removing an older build: %s", path)
      shutil.rmtree(path, ignore_errors=True)
    flat = re.compile(rf"^{re.escape(self.base)}-\d{{5}}-of-\d{{5}}"
                      rf"{re.escape(self.shard_suffix)}$")
    for name in os.listdir(self.output_dir):
      if flat.match(name):
        logging.info("Removing a shard of the unversioned layout: %s", name)
        os.remove(os.path.join(self.output_dir, name))

  def __exit__(self, exc_type, exc, tb) -> bool:
    try:
      if self.temp_dir and os.path.isdir(self.temp_dir):
        shutil.rmtree(self.temp_dir, ignore_errors=True)
      if (exc_type is not None and not os.path.exists(self.manifest_path) and
          set(os.listdir(self.builds_dir)) <= {".lock"}):
        shutil.rmtree(self.builds_dir, ignore_errors=True)  # A first build that failed.
    finally:
      self._lock.__exit__(exc_type, exc, tb)
    return False
