"""The refresh job's protocol: staging, embedding, manifest, commit, retention, exit."""

import json
import os
import threading

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.retrieval import refresher as refresher_lib
from realm_tf.featurization.featurizer import _ragged_rows  # pylint: disable=protected-access
from realm_tf.retrieval import encoded_export
from realm_tf.retrieval import export_dirs
from realm_tf.retrieval import searchers
from tests import retrieval_testing
from tests.conftest import TINY_VOCAB

VOCAB_SIZE = len(TINY_VOCAB)
SEQ_LEN = 10
NUM_BLOCKS = 60


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  root = tmp_path_factory.mktemp("refresh_corpus")
  blocks = retrieval_testing.random_blocks(NUM_BLOCKS, VOCAB_SIZE, seed=11)
  retrieval_testing.write_shards(str(root / "blocks.tfr"), blocks, [25, 20, 15])
  vocab = root / "vocab.txt"
  vocab.write_text("\n".join(TINY_VOCAB) + "\n")
  return dict(pattern=str(root / "blocks.tfr-*"), blocks=blocks, vocab=str(vocab))


def _model_dir(tmp_path, corpus):
  model_dir = tmp_path / "model_dir"
  model_dir.mkdir()
  (model_dir / "config.json").write_text(json.dumps(
      {"candidate_seq_len": SEQ_LEN, "vocab_path": corpus["vocab"], "batch_size": 4}))
  return str(model_dir)


def _expected_block_emb(corpus, seed):
  refresher_featurizer = refresher_lib.corpus_embedding.featurizer_for_documents(corpus["vocab"],
                                                                           SEQ_LEN)
  inputs = refresher_featurizer.featurize_documents_tf(
      _ragged_rows([b[0] for b in corpus["blocks"]]), _ragged_rows([b[1] for b in corpus["blocks"]]))
  return retrieval_testing.TinyEmbedder(VOCAB_SIZE, seed=seed).embed(*inputs).numpy()


def _refresher(model_dir, corpus, **overrides):
  overrides.setdefault("searcher", "brute_force")
  overrides.setdefault("batch_size", 16)
  overrides.setdefault("num_neighbors", 5)
  overrides.setdefault("poll_interval_secs", 0.05)
  options = refresher_lib.options_from_config(model_dir, **overrides)
  return refresher_lib.Refresher(model_dir, corpus["pattern"], options)


def test_once_embeds_the_newest_export(tmp_path, corpus):
  model_dir = _model_dir(tmp_path, corpus)
  retrieval_testing.write_tf_hub_export(model_dir, 100, step=5, vocab_size=VOCAB_SIZE, seed=1)
  retrieval_testing.write_tf_hub_export(model_dir, 1000, step=10, vocab_size=VOCAB_SIZE, seed=2)
  refresher = _refresher(model_dir, corpus, searcher="scann")
  committed = refresher.run(once=True)
  final = os.path.join(model_dir, "export", "encoded", "1000")
  assert committed == [final]
  # The export moved (not copied) through temp/ into encoded/; the older one is skipped.
  assert export_dirs.export_paths(os.path.join(model_dir, "export", "temp")) == []
  assert os.listdir(os.path.join(model_dir, "export", "tf_hub")) == ["100"]
  assert export_dirs.read_global_step(final) == 10
  block_emb = tf.train.load_checkpoint(
      os.path.join(final, "embedder", "encoded", "encoded.ckpt")).get_tensor("block_emb")
  np.testing.assert_allclose(block_emb, _expected_block_emb(corpus, seed=2), atol=1e-5)

  manifest = encoded_export.read_manifest(final)
  assert manifest["timestamp"] == 1000 and manifest["embedder_step"] == 10
  assert manifest["num_blocks"] == NUM_BLOCKS and manifest["dims"] == 128
  assert manifest["corpus"]["counts"] == [25, 20, 15]
  assert len(manifest["corpus"]["fingerprint_sha256"]) == 64
  assert manifest["searcher"]["type"] == "scann"
  assert manifest["searcher"]["params"]["num_leaves"] == 8  # round(sqrt(60))
  assert {"embed_secs", "build_searcher_secs", "total_secs"} <= set(manifest["timings"])
  assert manifest["featurizer"]["candidate_seq_len"] == SEQ_LEN
  searcher = encoded_export.load_searcher(final)
  ids, _ = searcher.search(block_emb[:3])
  assert ids.shape == (3, 5)
  exact = encoded_export.load_searcher(final, searcher_type="brute_force")
  assert isinstance(exact, searchers.BruteForceSearcher)
  # Nothing newer: a second --once does nothing.
  assert refresher.run(once=True) == []


