"""Pre-training-corpus records: passages with sentence and salient-span offsets.

`PretrainProcessor` runs in the build workers (without TensorFlow): it parses a chunk of
jsonl lines, annotates the passages, validates the annotations (`spans.finalize`) and
serializes one `tf.train.Example` per passage with `title`, `text`,
`sentence_byte_start/limit` and `span_byte_start/limit` (UTF-8 byte offsets). Passages
without a salient span are dropped (REALM can't mask them) and counted.
"""

import collections
from typing import List

from realm_tf.corpus import build_loop
from realm_tf.corpus import io as corpus_io
from realm_tf.corpus import records
from realm_tf.corpus import salient_spans as spans_lib


def pretrain_example(title: str, text: str, sentences, spans) -> bytes:
  """One serialized pre-training `tf.train.Example` from byte-offset (start, limit)s."""
  return records.encode_example({
      "title": ("bytes", [title.encode("utf-8")]),
      "text": ("bytes", [text.encode("utf-8")]),
      "sentence_byte_start": ("int64", [s for s, _ in sentences]),
      "sentence_byte_limit": ("int64", [e for _, e in sentences]),
      "span_byte_start": ("int64", [s for s, _ in spans]),
      "span_byte_limit": ("int64", [e for _, e in spans]),
  })


class PretrainProcessor:
  """Turns chunks of jsonl lines into serialized pre-training passages (picklable)."""

  def __init__(self, annotator):
    self.annotator = annotator

  def setup(self) -> None:
    self.annotator.setup()

  def process(self, chunk: List[build_loop.Item]) -> build_loop.ChunkResult:
    """Parses, annotates, validates and serializes a chunk (see `build_loop.run_build`)."""
    counters = collections.Counter()
    errors = []
    parsed = []  # (item, doc_id, title, text)
    for item in chunk:
      counters["input_records"] += 1
      try:
        doc_id, title, text = corpus_io.parse_document(item[1])
      except corpus_io.RecordError as e:
        errors.append(build_loop.error_for(item, e))
        continue
      parsed.append((item, doc_id, title, text))

    annotations = self.annotator.annotate(
        [p[3] for p in parsed], [p[0][3] for p in parsed], [p[1] for p in parsed])
    out = []
    for (item, _, title, text), annotation in zip(parsed, annotations):
      try:
        if isinstance(annotation, corpus_io.RecordError):
          raise annotation
        sentences, spans = spans_lib.finalize(text, annotation, counters)
      except corpus_io.RecordError as e:
        errors.append(build_loop.error_for(item, e))
        continue
      if not spans:
        counters["passages_dropped_without_spans"] += 1
        continue
      counters["passages_written"] += 1
      counters["sentences"] += len(sentences)
      counters["spans"] += len(spans)
      out.append(pretrain_example(title, text, sentences, spans))
    return build_loop.ChunkResult(out, counters, errors)
