"""The one base class of the errors realm-tf raises for bad input.

Every error caused by what a user gave a program (a file, a record of a file, a flag
value, a request) derives from `RealmInputError`, itself a `ValueError`, so callers can
tell input errors from bugs with one `except`: the command-line programs print such an
error as one line and exit with status 1 instead of a traceback (`realm_tf.cli.run`).
Each message names the file, and where there is one the line or record, that is at
fault. A missing input file stays a `FileNotFoundError` (the CLIs treat it the same).

`InputFileError` is the error of one bad record of a file; the corpus builders and
ORQA's jsonl readers raise it.
"""

from typing import Optional


class RealmInputError(ValueError):
  """Input that realm-tf refuses: a file, record, flag value or request.

  The message names the file (and the line or record) or the value at fault.
  """


class ArgumentError(RealmInputError):
  """A flag or argument value that is out of range or inconsistent with another."""


class WeightsMismatchError(RealmInputError):
  """Pre-trained weights do not fit the model's configuration, or cannot be read."""


class UnsupportedFormatError(WeightsMismatchError):
  """Weights in a format realm-tf does not read (e.g. a pickled `pytorch_model.bin`)."""


class InputFileError(RealmInputError):
  """A bad record, or bad content, of an input file.

  Args:
    path: the file.
    line_number: the 1-based line of a text file, if the error has one.
    reason: what is wrong.
    record: the 0-based record index of a record file (TFRecord), if the error has one.

  The message is `path:line: reason`, `path: record N: reason` or `path: reason`.
  """

  def __init__(self, path: str, line_number: Optional[int] = None, reason: str = "", *,
               record: Optional[int] = None):
    if line_number is not None:
      location = f"{path}:{line_number}"
    elif record is not None:
      location = f"{path}: record {record}"
    else:
      location = str(path)
    super().__init__(f"{location}: {reason}")
    self.path = path
    self.line_number = line_number
    self.record = record
    self.reason = reason

  def __reduce__(self):  # Picklable with the keyword argument (worker processes).
    return (_rebuild_input_file_error,
            (type(self), self.path, self.line_number, self.reason, self.record))


def _rebuild_input_file_error(cls, path, line_number, reason, record):
  return cls(path, line_number, reason, record=record)


def one_line(error: BaseException) -> str:
  """`TypeName: message` on one line (newlines of e.g. TensorFlow messages folded)."""
  message = " ".join(part.strip() for part in str(error).splitlines() if part.strip())
  return f"{type(error).__name__}: {message}"
