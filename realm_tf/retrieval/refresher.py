"""The index refresher: re-embeds the corpus with each new embedder export (as
`language/realm/refresh_doc_embeds.py`). Its job is `python -m realm_tf.refresh`; ICT's
`--encode` runs it once (`Refresher.refresh_once`).

`Refresher.run`: find the newest `export/tf_hub/<ts>` that has `global_step.txt` with a
step >= `start_at_step` and is newer than the newest `export/encoded/<ts>`; stage it by
renaming it to `export/temp/<ts>` (the original moves it too); embed every block of the
sorted retrieval shards with its `embedder/` (`projected` signature) into
`embedder/encoded/encoded.ckpt` (`block_emb`); build and save the searcher into
`<scann|brute_force>/`; write `manifest.json`; commit by an atomic rename to
`export/encoded/<ts>`; keep the newest `encoded_to_keep` (3). It returns once
`model_dir/TRAINING_DONE` exists and nothing newer is pending, and sleeps
`poll_interval_secs` when idle (the original busy-looped).

Crash safety: a snapshot becomes visible only by the final rename, so a SIGKILL at any
moment never leaves a partial `encoded/<ts>`. On start, every stale `temp/<ts>` is
cleaned of this job's outputs and moved back to `tf_hub/<ts>`, so no export is lost and
the newest one is embedded again. `Refresher.lock` holds an exclusive lock on
`model_dir/refresh-<task>.lock`: a second job on the same model_dir waits, then fails
naming the running one.

Every index records the corpus it embeds (`embedder/encoded/index_corpus.json`); the
refresher refuses a corpus tokenized with another vocabulary than its own (the corpus
manifest records the vocabulary's SHA-256).

Several workers (`num_tasks`, `task_index`) split the shards into contiguous ranges.
Task 0 (the chief) stages and commits; each other task waits for a staged export, embeds
its range and writes `temp/<ts>/partials/part-<i>-of-<n>.npy`; the chief merges them.

The featurizer parameters (candidate_seq_len, vocab_path, do_lower_case,
separate_candidate_segments) come from `model_dir/config.json` (`options_from_config`).
Fault-injection tests pause the job at named points (`pause_point`, set by environment
variables; a no-op otherwise).
"""

import dataclasses
import json
import os
import time
from typing import Any, Dict, List, Optional

from absl import logging
import tensorflow as tf

from realm_tf import locks
from realm_tf.retrieval import block_emb_file
from realm_tf.retrieval import corpus_embedding
from realm_tf.retrieval import corpus_reader
from realm_tf.retrieval import encoded_export
from realm_tf.retrieval import export_dirs
from realm_tf.retrieval import searchers

TF_HUB = "tf_hub"
TEMP = "temp"
ENCODED = encoded_export.ENCODED_PREFIX
TRAINING_DONE = "TRAINING_DONE"
CONFIG_FILENAME = "config.json"
PARTIALS_DIR = "partials"
# Test hook: pause (forever) at this named point after touching <PAUSE_DIR>/<name>.
PAUSE_AT_ENV = "REALM_TF_REFRESH_PAUSE_AT"
PAUSE_DIR_ENV = "REALM_TF_REFRESH_PAUSE_DIR"
PAUSE_POINTS = ("staged", "embedding", "embedded", "block_emb_written", "searcher_saved",
                "before_commit", "committed")


def pause_point(name: str) -> None:
  """Test hook: blocks forever at `name` if $REALM_TF_REFRESH_PAUSE_AT names it."""
  if name not in os.environ.get(PAUSE_AT_ENV, "").split(","):
    return
  marker = os.path.join(os.environ.get(PAUSE_DIR_ENV, "."), name)
  with open(marker, "w", encoding="utf-8") as f:
    f.write(str(os.getpid()))
  logging.warning("Paused at %s (test hook %s).", name, PAUSE_AT_ENV)
  while True:
    time.sleep(3600)


@dataclasses.dataclass
class RefreshOptions:
  """Everything the refresher needs besides the model directory and the corpus."""
  candidate_seq_len: int = 288
  vocab_path: Optional[str] = None
  do_lower_case: bool = True
  separate_candidate_segments: bool = True
  batch_size: int = 256
  start_at_step: int = 0
  searcher: str = searchers.SCANN
  searcher_params: Dict[str, Any] = dataclasses.field(default_factory=dict)
  num_neighbors: int = 100
  poll_interval_secs: float = 30.0
  encoded_to_keep: int = 3
  task_index: int = 0
  num_tasks: int = 1


