"""The `rules` salient-span annotator: dates, numbers with units, capitalised names.

REALM masks salient spans, i.e. named entities and dates (Guu et al. 2020, section 3.4);
its tagger was never released. These rules need no model and no download:

* dates: full dates ("4 July 1776", "July 4, 1776"), month-day, month-year, seasons,
  years, year ranges, years with an era ("44 BC"), decades ("the 1990s"), centuries
  ("19th century"), millennia, and durations ("three years");
* numbers with a unit or currency ("$5 million", "300 metres", "25%");
* runs of capitalised words, allowing inner lowercase connectors ("Bank of America",
  "Charles de Gaulle", "Lord of the Rings"). Leading function words ("In", "However",
  sentence starts and headings), articles and titles ("President") are stripped; a
  sentence-initial word that also occurs in lowercase in the passage ("Anarchism is")
  is dropped; lone common adjectives, single letters and a few non-entities ("DNA")
  are no spans; possessives are cut off.

The rules were developed against the spaCy entities of the 178k-passage training corpus
(see bench/span_quality.py and docs/BENCHMARKS.md), not against a test set.

All offsets are character offsets into the passage. Spans never cross a sentence and
never overlap each other.
"""

import re
from typing import Iterable, List, Sequence, Set, Tuple

from realm_tf.corpus import unicode_classes

Span = Tuple[int, int]

_UP = unicode_classes.UPPER

# --- dates -------------------------------------------------------------------------

_MONTH = (r"(?:January|February|March|April|May|June|July|August|September|October|"
          r"November|December|Jan\.|Feb\.|Mar\.|Apr\.|Jun\.|Jul\.|Aug\.|Sept?\.|Oct\.|"
          r"Nov\.|Dec\.)")
_WEEKDAY = r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_DAY = r"(?:[12][0-9]|3[01]|0?[1-9])(?:st|nd|rd|th)?(?![0-9])"
_YEAR = r"(?:1[0-9]{3}|20[0-9]{2})(?![0-9])"
_ERA = r"(?:BCE|BC|CE|AD|B\.C\.(?:E\.)?|A\.D\.)"
_ORDINAL_WORD = (
    r"(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|"
    r"twelfth|thirteenth|fourteenth|fifteenth|sixteenth|seventeenth|eighteenth|"
    r"nineteenth|twentieth|twenty-first)")
_PERIOD_PREFIX = r"(?:(?:[Ee]arly|[Mm]id|[Ll]ate)[-\s])?"
_NUMBER_WORD = (
    r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|"
    r"fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|"
    r"sixty|seventy|eighty|ninety|hundred|thousand|(?:twenty|thirty|forty|fifty|sixty|"
    r"seventy|eighty|ninety)-(?:one|two|three|four|five|six|seven|eight|nine))")
_NUMBER = r"(?:[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?|[0-9]+(?:\.[0-9]+)?)"

_DATE_PATTERNS = [
    # July 4, 1776 / Monday, July 4 / July 4
    rf"(?:{_WEEKDAY},?\s+)?{_MONTH}\s+{_DAY}(?:,?\s+{_YEAR})?",
    # 4 July 1776 / 4th of July / Monday 4 July
    rf"(?:{_WEEKDAY},?\s+)?{_DAY}\s+(?:of\s+)?{_MONTH}(?:,?\s+{_YEAR})?",
    # July 1776 / early 1776 is a year below
    rf"{_PERIOD_PREFIX}{_MONTH},?\s+{_YEAR}",
    rf"(?:[Ss]pring|[Ss]ummer|[Aa]utumn|[Ff]all|[Ww]inter)\s+(?:of\s+)?{_YEAR}",
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}",
    # 1914-1918 / 1939-45 / 1990-present
    rf"{_YEAR}\s?[-\u2013\u2014]\s?(?:{_YEAR}|[0-9]{{2}}(?![0-9])|present)",
    # 44 BC / AD 79 / 3rd century BC / 19th-century / the early 1990s
    rf"[0-9]{{1,4}}\s?{_ERA}(?![A-Za-z])",
    rf"{_ERA}\s?[0-9]{{1,4}}(?![0-9])",
    rf"{_PERIOD_PREFIX}(?:[0-9]{{1,2}}(?:st|nd|rd|th)|{_ORDINAL_WORD})[-\s]"
    rf"(?:centur(?:y|ies)|millenni(?:um|a))(?:\s+{_ERA}(?![A-Za-z]))?",
    rf"{_PERIOD_PREFIX}(?:1[0-9]|20)?[0-9]0s(?![A-Za-z0-9])",
    rf"{_PERIOD_PREFIX}'[0-9]0s(?![A-Za-z0-9])",
    # durations: three years, 25 days
    rf"(?:{_NUMBER}|{_NUMBER_WORD})[-\s](?:years?|months?|weeks?|days?|decades?|"
    rf"centuries|hours?|minutes?|seconds?)(?![A-Za-z])",
    # bare years, not part of a longer number or an amount
    rf"(?:{_PERIOD_PREFIX}){_YEAR}(?![,.][0-9]|\s?%)",
    rf"{_WEEKDAY}",
]

