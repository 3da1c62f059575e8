"""ICT block examples (language/orqa/preprocessing/wiki_preprocessor.py `examples.tfr`).

The retrieval corpus records carry no sentence boundaries, but the Inverse Cloze Task
picks a sentence as its pseudo-query, so ICT reads its own block examples: one
`tf.train.Example` per passage (item i = example i) with the int64 features

  title_ids        the title's wordpieces;
  token_ids        the passage's wordpieces, sentence after sentence;
  sentence_starts  the offset in token_ids of each sentence's first wordpiece.

Sentences come from `realm_tf.corpus.sentences.split_sentences` (rule-based; the original
used NLTK punkt). Each sentence is tokenized on its own; since BERT tokenization splits
at whitespace, the concatenation equals the tokenization of the whole passage.
Sentences without any wordpiece are dropped. The output is GZIP-compressed (what
`realm_tf.ict.dataset.ict_dataset` reads by default) and written atomically.
"""

import os
import time
from typing import Dict, Iterable, Iterator, List, Sequence, Tuple

from absl import logging
import tensorflow as tf

from realm_tf.corpus import sentences as sentences_lib
from realm_tf.tokenization import Tokenizer

_TOKENIZE_BATCH = 2048


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


def build(items: Iterable[Tuple[str, str]], output_path: str, tokenizer: Tokenizer
          ) -> Dict[str, int]:
  """Writes the block examples of (title, text) pairs to `output_path` (GZIP TFRecords,
  atomically); returns counts (blocks, sentences, tokens, empty)."""
  directory = os.path.dirname(os.path.abspath(output_path))
  tf.io.gfile.makedirs(directory)
  tmp = os.path.join(directory, f".{os.path.basename(output_path)}.tmp-{os.getpid()}")
  counts = dict(blocks=0, sentences=0, tokens=0, empty=0)
  start = time.monotonic()
  try:
    with tf.io.TFRecordWriter(tmp, "GZIP") as writer:
      for features in block_examples(items, tokenizer):
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


def pretrain_passages(paths: Sequence[str]) -> Iterator[Tuple[str, str]]:
  """(title, text) of every passage of REALM pre-training corpus shards (GZIP TFRecords
  with `title` and `text`), in order: ICT's blocks when it warms up REALM's retriever."""
  features = {"title": tf.io.FixedLenFeature([], tf.string),
              "text": tf.io.FixedLenFeature([], tf.string)}
  records = tf.data.TFRecordDataset(list(paths), "GZIP").batch(1024)
  for batch in records:
    parsed = tf.io.parse_example(batch, features)
    for title, text in zip(parsed["title"].numpy(), parsed["text"].numpy()):
      yield title.decode("utf-8"), text.decode("utf-8")
