"""Small fixtures for the retrieval and refresh tests: corpus shards and a tiny embedder.

`TinyEmbedder` is a `tf.Module` with the embedder export's `projected` signature (int32
`input_ids`, `input_mask`, `segment_ids` [B, L] -> {"default": float32 [B, D]}): the
masked mean of token + segment embeddings, then a dense layer. It stands in for the
exported Keras embedder so the index code can be tested on its own, fast.
"""

import os
from typing import List, Sequence, Tuple

import numpy as np
import tensorflow as tf

from realm_tf.retrieval import export_dirs

_INT_SPEC = tf.TensorSpec([None, None], tf.int32)


class TinyEmbedder(tf.Module):
  """A deterministic stand-in embedder with a `projected` signature."""

  def __init__(self, vocab_size: int, dims: int = 128, hidden: int = 16, seed: int = 0):
    super().__init__(name="tiny_embedder")
    rng = np.random.default_rng(seed)
    self.token_emb = tf.Variable(rng.normal(size=[vocab_size, hidden]).astype(np.float32))
    self.segment_emb = tf.Variable(rng.normal(size=[2, hidden]).astype(np.float32))
    self.kernel = tf.Variable(rng.normal(size=[hidden, dims]).astype(np.float32))
    self.bias = tf.Variable(rng.normal(size=[dims]).astype(np.float32))

  def embed(self, input_ids, input_mask, segment_ids):
    """int32 [B, L] x 3 -> float32 [B, D]."""
    vectors = (tf.gather(self.token_emb, input_ids) +
               tf.gather(self.segment_emb, segment_ids))  # [B, L, H]
    mask = tf.cast(input_mask, tf.float32)[:, :, None]  # [B, L, 1]
    mean = tf.reduce_sum(vectors * mask, 1) / tf.maximum(tf.reduce_sum(mask, 1), 1.0)
    return tf.matmul(mean, self.kernel) + self.bias  # [B, D]

  @tf.function(input_signature=[_INT_SPEC, _INT_SPEC, _INT_SPEC])
  def projected(self, input_ids, input_mask, segment_ids):
    return {"default": self.embed(input_ids, input_mask, segment_ids)}


def save_tiny_embedder(path: str, vocab_size: int, seed: int = 0, dims: int = 128) -> str:
  """Saves a `TinyEmbedder` SavedModel at `path`; returns the path."""
  module = TinyEmbedder(vocab_size, dims=dims, seed=seed)
  tf.saved_model.save(module, path, signatures={"projected": module.projected})
  return path


def write_tf_hub_export(model_dir: str, timestamp: int, step: int, vocab_size: int,
                        seed: int = 0) -> str:
  """Writes `model_dir/export/tf_hub/<timestamp>/{embedder, global_step.txt}` atomically."""
  final = os.path.join(export_dirs.export_base(model_dir, "tf_hub"), str(timestamp))
  tmp = export_dirs.temp_dir_for(final)
  save_tiny_embedder(os.path.join(tmp, "embedder"), vocab_size, seed=seed)
  export_dirs.write_global_step(tmp, step)
  return export_dirs.commit_directory(tmp, final)


def random_blocks(num_blocks: int, vocab_size: int, seed: int = 0,
                  max_len: int = 12) -> List[Tuple[List[int], List[int]]]:
  """(title ids, body ids) of random blocks; ids avoid the 5 special tokens."""
  rng = np.random.default_rng(seed)
  blocks = []
  for _ in range(num_blocks):
    title = rng.integers(5, vocab_size, size=rng.integers(0, 4)).tolist()
    body = rng.integers(5, vocab_size, size=rng.integers(1, max_len)).tolist()
    blocks.append((title, body))
  return blocks


def block_example(title_ids: Sequence[int], body_ids: Sequence[int], index: int) -> bytes:
  """A serialized retrieval-corpus Example; texts name the block's index."""
  def ints(v):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(v)))

  def strs(v):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(v)))

  features = {"title": strs([f"title {index}".encode()]),
              "body": strs([f"body {index}".encode()]),
              "title_token_ids": ints(title_ids), "body_token_ids": ints(body_ids)}
  return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def write_shards(prefix: str, blocks, shard_sizes: Sequence[int]) -> List[str]:
  """Writes `blocks` into GZIP shards `<prefix>-NNNNN-of-NNNNN` of the given sizes."""
  assert sum(shard_sizes) == len(blocks)
  paths, start = [], 0
  os.makedirs(os.path.dirname(prefix), exist_ok=True)
  for i, size in enumerate(shard_sizes):
    path = f"{prefix}-{i:05d}-of-{len(shard_sizes):05d}"
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
      for j in range(start, start + size):
        writer.write(block_example(blocks[j][0], blocks[j][1], j))
    start += size
    paths.append(path)
  return paths
