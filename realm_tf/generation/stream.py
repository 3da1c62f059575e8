"""Training and evaluation example streams that follow the refreshed index (as the
loop of `language/realm/example_generator.py`).

Each pass of training examples covers `num_shards_per_mips_refresh` training shards
sampled without replacement, retrieved with the newest committed index
(`export/encoded/<ts>`, or the initial embedder module with timestamp 0 when none exists).
When a pass ends, the next one uses whatever index is newest then, so the trainer picks
up refreshed indexes without restarting, as the original generators did. While the index
is unchanged the same dataset is iterated again (no re-tracing; a new pass re-samples the
shards, reshuffles and re-draws the masked spans). Evaluation uses the first
`eval_shards` sorted shards in a fixed order with a fixed seed.
"""

import dataclasses
import os
from typing import List, Optional, Sequence, Tuple

from absl import logging
import tensorflow as tf

from realm_tf.featurization import Featurizer
from realm_tf.generation import examples, pipeline, queries
from realm_tf.retrieval import block_emb_file, encoded_export, export_dirs


@dataclasses.dataclass
class Generation:
  """The index one pass of examples is retrieved with."""
  embedder_path: str
  block_emb_path: str
  export_timestamp: int


def split_shards(paths: Sequence[str], eval_shards: int) -> Tuple[List[str], List[str]]:
  """(eval, train): the first `eval_shards` sorted shards are the eval split."""
  paths = sorted(paths)
  if len(paths) <= eval_shards:
    raise ValueError(f"{len(paths)} pre-training shards leave none for training after "
                     f"--eval_shards={eval_shards}")
  return paths[:eval_shards], paths[eval_shards:]


def _indexes_corpus(encoded_dir: str, corpus_fingerprint: Optional[str]) -> bool:
  """Whether the committed index embeds the corpus of this fingerprint (None: any)."""
  if corpus_fingerprint is None:
    return True
  recorded = block_emb_file.read_index_corpus(
      os.path.dirname(encoded_export.block_emb_prefix(encoded_dir)))
  if recorded is None:
    return True  # An index from before indexes recorded their corpus.
  if recorded.get("fingerprint_sha256") != corpus_fingerprint:
    if encoded_dir not in _WARNED:
      _WARNED.add(encoded_dir)
      logging.warning("Skipping %s: it indexes another corpus (%s); the refresh job "
                      "re-embeds this one.", encoded_dir, recorded.get("pattern"))
    return False
  return True


_WARNED = set()  # Stale indexes already reported (one warning each, not one per pass).


def latest_generation(model_dir: str, initial_embedder: Optional[str],
                      corpus_fingerprint: Optional[str] = None) -> Generation:
  """The newest committed index of the corpus, or the initial embedder module (ts 0).

  Committed indexes of another corpus (`corpus_fingerprint` differs from the one they
  record, e.g. a model_dir reused after the corpus changed) are skipped: their rows
  would name the wrong blocks.
  """
  paths = export_dirs.export_paths(export_dirs.export_base(model_dir,
                                                           encoded_export.ENCODED_PREFIX))
  for encoded_dir in reversed(paths):
    if _indexes_corpus(encoded_dir, corpus_fingerprint):
      return Generation(encoded_export.embedder_path(encoded_dir),
                        encoded_export.block_emb_prefix(encoded_dir),
                        export_dirs.timestamp_of(encoded_dir))
  if not initial_embedder:
    raise FileNotFoundError(f"No committed index under {model_dir}/export/encoded and no "
                            "initial embedder module (--initial_embedder_module)")
  return Generation(initial_embedder,
                    f"{initial_embedder.rstrip('/')}/encoded/encoded.ckpt", 0)


