"""The tokenizer against Google's BERT `FullTokenizer`, id by id and offset by offset.

The reference is `official.nlp.tools.tokenization.FullTokenizer` (bert-tensorflow's code,
shipped in tf-models-official) with `max_input_chars_per_word = 200`, bert-tensorflow's
value, which the original REALM and ORQA ran. Its byte offsets are derived independently
of `realm_tf.tokenization`: every character of the text is cleaned and normalized on its
own with BERT's own functions, the reference's basic tokens are laid over the resulting
stream of normalized characters, and each wordpiece (an `[UNK]`: its whole basic token)
spans the original characters its normalized characters came from.

Inputs: every Unicode general category (all code points of the small categories, a stride
of the large ones), every character that Python or RE2 calls whitespace, zero-width and
bidi marks, words of 99-201 characters, CJK, combining marks, cased and uncased; and
2,000 Wikipedia passages from ../shared (skipped when absent).

The residual differences documented in `realm_tf.tokenization` are computed from the
libraries themselves (not from the tokenizer under test): characters Python's Unicode
tables leave unassigned that RE2 classifies as punctuation, combining, control, format or
separator characters; characters whose ICU lowercase or NFD differs from Python's; and a
capital sigma before case-ignorable punctuation and a letter.
"""

import gzip
import itertools
import json
import sys
import unicodedata

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text as tf_text

from realm_tf import tokenization
from realm_tf.tokenization import Tokenizer
from tests.conftest import shared_path

bert_reference = pytest.importorskip("official.nlp.tools.tokenization")

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
BERT_MAX_INPUT_CHARS_PER_WORD = 200  # bert-tensorflow's WordpieceTokenizer default
ZERO_WIDTH_AND_BIDI = ("\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b\u180e\u200b\u200c"
                       "\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062"
                       "\u2063\u2064\u2066\u2067\u2068\u2069\u206a\u206f\u3164\ufe0f\ufeff"
                       "\uffa0\U000e0001\U000e0020\U000e007f\U000e0100")


def _reference(vocab_path, do_lower_case):
  ref = bert_reference.FullTokenizer(vocab_path, do_lower_case=do_lower_case)
  ref.wordpiece_tokenizer.max_input_chars_per_word = BERT_MAX_INPUT_CHARS_PER_WORD
  return ref


def _normalized_chars(ref, text):
  """[(normalized character, index of its source character)] of `text`'s non-whitespace,
  each source character cleaned and normalized on its own by BERT's functions."""
  basic = ref.basic_tokenizer
  stream = []
  for index, char in enumerate(text):
    cleaned = basic._clean_text(char)  # pylint: disable=protected-access
    if not cleaned or cleaned.isspace():
      continue  # removed, or a split point
    if basic.do_lower_case:
      cleaned = basic._run_strip_accents(cleaned.lower())  # pylint: disable=protected-access
    stream.extend((c, index) for c in cleaned)
  return stream


def reference_tokens(ref, text):
  """[(id, start byte, stop byte)] of `text` by the reference tokenizer."""
  stream = _normalized_chars(ref, text)
  byte_starts = np.cumsum([0] + [len(c.encode("utf-8")) for c in text])
  tokens, position = [], 0
  for word in ref.basic_tokenizer.tokenize(text):
    chars = stream[position:position + len(word)]
    # Lowercasing a word is per character except for a word-final capital sigma.
    assert "".join(c for c, _ in chars).replace("ς", "σ") == word.replace("ς", "σ"), (
        text, word)
    position += len(word)
    sources = [i for _, i in chars]
    pieces = ref.wordpiece_tokenizer.tokenize(word)
    if pieces == ["[UNK]"]:
      tokens.append((ref.vocab["[UNK]"], byte_starts[sources[0]],
                     byte_starts[sources[-1] + 1]))
      continue
    offset = 0
    for piece in pieces:
      length = len(piece) - (2 if piece.startswith("##") else 0)
      span = sources[offset:offset + length]
      tokens.append((ref.vocab[piece], byte_starts[span[0]], byte_starts[span[-1] + 1]))
      offset += length
    assert offset == len(word)
  assert position == len(stream), text
  return [(int(t), int(s), int(e)) for t, s, e in tokens]


