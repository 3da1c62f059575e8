"""Embeds every block of the retrieval corpus, in corpus order: the `block_emb` rows.

The whole path runs in TensorFlow: sequential GZIP reads of the sorted shards, batched
parsing and featurization (`Featurizer.featurize_documents_tf`, so the index sees exactly
the trainer's candidate inputs `[CLS] title [SEP] body [SEP]`) in parallel `tf.data` maps,
and the embedder in a `tf.function` under any `tf.distribute` strategy. Every element
carries its row index; the last batch is padded (index -1) so every step has the same
shape, and results are scattered into a preallocated [K, D] array, so the output is in
corpus order with exactly K rows whatever the strategy does with the batch (this replaces
the original's `result_idx` reordering of `TPUEstimator.predict` in
`language/realm/retrieval.py`).

Several workers split the shards into contiguous ranges (`embed_task`); each writes a
partial array and `block_emb_file.merge_partials` joins them at commit. The refresh job
uses this module; `python -m realm_tf.embed_corpus` runs it by hand.
"""

import time
from typing import Callable, Dict, Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from realm_tf.featurization.featurizer import Featurizer
from realm_tf.retrieval import corpus_reader
from realm_tf.tokenization import Tokenizer

# (input_ids, input_mask, segment_ids) int32 [B, L] -> float32 [B, D].
EmbedFn = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]


def load_saved_model_embedder(path: str, signature: str = "projected") -> EmbedFn:
  """The `projected` signature of an embedder SavedModel as an EmbedFn."""
  import tensorflow_text  # pylint: disable=g-import-not-at-top,unused-import  (registers ops)
  try:
    module = tf.saved_model.load(path)
  except (OSError, tf.errors.NotFoundError) as e:
    raise FileNotFoundError(f"Cannot load the embedder SavedModel {path}: {e}") from e
  if signature not in module.signatures:
    raise ValueError(f"The embedder {path} has no {signature!r} signature "
                     f"(has {sorted(module.signatures)})")
  fn = module.signatures[signature]

  def embed(input_ids, input_mask, segment_ids):
    return fn(input_ids=input_ids, input_mask=input_mask, segment_ids=segment_ids)["default"]

  embed.module = module  # Keeps the loaded variables alive.
  return embed


def featurizer_for_documents(vocab_path: str, candidate_seq_len: int,
                             do_lower_case: bool = True,
                             separate_candidate_segments: bool = True) -> Featurizer:
  """A Featurizer for candidate inputs only (query length and N are irrelevant here)."""
  return Featurizer(query_seq_len=3, candidate_seq_len=candidate_seq_len, num_candidates=1,
                    max_masks=1, tokenizer=Tokenizer(vocab_path, do_lower_case=do_lower_case),
                    separate_candidate_segments=separate_candidate_segments)


