"""A tiny `orqa.finetune`-style model_dir on the sample corpus, for tests and benchmarks.

`make_tiny_finetuned_model(model_dir)` writes what `orqa.predict` and `export.serving`
read, without training: a tiny embedder module (`realm_tf.tf_hub_modules.save_embedder`) with its
block index `encoded/encoded.ckpt` (the sample passages embedded by it), `params.json`
(tiny reader BERT of the sample vocabulary, brute-force search) and a checkpoint of the
randomly initialized model under `checkpoints/`. The answers are meaningless; they only
need to be the same through every path.
"""

import os
from typing import Optional

import numpy as np
import tensorflow as tf
import tf_keras

from orqa.data import jsonl_io
from orqa.experiments import finetune_training
from orqa.experiments import training_utils
from orqa.models import builder
from orqa.models import towers
from realm_tf.featurization import bert_format
from realm_tf import locks
from realm_tf.retrieval import block_emb_file
from realm_tf.retrieval import searchers
from realm_tf import sample_data
from realm_tf import tf_hub_modules as tf_hub


def _embed_passages(embedder, tokenizer, passages_path: str, seq_len: int = 64,
                    batch_size: int = 64) -> np.ndarray:
  """block_emb [K, D] of `[CLS] title [SEP] text [SEP]` for every passage."""
  records = [r for _, r in jsonl_io.read_jsonl(passages_path)]
  outputs = []
  for i in range(0, len(records), batch_size):
    batch = records[i:i + batch_size]
    titles = tokenizer.tokenize_ids([r["title"] for r in batch])
    texts = tokenizer.tokenize_ids([r["text"] for r in batch])
    ids, mask, segments = bert_format([titles, texts], seq_len, tokenizer.cls_id,
                                      tokenizer.sep_id)
    outputs.append(embedder(dict(input_word_ids=ids, input_mask=mask,
                                 input_type_ids=segments), training=False).numpy())
  return np.concatenate(outputs).astype(np.float32)


def make_tiny_finetuned_model(model_dir: str, passages_path: Optional[str] = None,
                              seed: int = 0, reader_beam_size: int = 3,
                              reader_seq_len: int = 128) -> str:
  """Writes the tiny model_dir (module docstring); returns model_dir."""
  passages_path = passages_path or sample_data.PASSAGES_PATH
  tf_keras.utils.set_random_seed(seed)
  # orqa.experiments.finetune_steps reads the `body` field of a passages jsonl (`text` in the sample).
  blocks_path = os.path.join(model_dir, "blocks.jsonl")
  jsonl_io.write_jsonl(blocks_path, [dict(r, body=r["text"]) for _, r in
                                     jsonl_io.read_jsonl(passages_path)])
  source = towers.BertSource(preset="tiny", vocab_path=sample_data.VOCAB_PATH)
  embedder, tokenizer = towers.build_embedder(source, projection_size=32)
  embedder_path = os.path.join(model_dir, "retriever", "embedder")
  tf_hub.save_embedder(embedder, tokenizer, embedder_path, query_seq_len=32)
  block_emb = _embed_passages(embedder, tokenizer, passages_path)
  block_emb_file.write_block_emb(block_emb_file.checkpoint_prefix(embedder_path), block_emb)
  params = builder.ModelParams(
      retriever_module_path=embedder_path, block_records_path=blocks_path,
      reader_preset="tiny", reader_vocab_path=sample_data.VOCAB_PATH,
      searcher=searchers.BRUTE_FORCE,
      model=dict(retrieval_beam_size=8, reader_beam_size=reader_beam_size,
                 reader_seq_len=reader_seq_len, query_seq_len=32, span_hidden_size=32,
                 max_span_width=10, include_titles=True))
  model = builder.build_model(params, tf.distribute.get_strategy())
  manager = tf.train.CheckpointManager(
      tf.train.Checkpoint(model=model),
      os.path.join(model_dir, training_utils.CHECKPOINT_DIR), max_to_keep=1)
  manager.save(checkpoint_number=0)
  finetune_training.FinetuneConfig(model=params).save(model_dir)
  return model_dir


def cached_tiny_model(base_dir: str) -> str:
  """`base_dir/model`, the tiny model_dir, built once (shared by a pytest session and,
  through a file lock, by its parallel workers)."""
  model_dir = os.path.join(base_dir, "model")
  with locks.exclusive_lock(os.path.join(base_dir, "model.lock"), "the tiny model build",
                            wait_secs=None):
    if not os.path.exists(os.path.join(model_dir, training_utils.PARAMS_FILENAME)):
      make_tiny_finetuned_model(model_dir)
  return model_dir


def cached_serving_model(base_dir: str, searcher: str = searchers.BRUTE_FORCE) -> str:
  """`base_dir/serving_<searcher>` exported from `base_dir/model` (both built once).

  Lets several test files of one pytest session share one tiny model and its export.
  """
  from export import serving  # pylint: disable=g-import-not-at-top
  model_dir = cached_tiny_model(base_dir)
  output_dir = os.path.join(base_dir, f"serving_{searcher}")
  with locks.exclusive_lock(os.path.join(base_dir, f"serving_{searcher}.lock"),
                            "the tiny serving export", wait_secs=None):
    if not os.path.exists(output_dir):  # the export appears atomically
      serving.export_serving_model(model_dir, output_dir, searcher=searcher, top_k=5)
  return output_dir