def test_start_at_step_missing_step_and_training_done(tmp_path, corpus):
  model_dir = _model_dir(tmp_path, corpus)
  retrieval_testing.write_tf_hub_export(model_dir, 50, step=3, vocab_size=VOCAB_SIZE)
  refresher = _refresher(model_dir, corpus, start_at_step=4)
  assert refresher.pending_export() is None  # Step 3 < 4.
  no_step = os.path.join(model_dir, "export", "tf_hub", "60")
  retrieval_testing.save_tiny_embedder(os.path.join(no_step, "embedder"), VOCAB_SIZE)
  assert refresher.pending_export() is None  # No global_step.txt yet.
  export_dirs.write_global_step(no_step, 7)
  assert refresher.pending_export()[0] == 60
  open(os.path.join(model_dir, "TRAINING_DONE"), "w").close()
  # TRAINING_DONE, but export 60 is pending: it is embedded before the loop exits.
  assert refresher.run() == [os.path.join(model_dir, "export", "encoded", "60")]


def test_loop_follows_exports_keeps_three_and_exits(tmp_path, corpus):
  model_dir = _model_dir(tmp_path, corpus)
  refresher = _refresher(model_dir, corpus)
  result = {}
  thread = threading.Thread(target=lambda: result.setdefault("committed", refresher.run()))
  thread.start()
  encoded = os.path.join(model_dir, "export", "encoded")
  for i, ts in enumerate([10, 20, 30, 40]):
    retrieval_testing.write_tf_hub_export(model_dir, ts, step=i, vocab_size=VOCAB_SIZE, seed=i)
    for _ in range(600):
      if os.path.isdir(os.path.join(encoded, str(ts))):
        break
      thread.join(0.05)
    assert os.path.isdir(os.path.join(encoded, str(ts))), f"export {ts} was not encoded"
  assert thread.is_alive()  # Idle, polling: no TRAINING_DONE yet.
  open(os.path.join(model_dir, "TRAINING_DONE"), "w").close()
  thread.join(30)
  assert not thread.is_alive()
  assert [os.path.basename(p) for p in result["committed"]] == ["10", "20", "30", "40"]
  assert sorted(os.listdir(encoded), key=int) == ["20", "30", "40"]


def test_two_tasks_split_the_shards(tmp_path, corpus):
  model_dir = _model_dir(tmp_path, corpus)
  retrieval_testing.write_tf_hub_export(model_dir, 77, step=1, vocab_size=VOCAB_SIZE, seed=4)
  worker = _refresher(model_dir, corpus, task_index=1, num_tasks=2)
  chief = _refresher(model_dir, corpus, task_index=0, num_tasks=2)
  open(os.path.join(model_dir, "TRAINING_DONE"), "w").close()
  worker_thread = threading.Thread(target=worker.run)
  worker_thread.start()
  committed = chief.run()
  worker_thread.join(30)
  assert not worker_thread.is_alive()
  assert [os.path.basename(p) for p in committed] == ["77"]
  final = os.path.join(model_dir, "export", "encoded", "77")
  manifest = encoded_export.read_manifest(final)
  assert manifest["num_tasks"] == 2 and "wait_for_workers_secs" in manifest["timings"]
  assert not os.path.exists(os.path.join(final, refresher_lib.PARTIALS_DIR))
  block_emb = tf.train.load_checkpoint(
      encoded_export.block_emb_prefix(final)).get_tensor("block_emb")
  np.testing.assert_allclose(block_emb, _expected_block_emb(corpus, seed=4), atol=1e-5)


def test_options_errors(tmp_path, corpus):
  with pytest.raises(ValueError, match="No vocab_path"):
    refresher_lib.options_from_config(str(tmp_path))
  with pytest.raises(ValueError, match="--searcher='annoy'"):
    refresher_lib.options_from_config(str(tmp_path), vocab_path=corpus["vocab"], searcher="annoy")
  options = refresher_lib.options_from_config(_model_dir(tmp_path, corpus), candidate_seq_len=None,
                                        do_lower_case=False)
  assert options.candidate_seq_len == SEQ_LEN and options.do_lower_case is False