# --- numbers with units or currency --------------------------------------------------

_SCALE = r"(?:\s?(?:million|billion|trillion|thousand|bn)(?![A-Za-z]))"
_UNIT = (
    r"(?:(?:square|cubic)\s)?(?:km|kilometres?|kilometers?|mi|miles?|m|metres?|meters?|"
    r"cm|centimetres?|centimeters?|mm|millimetres?|millimeters?|ft|feet|foot|inch(?:es)?|"
    r"yards?|kg|kilograms?|grams?|tonnes?|tons?|lbs?|pounds?|ounces?|oz|acres?|"
    r"hectares?|ha|km2|km²|sq\s?mi|mph|km/h|knots?|°\s?[CF]|degrees?|MW|GW|kW|watts?|"
    r"volts?|Hz|kHz|MHz|GHz|bytes?|KB|MB|GB|TB|litres?|liters?|gallons?|calories?)"
    r"(?![A-Za-z0-9])")
_CURRENCY_WORD = (r"(?:dollars?|euros?|pounds sterling|yen|francs?|marks|rupees?|"
                  r"USD|EUR|GBP)(?![A-Za-z])")
_AMOUNT_PATTERNS = [
    rf"(?:US\$|A\$|C\$|NZ\$|HK\$|[$£€¥₹])\s?{_NUMBER}{_SCALE}?",
    rf"{_NUMBER}{_SCALE}?\s?{_CURRENCY_WORD}",
    rf"{_NUMBER}\s?(?:%|percent|per\s?cent)(?![A-Za-z])",
    rf"(?:{_NUMBER}|{_NUMBER_WORD}){_SCALE}?[-\s]?{_UNIT}",
]

# Every pattern starts a word with a digit, a currency sign, an apostrophe, a capital or
# one of a few lowercase initials (early, mid, late, seasons, number words): checking
# that first makes the scan ~10x faster than trying the alternation at every position.
_NUMERIC = re.compile(
    r"(?<!\w)(?=[0-9$£€¥₹'A-Zaefilmnostw])(?:" +
    "|".join(f"(?:{p})" for p in _DATE_PATTERNS + _AMOUNT_PATTERNS) + ")")

# --- capitalised runs -----------------------------------------------------------------

_CAPWORD = (
    rf"(?:[{_UP}](?:\.[{_UP}])+\.?"          # U.S. / U.S
    rf"|[{_UP}]\.(?=\s)"                     # J. (an initial)
    rf"|(?:St|Mt|Ft|Dr|Mr|Mrs|Ms|Jr|Sr)\.(?=\s)"
    rf"|[{_UP}][\w'\u2019]*(?:[-&][{_UP}0-9][\w'\u2019]*)*"  # Anglo-Saxon / AT&T
    rf"|[a-z]+[{_UP}][\w]*)")                # iPhone / eBay
_CONNECTOR = (r"(?:of|the|de|del|della|dei|di|da|do|dos|das|du|des|la|le|les|von|van|"
              r"der|den|ter|y|e|&)")
# A run never starts right after an ASCII lowercase letter: from there no alternative of
# _CAPWORD can match that did not already fail at the start of the lowercase run, and
# retrying `[a-z]+` at every position of a long lowercase word was quadratic.
_CAP_RUN = re.compile(
    rf"(?<![a-z]){_CAPWORD}(?:(?:\s+{_CONNECTOR}){{0,2}}\s+{_CAPWORD})*"
    r"(?:\s+[0-9]+(?![0-9,.]*[0-9]))?")
