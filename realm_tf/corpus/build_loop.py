"""The shared build loop: ordered parallel processing, spooling, sharding, commit.

Input records are cut into fixed-size chunks in file order. Chunks are processed in a
`multiprocessing` pool (spawned workers: TensorFlow is not fork-safe) and their results
consumed strictly in submission order, so the output does not depend on the number of
workers. Serialized records go to a spool file in the staging directory; once the total
is known they are cut into `ceil(total / num_shards)`-record GZIP TFRecord shards (written
in parallel), hashed, and committed as a new version of the corpus behind its manifest
(`realm_tf.corpus.manifest`).
"""

import collections
import dataclasses
import itertools
import multiprocessing
import os
import time
from typing import Callable, Iterable, Iterator, List, Optional, Tuple

from absl import logging

from realm_tf.corpus import io as corpus_io
from realm_tf.corpus import manifest as manifest_lib
from realm_tf.corpus import records
from realm_tf import errors

# One input item: (line number, raw line, annotation line number, annotation line).
Item = Tuple[int, bytes, Optional[int], Optional[bytes]]


@dataclasses.dataclass
class ItemError:
  """A bad record found by a worker: which file ("input"/"annotations"), line, why."""
  source: str
  line_number: int
  reason: str


@dataclasses.dataclass
class ChunkResult:
  records: List[bytes]
  counters: collections.Counter
  errors: List[ItemError]


def error_for(item: Item, error: corpus_io.RecordError) -> ItemError:
  """Locates a record error in the input file or in the annotation file."""
  if isinstance(error, corpus_io.AnnotationError):
    return ItemError("annotations", item[2], str(error))
  return ItemError("input", item[0], str(error))


def read_items(input_path: str, annotations_path: Optional[str] = None
               ) -> Iterator[Item]:
  """Input lines, paired in order with annotation lines when a path is given.

  Raises:
    errors.InputFileError: the two files have different numbers of records.
  """
  inputs = corpus_io.read_lines(input_path)
  if annotations_path is None:
    for line_number, line in inputs:
      yield line_number, line, None, None
    return
  annotations = corpus_io.read_lines(annotations_path)
  last_annotation_line = 0
  for line_number, line in inputs:
    pair = next(annotations, None)
    if pair is None:
      raise errors.InputFileError(
          annotations_path, last_annotation_line + 1,
          f"annotation file ended before the input (input line {line_number})")
    last_annotation_line = pair[0]
    yield line_number, line, pair[0], pair[1]
  extra = next(annotations, None)
  if extra is not None:
    raise errors.InputFileError(
        annotations_path, extra[0], "annotation file has more records than the input")


def _chunks(items: Iterable[Item], size: int) -> Iterator[List[Item]]:
  iterator = iter(items)
  while True:
    chunk = list(itertools.islice(iterator, size))
    if not chunk:
      return
    yield chunk


_WORKER_PROCESSOR = None


def _init_worker(processor) -> None:
  global _WORKER_PROCESSOR
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  _WORKER_PROCESSOR = processor
  _WORKER_PROCESSOR.setup()


def _process_in_worker(chunk: List[Item]) -> ChunkResult:
  return _WORKER_PROCESSOR.process(chunk)


class _Progress:
  """Logs records/s every `interval` seconds."""

  def __init__(self, what: str, interval: float = 5.0):
    self.what = what
    self.interval = interval
    self.start = self.last = time.time()

  def update(self, num_items: int, num_records: int, force: bool = False) -> None:
    now = time.time()
    if force or now - self.last >= self.interval:
      self.last = now
      elapsed = max(now - self.start, 1e-9)
      logging.info("%s: %d input records (%.0f/s), %d output records, %.0f s",
                   self.what, num_items, num_items / elapsed, num_records, elapsed)


@dataclasses.dataclass
class BuildResult:
  num_records: int
  shard_names: List[str]
  shard_counts: List[int]
  counters: collections.Counter
  seconds: float
  shard_bytes: List[int] = dataclasses.field(default_factory=list)
  shard_sha256: List[str] = dataclasses.field(default_factory=list)
  manifest_path: str = ""
  shard_paths: List[str] = dataclasses.field(default_factory=list)


def check_build_args(num_shards: int, num_workers: int, chunk_size: int) -> None:
  """Rejects values that would build nothing sensible, before anything is touched.

  Raises:
    ArgumentError: a value is out of range.
  """
  for name, value in (("num_shards", num_shards), ("num_workers", num_workers),
                      ("chunk_size", chunk_size)):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise errors.ArgumentError(f"--{name}={value!r} must be a positive integer")


