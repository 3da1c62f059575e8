"""Maximum-inner-product search over block embeddings: exact brute force and ScaNN.

Both implement `Searcher.search(query_emb [B, D]) -> (ids int32 [B, k], scores float32
[B, k])`, best first, and serialize into a directory with a `manifest.json` naming the
type and parameters; `load_searcher(directory)` restores either in a fresh process.

* `BruteForceSearcher` is exact: scores = q @ block_emb^T and top-k, computed over chunks
  of `chunk_size` rows with a running top-k so memory stays O(B * (k + chunk_size)) for
  any K. Ties are broken by the lower block id, so results are deterministic. It is a
  `tf.Module` (the embeddings are a variable, no 2 GB constant limit): its `search` runs
  inside `tf.function`s and can be saved within another SavedModel.
* `ScannSearcher` uses the TF ops of `scann` with the original ORQA configuration
  (`language/orqa/utils/scann_utils.py`) scaled to K: a k-means tree of about sqrt(K)
  leaves, asymmetric hashing with 2 dimensions per block, dot product, and optional
  exact reordering. It is saved as
  scann's `ScannState` SavedModel and reloaded with `scann_ops.searcher_from_module`.
  Where `scann` cannot be imported, `build_searcher` falls back to brute force with a
  warning.
"""

import abc
import json
import math
import os
import types
from typing import Any, Dict, Optional, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from realm_tf import errors
from realm_tf.retrieval import block_emb_file
from realm_tf.retrieval import export_dirs

MANIFEST_FILENAME = "manifest.json"
BRUTE_FORCE = "brute_force"
SCANN = "scann"
SEARCHER_TYPES = (SCANN, BRUTE_FORCE)
DEFAULT_CHUNK_SIZE = 65536


class SearcherError(errors.RealmInputError):
  """A searcher directory is missing, malformed or of an unknown type."""


def import_scann():
  """`scann.scann_ops` (and its TF ops), or None when scann cannot be imported."""
  try:
    from scann import scann_ops  # pylint: disable=g-import-not-at-top
    return scann_ops
  except Exception as e:  # pylint: disable=broad-except  (ImportError or an op-load error)
    logging.warning("scann cannot be imported (%s: %s).", type(e).__name__, e)
    return None


class Searcher(abc.ABC):
  """Top-k maximum inner product search over K block embeddings of size D."""

  searcher_type: str = ""
  # Set by subclasses' constructors.
  _num_blocks: int
  _dims: int
  _num_neighbors: int

  @property
  def num_blocks(self) -> int:
    """K."""
    return self._num_blocks

  @property
  def dims(self) -> int:
    """D."""
    return self._dims

  @property
  def num_neighbors(self) -> int:
    """The default k."""
    return self._num_neighbors

  @abc.abstractmethod
  def search(self, query_emb, k: Optional[int] = None) -> Tuple[tf.Tensor, tf.Tensor]:
    """Top-k blocks for each query.

    Args:
      query_emb: float32 [B, D].
      k: neighbours per query (default `num_neighbors`); a Python int.

    Returns:
      ids int32 [B, k] and scores float32 [B, k] (inner products), best first.
    """

  @abc.abstractmethod
  def params(self) -> Dict[str, Any]:
    """The parameters recorded in the manifest."""

  @abc.abstractmethod
  def _save_payload(self, directory: str, **kwargs) -> Dict[str, Any]:
    """Writes the searcher's data into `directory`; returns extra manifest entries."""

  def save(self, directory: str, **kwargs) -> str:
    """Writes the searcher into a new `directory` atomically (temp dir + rename)."""
    if tf.io.gfile.exists(directory):
      raise SearcherError(f"{directory} already exists")
    tmp = export_dirs.temp_dir_for(directory)
    tf.io.gfile.makedirs(tmp)
    try:
      extra = self._save_payload(tmp, **kwargs)
      manifest = dict(type=self.searcher_type, num_blocks=self.num_blocks, dims=self.dims,
                      num_neighbors=self.num_neighbors, params=self.params(), **extra)
      with tf.io.gfile.GFile(os.path.join(tmp, MANIFEST_FILENAME), "w") as f:
        f.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
      export_dirs.commit_directory(tmp, directory)
    finally:
      export_dirs.remove_tree(tmp)
    return directory


