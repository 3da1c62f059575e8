r"""Writes ORQA's resplit QA files (`language/orqa/preprocessing/create_data_splits.py`).

  python -m orqa.create_data_splits --train_path=NQ-open.train.jsonl \
      --test_path=NQ-open.dev.jsonl --name=NaturalQuestions --output_dir=resplit/

Writes `{name}.resplit.{train,dev,test}.jsonl`: dev holds the train questions whose
`tf.strings.to_hash_bucket_fast(question, 100000) % 10 == 0`, train the rest, and test
the given test file unchanged (each example as `{"question", "answer"}`).
"""

import os
from typing import Dict, Optional

from absl import app
from absl import flags

from orqa.data import jsonl_io
from orqa.data import qa_data
from realm_tf import cli

FLAGS = flags.FLAGS


def define_flags():
  """Defines the command-line flags (only when run as a program)."""
  flags.DEFINE_string("train_path", None, "The original train jsonl.")
  flags.DEFINE_string("test_path", None, "The original dev/test jsonl (copied as test).")
  flags.DEFINE_string("name", None, "Dataset name, e.g. NaturalQuestions, WebQuestions.")
  flags.DEFINE_string("output_dir", None, "Directory for the resplit files.")


def _records(examples):
  return [{"question": e.question, "answer": e.answers} for e in examples]


def create_data_splits(train_path: str, name: str, output_dir: str,
                       test_path: Optional[str] = None) -> Dict[str, int]:
  """Writes the resplit files atomically; returns {split: number of examples}."""
  train, dev = qa_data.resplit(qa_data.load_examples(train_path))
  splits = {"train": train, "dev": dev}
  if test_path:
    splits["test"] = qa_data.load_examples(test_path)
  for split, examples in splits.items():
    jsonl_io.write_jsonl(os.path.join(output_dir, f"{name}.resplit.{split}.jsonl"),
                         _records(examples))
  return {split: len(examples) for split, examples in splits.items()}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  counts = create_data_splits(FLAGS.train_path, FLAGS.name, FLAGS.output_dir,
                              FLAGS.test_path)
  for split, count in counts.items():
    print(f"{FLAGS.name}.resplit.{split}.jsonl: {count} examples")


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["train_path", "name", "output_dir"])
  cli.run(main)
