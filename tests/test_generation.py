"""Example generation: span choice, statuses, retrieval, origin removal, null doc."""
import collections
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from realm_tf import sample_data
from realm_tf.featurization import Featurizer
from realm_tf.generation import examples, queries
from realm_tf.tokenization import Tokenizer


def passage(text, sentences, spans, title=b"T"):
  return {
      "title": tf.constant(title), "text": tf.constant(text),
      "sentence_byte_start": tf.constant([s for s, _ in sentences], tf.int64),
      "sentence_byte_limit": tf.constant([e for _, e in sentences], tf.int64),
      "span_byte_start": tf.constant([s for s, _ in spans], tf.int64),
      "span_byte_limit": tf.constant([e for _, e in spans], tf.int64),
  }


TEXT = b"Ab cd. Ef Gh ij. Kl."
SENTENCES = [(0, 6), (7, 16), (17, 20)]


def test_span_maps_to_first_containing_sentence_and_duplicates_collapse():
  # (3, 9) and (15, 17) cross sentence boundaries; (10, 12) appears twice.
  p = passage(TEXT, SENTENCES, [(0, 2), (10, 12), (10, 12), (3, 9), (15, 17)])
  chosen = collections.Counter()
  for seed in range(200):
    out = queries.choose_span(p, tf.constant([seed, 7], tf.int64))
    assert int(out["status"]) == queries.OK
    chosen[(out["query"].numpy(), int(out["span_start"]), int(out["span_limit"]))] += 1
  assert set(chosen) == {(b"Ab cd.", 0, 2), (b"Ef Gh ij.", 3, 5)}
  assert 70 < chosen[(b"Ab cd.", 0, 2)] < 130  # uniform over the two distinct spans


def test_span_choice_is_deterministic_per_seed():
  p = passage(TEXT, SENTENCES, [(0, 2), (10, 12)])
  first = [int(queries.choose_span(p, tf.constant([s, 1], tf.int64))["span_start"])
           for s in range(20)]
  again = [int(queries.choose_span(p, tf.constant([s, 1], tf.int64))["span_start"])
           for s in range(20)]
  assert first == again


def test_passage_without_valid_spans():
  out = queries.choose_span(passage(TEXT, SENTENCES, [(3, 9)]), tf.constant([0, 0], tf.int64))
  assert int(out["status"]) == queries.NO_VALID_SPANS
  out = queries.choose_span(passage(TEXT, SENTENCES, []), tf.constant([0, 0], tf.int64))
  assert int(out["status"]) == queries.NO_VALID_SPANS


def test_invalid_utf8_sentence_is_a_tokenization_error():
  out = queries.choose_span(passage(b"A \xff b.", [(0, 6)], [(0, 1)]),
                            tf.constant([0, 0], tf.int64))
  assert int(out["status"]) == queries.TOKENIZATION_ERROR


# --- end to end on the sample corpus ---


