"""`python -m realm_tf.data_service`: a dispatcher and two workers as real processes."""
import re
import subprocess
import sys

import tensorflow as tf

from tests.conftest import REPO_ROOT


def _start(*args):
  process = subprocess.Popen([sys.executable, "-m", "realm_tf.data_service", *args],
                             cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True)
  line = process.stdout.readline()
  match = re.search(r"serving at (\S+)", line)
  assert match, f"no address printed: {line!r}"
  return process, match.group(1)


def test_dispatcher_and_workers_serve_a_dataset():
  processes = []
  try:
    dispatcher, target = _start("--mode=dispatcher", "--port=0")
    processes.append(dispatcher)
    assert target.startswith("grpc://localhost:")
    address = target.split("://")[1]
    for _ in range(2):
      worker, worker_address = _start("--mode=worker", "--port=0",
                                      f"--dispatcher_address={address}")
      processes.append(worker)
      assert worker_address.startswith("localhost:")
    dataset = tf.data.Dataset.range(20).map(lambda x: x * x)
    distributed = dataset.apply(tf.data.experimental.service.distribute(
        processing_mode="distributed_epoch", service=target, job_name="squares"))
    assert sorted(int(x) for x in distributed) == [x * x for x in range(20)]
  finally:
    for process in processes:
      process.terminate()
    for process in processes:
      try:
        process.wait(timeout=30)
      except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