def blocks_dataset(shard_paths: Sequence[str], featurizer: Featurizer,
                   batch_size: int) -> tf.data.Dataset:
  """Batches of featurized blocks in corpus order, every batch padded to `batch_size`.

  Elements: dict with `input_ids`, `input_mask`, `segment_ids` int32 [batch_size, C],
  `row` int64 [batch_size] (index within these shards; -1 for padding) and `invalid`
  int32 [batch_size]: 0, or a `corpus_reader.INVALID_*` code of a block that must not be
  embedded (no body tokens, a token id outside the featurizer's vocabulary).
  """
  seq_len = featurizer.candidate_seq_len
  vocab_size = featurizer.tokenizer.vocab_size

  def featurize(rows, serialized):
    blocks = corpus_reader.parse_blocks(serialized)
    invalid = corpus_reader.invalid_blocks(blocks, vocab_size)  # [b]
    inputs = featurizer.featurize_documents_tf(blocks["title_token_ids"],
                                               blocks["body_token_ids"])  # [b, C] each
    pad = batch_size - tf.shape(rows)[0]
    padded = {name: tf.pad(t, [[0, pad], [0, 0]])
              for name, t in zip(("input_ids", "input_mask", "segment_ids"), inputs)}
    padded = {k: tf.ensure_shape(v, [batch_size, seq_len]) for k, v in padded.items()}
    padded["row"] = tf.ensure_shape(tf.pad(rows, [[0, pad]], constant_values=-1),
                                    [batch_size])
    padded["invalid"] = tf.ensure_shape(tf.pad(invalid, [[0, pad]]), [batch_size])
    return padded

  dataset = corpus_reader.records_dataset(shard_paths).enumerate()
  dataset = dataset.batch(batch_size)
  dataset = dataset.map(featurize, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return dataset.prefetch(tf.data.AUTOTUNE)


class Progress:
  """Logs blocks done and blocks/s every `interval_secs`."""

  def __init__(self, total: int, what: str = "Embedded", interval_secs: float = 10.0):
    self.total, self.what, self.interval = total, what, interval_secs
    self.start = self.last = time.monotonic()
    self.done = 0

  def update(self, num: int, force: bool = False) -> None:
    self.done += num
    now = time.monotonic()
    if force or now - self.last >= self.interval:
      self.last = now
      logging.info("%s %d/%d blocks (%.1f%%), %.1f blocks/s", self.what, self.done,
                   self.total, 100.0 * self.done / max(self.total, 1), self.rate())

  def rate(self) -> float:
    return self.done / max(time.monotonic() - self.start, 1e-9)


def embed_shards(shard_paths: Sequence[str], embed_fn: EmbedFn, featurizer: Featurizer,
                 batch_size: int, num_blocks: Optional[int] = None,
                 strategy: Optional[tf.distribute.Strategy] = None,
                 on_batch: Optional[Callable[[int, int], None]] = None,
                 log_interval_secs: float = 10.0) -> np.ndarray:
  """Embeds all blocks of `shard_paths` (in this order): float32 [num_blocks, D].

  Args:
    shard_paths: the shards, already sorted.
    embed_fn: (input_ids, input_mask, segment_ids) [b, C] -> [b, D]. Under a strategy it
      runs in each replica on its slice of the global batch.
    featurizer: builds the candidate inputs.
    batch_size: the global batch size (a multiple of the number of replicas).
    num_blocks: the expected number of blocks (counted when None); checked.
    strategy: a `tf.distribute.Strategy` (default: the current one).
    on_batch: called with (blocks done, num_blocks) after each batch.
    log_interval_secs: progress logging period.

  Raises:
    ValueError: the shards hold a different number of blocks than `num_blocks`.
    InputFileError: a shard is unreadable or holds a record that is not a block, a
      block without body tokens or with a token id outside the vocabulary; names the
      shard and the record.
  """
  strategy = strategy or tf.distribute.get_strategy()
  if batch_size % strategy.num_replicas_in_sync:
    raise ValueError(f"batch_size={batch_size} is not a multiple of the "
                     f"{strategy.num_replicas_in_sync} replicas")
  if num_blocks is None:
    num_blocks = sum(corpus_reader.count_records_parallel(shard_paths))
  dataset = blocks_dataset(shard_paths, featurizer, batch_size)
  dist_dataset = strategy.experimental_distribute_dataset(dataset)

  def replica_step(batch):
    emb = embed_fn(batch["input_ids"], batch["input_mask"], batch["segment_ids"])  # [b, D]
    return tf.cast(emb, tf.float32), batch["row"]

  @tf.function
  def step(batch):
    emb, rows = strategy.run(replica_step, args=(batch,))
    return strategy.experimental_local_results(emb), strategy.experimental_local_results(rows)

  output = None
  filled = 0
  progress = Progress(num_blocks, interval_secs=log_interval_secs)
  for batch in corpus_reader.named_read_errors(dist_dataset, shard_paths,
                                               corpus_reader.BLOCK_FEATURES):
    invalid = np.concatenate([v.numpy() for v in
                              strategy.experimental_local_results(batch["invalid"])])
    if invalid.any():
      rows = np.concatenate([r.numpy() for r in
                             strategy.experimental_local_results(batch["row"])])
      bad = int(np.flatnonzero(invalid)[0])
      raise corpus_reader.record_error(shard_paths, int(rows[bad]),
                                       corpus_reader.INVALID_REASONS[int(invalid[bad])])
    embs, rows = step(batch)
    emb = np.concatenate([e.numpy() for e in embs], axis=0)  # [batch_size, D]
    row = np.concatenate([r.numpy() for r in rows], axis=0)  # [batch_size]
    valid = row >= 0
    row, emb = row[valid], emb[valid]
    if row.size and row.max() >= num_blocks:
      raise ValueError(f"The shards {shard_paths[0]}... hold more than the expected "
                       f"{num_blocks} blocks")
    if output is None:
      output = np.zeros([num_blocks, emb.shape[1]], np.float32)
    output[row] = emb
    filled += row.size
    progress.update(row.size)
    if on_batch is not None:
      on_batch(filled, num_blocks)
  progress.update(0, force=True)
  if filled != num_blocks:
    raise ValueError(f"Embedded {filled} blocks but expected {num_blocks} "
                     f"(shards {shard_paths[0]}...)")
  return output


def embed_task(shard_paths: Sequence[str], counts: Sequence[int], task_index: int,
               num_tasks: int, embed_fn: EmbedFn, featurizer: Featurizer, batch_size: int,
               **kwargs) -> Dict[str, object]:
  """Embeds one worker's contiguous shard range.

  Returns:
    dict with `block_emb` [rows, D] (a [0, 0] array for an empty range), `shard_range`
    (start, end) and `rows`.
  """
  start, end = corpus_reader.shard_range(len(shard_paths), task_index, num_tasks)
  rows = int(sum(counts[start:end]))
  if rows == 0:
    emb = np.zeros([0, 0], np.float32)
  else:
    emb = embed_shards(shard_paths[start:end], embed_fn, featurizer, batch_size,
                       num_blocks=rows, **kwargs)
  return {"block_emb": emb, "shard_range": (start, end), "rows": rows}
