"""The block-embedding index file: `block_emb` [K, D] float32 in a TF checkpoint.

The original wrote a TF1 (V2-format) checkpoint at `<module_dir>/encoded/encoded.ckpt`
holding one variable named exactly `block_emb`; REALM's brute-force retriever and ORQA's
ScaNN loader read it with `tf.train.load_checkpoint(prefix).get_tensor("block_emb")`.
The same key is written here with `tf.raw_ops.SaveV2` (an object-based `tf.train.Checkpoint`
would name it `block_emb/.ATTRIBUTES/VARIABLE_VALUE`), so original tools interoperate.

Writes are atomic: the files go to a fresh temp directory that is renamed to the
checkpoint's directory once complete. Workers that embed shard ranges write partial
arrays (`write_partial`) that `merge_partials` concatenates in task order.
"""

import json
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from realm_tf import errors
from realm_tf.retrieval import export_dirs

VAR_NAME = "block_emb"
ENCODED_DIR = "encoded"
CHECKPOINT_NAME = "encoded.ckpt"
PARTIALS_DIR = "partials"


class BlockEmbError(errors.RealmInputError):
  """A block-embedding file is missing, malformed or inconsistent."""


def checkpoint_prefix(module_dir: str) -> str:
  """`<module_dir>/encoded/encoded.ckpt`, where the original kept `block_emb`."""
  return os.path.join(module_dir, ENCODED_DIR, CHECKPOINT_NAME)


def _check_array(block_emb: np.ndarray, what: str) -> np.ndarray:
  block_emb = np.asarray(block_emb)
  if block_emb.ndim != 2 or block_emb.shape[0] < 1:
    raise BlockEmbError(f"{what}: block_emb must be [K >= 1, D], got {block_emb.shape}")
  if not np.issubdtype(block_emb.dtype, np.floating):
    raise BlockEmbError(f"{what}: block_emb must be floating point, got {block_emb.dtype}")
  return np.ascontiguousarray(block_emb, dtype=np.float32)


INDEX_CORPUS_FILENAME = "index_corpus.json"


def read_index_corpus(index_dir: str) -> Optional[Dict[str, Any]]:
  """What `<index_dir>/index_corpus.json` says about the corpus the index embeds.

  Returns None for an index that records nothing (older indexes, the original's).
  """
  path = os.path.join(index_dir, INDEX_CORPUS_FILENAME)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path, "r") as f:
    text = f.read()
  try:
    return json.loads(text)
  except ValueError:
    raise errors.InputFileError(path, None, "not valid JSON") from None


def write_block_emb(prefix: str, block_emb: np.ndarray, var_name: str = VAR_NAME,
                    corpus_info: Optional[Dict[str, Any]] = None) -> str:
  """Writes `block_emb` [K, D] as a V2 checkpoint at `prefix`, atomically.

  The checkpoint's directory (`dirname(prefix)`, e.g. `.../embedder/encoded`) is written
  in full under a temp name and then renamed into place; it must not exist yet. A
  `checkpoint` state file is written beside, as `tf.compat.v1.train.Saver` did, and, with
  `corpus_info` (`RetrievalCorpus.describe()`), `index_corpus.json`, which consumers check
  against the corpus they pair the index with.

  Returns:
    The prefix.
  """
  block_emb = _check_array(block_emb, prefix)
  final_dir = os.path.dirname(os.path.normpath(prefix))
  if tf.io.gfile.exists(final_dir):
    raise BlockEmbError(f"{final_dir} already exists; block indexes are never overwritten.")
  tmp_dir = export_dirs.temp_dir_for(final_dir)
  tf.io.gfile.makedirs(tmp_dir)
  try:
    tmp_prefix = os.path.join(tmp_dir, os.path.basename(prefix))
    with tf.device("/CPU:0"):
      # An eager tensor, not a graph constant: no 2 GB limit.
      tf.raw_ops.SaveV2(prefix=tmp_prefix, tensor_names=[var_name], shape_and_slices=[""],
                        tensors=[tf.convert_to_tensor(block_emb)])
    name = os.path.basename(prefix)
    with tf.io.gfile.GFile(os.path.join(tmp_dir, "checkpoint"), "w") as f:
      f.write(f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')
    if corpus_info is not None:
      with tf.io.gfile.GFile(os.path.join(tmp_dir, INDEX_CORPUS_FILENAME), "w") as f:
        f.write(json.dumps(dict(corpus_info, num_rows=int(block_emb.shape[0])), indent=2,
                           sort_keys=True) + "\n")
    export_dirs.commit_directory(tmp_dir, final_dir)
  finally:
    export_dirs.remove_tree(tmp_dir)
  return prefix


def read_block_emb(prefix: str, var_name: str = VAR_NAME) -> np.ndarray:
  """Reads `block_emb` [K, D] float32 from the checkpoint at `prefix` (or its directory)."""
  if tf.io.gfile.isdir(prefix):
    found = tf.train.latest_checkpoint(prefix)
    if found is None:
      raise BlockEmbError(f"No checkpoint in directory {prefix}")
    prefix = found
  try:
    reader = tf.train.load_checkpoint(prefix)
  except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError) as e:
    raise BlockEmbError(f"Cannot read the block-embedding checkpoint {prefix}: {e}") from e
  if not reader.has_tensor(var_name):
    keys = sorted(reader.get_variable_to_shape_map())
    raise BlockEmbError(f"Checkpoint {prefix} has no tensor {var_name!r} (has {keys[:5]})")
  return _check_array(reader.get_tensor(var_name), prefix)


