"""The Inverse Cloze Task dataset (language/orqa/datasets/ict_dataset.py): a sentence as a
pseudo-query for its block.

Input records are ORQA block examples (`realm_tf.ict.examples`): `title_ids`, `token_ids` (the block's
wordpieces) and `sentence_starts` (token offset of each sentence). Per block: pick a
sentence uniformly at random as the query; with probability `mask_rate` (0.9) remove it
from the block (`mask_query`), otherwise leave the block whole so the model also learns
lexical matching. Masked single-sentence blocks are dropped (they would be empty).
"""

from typing import Dict, Sequence

import tensorflow as tf

from realm_tf.featurization import bert_format

ICT_FEATURES = {
    "title_ids": tf.io.RaggedFeature(tf.int64),
    "token_ids": tf.io.RaggedFeature(tf.int64),
    "sentence_starts": tf.io.RaggedFeature(tf.int64),
}


def make_ict_example(block: Dict[str, tf.Tensor], seed, mask_rate: float):
  """Chooses the pseudo-query of one parsed block.

  Args:
    block: parsed `ICT_FEATURES` of one block.
    seed: int64 [2] stateless seed for this block.
    mask_rate: probability of removing the query sentence from the block.

  Returns:
    dict: query_ids, block_ids, title_ids (int32 [len]), mask_query (bool []),
    keep (bool []: False for a masked single-sentence block).
  """
  tokens = tf.cast(block["token_ids"], tf.int32)
  starts = tf.cast(block["sentence_starts"], tf.int32)  # [num_sentences]
  num_sentences = tf.size(starts)
  ends = tf.concat([starts[1:], [tf.size(tokens)]], axis=0)
  seeds = tf.random.experimental.stateless_split(seed, 2)
  index = tf.random.stateless_uniform([], seeds[0], 0, tf.maximum(num_sentences, 1),
                                      dtype=tf.int32)
  start = tf.gather(tf.concat([starts, [0]], 0), index)
  end = tf.gather(tf.concat([ends, [0]], 0), index)
  mask_query = tf.random.stateless_uniform([], seeds[1]) < mask_rate
  block_ids = tf.cond(mask_query, lambda: tf.concat([tokens[:start], tokens[end:]], 0),
                      lambda: tokens)
  return dict(query_ids=tokens[start:end], block_ids=block_ids,
              title_ids=tf.cast(block["title_ids"], tf.int32), mask_query=mask_query,
              keep=tf.logical_and(num_sentences > 0,
                                  tf.logical_or(tf.logical_not(mask_query),
                                                num_sentences > 1)))


def featurize_ict_batch(batch, query_seq_len: int, block_seq_len: int, cls_id: int,
                        sep_id: int) -> Dict[str, object]:
  """Query `[CLS] q [SEP]` [b, Q] (segments 0) and block `[CLS] title [SEP] block [SEP]`
  [b, B] (segments 0 / 1) inputs of a ragged batch of `make_ict_example` outputs."""
  query = bert_format([batch["query_ids"]], query_seq_len, cls_id, sep_id)
  block = bert_format([batch["title_ids"], batch["block_ids"]], block_seq_len, cls_id, sep_id)
  return dict(query_inputs=query, block_inputs=block, mask_query=batch["mask_query"])


def ict_dataset(paths: Sequence[str], batch_size: int, query_seq_len: int = 64,
                block_seq_len: int = 288, mask_rate: float = 0.9, cls_id: int = 101,
                sep_id: int = 102, seed: int = 0, training: bool = True,
                compression: str = "GZIP", holdout_every: int = 0,
                holdout: bool = False) -> tf.data.Dataset:
  """Batches of ICT examples from block-example shards.

  Args:
    paths: TFRecord shards of ORQA block examples (`realm_tf.ict.examples`).
    batch_size: examples per batch (drop remainder, for in-batch negatives).
    query_seq_len, block_seq_len: Q (64) and block length (288).
    mask_rate: probability of removing the query sentence from its block (0.9).
    cls_id, sep_id: special token ids of the vocabulary.
    seed: seed of the sentence choice, masking and shuffling.
    training: repeat and shuffle (the original read from random offsets);
      otherwise one deterministic pass.
    compression: "GZIP" or "" for the files.
    holdout_every: when > 0, every `holdout_every`-th block (records 0, k, 2k, ... of the
      files in order) is held out: `holdout=False` reads the others (training),
      `holdout=True` only those (evaluation on blocks never trained on).

  Returns:
    Dataset of `featurize_ict_batch` dicts: query_inputs [b, Q], block_inputs [b, B]
    (BertInputs) and mask_query [b].
  """
  records = tf.data.TFRecordDataset(list(paths), compression)
  if holdout_every > 0:
    records = records.enumerate().filter(
        lambda i, _: tf.equal(i % holdout_every == 0, holdout)).map(lambda _, r: r)
  if training:
    records = records.repeat().shuffle(10000, seed=seed)
  examples = records.enumerate().map(
      lambda i, r: make_ict_example(tf.io.parse_single_example(r, ICT_FEATURES),
                                    tf.stack([tf.constant(seed, tf.int64), i]), mask_rate),
      # In order even in training: with a seed, the batches (and so the run) reproduce.
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  examples = examples.filter(lambda e: e["keep"])
  batches = examples.ragged_batch(batch_size, drop_remainder=True)
  return batches.map(
      lambda b: featurize_ict_batch(b, query_seq_len, block_seq_len, cls_id, sep_id),
      num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

