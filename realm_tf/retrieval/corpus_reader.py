"""Reading the retrieval corpus Z: GZIP TFRecord shards of blocks.

Block i of the index is record i of the concatenation of the shards in corpus order.
Each record is a `tf.train.Example` with `title`, `body` (bytes) and `title_token_ids`,
`body_token_ids` (int64 lists), as written by `realm_tf.corpus.build_retrieval_corpus`.
A corpus path is resolved through the build's manifest (`realm_tf.corpus.manifest`:
the prefix, the manifest, or a glob of shard names); shard record counts come from the
manifest, and are counted for shards that no manifest lists.

`open_corpus` gives a `RetrievalCorpus`: the shards, counts, the corpus fingerprint (the
SHA-256 of the records, recorded by every index built from it) and the checks consumers
run: the vocabulary (`check_vocab`) and an index's corpus (`check_index`).
"""

import concurrent.futures
import dataclasses
import functools
import hashlib
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from absl import logging
from google.protobuf import message
import tensorflow as tf

from realm_tf.corpus import manifest as manifest_lib
from realm_tf import errors
from realm_tf.retrieval import block_emb_file

COMPRESSION = "GZIP"
READ_BUFFER_BYTES = 8 << 20

BLOCK_FEATURES = {
    "title_token_ids": tf.io.RaggedFeature(tf.int64),
    "body_token_ids": tf.io.RaggedFeature(tf.int64),
}


class CorpusError(errors.RealmInputError):
  """The retrieval corpus is missing or inconsistent."""


class CorpusMismatchError(errors.RealmInputError):
  """A block-embedding index was built from another corpus (or another order of it)."""


NO_CORPUS_HINT = ("Corpora built by realm_tf.corpus are read through "
                  "<output_prefix>.manifest.json: pass the build's --output_prefix, its "
                  "manifest, or a glob of its shard names (<output_prefix>-*).")


def list_shards(pattern: str) -> List[str]:
  """The shard paths of a corpus path, in corpus order (see `realm_tf.corpus.manifest`).

  Raises:
    CorpusError: nothing matches.
  """
  paths = manifest_lib.resolve(pattern).shard_paths
  if not paths:
    raise CorpusError(f"No corpus shards at {pattern!r}. {NO_CORPUS_HINT}")
  return paths


# Why a block is refused (`invalid_blocks` codes).
INVALID_NO_BODY = 1
INVALID_TOKEN_ID = 2
INVALID_REASONS = {
    INVALID_NO_BODY: "a block without body_token_ids (empty or missing)",
    INVALID_TOKEN_ID: "a token id outside the vocabulary (the corpus was tokenized with "
                      "another, larger vocabulary?)",
}


def invalid_blocks(blocks: Dict[str, tf.RaggedTensor], vocab_size: int) -> tf.Tensor:
  """int32 [b]: 0 for a valid parsed block, else an `INVALID_*` code."""
  body = blocks["body_token_ids"]
  no_body = body.row_lengths() == 0  # [b]
  ids = tf.concat([blocks["title_token_ids"], body], axis=1)  # [b, (len)]
  out_of_range = tf.reduce_any(tf.logical_or(ids < 0, ids >= vocab_size), axis=1)  # [b]
  return tf.where(no_body, INVALID_NO_BODY,
                  tf.where(out_of_range, INVALID_TOKEN_ID, 0))


def record_error(shard_paths: Sequence[str], row: int, reason: str,
                 counts: Optional[Sequence[int]] = None) -> errors.InputFileError:
  """The error naming the shard and record of corpus row `row`."""
  counts = list(counts) if counts is not None else count_records_parallel(shard_paths)
  for path, count in zip(shard_paths, counts):
    if row < count:
      return errors.InputFileError(path, None, reason, record=row)
    row -= count
  return errors.InputFileError(shard_paths[-1], None, reason)


def find_bad_record(shard_paths: Sequence[str],
                    features: Optional[Dict[str, Any]] = None
                    ) -> Optional[errors.InputFileError]:
  """The first unreadable or unparsable record of the shards, as an error, or None.

  Reads one record at a time (slow: for naming the culprit after a read failed).

  Args:
    shard_paths: the GZIP shards, in order.
    features: a `tf.io.parse_single_example` spec every record must parse with.
  """
  for path in shard_paths:
    index = 0
    try:
      for record in records_dataset([path]):
        try:
          tf.train.Example.FromString(record.numpy())
          if features is not None:
            tf.io.parse_single_example(record, features)
        except (message.DecodeError, tf.errors.InvalidArgumentError,
                UnicodeDecodeError) as e:
          detail = (f" ({_first_line(e)})" if isinstance(e, tf.errors.InvalidArgumentError)
                    else "")
          return errors.InputFileError(
              path, None, f"not a tf.train.Example of this corpus's features{detail}",
              record=index)
        index += 1
    except tf.errors.OpError as e:
      return errors.InputFileError(
          path, None, f"unreadable after {index} records: truncated or corrupt shard "
          f"({_first_line(e)})", record=index)
  return None