def _bytes(value):
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _ints(values):
  return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def _write(path, records):
  with tf.io.TFRecordWriter(path, "GZIP") as writer:
    for features in records:
      writer.write(tf.train.Example(
          features=tf.train.Features(feature=features)).SerializeToString())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  """Sample passages as a 2-shard pre-training corpus (capitalised words as spans) and a
  retrieval corpus of the same passages."""
  root = tmp_path_factory.mktemp("generation")
  tokenizer = Tokenizer(sample_data.VOCAB_PATH)
  with open(sample_data.PASSAGES_PATH, encoding="utf-8") as f:
    passages = [json.loads(line) for line in f][:40]
  pretrain = []
  for p in passages:
    text = p["text"].encode()
    sentences, spans, start = [], [], 0
    for part in text.split(b". "):
      end = min(start + len(part) + 1, len(text))
      sentences.append((start, end))
      words = part.split(b" ")
      offset = start
      for i, word in enumerate(words):
        if i > 0 and word[:1].isupper():
          spans.append((offset, offset + len(word.rstrip(b".,;"))))
        offset += len(word) + 1
      start = end + 1
    pretrain.append({
        "title": _bytes(p["title"].encode()), "text": _bytes(text),
        "sentence_byte_start": _ints(s for s, _ in sentences),
        "sentence_byte_limit": _ints(e for _, e in sentences),
        "span_byte_start": _ints(s for s, _ in spans),
        "span_byte_limit": _ints(e for _, e in spans)})
  pretrain_paths = [str(root / f"pretrain-{i:05d}-of-00002") for i in range(2)]
  _write(pretrain_paths[0], pretrain[:20])
  _write(pretrain_paths[1], pretrain[20:])
  retrieval_path = str(root / "blocks-00000-of-00001")
  title_ids = tokenizer.tokenize_ids([p["title"] for p in passages]).to_list()
  body_ids = tokenizer.tokenize_ids([p["text"] for p in passages]).to_list()
  _write(retrieval_path, [
      {"title": _bytes(p["title"].encode()), "body": _bytes(p["text"].encode()),
       "title_token_ids": _ints(t), "body_token_ids": _ints(b)}
      for p, t, b in zip(passages, title_ids, body_ids)])
  return dict(pretrain=pretrain_paths, retrieval=[retrieval_path], tokenizer=tokenizer,
              passages=passages)


def toy_embedder(featurizer, dim=16):
  """Bag of wordpieces through a fixed random projection (a stand-in query tower)."""
  projection = tf.constant(np.random.default_rng(0).normal(
      size=[featurizer.tokenizer.vocab_size, dim]).astype(np.float32))

  def embed(inputs):
    one_hot = tf.one_hot(inputs.token_ids, featurizer.tokenizer.vocab_size)  # [b, L, V]
    counts = tf.reduce_sum(one_hot * tf.cast(inputs.mask, tf.float32)[..., None], axis=1)
    return tf.linalg.l2_normalize(counts @ projection, axis=-1)  # [b, dim]

  return embed


def test_generated_examples(corpus):
  featurizer = Featurizer(32, 48, 4, 5, corpus["tokenizer"])
  store = examples.BlockStore.from_shards(corpus["retrieval"])
  assert store.num_blocks == 40
  embed = toy_embedder(featurizer)
  titles, bodies, _ = store.gather(tf.range(store.num_blocks)[:, None])
  block_emb = embed(featurizer.featurize_documents_tf(titles.merge_dims(0, 1),
                                                      bodies.merge_dims(0, 1)))  # [K, D]
  search = lambda q: tf.math.top_k(q @ tf.transpose(block_emb), k=4).indices  # pylint: disable=g-long-lambda

  def generate(seed):
    counters = tf.Variable(tf.zeros([5], tf.int64))
    batches = queries.query_dataset(corpus["pretrain"], featurizer, batch_size=8, seed=seed,
                                    shuffle=False)
    batches = batches.map(lambda m: examples.retrieve_and_featurize(
        m, embed, search, store, featurizer, export_timestamp=1700000000))
    return list(examples.keep_valid_examples(batches, counters)), counters.numpy()

  produced, counts = generate([3, 4])
  # 40 passages in batches of 8: all are processed, statuses counted.
  assert counts.sum() == 40 and counts[queries.OK] == len(produced) > 20
  tokenizer = corpus["tokenizer"]
  titles = {tokenizer.token_ids_to_str(t) for t in store.gather(tf.range(40))[0].to_list()}
  for features in produced:
    assert features["export_timestamp"] == 1700000000
    candidates = features["candidate_inputs"].token_ids.numpy()
    assert candidates[0].tolist()[:4] == [2, 3, 3, 0]  # the null document
    candidate_titles = [tokenizer.token_ids_to_str(c[1:list(c).index(3)]) for c in candidates[1:]]
    assert len(set(candidate_titles)) == 3 and set(candidate_titles) <= titles
    positions = features["mlm_positions"].numpy()[features["mlm_mask"].numpy() == 1]
    assert np.all(features["joint_inputs"].token_ids.numpy()[:, positions] == 4)
  # Eval-style generation is reproducible across runs with the same seed.
  again, _ = generate([3, 4])
  for a, b in zip(produced, again):
    for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(b)):
      np.testing.assert_array_equal(x, y)