def _check_block_emb(block_emb) -> np.ndarray:
  block_emb = np.asarray(block_emb, np.float32)
  if block_emb.ndim != 2 or block_emb.shape[0] < 1:
    raise SearcherError(f"block_emb must be [K >= 1, D], got shape {block_emb.shape}")
  return block_emb


def _check_k(k: int, num_blocks: int) -> int:
  if not 1 <= k <= num_blocks:
    raise SearcherError(f"k={k} must be in [1, K={num_blocks}]")
  return int(k)


def exact_top_k(query_emb: tf.Tensor, block_emb, k: int,
                chunk_size: int = DEFAULT_CHUNK_SIZE) -> Tuple[tf.Tensor, tf.Tensor]:
  """Exact top-k inner products, chunked over the rows of `block_emb`.

  Args:
    query_emb: float32 [B, D].
    block_emb: float32 [K, D] tensor or variable, K >= k.
    k: a Python int.
    chunk_size: rows scored at a time.

  Returns:
    ids int32 [B, k], scores float32 [B, k]; among equal scores the lower id comes first.
  """
  query_emb = tf.convert_to_tensor(query_emb, tf.float32)  # [B, D]
  num_blocks = tf.shape(block_emb, out_type=tf.int32)[0]
  batch_size = tf.shape(query_emb)[0]
  num_chunks = (num_blocks + chunk_size - 1) // chunk_size

  def chunk_scores(start):
    rows = block_emb[start:start + chunk_size]  # [c, D]
    return tf.matmul(query_emb, rows, transpose_b=True)  # [B, c]

  # The running top-k starts as k placeholders scored -inf; concatenating it before each
  # chunk keeps lower ids first among ties, since tf.math.top_k is stable.
  best_scores = tf.fill([batch_size, k], tf.constant(-np.inf, tf.float32))  # [B, k]
  best_ids = tf.fill([batch_size, k], tf.constant(-1, tf.int32))  # [B, k]
  for i in tf.range(num_chunks):
    tf.autograph.experimental.set_loop_options(
        shape_invariants=[(best_scores, tf.TensorShape([None, k])),
                          (best_ids, tf.TensorShape([None, k]))])
    start = i * chunk_size
    scores = chunk_scores(start)  # [B, c]
    ids = start + tf.range(tf.shape(scores)[1], dtype=tf.int32)  # [c]
    ids = tf.broadcast_to(ids[None, :], tf.shape(scores))  # [B, c]
    all_scores = tf.concat([best_scores, scores], axis=1)  # [B, k + c]
    all_ids = tf.concat([best_ids, ids], axis=1)
    best_scores, top = tf.math.top_k(all_scores, k=k, sorted=True)  # [B, k]
    best_ids = tf.gather(all_ids, top, batch_dims=1)  # [B, k]
  return best_ids, best_scores


