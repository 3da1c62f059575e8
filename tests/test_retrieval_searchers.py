"""Searchers: exact brute force (numpy reference, ties, chunking) and ScaNN (recall, reload)."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.retrieval import block_emb_file
from realm_tf.retrieval import searchers

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _numpy_top_k(queries, block_emb, k):
  scores = queries @ block_emb.T
  # A stable sort of -score: equal scores keep the lower id first.
  ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
  return ids, np.take_along_axis(scores, ids, axis=1)


def _integer_data(seed, num_blocks=500, dims=8, num_queries=7):
  """Small integers: exact float scores with many ties."""
  rng = np.random.default_rng(seed)
  return (rng.integers(-2, 3, size=[num_blocks, dims]).astype(np.float32),
          rng.integers(-2, 3, size=[num_queries, dims]).astype(np.float32))


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 500, 100000])
def test_brute_force_equals_numpy_argsort_with_ties(chunk_size):
  block_emb, queries = _integer_data(0)
  searcher = searchers.BruteForceSearcher(block_emb, num_neighbors=25, chunk_size=chunk_size)
  ids, scores = searcher.search(queries)
  ref_ids, ref_scores = _numpy_top_k(queries, block_emb, 25)
  assert ids.dtype == tf.int32 and ids.shape == (7, 25)
  np.testing.assert_array_equal(ids.numpy(), ref_ids)
  np.testing.assert_array_equal(scores.numpy(), ref_scores)
  # There are ties in the top 25, so the tie-breaking rule is exercised.
  assert any(len(set(row)) < len(row) for row in ref_scores)


def test_brute_force_k_equal_to_num_blocks_and_inside_tf_function():
  block_emb, queries = _integer_data(1, num_blocks=30)
  searcher = searchers.BruteForceSearcher(block_emb, num_neighbors=5, chunk_size=4)

  @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32)])
  def search_all(q):
    return searcher.search(q, k=30)

  ids, _ = search_all(queries)
  np.testing.assert_array_equal(ids.numpy(), _numpy_top_k(queries, block_emb, 30)[0])
  with pytest.raises(searchers.SearcherError, match="k=31"):
    searcher.search(queries, k=31)


def test_brute_force_saved_model_and_directory_round_trip(tmp_path):
  block_emb, queries = _integer_data(2)
  searcher = searchers.BruteForceSearcher(block_emb, num_neighbors=10, chunk_size=64)
  # Inside another SavedModel (the embeddings are a variable).
  tf.saved_model.save(searcher, str(tmp_path / "sm"))
  assert tf.saved_model.load(str(tmp_path / "sm")).block_emb.shape == (500, 8)
  # As a searcher directory pointing at an existing block_emb checkpoint.
  prefix = block_emb_file.checkpoint_prefix(str(tmp_path / "snap" / "embedder"))
  block_emb_file.write_block_emb(prefix, block_emb)
  searcher.save(str(tmp_path / "snap" / "brute_force"), block_emb_checkpoint=prefix)
  manifest = json.loads((tmp_path / "snap" / "brute_force" / "manifest.json").read_text())
  assert manifest["type"] == "brute_force"
  assert manifest["block_emb_checkpoint"] == "../embedder/encoded/encoded.ckpt"
  loaded = searchers.load_searcher(str(tmp_path / "snap" / "brute_force"))
  np.testing.assert_array_equal(loaded.search(queries)[0].numpy(),
                                _numpy_top_k(queries, block_emb, 10)[0])
  # Without a checkpoint, it writes its own.
  searcher.save(str(tmp_path / "own"))
  assert searchers.load_searcher(str(tmp_path / "own")).num_blocks == 500


def _clustered(seed, num_blocks=400, dims=32, num_clusters=20, num_queries=40):
  """Blocks around random centers; queries near the centers."""
  rng = np.random.default_rng(seed)
  centers = rng.normal(size=[num_clusters, dims]).astype(np.float32) * 3
  block_emb = (centers[rng.integers(0, num_clusters, num_blocks)] +
               rng.normal(size=[num_blocks, dims])).astype(np.float32)
  queries = (centers[rng.integers(0, num_clusters, num_queries)] +
             0.5 * rng.normal(size=[num_queries, dims])).astype(np.float32)
  return block_emb, queries


def _recall(ids, ref_ids):
  return np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(ids, ref_ids)])


def test_scann_recall_on_clustered_data():
  block_emb, queries = _clustered(0)
  searcher = searchers.build_searcher("scann", block_emb, num_neighbors=10)
  assert isinstance(searcher, searchers.ScannSearcher)
  params = searcher.params()
  assert params["num_leaves"] == 20  # round(sqrt(400))
  assert params["dimensions_per_block"] == 2
  ids, scores = searcher.search(queries)
  assert ids.dtype == tf.int32 and ids.shape == (40, 10) and scores.shape == (40, 10)
  ref_ids, _ = _numpy_top_k(queries, block_emb, 10)
  assert _recall(ids.numpy(), ref_ids) >= 0.9
  # Without reordering, AH alone still finds most neighbours.
  approximate = searchers.build_searcher("scann", block_emb, 10, reorder_num_neighbors=0)
  assert _recall(approximate.search(queries)[0].numpy(), ref_ids) >= 0.6
  with pytest.raises(searchers.SearcherError, match="Unknown ScaNN"):
    searchers.build_searcher("scann", block_emb, 10, leaves=3)


def _run_python(script, env=None):
  child_env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
  child_env.update(env or {})
  proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=REPO_ROOT,
                        env=child_env, capture_output=True, text=True, timeout=300,
                        check=False)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_scann_reloads_in_a_fresh_process(tmp_path):
  block_emb, queries = _clustered(1)
  searcher = searchers.build_searcher("scann", block_emb, num_neighbors=10)
  expected = searcher.search(queries)[0].numpy()
  directory = str(tmp_path / "scann")
  searcher.save(directory)
  np.save(str(tmp_path / "queries.npy"), queries)
  result = _run_python(f"""
      import json, numpy as np
      import realm_tf
      import scann  # Registers the ScaNN ops before the SavedModel loads.
      from realm_tf.retrieval import searchers
      s = searchers.load_searcher({directory!r})
      ids, _ = s.search(np.load({str(tmp_path / "queries.npy")!r}))
      print(json.dumps({{"type": s.searcher_type, "ids": ids.numpy().tolist()}}))
      """)
  assert result["type"] == "scann"
  np.testing.assert_array_equal(np.array(result["ids"]), expected)


def test_falls_back_to_brute_force_without_scann(tmp_path):
  block_emb, queries = _integer_data(3)
  np.save(str(tmp_path / "db.npy"), block_emb)
  result = _run_python(f"""
      import json, sys
      sys.modules["scann"] = None  # Makes `import scann` fail.
      import numpy as np
      import realm_tf
      from realm_tf.retrieval import searchers
      s = searchers.build_searcher("scann", np.load({str(tmp_path / "db.npy")!r}), 5)
      print(json.dumps({{"type": s.searcher_type}}))
      """)
  assert result["type"] == "brute_force"


def test_unknown_types_and_bad_directories(tmp_path):
  with pytest.raises(searchers.SearcherError, match="Unknown searcher type"):
    searchers.build_searcher("faiss", np.zeros([3, 2]), 1)
  with pytest.raises(searchers.SearcherError, match="No searcher manifest"):
    searchers.load_searcher(str(tmp_path))
  (tmp_path / "manifest.json").write_text('{"type": "annoy"}')
  with pytest.raises(searchers.SearcherError, match="unknown searcher type"):
    searchers.load_searcher(str(tmp_path))