def test_origin_document_is_removed_and_duplicates_are_flagged(corpus):
  featurizer = Featurizer(32, 48, 3, 5, corpus["tokenizer"])
  store = examples.BlockStore.from_shards(corpus["retrieval"])
  masked = next(iter(queries.query_dataset(corpus["pretrain"][:1], featurizer, 4, [0, 0],
                                           shuffle=False)))
  origin_rows = [int(np.nonzero(store.uids.numpy() == uid)[0][0])
                 for uid in masked["orig_doc_uid"].numpy()]
  # A searcher that returns the origin first, then blocks 30, 31 (and 30 again for row 3).
  retrieved = [[o, 30, 31] for o in origin_rows[:3]] + [[30, 30, 31]]
  out = examples.retrieve_and_featurize(masked, lambda q: tf.zeros([4, 2]),
                                        lambda e: tf.constant(retrieved), store, featurizer, 0)
  status = out["status"].numpy()
  assert status[3] == queries.DUPLICATE_CANDIDATES
  block_30, block_31 = [
      featurizer.featurize_documents_tf(*[x.merge_dims(0, 1) for x in store.gather([[i]])[:2]])
      for i in (30, 31)]
  for i in range(3):
    if status[i] != queries.OK:
      continue
    cands = out["features"]["candidate_inputs"].token_ids[i].numpy()
    np.testing.assert_array_equal(cands[1], block_30.token_ids[0])
    np.testing.assert_array_equal(cands[2], block_31.token_ids[0])
  assert (status[:3] == queries.OK).sum() >= 2


# --- the serializable pipeline, in-process and on tf.data service ---


class ToyEmbedderModule(tf.Module):
  """A `projected` signature like an embedder export's (mean of word embeddings)."""

  def __init__(self, vocab_size, dim=8):
    super().__init__()
    self.table = tf.Variable(np.random.default_rng(1).normal(
        size=[vocab_size, dim]).astype(np.float32))

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name=n)
                                for n in ("input_ids", "input_mask", "segment_ids")])
  def projected(self, input_ids, input_mask, segment_ids):
    del segment_ids
    mask = tf.cast(input_mask, tf.float32)[..., None]
    return {"default": tf.reduce_sum(tf.gather(self.table, input_ids) * mask, 1)}


@pytest.fixture(scope="module")
def encoded_export(corpus, tmp_path_factory):
  """An embedder SavedModel and the block_emb checkpoint of the retrieval corpus."""
  root = tmp_path_factory.mktemp("export")
  featurizer = Featurizer(32, 48, 4, 5, corpus["tokenizer"])
  module = ToyEmbedderModule(corpus["tokenizer"].vocab_size)
  tf.saved_model.save(module, str(root / "embedder"),
                      signatures={"projected": module.projected})
  store = examples.BlockStore.from_shards(corpus["retrieval"])
  titles, bodies, _ = store.gather(tf.range(store.num_blocks))
  docs = featurizer.featurize_documents_tf(titles, bodies)
  block_emb = module.projected(docs.token_ids, docs.mask, docs.segment_ids)["default"]
  prefix = str(root / "embedder" / "encoded" / "encoded.ckpt")
  tf.raw_ops.SaveV2(prefix=prefix, tensor_names=["block_emb"], shape_and_slices=[""],
                    tensors=[block_emb])
  return dict(embedder=str(root / "embedder"), block_emb=prefix, featurizer=featurizer,
              module=module)


def _serialized(batches):
  out = []
  for batch in batches:
    for i, status in enumerate(batch["status"].numpy()):
      if status == queries.OK:
        out.append(b"".join(np.asarray(t[i]).tobytes() for t in
                            tf.nest.flatten(batch["features"])))
  return out