def _first_line(error: tf.errors.OpError) -> str:
  return (error.message or str(error)).strip().splitlines()[0][:300]


def named_read_errors(dataset, shard_paths: Sequence[str],
                      features: Optional[Dict[str, Any]] = None):
  """Iterates `dataset`; a read or parse failure is re-raised naming shard and record.

  Raises:
    InputFileError: from `find_bad_record` when it finds the culprit.
    tf.errors.OpError: the original error otherwise.
  """
  try:
    for element in dataset:
      yield element
  except (tf.errors.DataLossError, tf.errors.InvalidArgumentError,
          UnicodeDecodeError) as e:  # TF's message may quote the record's raw bytes.
    bad = find_bad_record(shard_paths, features)
    if bad is None:
      raise
    raise bad from e


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
  """The number of records in one GZIP TFRecord file.

  Raises:
    InputFileError: the file is missing, truncated or corrupt.
  """
  try:
    return int(records_dataset([path]).reduce(tf.constant(0, tf.int64),
                                              lambda n, _: n + 1).numpy())
  except tf.errors.OpError as e:
    raise errors.InputFileError(path, None, "cannot read this TFRecord shard: "
                                f"{_first_line(e)}") from None


def count_records_parallel(paths: Sequence[str], num_threads: Optional[int] = None) -> List[int]:
  """Record counts of `paths`, in path order (the reads run in parallel threads)."""
  with concurrent.futures.ThreadPoolExecutor(num_threads or min(12, len(paths) or 1)) as pool:
    return list(pool.map(count_records, paths))


def find_manifest(shard_paths: Sequence[str]) -> Optional[str]:
  """The corpus build manifest that lists exactly these shards, or None."""
  if not shard_paths:
    return None
  directory = os.path.dirname(shard_paths[0])
  if any(os.path.dirname(p) != directory for p in shard_paths):
    return None
  names = [os.path.basename(p) for p in shard_paths]
  candidates = []
  builds = os.path.dirname(directory)
  if builds.endswith(manifest_lib.BUILDS_SUFFIX):  # <prefix>.builds/<build_id>/
    candidates.append(builds[:-len(manifest_lib.BUILDS_SUFFIX)] + manifest_lib.MANIFEST_SUFFIX)
  candidates += sorted(tf.io.gfile.glob(os.path.join(directory,
                                                     "*" + manifest_lib.MANIFEST_SUFFIX)))
  for candidate in candidates:
    try:
      manifest = manifest_lib.read_manifest(candidate)
    except (errors.RealmInputError, tf.errors.OpError):
      continue
    if (os.path.normpath(manifest_lib.shard_directory(candidate, manifest)) ==
        os.path.normpath(directory) and [e["name"] for e in manifest["shards"]] == names):
      return candidate
  return None


def shard_counts(shard_paths: Sequence[str]) -> Tuple[List[int], Optional[str]]:
  """(record count of each shard, path of the manifest they came from or None)."""
  manifest_path = find_manifest(shard_paths)
  if manifest_path is not None:
    manifest = manifest_lib.read_manifest(manifest_path)
    return [int(e["count"]) for e in manifest["shards"]], manifest_path
  return count_records_parallel(shard_paths), None


def _file_sha256(path: str) -> str:
  digest = hashlib.sha256()
  with tf.io.gfile.GFile(path, "rb") as f:
    while True:
      block = f.read(READ_BUFFER_BYTES)
      if not block:
        return digest.hexdigest()
      digest.update(block)


def corpus_fingerprint(shard_paths: Sequence[str], counts: Sequence[int],
                       manifest_path: Optional[str] = None) -> str:
  """The SHA-256 of the corpus records and their order (`manifest.content_sha256`).

  Taken from the build manifest when it records it, computed from the shard files
  otherwise (one read of every shard).
  """
  if manifest_path is not None:
    manifest = manifest_lib.read_manifest(manifest_path)
    if manifest.get("content_sha256"):
      return manifest["content_sha256"]
  with concurrent.futures.ThreadPoolExecutor(min(12, len(shard_paths) or 1)) as pool:
    shas = list(pool.map(_file_sha256, shard_paths))
  return manifest_lib.content_sha256(counts, shas)


