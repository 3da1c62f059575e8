"""FLOPs of the REALM and ORQA steps from their shapes (used by the benchmarks)."""

import pytest

from realm_tf.modeling import flops
from realm_tf.modeling.config import BertConfig, RealmConfig


def test_realm_minilm_step_matches_a_hand_count():
  config = RealmConfig.preset("minilm")  # Q 96, N 8 x C 288, M 10
  forward = flops.realm_forward_flops(config, batch_size=4)
  h, f, layers = 384, 1536, 6

  def encoder(sequences, length):
    per_layer = (8 * sequences * length * h * h + 4 * sequences * length * h * f +
                 4 * sequences * length * length * h)
    return layers * per_layer

  assert forward["query_tower"] == pytest.approx(encoder(4, 96) + 4 * 2 * h * h +
                                                 4 * 2 * h * 128)
  assert forward["candidate_tower"] == pytest.approx(encoder(32, 288) + 32 * 2 * h * h +
                                                     32 * 2 * h * 128)
  assert forward["reader"] == pytest.approx(encoder(32, 384))
  assert forward["mlm_head"] == pytest.approx(2 * 320 * h * (h + 30522))
  total = flops.realm_train_flops(config, batch_size=4)
  assert total == pytest.approx(3 * sum(forward.values()))
  # About 0.4 TFLOP per example.
  assert 0.39e12 < total / 4 < 0.42e12
  # Linear in the batch.
  assert flops.realm_train_flops(config, 16) == pytest.approx(4 * total)


def test_orqa_step_components():
  bert = BertConfig.preset("minilm")
  forward = flops.orqa_forward_flops(bert, bert, batch_size=2, query_seq_len=64,
                                     reader_beam_size=5, reader_seq_len=320,
                                     span_hidden_size=256, max_span_width=10,
                                     num_blocks=1000)
  assert forward["reader"] == pytest.approx(flops.encoder_forward_flops(bert, 10, 320,
                                                                        pooler=False))
  assert forward["retrieval"] == 2 * 2 * 1000 * 128
  assert forward["span_scorer"] == pytest.approx(2 * 10 * 320 * 384 * 512 +
                                                 2 * 10 * 3200 * 256)
  # The search is not differentiated: counted once.
  expected = 3 * (sum(forward.values()) - forward["retrieval"]) + forward["retrieval"]
  assert flops.orqa_train_flops(forward) == pytest.approx(expected)
