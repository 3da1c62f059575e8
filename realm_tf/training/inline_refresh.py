"""Runs the refresh job (`python -m realm_tf.refresh`) beside the trainer (`--refresh=inline`).

One command then runs REALM's whole asynchronous loop on one machine: the trainer exports,
the refresh process re-embeds the corpus and commits indexes, and the example stream
picks them up. The process is restarted if it dies before training ends; it exits by
itself once the trainer writes TRAINING_DONE. It dies with the trainer: a SIGKILL of the
trainer kills it too (parent-death signal, plus a watchdog on the parent pid), so a
restarted trainer never finds the old job still running; and the job holds the refresh
lock of the model_dir, so two never run at once.
"""

import os
import subprocess
import sys
from typing import List, Optional

from absl import logging

from realm_tf import processes

MAX_RESTARTS = 3


class InlineRefresh:
  """Starts and supervises the refresh job.

  Args:
    model_dir: the trainer's model directory.
    retrieval_corpus_path: glob of the retrieval shards.
    searcher: "brute_force" or "scann".
    poll_interval_secs: the job's idle sleep.
    extra_flags: more `--flag=value` arguments.
  """

  def __init__(self, model_dir: str, retrieval_corpus_path: str, searcher: str,
               poll_interval_secs: float = 2.0, extra_flags: Optional[List[str]] = None):
    self.command = [sys.executable, "-m", "realm_tf.refresh", f"--model_dir={model_dir}",
                    f"--retrieval_corpus_path={retrieval_corpus_path}",
                    f"--searcher={searcher}", f"--poll_interval_secs={poll_interval_secs}",
                    f"--parent_pid={os.getpid()}", *(extra_flags or [])]
    self.log_path = os.path.join(model_dir, "logs", "refresh.log")
    self.process: Optional[subprocess.Popen] = None
    self.restarts = 0

  def start(self) -> None:
    os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
    log = open(self.log_path, "a", encoding="utf-8")  # pylint: disable=consider-using-with
    self.process = processes.popen_tied_to_parent(self.command, stdout=log,
                                                  stderr=subprocess.STDOUT)
    log.close()  # the child holds its own descriptor
    logging.info("Started the refresh job (pid %d), log: %s", self.process.pid, self.log_path)

  def check(self) -> None:
    """Restarts the job if it died (it never exits on its own before TRAINING_DONE)."""
    if self.process is None or self.process.poll() is None:
      return
    code = self.process.returncode
    if self.restarts >= MAX_RESTARTS:
      raise RuntimeError(f"The refresh job exited with code {code} {self.restarts + 1} "
                         f"times; see {self.log_path}")
    self.restarts += 1
    logging.warning("The refresh job exited with code %d; restarting (%d/%d). See %s",
                    code, self.restarts, MAX_RESTARTS, self.log_path)
    self.start()

  def finish(self, timeout_secs: float = 600) -> None:
    """Waits for the job to see TRAINING_DONE and exit; kills it after `timeout_secs`."""
    if self.process is None:
      return
    try:
      self.process.wait(timeout=timeout_secs)
    except subprocess.TimeoutExpired:
      logging.warning("The refresh job did not exit within %ds; terminating it.",
                      timeout_secs)
      self.process.terminate()
      self.process.wait(timeout=60)

  def terminate(self) -> None:
    """Stops the job (the trainer failed; a restarted trainer starts it again)."""
    if self.process is not None and self.process.poll() is None:
      self.process.terminate()
      self.process.wait(timeout=60)
