"""The initial embedder module and its index, used until the first refresh.

The original started from an ICT module that already held `encoded/encoded.ckpt` for the
corpus. Without one (`--initial_embedder_module` unset), the trainer exports its own
freshly initialized document tower and embeds the corpus with it.
"""

import os
from typing import Any, Dict, Optional, Sequence

from absl import logging

from realm_tf.featurization import Featurizer
from realm_tf.retrieval import block_emb_file, corpus_embedding, export_dirs
from realm_tf import tf_hub_modules as tf_hub
from realm_tf.tokenization import Tokenizer


def build_initial_embedder_module(model, tokenizer: Tokenizer, featurizer: Featurizer,
                                  retrieval_paths: Sequence[str], path: str,
                                  batch_size: int = 128,
                                  corpus_info: Optional[Dict[str, Any]] = None) -> str:
  """Exports `model.document_embedder` to `path` with the index of `retrieval_paths`.

  A module already at `path` (a resumed run) is kept when it indexes the same corpus
  (`corpus_info["fingerprint_sha256"]`, recorded in its `encoded/index_corpus.json`), and
  rebuilt otherwise: the index is the trainer's own derived data, so a changed corpus is
  re-embedded rather than refused. The module appears atomically.

  Args:
    corpus_info: `RetrievalCorpus.describe()` of the corpus; None skips the check.
  """
  if os.path.isdir(path):
    recorded = block_emb_file.read_index_corpus(
        os.path.dirname(block_emb_file.checkpoint_prefix(path)))
    if corpus_info is None or (recorded or {}).get("fingerprint_sha256") == corpus_info.get(
        "fingerprint_sha256"):
      return path
    logging.warning("The initial index %s was built from another corpus (%s, %s blocks) "
                    "than %s (%d blocks): re-embedding.", path,
                    (recorded or {}).get("pattern", "unrecorded"),
                    (recorded or {}).get("num_blocks", "?"), corpus_info.get("pattern"),
                    corpus_info.get("num_blocks"))
    old = export_dirs.temp_dir_for(path)
    os.rename(path, old)
    export_dirs.remove_tree(old)
  staging = export_dirs.temp_dir_for(path)
  tf_hub.save_embedder(model.document_embedder, tokenizer, staging,
                       model.config.query_seq_len)
  embedder = model.document_embedder

  def embed(input_ids, input_mask, segment_ids):
    return embedder((input_ids, input_mask, segment_ids), training=False)

  block_emb = corpus_embedding.embed_shards(sorted(retrieval_paths), embed, featurizer,
                                            batch_size)
  block_emb_file.write_block_emb(block_emb_file.checkpoint_prefix(staging), block_emb,
                              corpus_info=corpus_info)
  export_dirs.commit_directory(staging, path)
  logging.info("Initial embedder module with %d block embeddings at %s",
               block_emb.shape[0], path)
  return path
