"""Training and evaluation example streams that follow the refreshed index (spec 5.2).

Each *generation* of training examples is one pass over `num_shards_per_mips_refresh`
training shards sampled without replacement, retrieved with the newest committed index
(`export/encoded/<ts>`, or the initial embedder module with timestamp 0 when none exists).
When a pass ends, the next one starts with whatever index is newest then, so the trainer
picks up refreshed indexes without restarting, as the original generators did. Evaluation
uses the first `eval_shards` sorted shards in a fixed order with a fixed seed.
"""

import dataclasses
import random
from typing import List, Optional, Sequence, Tuple

from absl import logging
import tensorflow as tf

from realm_tf.featurization import Featurizer
from realm_tf.generation import examples, pipeline, queries
from realm_tf.retrieval import encoded_export, export_dirs


@dataclasses.dataclass
class Generation:
  """The index one pass of examples is retrieved with."""
  embedder_path: str
  block_emb_path: str
  export_timestamp: int


def split_shards(paths: Sequence[str], eval_shards: int) -> Tuple[List[str], List[str]]:
  """(eval, train): the first `eval_shards` sorted shards are the eval split (spec 1.1)."""
  paths = sorted(paths)
  if len(paths) <= eval_shards:
    raise ValueError(f"{len(paths)} pre-training shards leave none for training after "
                     f"--eval_shards={eval_shards}")
  return paths[:eval_shards], paths[eval_shards:]


def latest_generation(model_dir: str, initial_embedder: Optional[str]) -> Generation:
  """The newest committed index, or the initial embedder module (timestamp 0)."""
  encoded_dir = encoded_export.newest_encoded_dir(model_dir)
  if encoded_dir is not None:
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
    shards_per_pass: training shards per generation (None: all, one fixed order = eval).
    training: shuffle shards and examples; otherwise deterministic (eval).
    seed: base seed.
    retrieval_batch_size: queries per retrieval call (the original: 64).
    data_service: tf.data service address ("grpc://host:port") to generate on, or None.
  """

  def __init__(self, model_dir: str, pretrain_paths: Sequence[str],
               retrieval_paths: Sequence[str], featurizer: Featurizer, batch_size: int,
               initial_embedder: Optional[str] = None, shards_per_pass: Optional[int] = None,
               training: bool = True, seed: int = 0, retrieval_batch_size: int = 64,
               data_service: Optional[str] = None):
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
    self.counters = tf.Variable(tf.zeros([len(queries.STATUS_NAMES)], tf.int64),
                                trainable=False, name="generation_counters")
    self.generation = -1
    self.current: Optional[Generation] = None
    self._rng = random.Random(seed)

  def _pass_shards(self) -> List[str]:
    if not self.shards_per_pass or self.shards_per_pass >= len(self.pretrain_paths):
      shards = list(self.pretrain_paths)
      if self.training:
        self._rng.shuffle(shards)
      return shards
    return self._rng.sample(self.pretrain_paths, self.shards_per_pass)

  def dataset(self) -> tf.data.Dataset:
    """The next generation's dataset of global batches (finite: one pass)."""
    self.generation += 1
    self.current = latest_generation(self.model_dir, self.initial_embedder)
    # On tf.data service every worker runs the whole dataset graph (ShardingPolicy.OFF):
    # in training each samples its own shards at iteration time, like each of the
    # original's generator processes; eval should then run on a single worker.
    sample_in_graph = bool(self.data_service and self.training and self.shards_per_pass)
    shards = self.pretrain_paths if sample_in_graph else self._pass_shards()
    logging.info("Example generation %d: %d shards, index timestamp %d (%s)",
                 self.generation, self.shards_per_pass if sample_in_graph else len(shards),
                 self.current.export_timestamp, self.current.embedder_path)
    seed = [self.seed, self.generation if self.training else 0]
    batches = pipeline.generation_dataset(
        shards, self.retrieval_paths, self.current.block_emb_path,
        pipeline.frozen_query_embedder(self.current.embedder_path), self.featurizer,
        self.current.export_timestamp, seed, shuffle=self.training,
        retrieval_batch_size=self.retrieval_batch_size,
        sample_shards=self.shards_per_pass if sample_in_graph else 0)
    if self.data_service:
      service = tf.data.experimental.service
      batches = batches.apply(service.distribute(
          processing_mode=service.ShardingPolicy.OFF, service=self.data_service,
          job_name=f"realm-{'train' if self.training else 'eval'}-{self.seed}-"
                   f"{self.generation}", max_outstanding_requests=4))
    valid = examples.keep_valid_examples(batches, self.counters)
    if self.training:
      valid = valid.shuffle(1000, seed=self.seed + self.generation)
    return valid.batch(self.batch_size, drop_remainder=True).prefetch(2)

  def counts(self) -> dict:
    """Statuses counted so far ({"ok": n, "no_valid_spans": n, ...})."""
    return dict(zip(queries.STATUS_NAMES, self.counters.numpy().tolist()))
