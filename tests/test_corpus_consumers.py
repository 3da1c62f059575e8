"""Where a corpus meets its consumers: vocabulary, index fingerprint, bad blocks and shards.

* A retrieval corpus records the SHA-256 of its vocabulary; pre-training, the refresh
  job (and through it ICT's --encode), and ORQA's fine-tuning, prediction and serving
  (`builder.build_model`) refuse a corpus of another vocabulary.
* Every index records the fingerprint of the corpus it embeds. Pre-training re-embeds its
  own initial index and skips its committed indexes of another corpus; an index given
  to it or to ORQA is refused.
* Blocks without body tokens, token ids outside the vocabulary, unreadable shards and
  records that are no Examples are errors naming the shard and the record.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from orqa.models import builder
from realm_tf.corpus import build_pretrain_corpus
from realm_tf.corpus import build_retrieval_corpus
from realm_tf.corpus import manifest as manifest_lib
from realm_tf import errors
from realm_tf.generation import stream
from realm_tf.retrieval import block_emb_file
from realm_tf.retrieval import corpus_reader
from realm_tf.retrieval import encoded_export
from realm_tf.retrieval import refresher as refresher_lib
from realm_tf import sample_data
from realm_tf.tokenization import Tokenizer
from realm_tf.training import corpora
from tests.conftest import REPO_ROOT, TINY_VOCAB
from tests import retrieval_testing

TEXTS = ["The Eiffel tower was built in 1889.", "Paris is a city in France.",
         "The river Nile.", "New York is a city.", "Cafe au lait in Paris."]


def write_docs(path, texts):
  with open(path, "w", encoding="utf-8") as f:
    for i, text in enumerate(texts):
      f.write(json.dumps({"id": str(i), "title": f"Doc {i}", "text": text}) + "\n")
  return str(path)


@pytest.fixture
def tiny_corpus(tmp_path, tiny_vocab_path):
  """A retrieval corpus tokenized with the 28-entry test vocabulary."""
  prefix = str(tmp_path / "corpus" / "blocks")
  build_retrieval_corpus.build(write_docs(tmp_path / "docs.jsonl", TEXTS), prefix,
                               tiny_vocab_path, num_shards=2)
  return prefix


def _model_dir(tmp_path, vocab_path, seq_len=10):
  model_dir = tmp_path / "model_dir"
  model_dir.mkdir(exist_ok=True)
  (model_dir / "config.json").write_text(json.dumps(
      {"candidate_seq_len": seq_len, "vocab_path": vocab_path}))
  return str(model_dir)


def _refresher(model_dir, pattern, **overrides):
  options = refresher_lib.options_from_config(model_dir, searcher="brute_force", batch_size=4,
                                        num_neighbors=2, **overrides)
  return refresher_lib.Refresher(model_dir, pattern, options)


# ------------------------------------------------------------------ the vocabulary


def test_refresh_refuses_a_corpus_of_another_vocabulary(tmp_path, tiny_corpus,
                                                        tiny_vocab_path):
  model_dir = _model_dir(tmp_path, sample_data.VOCAB_PATH)
  with pytest.raises(manifest_lib.VocabMismatchError) as info:
    _refresher(model_dir, tiny_corpus)
  message = str(info.value)
  assert tiny_vocab_path in message and sample_data.VOCAB_PATH in message
  assert tiny_corpus + ".manifest.json" in message
  _refresher(_model_dir(tmp_path, tiny_vocab_path), tiny_corpus)  # The right one is fine.


def test_orqa_refuses_block_records_of_another_vocabulary(tiny_corpus, tmp_path):
  params = builder.ModelParams(retriever_module_path=str(tmp_path / "no_module"),
                                    block_records_path=tiny_corpus)
  with pytest.raises(manifest_lib.VocabMismatchError, match="retriever module"):
    builder.check_block_records(params, Tokenizer(sample_data.VOCAB_PATH))


@pytest.mark.parametrize("corpus_vocab", ["tiny", "sample"])
def test_pretrain_refuses_a_corpus_of_another_vocabulary(tmp_path, tiny_vocab_path,
                                                         corpus_vocab):
  """Both ways round: a larger vocabulary trained on wrong words, a smaller one failed
  with a raw `indices[...] is not in [0, V)`."""
  vocabs = {"tiny": tiny_vocab_path, "sample": sample_data.VOCAB_PATH}
  corpus_vocab_path = vocabs[corpus_vocab]
  flag_vocab_path = vocabs["sample" if corpus_vocab == "tiny" else "tiny"]
  docs = write_docs(tmp_path / "docs.jsonl", TEXTS * 4)
  blocks = str(tmp_path / "data" / "blocks")
  build_retrieval_corpus.build(docs, blocks, corpus_vocab_path, num_shards=2)
  pretrain = str(tmp_path / "data" / "pretrain")
  build_pretrain_corpus.build(docs, pretrain, num_shards=3, eval_shards=1)
  model_dir = tmp_path / "model"
  proc = subprocess.run(
      [sys.executable, "-m", "realm_tf.pretrain", f"--model_dir={model_dir}",
       f"--pretrain_corpus_path={pretrain}-*", f"--retrieval_corpus_path={blocks}-*",
       f"--vocab_path={flag_vocab_path}", "--bert_preset=tiny", "--num_train_steps=2",
       "--query_seq_len=16", "--candidate_seq_len=32"],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 1, proc.stderr[-3000:]
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("VocabMismatchError: ") and "Traceback" not in proc.stderr
  assert corpus_vocab_path in last and flag_vocab_path in last
  assert not (model_dir / "config.json").exists()  # Refused before anything was written.
  assert not (model_dir / "checkpoints").exists()


# ------------------------------------------------------------------ the index's corpus


def _reordered(tmp_path, tiny_corpus, tiny_vocab_path):
  """The same passages in another order, rebuilt under the same prefix."""
  build_retrieval_corpus.build(write_docs(tmp_path / "reordered.jsonl", TEXTS[::-1]),
                               tiny_corpus, tiny_vocab_path, num_shards=2)
  return corpus_reader.open_corpus(tiny_corpus)


def test_refresh_records_the_corpus_and_stale_indexes_are_skipped(tmp_path, tiny_corpus,
                                                                  tiny_vocab_path):
  model_dir = _model_dir(tmp_path, tiny_vocab_path)
  retrieval_testing.write_tf_hub_export(model_dir, 100, step=1, vocab_size=len(TINY_VOCAB))
  refresher = _refresher(model_dir, tiny_corpus)
  (encoded,) = refresher.run(once=True)
  index_dir = os.path.dirname(encoded_export.block_emb_prefix(encoded))
  recorded = block_emb_file.read_index_corpus(index_dir)
  original = corpus_reader.open_corpus(tiny_corpus)
  assert recorded["fingerprint_sha256"] == original.fingerprint
  assert recorded["num_blocks"] == recorded["num_rows"] == len(TEXTS)
  initial = str(tmp_path / "initial")
  assert stream.latest_generation(model_dir, initial,
                                  original.fingerprint).export_timestamp == 100
  original.check_index(index_dir)

  reordered = _reordered(tmp_path, tiny_corpus, tiny_vocab_path)
  assert reordered.fingerprint != original.fingerprint
  # The trainer falls back to its own index rather than use rows of the wrong blocks...
  generation = stream.latest_generation(model_dir, initial, reordered.fingerprint)
  assert generation.export_timestamp == 0 and generation.embedder_path == initial
  # ...and an index given to a consumer is refused, naming both corpora.
  with pytest.raises(corpus_reader.CorpusMismatchError, match="fingerprint"):
    reordered.check_index(index_dir)
  params = builder.ModelParams(
      retriever_module_path=encoded_export.embedder_path(encoded),
      block_records_path=tiny_corpus + "-*")
  with pytest.raises(corpus_reader.CorpusMismatchError):
    builder.check_block_records(params, Tokenizer(tiny_vocab_path))


def test_pretraining_re_embeds_its_initial_index_for_a_changed_corpus(tmp_path, tiny_corpus,
                                                                      tiny_vocab_path):
  from realm_tf.featurization import Featurizer  # pylint: disable=g-import-not-at-top
  from tests import modeling_testing as model_testing  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.config import BertConfig  # pylint: disable=g-import-not-at-top
  from realm_tf.modeling.realm_model import RealmModel  # pylint: disable=g-import-not-at-top
  from realm_tf.training import initial_index  # pylint: disable=g-import-not-at-top
  tokenizer = Tokenizer(tiny_vocab_path)
  bert = BertConfig.preset("tiny", vocab_size=tokenizer.vocab_size)
  config = model_testing.tiny_realm_config(query_seq_len=8, candidate_seq_len=16,
                                           num_candidates=2, max_masks=2, bert=bert,
                                           embedder=bert)
  model = RealmModel(config).build_variables()
  featurizer = Featurizer(8, 16, 2, 2, tokenizer)
  path = str(tmp_path / "model" / "initial_embedder")

  def build(corpus):
    initial_index.build_initial_embedder_module(model, tokenizer, featurizer,
                                                corpus.shard_paths, path, batch_size=4,
                                                corpus_info=corpus.describe())
    return block_emb_file.read_block_emb(block_emb_file.checkpoint_prefix(path))

  before = build(corpus_reader.open_corpus(tiny_corpus))
  assert build(corpus_reader.open_corpus(tiny_corpus)) is not None  # Reused as is.
  after = build(_reordered(tmp_path, tiny_corpus, tiny_vocab_path))
  np.testing.assert_allclose(after, before[::-1], atol=1e-5)  # Row i is block i again.


# ------------------------------------------------------------------ bad blocks, bad shards


def _write_records(path, records):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path, options="GZIP") as writer:
    for record in records:
      writer.write(record)
  return path


def _block(title_ids, body_ids, index, with_body=True):
  example = tf.train.Example.FromString(retrieval_testing.block_example(title_ids, body_ids,
                                                                   index))
  if not with_body:
    del example.features.feature["body_token_ids"]
  return example.SerializeToString()


@pytest.mark.parametrize("case,reason", [
    ("no_body_ids", "without body_token_ids"), ("empty_body_ids", "without body_token_ids"),
    ("id_out_of_range", "outside the vocabulary"), ("not_an_example", "not a tf.train.Example")])
def test_refresh_names_the_shard_and_record_of_a_bad_block(tmp_path, tiny_vocab_path, case,
                                                           reason):
  good = [_block([5], [6, 7], i) for i in range(4)]
  bad = {"no_body_ids": _block([5], [6], 9, with_body=False),
         "empty_body_ids": _block([5], [], 9),
         "id_out_of_range": _block([5], [6, len(TINY_VOCAB) + 40], 9),
         "not_an_example": b"\xff\xfe this is no proto"}[case]
  corpus = tmp_path / "corpus"
  _write_records(str(corpus / "z-00000-of-00002"), good)
  second = _write_records(str(corpus / "z-00001-of-00002"), good[:2] + [bad] + good[2:])
  model_dir = _model_dir(tmp_path, tiny_vocab_path)
  retrieval_testing.write_tf_hub_export(model_dir, 100, step=1, vocab_size=len(TINY_VOCAB))
  refresher = _refresher(model_dir, str(corpus / "z-*"))
  with pytest.raises(errors.InputFileError, match=reason) as info:
    refresher.run(once=True)
  assert info.value.path == second and info.value.record == 2
  assert f"{second}: record 2:" in str(info.value)
  assert not os.path.exists(os.path.join(model_dir, "export", "encoded", "100"))


def test_truncated_shards_are_named_before_training(tmp_path, tiny_corpus, tiny_vocab_path):
  docs = write_docs(tmp_path / "docs.jsonl", TEXTS * 4)
  pretrain = str(tmp_path / "pre" / "pretrain")
  build_pretrain_corpus.build(docs, pretrain, num_shards=3, eval_shards=1)
  shards = manifest_lib.resolve(pretrain).shard_paths
  corpora.open_corpora(pretrain, tiny_corpus, tiny_vocab_path)  # Whole: accepted.
  data = open(shards[2], "rb").read()
  with open(shards[2], "wb") as f:  # A train shard that a pass might never sample.
    f.write(data[:len(data) // 2])
  with pytest.raises(errors.InputFileError, match="truncated") as info:
    corpora.open_corpora(pretrain, tiny_corpus, tiny_vocab_path)
  assert info.value.path == shards[2]
  # Shards without a manifest are read through once: a truncated one is named too.
  blocks = retrieval_testing.random_blocks(30, len(TINY_VOCAB), seed=3, max_len=40)
  paths = retrieval_testing.write_shards(str(tmp_path / "ext" / "z"), blocks, [15, 15])
  data = open(paths[1], "rb").read()
  with open(paths[1], "wb") as f:
    f.write(data[:-30])
  with pytest.raises(errors.InputFileError) as info:
    corpora.open_corpora(pretrain + "-00000-*", str(tmp_path / "ext" / "z-*"),
                         tiny_vocab_path)
  assert info.value.path == paths[1]
  # A read error inside the training pipeline is traced to its shard and record.
  _write_records(str(tmp_path / "bad" / "p-00000-of-00001"), [b"no example"])
  bad = corpora.name_read_error([str(tmp_path / "bad" / "p-00000-of-00001")], [])
  assert bad.record == 0 and "not a tf.train.Example" in str(bad)


def test_refresh_names_a_truncated_shard_before_embedding(tmp_path, tiny_corpus,
                                                         tiny_vocab_path):
  shard = manifest_lib.resolve(tiny_corpus).shard_paths[1]
  data = open(shard, "rb").read()
  with open(shard, "wb") as f:
    f.write(data[:-10])
  model_dir = _model_dir(tmp_path, tiny_vocab_path)
  with pytest.raises(errors.InputFileError, match="truncated") as info:
    _refresher(model_dir, tiny_corpus)
  assert info.value.path == shard
