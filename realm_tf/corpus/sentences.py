"""A rule-based English sentence splitter with character offsets (no downloads).

The original ORQA preprocessing (`language/orqa/preprocessing/wiki_preprocessor.py`) used
NLTK punkt, which needs a downloaded model, so realm-tf splits with rules: a sentence ends
at `.`, `!` or `?` (plus closing quotes or brackets) followed by whitespace and an
uppercase letter, digit or opening quote, unless the word before the period is a known
abbreviation or a single initial ("J. R. R. Tolkien"). Line breaks always end a sentence
(paragraph boundaries).
"""

import re
from typing import List, Tuple

from realm_tf.corpus import unicode_classes

# Words that end with a period but rarely end a sentence (compared lowercased).
_ABBREVIATIONS = frozenset("""
mr mrs ms dr prof st jr sr mt ft messrs mme mlle sgt capt cpt lt col gen maj adm cmdr
gov sen rep rev hon pres supt insp fr br
vs v etc e.g i.e cf viz al approx ca c fl b d r
no nos vol vols pp p fig figs ed eds est op
inc ltd co corp bros dept univ assn
jan feb mar apr jun jul aug sep sept oct nov dec
u.s u.k u.n u.s.s.r d.c
""".split())

# Candidate end: terminal punctuation, closing quotes/brackets, whitespace, then a
# sentence-initial character. A match only starts at the first mark of a run of marks
# (the lookbehind): starting inside the run would fail the same way, and trying every
# position of a long run ("....") made the scan quadratic.
_BOUNDARY = re.compile(
    r"(?<![.!?])([.!?]+)([\"'\u201d\u2019)\]]*)(\s+)(?=[\"'\u201c\u2018(\[]?[" +
    unicode_classes.UPPER + r"0-9])")
# Abbreviations and initials are short: a longer word before the period is neither, so
# the word is looked for in a bounded window (a search back to the start of the text for
# every period was quadratic in the text length).
_MAX_ABBREVIATION_CHARS = max(len(a) for a in _ABBREVIATIONS) + 2  # + "(" or a quote
_SINGLE_INITIAL = re.compile(r"^[(\"']?[" + unicode_classes.UPPER + r"]$")


def _is_abbreviation(text: str, period_pos: int) -> bool:
  """Whether the period at `period_pos` closes an abbreviation or an initial."""
  window_start = max(0, period_pos - _MAX_ABBREVIATION_CHARS - 1)
  window = text[window_start:period_pos]
  if not window or window[-1].isspace():
    return False  # No word right before the period.
  word = window.split()[-1]
  if len(word) == len(window) and window_start > 0:
    return False  # A word longer than the window is no abbreviation.
  if _SINGLE_INITIAL.match(word):
    return True
  word = word.lstrip("(\"'").lower()
  return word in _ABBREVIATIONS


def _split_paragraph(text: str, start: int, end: int, out: List[Tuple[int, int]]):
  sentence_start = start
  for match in _BOUNDARY.finditer(text, start, end):
    punct = match.group(1)
    if punct == "." and _is_abbreviation(text, match.start(1)):
      continue
    sentence_end = match.end(2)  # Keep closing quotes/brackets in the sentence.
    out.append((sentence_start, sentence_end))
    sentence_start = match.end(3)
  out.append((sentence_start, end))


def split_sentences(text: str) -> List[Tuple[int, int]]:
  """Splits text into sentences.

  Args:
    text: a Python string.

  Returns:
    Sorted, non-overlapping, non-empty (start, end) character offsets; each sentence
    has no leading or trailing whitespace; whitespace between sentences is in none.
  """
  raw = []
  for paragraph in re.finditer(r"[^\n]+", text):
    _split_paragraph(text, paragraph.start(), paragraph.end(), raw)
  sentences = []
  for start, end in raw:
    while start < end and text[start].isspace():
      start += 1
    while end > start and text[end - 1].isspace():
      end -= 1
    if end > start:
      sentences.append((start, end))
  return sentences
