"""Fault injection: SIGKILL a corpus build during its commit, and a trainer alone.

* A corpus rebuild is killed at each step of its commit (test hook
  $REALM_TF_CORPUS_PAUSE_AT): readers then see the old corpus or the new one, whole, and
  the next build cleans up after it.
* A child tied to its parent (`realm_tf.processes`) dies with it; the refresh job refuses
  to run twice on one model_dir.
* The trainer is killed alone while its inline refresh job runs: the job must not
  outlive it, the corpora stay whole, and the restarted trainer finishes.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from realm_tf.retrieval import refresher as refresher_lib
from realm_tf.corpus import build_retrieval_corpus
from realm_tf.corpus import io as corpus_io
from realm_tf.corpus import manifest as manifest_lib
from realm_tf.retrieval import corpus_reader
from tests.conftest import REPO_ROOT

OLD = [f"Paris is old city {i}." for i in range(9)]
NEW = [f"Rome is new city {i}." for i in range(5)]


def write_docs(path, texts):
  with open(path, "w", encoding="utf-8") as f:
    for text in texts:
      f.write(json.dumps({"title": "T", "text": text}) + "\n")
  return str(path)


def bodies(paths):
  dataset = tf.data.TFRecordDataset(list(paths), compression_type="GZIP")
  return [tf.train.Example.FromString(r.numpy()).features.feature["body"].bytes_list.value[0]
          .decode() for r in dataset]


def alive(pid: int) -> bool:
  """Whether `pid` runs (a zombie waiting to be reaped does not)."""
  try:
    with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except FileNotFoundError:
    return False


def wait_for(predicate, timeout, what):
  deadline = time.time() + timeout
  while not predicate():
    assert time.time() < deadline, f"timed out waiting for {what}"
    time.sleep(0.1)


def _check_corpus_whole(prefix, expected_texts):
  files = manifest_lib.resolve(prefix)
  manifest = files.manifest
  assert all(os.path.exists(p) for p in files.shard_paths)
  assert [e["count"] for e in manifest["shards"]] == [
      sum(1 for _ in tf.data.TFRecordDataset(p, "GZIP")) for p in files.shard_paths]
  assert bodies(manifest_lib.resolve(prefix + "-*").shard_paths) == expected_texts
  corpus_reader.open_corpus(prefix).verify_sizes()


@pytest.mark.parametrize("point,num_shards,visible", [
    ("shards_written", 2, OLD), ("build_renamed", 3, OLD), ("manifest_replaced", 2, NEW)])
def test_corpus_build_killed_during_commit(tmp_path, tiny_vocab_path, point, num_shards,
                                           visible):
  prefix = str(tmp_path / "out" / "blocks")
  build_retrieval_corpus.build(write_docs(tmp_path / "old.jsonl", OLD), prefix,
                               tiny_vocab_path, num_shards=3)
  env = dict(os.environ, **{corpus_io.PAUSE_AT_ENV: point,
                            corpus_io.PAUSE_DIR_ENV: str(tmp_path)})
  proc = subprocess.Popen(
      [sys.executable, "-m", "realm_tf.corpus.build_retrieval_corpus",
       f"--input={write_docs(tmp_path / 'new.jsonl', NEW)}", f"--output_prefix={prefix}",
       f"--vocab_path={tiny_vocab_path}", f"--num_shards={num_shards}", "--num_workers=1"],
      cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  marker = tmp_path / point
  wait_for(lambda: marker.exists() or proc.poll() is not None, 180, point)
  assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  proc.stderr.close()
  _check_corpus_whole(prefix, visible)  # The old corpus or the new one, never a mix.
  # The next build cleans up after the killed one and replaces the corpus as a whole.
  build_retrieval_corpus.build(write_docs(tmp_path / "last.jsonl", NEW[:2]), prefix,
                               tiny_vocab_path, num_shards=1)
  _check_corpus_whole(prefix, NEW[:2])
  leftovers = [n for n in os.listdir(prefix + ".builds")
               if n.startswith(manifest_lib.TEMP_BUILD_PREFIX)]
  assert leftovers == []


_PARENT = r"""
import subprocess, sys, time
sys.path.insert(0, sys.argv[1])
from realm_tf import processes
sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
watcher = [sys.executable, "-c", "import os, sys, time; sys.path.insert(0, sys.argv[1]); "
           "from realm_tf import processes; processes.watch_parent(int(sys.argv[2])); "
           "time.sleep(600)", sys.argv[1], str(__import__("os").getpid())]