class ExampleStream:
  """Batches of valid examples, regenerated with the newest index after every pass.

  Args:
    model_dir: where `export/encoded/<ts>` indexes appear.
    pretrain_paths: the pre-training shards of this stream.
    retrieval_paths: sorted retrieval-corpus shards.
    featurizer: the `Featurizer`.
    batch_size: global batch size (drop remainder).
    initial_embedder: embedder module with `encoded/encoded.ckpt` used before any refresh.
    shards_per_pass: training shards per pass (None: all).
    training: shuffle shards and examples; otherwise deterministic (eval).
    seed: base seed.
    retrieval_batch_size: queries per retrieval call (the original: 64).
    data_service: tf.data service address ("grpc://host:port") to generate on, or None.
    searcher: "brute_force" (exact, in the dataset graph) or "scann" (the searcher the
      refresh job saved with each index; in-process only; exact search is used for the
      initial module, which has none).
    corpus_fingerprint: the retrieval corpus's fingerprint; committed indexes of another
      corpus are not used (`latest_generation`).
  """

  def __init__(self, model_dir: str, pretrain_paths: Sequence[str],
               retrieval_paths: Sequence[str], featurizer: Featurizer, batch_size: int,
               initial_embedder: Optional[str] = None, shards_per_pass: Optional[int] = None,
               training: bool = True, seed: int = 0, retrieval_batch_size: int = 64,
               data_service: Optional[str] = None, searcher: str = "brute_force",
               corpus_fingerprint: Optional[str] = None):
    if searcher not in ("brute_force", "scann"):
      raise ValueError(f"searcher must be brute_force or scann, got {searcher!r}")
    if searcher == "scann" and data_service:
      raise ValueError("The ScaNN searcher holds process-local resources and cannot run on "
                       "tf.data service workers; use searcher=brute_force there.")
    self.model_dir = model_dir
    self.pretrain_paths = list(pretrain_paths)
    self.retrieval_paths = sorted(retrieval_paths)
    self.featurizer = featurizer
    self.batch_size = batch_size
    self.initial_embedder = initial_embedder
    self.shards_per_pass = shards_per_pass
    self.training = training
    self.seed = seed
    self.retrieval_batch_size = retrieval_batch_size
    self.data_service = data_service
    self.searcher = searcher
    self.corpus_fingerprint = corpus_fingerprint
    self.counters = tf.Variable(tf.zeros([len(queries.STATUS_NAMES)], tf.int64),
                                trainable=False, name="generation_counters")
    self.generation = -1  # one per index used
    self.passes = 0
    self.current: Optional[Generation] = None
    self._dataset: Optional[tf.data.Dataset] = None
    self._masked_queries: Optional[tf.data.Dataset] = None  # built by the first pass

  def index(self) -> Generation:
    """The index examples are being retrieved from: that of the current pass, or the
    newest one before the first pass."""
    return self.current or latest_generation(self.model_dir, self.initial_embedder)

  def dataset(self) -> tf.data.Dataset:
    """The dataset of global batches for the next pass (finite)."""
    self.passes += 1
    latest = latest_generation(self.model_dir, self.initial_embedder,
                               self.corpus_fingerprint)
    if self._dataset is not None and latest == self.current and not self.data_service:
      return self._dataset
    self.generation += 1
    self.current = latest
    sample_shards = 0
    if self.training and self.shards_per_pass and self.shards_per_pass < len(
        self.pretrain_paths):
      # Sampled when each pass starts (on tf.data service: by each worker, like each of
      # the original's generator processes).
      sample_shards = self.shards_per_pass
    logging.info("Example generation %d: %d of %d shards per pass, index timestamp %d (%s)",
                 self.generation, sample_shards or len(self.pretrain_paths),
                 len(self.pretrain_paths), latest.export_timestamp, latest.embedder_path)
    # Training draws spans afresh on every pass; eval is reproducible.
    seed = None if self.training else [self.seed, 0]
    search_fn = None
    if self.searcher == "scann" and latest.export_timestamp > 0:
      saved = encoded_export.load_searcher(os.path.dirname(latest.embedder_path), "scann")
      search_fn = lambda q: saved.search(q, k=self.featurizer.num_candidates)[0]  # pylint: disable=g-long-lambda
    if self._masked_queries is None:
      # Index-independent; unseeded (training) draws fresh spans on every iteration.
      self._masked_queries = queries.query_dataset(
          self.pretrain_paths, self.featurizer, self.retrieval_batch_size, seed,
          shuffle=self.training, sample_shards=sample_shards)
    batches = pipeline.generation_dataset(
        self.pretrain_paths, self.retrieval_paths, latest.block_emb_path,
        pipeline.frozen_query_embedder(latest.embedder_path), self.featurizer,
        latest.export_timestamp, seed, shuffle=self.training,
        retrieval_batch_size=self.retrieval_batch_size, sample_shards=sample_shards,
        search_fn=search_fn, masked_queries=self._masked_queries)
    if self.data_service:
      service = tf.data.experimental.service
      batches = batches.apply(service.distribute(
          processing_mode=service.ShardingPolicy.OFF, service=self.data_service,
          job_name=f"realm-{'train' if self.training else 'eval'}-{self.seed}-"
                   f"{self.generation}", max_outstanding_requests=4))
    valid = examples.keep_valid_examples(batches, self.counters)
    if self.training:
      valid = valid.shuffle(1000)
    self._dataset = valid.batch(self.batch_size, drop_remainder=True).prefetch(2)
    return self._dataset

  def counts(self) -> dict:
    """Statuses counted so far ({"ok": n, "no_valid_spans": n, ...})."""
    return dict(zip(queries.STATUS_NAMES, self.counters.numpy().tolist()))