def options_from_config(model_dir: str, **overrides) -> RefreshOptions:
  """RefreshOptions with the featurizer fields of `model_dir/config.json`, then overrides.

  Overrides whose value is None are ignored.
  """
  fields = {}
  path = os.path.join(model_dir, CONFIG_FILENAME)
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path, "r") as f:
      config = json.loads(f.read())
    for key in ("candidate_seq_len", "vocab_path", "do_lower_case",
                "separate_candidate_segments"):
      if config.get(key) is not None:
        fields[key] = config[key]
  fields.update({k: v for k, v in overrides.items() if v is not None})
  options = RefreshOptions(**fields)
  if not options.vocab_path:
    raise ValueError(f"No vocab_path: set it in {path} or pass --vocab_path")
  if options.searcher not in searchers.SEARCHER_TYPES:
    raise ValueError(f"--searcher={options.searcher!r} is not one of {searchers.SEARCHER_TYPES}")
  return options


class Refresher:
  """One refresh worker (the chief when task_index == 0) over one model directory.

  Args:
    model_dir: the trainer's model directory.
    retrieval_corpus_path: glob of the retrieval-corpus shards.
    options: `RefreshOptions`.
    strategy: the `tf.distribute` strategy that runs the embedder (default: current).
  """

  def __init__(self, model_dir: str, retrieval_corpus_path: str, options: RefreshOptions,
               strategy: Optional[tf.distribute.Strategy] = None):
    self.model_dir = os.path.normpath(model_dir)
    self.options = options
    self.strategy = strategy
    self.corpus_pattern = retrieval_corpus_path
    self.corpus = corpus_reader.open_corpus(retrieval_corpus_path)
    self.shard_paths = self.corpus.shard_paths
    self.counts, self.corpus_manifest = self.corpus.counts, self.corpus.manifest_path
    self.num_blocks = self.corpus.num_blocks
    if self.num_blocks < 1:
      raise corpus_reader.CorpusError(f"The shards {retrieval_corpus_path!r} hold no blocks")
    # Before any work: token ids of another vocabulary would embed the wrong words.
    self.corpus.check_vocab(options.vocab_path, "the refresh job's vocab_path "
                            f"(from {os.path.join(self.model_dir, CONFIG_FILENAME)} or "
                            "--vocab_path)")
    self.corpus.verify_sizes()
    self.fingerprint = self.corpus.fingerprint
    self.featurizer = corpus_embedding.featurizer_for_documents(
        options.vocab_path, options.candidate_seq_len, options.do_lower_case,
        options.separate_candidate_segments)
    logging.info("Retrieval corpus: %d blocks in %d shards (fingerprint %s)",
                 self.num_blocks, len(self.shard_paths), self.fingerprint[:12])

  @property
  def is_chief(self) -> bool:
    return self.options.task_index == 0

  def _base(self, prefix: str) -> str:
    return export_dirs.export_base(self.model_dir, prefix)

  def _newest_encoded_ts(self) -> int:
    newest = export_dirs.newest_export_path(self.model_dir, ENCODED)
    return export_dirs.timestamp_of(newest) if newest else -1

  def training_done(self) -> bool:
    return tf.io.gfile.exists(os.path.join(self.model_dir, TRAINING_DONE))

  # ---------------------------------------------------------------- protocol

  def recover(self) -> None:
    """Cleans stale staging dirs of a killed run and moves them back to tf_hub/."""
    for staged in export_dirs.export_paths(self._base(TEMP)):
      ts = export_dirs.timestamp_of(staged)
      self._clean_staging(staged)
      original = os.path.join(self._base(TF_HUB), str(ts))
      if tf.io.gfile.exists(original) or ts in self._encoded_timestamps():
        logging.warning("Deleting stale staging dir %s (already exported/encoded).", staged)
        export_dirs.remove_tree(staged)
      else:
        logging.warning("Moving stale staging dir %s back to %s.", staged, original)
        export_dirs.commit_directory(staged, original)
    temp_base = self._base(TEMP)
    if tf.io.gfile.isdir(temp_base):
      for name in tf.io.gfile.listdir(temp_base):  # Our own temp-* leftovers.
        if name.startswith("temp-"):
          export_dirs.remove_tree(os.path.join(temp_base, name))
    for stale in tf.io.gfile.glob(os.path.join(self._base(ENCODED), "temp-*")):
      export_dirs.remove_tree(stale)
    export_dirs.clean_exports(self.model_dir, ENCODED, self.options.encoded_to_keep)

  def _encoded_timestamps(self) -> List[int]:
    return [export_dirs.timestamp_of(p) for p in export_dirs.export_paths(self._base(ENCODED))]

  def _clean_staging(self, staged: str) -> None:
    """Removes this job's outputs from a staging dir (it becomes the plain export again)."""
    embedder = os.path.join(staged, encoded_export.EMBEDDER_DIR)
    targets = [os.path.join(embedder, block_emb_file.ENCODED_DIR),
               os.path.join(staged, PARTIALS_DIR),
               os.path.join(staged, encoded_export.MANIFEST_FILENAME)]
    targets += [os.path.join(staged, t) for t in searchers.SEARCHER_TYPES]
    for parent in (staged, embedder):
      if tf.io.gfile.isdir(parent):
        targets += [os.path.join(parent, n.rstrip("/")) for n in tf.io.gfile.listdir(parent)
                    if n.startswith("temp-")]
    for target in targets:
      export_dirs.remove_tree(target)

  def pending_export(self):
    """(timestamp, path, step) of the newest eligible tf_hub export not yet encoded, or None."""
    newest = export_dirs.newest_export_path(self.model_dir, TF_HUB)
    if newest is None:
      return None
    ts = export_dirs.timestamp_of(newest)
    if ts <= self._newest_encoded_ts():
      return None
    step = export_dirs.read_global_step(newest)
    if step is None:
      logging.info("%s has no readable global_step.txt yet; skipping it.", newest)
      return None
    if step < self.options.start_at_step:
      logging.info("%s is at step %d < --start_at_step=%d.", newest, step,
                   self.options.start_at_step)
      return None
    return ts, newest, step

  def stage(self, ts: int, export_path: str) -> str:
    """Moves `tf_hub/<ts>` to `temp/<ts>` and prepares it; returns the staging dir."""
    staged = os.path.join(self._base(TEMP), str(ts))
    export_dirs.commit_directory(export_path, staged)
    tf.io.gfile.makedirs(os.path.join(staged, PARTIALS_DIR))
    logging.info("Staged %s as %s.", export_path, staged)
    return staged

  def _embed_own_range(self, staged: str, pause: bool) -> Dict[str, Any]:
    embed_fn = corpus_embedding.load_saved_model_embedder(
        os.path.join(staged, encoded_export.EMBEDDER_DIR))
    reached = [False]

    def on_batch(done, total):
      del done, total
      if pause and not reached[0]:
        reached[0] = True
        pause_point("embedding")

    return corpus_embedding.embed_task(
        self.shard_paths, self.counts, self.options.task_index, self.options.num_tasks,
        embed_fn, self.featurizer, self.options.batch_size, strategy=self.strategy,
        on_batch=on_batch)

  def _expected_rows(self) -> List[int]:
    n = len(self.shard_paths)
    return [int(sum(self.counts[slice(*corpus_reader.shard_range(n, t, self.options.num_tasks))]))
            for t in range(self.options.num_tasks)]

  def _wait_for_partials(self, partials: str) -> None:
    num_tasks = self.options.num_tasks
    while len(block_emb_file.completed_partials(partials, num_tasks)) < num_tasks:
      time.sleep(min(self.options.poll_interval_secs, 1.0))

  def process(self, ts: int, staged: str, step: int) -> str:
    """Embeds, indexes and commits one staged export; returns `encoded/<ts>`."""
    opts = self.options
    timings = {}
    start = time.monotonic()
    pause_point("staged")
    result = self._embed_own_range(staged, pause=True)
    timings["embed_secs"] = time.monotonic() - start
    if opts.num_tasks == 1:
      block_emb = result["block_emb"]
    else:
      partials = os.path.join(staged, PARTIALS_DIR)
      block_emb_file.write_partial(partials, 0, opts.num_tasks, result["block_emb"],
                                {"shard_range": list(result["shard_range"])})
      wait_start = time.monotonic()
      self._wait_for_partials(partials)
      timings["wait_for_workers_secs"] = time.monotonic() - wait_start
      block_emb = block_emb_file.merge_partials(partials, opts.num_tasks, self._expected_rows())
    if block_emb.shape[0] != self.num_blocks:
      raise ValueError(f"Embedded {block_emb.shape[0]} blocks, expected {self.num_blocks}")
    pause_point("embedded")

    mark = time.monotonic()
    prefix = block_emb_file.checkpoint_prefix(os.path.join(staged, encoded_export.EMBEDDER_DIR))
    block_emb_file.write_block_emb(prefix, block_emb, corpus_info=self.corpus.describe())
    timings["write_block_emb_secs"] = time.monotonic() - mark
    pause_point("block_emb_written")

    mark = time.monotonic()
    searcher = searchers.build_searcher(opts.searcher, block_emb,
                                        min(opts.num_neighbors, self.num_blocks),
                                        **opts.searcher_params)
    timings["build_searcher_secs"] = time.monotonic() - mark
    mark = time.monotonic()
    searcher.save(os.path.join(staged, searcher.searcher_type), block_emb_checkpoint=prefix)
    timings["save_searcher_secs"] = time.monotonic() - mark
    pause_point("searcher_saved")

    timings["total_secs"] = time.monotonic() - start
    manifest = {
        "format": "realm_tf_encoded_export",
        "timestamp": ts,
        "embedder_step": step,
        "embedder": encoded_export.EMBEDDER_DIR,
        "block_emb_checkpoint": os.path.relpath(prefix, staged),
        "num_blocks": self.num_blocks,
        "dims": int(block_emb.shape[1]),
        "corpus": {"pattern": self.corpus_pattern,
                   "shards": [os.path.basename(p) for p in self.shard_paths],
                   "counts": self.counts, "manifest": self.corpus_manifest,
                   "fingerprint_sha256": self.fingerprint},
        "featurizer": {"candidate_seq_len": opts.candidate_seq_len,
                       "do_lower_case": opts.do_lower_case,
                       "separate_candidate_segments": opts.separate_candidate_segments,
                       "vocab_path": opts.vocab_path},
        "searcher": {"type": searcher.searcher_type, "dir": searcher.searcher_type,
                     "requested": opts.searcher, "num_neighbors": searcher.num_neighbors,
                     "params": searcher.params()},
        "num_tasks": opts.num_tasks,
        "batch_size": opts.batch_size,
        "timings": timings,
        "blocks_per_sec": self.num_blocks / max(timings["embed_secs"], 1e-9),
        "created_unix": time.time(),
    }
    export_dirs.remove_tree(os.path.join(staged, PARTIALS_DIR))
    export_dirs.write_text_atomic(os.path.join(staged, encoded_export.MANIFEST_FILENAME),
                                  json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    pause_point("before_commit")
    final = export_dirs.commit_directory(staged, os.path.join(self._base(ENCODED), str(ts)))
    logging.info("Committed %s (step %d, %d blocks, %.1f blocks/s, %.1f s in all).",
                 final, step, self.num_blocks, manifest["blocks_per_sec"],
                 timings["total_secs"])
    pause_point("committed")
    for deleted in export_dirs.clean_exports(self.model_dir, ENCODED, opts.encoded_to_keep):
      logging.info("Deleted old encoded export %s.", deleted)
    return final

  def refresh_once(self) -> Optional[str]:
    """Chief: processes the newest pending export if any; returns `encoded/<ts>` or None."""
    pending = self.pending_export()
    if pending is None:
      return None
    ts, path, step = pending
    staged = self.stage(ts, path)
    return self.process(ts, staged, step)

  # ---------------------------------------------------------------- workers (task > 0)

  def _staged_work(self) -> Optional[str]:
    """Worker: the newest staged export still missing this task's partial."""
    staged = export_dirs.export_paths(self._base(TEMP))
    if not staged:
      return None
    newest = staged[-1]
    partials = os.path.join(newest, PARTIALS_DIR)
    if (not tf.io.gfile.isdir(partials) or self.options.task_index in
        block_emb_file.completed_partials(partials, self.options.num_tasks)):
      return None
    return newest

  def work_once(self) -> bool:
    """Worker: embeds its shard range for the newest staged export; True if it did."""
    staged = self._staged_work()
    if staged is None:
      return False
    try:
      result = self._embed_own_range(staged, pause=False)
      block_emb_file.write_partial(os.path.join(staged, PARTIALS_DIR), self.options.task_index,
                                self.options.num_tasks, result["block_emb"],
                                {"shard_range": list(result["shard_range"])})
    except (OSError, FileNotFoundError, block_emb_file.BlockEmbError, tf.errors.OpError) as e:
      # The chief restarted and moved the staging dir away: not an error of this worker.
      logging.warning("Staged export %s went away while embedding: %s", staged, e)
      return False
    return True

  def _nothing_pending(self) -> bool:
    return (self.pending_export() is None and
            not export_dirs.export_paths(self._base(TEMP)))

  # ---------------------------------------------------------------- loop

  def lock(self, wait_secs: Optional[float] = 0.0):
    """The exclusive lock of this task on the model_dir (a context manager)."""
    path = os.path.join(self.model_dir, f"refresh-{self.options.task_index}.lock")
    return locks.exclusive_lock(
        path, f"The refresh job (task {self.options.task_index}) of {self.model_dir}",
        wait_secs=wait_secs)

  def run(self, once: bool = False) -> List[str]:
    """The refresh loop; returns the committed `encoded/<ts>` dirs (chief).

    Call it holding `lock()`.
    """
    committed = []
    if self.is_chief:
      self.recover()
    while True:
      if self.is_chief:
        final = self.refresh_once()
        if final is not None:
          committed.append(final)
          if once:
            return committed
          continue
        if once:
          logging.info("No pending export in %s.", self._base(TF_HUB))
          return committed
      elif self.work_once():
        if once:
          return committed
        continue
      if self.training_done() and self._nothing_pending():
        logging.info("%s exists and no export is pending: done.", TRAINING_DONE)
        return committed
      if once:
        return committed
      time.sleep(self.options.poll_interval_secs)


# -------------------------------------------------------------------- entry point