def partial_name(task_index: int, num_tasks: int) -> str:
  return f"part-{task_index:05d}-of-{num_tasks:05d}.npy"


def write_partial(directory: str, task_index: int, num_tasks: int,
                  block_emb: np.ndarray, info: dict) -> str:
  """Writes one worker's rows (`.npy`) and its `info` (`.json`) atomically; returns the path.

  `directory` must exist.
  The JSON is renamed into place last, so its presence means the array is complete.
  """
  if not 0 <= task_index < num_tasks:
    raise BlockEmbError(f"task_index {task_index} is not in [0, {num_tasks})")
  block_emb = np.asarray(block_emb, np.float32)
  if not os.path.isdir(directory):
    # Not created here: a staging dir moved away meanwhile must not be re-created.
    raise BlockEmbError(f"Partials directory {directory} does not exist")
  path = os.path.join(directory, partial_name(task_index, num_tasks))
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "wb") as f:
    np.save(f, block_emb)
  os.replace(tmp, path)
  info = dict(info, rows=int(block_emb.shape[0]), task_index=task_index, num_tasks=num_tasks)
  export_dirs.write_text_atomic(path[:-len(".npy")] + ".json", json.dumps(info, sort_keys=True))
  return path


def completed_partials(directory: str, num_tasks: int) -> List[int]:
  """The task indexes whose partial (array and info) is complete in `directory`."""
  done = []
  for task in range(num_tasks):
    base = os.path.join(directory, partial_name(task, num_tasks))
    if os.path.exists(base) and os.path.exists(base[:-len(".npy")] + ".json"):
      done.append(task)
  return done


def read_partial_info(directory: str, task_index: int, num_tasks: int) -> dict:
  path = os.path.join(directory, partial_name(task_index, num_tasks))[:-len(".npy")] + ".json"
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def merge_partials(directory: str, num_tasks: int,
                   expected_rows: Sequence[int] = None) -> np.ndarray:
  """Concatenates the partial arrays of tasks 0..num_tasks-1 (corpus order).

  Args:
    directory: where `write_partial` wrote them.
    num_tasks: the number of workers.
    expected_rows: optional row count per task, checked.

  Raises:
    BlockEmbError: a partial is missing, has a different D, or the wrong row count.
  """
  arrays = []
  for task in range(num_tasks):
    path = os.path.join(directory, partial_name(task, num_tasks))
    if task not in completed_partials(directory, num_tasks):
      raise BlockEmbError(f"Partial block embeddings of task {task} missing: {path}")
    array = np.load(path)
    if array.ndim != 2:
      raise BlockEmbError(f"{path}: shape {array.shape} is not [rows, D]")
    if expected_rows is not None and array.shape[0] != expected_rows[task]:
      raise BlockEmbError(f"{path}: {array.shape[0]} rows, expected {expected_rows[task]}")
    if not array.shape[0]:
      continue  # A worker whose shard range is empty.
    if arrays and array.shape[1] != arrays[0].shape[1]:
      raise BlockEmbError(f"{path}: shape {array.shape} does not match the other partials")
    arrays.append(array)
  if not arrays:
    raise BlockEmbError(f"All partial block embeddings in {directory} are empty")
  return np.concatenate(arrays, axis=0)