_WORD = re.compile(r"\S+")
_LEAD = re.compile("[\"'\u201c\u2018( \\[]*")
_LOWER_WORD = re.compile(rf"(?<![\w])[{unicode_classes.LOWER}][\w'\u2019]*")

_CONNECTORS = frozenset(_CONNECTOR[3:-1].split("|"))
_ARTICLES = frozenset(["the", "a", "an"])
_ROMAN_NUMERAL = re.compile(r"^[IVX]+$")
# Capitalised words that name no entity (spaCy-style NER leaves them out).
_NOT_ENTITIES = frozenset("""
God Christ Internet Web DNA RNA GDP TV AIDS HIV PC CPU CD DVD USB URL HTML API GPS
""".split())
# Honorifics and titles that spaCy-style entities leave out ("President Lincoln").
_HONORIFICS = frozenset("""
mr mr. mrs mrs. ms ms. dr dr. prof prof. sir dame lord lady president vice prime
minister king queen prince
princess emperor empress pope general gen. captain capt. colonel col. lieutenant senator
governor bishop archbishop cardinal chancellor professor judge justice mayor reverend
rev. sheikh sultan tsar czar duke duchess count countess baron
""".split())
# Capitalised function words start sentences, headings and list items; a run never
# starts with one ("In France" -> "France"). Compared when the word is Titlecase only,
# so "US" and "IT" are not "us" and "it".
_FUNCTION_WORDS = frozenset("""
a an the this that these those there here it its he his him she her hers they them
their theirs we our us you your i my me one two three four five six seven eight nine
ten some any many most much more several few both each every all no not none other
another such same either neither
in on at by for from with without within into onto of to as about above below after
before during since until till through throughout under over between among amongst
against across along around behind beyond near upon via per despite following
according including unlike like
and but or nor so yet if when whenever while whereas where wherever why how what which
who whom whose whether because although though unless once then thus hence therefore
however moreover furthermore meanwhile nevertheless nonetheless instead also still even
later earlier today now soon finally eventually initially originally currently
recently previously subsequently additionally consequently similarly likewise
alternatively namely indeed perhaps often sometimes usually generally typically
especially particularly traditionally historically notably due see note example
examples is are was were be been being has have had do does did can could may might
will would shall should must based born located known called named considered
together only
""".split())
# Common adjectives: fine inside a name ("New York", "First World War"), but not a
# salient span on their own.
_COMMON_ADJECTIVES = frozenset("""
first second third last next new old early late modern ancient great greater western
eastern northern southern central upper lower former
""".split())


def _words(text: str, start: int, end: int) -> List[Span]:
  return [(m.start(), m.end()) for m in _WORD.finditer(text, start, end)]


def _strip_possessive(text: str, start: int, end: int) -> int:
  for suffix in ("'s", "\u2019s", "'", "\u2019"):
    if text.endswith(suffix, start, end) and end - len(suffix) > start:
      return end - len(suffix)
  return end


def _split_run(text: str, words: List[Span]) -> List[List[Span]]:
  """Cuts a run after a possessive followed by two or more words ("London's Comedy
  Theatre"), at "of" after a regnal number ("Charles II of England") and at an inner
  title ("U.S. President George W. Bush")."""
  parts, current = [], []
  for i, (a, b) in enumerate(words):
    word = text[a:b]
    if (word == "of" and current and
        _ROMAN_NUMERAL.match(text[current[-1][0]:current[-1][1]])):
      parts.append(current)
      current = []
      continue
    if word.lower() in _HONORIFICS and current and i + 1 < len(words):
      # "U.S. President George W. Bush" -> "U.S.", "George W. Bush".
      parts.append(current)
      current = []
      continue
    current.append((a, b))
    # ...but "Levi's Stadium" stays whole: one word after the possessive.
    if _strip_possessive(text, a, b) < b and i + 2 < len(words):
      parts.append(current)
      current = []
  parts.append(current)
  return [p for p in parts if p]


