"""ICT dataset rules (`language/orqa/datasets/ict_dataset.py`): query sentence choice,
removal rate, filtering, layout."""
import numpy as np
import tensorflow as tf

from realm_tf.ict import dataset as ict_dataset


def _block(tokens, starts, title=(7,)):
  return {"token_ids": tf.constant(tokens, tf.int64),
          "sentence_starts": tf.constant(starts, tf.int64),
          "title_ids": tf.constant(title, tf.int64)}


def _write(path, blocks):
  with tf.io.TFRecordWriter(path, "GZIP") as writer:
    for title, tokens, starts in blocks:
      feature = {name: tf.train.Feature(int64_list=tf.train.Int64List(value=values))
                 for name, values in (("title_ids", title), ("token_ids", tokens),
                                      ("sentence_starts", starts))}
      writer.write(tf.train.Example(
          features=tf.train.Features(feature=feature)).SerializeToString())


def test_query_is_a_sentence_removed_from_its_block_at_the_mask_rate():
  block = _block([10, 11, 12, 20, 21, 30], [0, 3, 5])
  sentences = {(10, 11, 12), (20, 21), (30,)}
  masked = 0
  for i in range(2000):
    out = ict_dataset.make_ict_example(block, tf.constant([0, i], tf.int64), 0.9)
    query = tuple(out["query_ids"].numpy())
    assert query in sentences and bool(out["keep"])
    rest = [t for t in [10, 11, 12, 20, 21, 30] if t not in query]
    if bool(out["mask_query"]):
      masked += 1
      assert out["block_ids"].numpy().tolist() == rest
    else:
      assert out["block_ids"].numpy().tolist() == [10, 11, 12, 20, 21, 30]
  assert abs(masked / 2000 - 0.9) < 0.025


def test_masked_single_sentence_blocks_are_dropped():
  block = _block([10, 11], [0])
  keeps = {bool(out["mask_query"]): bool(out["keep"]) for out in (
      ict_dataset.make_ict_example(block, tf.constant([0, i], tf.int64), 0.5)
      for i in range(50))}
  assert keeps == {True: False, False: True}


def test_batched_features(tmp_path):
  path = str(tmp_path / "blocks.tfr.gz")
  _write(path, [([7], [10, 11, 12, 20, 21], [0, 3]), ([8, 9], [30, 31, 40], [0, 2])])
  batches = list(ict_dataset.ict_dataset([path], batch_size=2, query_seq_len=5,
                                         block_seq_len=8, mask_rate=1.0, cls_id=2, sep_id=3,
                                         training=False))
  assert len(batches) == 1
  batch = batches[0]
  query = batch["query_inputs"].token_ids.numpy().tolist()
  block = batch["block_inputs"].token_ids.numpy().tolist()
  assert batch["mask_query"].numpy().tolist() == [True, True]
  # Block 0: title [7]; the query sentence is removed from the block.
  assert query[0] in ([2, 10, 11, 12, 3], [2, 20, 21, 3, 0])
  expected_block = [2, 7, 3, 20, 21, 3, 0, 0] if query[0][1] == 10 else [2, 7, 3, 10, 11, 12, 3, 0]
  assert block[0] == expected_block
  assert batch["block_inputs"].segment_ids.numpy()[0].tolist()[:3] == [0, 0, 0]
  assert np.all(batch["query_inputs"].segment_ids.numpy() == 0)
  assert block[1][:3] == [2, 8, 9]