class BruteForceSearcher(tf.Module, Searcher):
  """Exact maximum inner product search (the original's BruteForceRetriever).

  Args:
    block_emb: float32 [K, D].
    num_neighbors: default k.
    chunk_size: rows scored at a time (bounds memory to B * (k + chunk_size) floats).
  """

  searcher_type = BRUTE_FORCE

  def __init__(self, block_emb, num_neighbors: int, chunk_size: int = DEFAULT_CHUNK_SIZE,
               name: str = "brute_force_searcher"):
    super().__init__(name=name)
    block_emb = _check_block_emb(block_emb)
    self._num_blocks, self._dims = block_emb.shape
    self._num_neighbors = _check_k(num_neighbors, self._num_blocks)
    if chunk_size < 1:
      raise SearcherError(f"chunk_size must be positive, got {chunk_size}")
    self._chunk_size = int(chunk_size)
    with tf.device("/CPU:0"):
      self.block_emb = tf.Variable(block_emb, trainable=False, name="block_emb")  # [K, D]
    # A plain object, so the tf.function cache is not tracked (nor saved).
    self._cache = types.SimpleNamespace(functions={})

  def params(self) -> Dict[str, Any]:
    return {"chunk_size": self._chunk_size}

  def _search_fn(self, k: int):
    functions = self._cache.functions
    if k not in functions:
      functions[k] = tf.function(
          lambda q: exact_top_k(q, self.block_emb, k, self._chunk_size),
          input_signature=[tf.TensorSpec([None, self._dims], tf.float32)])
    return functions[k]

  def search(self, query_emb, k: Optional[int] = None) -> Tuple[tf.Tensor, tf.Tensor]:
    k = _check_k(k or self._num_neighbors, self._num_blocks)
    if tf.inside_function():
      return exact_top_k(query_emb, self.block_emb, k, self._chunk_size)
    return self._search_fn(k)(tf.convert_to_tensor(query_emb, tf.float32))

  def _save_payload(self, directory: str, block_emb_checkpoint: Optional[str] = None,
                    **unused) -> Dict[str, Any]:
    """Points at an existing `block_emb` checkpoint (relative path) or writes one."""
    if block_emb_checkpoint is None:
      prefix = os.path.join(directory, "block_emb", block_emb_file.CHECKPOINT_NAME)
      block_emb_file.write_block_emb(prefix, self.block_emb.numpy())
      relative = os.path.join("block_emb", block_emb_file.CHECKPOINT_NAME)
    else:
      # Relative to the final directory (`directory` is its temp sibling).
      relative = os.path.relpath(block_emb_checkpoint, os.path.dirname(directory))
      relative = os.path.join("..", relative)
    return {"block_emb_checkpoint": relative}

  @classmethod
  def load(cls, directory: str, manifest: Dict[str, Any]) -> "BruteForceSearcher":
    prefix = os.path.normpath(os.path.join(directory, manifest["block_emb_checkpoint"]))
    block_emb = block_emb_file.read_block_emb(prefix)
    if block_emb.shape != (manifest["num_blocks"], manifest["dims"]):
      raise SearcherError(f"{prefix}: block_emb {block_emb.shape} does not match the "
                          f"manifest of {directory}")
    return cls(block_emb, manifest["num_neighbors"], **manifest["params"])


def default_scann_params(num_blocks: int) -> Dict[str, Any]:
  """ORQA's ScaNN parameters (1000 leaves, search 100, sample 100k for 13M blocks) scaled.

  Leaves ~ sqrt(K); one leaf in ten is searched (at least 1); the training sample is at
  most 100k rows; 2 dimensions per AH block; anisotropic threshold 0.2 (ScaNN's
  recommendation for MIPS); reorder the 100 best AH candidates exactly.
  """
  num_leaves = max(1, int(round(math.sqrt(num_blocks))))
  return {
      "num_leaves": num_leaves,
      "num_leaves_to_search": max(1, int(math.ceil(num_leaves / 10))),
      "training_sample_size": min(num_blocks, 100000),
      "dimensions_per_block": 2,
      "anisotropic_quantization_threshold": 0.2,
      "reorder_num_neighbors": 100,
  }


