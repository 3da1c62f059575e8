r"""Builds the REALM pre-training corpus X: passages with sentences and salient spans.

  python -m realm_tf.corpus.build_pretrain_corpus \
      --input=passages.jsonl.gz --output_prefix=out/pretrain \
      [--spans=rules|spacy|precomputed:<path>] [--num_shards=50] [--eval_shards=5]

Input: jsonl or jsonl.gz, one `{"title", "text"}` (optional `"id"`) a line.
Output: GZIP TFRecord shards `<output_prefix>-00000-of-000NN` with the features of spec
1.1 (`title`, `text`, `sentence_byte_start/limit`, `span_byte_start/limit`: UTF-8 byte
offsets) and `<output_prefix>.manifest.json`. As in the original, the first
`--eval_shards` shards in sorted order are the eval split, the rest the train split.

Salient spans (`--spans`):
  rules                 dates, numbers with units, capitalised names (no model);
  spacy                 entities of an installed spaCy pipeline (`--spacy_model`);
  precomputed:<path>    jsonl(.gz) `{"id", "sents", "ents"}` with character offsets,
                        aligned line by line with the input (ids must match).
"""

import os
import sys

import realm_tf  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow loads)
from absl import app
from absl import flags
from absl import logging

from realm_tf.corpus import io as corpus_io
from realm_tf.corpus import pipeline
from realm_tf.corpus import pretrain_examples
from realm_tf.corpus import spans as spans_lib

FEATURES = ("title", "text", "sentence_byte_start", "sentence_byte_limit",
            "span_byte_start", "span_byte_limit")


def build(input_path: str, output_prefix: str, *, spans: str = "rules",
          spacy_model: str = "en_core_web_sm", span_labels=spans_lib.SALIENT_LABELS,
          num_shards: int = 50, eval_shards: int = 5, num_workers: int = 1,
          chunk_size: int = 256, skip_bad_records: bool = False,
          shard_suffix: str = "") -> pipeline.BuildResult:
  """Builds the pre-training corpus; see the module docstring.

  Raises:
    CorpusFormatError: a bad input or annotation record (unless `skip_bad_records`).
    AnnotatorUnavailableError: `--spans=spacy` without spaCy or the pipeline.
  """
  if not os.path.exists(input_path):
    raise FileNotFoundError(f"Input not found: {input_path}")
  if not 0 <= eval_shards < num_shards:
    raise ValueError(f"--eval_shards={eval_shards} must be in [0, --num_shards="
                     f"{num_shards}) so that a train split remains")
  annotator = spans_lib.make_annotator(spans, spacy_model, span_labels)
  annotations_path = getattr(annotator, "path", None)
  if annotations_path is not None and not os.path.exists(annotations_path):
    raise FileNotFoundError(f"Annotations not found: {annotations_path}")
  annotator.setup()  # Fails early (e.g. spaCy missing) before any worker starts.
  processor = pretrain_examples.PretrainProcessor(annotator)

  def make_manifest(result: pipeline.BuildResult) -> dict:
    shards = pipeline.shard_entries(result)
    annotator_entry = {"name": annotator.name}
    if annotator.name != "rules":
      annotator_entry["labels"] = sorted(span_labels)
    if annotator.name == "spacy":
      annotator_entry["spacy_model"] = spacy_model
    if annotations_path is not None:
      annotator_entry["annotations"] = pipeline.source_entry(annotations_path)
    return {
        "format": "realm_pretrain_corpus",
        "spec": "reference spec 1.1",
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
        "source": pipeline.source_entry(input_path),
        "counters": dict(sorted(result.counters.items())),
    }

  return pipeline.run_build(
      items=pipeline.read_items(input_path, annotations_path),
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
      what=f"pre-training corpus ({annotator.name})")


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
  flags.mark_flags_as_required(["input", "output_prefix"])


def main(argv):
  del argv  # Unused.
  f = flags.FLAGS
  try:
    result = build(f.input, f.output_prefix, spans=f.spans, spacy_model=f.spacy_model,
                   span_labels=frozenset(f.span_labels), num_shards=f.num_shards,
                   eval_shards=f.eval_shards, num_workers=f.num_workers,
                   chunk_size=f.chunk_size, skip_bad_records=f.skip_bad_records,
                   shard_suffix=f.shard_suffix)
  except (corpus_io.CorpusFormatError, spans_lib.AnnotatorUnavailableError,
          FileNotFoundError, ValueError) as e:
    # A clear one-line message instead of a traceback; nothing was written.
    sys.exit(f"{type(e).__name__}: {e}")
  logging.info("Wrote %d passages to %s-*-of-%05d%s", result.num_records,
               f.output_prefix, f.num_shards, f.shard_suffix)


if __name__ == "__main__":
  define_flags()
  app.run(main)
