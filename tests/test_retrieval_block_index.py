"""The block_emb checkpoint and merging of per-worker partials."""

import os

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.retrieval import block_emb_file


def test_block_emb_readable_by_load_checkpoint(tmp_path):
  block_emb = np.random.default_rng(0).normal(size=[37, 128]).astype(np.float32)
  prefix = block_emb_file.checkpoint_prefix(str(tmp_path / "embedder"))
  assert prefix.endswith("embedder/encoded/encoded.ckpt")
  block_emb_file.write_block_emb(prefix, block_emb)
  reader = tf.train.load_checkpoint(prefix)
  # Exactly the original's key, not the object-based ".ATTRIBUTES/VARIABLE_VALUE" one.
  assert set(reader.get_variable_to_shape_map()) == {"block_emb"}
  assert reader.get_variable_to_dtype_map()["block_emb"] == tf.float32
  np.testing.assert_array_equal(reader.get_tensor("block_emb"), block_emb)
  # The directory form and a `checkpoint` state file, as the v1 Saver left them.
  assert tf.train.latest_checkpoint(os.path.dirname(prefix)) == prefix
  np.testing.assert_array_equal(block_emb_file.read_block_emb(os.path.dirname(prefix)), block_emb)
  # No temp directory left beside it.
  assert os.listdir(tmp_path / "embedder") == ["encoded"]


def test_written_atomically_and_never_overwritten(tmp_path):
  prefix = block_emb_file.checkpoint_prefix(str(tmp_path))
  block_emb_file.write_block_emb(prefix, np.ones([2, 4]))
  with pytest.raises(block_emb_file.BlockEmbError, match="already exists"):
    block_emb_file.write_block_emb(prefix, np.zeros([2, 4]))
  np.testing.assert_array_equal(block_emb_file.read_block_emb(prefix), np.ones([2, 4]))


def test_bad_inputs_raise_clear_errors(tmp_path):
  with pytest.raises(block_emb_file.BlockEmbError, match=r"\[K >= 1, D\]"):
    block_emb_file.write_block_emb(str(tmp_path / "a" / "x.ckpt"), np.zeros([3]))
  with pytest.raises(block_emb_file.BlockEmbError, match="Cannot read"):
    block_emb_file.read_block_emb(str(tmp_path / "missing.ckpt"))
  prefix = str(tmp_path / "other" / "x.ckpt")
  os.makedirs(os.path.dirname(prefix))
  tf.raw_ops.SaveV2(prefix=prefix, tensor_names=["other"], shape_and_slices=[""],
                    tensors=[tf.zeros([2, 2])])
  with pytest.raises(block_emb_file.BlockEmbError, match="no tensor 'block_emb'"):
    block_emb_file.read_block_emb(prefix)


def test_merge_partials_in_task_order(tmp_path):
  directory = str(tmp_path / "partials")
  os.makedirs(directory)
  parts = [np.full([3, 2], 0.0), np.zeros([0, 0]), np.full([2, 2], 2.0)]
  for task in (2, 0):  # Written out of order.
    block_emb_file.write_partial(directory, task, 3, parts[task], {"shard_range": [task, task]})
  assert block_emb_file.completed_partials(directory, 3) == [0, 2]
  with pytest.raises(block_emb_file.BlockEmbError, match="task 1 missing"):
    block_emb_file.merge_partials(directory, 3)
  block_emb_file.write_partial(directory, 1, 3, parts[1], {})
  merged = block_emb_file.merge_partials(directory, 3, expected_rows=[3, 0, 2])
  np.testing.assert_array_equal(merged, np.concatenate([parts[0], parts[2]]))
  assert block_emb_file.read_partial_info(directory, 2, 3)["rows"] == 2
  with pytest.raises(block_emb_file.BlockEmbError, match="expected 4"):
    block_emb_file.merge_partials(directory, 3, expected_rows=[4, 0, 2])
  with pytest.raises(block_emb_file.BlockEmbError, match="does not exist"):
    block_emb_file.write_partial(str(tmp_path / "gone"), 0, 1, parts[0], {})
