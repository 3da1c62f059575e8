"""Retrieval-corpus records from passages or from packed articles (docs/ARCHITECTURE.md).

`RetrievalProcessor` runs in the build workers: it parses a chunk of jsonl lines,
tokenizes all titles and texts of the chunk in one batched tensorflow_text call, and
serializes one `tf.train.Example` per block with the features `generate_retrieval_corpus`
wrote: `title`, `body`, and for each of them `*_token_texts`, `*_token_starts`,
`*_token_stops` (all -1: the original never computed boundaries) and `*_token_ids`.
"""

import collections
import html
from typing import List

from realm_tf.corpus import build_loop
from realm_tf.corpus import io as corpus_io
from realm_tf.corpus import packing
from realm_tf.corpus import records
from realm_tf.corpus import sentences as sentences_lib

MODES = ("passages", "articles")


def retrieval_example(title: str, body: str, title_ids: List[int], body_ids: List[int],
                      vocab_bytes: List[bytes]) -> bytes:
  """One serialized retrieval-corpus `tf.train.Example`."""
  features = {"title": ("bytes", [title.encode("utf-8")]),
              "body": ("bytes", [body.encode("utf-8")])}
  for name, ids in (("title", title_ids), ("body", body_ids)):
    features[f"{name}_token_texts"] = ("bytes", [vocab_bytes[i] for i in ids])
    features[f"{name}_token_starts"] = ("int64", [-1] * len(ids))
    features[f"{name}_token_stops"] = ("int64", [-1] * len(ids))
    features[f"{name}_token_ids"] = ("int64", ids)
  return records.encode_example(features)


class RetrievalProcessor:
  """Turns chunks of jsonl lines into serialized retrieval blocks (picklable).

  Args:
    vocab_path: BERT vocab file.
    do_lower_case: uncased tokenization.
    mode: "passages" (one block per line, as `generate_retrieval_corpus`) or "articles"
      (ORQA: title filters, HTML unescaping, sentence splitting, greedy packing).
    max_block_length: wordpiece budget of `[CLS] title [SEP] block [SEP]` (articles).
  """

  def __init__(self, vocab_path: str, do_lower_case: bool, mode: str = "passages",
               max_block_length: int = 288):
    if mode not in MODES:
      raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    self.vocab_path = vocab_path
    self.do_lower_case = do_lower_case
    self.mode = mode
    self.max_block_length = max_block_length
    self._tokenizer = None
    self._vocab_bytes = None

  def __getstate__(self):
    state = dict(self.__dict__)
    state["_tokenizer"] = None  # Rebuilt in each worker by setup().
    state["_vocab_bytes"] = None
    return state

  def setup(self) -> None:
    if self._tokenizer is None:
      from realm_tf import tokenization  # pylint: disable=g-import-not-at-top
      self._tokenizer = tokenization.Tokenizer(self.vocab_path, self.do_lower_case)
      self._vocab_bytes = [t.encode("utf-8") for t in self._tokenizer.vocab]

  def _token_ids(self, texts: List[str]) -> List[List[int]]:
    """Batched wordpiece ids: one call for the whole list."""
    if not texts:
      return []
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    ragged = self._tokenizer.tokenize_ids(tf.constant(texts))  # [n, (tokens)]
    values = ragged.flat_values.numpy().tolist()
    splits = ragged.row_splits.numpy().tolist()
    return [values[a:b] for a, b in zip(splits, splits[1:])]

  def process(self, chunk: List[build_loop.Item]) -> build_loop.ChunkResult:
    """Parses, tokenizes and serializes a chunk (see `build_loop.run_build`)."""
    self.setup()
    counters = collections.Counter()
    errors = []
    docs = []  # (title, text)
    for item in chunk:
      counters["input_records"] += 1
      try:
        _, title, text = corpus_io.parse_document(item[1])
      except corpus_io.RecordError as e:
        errors.append(build_loop.error_for(item, e))
        continue
      if self.mode == "articles":
        if packing.is_filtered_title(title):
          counters["articles_dropped_by_title"] += 1
          continue
        text = html.unescape(text)
        if not text.strip():
          errors.append(build_loop.error_for(
              item, corpus_io.RecordError("empty 'text' after HTML unescaping")))
          continue
      docs.append((title, text))
    if self.mode == "passages":
      out = self._passages(docs, counters)
    else:
      out = self._articles(docs, counters)
    counters["blocks"] += len(out)
    return build_loop.ChunkResult(out, counters, errors)

  def _passages(self, docs, counters) -> List[bytes]:
    del counters  # Unused.
    ids = self._token_ids([t for t, _ in docs] + [b for _, b in docs])
    title_ids, body_ids = ids[:len(docs)], ids[len(docs):]
    return [retrieval_example(title, body, t_ids, b_ids, self._vocab_bytes)
            for (title, body), t_ids, b_ids in zip(docs, title_ids, body_ids)]

  def _articles(self, docs, counters) -> List[bytes]:
    sentence_texts = []
    for _, text in docs:
      sentence_texts.append([text[a:b] for a, b in sentences_lib.split_sentences(text)])
    flat = [s for sents in sentence_texts for s in sents]
    ids = self._token_ids([t for t, _ in docs] + flat)
    title_ids, sentence_ids = ids[:len(docs)], ids[len(docs):]
    out = []
    offset = 0
    for (title, _), sents, t_ids in zip(docs, sentence_texts, title_ids):
      s_ids = sentence_ids[offset:offset + len(sents)]
      offset += len(sents)
      counters["articles"] += 1
      counters["sentences"] += len(sents)
      budget = self.max_block_length - packing.NUM_SPECIAL_TOKENS - len(t_ids)
      for block in packing.greedy_pack(len(t_ids), [len(x) for x in s_ids],
                                       self.max_block_length):
        # The block's tokens are the concatenation of its sentences' tokens, as ORQA's.
        body_ids = [i for j in block for i in s_ids[j]]
        if len(body_ids) > budget:
          counters["overlong_blocks"] += 1
        body = " ".join(sents[j] for j in block)
        out.append(retrieval_example(title, body, t_ids, body_ids, self._vocab_bytes))
    return out
