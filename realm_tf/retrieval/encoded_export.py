"""Reading a committed index snapshot `model_dir/export/encoded/<ts>/`.

Layout (see also docs/ARCHITECTURE.md):

  encoded/<ts>/embedder/                     the embedder SavedModel that embedded the corpus
  encoded/<ts>/embedder/encoded/encoded.ckpt block_emb [K, D] float32
  encoded/<ts>/<scann|brute_force>/          the serialized searcher + its manifest.json
  encoded/<ts>/manifest.json                 what, when, from which corpus, timings
  encoded/<ts>/global_step.txt, bert/, ...   the rest of the tf_hub export, as staged

Snapshots appear only by an atomic rename, so everything here is complete once visible.
"""

import json
import os
from typing import Any, Dict, Optional

import tensorflow as tf

from realm_tf.retrieval import block_emb_file
from realm_tf.retrieval import export_dirs
from realm_tf.retrieval import searchers

ENCODED_PREFIX = "encoded"
MANIFEST_FILENAME = "manifest.json"
EMBEDDER_DIR = "embedder"


def newest_encoded_dir(model_dir: str) -> Optional[str]:
  """The newest committed `model_dir/export/encoded/<ts>`, or None."""
  return export_dirs.newest_export_path(model_dir, ENCODED_PREFIX)


def read_manifest(encoded_dir: str) -> Dict[str, Any]:
  """The snapshot's `manifest.json`."""
  path = os.path.join(encoded_dir, MANIFEST_FILENAME)
  try:
    with tf.io.gfile.GFile(path, "r") as f:
      return json.loads(f.read())
  except tf.errors.NotFoundError as e:
    raise FileNotFoundError(f"No manifest at {path}: not a committed encoded export") from e


def embedder_path(encoded_dir: str) -> str:
  return os.path.join(encoded_dir, EMBEDDER_DIR)


def block_emb_prefix(encoded_dir: str) -> str:
  return block_emb_file.checkpoint_prefix(embedder_path(encoded_dir))


def load_searcher(encoded_dir: str, searcher_type: Optional[str] = None) -> searchers.Searcher:
  """The snapshot's serialized searcher, or one of `searcher_type` built from block_emb."""
  manifest = read_manifest(encoded_dir)
  saved = manifest["searcher"]
  if searcher_type in (None, saved["type"]):
    return searchers.load_searcher(os.path.join(encoded_dir, saved["dir"]))
  return searchers.build_searcher(searcher_type,
                                  block_emb_file.read_block_emb(block_emb_prefix(encoded_dir)),
                                  saved["num_neighbors"])
