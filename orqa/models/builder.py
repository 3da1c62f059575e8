"""Building an `OrqaModel` from `ModelParams`: towers, reader, the frozen block index.

Shared by ORQA fine-tuning (`orqa.experiments.finetune_training`), `orqa.predict` and the
serving export.
"""

import dataclasses
import os
from typing import Any, Dict, Optional

from absl import logging
import tensorflow as tf

from orqa.data import block_records
from orqa.models import orqa_model
from orqa.models import towers
from realm_tf import errors
from realm_tf.modeling import precision as precision_lib
from realm_tf.retrieval import block_emb_file
from realm_tf.retrieval import corpus_reader
from realm_tf.retrieval import searchers


@dataclasses.dataclass
class ModelParams:
  """What rebuilds the model (written to `model_dir/params.json` by `orqa.finetune`)."""
  retriever_module_path: str
  block_records_path: str
  reader_module_path: Optional[str] = None
  reader_preset: Optional[str] = None
  reader_vocab_path: Optional[str] = None
  reader_do_lower_case: bool = True
  reader_dropout_rate: Optional[float] = None
  searcher: str = searchers.BRUTE_FORCE
  model: Dict[str, Any] = dataclasses.field(default_factory=dict)
  # "auto", "float32" or "mixed_bfloat16" (`realm_tf.modeling.precision`): the policy the
  # reader and span scorer are built with (a SavedModel tower keeps its own).
  precision: str = precision_lib.AUTO

  def orqa_config(self) -> orqa_model.OrqaConfig:
    return orqa_model.OrqaConfig(**self.model)


def load_block_records(path: str):
  """(titles, texts) of all blocks: retrieval-corpus TFRecords (`title`, `body`), a
  passages jsonl(.gz) (`title`, and `text` or else `body`), or the original raw-string
  `blocks.tfr` with its sibling `titles.tfr`."""
  if block_records.is_raw_block_records(path):
    # One pass over each file (load_block_texts per field would read blocks.tfr twice).
    return block_records.load_raw_block_records(path)
  titles = block_records.load_block_texts(path, "title")
  if _is_jsonl(path):
    try:
      return titles, block_records.load_block_texts(path, "text")
    except errors.InputFileError:
      return titles, block_records.load_block_texts(path, "body")
  return titles, block_records.load_block_texts(path, "body")


def load_block_index(params: ModelParams, num_neighbors: int) -> orqa_model.BlockIndex:
  """The frozen index: `<retriever_module_path>/encoded/encoded.ckpt` + block texts."""
  prefix = block_emb_file.checkpoint_prefix(params.retriever_module_path)
  block_emb = block_emb_file.read_block_emb(prefix)
  titles, bodies = load_block_records(params.block_records_path)
  logging.info("Block index %s: %s; %d block records in %s.", prefix, block_emb.shape,
               len(bodies), params.block_records_path)
  return orqa_model.BlockIndex(block_emb, titles, bodies, params.searcher, num_neighbors)


def _is_jsonl(path: str) -> bool:
  return path.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz"))


def check_block_records(params: ModelParams, retriever_tokenizer) -> None:
  """Refuses block records that do not belong to the retriever module's index.

  For retrieval-corpus shards (a realm_tf build), the corpus must be the one the
  module's `encoded/encoded.ckpt` embeds (the fingerprint in its `index_corpus.json`)
  and tokenized with the module's vocabulary (the manifest's vocabulary hash). A jsonl
  or the original raw `blocks.tfr` carries neither; the block count is still checked
  where the index is built.

  Raises:
    CorpusMismatchError: the index was built from another corpus or order.
    VocabMismatchError: the corpus was tokenized with another vocabulary.
  """
  path = params.block_records_path
  if _is_jsonl(path) or block_records.is_raw_block_records(path):
    return
  corpus = corpus_reader.open_corpus(path)
  corpus.check_vocab(retriever_tokenizer.vocab_path,
                     f"the vocabulary of the retriever module {params.retriever_module_path}")
  corpus.check_index(os.path.dirname(block_emb_file.checkpoint_prefix(
      params.retriever_module_path)))


def build_model(params: ModelParams, strategy: tf.distribute.Strategy,
                num_neighbors: Optional[int] = None,
                index: Optional[orqa_model.BlockIndex] = None) -> orqa_model.OrqaModel:
  """The model with its variables (under `strategy.scope()`); the index outside it."""
  config = params.orqa_config()
  if index is None:
    index = load_block_index(params, num_neighbors or config.retrieval_beam_size)
  with strategy.scope(), precision_lib.policy_scope(params.precision):
    tower, retriever_tokenizer = towers.load_embedder_module(params.retriever_module_path)
  check_block_records(params, retriever_tokenizer)
  with strategy.scope():
    reader, reader_tokenizer = towers.build_reader(towers.BertSource(
        path=params.reader_module_path, preset=params.reader_preset,
        vocab_path=params.reader_vocab_path, do_lower_case=params.reader_do_lower_case,
        dropout_rate=params.reader_dropout_rate, path_flag="--reader_module_path",
        preset_flag="--reader_preset"))
    model = orqa_model.OrqaModel(tower, retriever_tokenizer, reader, reader_tokenizer, index,
                                 config, name="orqa")
    model.build_variables()
  orqa_model.log_config(config)
  return model
