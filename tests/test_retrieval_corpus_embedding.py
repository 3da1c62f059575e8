"""Corpus embedding: order, exact count, shard splits across workers, strategies."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.featurization.featurizer import _ragged_rows  # pylint: disable=protected-access
from realm_tf.retrieval import block_emb_file
from realm_tf.retrieval import corpus_embedding
from realm_tf.retrieval import corpus_reader
from tests.conftest import TINY_VOCAB
from tests import retrieval_testing
from tests import strategy_utils

VOCAB_SIZE = len(TINY_VOCAB)
SEQ_LEN = 12


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  """103 blocks in 4 shards (one empty), the featurizer and the reference embeddings."""
  root = tmp_path_factory.mktemp("corpus")
  blocks = retrieval_testing.random_blocks(103, VOCAB_SIZE, seed=3, max_len=20)
  paths = retrieval_testing.write_shards(str(root / "blocks.tfr"), blocks, [40, 0, 33, 30])
  vocab_path = root / "vocab.txt"
  vocab_path.write_text("\n".join(TINY_VOCAB) + "\n")
  featurizer = corpus_embedding.featurizer_for_documents(str(vocab_path), SEQ_LEN)
  embedder = retrieval_testing.TinyEmbedder(VOCAB_SIZE, seed=5)
  inputs = featurizer.featurize_documents_tf(_ragged_rows([b[0] for b in blocks]),
                                             _ragged_rows([b[1] for b in blocks]))
  expected = embedder.embed(*inputs).numpy()  # [103, 128]
  saved = retrieval_testing.save_tiny_embedder(str(root / "embedder"), VOCAB_SIZE, seed=5)
  return dict(root=root, blocks=blocks, paths=paths, featurizer=featurizer,
              embedder=embedder, expected=expected, saved=saved, vocab=str(vocab_path))


def test_reader_lists_sorted_shards_and_counts(corpus):
  pattern = str(corpus["root"] / "blocks.tfr-*")
  assert corpus_reader.list_shards(pattern) == corpus["paths"]
  counts, manifest = corpus_reader.shard_counts(corpus["paths"])
  assert counts == [40, 0, 33, 30] and manifest is None
  with pytest.raises(corpus_reader.CorpusError, match="No corpus shards"):
    corpus_reader.list_shards(str(corpus["root"] / "nothing-*"))


@pytest.mark.parametrize("batch_size", [1, 103, 256])
def test_embeds_every_block_in_order(corpus, batch_size):
  embed_fn = corpus_embedding.load_saved_model_embedder(corpus["saved"])
  done = []
  output = corpus_embedding.embed_shards(corpus["paths"], embed_fn, corpus["featurizer"],
                                         batch_size, on_batch=lambda d, t: done.append(d))
  assert output.shape == (103, 128) and output.dtype == np.float32
  np.testing.assert_allclose(output, corpus["expected"], rtol=1e-5, atol=1e-5)
  assert done[-1] == 103 and len(done) == -(-103 // batch_size)


def test_count_mismatch_is_an_error(corpus):
  with pytest.raises(ValueError, match="expected 104"):
    corpus_embedding.embed_shards(corpus["paths"], corpus["embedder"].embed,
                                  corpus["featurizer"], 16, num_blocks=104)
  with pytest.raises(ValueError, match="more than the expected 100"):
    corpus_embedding.embed_shards(corpus["paths"], corpus["embedder"].embed,
                                  corpus["featurizer"], 16, num_blocks=100)


def test_shard_range_gives_first_workers_the_extra_shard():
  assert [corpus_reader.shard_range(5, t, 3) for t in range(3)] == [(0, 2), (2, 4), (4, 5)]
  assert [corpus_reader.shard_range(2, t, 3) for t in range(3)] == [(0, 1), (1, 2), (2, 2)]
  with pytest.raises(ValueError):
    corpus_reader.shard_range(2, 3, 3)


@pytest.mark.parametrize("num_tasks", [5])
def test_worker_splits_merge_to_the_same_rows(corpus, tmp_path, num_tasks):
  counts = [40, 0, 33, 30]
  partials = str(tmp_path / "partials")
  os.makedirs(partials)
  for task in reversed(range(num_tasks)):
    result = corpus_embedding.embed_task(corpus["paths"], counts, task, num_tasks,
                                         corpus["embedder"].embed, corpus["featurizer"], 16)
    block_emb_file.write_partial(partials, task, num_tasks, result["block_emb"],
                              {"shard_range": list(result["shard_range"])})
  merged = block_emb_file.merge_partials(partials, num_tasks)
  np.testing.assert_allclose(merged, corpus["expected"], rtol=1e-5, atol=1e-5)


def test_command_line_tasks_and_merge(corpus, tmp_path):
  """Two workers and a merge through realm_tf.embed_corpus, as separate invocations."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from realm_tf import embed_corpus  # pylint: disable=g-import-not-at-top
  if "embedder" not in flags.FLAGS:
    embed_corpus.define_flags()
  out = str(tmp_path / "out")
  os.makedirs(os.path.join(out, block_emb_file.PARTIALS_DIR))
  base = ["prog", f"--embedder={corpus['saved']}", f"--vocab_path={corpus['vocab']}",
          f"--retrieval_corpus_path={corpus['root']}/blocks.tfr-*", f"--output_dir={out}",
          f"--candidate_seq_len={SEQ_LEN}", "--num_tasks=2", "--batch_size=16"]
  try:
    for extra in (["--task_index=1"], ["--task_index=0"], ["--merge"]):
      flags.FLAGS.unparse_flags()
      flags.FLAGS(base + extra)
      embed_corpus.main([])
  finally:
    flags.FLAGS.unparse_flags()
  block_emb = tf.train.load_checkpoint(
      os.path.join(out, "encoded", "encoded.ckpt")).get_tensor("block_emb")
  np.testing.assert_allclose(block_emb, corpus["expected"], rtol=1e-5, atol=1e-5)


