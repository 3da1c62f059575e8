r"""Writes ORQA block examples (spec 1.4 `examples.tfr`) for ICT from jsonl passages.

  python -m orqa.build_ict_examples --input=passages.jsonl[.gz] \
      --output=ict_examples.tfr.gz --vocab_path=vocab.txt [--do_lower_case]

The retrieval corpus records carry no sentence boundaries, but the Inverse Cloze Task
picks a sentence as its pseudo-query, so ICT reads its own block examples: one
`tf.train.Example` per passage (line i = example i) with the int64 features

  title_ids        the title's wordpieces;
  token_ids        the passage's wordpieces, sentence after sentence;
  sentence_starts  the offset in token_ids of each sentence's first wordpiece.

Sentences come from `realm_tf.corpus.sentences.split_sentences` (rule-based; the original
used NLTK punkt). Each sentence is tokenized on its own; since BERT tokenization splits
at whitespace, the concatenation equals the tokenization of the whole passage.
Sentences without any wordpiece are dropped. The output is GZIP-compressed (what
`orqa.ict_dataset.ict_dataset` reads by default) and written atomically (temp + rename).
"""

import os
import time
from typing import Dict, Iterable, Iterator, List, Sequence, Tuple

import orqa  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow loads)
from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from orqa import jsonl_io
from realm_tf.corpus import sentences as sentences_lib
from realm_tf.tokenization import Tokenizer

_TOKENIZE_BATCH = 2048


def passages(path: str) -> Iterator[Tuple[str, str]]:
  """(title, text) of each line of a passages jsonl(.gz) (`text` or `body` field).

  Raises:
    jsonl_io.JsonlFormatError: a line lacks a string text or has a non-string title.
  """
  for line_number, record in jsonl_io.read_jsonl(path):
    text = record.get("text", record.get("body"))
    title = record.get("title", "")
    if not isinstance(text, str):
      raise jsonl_io.JsonlFormatError(path, line_number,
                                      "missing string field 'text' (or 'body')")
    if not isinstance(title, str):
      raise jsonl_io.JsonlFormatError(path, line_number, "field 'title' must be a string")
    yield title, text


def _tokenize(tokenizer: Tokenizer, texts: Sequence[str]) -> List[List[int]]:
  if not texts:
    return []
  ids = tokenizer.tokenize_ids(tf.constant(list(texts), tf.string))
  return ids.to_list()


def block_examples(items: Iterable[Tuple[str, str]], tokenizer: Tokenizer,
                   batch_size: int = _TOKENIZE_BATCH) -> Iterator[Dict[str, List[int]]]:
  """ICT block features of (title, text) pairs, in input order.

  Yields:
    dicts with `title_ids`, `token_ids` and `sentence_starts` (lists of ints).
  """
  pending = []

  def flush():
    texts, owners = [], []
    for index, (title, sentences) in enumerate(pending):
      texts.append(title)
      owners.append((index, -1))
      for sentence in sentences:
        texts.append(sentence)
        owners.append((index, 0))
    ids = _tokenize(tokenizer, texts)
    results = [dict(title_ids=[], token_ids=[], sentence_starts=[]) for _ in pending]
    for (index, kind), token_ids in zip(owners, ids):
      result = results[index]
      if kind == -1:
        result["title_ids"] = token_ids
      elif token_ids:
        result["sentence_starts"].append(len(result["token_ids"]))
        result["token_ids"].extend(token_ids)
    pending.clear()
    return results

  count = 0
  for title, text in items:
    sentences = [text[start:end] for start, end in sentences_lib.split_sentences(text)]
    pending.append((title, sentences))
    count += 1 + len(sentences)
    if count >= batch_size:
      yield from flush()
      count = 0
  if pending:
    yield from flush()


def serialize(features: Dict[str, List[int]]) -> bytes:
  feature = {name: tf.train.Feature(int64_list=tf.train.Int64List(value=values))
             for name, values in features.items()}
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def build(input_path: str, output_path: str, vocab_path: str,
          do_lower_case: bool = True) -> Dict[str, int]:
  """Converts `input_path` into GZIP block examples at `output_path`; returns counts."""
  tokenizer = Tokenizer(vocab_path, do_lower_case=do_lower_case)
  directory = os.path.dirname(os.path.abspath(output_path))
  tf.io.gfile.makedirs(directory)
  tmp = os.path.join(directory, f".{os.path.basename(output_path)}.tmp-{os.getpid()}")
  counts = dict(blocks=0, sentences=0, tokens=0, empty=0)
  start = time.monotonic()
  try:
    with tf.io.TFRecordWriter(tmp, "GZIP") as writer:
      for features in block_examples(passages(input_path), tokenizer):
        writer.write(serialize(features))
        counts["blocks"] += 1
        counts["sentences"] += len(features["sentence_starts"])
        counts["tokens"] += len(features["token_ids"])
        counts["empty"] += not features["token_ids"]
        if counts["blocks"] % 10000 == 0:
          logging.info("%d blocks, %.0f blocks/s", counts["blocks"],
                       counts["blocks"] / (time.monotonic() - start))
    tf.io.gfile.rename(tmp, output_path, overwrite=True)
  finally:
    if tf.io.gfile.exists(tmp):
      tf.io.gfile.remove(tmp)
  return counts


FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string("input", None, "Passages jsonl(.gz): {title, text} per line.")
  flags.DEFINE_string("output", None, "Output TFRecord file (GZIP).")
  flags.DEFINE_string("vocab_path", None, "BERT vocab.txt.")
  flags.DEFINE_boolean("do_lower_case", True, "Uncased tokenization.")
  flags.mark_flags_as_required(["input", "output", "vocab_path"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  counts = build(FLAGS.input, FLAGS.output, FLAGS.vocab_path, FLAGS.do_lower_case)
  logging.info("Wrote %d blocks (%d sentences, %d wordpieces; %d empty) to %s",
               counts["blocks"], counts["sentences"], counts["tokens"], counts["empty"],
               FLAGS.output)


if __name__ == "__main__":
  define_flags()
  app.run(main)
