"""Crash safety of the refresh job: SIGKILL at named points, then restart.

The job is run as `python -m realm_tf.refresh` in a subprocess with the test hook
$REALM_TF_REFRESH_PAUSE_AT: at that point it touches a marker file and blocks, and the test
kills it with SIGKILL. After every kill: no partial `encoded/<ts>` is visible and the
export is still somewhere (tf_hub/, temp/ or encoded/). Each restart recovers from the
previous crash; the last one runs to completion and commits the right embeddings.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.retrieval import refresher as refresher_lib
from realm_tf.featurization.featurizer import _ragged_rows  # pylint: disable=protected-access
from realm_tf.retrieval import corpus_embedding
from realm_tf.retrieval import encoded_export
from realm_tf.retrieval import export_dirs
from tests import retrieval_testing
from tests.conftest import TINY_VOCAB

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB_SIZE = len(TINY_VOCAB)
SEQ_LEN = 10


def _setup(tmp_path):
  blocks = retrieval_testing.random_blocks(40, VOCAB_SIZE, seed=21)
  retrieval_testing.write_shards(str(tmp_path / "corpus" / "blocks.tfr"), blocks, [20, 20])
  vocab = tmp_path / "vocab.txt"
  vocab.write_text("\n".join(TINY_VOCAB) + "\n")
  model_dir = tmp_path / "model_dir"
  model_dir.mkdir()
  (model_dir / "config.json").write_text(json.dumps(
      {"candidate_seq_len": SEQ_LEN, "vocab_path": str(vocab)}))
  featurizer = corpus_embedding.featurizer_for_documents(str(vocab), SEQ_LEN)
  inputs = featurizer.featurize_documents_tf(_ragged_rows([b[0] for b in blocks]),
                                             _ragged_rows([b[1] for b in blocks]))
  return str(model_dir), inputs


def _start(model_dir, tmp_path, searcher, pause_at=None):
  env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
  env.pop(refresher_lib.PAUSE_AT_ENV, None)
  if pause_at:
    env[refresher_lib.PAUSE_AT_ENV] = pause_at
    env[refresher_lib.PAUSE_DIR_ENV] = str(tmp_path)
  cmd = [sys.executable, "-m", "realm_tf.refresh", f"--model_dir={model_dir}",
         f"--retrieval_corpus_path={tmp_path}/corpus/blocks.tfr-*", f"--searcher={searcher}",
         "--once", "--predict_batch_size=8", "--num_neighbors=5"]
  log = open(tmp_path / f"log-{pause_at or 'final'}.txt", "w")
  return subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def _kill_at(model_dir, tmp_path, searcher, point):
  proc = _start(model_dir, tmp_path, searcher, pause_at=point)
  marker = tmp_path / point
  deadline = time.time() + 120
  while not marker.exists():
    if proc.poll() is not None:
      raise AssertionError(f"refresh exited ({proc.returncode}) before reaching {point}:\n" +
                           (tmp_path / f"log-{point}.txt").read_text()[-3000:])
    assert time.time() < deadline, f"timed out waiting for {point}"
    time.sleep(0.05)
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  marker.unlink()


def _check_invariants(model_dir, timestamps):
  """Every visible encoded/<ts> is complete; every export still exists somewhere."""
  for encoded in export_dirs.export_paths(export_dirs.export_base(model_dir, "encoded")):
    manifest = encoded_export.read_manifest(encoded)
    assert os.path.exists(encoded_export.block_emb_prefix(encoded) + ".index")
    assert os.path.exists(os.path.join(encoded, manifest["searcher"]["dir"], "manifest.json"))
  for ts in timestamps:
    places = [os.path.join(export_dirs.export_base(model_dir, p), str(ts))
              for p in ("tf_hub", "temp", "encoded")]
    assert sum(os.path.isdir(p) for p in places) == 1, f"export {ts} lost or duplicated"


def _run_crash_chain(tmp_path, searcher, points):
  model_dir, inputs = _setup(tmp_path)
  retrieval_testing.write_tf_hub_export(model_dir, 500, step=8, vocab_size=VOCAB_SIZE, seed=3)
  for point in points:
    _kill_at(model_dir, tmp_path, searcher, point)
    _check_invariants(model_dir, [500])
  proc = _start(model_dir, tmp_path, searcher)
  assert proc.wait(timeout=120) == 0, (tmp_path / "log-final.txt").read_text()[-3000:]
  _check_invariants(model_dir, [500])
  final = os.path.join(model_dir, "export", "encoded", "500")
  assert os.path.isdir(final)
  assert export_dirs.export_paths(export_dirs.export_base(model_dir, "temp")) == []
  assert not [n for n in os.listdir(os.path.dirname(final)) if n.startswith("temp-")]
  block_emb = tf.train.load_checkpoint(
      encoded_export.block_emb_prefix(final)).get_tensor("block_emb")
  expected = retrieval_testing.TinyEmbedder(VOCAB_SIZE, seed=3).embed(*inputs).numpy()
  np.testing.assert_allclose(block_emb, expected, atol=1e-5)
  assert encoded_export.read_manifest(final)["embedder_step"] == 8
  return model_dir


def test_killed_during_embedding_and_at_commit(tmp_path):
  _run_crash_chain(tmp_path, "brute_force", ["embedding", "before_commit"])


@pytest.mark.slow
def test_killed_before_and_after_embedding_and_after_commit_with_scann(tmp_path):
  model_dir = _run_crash_chain(tmp_path, "scann",
                               ["staged", "embedded", "block_emb_written", "searcher_saved"])
  # Killed right after the commit rename: the snapshot is complete, nothing is redone.
  retrieval_testing.write_tf_hub_export(model_dir, 600, step=9, vocab_size=VOCAB_SIZE, seed=4)
  _kill_at(model_dir, tmp_path, "scann", "committed")
  _check_invariants(model_dir, [500, 600])
  assert os.path.isdir(os.path.join(model_dir, "export", "encoded", "600"))
  proc = _start(model_dir, tmp_path, "scann")
  assert proc.wait(timeout=120) == 0
  assert sorted(os.listdir(os.path.join(model_dir, "export", "encoded"))) == ["500", "600"]