def run_build(
    *,
    items: Iterable[Item],
    processor,
    output_prefix: str,
    num_shards: int,
    num_workers: int,
    chunk_size: int,
    skip_bad_records: bool,
    input_path: str,
    annotations_path: Optional[str] = None,
    shard_suffix: str = "",
    make_manifest: Callable[[BuildResult], dict],
    what: str = "build",
    allow_empty: bool = False,
) -> BuildResult:
  """Processes `items` with `processor` and writes sharded GZIP TFRecords atomically.

  Args:
    items: input items in file order (see `read_items`).
    processor: a picklable object with `setup()` and `process(chunk) -> ChunkResult`.
    output_prefix: shards are `<prefix>-00000-of-000NN<suffix>`.
    num_shards: number of output shards.
    num_workers: worker processes; 1 processes in this process.
    chunk_size: records per task (and per tokenizer batch).
    skip_bad_records: count and skip bad records instead of failing on the first.
    input_path: named in errors.
    annotations_path: named in errors about annotation records.
    shard_suffix: appended to shard names.
    make_manifest: builds the manifest dict from the result.
    what: name used in progress logs.
    allow_empty: commit a build without records (otherwise an error).

  Returns:
    The `BuildResult`.

  Raises:
    ArgumentError: `num_shards`, `num_workers` or `chunk_size` is not positive.
    errors.InputFileError: a bad record (unless skipping), naming file and line.
    EmptyCorpusError: no record was produced and not `allow_empty`.
    LockedError: another build of the same prefix is running.
  """
  check_build_args(num_shards, num_workers, chunk_size)
  start_time = time.time()
  paths = {"input": input_path, "annotations": annotations_path}
  counters = collections.Counter()
  progress = _Progress(what)
  with corpus_io.VersionedOutput(output_prefix, shard_suffix) as out:
    spool = records.SpoolWriter(out.temp_path("records.spool"))
    pool = None
    try:
      if num_workers == 1:
        processor.setup()
        results = map(processor.process, _chunks(items, chunk_size))
      else:
        pool = multiprocessing.get_context("spawn").Pool(
            num_workers, initializer=_init_worker, initargs=(processor,))
        results = _ordered_imap(pool, _process_in_worker,
                                _chunks(items, chunk_size), 2 * num_workers + 2)
      num_items = 0
      for result in results:
        for error in result.errors:
          if not skip_bad_records:
            raise errors.InputFileError(
                paths[error.source], error.line_number, error.reason)
          counters["bad_records_skipped"] += 1
          if counters["bad_records_skipped"] <= 10:
            logging.warning("Skipping bad record %s:%d: %s", paths[error.source],
                            error.line_number, error.reason)
        for record in result.records:
          spool.write(record)
        counters.update(result.counters)
        num_items = counters["input_records"]
        progress.update(num_items, spool.count)
      spool.close()
      progress.update(num_items, spool.count, force=True)
      if not spool.count and not allow_empty:
        raise corpus_io.EmptyCorpusError(
            f"The build of {input_path} produced no records ({num_items} input records; "
            f"counters {dict(sorted(counters.items()))}); the corpus at {output_prefix} "
            "is unchanged. Pass --allow_empty to commit an empty corpus.")

      base = os.path.basename(out.output_prefix)
      ranges = records.shard_ranges(spool.count, num_shards)
      names = [corpus_io.shard_name(base, i, num_shards, shard_suffix)
               for i in range(num_shards)]
      tasks = [(spool.path, spool.offsets[a], b - a, out.temp_path(n))
               for (a, b), n in zip(ranges, names)]
      logging.info("Writing %d GZIP shards of up to %d records", num_shards,
                   max(b - a for a, b in ranges))
      if pool is not None:
        counts = pool.map(records.write_gzip_shard, tasks, chunksize=1)
      else:
        counts = [records.write_gzip_shard(t) for t in tasks]
    finally:
      if pool is not None:
        pool.terminate()
        pool.join()
    os.remove(spool.path)
    result = BuildResult(spool.count, names, counts, counters, time.time() - start_time,
                         shard_bytes=[os.path.getsize(out.temp_path(n)) for n in names],
                         shard_sha256=[manifest_lib.file_sha256(out.temp_path(n))
                                       for n in names])
    manifest = make_manifest(result)
    manifest["content_sha256"] = manifest_lib.content_sha256(counts, result.shard_sha256)
    result.manifest_path = out.commit(names, manifest)
    result.shard_paths = [os.path.join(out.final_dir, n) for n in names]
  logging.info("%s done: %d records in %d shards, %.1f s. Counters: %s", what,
               result.num_records, num_shards, result.seconds,
               dict(sorted(counters.items())))
  return result


def _ordered_imap(pool, fn, tasks: Iterable, max_pending: int):
  """Like `pool.imap` but with at most `max_pending` tasks in flight (bounded memory)."""
  pending = collections.deque()
  for task in tasks:
    pending.append(pool.apply_async(fn, (task,)))
    if len(pending) >= max_pending:
      yield pending.popleft().get()
  while pending:
    yield pending.popleft().get()


def shard_entries(result: BuildResult) -> List[dict]:
  """Manifest entries for the shards: name, record count, size in bytes and SHA-256."""
  return [{"name": n, "count": c, "bytes": b, "sha256": h}
          for n, c, b, h in zip(result.shard_names, result.shard_counts,
                                result.shard_bytes, result.shard_sha256)]


def source_entry(input_path: str) -> dict:
  return {"path": os.path.abspath(input_path),
          "sha256": corpus_io.file_sha256(input_path)}