tied = processes.popen_tied_to_parent(sleeper)
watching = subprocess.Popen(watcher)  # No parent-death signal: its own watchdog.
print(tied.pid, watching.pid, flush=True)
time.sleep(600)
"""


def test_children_die_with_their_parent(tmp_path):
  parent = subprocess.Popen([sys.executable, "-c", _PARENT, REPO_ROOT],
                            stdout=subprocess.PIPE, text=True)
  children = [int(pid) for pid in parent.stdout.readline().split()]
  try:
    assert all(alive(pid) for pid in children)
    time.sleep(1.5)  # The watchdog thread is up.
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    wait_for(lambda: not any(alive(pid) for pid in children), 30, "the children to exit")
  finally:
    for pid in children:
      if alive(pid):
        os.kill(pid, signal.SIGKILL)


def test_a_second_refresh_job_on_one_model_dir_is_refused(tmp_path, tiny_vocab_path):
  prefix = str(tmp_path / "corpus" / "blocks")
  build_retrieval_corpus.build(write_docs(tmp_path / "docs.jsonl", OLD), prefix,
                               tiny_vocab_path, num_shards=2)
  model_dir = tmp_path / "model_dir"
  model_dir.mkdir()
  (model_dir / "config.json").write_text(json.dumps(
      {"candidate_seq_len": 10, "vocab_path": tiny_vocab_path}))
  options = refresher_lib.options_from_config(str(model_dir), searcher="brute_force")
  refresher = refresher_lib.Refresher(str(model_dir), prefix, options)
  with refresher.lock():
    proc = subprocess.run(
        [sys.executable, "-m", "realm_tf.refresh", f"--model_dir={model_dir}",
         f"--retrieval_corpus_path={prefix}", "--searcher=brute_force", "--once",
         "--lock_wait_secs=1"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 1, proc.stderr[-3000:]
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("LockedError: ") and f"pid {os.getpid()}" in last


def _refresh_pids(model_dir):
  """Pids of running refresh jobs of `model_dir`."""
  pids = []
  for name in os.listdir("/proc"):
    if not name.isdigit():
      continue
    try:
      with open(f"/proc/{name}/cmdline", "rb") as f:
        args = f.read().split(b"\0")
    except OSError:
      continue
    if b"realm_tf.refresh" in args and f"--model_dir={model_dir}".encode() in args:
      if alive(int(name)):
        pids.append(int(name))
  return pids


@pytest.mark.slow
def test_trainer_killed_alone_takes_its_refresh_job_with_it(tmp_path):
  model_dir = str(tmp_path / "model")
  command = [sys.executable, "-m", "realm_tf.pretrain", f"--model_dir={model_dir}",
             "--num_train_steps=4", "--save_checkpoints_steps=4", "--export_steps=4",
             "--num_eval_steps=1", "--log_every_steps=2", "--candidate_seq_len=64",
             "--ict_steps=0"]
  log = open(tmp_path / "trainer-1.log", "w", encoding="utf-8")
  trainer = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
  try:
    wait_for(lambda: _refresh_pids(model_dir) or trainer.poll() is not None, 480,
             "the inline refresh job to start")
    assert trainer.poll() is None, (tmp_path / "trainer-1.log").read_text()[-3000:]
    (job,) = _refresh_pids(model_dir)
    os.kill(trainer.pid, signal.SIGKILL)  # The trainer alone.
    trainer.wait()
    wait_for(lambda: not alive(job), 30, "the refresh job to die with its trainer")
  finally:
    if trainer.poll() is None:
      trainer.kill()
    log.close()
  # The sample corpora are whole.
  for prefix in ("data/pretrain/pretrain", "data/retrieval/blocks"):
    files = manifest_lib.resolve(os.path.join(model_dir, prefix))
    corpus_reader.verify_shards(files.shard_paths, files.entries)
  # The restarted trainer (one refresh job again) finishes, and its job exits with it.
  with open(tmp_path / "trainer-2.log", "w", encoding="utf-8") as log:
    result = subprocess.run(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                            timeout=900, check=False)
  assert result.returncode == 0, (tmp_path / "trainer-2.log").read_text()[-3000:]
  assert os.path.exists(os.path.join(model_dir, "TRAINING_DONE"))
  assert _refresh_pids(model_dir) == []
  assert os.listdir(os.path.join(model_dir, "export", "encoded"))
