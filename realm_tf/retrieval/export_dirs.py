"""Timestamped export directories under `model_dir/export/` (docs/ARCHITECTURE.md).

Exports live in `model_dir/export/<prefix>/<ts>/` where `<ts>` is an integer Unix
timestamp. Discovery sorts by the *integer* timestamp (so 10 comes after 2) and ignores
any other name, in particular the `temp-<ts>` directories of an export in progress. A
directory becomes visible to readers only when a finished directory is renamed into
place (`commit_directory`), so a reader never sees a partial export.

This is the original's `export_utils` (`export_paths`, `best_export_path` here named
`newest_export_path`, `tfhub_export_path`, `clean_tfhub_exports`) plus the atomic-commit
helpers that the original left to the Estimator exporters.
"""

import os
import re
import shutil
import time
from typing import List, Optional

import tensorflow as tf

from realm_tf import errors

EXPORT_DIR = "export"
TIMESTAMP_PATTERN = re.compile(r"^(?P<timestamp>[0-9]+)$")
GLOBAL_STEP_FILENAME = "global_step.txt"


class ExportDirError(errors.RealmInputError):
  """An export directory is missing, malformed or in an unexpected place."""


def export_base(model_dir: str, prefix: str) -> str:
  """`model_dir/export/<prefix>` (trailing slashes on model_dir are harmless)."""
  return os.path.join(os.path.normpath(model_dir), EXPORT_DIR, prefix)


def timestamp_of(path: str) -> Optional[int]:
  """The integer timestamp of an export path `.../<digits>[/]`, or None."""
  match = TIMESTAMP_PATTERN.match(os.path.basename(os.path.normpath(path)))
  return int(match.group("timestamp")) if match else None


def export_paths(base_dir: str) -> List[str]:
  """The `<base_dir>/<digits>` directories, oldest first by integer timestamp.

  Names that are not all digits (`temp-<ts>`, stray files) are ignored; a missing
  `base_dir` gives an empty list.
  """
  if not tf.io.gfile.isdir(base_dir):
    return []
  found = []
  for name in tf.io.gfile.listdir(base_dir):
    name = name.rstrip("/")
    ts = timestamp_of(name)
    path = os.path.join(base_dir, name)
    if ts is not None and tf.io.gfile.isdir(path):
      found.append((ts, path))
  return [path for _, path in sorted(found)]


def newest_export_path(model_dir: str, prefix: str) -> Optional[str]:
  """The newest `model_dir/export/<prefix>/<ts>`, or None (the original's
  `best_export_path`, which returned the newest, not the best)."""
  paths = export_paths(export_base(model_dir, prefix))
  return paths[-1] if paths else None


def tfhub_export_path(model_dir: str, hub_prefix: str, module_prefix: str) -> Optional[str]:
  """The newest `model_dir/export/<hub_prefix>/<ts>/<module_prefix>`, or None."""
  newest = newest_export_path(model_dir, hub_prefix)
  return os.path.join(newest, module_prefix) if newest else None


def clean_exports(model_dir: str, prefix: str, exports_to_keep: int) -> List[str]:
  """Deletes all but the newest `exports_to_keep` exports of `prefix`; returns the deleted.

  Like the original `clean_tfhub_exports`, it refuses to delete recursively anything
  whose path lacks `/export/`.
  """
  if exports_to_keep < 1:
    raise ValueError(f"exports_to_keep must be at least 1, got {exports_to_keep}")
  paths = export_paths(export_base(model_dir, prefix))
  deleted = []
  for path in paths[:-exports_to_keep]:
    if "/export/" not in path.replace(os.sep, "/"):
      raise ExportDirError(f"Refusing to delete {path}: it is not under an export/ dir.")
    tf.io.gfile.rmtree(path)
    deleted.append(path)
  return deleted


clean_tfhub_exports = clean_exports


def read_global_step(export_dir: str) -> Optional[int]:
  """The step in `<export_dir>/global_step.txt`, or None if absent or unreadable."""
  path = os.path.join(export_dir, GLOBAL_STEP_FILENAME)
  try:
    with tf.io.gfile.GFile(path, "r") as f:
      return int(f.read().strip())
  except (tf.errors.NotFoundError, ValueError, OSError):
    return None


def write_text_atomic(path: str, text: str) -> None:
  """Writes `text` to `path` through a temp file and a rename."""
  tmp = f"{path}.tmp-{os.getpid()}"
  with tf.io.gfile.GFile(tmp, "w") as f:
    f.write(text)
  tf.io.gfile.rename(tmp, path, overwrite=True)


def write_global_step(export_dir: str, step: int) -> None:
  """Writes `<export_dir>/global_step.txt` atomically."""
  write_text_atomic(os.path.join(export_dir, GLOBAL_STEP_FILENAME), f"{int(step)}\n")


def new_timestamp(base_dir: str, now: Optional[float] = None) -> int:
  """An integer Unix timestamp greater than every export's in `base_dir`."""
  ts = int(now if now is not None else time.time())
  existing = [timestamp_of(p) for p in export_paths(base_dir)]
  if existing and existing[-1] >= ts:
    ts = existing[-1] + 1
  return ts


def temp_dir_for(final_dir: str) -> str:
  """A fresh sibling `temp-<name>-<pid>` of `final_dir` (ignored by discovery)."""
  parent, name = os.path.split(os.path.normpath(final_dir))
  return os.path.join(parent, f"temp-{name}-{os.getpid()}-{time.monotonic_ns()}")


def commit_directory(temp_dir: str, final_dir: str) -> str:
  """Makes a finished directory visible by renaming it to `final_dir` (atomic on POSIX).

  Raises:
    ExportDirError: `final_dir` already exists (an export is never overwritten).
  """
  if os.path.lexists(final_dir) or tf.io.gfile.exists(final_dir):
    raise ExportDirError(f"Cannot commit {temp_dir}: {final_dir} already exists.")
  tf.io.gfile.makedirs(os.path.dirname(os.path.normpath(final_dir)))
  if "://" in final_dir:
    tf.io.gfile.rename(temp_dir, final_dir)  # Not atomic on object stores.
  else:
    os.rename(temp_dir, final_dir)
    _fsync_dir(os.path.dirname(os.path.normpath(final_dir)))
  return final_dir


def _fsync_dir(path: str) -> None:
  """Flushes a directory entry (the rename) to disk where the OS allows it."""
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


def remove_tree(path: str) -> None:
  """Deletes a directory tree if it exists (temp/staging dirs only)."""
  if "://" in path:
    if tf.io.gfile.exists(path):
      tf.io.gfile.rmtree(path)
  elif os.path.isdir(path):
    shutil.rmtree(path)
  elif os.path.lexists(path):
    os.remove(path)
