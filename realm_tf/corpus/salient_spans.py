"""Salient-span annotators (`rules`, `spacy`, `precomputed:<path>`) and span validation.

An annotator turns a batch of passages into sentences and salient spans, as character
offsets. `finalize` then cleans and validates them (every span non-empty, inside the
text and inside one sentence, spans non-overlapping) and converts them to the UTF-8
byte offsets of the pre-training corpus.
"""

import bisect
import collections
from typing import List, Optional, Sequence, Tuple

from realm_tf.corpus import io as corpus_io
from realm_tf.corpus import offsets
from realm_tf.corpus import rules
from realm_tf.corpus import sentences as sentences_lib
from realm_tf import errors

Span = Tuple[int, int]
RecordError = corpus_io.RecordError

# REALM's salient spans: named entities and dates (OntoNotes labels, as spaCy reports).
SALIENT_LABELS = frozenset([
    "PERSON", "NORP", "FAC", "ORG", "GPE", "LOC", "PRODUCT", "EVENT", "WORK_OF_ART",
    "LAW", "LANGUAGE", "DATE"])


class AnnotatorUnavailableError(errors.RealmInputError):
  """The requested annotator cannot run here (e.g. spaCy or its pipeline is missing)."""


AnnotationError = corpus_io.AnnotationError


Annotation = collections.namedtuple("Annotation", ["sentences", "spans"])
Annotation.__doc__ = "Character-offset sentences and salient spans of one passage."


class RulesAnnotator:
  """Rule-based sentences and salient spans (no model, no download)."""

  name = "rules"
  needs_annotations = False

  def setup(self) -> None:
    pass

  def annotate(self, texts: Sequence[str], annotation_lines=None, doc_ids=None):
    """Returns one `Annotation` (or `RecordError`) per text."""
    del annotation_lines, doc_ids  # Unused.
    out = []
    for text in texts:
      sents = sentences_lib.split_sentences(text)
      out.append(Annotation(sents, rules.find_salient_spans(text, sents)))
    return out


class SpacyAnnotator:
  """Entities (and sentences, when the pipeline sets them) from a spaCy pipeline.

  Args:
    model: an installed pipeline package name (`en_core_web_sm`) or a pipeline directory.
    labels: entity labels kept as salient spans.
  """

  name = "spacy"
  needs_annotations = False

  def __init__(self, model: str, labels=SALIENT_LABELS, batch_size: int = 64):
    self.model = model
    self.labels = frozenset(labels)
    self.batch_size = batch_size
    self._nlp = None

  def __getstate__(self):
    state = dict(self.__dict__)
    state["_nlp"] = None  # Each worker loads its own pipeline.
    return state

  def setup(self) -> None:
    if self._nlp is None:
      self._nlp = load_spacy_pipeline(self.model)

  def annotate(self, texts: Sequence[str], annotation_lines=None, doc_ids=None):
    del annotation_lines, doc_ids  # Unused.
    self.setup()
    out = []
    for text, doc in zip(texts, self._nlp.pipe(texts, batch_size=self.batch_size)):
      if doc.has_annotation("SENT_START"):
        sents = [(s.start_char, s.end_char) for s in doc.sents]
      else:
        sents = sentences_lib.split_sentences(text)
      ents = [(e.start_char, e.end_char) for e in doc.ents if e.label_ in self.labels]
      out.append(Annotation(sents, ents))
    return out


def load_spacy_pipeline(model: str):
  """Loads a spaCy pipeline, or raises `AnnotatorUnavailableError` saying how to fix it."""
  try:
    import spacy  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise AnnotatorUnavailableError(
        "--spans=spacy needs spaCy, an optional dependency: `pip install spacy` and "
        f"install an English pipeline (`python -m spacy download {model}`)") from None
  try:
    return spacy.load(model)
  except OSError as e:
    raise AnnotatorUnavailableError(
        f"spaCy pipeline {model!r} is not installed (or not a pipeline directory): "
        f"install it with `python -m spacy download {model}` or pass another with "
        f"--spacy_model. spaCy said: {e}") from None


def _check_offsets(pairs, text: str, what: str) -> List[Span]:
  out = []
  for item in pairs:
    if (not isinstance(item, (list, tuple)) or len(item) < 2 or
        not all(isinstance(v, int) and not isinstance(v, bool) for v in item[:2])):
      raise AnnotationError(f"{what} entry {item!r} is not [start, end, ...]")
    start, end = item[0], item[1]
    if not 0 <= start < end <= len(text):
      raise AnnotationError(
          f"{what} offsets [{start}, {end}) out of range for a text of "
          f"{len(text)} characters")
    out.append((start, end))
  return out


