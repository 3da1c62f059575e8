r"""Writes ORQA block examples for ICT from jsonl passages.

  python -m orqa.build_ict_examples --input=passages.jsonl[.gz] \
      --output=ict_examples.tfr.gz --vocab_path=vocab.txt [--do_lower_case]

The format and the sentence splitting are `realm_tf.ict.examples`'.
"""

import orqa  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow loads)
from absl import app
from absl import flags
from absl import logging

from orqa.data import jsonl_io
from realm_tf import cli
from realm_tf import errors
from realm_tf.ict import examples
from realm_tf.tokenization import Tokenizer


def passages(path: str):
  """(title, text) of each line of a passages jsonl(.gz) (`text` or `body` field).

  Raises:
    errors.InputFileError: a line lacks a string text or has a non-string title.
  """
  for line_number, record in jsonl_io.read_jsonl(path):
    text = record.get("text", record.get("body"))
    title = record.get("title", "")
    if not isinstance(text, str):
      raise errors.InputFileError(path, line_number,
                                      "missing string field 'text' (or 'body')")
    if not isinstance(title, str):
      raise errors.InputFileError(path, line_number, "field 'title' must be a string")
    yield title, text


def build(input_path: str, output_path: str, vocab_path: str,
          do_lower_case: bool = True):
  """Converts the passages jsonl `input_path` into block examples at `output_path`."""
  return examples.build(passages(input_path), output_path,
                        Tokenizer(vocab_path, do_lower_case=do_lower_case))


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
  cli.run(main)