def tokens_of(tokenizer, texts, batch_size=2000):
  """[(id, start, stop)] per text, by `tokenizer` in batches."""
  result = []
  for begin in range(0, len(texts), batch_size):
    ids, starts, limits = tokenizer.tokenize_with_offsets(
        tf.constant([t.encode("utf-8") for t in texts[begin:begin + batch_size]]))
    for row_ids, row_starts, row_limits in zip(ids.to_list(), starts.to_list(),
                                               limits.to_list()):
      result.append(list(zip(row_ids, row_starts, row_limits)))
  return result


def _code_points():
  """Every code point of each general category but Lo, Cn, Co (a stride of those) and
  Cs (not encodable)."""
  strides = {"Lo": 13, "Cn": 97, "Co": 251, "Cs": 0}
  seen = {}
  chosen = []
  for cp in range(sys.maxunicode + 1):
    category = unicodedata.category(chr(cp))
    stride = strides.get(category, 1)
    if category == "Cn" and cp <= 0xFFFF:
      stride = 1  # every unassigned BMP code point
    count = seen.get(category, 0)
    seen[category] = count + 1
    if stride and count % stride == 0:
      chosen.append(cp)
  # The edges of BERT's CJK ranges, whatever their category.
  for low, high in ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF),
                    (0x2A700, 0x2B73F), (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF),
                    (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)):
    chosen += [low - 1, low, high, high + 1]
  return sorted(set(chosen)), seen


def _whitespace_code_points():
  """Every code point that Python (`str.isspace`) or RE2 (`\\s`, `[[:space:]]`, `\\p{Z}`)
  calls whitespace."""
  python = {cp for cp in range(sys.maxunicode + 1) if chr(cp).isspace()}
  candidates = [cp for cp in range(sys.maxunicode + 1) if not 0xD800 <= cp <= 0xDFFF]
  strings = tf.constant([chr(cp).encode("utf-8") for cp in candidates])
  re2 = tf.strings.regex_full_match(strings, r"\s|[[:space:]]|\p{Z}").numpy()
  return python | {cp for cp, hit in zip(candidates, re2) if hit}


def _residual(code_points, do_lower_case):
  """The code points on which realm-tf may differ from BERT (module docstring)."""
  chars = [chr(cp) for cp in code_points]
  strings = tf.constant([c.encode("utf-8") for c in chars])
  re2_special = tf.strings.regex_full_match(
      strings, r"[\p{P}\p{Mn}\p{Cc}\p{Cf}\p{Z}]").numpy()
  residual = {cp for cp, c, hit in zip(code_points, chars, re2_special)
              if hit and unicodedata.category(c) == "Cn"}
  if do_lower_case:
    icu_lower = [s.decode("utf-8") for s in
                 tf.strings.lower(strings, encoding="utf-8").numpy()]
    icu_nfd = [s.decode("utf-8") for s in tf_text.normalize_utf8(strings, "NFD").numpy()]
    # (NUL is skipped: the string ops stop at it; the tokenizer maps it to U+0001.)
    residual |= {cp for cp, c, low, nfd in zip(code_points, chars, icu_lower, icu_nfd)
                 if cp and (low != c.lower() or nfd != unicodedata.normalize("NFD", c))}
  return residual


