"""Tokenizer: BERT reference ids, byte offsets, normalization rules and errors."""
import gzip
import itertools
import json
import unicodedata

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.tokenization import Tokenizer, TokenizationError, load_vocab
from tests.conftest import shared_path


def _normalize(text):
  """BERT's uncased normalization: lowercase, NFD, drop combining marks and controls."""
  text = unicodedata.normalize("NFD", text.lower())
  return "".join(c for c in text if unicodedata.category(c) not in ("Mn", "Cc", "Cf"))


def test_reference_ids_for_every_record(bert_tokenizer):
  with open(shared_path("models", "all-MiniLM-L6-v2", "reference_outputs.json")) as f:
    records = json.load(f)["records"]
  assert any(r["text"] == "" for r in records)
  for record in records:
    ids = [t.id for t in bert_tokenizer.tokenize(record["text"])]
    expected = record["input_ids"]
    assert [bert_tokenizer.cls_id] + ids + [bert_tokenizer.sep_id] == expected, record["text"]


def test_byte_offsets_on_2000_wikipedia_passages(bert_tokenizer):
  path = shared_path("data", "corpus", "enwiki2015-first30k.psgs100w.cap800.jsonl.gz")
  with gzip.open(path, "rt", encoding="utf-8") as f:
    texts = [json.loads(line)["text"] for line in itertools.islice(f, 2000)]
  assert len(texts) == 2000
  checked = 0
  for start in range(0, len(texts), 250):
    chunk = texts[start:start + 250]
    ids, starts, limits = bert_tokenizer.tokenize_with_offsets(tf.constant(chunk))
    for text, row_ids, row_starts, row_limits in zip(chunk, ids.to_list(), starts.to_list(),
                                                     limits.to_list()):
      raw = text.encode("utf-8")
      previous_limit = 0
      for token_id, s, e in zip(row_ids, row_starts, row_limits):
        assert previous_limit <= s < e <= len(raw)
        previous_limit = e
        piece = raw[s:e].decode("utf-8")  # offsets fall on character boundaries
        wordpiece = bert_tokenizer.vocab[token_id]
        if wordpiece == "[UNK]":
          assert piece.strip() == piece and piece
        else:
          assert _normalize(piece) == wordpiece.removeprefix("##"), (piece, wordpiece)
        checked += 1
  assert checked > 200_000


def test_uncased_rules_with_offsets(tiny_tokenizer):
  text = "Café au-lait,\x00 Eiffel TOWERS\u200b zzz"
  tokens = tiny_tokenizer.tokenize(text)
  raw = text.encode("utf-8")
  assert [(t.text, raw[t.start:t.stop].decode()) for t in tokens] == [
      ("cafe", "Café"), ("au", "au"), ("[UNK]", "-"), ("lait", "lait"), (",", ","),
      ("eiffel", "Eiffel"), ("tower", "TOWER"), ("##s", "S"), ("[UNK]", "zzz")]
  # "é" is two bytes: offsets are bytes, not characters.
  assert (tokens[1].start, tokens[1].stop) == (6, 8)
  assert [t.id for t in tokens] == [20, 21, 1, 22, 18, 6, 7, 19, 1]


def test_ids_equal_berts_reference_tokenizer_on_real_text(bert_tokenizer):
  """BERT's own Python FullTokenizer (shipped in tf-models-official) as the reference."""
  from official.nlp.tools import tokenization as bert_reference  # pylint: disable=g-import-not-at-top
  reference = bert_reference.FullTokenizer(bert_tokenizer.vocab_path, do_lower_case=True)
  path = shared_path("data", "corpus", "enwiki2015-first30k.psgs100w.cap800.jsonl.gz")
  with gzip.open(path, "rt", encoding="utf-8") as f:
    texts = [json.loads(line)["text"] for line in itertools.islice(f, 1000)]
  texts += ["Straße ß ² km² … ς Σ a≠b x\x00y Ⅻ ﬁ ½ ℓ", "naïve\tcafé\u3000東京。", " "]
  ids = bert_tokenizer.tokenize_ids(tf.constant(texts)).to_list()
  for text, got in zip(texts, ids):
    expected = reference.convert_tokens_to_ids(reference.tokenize(text))
    assert got == expected, text


def test_cjk_characters_are_split(bert_tokenizer):
  tokens = bert_tokenizer.tokenize("東京abc")
  assert [t.text for t in tokens][:2] == ["東", "京"]
  assert [(t.start, t.stop) for t in tokens][:2] == [(0, 3), (3, 6)]


def test_cased_tokenizer_keeps_case(tiny_vocab_path):
  cased = Tokenizer(tiny_vocab_path, do_lower_case=False)
  assert [t.id for t in cased.tokenize("The the")] == [1, 5]


def test_overlong_word_is_unk(tiny_tokenizer):
  tokens = tiny_tokenizer.tokenize("the " + "s" * 201)
  assert [t.id for t in tokens] == [5, 1]
  assert (tokens[1].start, tokens[1].stop) == (4, 205)
  # The [UNK] spans the characters that normalization keeps, as every [UNK] does.
  tokens = tiny_tokenizer.tokenize("the \u200b" + "é" * 201 + "\u0301 x")
  assert (tokens[1].start, tokens[1].stop) == (7, 7 + 2 * 201)


def test_tokenize_without_boundaries(tiny_tokenizer):
  tokens = tiny_tokenizer.tokenize(b"the tower", compute_token_boundaries=False)
  assert [(t.start, t.stop, t.id) for t in tokens] == [(-1, -1, 5), (-1, -1, 7)]


def test_invalid_utf8_raises(tiny_tokenizer):
  with pytest.raises(TokenizationError):
    tiny_tokenizer.tokenize(b"the \xff tower")


def test_special_ids_and_detokenizer(tiny_tokenizer):
  t = tiny_tokenizer
  assert (t.pad_id, t.unk_id, t.cls_id, t.sep_id, t.mask_id) == (0, 1, 2, 3, 4)
  assert t.vocab_size == 28
  assert t.token_ids_to_str([2, 7, 19, 4, 3, 0, 0]) == "[CLS] towers [MASK] [SEP]"


def test_in_tf_data_and_tf_function(tiny_tokenizer):
  ds = tf.data.Dataset.from_tensor_slices(["the tower", "paris"]).batch(2)
  ids, starts, _ = next(iter(ds.map(tiny_tokenizer.tokenize_with_offsets)))
  assert ids.to_list() == [[5, 7], [12]]
  assert starts.to_list() == [[0, 4], [0]]
  fn = tf.function(tiny_tokenizer.tokenize_ids)
  assert fn(tf.constant(["the nile"])).to_list() == [[5, 27]]


def test_vocab_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.txt"):
    load_vocab(str(tmp_path / "nope.txt"))
  bad = tmp_path / "bad.txt"
  bad.write_text("[PAD]\nthe\n")
  with pytest.raises(ValueError, match=r"\[CLS\]"):
    Tokenizer(str(bad))


def test_saved_model_roundtrip(tiny_tokenizer, tmp_path):
  module = tf.Module()
  module.tokenizer = tiny_tokenizer
  module.tokenize = tf.function(
      lambda x: tiny_tokenizer.tokenize_ids(x).to_tensor(),
      input_signature=[tf.TensorSpec([None], tf.string)])
  tf.saved_model.save(module, str(tmp_path / "sm"))
  loaded = tf.saved_model.load(str(tmp_path / "sm"))
  np.testing.assert_array_equal(loaded.tokenize(tf.constant(["the eiffel tower"])),
                                [[5, 6, 7]])