def test_pipeline_in_process_uses_the_frozen_embedder(corpus, encoded_export):
  from realm_tf.generation import pipeline  # pylint: disable=g-import-not-at-top
  featurizer = encoded_export["featurizer"]
  embed = pipeline.frozen_query_embedder(encoded_export["embedder"])
  inputs = featurizer.featurize_query_tf(tf.ragged.constant([[5, 6, 7]]))
  np.testing.assert_allclose(
      embed(inputs), encoded_export["module"].projected(*inputs)["default"], rtol=1e-6)
  dataset = pipeline.generation_dataset(
      corpus["pretrain"], corpus["retrieval"], encoded_export["block_emb"], embed,
      featurizer, export_timestamp=42, seed=[1, 2], shuffle=False, retrieval_batch_size=8)
  batches = list(dataset)
  assert len(batches) == 5
  ok = [b["features"]["export_timestamp"].numpy()[b["status"].numpy() == 0] for b in batches]
  assert np.concatenate(ok).tolist() == [42] * sum(len(x) for x in ok) and len(ok) > 0
  # Eval generation is reproducible: a second, independently built pipeline (a new run)
  # yields the same examples in the same order.
  rebuilt = pipeline.generation_dataset(
      corpus["pretrain"], corpus["retrieval"], encoded_export["block_emb"],
      pipeline.frozen_query_embedder(encoded_export["embedder"]), featurizer,
      export_timestamp=42, seed=[1, 2], shuffle=False, retrieval_batch_size=8)
  assert _serialized(batches) == _serialized(list(rebuilt))


def test_pipeline_on_tf_data_service_equals_in_process(corpus, encoded_export):
  from realm_tf.generation import pipeline  # pylint: disable=g-import-not-at-top
  service = tf.data.experimental.service
  dispatcher = service.DispatchServer()
  address = dispatcher.target.split("://")[1]
  workers = [service.WorkerServer(service.WorkerConfig(dispatcher_address=address))
             for _ in range(2)]
  embed = pipeline.frozen_query_embedder(encoded_export["embedder"])
  dataset = pipeline.generation_dataset(
      corpus["pretrain"], corpus["retrieval"], encoded_export["block_emb"], embed,
      encoded_export["featurizer"], export_timestamp=0, seed=[5, 6], shuffle=False,
      retrieval_batch_size=8)
  local = _serialized(list(dataset))
  remote = _serialized(list(dataset.apply(service.distribute(
      processing_mode=service.ShardingPolicy.OFF, service=dispatcher.target,
      job_name="eval"))))
  # Each of the 2 workers produces the whole (deterministic) eval pass once.
  assert sorted(remote) == sorted(local * 2)
  del workers


def test_stream_picks_up_a_refreshed_index(corpus, encoded_export, tmp_path):
  from realm_tf.generation import stream  # pylint: disable=g-import-not-at-top
  model_dir = str(tmp_path / "model")
  with pytest.raises(FileNotFoundError, match="initial embedder"):
    stream.latest_generation(model_dir, None)
  examples_stream = stream.ExampleStream(
      model_dir, corpus["pretrain"], corpus["retrieval"], encoded_export["featurizer"],
      batch_size=4, initial_embedder=encoded_export["embedder"], shards_per_pass=1,
      training=True, seed=3, retrieval_batch_size=8)
  first = next(iter(examples_stream.dataset()))
  assert first["export_timestamp"].numpy().tolist() == [0] * 4
  # The refresh job commits export/encoded/<ts>/embedder (with encoded/encoded.ckpt).
  shutil.copytree(encoded_export["embedder"],
                  os.path.join(model_dir, "export", "encoded", "1700000123", "embedder"))
  second = list(examples_stream.dataset())
  assert second and all(
      b["export_timestamp"].numpy().tolist() == [1700000123] * 4 for b in second)
  counts = examples_stream.counts()
  assert counts["ok"] >= 4 * (1 + len(second)) and sum(counts.values()) <= 40
