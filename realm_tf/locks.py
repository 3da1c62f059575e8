"""Exclusive locks on a directory's job (`fcntl.flock`), released when the holder dies.

A job that must not run twice on the same directory (the refresh job on a model_dir, a
corpus build on an output prefix) holds `exclusive_lock(path)` for its lifetime. The
kernel releases a `flock` when the process exits in any way, SIGKILL included, so a lock
never outlives its holder and needs no cleanup. The holder's pid is written into the
lock file for the message a second job gets.
"""

import contextlib
import fcntl
import os
import time
from typing import Iterator, Optional

from absl import logging

from realm_tf import errors


class LockedError(errors.RealmInputError):
  """Another process holds the lock (it names the lock file and the holder's pid)."""


def _holder(path: str) -> str:
  try:
    with open(path, encoding="utf-8") as f:
      return f.read().strip() or "unknown"
  except OSError:
    return "unknown"


@contextlib.contextmanager
def exclusive_lock(path: str, what: str, wait_secs: Optional[float] = 0.0,
                   poll_secs: float = 1.0) -> Iterator[None]:
  """Holds an exclusive lock on `path` (created if needed) while the block runs.

  Args:
    path: the lock file.
    what: the job, for messages ("the refresh job of runs/demo").
    wait_secs: how long to wait for another holder to finish: 0 fails at once, None
      waits forever.
    poll_secs: the retry period while waiting.

  Raises:
    LockedError: another process still holds the lock after `wait_secs`.
  """
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    deadline = None if wait_secs is None else time.monotonic() + wait_secs
    logged = False
    while True:
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        break
      except BlockingIOError:
        holder = _holder(path)
        if deadline is not None and time.monotonic() >= deadline:
          raise LockedError(f"{what} is already running (pid {holder}, lock {path}); "
                            "wait for it to finish or stop it first.") from None
        if not logged:
          logging.warning("%s is already running (pid %s, lock %s); waiting.", what,
                          holder, path)
          logged = True
        time.sleep(poll_secs)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    yield
  finally:
    os.close(fd)  # Releases the lock.
