"""Child processes that die with their parent (the trainer's inline refresh job).

A child started with `popen_tied_to_parent` gets the Linux parent-death signal
(`prctl(PR_SET_PDEATHSIG, SIGKILL)`, set between fork and exec), so a SIGKILL of the
parent kills it too. The signal fires when the *thread* that started the child exits:
start children from the main thread. Where prctl is unavailable (not Linux), the child
side's `watch_parent(pid)` thread exits the child once its parent is gone; the refresh
job runs it when given `--parent_pid`.
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


def _libc():
  name = ctypes.util.find_library("c")
  return ctypes.CDLL(name, use_errno=True) if name else None


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
  """Asks the kernel to send `sig` to this process when its parent dies (Linux)."""
  if not sys.platform.startswith("linux"):
    return False
  libc = _libc()
  if libc is None:
    return False
  return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def _preexec(parent_pid: int):
  def preexec():
    set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent_pid:  # The parent died before the signal was armed.
      os._exit(1)  # pylint: disable=protected-access
  return preexec


def popen_tied_to_parent(command: List[str], **kwargs) -> subprocess.Popen:
  """`subprocess.Popen(command)` whose process is killed when this process dies."""
  return subprocess.Popen(command, preexec_fn=_preexec(os.getpid()), **kwargs)  # pylint: disable=subprocess-popen-preexec-fn


def watch_parent(parent_pid: Optional[int], poll_secs: float = 1.0) -> None:
  """Starts a daemon thread that exits this process once `parent_pid` is not its parent.

  A portable complement of the parent-death signal. Does nothing for None or 0.
  """
  if not parent_pid:
    return

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
