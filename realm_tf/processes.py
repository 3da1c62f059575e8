"""Child processes that die with their parent (the trainer's inline refresh job).

A child started with `popen_tied_to_parent` gets the Linux parent-death signal
(`prctl(PR_SET_PDEATHSIG, SIGKILL)`, set between fork and exec), so a SIGKILL of the
parent kills it too. The signal fires when the *thread* that started the child exits:
start children from the main thread. On the child's side, `watch_parent(pid)` arms the
signal again and polls the parent pid from a thread, which also works where prctl does
not exist (not Linux); the refresh job runs it when given `--parent_pid`.
"""

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
import time
from typing import List, Optional

from absl import logging

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


_PRCTL = []  # [prctl] once looked up (never between fork and exec).


def _prctl():
  """libc's prctl, or None off Linux; looked up in the parent, before any fork."""
  if not _PRCTL:
    function = None
    if sys.platform.startswith("linux"):
      name = ctypes.util.find_library("c")
      if name:
        function = ctypes.CDLL(name, use_errno=True).prctl
    _PRCTL.append(function)
  return _PRCTL[0]


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
  """Asks the kernel to send `sig` to this process when its parent dies (Linux)."""
  prctl = _prctl()
  return prctl is not None and prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def _preexec(parent_pid: int, prctl):
  # Runs in the child between fork and exec: only the system calls, nothing that could
  # take a lock another thread of the parent held at the fork.
  def preexec():
    prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:  # The parent died before the signal was armed.
      os._exit(1)  # pylint: disable=protected-access
  return preexec


def popen_tied_to_parent(command: List[str], **kwargs) -> subprocess.Popen:
  """`subprocess.Popen(command)` whose process is killed when this process dies.

  On Linux the parent-death signal is armed between fork and exec; elsewhere the child
  must call `die_with_parent` itself (the refresh job does, with `--parent_pid`).
  """
  prctl = _prctl()
  if prctl is None:
    return subprocess.Popen(command, **kwargs)
  return subprocess.Popen(command, preexec_fn=_preexec(os.getpid(), prctl), **kwargs)  # pylint: disable=subprocess-popen-preexec-fn


def watch_parent(parent_pid: Optional[int], poll_secs: float = 1.0) -> None:
  """Ties this process to `parent_pid`: it exits once that is no longer its parent.

  Arms the parent-death signal (Linux) and starts a daemon thread that polls the parent
  pid (any platform); exits at once if the parent is already gone. Does nothing for None
  or 0.
  """
  if not parent_pid:
    return
  set_parent_death_signal(signal.SIGKILL)

  def watch():
    while True:
      if os.getppid() != parent_pid:
        logging.warning("The parent process %d is gone; exiting.", parent_pid)
        os._exit(1)  # pylint: disable=protected-access
      time.sleep(poll_secs)

  if os.getppid() != parent_pid:
    logging.warning("The parent process %d is gone; exiting.", parent_pid)
    os._exit(1)  # pylint: disable=protected-access
  threading.Thread(target=watch, name="watch-parent", daemon=True).start()