def test_corpus_builder_shards_and_manifest(tmp_path, tiny_vocab_path):
  """Shards from realm_tf.corpus.build_retrieval_corpus: counts from its manifest."""
  build = pytest.importorskip("realm_tf.corpus.build_retrieval_corpus")
  docs = tmp_path / "docs.jsonl"
  texts = [("Paris", "paris is a city in france ."), ("Nile", "the river nile ."),
           ("Tower", "the eiffel tower was built in 1889 ."), ("", "new york")]
  docs.write_text("".join(json.dumps({"title": t, "text": b}) + "\n" for t, b in texts))
  build.build(str(docs), str(tmp_path / "z" / "blocks.tfr"), tiny_vocab_path, num_shards=3)
  paths = corpus_reader.list_shards(str(tmp_path / "z" / "blocks.tfr-*"))
  counts, manifest = corpus_reader.shard_counts(paths)
  assert sum(counts) == 4 and manifest.endswith("blocks.tfr.manifest.json")
  assert counts == corpus_reader.count_records_parallel(paths)
  featurizer = corpus_embedding.featurizer_for_documents(tiny_vocab_path, SEQ_LEN)
  embedder = retrieval_testing.TinyEmbedder(VOCAB_SIZE)
  output = corpus_embedding.embed_shards(paths, embedder.embed, featurizer, 3)
  # Row i is record i of the sorted shards: the Paris block comes first.
  first = next(iter(corpus_reader.records_dataset(paths).batch(4)))
  texts_read = corpus_reader.parse_block_texts(first)
  assert texts_read["title"].numpy().tolist() == [t.encode() for t, _ in texts]
  ids = corpus_reader.parse_blocks(first)
  expected = embedder.embed(*featurizer.featurize_documents_tf(
      ids["title_token_ids"], ids["body_token_ids"])).numpy()
  np.testing.assert_allclose(output, expected, rtol=1e-5, atol=1e-5)


def test_mirrored_strategy_two_replicas(corpus):
  """Under a 2-replica MirroredStrategy the rows come back in corpus order."""
  np.save(str(corpus["root"] / "expected.npy"), corpus["expected"])
  result = strategy_utils.run_with_logical_cpus(f"""
      import numpy as np
      import realm_tf
      from realm_tf.retrieval import corpus_embedding
      from tests import retrieval_testing
      strategy = mirrored_strategy()
      with strategy.scope():
        embedder = retrieval_testing.TinyEmbedder({VOCAB_SIZE}, seed=5)
      featurizer = corpus_embedding.featurizer_for_documents({corpus['vocab']!r}, {SEQ_LEN})
      out = corpus_embedding.embed_shards({corpus['paths']!r}, embedder.embed, featurizer,
                                          batch_size=10, strategy=strategy)
      expected = np.load({str(corpus['root'] / 'expected.npy')!r})
      emit({{"replicas": strategy.num_replicas_in_sync, "shape": list(out.shape),
            "max_diff": float(np.abs(out - expected).max())}})
      """)
  assert result["replicas"] == 2 and result["shape"] == [103, 128]
  assert result["max_diff"] < 1e-5
