"""Tests of the corpus builders' text processing: sentences, rule spans, offsets, packing."""

import realm_tf  # pylint: disable=unused-import

import pytest

from realm_tf.corpus import offsets
from realm_tf.corpus import packing
from realm_tf.corpus import rules
from realm_tf.corpus import sentences


def _sentences(text):
  return [text[a:b] for a, b in sentences.split_sentences(text)]


def _spans(text):
  return [text[a:b] for a, b in rules.find_salient_spans(
      text, sentences.split_sentences(text))]


def test_sentence_splitter_abbreviations_initials_and_lines():
  text = ("The U.S. Army was led by Gen. Washington in 1775. J. R. R. Tolkien wrote "
          "\"The Hobbit.\" Was it good?  Yes!\nA new paragraph (with brackets). 1990 "
          "was a year, e.g. this one.")
  assert _sentences(text) == [
      "The U.S. Army was led by Gen. Washington in 1775.",
      "J. R. R. Tolkien wrote \"The Hobbit.\"",
      "Was it good?", "Yes!", "A new paragraph (with brackets).",
      "1990 was a year, e.g. this one."]


def test_sentence_offsets_are_stripped_and_ordered():
  text = "  One sentence here.   Another one.  \n\n Third. "
  spans = sentences.split_sentences(text)
  assert [text[a:b] for a, b in spans] == ["One sentence here.", "Another one.", "Third."]
  assert all(b1 <= a2 for (_, b1), (a2, _) in zip(spans, spans[1:]))


@pytest.mark.parametrize("text,expected", [
    ("He was born on 4 July 1776 in Boston.", ["4 July 1776", "Boston"]),
    ("It opened on July 4, 1776 and again in March 1889.", ["July 4, 1776", "March 1889"]),
    ("It flourished in the 1990s and the 19th century.", ["1990s", "19th century"]),
    ("Rome fell in 476 AD after the war of 1914-1918.", ["Rome", "476 AD", "1914-1918"]),
    ("It cost $5 million and was 300 metres tall, 25% more.",
     ["$5 million", "300 metres", "25%"]),
    ("It took three years to build.", ["three years"]),
    ("The Bank of America sued the University of California.",
     ["Bank of America", "University of California"]),
    ("She met Charles de Gaulle and President Lincoln.", ["Charles de Gaulle", "Lincoln"]),
    ("However, Google's founders moved to Mountain View.", ["Google", "Mountain View"]),
    ("New York joined the US after the First World War.",
     ["New York", "US", "First World War"]),
    ("He met U.S. President George W. Bush and Charles II of England.",
     ["U.S.", "George W. Bush", "Charles II", "England"]),
    ("Examples In Paris, the DNA of a cell X was found in Western labs.", ["Paris"]),
])
def test_rule_spans(text, expected):
  assert _spans(text) == expected


def test_rule_spans_drop_common_sentence_initial_words():
  text = "Anarchism is a philosophy. Many argue about anarchism in Spain."
  assert _spans(text) == ["Spain"]


def test_rule_spans_non_overlapping_inside_sentences():
  text = ("Super Bowl 50 was played on February 7, 2016 at Levi's Stadium in Santa "
          "Clara, California. The Denver Broncos won 24-10.")
  sents = sentences.split_sentences(text)
  found = rules.find_salient_spans(text, sents)
  assert [text[a:b] for a, b in found] == [
      "Super Bowl 50", "February 7, 2016", "Levi's Stadium", "Santa Clara",
      "California", "Denver Broncos"]
  for (a, b), (c, _) in zip(found, found[1:]):
    assert b <= c
  for a, b in found:
    assert any(s <= a and b <= e for s, e in sents)


def test_rule_spans_non_ascii_capitals():
  assert _spans("Born in Zürich, Émile Durkheim met Antonín Dvořák.") == [
      "Zürich", "Émile Durkheim", "Antonín Dvořák"]


def test_char_to_byte_offsets_non_ascii():
  text = "Zürich is in Switzerland — Dvořák 😀 x"
  convert = offsets.CharToByte(text)
  data = text.encode("utf-8")
  for word in ["Zürich", "is", "Switzerland", "—", "Dvořák", "😀", "x"]:
    start = text.index(word)
    byte_start, byte_end = convert(start), convert(start + len(word))
    assert data[byte_start:byte_end].decode("utf-8") == word
  assert convert(len(text)) == len(data)
  assert offsets.char_to_byte_spans("abc", [(0, 3)]) == [(0, 3)]
  with pytest.raises(IndexError):
    convert(len(text) + 1)


def test_title_filters():
  for title in ["List of rivers", "Index of physics articles", "Outline of chess",
                "Mercury (disambiguation)"]:
    assert packing.is_filtered_title(title)
  for title in ["Lists", "A List of rivers", "Mercury", "Outline"]:
    assert not packing.is_filtered_title(title)


def test_greedy_pack_budget_and_overlong_sentence():
  # Budget for sentences: 20 - 3 - 2 = 15.
  assert packing.greedy_pack(2, [5, 5, 5, 5], 20) == [[0, 1, 2], [3]]
  # A 30-piece sentence becomes a block of its own; no empty block is emitted.
  assert packing.greedy_pack(2, [30, 4, 4], 20) == [[0], [1, 2]]
  assert packing.greedy_pack(2, [4, 30, 4], 20) == [[0], [1], [2]]
  assert packing.greedy_pack(2, [], 20) == []


# Texts on which the splitter or the rules were quadratic in the text length (minutes to
# hours at these sizes); linear, each takes well under a second. The timeout only
# guards against a regression hanging the suite; it is no speed target (that is
# bench/corpus_build.py --jobs=pathological).
PATHOLOGICAL = {
    "one_long_word": ("a" * 400_000, 1, 0),
    "run_of_periods": ("Paris. " + "." * 400_000, 1, 1),
    "run_of_marks": ("!?" * 200_000, 1, 0),
    "many_sentences": ("Paris is big. " * 30_000, 30_000, 30_000),
    "many_spans_in_one_sentence": ("Paris and " * 40_000, 1, 40_000),
    "many_years_in_one_sentence": ("1999 " * 80_000, 1, 80_000),
    "capitalised_function_words": ("The " * 100_000 + "Paris", 1, 1),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", sorted(PATHOLOGICAL))
def test_splitter_and_rules_are_linear_on_pathological_texts(case):
  text, num_sentences, num_spans = PATHOLOGICAL[case]
  sents = sentences.split_sentences(text)
  spans = rules.find_salient_spans(text, sents)
  assert len(sents) == num_sentences
  assert len(spans) == num_spans
  assert all(b1 <= a2 for (_, b1), (a2, _) in zip(spans, spans[1:]))
