"""The initial embedder module and its index, used until the first refresh (spec 5.2).

The original started from an ICT module that already held `encoded/encoded.ckpt` for the
corpus. Without one (`--initial_embedder_module` unset), the trainer exports its own
freshly initialized document tower and embeds the corpus with it.
"""

import os
from typing import Sequence

from absl import logging

from realm_tf import tf_hub_modules as tf_hub
from realm_tf.featurization import Featurizer
from realm_tf.retrieval import block_index, corpus_embedding, export_dirs
from realm_tf.tokenization import Tokenizer


def build_initial_embedder_module(model, tokenizer: Tokenizer, featurizer: Featurizer,
                                  retrieval_paths: Sequence[str], path: str,
                                  batch_size: int = 128) -> str:
  """Exports `model.document_embedder` to `path` with the index of `retrieval_paths`.

  Does nothing if `path` already exists (a resumed run). The module appears atomically.
  """
  if os.path.isdir(path):
    return path
  staging = export_dirs.temp_dir_for(path)
  tf_hub.save_embedder(model.document_embedder, tokenizer, staging,
                       model.config.query_seq_len)
  embedder = model.document_embedder

  def embed(input_ids, input_mask, segment_ids):
    return embedder((input_ids, input_mask, segment_ids), training=False)

  block_emb = corpus_embedding.embed_shards(sorted(retrieval_paths), embed, featurizer,
                                            batch_size)
  block_index.write_block_emb(block_index.checkpoint_prefix(staging), block_emb)
  export_dirs.commit_directory(staging, path)
  logging.info("Initial embedder module with %d block embeddings at %s",
               block_emb.shape[0], path)
  return path