def _refine_words(text: str, words: List[Span], at_sentence_start: bool,
                  lower_words: Set[str]) -> List[Span]:
  """Trims one part of a capitalised run; returns zero or one span."""
  # Drop leading function words, articles and honorifics (by index: slicing the list
  # once per dropped word was quadratic in a long run of them).
  first_word, last_word = 0, len(words)
  while first_word < last_word:
    first = text[words[first_word][0]:words[first_word][1]]
    lowered = first.lower()
    if ((lowered in _FUNCTION_WORDS and first[1:] == lowered[1:]) or
        lowered in _ARTICLES or
        (lowered in _HONORIFICS and last_word - first_word > 1)):
      first_word += 1
      at_sentence_start = False
      # Connectors can't start a span.
      while (first_word < last_word and
             text[words[first_word][0]:words[first_word][1]] in _CONNECTORS):
        first_word += 1
    else:
      break
  while (last_word > first_word and
         text[words[last_word - 1][0]:words[last_word - 1][1]] in _CONNECTORS):
    last_word -= 1
  words = words[first_word:last_word]
  if not words:
    return []
  first = text[words[0][0]:words[0][1]]
  if len(words) == 1:
    bare = text[words[0][0]:_strip_possessive(text, *words[0])]
    if (len(bare) == 1 or bare[0].isdigit() or bare in _NOT_ENTITIES or
        bare.lower() in _HONORIFICS or bare.lower() in _COMMON_ADJECTIVES):
      return []
  # A sentence-initial common word ("Anarchism is ...") also occurs in lowercase.
  if at_sentence_start and first.lower() in lower_words:
    words = words[1:]
    while words and text[words[0][0]:words[0][1]] in _CONNECTORS:
      words = words[1:]
    if not words or text[words[0][0]].isdigit():
      return []
  span_start, span_end = words[0][0], words[-1][1]
  span_end = _strip_possessive(text, span_start, span_end)
  return [(span_start, span_end)] if span_end > span_start else []


def _refine_run(text: str, start: int, end: int, sentence_start: int,
                lower_words: Set[str]) -> List[Span]:
  """Splits and trims one capitalised run into spans."""
  out = []
  for i, words in enumerate(_split_run(text, _words(text, start, end))):
    out.extend(_refine_words(text, words, i == 0 and start == sentence_start,
                             lower_words))
  return out


def keep_non_overlapping(candidates: Iterable[Tuple[int, int]], begin: int, end: int,
                         on_drop=None) -> List[Span]:
  """Greedily keeps spans that overlap no span kept before; returns them sorted.

  A character mask of [begin, end) marks what is taken, so a candidate costs its length
  (a scan of the kept spans for every candidate was quadratic in the number of spans).

  Args:
    candidates: (start, end) spans inside [begin, end), in the order of preference.
    begin, end: the range of the text the spans lie in.
    on_drop: called with each dropped span.
  """
  taken = bytearray(end - begin)
  kept = []
  for a, b in candidates:
    if taken.find(1, a - begin, b - begin) == -1:
      taken[a - begin:b - begin] = b"\x01" * (b - a)
      kept.append((a, b))
    elif on_drop is not None:
      on_drop((a, b))
  return sorted(kept)


def _resolve(candidates: Iterable[Tuple[int, int, int]], begin: int, end: int) -> List[Span]:
  """Keeps non-overlapping spans: longest first, then by priority, then leftmost."""
  ordered = sorted(candidates, key=lambda c: (c[0] - c[1], c[2], c[0]))
  return keep_non_overlapping([(a, b) for a, b, _ in ordered], begin, end)


def find_salient_spans(text: str, sentences: Sequence[Span]) -> List[Span]:
  """Rule-based salient spans.

  Args:
    text: the passage.
    sentences: sorted (start, end) character offsets of its sentences.

  Returns:
    Sorted, non-overlapping (start, end) character spans, each inside one sentence.
  """
  lower_words = {m.group(0) for m in _LOWER_WORD.finditer(text)}
  spans = []
  for sentence_start, sentence_end in sentences:
    candidates = []
    for m in _NUMERIC.finditer(text, sentence_start, sentence_end):
      candidates.append((m.start(), m.end(), 0))
    # A run counts as sentence-initial after opening quotes or brackets too: where the
    # sentence's first other character is (found once, not once per run).
    lead = _LEAD.match(text, sentence_start, sentence_end)
    for m in _CAP_RUN.finditer(text, sentence_start, sentence_end):
      run_sentence_start = m.start() if m.start() <= lead.end() else -1
      for start, end in _refine_run(text, m.start(), m.end(), run_sentence_start,
                                    lower_words):
        candidates.append((start, end, 1))
    spans.extend(_resolve(candidates, sentence_start, sentence_end))
  return spans
