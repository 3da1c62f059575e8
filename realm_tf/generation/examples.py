"""Masked queries to REALM training examples with live retrieval, in-graph (as
`language/realm/example_generator.py`).

For a batch of masked queries: embed the queries with the current query embedder, retrieve
the top-N blocks, flag examples whose retrieved blocks repeat a UID (duplicate documents in
the index), remove the originating document, put the null document first, and featurize.
The embedder and the searcher are callables, so the same code serves the refreshed
exports of a running pre-training job, an initial ICT module, and toy models in tests.
"""

from typing import Callable, Dict, Sequence

import tensorflow as tf

from realm_tf.featurization import (BertInputs, Featurizer, document_fingerprint,
                                    has_duplicates_tf, prepend_null_document,
                                    select_candidates_tf)
from realm_tf.generation import queries
from realm_tf.retrieval import corpus_reader

EmbedFn = Callable[[BertInputs], tf.Tensor]  # query inputs [b, Q] -> embeddings [b, D]
SearchFn = Callable[[tf.Tensor], tf.Tensor]  # embeddings [b, D] -> block ids [b, k]

def parse_blocks_with_uids(serialized):
  """Title ids, body ids [b, (len)] and in-graph uids [b] of serialized blocks [b]."""
  ids = corpus_reader.parse_blocks(serialized)
  texts = corpus_reader.parse_block_texts(serialized)
  return (ids["title_token_ids"], ids["body_token_ids"],
          document_fingerprint(texts["title"], texts["body"]))


class BlockStore(tf.Module):
  """Token ids of every retrieval-corpus block in memory; row i = block i.

  Args:
    title_ids, body_ids: int RaggedTensors [K, (len)].
    uids: int64 [K] in-graph document UIDs (`document_fingerprint(title, body)`).
  """

  def __init__(self, title_ids: tf.RaggedTensor, body_ids: tf.RaggedTensor, uids):
    super().__init__(name="block_store")
    self._title_ids = tf.cast(title_ids, tf.int32).with_row_splits_dtype(tf.int64)
    self._body_ids = tf.cast(body_ids, tf.int32).with_row_splits_dtype(tf.int64)
    self.uids = tf.convert_to_tensor(uids, tf.int64)  # [K]

  @property
  def num_blocks(self) -> int:
    return int(self.uids.shape[0])

  @classmethod
  def from_shards(cls, paths: Sequence[str]) -> "BlockStore":
    """Loads retrieval-corpus shards (GZIP TFRecords), in the given (sorted) order."""
    batches = [parse_blocks_with_uids(b)
               for b in corpus_reader.records_dataset(paths).batch(8192)]
    if not batches:
      raise ValueError(f"No blocks in the retrieval corpus shards {list(paths)}")
    return cls(*[tf.concat(parts, 0) for parts in zip(*batches)])

  def gather(self, block_ids):
    """Title ids, body ids [b, k, (len)] and uids [b, k] of blocks [b, k]."""
    return (tf.gather(self._title_ids, block_ids), tf.gather(self._body_ids, block_ids),
            tf.gather(self.uids, block_ids))


def retrieve_and_featurize(masked: Dict[str, object], embed_fn: EmbedFn,
                           search_fn: SearchFn, store: BlockStore, featurizer: Featurizer,
                           export_timestamp) -> Dict[str, object]:
  """Builds the examples of a batch of masked queries (`queries.mask_queries` output).

  Args:
    masked: masked queries [b] with `status`.
    embed_fn: query embedder on `featurizer.featurize_query_tf` inputs.
    search_fn: top-N searcher (N = featurizer.num_candidates) over `store`'s blocks.
    store: the blocks the searcher's ids index.
    featurizer: the `Featurizer`.
    export_timestamp: int scalar, timestamp of the embedder export (0 = initial module).

  Returns:
    dict with `features` (batched example structure, [b, ...]) and `status` [b].
  """
  num_candidates = featurizer.num_candidates
  query_emb = embed_fn(featurizer.featurize_query_tf(masked["masked_token_ids"]))  # [b, D]
  retrieved = tf.ensure_shape(tf.cast(search_fn(query_emb), tf.int32),
                              [None, None])[:, :num_candidates]  # [b, N]
  uids = tf.gather(store.uids, retrieved)  # [b, N]
  keep, enough = select_candidates_tf(uids, masked["orig_doc_uid"], num_candidates)
  duplicate = tf.logical_or(has_duplicates_tf(uids), tf.logical_not(enough))
  status = tf.where(tf.logical_and(masked["status"] == queries.OK, duplicate),
                    queries.DUPLICATE_CANDIDATES, masked["status"])
  titles, bodies, _ = store.gather(tf.gather(retrieved, keep, batch_dims=1))  # [b, N-1, (len)]
  features = featurizer.featurize_examples_tf(
      masked, prepend_null_document(titles), prepend_null_document(bodies),
      export_timestamp)
  return dict(features=features, status=tf.cast(status, tf.int32))


def keep_valid_examples(dataset: tf.data.Dataset, counters: tf.Variable) -> tf.data.Dataset:
  """Counts statuses into `counters` (int64 [5], `queries.STATUS_NAMES`), keeps OK examples.

  Args:
    dataset: batches of `retrieve_and_featurize` outputs.
    counters: a variable updated as elements pass (runs where the dataset is iterated).

  Returns:
    Dataset of single valid examples (unbatched features).
  """
  def count(element):
    update = tf.math.bincount(element["status"], minlength=len(queries.STATUS_NAMES),
                              maxlength=len(queries.STATUS_NAMES), dtype=tf.int64)
    with tf.control_dependencies([counters.assign_add(update)]):
      return tf.nest.map_structure(tf.identity, element)

  return (dataset.map(count).unbatch()
          .filter(lambda element: element["status"] == queries.OK)
          .map(lambda element: element["features"]))