def _long_words():
  """Words around the 200-character limit, in what the limit counts (normalized
  characters) and what it does not (removed characters, stripped accents)."""
  words = []
  for n in (99, 100, 101, 150, 199, 200, 201):
    words += ["a" * n, "Ab" * (n // 2) + "c" * (n % 2), "é" * n, "e\u0301" * n,
              "x\u200b" * n, "ÉCOLE" * (n // 5) + "s" * (n % 5), "9" * n, "б" * n]
  words += ["한" * 66, "한" * 67, "한" * 100,  # NFD: 3 jamo each (uncased)
            "東" * 250, "a" * 150 + "," + "b" * 150, "a" * 120 + "\u2028" + "b" * 120,
            "a" * 199 + "\u0301", "a" * 200 + "\u200b", "Σ" * 201, "i\u0307" * 150,
            "ǅ" * 201, "ﬁ" * 201]
  return words


def _composite_texts():
  """Sentences mixing separators, marks, cases and scripts (no residual characters)."""
  return [
      "line\u2028sep para\u2029graph", "a\x1cb\x1dc\x1ed\x1fe \x0bf\x0cg h\x85i",
      "tab\tnew\nline\r\ncr  \u00a0nbsp\u1680ogham\u2000\u200a\u202f\u205f\u3000ideo",
      "zero\u200bwidth\u200cjoin\u200dne\u2060r\ufeffbom \u200eltr\u200frtl \u202aemb\u202c",
      "\u2066isolate\u2069 \u061carabic \u180emongolian \u00adsoft hy\u00adphen",
      "İstanbul ǅemal ß Straße ﬁnance Ⅻ ½ ² km² … ℓ Å Ω ΟΔΟΣΟ ὈΔΥΣΣΈΑ",
      "a≠b x≮y z≯w \u1fefvaria `tick` café naïve coöperate e\u0301e\u0301",
      "東京タワーは1958年に完成した。서울 특별시 ＡＢＣ１２３ (full-width)",
      "\x00nul\x00 \ufffdreplacement\ufffd \U0001F600emoji\U0001F44D\U0001F3FD",
      "Ärger über Öl — «naïve» façade, «quotes» „low“ ‚single‘ ¿qué? ¡sí!",
      "", " ", "\u2028", "\u2029\u2028 \u3000", "\u200b", "\x1c", "\u0301", "a\u0300\u0301",
      " ".join(_long_words()),
  ]


def _char_vocab(path, texts, ref_lower):
  """A vocabulary holding every normalized character of `texts` (and its `##` form), so
  that every normalization difference shows in the ids, plus a few words."""
  basic = bert_reference.BasicTokenizer(do_lower_case=ref_lower)
  pieces = set()
  for text in texts:
    for char in set(text):
      cleaned = basic._clean_text(char)  # pylint: disable=protected-access
      if ref_lower:
        cleaned = basic._run_strip_accents(cleaned.lower())  # pylint: disable=protected-access
      pieces.update(c for c in cleaned if not c.isspace() and c.strip())
  words = ["line", "sep", "para", "graph", "##graph", "cafe", "café", "nai", "##ve", "aa",
           "##aa", "##ab", "Ab", "##Ab"]
  vocab = SPECIAL + words + sorted(pieces) + sorted("##" + p for p in pieces)
  vocab = list(dict.fromkeys(vocab))
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(vocab) + "\n")
  return str(path)


def _assert_same(tokenizer, ref, texts, skip=()):
  got = tokens_of(tokenizer, texts)
  checked = 0
  for text, mine in zip(texts, got):
    if text in skip:
      continue
    expected = reference_tokens(ref, text)
    assert mine == expected, (text, mine, expected)
    checked += len(expected)
  return checked


@pytest.fixture(scope="module")
def code_points():
  chosen, population = _code_points()
  assert {unicodedata.category(chr(cp)) for cp in chosen} == set(population) - {"Cs"}
  whitespace = _whitespace_code_points()
  assert {0x2028, 0x2029, 0x1C, 0x85, 0xA0, 0x3000, 0x0B, 0x0C} <= whitespace
  return sorted(set(chosen) | whitespace | {ord(c) for c in ZERO_WIDTH_AND_BIDI})


@pytest.mark.parametrize("do_lower_case", [True, False], ids=["uncased", "cased"])
def test_every_unicode_category_equals_bert(tmp_path, code_points, do_lower_case):
  residual = _residual(code_points, do_lower_case)
  assert len(residual) < 200, sorted(map(hex, residual))
  per_char = [f"a{chr(cp)}b {chr(cp)} {chr(cp) * 2}y" for cp in code_points]
  composite = _composite_texts()
  assert not {ord(c) for t in composite for c in t} & residual
  vocab = _char_vocab(tmp_path / "vocab.txt", per_char + composite, do_lower_case)
  tokenizer = Tokenizer(vocab, do_lower_case=do_lower_case)
  ref = _reference(vocab, do_lower_case)
  skip = {text for text, cp in zip(per_char, code_points) if cp in residual}
  assert _assert_same(tokenizer, ref, per_char, skip) > 3 * len(per_char)
  assert _assert_same(tokenizer, ref, composite) > 1000


def test_separators_and_the_word_length_limit(tmp_path):
  vocab = tmp_path / "vocab.txt"
  vocab.write_text("\n".join(SPECIAL + ["a", "##a", "b", "line", "sep"]) + "\n")
  tokenizer = Tokenizer(str(vocab), do_lower_case=True)
  # Zl and Zp split; the C0/C1 separators are control characters that BERT removes.
  assert [t.text for t in tokenizer.tokenize("line\u2028sep\u2029b")] == [
      "line", "sep", "b"]
  assert [t.text for t in tokenizer.tokenize("li\x1cne\x85 s\x0bep")] == ["line", "sep"]
  # bert-tensorflow's limit: 200 characters, counted after normalization.
  assert tokenization.MAX_CHARS_PER_WORD == 200
  assert len(tokenizer.tokenize("a" * 200)) == 200
  tokens = tokenizer.tokenize("b " + "a" * 201)
  assert [(t.text, t.start, t.stop) for t in tokens] == [("b", 0, 1), ("[UNK]", 2, 203)]
  assert len(tokenizer.tokenize("a\u0301" * 150)) == 150  # 300 characters, 150 normalized
  assert [t.text for t in tokenizer.tokenize("A\u200b" * 201)] == ["[UNK]"]


def test_final_capital_sigma_is_the_documented_difference(tmp_path):
  """ICU lowercases a word-final capital sigma as Python does (ς), but realm-tf lowercases
  the words left after splitting off punctuation, BERT the whitespace-separated ones: a
  sigma before case-ignorable punctuation (. ' :) and a letter differs."""
  vocab = tmp_path / "vocab.txt"
  vocab.write_text("\n".join(SPECIAL + ["α", "β", "##σ", "##ς", ".", "'", "-"]) + "\n",
                   encoding="utf-8")
  tokenizer = Tokenizer(str(vocab), do_lower_case=True)
  ref = _reference(str(vocab), True)
  for same in ("ΑΣ", "ΑΣ.", "ΑΣ-Β", "ΑΣ ΑΣ."):
    assert [t.text for t in tokenizer.tokenize(same)] == ref.tokenize(same)
  for text in ("ΑΣ.Β", "ΑΣ'Β"):
    assert ref.tokenize(text)[:2] == ["α", "##σ"]
    assert [t.text for t in tokenizer.tokenize(text)][:2] == ["α", "##ς"]


@pytest.fixture(scope="module")
def passages():
  path = shared_path("data", "corpus", "enwiki2015-first30k.psgs100w.cap800.jsonl.gz")
  with gzip.open(path, "rt", encoding="utf-8") as f:
    texts = [json.loads(line)["text"] for line in itertools.islice(f, 2000)]
  assert len(texts) == 2000
  return texts


def test_2000_wikipedia_passages_equal_bert_uncased(passages, bert_tokenizer):
  ref = _reference(bert_tokenizer.vocab_path, True)
  assert _assert_same(bert_tokenizer, ref, passages) > 250_000


def test_2000_wikipedia_passages_equal_bert_cased(passages, bert_vocab_path):
  """The uncased vocabulary read cased: capitals fall to other pieces and [UNK]s."""
  cased = Tokenizer(bert_vocab_path, do_lower_case=False)
  ref = _reference(bert_vocab_path, False)
  assert _assert_same(cased, ref, passages) > 250_000
