r"""Learns a BERT wordpiece vocabulary from jsonl text (tensorflow_text's vocab learner).

The embedded sample corpus ships with the vocabulary this produces
(`realm_tf/sample_data/vocab.txt`), so the demo and tests need no download:

  python -m realm_tf.vocabulary --input=realm_tf/sample_data/passages.jsonl \
      --extra_input=realm_tf/sample_data/qa_train.jsonl \
      --extra_input=realm_tf/sample_data/qa_heldout.jsonl --output=realm_tf/sample_data/vocab.txt
"""

import json
import os
import tempfile
from typing import Iterable, List

from absl import flags

import realm_tf  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow)
import tensorflow as tf
from tensorflow_text.tools.wordpiece_vocab import bert_vocab_from_dataset

from realm_tf import cli
from realm_tf.tokenization import SPECIAL_TOKENS

FLAGS = flags.FLAGS


def define_flags():
  """Defines the command-line flags (only when run as a program: tests import this
  module beside other entry points)."""
  flags.DEFINE_string("input", None, "jsonl with `title` and `text` (or `body`) fields.")
  flags.DEFINE_multi_string("extra_input", [], "jsonl files whose `question` fields are added.")
  flags.DEFINE_string("output", None, "vocab.txt to write (atomically).")
  flags.DEFINE_integer("vocab_size", 8000, "Upper bound on the vocabulary size.")
  flags.DEFINE_bool("do_lower_case", True, "Learn an uncased vocabulary.")


def learn_wordpiece_vocab(texts: Iterable[str], vocab_size: int = 8000,
                          do_lower_case: bool = True) -> List[str]:
  """Learns a wordpiece vocabulary; BERT's special tokens come first ([PAD] = 0)."""
  dataset = tf.data.Dataset.from_tensor_slices(list(texts)).batch(256)
  return bert_vocab_from_dataset.bert_vocab_from_dataset(
      dataset, vocab_size=vocab_size, reserved_tokens=list(SPECIAL_TOKENS),
      bert_tokenizer_params=dict(lower_case=do_lower_case),
      # Keep every piece seen at least once: sample corpora are small.
      learn_params=dict(lower_thresh=1, upper_thresh=10**7))


def corpus_texts(path: str, extra_paths=()) -> List[str]:
  """Titles and texts of a passages jsonl, plus the questions of QA jsonl files."""
  texts = []
  with open(path, encoding="utf-8") as f:
    for line in f:
      if line.strip():
        record = json.loads(line)
        texts.append(f"{record['title']} . {record.get('text', record.get('body', ''))}")
  for extra in extra_paths:
    with open(extra, encoding="utf-8") as f:
      texts += [json.loads(line)["question"] for line in f if line.strip()]
  return texts


def write_vocab(vocab: List[str], path: str) -> None:
  """Writes one token per line, atomically."""
  directory = os.path.dirname(os.path.abspath(path))
  with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=directory, delete=False,
                                   suffix=".tmp") as f:
    f.write("\n".join(vocab) + "\n")
  os.replace(f.name, path)


def main(argv):
  del argv
  vocab = learn_wordpiece_vocab(corpus_texts(FLAGS.input, FLAGS.extra_input),
                                FLAGS.vocab_size, FLAGS.do_lower_case)
  write_vocab(vocab, FLAGS.output)
  print(f"Wrote {len(vocab)} wordpieces to {FLAGS.output}")


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["input", "output"])
  cli.run(main)