class ScannSearcher(Searcher):
  """Approximate MIPS with ScaNN's TF ops (tree + asymmetric hashing [+ reordering]).

  Build with `ScannSearcher.build(block_emb, num_neighbors, **params)` (see
  `default_scann_params`), or restore with `load_searcher`.
  """

  searcher_type = SCANN

  def __init__(self, handle_searcher, num_blocks: int, dims: int, num_neighbors: int,
               params: Dict[str, Any]):
    self._searcher = handle_searcher
    self._num_blocks = num_blocks
    self._dims = dims
    self._num_neighbors = num_neighbors
    self._params = dict(params)

  @classmethod
  def build(cls, block_emb, num_neighbors: int, **params) -> "ScannSearcher":
    scann_ops = import_scann()
    if scann_ops is None:
      raise SearcherError("scann is not importable; use build_searcher() for the fallback.")
    block_emb = _check_block_emb(block_emb)
    num_blocks, dims = block_emb.shape
    num_neighbors = _check_k(num_neighbors, num_blocks)
    full = default_scann_params(num_blocks)
    unknown = set(params) - set(full)
    if unknown:
      raise SearcherError(f"Unknown ScaNN parameters {sorted(unknown)}")
    full.update(params)
    num_leaves = min(full["num_leaves"], num_blocks)
    full["num_leaves"] = num_leaves
    full["num_leaves_to_search"] = min(full["num_leaves_to_search"], num_leaves)
    builder = scann_ops.builder(block_emb, num_neighbors, "dot_product")
    if num_leaves > 1:
      builder = builder.tree(
          num_leaves=num_leaves, num_leaves_to_search=full["num_leaves_to_search"],
          training_sample_size=min(full["training_sample_size"], num_blocks),
          # ScaNN's default (50) would refuse the small leaves of a small K.
          min_partition_size=max(1, min(50, num_blocks // (2 * num_leaves))))
    builder = builder.score_ah(
        full["dimensions_per_block"],
        anisotropic_quantization_threshold=full["anisotropic_quantization_threshold"],
        training_sample_size=min(full["training_sample_size"], num_blocks))
    if full["reorder_num_neighbors"]:
      builder = builder.reorder(max(full["reorder_num_neighbors"], num_neighbors))
    return cls(builder.build(), num_blocks, dims, num_neighbors, full)

  def params(self) -> Dict[str, Any]:
    return dict(self._params)

  @property
  def searcher_handle(self):
    """The ScaNN TF-ops searcher resource (what `scann_ops.scann_to_tensors` serializes)."""
    return self._searcher.searcher_handle

  def search(self, query_emb, k: Optional[int] = None) -> Tuple[tf.Tensor, tf.Tensor]:
    k = _check_k(k or self._num_neighbors, self._num_blocks)
    query_emb = tf.convert_to_tensor(query_emb, tf.float32)  # [B, D]
    pre_reorder = max(self._params["reorder_num_neighbors"] or 0, k)
    ids, scores = self._searcher.search_batched(
        query_emb, final_num_neighbors=k,
        pre_reorder_num_neighbors=pre_reorder if self._params["reorder_num_neighbors"] else None)
    return tf.cast(ids, tf.int32), scores  # [B, k] each

  def _save_payload(self, directory: str, **unused) -> Dict[str, Any]:
    module = self._searcher.serialize_to_module()
    tf.saved_model.save(module, os.path.join(directory, "searcher"))
    return {"saved_model": "searcher"}

  @classmethod
  def load(cls, directory: str, manifest: Dict[str, Any]) -> "ScannSearcher":
    scann_ops = import_scann()
    if scann_ops is None:
      raise SearcherError(f"{directory} holds a ScaNN searcher but scann cannot be imported")
    module = tf.saved_model.load(os.path.join(directory, manifest["saved_model"]))
    searcher = cls(scann_ops.searcher_from_module(module), manifest["num_blocks"],
                   manifest["dims"], manifest["num_neighbors"], manifest["params"])
    searcher._module = module  # pylint: disable=protected-access  (keeps the state alive)
    return searcher


def build_searcher(searcher_type: str, block_emb, num_neighbors: int,
                   **params) -> Searcher:
  """Builds a searcher of `searcher_type` ("scann" or "brute_force").

  ScaNN falls back to brute force, with a warning, when `scann` cannot be imported.
  `params` go to the chosen implementation (ScaNN parameters are dropped on fallback).
  """
  if searcher_type not in SEARCHER_TYPES:
    raise SearcherError(f"Unknown searcher type {searcher_type!r}; use one of {SEARCHER_TYPES}")
  if searcher_type == SCANN:
    if import_scann() is not None:
      return ScannSearcher.build(block_emb, num_neighbors, **params)
    logging.warning("scann is unavailable: falling back to the exact brute-force searcher.")
    params = {}
  return BruteForceSearcher(block_emb, num_neighbors, **params)


def read_manifest(directory: str) -> Dict[str, Any]:
  path = os.path.join(directory, MANIFEST_FILENAME)
  try:
    with tf.io.gfile.GFile(path, "r") as f:
      return json.loads(f.read())
  except tf.errors.NotFoundError as e:
    raise SearcherError(f"No searcher manifest at {path}") from e
  except json.JSONDecodeError as e:
    raise SearcherError(f"Malformed searcher manifest {path}: {e}") from e


def load_searcher(directory: str) -> Searcher:
  """Restores a searcher saved with `Searcher.save` (import scann first for ScaNN)."""
  manifest = read_manifest(directory)
  kind = manifest.get("type")
  if kind == BRUTE_FORCE:
    return BruteForceSearcher.load(directory, manifest)
  if kind == SCANN:
    return ScannSearcher.load(directory, manifest)
  raise SearcherError(f"{directory}: unknown searcher type {kind!r}")
