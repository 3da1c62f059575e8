"""Floating-point operations of the REALM and ORQA steps, computed from the shapes.

A multiply-add counts as 2 FLOPs; only matrix products are counted (the element-wise work,
softmax, LayerNorm, GELU, dropout, is a few FLOPs per element, well under 1% at these
shapes). A training pass is 3x its forward pass: the backward pass computes two products
(the gradient of the input and of the weight) for every forward product.

Per transformer layer of width H, feed-forward width F, on S sequences of length L:

    attention projections (query, key, value, output)   4 * 2 * S * L * H * H
    feed-forward (two dense layers)                      2 * 2 * S * L * H * F
    attention scores and their combination with values   2 * 2 * S * L * L * H
"""

from typing import Dict

from realm_tf.modeling.config import BertConfig, RealmConfig

TRAINING_MULTIPLIER = 3


def transformer_layer_flops(bert: BertConfig, num_sequences: int, seq_len: int) -> Dict[str, float]:
  """Forward FLOPs of one transformer layer, by part: projections, feed_forward, attention."""
  s, l, h, f = num_sequences, seq_len, bert.hidden_size, bert.intermediate_size
  return dict(projections=8.0 * s * l * h * h, feed_forward=4.0 * s * l * h * f,
              attention=4.0 * s * l * l * h)


def encoder_forward_flops(bert: BertConfig, num_sequences: int, seq_len: int,
                          pooler: bool = True) -> float:
  """Forward FLOPs of a BERT encoder (all layers, and the pooler's dense layer)."""
  per_layer = sum(transformer_layer_flops(bert, num_sequences, seq_len).values())
  pooled = 2.0 * num_sequences * bert.hidden_size ** 2 if pooler else 0.0
  return bert.num_hidden_layers * per_layer + pooled


def realm_forward_flops(config: RealmConfig, batch_size: int) -> Dict[str, float]:
  """Forward FLOPs of one REALM batch, by component.

  query_tower: the query BERT on [B, Q] and the projection; candidate_tower: the
  document BERT on [B * N, C] and the projection; reader: the reader BERT on
  [B * N, Q + C]; mlm_head: transform dense and the tied output layer over the whole
  vocabulary at the M masked positions of every candidate; scores: query-candidate
  inner products.
  """
  b, n, m = batch_size, config.num_candidates, config.max_masks
  emb, reader = config.embedder, config.bert
  d = config.projection_size
  projection = 2.0 * emb.hidden_size * d
  return dict(
      query_tower=encoder_forward_flops(emb, b, config.query_seq_len) + b * projection,
      candidate_tower=(encoder_forward_flops(emb, b * n, config.candidate_seq_len) +
                       b * n * projection),
      reader=encoder_forward_flops(reader, b * n, config.query_seq_len +
                                   config.candidate_seq_len, pooler=False),
      mlm_head=2.0 * b * n * m * reader.hidden_size * (reader.hidden_size + reader.vocab_size),
      scores=2.0 * b * n * d)


def realm_train_flops(config: RealmConfig, batch_size: int) -> float:
  """FLOPs of one REALM training step (forward and backward) on `batch_size` examples."""
  return TRAINING_MULTIPLIER * sum(realm_forward_flops(config, batch_size).values())


def orqa_forward_flops(question_tower: BertConfig, reader: BertConfig, batch_size: int,
                       query_seq_len: int, reader_beam_size: int, reader_seq_len: int,
                       span_hidden_size: int, max_span_width: int, num_blocks: int,
                       projection_size: int = 128) -> Dict[str, float]:
  """Forward FLOPs of one ORQA fine-tuning batch, by component.

  question_tower: the question BERT on [B, query_seq_len] and its projection; retrieval:
  the exact search's inner products with all K blocks; reader: the reader BERT on
  [B * R, reader_seq_len]; span_scorer: its projection to 2S at every position and the
  logit layer of every span (at most `max_span_width` per start position).
  """
  b, r, l = batch_size, reader_beam_size, reader_seq_len
  num_spans = l * max_span_width
  return dict(
      question_tower=(encoder_forward_flops(question_tower, b, query_seq_len) +
                      2.0 * b * question_tower.hidden_size * projection_size),
      retrieval=2.0 * b * num_blocks * projection_size,
      reader=encoder_forward_flops(reader, b * r, l, pooler=False),
      span_scorer=(2.0 * b * r * l * reader.hidden_size * 2 * span_hidden_size +
                   2.0 * b * r * num_spans * span_hidden_size))


def orqa_train_flops(forward: Dict[str, float]) -> float:
  """FLOPs of an ORQA training step from its forward components (the search has no
  backward pass)."""
  trained = sum(v for k, v in forward.items() if k != "retrieval")
  return TRAINING_MULTIPLIER * trained + forward.get("retrieval", 0.0)
