"""Reading the retrieval corpus Z: sorted GZIP TFRecord shards of blocks (spec 1.2).

Block i of the index is record i of the concatenation of the shards sorted by path. Each
record is a `tf.train.Example` with `title`, `body` (bytes) and `title_token_ids`,
`body_token_ids` (int64 lists), as written by `realm_tf.corpus.build_retrieval_corpus`.
Shard record counts come from the build's `<prefix>.manifest.json` when it lists exactly
these shards, and are counted otherwise.
"""

import concurrent.futures
import hashlib
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import tensorflow as tf

COMPRESSION = "GZIP"
READ_BUFFER_BYTES = 8 << 20
MANIFEST_SUFFIX = ".manifest.json"

BLOCK_FEATURES = {
    "title_token_ids": tf.io.RaggedFeature(tf.int64),
    "body_token_ids": tf.io.RaggedFeature(tf.int64),
}


class CorpusError(ValueError):
  """The retrieval corpus is missing or inconsistent."""


def list_shards(pattern: str) -> List[str]:
  """The shard paths matching a glob (or a comma-separated list of globs), sorted."""
  paths = []
  for part in pattern.split(","):
    if part:
      paths.extend(tf.io.gfile.glob(part))
  paths = sorted(set(p for p in paths if not p.endswith(MANIFEST_SUFFIX)))
  if not paths:
    raise CorpusError(f"No retrieval-corpus shards match {pattern!r}")
  return paths


def parse_blocks(serialized: tf.Tensor) -> Dict[str, tf.RaggedTensor]:
  """Parses a batch of serialized blocks [B] -> int32 ragged token ids [B, (len)]."""
  parsed = tf.io.parse_example(serialized, BLOCK_FEATURES)
  return {name: tf.cast(value, tf.int32) for name, value in parsed.items()}


def parse_block_texts(serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
  """Parses a batch of serialized blocks [B] -> `title`, `body` bytes [B]."""
  return tf.io.parse_example(serialized, {
      "title": tf.io.FixedLenFeature([], tf.string, default_value=""),
      "body": tf.io.FixedLenFeature([], tf.string, default_value="")})


def records_dataset(shard_paths: Sequence[str]) -> tf.data.Dataset:
  """The serialized records of the shards, read sequentially in the given order."""
  return tf.data.TFRecordDataset(list(shard_paths), compression_type=COMPRESSION,
                                 buffer_size=READ_BUFFER_BYTES)


def count_records(path: str) -> int:
  """The number of records in one GZIP TFRecord file."""
  try:
    return int(records_dataset([path]).reduce(tf.constant(0, tf.int64),
                                              lambda n, _: n + 1).numpy())
  except tf.errors.OpError as e:
    raise CorpusError(f"Cannot read the TFRecord shard {path}: {e.message}") from e


def count_records_parallel(paths: Sequence[str], num_threads: Optional[int] = None) -> List[int]:
  """Record counts of `paths`, in path order (the reads run in parallel threads)."""
  with concurrent.futures.ThreadPoolExecutor(num_threads or min(12, len(paths) or 1)) as pool:
    return list(pool.map(count_records, paths))


def find_manifest(shard_paths: Sequence[str]) -> Optional[str]:
  """The corpus build manifest beside the shards that lists exactly them, or None."""
  directory = os.path.dirname(shard_paths[0])
  names = [os.path.basename(p) for p in shard_paths]
  if any(os.path.dirname(p) != directory for p in shard_paths):
    return None
  for candidate in sorted(tf.io.gfile.glob(os.path.join(directory, "*" + MANIFEST_SUFFIX))):
    try:
      with tf.io.gfile.GFile(candidate, "r") as f:
        manifest = json.loads(f.read())
      listed = [s["name"] for s in manifest.get("shards", [])]
    except (ValueError, KeyError, TypeError):
      continue
    if sorted(os.path.basename(n) for n in listed) == names:
      return candidate
  return None


def shard_counts(shard_paths: Sequence[str]) -> Tuple[List[int], Optional[str]]:
  """(record count of each shard, path of the manifest they came from or None)."""
  manifest_path = find_manifest(shard_paths)
  if manifest_path is not None:
    with tf.io.gfile.GFile(manifest_path, "r") as f:
      counts = {os.path.basename(s["name"]): int(s["count"])
                for s in json.loads(f.read())["shards"]}
    return [counts[os.path.basename(p)] for p in shard_paths], manifest_path
  return count_records_parallel(shard_paths), None


def corpus_fingerprint(shard_paths: Sequence[str], counts: Sequence[int],
                       manifest_path: Optional[str] = None) -> str:
  """sha256 of the build manifest, or of the shard names, sizes and counts without one."""
  digest = hashlib.sha256()
  if manifest_path is not None:
    with tf.io.gfile.GFile(manifest_path, "rb") as f:
      digest.update(f.read())
    return digest.hexdigest()
  for path, count in zip(shard_paths, counts):
    size = tf.io.gfile.stat(path).length
    digest.update(f"{os.path.basename(path)}\t{size}\t{count}\n".encode("utf-8"))
  return digest.hexdigest()


def shard_range(num_shards: int, task_index: int, num_tasks: int) -> Tuple[int, int]:
  """Contiguous shard range [start, end) of one worker.

  The shards are split as evenly as possible and the first `num_shards % num_tasks`
  workers get one extra (the original's `embed_documents_using_multiple_tpu_workers`).
  """
  if num_tasks < 1 or not 0 <= task_index < num_tasks:
    raise ValueError(f"task_index={task_index} must be in [0, num_tasks={num_tasks})")
  base, extra = divmod(num_shards, num_tasks)
  start = task_index * base + min(task_index, extra)
  return start, start + base + (1 if task_index < extra else 0)
