"""Tests of orqa.models.answer_text: wordpiece-to-original mapping and final answer text."""
import conftest  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow)

import json
import unicodedata

import numpy as np
import pytest
import tensorflow as tf

from orqa.models import answer_text
from realm_tf import sample_data
from realm_tf.tokenization import Tokenizer


def _strings(ragged_row):
  return [t.decode("utf-8") for t in ragged_row.numpy()]


def test_mapping_on_accents_punctuation_and_subwords(tiny_tokenizer):
  mapping = answer_text.tokenize_with_original_mapping(
      ["Café au Lait, in Paris.", "The towers\u200bof New\tYork zzz"], tiny_tokenizer)
  assert _strings(mapping.orig_tokens[0]) == ["Café", "au", "Lait", ",", "in", "Paris",
                                             "."]
  assert tiny_tokenizer.convert_ids_to_tokens(mapping.wordpiece_ids[0].numpy()) == [
      "cafe", "au", "lait", ",", "in", "paris", "."]
  assert mapping.token_map[0].numpy().tolist() == [0, 1, 2, 3, 4, 5, 6]
  # A format character (U+200B) and a tab become spaces; "towers" is two wordpieces of
  # one original token; an unknown word is one [UNK].
  assert _strings(mapping.orig_tokens[1]) == ["The", "towers", "of", "New", "York", "zzz"]
  assert tiny_tokenizer.convert_ids_to_tokens(mapping.wordpiece_ids[1].numpy()) == [
      "the", "tower", "##s", "of", "new", "york", "[UNK]"]
  assert mapping.token_map[1].numpy().tolist() == [0, 1, 1, 2, 3, 4, 5]
  normalized = [t.decode("utf-8") for t in mapping.normalized_text.numpy()]
  assert normalized == ["cafe au lait, in paris.", "the towers of new york zzz"]
  assert mapping.wordpiece_ids.dtype == tf.int32 and mapping.token_map.dtype == tf.int32


def test_wordpieces_equal_the_tokenizer_and_map_back_on_the_sample_corpus():
  tokenizer = Tokenizer(sample_data.VOCAB_PATH, do_lower_case=True)
  with open(sample_data.PASSAGES_PATH, encoding="utf-8") as f:
    texts = [json.loads(line)["text"] for line in f][:40]
  texts.append("Ärger über Öl — «naïve» façade, 東京 and x\u0301y!")
  mapping = answer_text.tokenize_with_original_mapping(texts, tokenizer)
  expected_ids = tokenizer.tokenize_ids(texts)
  for row in range(len(texts)):
    ids = mapping.wordpiece_ids[row].numpy()
    np.testing.assert_array_equal(ids, expected_ids[row].numpy())
    token_map = mapping.token_map[row].numpy()
    assert np.all(np.diff(token_map) >= 0)
    orig = _strings(mapping.orig_tokens[row])
    pieces = tokenizer.convert_ids_to_tokens(ids)
    for index, token in enumerate(orig):
      mine = [p for p, t in zip(pieces, token_map) if t == index]
      if "[UNK]" in mine:
        continue
      joined = "".join(p[2:] if p.startswith("##") else p for p in mine)
      normalized = "".join(c for c in unicodedata.normalize("NFD", token.lower())
                           if unicodedata.category(c) != "Mn")
      assert joined == normalized, (token, mine)


def test_unicode_line_and_paragraph_separators_split(tiny_tokenizer):
  mapping = answer_text.tokenize_with_original_mapping(
      ["The\u2028Eiffel\u2029Tower"], tiny_tokenizer)
  assert _strings(mapping.orig_tokens[0]) == ["The", "Eiffel", "Tower"]
  assert tiny_tokenizer.convert_ids_to_tokens(mapping.wordpiece_ids[0].numpy()) == [
      "the", "eiffel", "tower"]
  assert mapping.token_map[0].numpy().tolist() == [0, 1, 2]


def test_cased_tokenizer_keeps_the_text(tiny_vocab_path):
  cased = Tokenizer(tiny_vocab_path, do_lower_case=False)
  mapping = answer_text.tokenize_with_original_mapping(["Paris\x07is"], cased)
  assert mapping.normalized_text.numpy().tolist() == [b"Paris is"]
  assert _strings(mapping.orig_tokens[0]) == ["Paris", "is"]


def test_get_final_text():
  # The SQuAD projection trims the original text to the predicted characters.
  assert answer_text.get_final_text("steve smith", "Steve Smith's", True) == "Steve Smith"
  assert answer_text.get_final_text("1889", "(1889)", True) == "1889"
  # Not found (always with ## pieces): the original text unchanged.
  assert answer_text.get_final_text("eiff ##el", "Eiffel", True) == "Eiffel"
  assert answer_text.get_final_text("paris", "London", True) == "London"
  # Cased: no lowercasing, so "paris" is not found in "Paris".
  assert answer_text.get_final_text("paris", "Paris", False) == "Paris"
  assert answer_text.get_final_text(b"Caf\xc3\xa9", "Caf\u00e9!", False) == "Café"
  assert answer_text.get_final_text("cafe", "Café!", True) == "Café"


def test_predicted_answer():
  orig_tokens = ["The", "Eiffel", "Tower", "(", "1889", ")", "."]
  assert answer_text.predicted_answer(orig_tokens, 1, 2, ["e", "##iff", "##el", "tower"],
                                      True) == "Eiffel Tower"
  assert answer_text.predicted_answer(orig_tokens, 3, 5, ["1889"], True) == "1889"
  assert answer_text.predicted_answer([b"Paris"], 0, 0, [b"paris"], True) == "Paris"
  # A span outside the block (token_map -1) has no answer.
  assert answer_text.predicted_answer(orig_tokens, -1, 2, ["x"], True) == ""


def test_span_tokens_and_final_text_in_a_graph(tiny_tokenizer):
  tokens = tf.ragged.constant([["The", "Eiffel", "Tower"], ["Paris"]])
  spans = answer_text.span_tokens(tokens, [1, 0], [2, 0])
  assert spans.to_list() == [[b"Eiffel", b"Tower"], [b"Paris"]]
  empty = answer_text.span_tokens(tokens, [-1, 0], [-1, 5])
  assert empty.to_list() == [[], [b"Paris"]]
  final = tf.function(lambda p, o: answer_text.final_text(p, o, tiny_tokenizer))(
      tf.constant(["steve smith", "to ##wer"]),
      tf.ragged.constant([["Steve", "Smith's"], ["Tower."]]))
  assert final.numpy().tolist() == [b"Steve Smith", b"Tower."]


@pytest.mark.parametrize("text", ["", "   ", "\u200b"])
def test_empty_texts(tiny_tokenizer, text):
  mapping = answer_text.tokenize_with_original_mapping([text, "paris"], tiny_tokenizer)
  assert mapping.wordpiece_ids[0].numpy().size == 0
  assert mapping.token_map[1].numpy().tolist() == [0]
