r"""Builds the REALM retrieval corpus Z: sharded GZIP TFRecords of blocks.

  python -m realm_tf.corpus.build_retrieval_corpus \
      --input=docs.jsonl.gz --output_prefix=out/blocks.tfr \
      --vocab_path=vocab.txt [--mode=passages|articles] [--num_shards=50]

Input: jsonl or jsonl.gz, one `{"title", "text"}` (or `"body"`, optional `"id"`) a line.
`--mode=passages` writes each line as one block (the original
`language/realm/generate_retrieval_corpus.py`); `--mode=articles` applies ORQA's
preprocessing (`language/orqa/preprocessing/wiki_preprocessor.py`):
title filters, HTML unescaping, sentence splitting and greedy packing so that
`[CLS] title [SEP] block [SEP]` fits in `--max_block_length` wordpieces.

Output: the shards `<output_prefix>.builds/<build_id>/<name>-00000-of-000NN` ... and
`<output_prefix>.manifest.json`, which points at them; a rebuild replaces the corpus as a
whole (`realm_tf.corpus.manifest`). Consumers take `--retrieval_corpus_path` as the
prefix, the manifest, or a glob of shard names (`<output_prefix>-*`). Row i of the shards
in manifest order is block i of the block-embedding index. The shards are byte-identical
for the same input whatever `--num_workers`. A build that produces no block is an error
unless `--allow_empty`; a failed or killed build leaves the previous corpus as it was.
"""

import os

import realm_tf  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow loads)
from absl import flags
from absl import logging

from realm_tf import cli
from realm_tf.corpus import build_loop
from realm_tf.corpus import io as corpus_io
from realm_tf.corpus import retrieval_examples
from realm_tf import errors

FEATURES = ("title", "body", "title_token_texts", "title_token_starts",
            "title_token_stops", "title_token_ids", "body_token_texts",
            "body_token_starts", "body_token_stops", "body_token_ids")


def build(input_path: str, output_prefix: str, vocab_path: str, *,
          do_lower_case: bool = True, mode: str = "passages",
          max_block_length: int = 288, num_shards: int = 50,
          num_workers: int = 1, chunk_size: int = 256,
          skip_bad_records: bool = False,
          total_documents: int = 0, allow_empty: bool = False) -> build_loop.BuildResult:
  """Builds the retrieval corpus; see the module docstring.

  Raises:
    ArgumentError: an argument is out of range (checked before anything is written), or
      `total_documents` is set and differs from the number of blocks.
    errors.InputFileError: a bad input record (unless `skip_bad_records`).
    EmptyCorpusError: no block was produced and not `allow_empty`.
  """
  build_loop.check_build_args(num_shards, num_workers, chunk_size)
  if mode not in retrieval_examples.MODES:
    raise errors.ArgumentError(f"--mode={mode!r} is not one of {retrieval_examples.MODES}")
  if mode == "articles" and max_block_length <= 3:
    raise errors.ArgumentError(f"--max_block_length={max_block_length} leaves no room for "
                               "a block after [CLS] title [SEP] ... [SEP]")
  if total_documents < 0:
    raise errors.ArgumentError(f"--total_documents={total_documents} must be >= 0")
  for what, path in (("Input", input_path), ("Vocabulary", vocab_path)):
    if not os.path.exists(path):
      raise FileNotFoundError(f"{what} not found: {path}")
  processor = retrieval_examples.RetrievalProcessor(
      vocab_path, do_lower_case, mode, max_block_length)
  processor.setup()  # Fails early (bad vocab) before any worker starts.
  vocab_size = len(processor._vocab_bytes)  # pylint: disable=protected-access

  def make_manifest(result: build_loop.BuildResult) -> dict:
    if total_documents and result.num_records != total_documents:
      raise errors.ArgumentError(f"--total_documents={total_documents} but the build "
                                 f"produced {result.num_records} blocks")
    return {
        "format": "realm_retrieval_corpus",
        "original": "language/realm/generate_retrieval_corpus.py",
        "builder": "realm_tf.corpus.build_retrieval_corpus",
        "mode": mode,
        "max_block_length": max_block_length if mode == "articles" else None,
        "count": result.num_records,
        "num_shards": num_shards,
        "shards": build_loop.shard_entries(result),
        "compression": "GZIP",
        "features": list(FEATURES),
        "vocab": {"path": os.path.abspath(vocab_path), "size": vocab_size,
                  "sha256": corpus_io.file_sha256(vocab_path)},
        "do_lower_case": do_lower_case,
        "source": build_loop.source_entry(input_path),
        "counters": dict(sorted(result.counters.items())),
        "row_order": "block i = record i of the shards in sorted order",
    }

  return build_loop.run_build(
      items=build_loop.read_items(input_path),
      processor=processor,
      output_prefix=output_prefix,
      num_shards=num_shards,
      num_workers=num_workers,
      chunk_size=chunk_size,
      skip_bad_records=skip_bad_records,
      input_path=input_path,
      make_manifest=make_manifest,
      what=f"retrieval corpus ({mode})",
      allow_empty=allow_empty)


def define_flags():
  flags.DEFINE_string("input", None, "jsonl or jsonl.gz input: {title, text|body, id?}.")
  flags.DEFINE_string("output_prefix", None, "Shards are <prefix>-00000-of-000NN.")
  flags.DEFINE_string("vocab_path", None, "BERT vocab.txt.")
  flags.DEFINE_boolean("do_lower_case", True, "Uncased tokenization.")
  flags.DEFINE_enum("mode", "passages", list(retrieval_examples.MODES),
                    "passages: one block per line; articles: ORQA block packing.")
  flags.DEFINE_integer("max_block_length", 288,
                       "Wordpiece budget of [CLS] title [SEP] block [SEP] (articles).")
  flags.DEFINE_integer("num_shards", 50, "Number of output shards.")
  flags.DEFINE_integer("num_workers", os.cpu_count() or 1, "Worker processes.")
  flags.DEFINE_integer("chunk_size", 256, "Records per worker task / tokenizer batch.")
  flags.DEFINE_boolean("skip_bad_records", False,
                       "Count and skip bad records instead of failing.")
  flags.DEFINE_integer("total_documents", 0,
                       "If set, the expected number of blocks (checked, as the original).")
  flags.DEFINE_boolean("allow_empty", False,
                       "Commit a corpus without blocks instead of failing.")
  flags.mark_flags_as_required(["input", "output_prefix", "vocab_path"])


def main(argv):
  del argv  # Unused.
  f = flags.FLAGS
  # Bad input is reported in one line by cli.run; nothing was written then.
  result = build(f.input, f.output_prefix, f.vocab_path,
                 do_lower_case=f.do_lower_case, mode=f.mode,
                 max_block_length=f.max_block_length, num_shards=f.num_shards,
                 num_workers=f.num_workers, chunk_size=f.chunk_size,
                 skip_bad_records=f.skip_bad_records,
                 total_documents=f.total_documents, allow_empty=f.allow_empty)
  logging.info("Wrote %d blocks to %s (manifest %s)", result.num_records,
               os.path.dirname(result.shard_paths[0]), result.manifest_path)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
