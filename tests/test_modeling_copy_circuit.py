"""The constructed copying reader (`realm_tf.modeling.copy_circuit`): untrained, the tiny
reader fills masked tokens of a query from the passage that contains it, which a randomly
initialized reader cannot."""

import numpy as np
import pytest

import realm_tf  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow loads)
import tensorflow as tf

from realm_tf import sample_data
from realm_tf.modeling import copy_circuit
from realm_tf.modeling.config import BertConfig
from realm_tf.modeling.reader import KnowledgeAugmentedEncoder
from realm_tf.tokenization import Tokenizer

QUERY_LEN, PASSAGE_LEN, MASKS = 48, 128, 5


def _copy_batch(seed: int, tokenizer, size: int = 64):
  """`[CLS] query [SEP] passage [SEP]`, the query a window of a random-token passage with
  a few tokens masked: (inputs, positions [B, M], targets [B, M])."""
  rng = np.random.default_rng(seed)
  ids = np.zeros([size, QUERY_LEN + PASSAGE_LEN], np.int32)  # [B, Q + C]
  segments = np.zeros_like(ids)
  positions = np.zeros([size, MASKS], np.int32)
  targets = np.zeros([size, MASKS], np.int32)
  for b in range(size):
    passage = rng.integers(tokenizer.mask_id + 1, len(tokenizer.vocab),
                           rng.integers(40, PASSAGE_LEN - 2))
    query_len = rng.integers(12, min(QUERY_LEN - 2, len(passage)) + 1)
    offset = rng.integers(0, len(passage) - query_len + 1)
    query = passage[offset:offset + query_len].copy()
    masked = np.sort(rng.choice(query_len, MASKS, replace=False))
    targets[b], positions[b] = query[masked], masked + 1  # + 1 for [CLS]
    query[masked] = tokenizer.mask_id
    tokens = [tokenizer.cls_id, *query, tokenizer.sep_id, *passage, tokenizer.sep_id]
    ids[b, :len(tokens)] = tokens
    segments[b, query_len + 2:len(tokens)] = 1
  inputs = dict(input_word_ids=ids, input_mask=(ids > 0).astype(np.int32),
                input_type_ids=segments)
  return inputs, positions, targets


@pytest.fixture(scope="module")
def tokenizer():
  return Tokenizer(sample_data.VOCAB_PATH, do_lower_case=True)


def _reader(tokenizer):
  config = BertConfig.preset("tiny", vocab_size=len(tokenizer.vocab),
                             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
  reader = KnowledgeAugmentedEncoder(config)
  reader.build_variables()
  return reader


def _accuracy(reader, batch) -> float:
  inputs, positions, targets = batch
  logits = reader(inputs, mlm_positions=positions, training=False)["mlm_logits"]
  return float(np.mean(tf.argmax(logits, -1).numpy() == targets))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_circuit_copies_masked_tokens_from_the_passage(tokenizer, seed):
  batch = _copy_batch(100 + seed, tokenizer)
  reader = _reader(tokenizer)
  assert _accuracy(reader, batch) < 0.01  # random init: chance is 1 / 5,758
  copy_circuit.initialize_reader(reader, tokenizer.mask_id, seed)
  assert _accuracy(reader, batch) > 0.8  # 0.92-0.94 measured


def test_the_circuit_needs_the_passage(tokenizer):
  """Without the passage (all [PAD]) nothing can be copied: the circuit reads, it does not
  know the answers."""
  inputs, positions, targets = _copy_batch(7, tokenizer)
  ids = inputs["input_word_ids"].copy()
  ids[inputs["input_type_ids"] == 1] = 0
  no_passage = dict(input_word_ids=ids, input_mask=(ids > 0).astype(np.int32),
                    input_type_ids=np.zeros_like(ids))
  reader = _reader(tokenizer)
  copy_circuit.initialize_reader(reader, tokenizer.mask_id)
  assert _accuracy(reader, (no_passage, positions, targets)) < 0.02


def test_weights_are_canonical_and_sized_for_the_config():
  config = BertConfig.preset("tiny", vocab_size=50)
  weights = copy_circuit.copy_circuit_weights(config, [4])
  assert weights["embeddings/word_embeddings"].shape == (50, 128)
  assert not weights["embeddings/word_embeddings"][[0, 4]].any()  # [PAD], [MASK]
  assert weights["encoder/layer_1/attention/self/query/kernel"].shape == (128, 128)
  np.testing.assert_allclose(weights["embeddings/position_embeddings"].sum(1), 0, atol=1e-4)
  with pytest.raises(ValueError, match="copy circuit needs"):
    copy_circuit.copy_circuit_weights(BertConfig(hidden_size=64, num_hidden_layers=1,
                                                 num_attention_heads=1,
                                                 intermediate_size=64, vocab_size=50))
