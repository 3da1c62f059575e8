"""Builds the embedded sample corpus into REALM's two corpora (the default pre-training run).

`model_dir/data/pretrain/pretrain-*` holds the passages with sentence boundaries and
salient spans (rules annotator) and `model_dir/data/retrieval/blocks-*` the same passages
as retrieval blocks, tokenized with the sample vocabulary. Built once; later runs reuse
them (the builders write atomically, so a finished manifest means finished shards).
"""

import os
from typing import Tuple

from absl import logging

from realm_tf import sample_data
from realm_tf.corpus import build_pretrain_corpus, build_retrieval_corpus

PRETRAIN_SHARDS = 6
EVAL_SHARDS = 1
RETRIEVAL_SHARDS = 2


def prepare_sample_corpora(model_dir: str) -> Tuple[str, str]:
  """(pretrain glob, retrieval glob) of the sample corpora under `model_dir/data`."""
  data_dir = os.path.join(model_dir, "data")
  pretrain_prefix = os.path.join(data_dir, "pretrain", "pretrain")
  retrieval_prefix = os.path.join(data_dir, "retrieval", "blocks")
  for prefix in (pretrain_prefix, retrieval_prefix):
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
  if not _built(pretrain_prefix):
    logging.info("Building the sample pre-training corpus at %s", pretrain_prefix)
    build_pretrain_corpus.build(sample_data.PASSAGES_PATH, pretrain_prefix, spans="rules",
                                num_shards=PRETRAIN_SHARDS, eval_shards=EVAL_SHARDS)
  if not _built(retrieval_prefix):
    logging.info("Building the sample retrieval corpus at %s", retrieval_prefix)
    build_retrieval_corpus.build(sample_data.PASSAGES_PATH, retrieval_prefix,
                                 sample_data.VOCAB_PATH, num_shards=RETRIEVAL_SHARDS)
  return f"{pretrain_prefix}-*-of-*", f"{retrieval_prefix}-*-of-*"


def _built(prefix: str) -> bool:
  directory = os.path.dirname(prefix)
  return any(name.endswith("manifest.json") for name in os.listdir(directory))
