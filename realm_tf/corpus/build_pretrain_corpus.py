r"""Builds the REALM pre-training corpus X: passages with sentences and salient spans.

  python -m realm_tf.corpus.build_pretrain_corpus \
      --input=passages.jsonl.gz --output_prefix=out/pretrain \
      [--spans=rules|spacy|precomputed:<path>] [--num_shards=50] [--eval_shards=5]

Input: jsonl or jsonl.gz, one `{"title", "text"}` (optional `"id"`) a line.
Output: GZIP TFRecord shards `<output_prefix>.builds/<build_id>/<name>-00000-of-000NN` with
the features `title`, `text`, `sentence_byte_start/limit` and
`span_byte_start/limit` (UTF-8 byte offsets) and `<output_prefix>.manifest.json`, which
points at them; a rebuild replaces the corpus as a whole (`realm_tf.corpus.manifest`).
Consumers take `--pretrain_corpus_path` as the prefix, the manifest, or a glob of shard
names (`<output_prefix>-*`). As in the original, the first `--eval_shards` shards in
sorted order are the eval split, the rest the train split. A build that produces no
passage is an error unless `--allow_empty`.

Salient spans (`--spans`):
  rules                 dates, numbers with units, capitalised names (no model);
  spacy                 entities of an installed spaCy pipeline (`--spacy_model`);
  precomputed:<path>    jsonl(.gz) `{"id", "sents", "ents"}` with character offsets,
                        aligned line by line with the input (ids must match).
"""

import os

import realm_tf  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow loads)
from absl import flags
from absl import logging

from realm_tf import cli
from realm_tf.corpus import build_loop
from realm_tf.corpus import pretrain_examples
from realm_tf.corpus import salient_spans as spans_lib
from realm_tf import errors

FEATURES = ("title", "text", "sentence_byte_start", "sentence_byte_limit",
            "span_byte_start", "span_byte_limit")


def build(input_path: str, output_prefix: str, *, spans: str = "rules",
          spacy_model: str = "en_core_web_sm", span_labels=spans_lib.SALIENT_LABELS,
          num_shards: int = 50, eval_shards: int = 5, num_workers: int = 1,
          chunk_size: int = 256, skip_bad_records: bool = False,
          shard_suffix: str = "", allow_empty: bool = False) -> build_loop.BuildResult:
  """Builds the pre-training corpus; see the module docstring.

  Raises:
    ArgumentError: an argument is out of range (checked before anything is written).
    errors.InputFileError: a bad input or annotation record (unless `skip_bad_records`).
    AnnotatorUnavailableError: `--spans=spacy` without spaCy or the pipeline.
    EmptyCorpusError: no passage was produced and not `allow_empty`.
  """
  build_loop.check_build_args(num_shards, num_workers, chunk_size)
  if not 0 <= eval_shards < num_shards:
    raise errors.ArgumentError(f"--eval_shards={eval_shards} must be in [0, --num_shards="
                               f"{num_shards}) so that a train split remains")
  if "/" in shard_suffix:
    raise errors.ArgumentError(f"--shard_suffix={shard_suffix!r} must be a file name suffix")
  if not os.path.exists(input_path):
    raise FileNotFoundError(f"Input not found: {input_path}")
  annotator = spans_lib.make_annotator(spans, spacy_model, span_labels)
  annotations_path = getattr(annotator, "path", None)
  if annotations_path is not None and not os.path.exists(annotations_path):
    raise FileNotFoundError(f"Annotations not found: {annotations_path}")
  annotator.setup()  # Fails early (e.g. spaCy missing) before any worker starts.
  processor = pretrain_examples.PretrainProcessor(annotator)

  def make_manifest(result: build_loop.BuildResult) -> dict:
    shards = build_loop.shard_entries(result)
    annotator_entry = {"name": annotator.name}
    if annotator.name != "rules":
      annotator_entry["labels"] = sorted(span_labels)
    if annotator.name == "spacy":
      annotator_entry["spacy_model"] = spacy_model
    if annotations_path is not None:
      annotator_entry["annotations"] = build_loop.source_entry(annotations_path)
    return {
        "format": "realm_pretrain_corpus",
        "original": "language/realm/example_generator.py (reader)",
        "builder": "realm_tf.corpus.build_pretrain_corpus",
        "count": result.num_records,
        "num_shards": num_shards,
        "shards": shards,
        "eval_shards": [s["name"] for s in shards[:eval_shards]],
        "train_shards": [s["name"] for s in shards[eval_shards:]],
        "split_rule": (f"as the original: the first {eval_shards} shards in sorted "
                       "order are the eval split, the rest the train split"),
        "eval_count": sum(s["count"] for s in shards[:eval_shards]),
        "train_count": sum(s["count"] for s in shards[eval_shards:]),
        "compression": "GZIP",
        "features": list(FEATURES),
        "offsets": "UTF-8 byte offsets into text; start inclusive, limit exclusive",
        "spans": annotator_entry,
        "source": build_loop.source_entry(input_path),
        "counters": dict(sorted(result.counters.items())),
    }

  return build_loop.run_build(
      items=build_loop.read_items(input_path, annotations_path),
      processor=processor,
      output_prefix=output_prefix,
      num_shards=num_shards,
      num_workers=num_workers,
      chunk_size=chunk_size,
      skip_bad_records=skip_bad_records,
      input_path=input_path,
      annotations_path=annotations_path,
      shard_suffix=shard_suffix,
      make_manifest=make_manifest,
      what=f"pre-training corpus ({annotator.name})",
      allow_empty=allow_empty)


def define_flags():
  flags.DEFINE_string("input", None, "jsonl or jsonl.gz input: {title, text, id?}.")
  flags.DEFINE_string("output_prefix", None, "Shards are <prefix>-00000-of-000NN.")
  flags.DEFINE_string("spans", "rules", "rules | spacy | precomputed:<path>.")
  flags.DEFINE_string("spacy_model", "en_core_web_sm",
                      "spaCy pipeline (package name or directory) for --spans=spacy.")
  flags.DEFINE_list("span_labels", sorted(spans_lib.SALIENT_LABELS),
                    "Entity labels kept as salient spans (spacy, precomputed).")
  flags.DEFINE_integer("num_shards", 50, "Number of output shards.")
  flags.DEFINE_integer("eval_shards", 5,
                       "The first N shards in sorted order form the eval split.")
  flags.DEFINE_string("shard_suffix", "",
                      "Appended to shard names, e.g. .tfrecord.gz for the original's glob.")
  flags.DEFINE_integer("num_workers", os.cpu_count() or 1, "Worker processes.")
  flags.DEFINE_integer("chunk_size", 256, "Records per worker task.")
  flags.DEFINE_boolean("skip_bad_records", False,
                       "Count and skip bad records instead of failing.")
  flags.DEFINE_boolean("allow_empty", False,
                       "Commit a corpus without passages instead of failing.")
  flags.mark_flags_as_required(["input", "output_prefix"])


def main(argv):
  del argv  # Unused.
  f = flags.FLAGS
  # Bad input is reported in one line by cli.run; nothing was written then.
  result = build(f.input, f.output_prefix, spans=f.spans, spacy_model=f.spacy_model,
                 span_labels=frozenset(f.span_labels), num_shards=f.num_shards,
                 eval_shards=f.eval_shards, num_workers=f.num_workers,
                 chunk_size=f.chunk_size, skip_bad_records=f.skip_bad_records,
                 shard_suffix=f.shard_suffix, allow_empty=f.allow_empty)
  logging.info("Wrote %d passages to %s (manifest %s)", result.num_records,
               os.path.dirname(result.shard_paths[0]), result.manifest_path)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
