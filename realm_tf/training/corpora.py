"""The pre-training job's two corpora, opened and checked before training starts.

`open_corpora` resolves the pre-training and retrieval corpus paths through their
manifests, refuses a retrieval corpus tokenized with another vocabulary than the
trainer's (`VocabMismatchError` naming both files), and checks every shard of both
corpora (by the size the manifest records, or by reading it through), so that a
truncated or corrupt shard stops the job at start-up with the shard's name instead of
failing hours later, or never being sampled at all. `name_read_error` names the shard
and record behind a read error that still happens inside the input pipeline.
"""

from typing import List, Optional, Sequence, Tuple

from realm_tf import errors
from realm_tf.corpus import manifest as manifest_lib
from realm_tf.generation import queries
from realm_tf.retrieval import corpus_reader


def open_corpora(pretrain_path: str, retrieval_path: str, vocab_path: str
                 ) -> Tuple[List[str], corpus_reader.RetrievalCorpus]:
  """(pre-training shard paths, retrieval corpus), both checked.

  Raises:
    CorpusError: a path matches no corpus.
    VocabMismatchError: the retrieval corpus was built with another vocabulary.
    InputFileError: a shard is missing, truncated or corrupt.
  """
  pretrain = manifest_lib.resolve(pretrain_path)
  if not pretrain.shard_paths:
    raise corpus_reader.CorpusError(f"No corpus shards at {pretrain_path!r}. "
                                    f"{corpus_reader.NO_CORPUS_HINT}")
  corpus_reader.verify_shards(pretrain.shard_paths, pretrain.entries)
  retrieval = corpus_reader.open_corpus(retrieval_path)
  retrieval.check_vocab(vocab_path, "--vocab_path")
  retrieval.verify_sizes()
  return pretrain.shard_paths, retrieval


def name_read_error(pretrain_paths: Sequence[str], retrieval_paths: Sequence[str]
                    ) -> Optional[errors.InputFileError]:
  """The first bad record of either corpus (after a read error in training), or None."""
  return (corpus_reader.find_bad_record(pretrain_paths, queries.PRETRAIN_FEATURES) or
          corpus_reader.find_bad_record(retrieval_paths, corpus_reader.BLOCK_FEATURES))
