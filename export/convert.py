r"""Converts released REALM / ORQA / BERT checkpoints into realm-tf checkpoints.

    python -m export.convert --from=bert_tf1|realm_tf1|hf_bert|hf_realm \
        --input=PATH --output=DIR [--export_hub] [--vocab_path=...] [--do_lower_case=...]

Formats (docs/CHECKPOINTS.md lists the public checkpoints of each):
  bert_tf1   Google BERT TF1: a folder with bert_model.ckpt, bert_config.json, vocab.txt
             (or a checkpoint prefix / TF-Hub v1 BERT module); `cls/predictions/*` is
             the reader's MLM head.
  realm_tf1  original REALM / ORQA TF1 hub modules and checkpoints: the embedder
             (BERT + projection + LayerNorm), the reader BERT with its MLM head, ORQA's
             reader with its span MLP, and `encoded/encoded.ckpt` (block_emb).
  hf_bert    Hugging Face BertModel / BertForMaskedLM / BertForPreTraining folders.
  hf_realm   Hugging Face RealmEmbedder, RealmScorer, RealmKnowledgeAugEncoder,
             RealmReader, RealmForOpenQA (with its block_emb) folders.

Hugging Face weights are read from safetensors only (no PyTorch). The output directory
(`export.converted`) holds config.json, conversion.json, vocab.txt, the `embedder/` and
`bert/` checkpoints, the block index, and with --export_hub the TF-Hub modules under
`tf_hub/`. A mismatch (a missing, extra or mis-shaped variable) is an error naming the
variable and both shapes; nothing is written then.
"""

import export  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import json
from typing import Optional

from absl import app
from absl import flags
from absl import logging

from export import converted
from export import hf_realm
from export.imported import ImportedWeights
from export import tf1_checkpoints
from realm_tf import cli
from realm_tf.modeling.weight_assign import ConversionError
from realm_tf.retrieval import block_emb_file

FORMATS = ("bert_tf1", "realm_tf1", "hf_bert", "hf_realm")

FLAGS = flags.FLAGS


def define_flags():
  """Defines the command-line flags (only when run as a program: tests import this
  module beside other entry points)."""
  flags.DEFINE_enum("from", None, FORMATS, "Format of --input.")
  flags.DEFINE_string("input", None, "Checkpoint prefix, module directory or HF folder.")
  flags.DEFINE_string("output", None, "Directory to create (must not exist).")
  flags.DEFINE_boolean("export_hub", False, "Also write the TF-Hub modules under tf_hub/.")
  flags.DEFINE_string("vocab_path", None, "Vocabulary, when the input has none (or to "
                      "override it).")
  flags.DEFINE_boolean("do_lower_case", None, "Casing of the vocabulary; default: from the "
                       "input (HF tokenizer_config.json, 'uncased'/'cased' in the path, or "
                       "the vocabulary).")
  flags.DEFINE_string("bert_config_file", None, "bert_config.json for inputs without one "
                      "(TF1 hub modules): its head count and activation are used.")
  flags.DEFINE_integer("num_attention_heads", None, "Head count of TF1 modules without a "
                       "config (default: hidden_size / 64, as in every Google BERT).")
  flags.DEFINE_string("block_emb", None, "A block_emb checkpoint prefix to add (e.g. "
                      "gs://orqa-data/ict/encoded/encoded.ckpt for an ORQA model directory, "
                      "which does not contain its index).")


def read_input(source_format: str, path: str, bert_config_file: Optional[str] = None,
               num_attention_heads: Optional[int] = None,
               block_emb: Optional[str] = None) -> ImportedWeights:
  """Reads `path` in `source_format` (one of FORMATS)."""
  if source_format == "bert_tf1":
    result = tf1_checkpoints.read_bert_tf1(path, bert_config_file, num_attention_heads)
  elif source_format == "realm_tf1":
    config = (tf1_checkpoints.read_bert_config_file(bert_config_file)
              if bert_config_file else None)
    result = tf1_checkpoints.read_realm_tf1(path, num_attention_heads, config)
  elif source_format == "hf_bert":
    result = hf_realm.read_hf_bert(path)
  elif source_format == "hf_realm":
    result = hf_realm.read_hf_realm(path)
  else:
    raise ConversionError(f"Unknown --from={source_format!r}; expected one of {FORMATS}.")
  if block_emb:
    if result.block_emb is not None:
      raise ConversionError(f"--block_emb={block_emb}, but {path} has a block index "
                            f"already ({result.block_emb_source}).")
    if result.embedder is None:
      raise ConversionError(f"--block_emb needs an embedder; {path} has none.")
    result.block_emb = block_emb_file.read_block_emb(block_emb)
    result.block_emb_source = block_emb
  return result


def convert(source_format: str, input_path: str, output_dir: str, export_hub: bool = False,
            vocab_path: Optional[str] = None, do_lower_case: Optional[bool] = None,
            bert_config_file: Optional[str] = None,
            num_attention_heads: Optional[int] = None,
            block_emb: Optional[str] = None) -> dict:
  """Reads, converts and writes; returns the manifest (`conversion.json`)."""
  imp = read_input(source_format, input_path, bert_config_file, num_attention_heads,
                   block_emb)
  return converted.write_output(imp, output_dir, export_hub=export_hub,
                                vocab_path=vocab_path, do_lower_case=do_lower_case)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  manifest = convert(FLAGS["from"].value, FLAGS.input, FLAGS.output,
                     export_hub=FLAGS.export_hub, vocab_path=FLAGS.vocab_path,
                     do_lower_case=FLAGS.do_lower_case,
                     bert_config_file=FLAGS.bert_config_file,
                     num_attention_heads=FLAGS.num_attention_heads,
                     block_emb=FLAGS.block_emb)
  summary = {name: {k: v for k, v in entry.items() if k != "variables"}
             for name, entry in manifest["components"].items()}
  logging.info("Wrote %s", FLAGS.output)
  print(json.dumps(dict(output=manifest["output"], components=summary,
                        hub_modules=manifest["hub_modules"],
                        ignored=len(manifest["ignored"]), notes=manifest["notes"]),
                   indent=2, sort_keys=True, default=str))


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["from", "input", "output"])
  cli.run(main)