@dataclasses.dataclass
class RetrievalCorpus:
  """An opened retrieval corpus; see `open_corpus`."""
  pattern: str
  shard_paths: List[str]
  counts: List[int]
  manifest_path: Optional[str]
  manifest: Optional[Dict[str, Any]]

  @property
  def num_blocks(self) -> int:
    return int(sum(self.counts))

  @functools.cached_property
  def fingerprint(self) -> str:
    """The SHA-256 of the records and their order."""
    return corpus_fingerprint(self.shard_paths, self.counts, self.manifest_path)

  def describe(self) -> Dict[str, Any]:
    """What an index records about the corpus it was built from (`index_corpus.json`)."""
    return {"pattern": self.pattern, "manifest": self.manifest_path,
            "num_blocks": self.num_blocks, "num_shards": len(self.shard_paths),
            "fingerprint_sha256": self.fingerprint}

  def check_vocab(self, vocab_path: str, what: str = "the vocabulary") -> None:
    """Raises `VocabMismatchError` when the corpus was tokenized with another vocab."""
    manifest_lib.check_vocab(self.manifest, self.manifest_path or self.pattern, vocab_path,
                             what)

  def check_index(self, index_dir: str) -> None:
    """Raises `CorpusMismatchError` if the index in `index_dir` is of another corpus.

    `index_dir` holds `block_emb` (e.g. `<module>/encoded`); its `index_corpus.json`
    says which corpus it embeds. Indexes without one (older ones, the original's) are
    checked by their number of blocks only, where the caller does so.
    """
    recorded = block_emb_file.read_index_corpus(index_dir)
    if recorded is None:
      logging.warning("%s records no corpus fingerprint: cannot check that it indexes %s.",
                      index_dir, self.pattern)
      return
    if recorded.get("fingerprint_sha256") != self.fingerprint:
      raise CorpusMismatchError(
          f"The index {index_dir} was built from the corpus {recorded.get('pattern')} "
          f"({recorded.get('num_blocks')} blocks, fingerprint "
          f"{str(recorded.get('fingerprint_sha256'))[:12]}), not from {self.pattern} "
          f"({self.num_blocks} blocks, fingerprint {self.fingerprint[:12]}): its rows "
          "would name the wrong blocks. Re-embed the corpus (python -m realm_tf.refresh, "
          "or orqa.ict --encode) or pass the corpus the index was built from.")

  def verify_sizes(self) -> None:
    """Checks each shard's size against the manifest (a truncated shard fails here).

    Raises:
      InputFileError: a shard is missing or has another size than when it was built.
    """
    verify_shards(self.shard_paths, (self.manifest or {}).get("shards"))


def verify_shards(shard_paths: Sequence[str],
                  entries: Optional[Sequence[Optional[Dict[str, Any]]]] = None) -> None:
  """Checks that every shard is whole before a long job reads it.

  A shard with a manifest entry that records its size is checked by size (cheap); any
  other shard is read through once (record counting checks every CRC), so a truncated or
  corrupt shard is found at start-up rather than when (or if) a pass samples it.

  Raises:
    InputFileError: names the shard that is missing, truncated or corrupt.
  """
  entries = list(entries or []) + [None] * (len(shard_paths) - len(entries or []))
  to_read = []
  for path, entry in zip(shard_paths, entries):
    if not entry or "bytes" not in entry:
      to_read.append(path)
      continue
    try:
      size = tf.io.gfile.stat(path).length
    except tf.errors.NotFoundError:
      raise errors.InputFileError(path, None, "missing, but listed in the corpus "
                                  "manifest") from None
    if size != entry["bytes"]:
      raise errors.InputFileError(
          path, None, f"{size} bytes, but the corpus manifest says {entry['bytes']}: the "
          "shard is truncated or was changed after the build")
  if to_read:
    count_records_parallel(to_read)


def open_corpus(pattern: str) -> RetrievalCorpus:
  """Resolves a corpus path (prefix, manifest or glob) into a `RetrievalCorpus`.

  Raises:
    CorpusError: nothing matches.
  """
  files = manifest_lib.resolve(pattern)
  if not files.shard_paths:
    raise CorpusError(f"No corpus shards at {pattern!r}. {NO_CORPUS_HINT}")
  if files.entries is not None:
    counts = [int(e["count"]) for e in files.entries]
  else:
    counts = count_records_parallel(files.shard_paths)
  return RetrievalCorpus(pattern, files.shard_paths, counts, files.manifest_path,
                         files.manifest)


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
