"""The example-generation dataset of one index generation, serializable for tf.data service.

tf.data service ships the dataset *graph* to its workers, so the graph may capture no
variables or other process-local resources. The pipeline therefore holds:

* the query embedder as a frozen function (its weights become graph constants);
* the block embeddings and the retrieval corpus token ids as *dataset elements*, read from
  files on the worker (`RestoreV2` of `block_emb`, the GZIP retrieval shards), cached
  once per iterator and zipped with every batch of queries (tensors pass by reference);
* exact maximum inner product search (matmul + top-k) in the graph.

The same dataset runs in-process (`--data_service` unset) or on tf.data service workers.
"""

from typing import Callable, Optional, Sequence

import tensorflow as tf
from tensorflow.python.framework import convert_to_constants  # pylint: disable=g-direct-tensorflow-import

from realm_tf.featurization import BertInputs, Featurizer
from realm_tf.generation import examples, queries
from realm_tf.retrieval import corpus_reader


def frozen_query_embedder(embedder_path: str) -> Callable[[BertInputs], tf.Tensor]:
  """Loads an embedder export's `projected` signature with its weights as constants.

  Args:
    embedder_path: a TF-Hub-style embedder SavedModel (docs/ARCHITECTURE.md, Contracts).

  Returns:
    fn(BertInputs [b, L]) -> float32 [b, D], free of variables (serializable).
  """
  loaded = tf.saved_model.load(embedder_path)
  if "projected" not in loaded.signatures:
    raise ValueError(f"{embedder_path} has no `projected` signature "
                     f"(signatures: {sorted(loaded.signatures)})")
  signature = loaded.signatures["projected"]
  frozen = convert_to_constants.convert_variables_to_constants_v2(signature)
  # The frozen function takes the signature's inputs positionally, in sorted-key order.
  order = sorted(signature.structured_input_signature[1])

  def embed(inputs: BertInputs) -> tf.Tensor:
    by_name = {"input_ids": inputs.token_ids, "input_mask": inputs.mask,
               "segment_ids": inputs.segment_ids}
    outputs = frozen(*[tf.cast(by_name[name], tf.int32) for name in order])
    return tf.ensure_shape(tf.nest.flatten(outputs)[0], [None, None])  # [b, D]

  return embed


def restore_block_emb(checkpoint_prefix) -> tf.Tensor:
  """Reads `block_emb` [K, D] from an index checkpoint as a graph op."""
  block_emb = tf.raw_ops.RestoreV2(prefix=checkpoint_prefix, tensor_names=["block_emb"],
                                   shape_and_slices=[""], dtypes=[tf.float32])[0]
  return tf.ensure_shape(block_emb, [None, None])  # [K, D]


def _corpus_element(retrieval_paths: Sequence[str]):
  """All blocks as one element: title ids, body ids [K, (len)] and uids [K]."""
  return corpus_reader.records_dataset(retrieval_paths).batch(1 << 62).map(
      examples.parse_blocks_with_uids)


def generation_dataset(pretrain_paths: Sequence[str], retrieval_paths: Sequence[str],
                       block_emb_path: str, embed_fn: Callable[[BertInputs], tf.Tensor],
                       featurizer: Featurizer, export_timestamp: int, seed,
                       shuffle: bool, retrieval_batch_size: int = 64,
                       sample_shards: int = 0,
                       search_fn: Optional[examples.SearchFn] = None,
                       masked_queries: Optional[tf.data.Dataset] = None) -> tf.data.Dataset:
  """Batches of examples and statuses for one pass over `pretrain_paths`.

  Args:
    pretrain_paths: pre-training shards of this pass.
    retrieval_paths: sorted retrieval-corpus shards (row i of block_emb = block i).
    block_emb_path: checkpoint prefix of the index (`.../encoded/encoded.ckpt`).
    embed_fn: query embedder (e.g. `frozen_query_embedder`; for tf.data service it must
      capture no variables).
    featurizer: the `Featurizer`.
    export_timestamp: timestamp of the export that made the index (0 = initial module).
    seed: int [2] seed of the span choice and shuffles, or None (fresh on every pass).
    shuffle: training order (shuffled) or evaluation order (deterministic).
    retrieval_batch_size: queries embedded and searched together.
    sample_shards: read this many of `pretrain_paths`, sampled at iteration time
      (`queries.query_dataset`); 0 reads them all.
    search_fn: a searcher (e.g. the export's ScaNN searcher) used instead of the in-graph
      exact search; it captures resources, so the dataset then runs in-process only.
    masked_queries: `queries.query_dataset` of these arguments, if already built. It does
      not depend on the index, so a stream builds it once and reuses it for every
      generation (tracing it costs as much as the rest of the pipeline).

  Returns:
    Dataset of dicts {features: [b, ...], status: [b]}; see `keep_valid_examples`.
  """
  masked = masked_queries
  if masked is None:
    masked = queries.query_dataset(pretrain_paths, featurizer, retrieval_batch_size, seed,
                                   shuffle, sample_shards=sample_shards)
  index = tf.data.Dataset.zip((
      tf.data.Dataset.from_tensors(block_emb_path).map(restore_block_emb),
      _corpus_element(retrieval_paths))).cache().repeat()

  def generate(batch, index_element):
    block_emb, (title_ids, body_ids, uids) = index_element
    store = examples.BlockStore(title_ids, body_ids, uids)
    search = search_fn or (lambda q: tf.math.top_k(  # pylint: disable=g-long-lambda
        tf.matmul(q, block_emb, transpose_b=True), k=featurizer.num_candidates).indices)
    return examples.retrieve_and_featurize(batch, embed_fn, search, store, featurizer,
                                           export_timestamp)

  return tf.data.Dataset.zip((masked, index)).map(
      generate, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle)
