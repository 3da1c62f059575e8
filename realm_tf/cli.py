"""`run(main)`: `absl.app.run` for the command-line programs, with one-line input errors.

A `RealmInputError` (or a `FileNotFoundError`) that escapes `main` is printed to stderr
as one line, `TypeName: message`, and the program exits with status 1; the traceback
goes to the log at debug level only. Any other exception is a bug and keeps absl's
traceback.
"""

import sys
from typing import Callable, List

from absl import app
from absl import logging

from realm_tf import errors

EXIT_INPUT_ERROR = 1
INPUT_ERRORS = (errors.RealmInputError, FileNotFoundError)


def guard(main: Callable[[List[str]], object]) -> Callable[[List[str]], object]:
  """`main` with input errors turned into a one-line message and exit status 1."""

  def guarded(argv):
    try:
      return main(argv)
    except INPUT_ERRORS as e:
      logging.debug("Input error", exc_info=True)
      sys.stderr.write(errors.one_line(e) + "\n")
      sys.stderr.flush()
      sys.exit(EXIT_INPUT_ERROR)

  return guarded


def run(main: Callable[[List[str]], object], **kwargs) -> None:
  """`absl.app.run(main)` with `guard`: the entry point of every realm-tf program."""
  app.run(guard(main), **kwargs)
