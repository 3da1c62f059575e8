"""Open-domain QA data: NQ-open style jsonl, the ORQA dev resplit, and tf.data input.

Files hold one `{"question": str, "answer": [str, ...]}` per line; for CuratedTREC the
answers are regular expressions. The original (`language/orqa/datasets/orqa_dataset.py`)
read them with a `py_func` JSON parser inside `tf.data` and fed one question per step;
here the file is validated eagerly (errors name the file and line) and batched.
"""

import collections
from typing import List, Optional, Sequence, Tuple

import tensorflow as tf

from orqa.data import jsonl_io
from realm_tf import errors

QAExample = collections.namedtuple("QAExample", ["question", "answers"])
QAExample.__doc__ = "A question (str) and its reference answers (list of str)."

# create_data_splits.py: dev = train questions whose hash bucket is 0 mod 10.
RESPLIT_NUM_BUCKETS = 100000
RESPLIT_DEV_MODULUS = 10


class QADataError(errors.InputFileError):
  """A malformed QA example. Names the file and the 1-based line number."""


def load_examples(path: str, answer_field: str = "answer") -> List[QAExample]:
  """Reads a QA jsonl(.gz) file.

  Args:
    path: the file.
    answer_field: the field holding the list of answers.

  Raises:
    FileNotFoundError: `path` does not exist.
    errors.InputFileError: a line is not a JSON object (QADataError when the object
      lacks a string `question` or a list of strings `answer_field`).
  """
  examples = []
  for line_number, record in jsonl_io.read_jsonl(path):
    question = record.get("question")
    if not isinstance(question, str):
      raise QADataError(path, line_number, "field 'question' must be a string, got "
                        f"{question!r}")
    answers = record.get(answer_field)
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
      raise QADataError(path, line_number, f"field {answer_field!r} must be a list of "
                        f"strings, got {answers!r}")
    examples.append(QAExample(question, answers))
  return examples


def is_resplit_dev(questions) -> tf.Tensor:
  """Whether each question goes to the resplit dev set (`create_data_splits.py`).

  Args:
    questions: string tensor (any shape) or list of str.

  Returns:
    bool tensor of the same shape:
    `tf.strings.to_hash_bucket_fast(question, 100000) % 10 == 0`.
  """
  buckets = tf.strings.to_hash_bucket_fast(questions, RESPLIT_NUM_BUCKETS)
  return tf.equal(buckets % RESPLIT_DEV_MODULUS, 0)


def resplit(examples: Sequence[QAExample]) -> Tuple[List[QAExample], List[QAExample]]:
  """Splits original-train examples into (train, dev) as ORQA's `create_data_splits`.

  Order within each part is the input order.
  """
  if not examples:
    return [], []
  dev_mask = is_resplit_dev([e.question for e in examples]).numpy()
  train = [e for e, d in zip(examples, dev_mask) if not d]
  dev = [e for e, d in zip(examples, dev_mask) if d]
  return train, dev


def examples_to_tensors(examples: Sequence[QAExample]):
  """(questions string [n], answers string RaggedTensor [n, (num_answers)])."""
  questions = tf.constant([e.question for e in examples], tf.string, shape=[len(examples)])
  flat = [a for e in examples for a in e.answers]
  answers = tf.RaggedTensor.from_row_lengths(
      tf.constant(flat, tf.string, shape=[len(flat)]),
      tf.constant([len(e.answers) for e in examples], tf.int64, shape=[len(examples)]))
  return questions, answers


def make_dataset(examples: Sequence[QAExample],
                 batch_size: Optional[int] = None,
                 shuffle: bool = False,
                 repeat: bool = False,
                 seed: Optional[int] = None,
                 pad_answers: bool = False,
                 drop_remainder: bool = False) -> tf.data.Dataset:
  """A tf.data pipeline of {"question", "answers"}.

  Args:
    examples: the QA examples (e.g. from `load_examples`).
    batch_size: questions per element; None gives unbatched elements (question string
      [], answers string [num_answers]), as the original's batch size 1.
    shuffle: shuffle with a buffer as large as the data (the original's train setting),
      reshuffled every epoch.
    repeat: repeat forever (training).
    seed: shuffle seed.
    pad_answers: batch answers as a dense string tensor [batch_size, max_answers] padded
      with "" (empty answers are ignored by `orqa.ops.orqa_ops`), plus `num_answers` int32
      [batch_size]; otherwise answers are a RaggedTensor [batch_size, (num_answers)].
    drop_remainder: drop a last partial batch (fixed shapes, e.g. for TPUs).

  Returns:
    The dataset: question string [batch_size], answers as described.
  """
  if not examples:
    raise ValueError("make_dataset needs at least one example.")
  questions, answers = examples_to_tensors(examples)
  dataset = tf.data.Dataset.from_tensor_slices({"question": questions, "answers": answers})
  if shuffle:
    dataset = dataset.shuffle(len(examples), seed=seed, reshuffle_each_iteration=True)
  if repeat:
    dataset = dataset.repeat()
  if batch_size is None:
    return dataset.prefetch(tf.data.AUTOTUNE)
  if pad_answers:
    dataset = dataset.map(lambda x: dict(x, num_answers=tf.size(x["answers"])))
    dataset = dataset.padded_batch(
        batch_size, padded_shapes={"question": [], "answers": [None], "num_answers": []},
        padding_values={"question": "", "answers": "", "num_answers": 0},
        drop_remainder=drop_remainder)
  else:
    dataset = dataset.ragged_batch(batch_size, drop_remainder=drop_remainder)
  return dataset.prefetch(tf.data.AUTOTUNE)


def load_dataset(path: str, batch_size: Optional[int] = None, training: bool = False,
                 seed: Optional[int] = None, pad_answers: bool = False,
                 answer_field: str = "answer") -> tf.data.Dataset:
  """`make_dataset` over a jsonl file; `training` shuffles (buffer = file size) and repeats."""
  return make_dataset(load_examples(path, answer_field), batch_size=batch_size,
                      shuffle=training, repeat=training, seed=seed,
                      pad_answers=pad_answers)