class PrecomputedAnnotator:
  """Reads annotations aligned line by line with the input.

  Format (as `enwiki2015-first30k.psgs100w.cap800.ner.jsonl.gz`): one JSON object per
  line, `{"id", "sents": [[start, end], ...], "ents": [[start, end, "LABEL"], ...]}`,
  character offsets into the passage's `text`; `sents` is optional (rules otherwise).
  The i-th annotation line belongs to the i-th input record; ids must match.
  """

  name = "precomputed"
  needs_annotations = True

  def __init__(self, path: str, labels=SALIENT_LABELS):
    self.path = path
    self.labels = frozenset(labels)

  def setup(self) -> None:
    pass

  def annotate(self, texts: Sequence[str], annotation_lines: Sequence[bytes],
               doc_ids: Sequence[Optional[str]]):
    out = []
    for text, line, doc_id in zip(texts, annotation_lines, doc_ids):
      try:
        out.append(self._annotate_one(text, line, doc_id))
      except RecordError as e:
        out.append(e)
    return out

  def _annotate_one(self, text: str, line: bytes, doc_id: Optional[str]) -> Annotation:
    try:
      record = corpus_io.decode_json_line(line)
    except RecordError as e:
      raise AnnotationError(str(e)) from None
    if doc_id is None:
      raise RecordError("input record has no 'id' (needed to check --spans=precomputed)")
    ann_id = record.get("id")
    if ann_id is None or str(ann_id) != doc_id:
      raise AnnotationError(f"annotation id {ann_id!r} does not match input id {doc_id!r}")
    ents = record.get("ents")
    if not isinstance(ents, list):
      raise AnnotationError("missing or malformed 'ents' list")
    spans = _check_offsets(
        [e for e in ents if not (isinstance(e, (list, tuple)) and len(e) > 2 and
                                 e[2] not in self.labels)], text, "entity")
    if "sents" in record:
      if not isinstance(record["sents"], list):
        raise AnnotationError("malformed 'sents' list")
      sents = _check_offsets(record["sents"], text, "sentence")
    else:
      sents = sentences_lib.split_sentences(text)
    return Annotation(sents, spans)


def make_annotator(spec: str, spacy_model: str = "en_core_web_sm",
                   labels=SALIENT_LABELS):
  """`rules` | `spacy` | `precomputed:<path>` -> an annotator."""
  if spec == "rules":
    return RulesAnnotator()
  if spec == "spacy":
    return SpacyAnnotator(spacy_model, labels)
  if spec.startswith("precomputed:") and len(spec) > len("precomputed:"):
    return PrecomputedAnnotator(spec[len("precomputed:"):], labels)
  raise ValueError(f"Unknown --spans={spec!r}: use rules, spacy or precomputed:<path>")


def _strip(text: str, start: int, end: int) -> Span:
  while start < end and text[start].isspace():
    start += 1
  while end > start and text[end - 1].isspace():
    end -= 1
  return start, end


def finalize(text: str, annotation: Annotation, counters: collections.Counter):
  """Validates an annotation and converts it to UTF-8 byte offsets.

  Sentences are whitespace-stripped, empty ones dropped, and must not overlap. Spans are
  whitespace-stripped; empty spans, spans crossing a sentence boundary and spans
  overlapping a longer span are dropped and counted.

  Args:
    text: the passage.
    annotation: character-offset `Annotation` of `text`.
    counters: updated with the drop counts.

  Returns:
    (sentence_byte_spans, span_byte_spans): sorted lists of (start, limit).

  Raises:
    RecordError: sentences overlap or lie outside the text.
  """
  sents = sorted(s for s in (_strip(text, a, b) for a, b in annotation.sentences)
                 if s[1] > s[0])
  for (_, prev_end), (start, end) in zip(sents, sents[1:]):
    if start < prev_end:
      raise RecordError(f"sentences overlap at character {start}")
  if sents and (sents[0][0] < 0 or sents[-1][1] > len(text)):
    raise RecordError("sentence offsets out of range")
  starts = [s for s, _ in sents]  # To find a span's sentence by bisection.
  candidates = set()
  for a, b in annotation.spans:
    if not 0 <= a <= b <= len(text):
      raise RecordError(f"span offsets [{a}, {b}) out of range")
    a, b = _strip(text, a, b)
    if b <= a:
      counters["spans_dropped_empty"] += 1
      continue
    i = bisect.bisect_right(starts, a) - 1
    if i < 0 or b > sents[i][1]:
      counters["spans_dropped_crossing_sentences"] += 1
      continue
    candidates.add((a, b))
  def count_drop(_):
    counters["spans_dropped_overlapping"] += 1

  kept = rules.keep_non_overlapping(
      sorted(candidates, key=lambda s: (s[0] - s[1], s[0])), 0, len(text), count_drop)
  to_bytes = offsets.CharToByte(text)
  return to_bytes.spans(sents), to_bytes.spans(kept)
