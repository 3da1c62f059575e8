"""Small configs and random REALM feature batches for tests and benchmarks."""

from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from realm_tf.featurization.bert_inputs import BertInputs
from realm_tf.modeling.config import BertConfig, RealmConfig

CLS_ID, SEP_ID, MASK_ID = 2, 3, 4


def tiny_bert_config(vocab_size: int = 200, hidden_size: int = 64, num_layers: int = 2,
                     num_heads: int = 2, max_len: int = 64, **kwargs) -> BertConfig:
  """A BERT config small enough for unit tests."""
  return BertConfig(vocab_size=vocab_size, hidden_size=hidden_size,
                    num_hidden_layers=num_layers, num_attention_heads=num_heads,
                    intermediate_size=2 * hidden_size, max_position_embeddings=max_len,
                    **kwargs)


def tiny_realm_config(query_seq_len: int = 8, candidate_seq_len: int = 12,
                      num_candidates: int = 3, max_masks: int = 2,
                      **kwargs) -> RealmConfig:
  """A RealmConfig with tiny encoders and shapes (Q=8, C=12, N=3, M=2 by default)."""
  bert = kwargs.pop("bert", tiny_bert_config())
  embedder = kwargs.pop("embedder", tiny_bert_config())
  return RealmConfig(bert=bert, embedder=embedder, query_seq_len=query_seq_len,
                     candidate_seq_len=candidate_seq_len, num_candidates=num_candidates,
                     max_masks=max_masks, projection_size=kwargs.pop("projection_size", 16),
                     num_train_steps=kwargs.pop("num_train_steps", 100), **kwargs)


def _bert_row(rng, pieces, seq_len, vocab_size):
  """[CLS] p1 [SEP] p2 [SEP]... with random tokens; pieces = lengths; zero-padded."""
  ids, segs = [CLS_ID], [0]
  for seg, n in enumerate(pieces):
    ids += list(rng.integers(5, vocab_size, size=n)) + [SEP_ID]
    segs += [seg] * (n + 1)
  ids, segs = ids[:seq_len], segs[:seq_len]
  pad = seq_len - len(ids)
  return ids + [0] * pad, [1] * len(ids) + [0] * pad, segs + [0] * pad


def random_features(config: RealmConfig, batch_size: int, seed: int = 0,
                    num_masks: Optional[np.ndarray] = None,
                    export_timestamp: Optional[np.ndarray] = None) -> Dict[str, object]:
  """A random batch with the structure and layout of `realm_tf.featurization` output.

  Candidate 0 is the null document ([CLS] [SEP] [SEP]). `num_masks[b]` real masks per
  example (default random in [0, M], at least one example with M); mask positions
  (+1 for [CLS]) point into the query and are replaced by [MASK] in query and joint inputs.
  """
  rng = np.random.default_rng(seed)
  q, c, n, m = (config.query_seq_len, config.candidate_seq_len, config.num_candidates,
                config.max_masks)
  v = config.bert.vocab_size
  if num_masks is None:
    num_masks = rng.integers(0, m + 1, size=batch_size)
    num_masks[0] = m
  qi, ci, ji = [[], [], []], [[], [], []], [[], [], []]
  targets = np.zeros([batch_size, m], np.int32)
  positions = np.zeros([batch_size, m], np.int32)
  mask = np.zeros([batch_size, m], np.int32)
  for b in range(batch_size):
    qlen = int(rng.integers(max(2, num_masks[b]), q - 1))
    q_ids, q_mask, q_seg = _bert_row(rng, [qlen], q, v)
    pos = np.sort(rng.choice(np.arange(1, qlen + 1), size=num_masks[b], replace=False))
    for k, p in enumerate(pos):
      targets[b, k], positions[b, k], mask[b, k] = q_ids[p], p, 1
      q_ids[p] = MASK_ID
    cands, joints = [], []
    for j in range(n):
      if j == 0:
        cand = _bert_row(rng, [0, 0], c, v)
        body = []
      else:
        title_len = int(rng.integers(1, 4))
        body_len = int(rng.integers(1, c - title_len - 2))
        cand = _bert_row(rng, [title_len, body_len], c, v)
        body = cand[0][title_len + 2:title_len + 2 + body_len]
      cands.append(cand)
      query_part = q_ids[1:qlen + 1]
      joint_ids = [CLS_ID] + query_part + [SEP_ID] + list(body) + [SEP_ID]
      joint_seg = [0] * (qlen + 2) + [1] * (len(body) + 1)
      pad = q + c - len(joint_ids)
      joints.append((joint_ids + [0] * pad, [1] * len(joint_ids) + [0] * pad,
                     joint_seg + [0] * pad))
    for k in range(3):
      qi[k].append((q_ids, q_mask, q_seg)[k])
      ci[k].append([x[k] for x in cands])
      ji[k].append([x[k] for x in joints])
  if export_timestamp is None:
    export_timestamp = np.where(rng.random(batch_size) < 0.5, 0,
                                1_700_000_000 + rng.integers(0, 10000, batch_size))
  as_inputs = lambda parts: BertInputs(*[tf.constant(np.asarray(p, np.int32)) for p in parts])
  return dict(
      query_inputs=as_inputs(qi),
      candidate_inputs=as_inputs(ci),
      joint_inputs=as_inputs(ji),
      mlm_targets=tf.constant(targets),
      mlm_positions=tf.constant(positions),
      mlm_mask=tf.constant(mask),
      candidate_labels=tf.zeros([batch_size, n], tf.float32),
      export_timestamp=tf.constant(np.asarray(export_timestamp, np.int32)),
  )
