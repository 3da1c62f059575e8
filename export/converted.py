"""The output of `python -m export.convert`: realm-tf models built from imported weights.

Layout (written under a temp name and renamed into place when complete):

  <output>/config.json            RealmConfig: both BERT shapes, projection size and
                                  epsilon, vocab_path (<output>/vocab.txt), do_lower_case.
                                  A part the input lacks copies the other part's shape.
  <output>/conversion.json        manifest: format, input, components, for each the map
                                  target variable -> input name, ignored inputs and why,
                                  notes, casing and where it came from
  <output>/vocab.txt              the vocabulary (when the input or --vocab_path has one)
  <output>/embedder/ckpt-<step>   tf.train.Checkpoint(encoder=BertEncoderV2,
                                  projection=Dense, projection_layer_norm=LayerNormalization)
  <output>/embedder/encoded/encoded.ckpt   block_emb [K, D], when present
  <output>/query_embedder/...     a separate query tower (HF RealmScorer, unshared), rare
  <output>/bert/ckpt-<step>       tf.train.Checkpoint(encoder=BertEncoderV2,
                                  masked_lm=MaskedLMHead (when the input has one)
                                  [, span_scorer=SpanScorer])
  <output>/bert/span_scorer.npz   ORQA's span MLP as numpy (orqa.models.span_scorer.WEIGHT_NAMES)
  <output>/tf_hub/embedder, tf_hub/bert    with --export_hub: the TF-Hub modules of
                                  (realm_tf.tf_hub_modules), the embedder with
                                  encoded/encoded.ckpt when there is a block index

The `encoder` / `masked_lm` keys are tf-models-official's, so
`realm_tf.modeling.weights.load_bert_weights` (and `load_pretrained_realm`, which also
loads the projection) read these checkpoints directly; `load_converted` rebuilds all
models.
"""

import dataclasses
import io
import json
import os
import time
from typing import Any, Dict, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from export import imported
from export.imported import ImportedWeights
from orqa.models.span_scorer import SpanScorer
from realm_tf.modeling.config import RealmConfig
from realm_tf.modeling.embedder import ProjectedEmbedder
from realm_tf.modeling.reader import KnowledgeAugmentedEncoder
from realm_tf.modeling import weight_assign
from realm_tf.modeling.weight_assign import ConversionError
from realm_tf.modeling import weights
from realm_tf.retrieval import block_emb_file
from realm_tf.retrieval import export_dirs
from realm_tf import tf_hub_modules as tf_hub
from realm_tf.tokenization import Tokenizer

MANIFEST_FILE = "conversion.json"
VOCAB_FILE = "vocab.txt"
EMBEDDER_DIR = "embedder"
QUERY_EMBEDDER_DIR = "query_embedder"
READER_DIR = "bert"
HUB_DIR = "tf_hub"
SPAN_NPZ = "span_scorer.npz"
CHECKPOINT_NAME = "ckpt"
_DEFAULT_QUERY_SEQ_LEN, _DEFAULT_CANDIDATE_SEQ_LEN = 96, 288


@dataclasses.dataclass
class ConvertedModels:
  """realm-tf models holding converted weights (None where the input had no such part)."""
  config: RealmConfig
  embedder: Optional[ProjectedEmbedder] = None
  query_embedder: Optional[ProjectedEmbedder] = None
  reader: Optional[KnowledgeAugmentedEncoder] = None
  span_scorer: Optional[SpanScorer] = None
  manifest: Dict[str, Any] = dataclasses.field(default_factory=dict)


def realm_config_for(imp: ImportedWeights, vocab_path: Optional[str],
                     do_lower_case: bool) -> RealmConfig:
  """The RealmConfig of the imported parts (sequence lengths shrunk to fit small BERTs)."""
  first = imp.reader or imp.embedder
  bert = imp.reader.config if imp.reader else first.config
  embedder = imp.embedder.config if imp.embedder else first.config
  projection_size = 128
  if imp.embedder:
    projection_size = int(imp.embedder.tensors["projection/kernel"].value.shape[-1])
  query_len, candidate_len = _DEFAULT_QUERY_SEQ_LEN, _DEFAULT_CANDIDATE_SEQ_LEN
  room = min(bert.max_position_embeddings, embedder.max_position_embeddings)
  if query_len + candidate_len > room:
    query_len = max(2, room // 4)
    candidate_len = room - query_len
    imp.notes.append(f"max_position_embeddings {room} < {_DEFAULT_QUERY_SEQ_LEN} + "
                     f"{_DEFAULT_CANDIDATE_SEQ_LEN}: config.json uses query_seq_len "
                     f"{query_len}, candidate_seq_len {candidate_len}.")
  try:
    return RealmConfig(bert=bert, embedder=embedder, projection_size=projection_size,
                       embedder_layer_norm_epsilon=imp.projection_layer_norm_epsilon,
                       share_embedders=imp.query_embedder is None,
                       query_seq_len=query_len, candidate_seq_len=candidate_len,
                       vocab_path=vocab_path, do_lower_case=do_lower_case)
  except ValueError as e:
    raise ConversionError(f"{imp.input_path}: {e}") from e


def _projection_targets(embedder: ProjectedEmbedder) -> Dict[str, tf.Variable]:
  return {"projection/kernel": embedder.projection.kernel,
          "projection/bias": embedder.projection.bias,
          "projection_layer_norm/gamma": embedder.layer_norm.gamma,
          "projection_layer_norm/beta": embedder.layer_norm.beta}


def _new_embedder(config: RealmConfig, name: str) -> ProjectedEmbedder:
  return ProjectedEmbedder(config.embedder, projection_size=config.projection_size,
                           dropout_rate=config.embedder_dropout_rate,
                           layer_norm_epsilon=config.embedder_layer_norm_epsilon,
                           name=name).build_variables()


def _build_embedder(config: RealmConfig, part: imported.BertPart, name: str):
  embedder = _new_embedder(config, name)
  targets = weights.canonical_targets(embedder.encoder, config.embedder.num_hidden_layers)
  targets.update(_projection_targets(embedder))
  mapping = weight_assign.assign_strict(targets, part.tensors, part.scope)
  return embedder, mapping


def _build_reader(config: RealmConfig, part: imported.BertPart, notes):
  reader = KnowledgeAugmentedEncoder(config.bert, name="bert").build_variables()
  sources, head = weight_assign.split_optional(part.tensors, imported.MLM_HEAD_NAMES,
                                               "MLM head (cls/predictions)", part.scope)
  targets = weights.canonical_targets(reader.encoder, config.bert.num_hidden_layers,
                                      reader.masked_lm if head else None)
  if head is None:
    notes.append(f"{part.scope} has no MLM head (cls/predictions): the reader's head keeps "
                 "its random initialization.")
  else:
    sources = {**sources, **head}
  mapping = weight_assign.assign_strict(targets, sources, part.scope)
  return reader, mapping, head is not None


def build_models(imp: ImportedWeights, vocab_path: Optional[str] = None,
                 do_lower_case: bool = True) -> ConvertedModels:
  """Builds the Keras models of every imported part and assigns the weights strictly."""
  config = realm_config_for(imp, vocab_path, do_lower_case)
  models = ConvertedModels(config=config)
  components = {}
  if imp.embedder:
    models.embedder, mapping = _build_embedder(config, imp.embedder, EMBEDDER_DIR)
    components[EMBEDDER_DIR] = dict(variables=mapping, source=imp.embedder.scope)
  if imp.query_embedder:
    models.query_embedder, mapping = _build_embedder(config, imp.query_embedder,
                                                     QUERY_EMBEDDER_DIR)
    components[QUERY_EMBEDDER_DIR] = dict(variables=mapping, source=imp.query_embedder.scope)
  if imp.reader:
    models.reader, mapping, has_head = _build_reader(config, imp.reader, imp.notes)
    components[READER_DIR] = dict(variables=mapping, source=imp.reader.scope,
                                  mlm_head=has_head)
  if imp.span_scorer:
    if not imp.reader:
      raise ConversionError(f"{imp.input_path}: a span scorer without its reader BERT.")
    models.span_scorer = SpanScorer(imp.span_hidden_size, imp.span_layer_norm_epsilon,
                                    name="span_scorer")
    models.span_scorer.build_variables(config.bert.hidden_size)
    mapping = weight_assign.assign_strict(models.span_scorer.weight_dict(), imp.span_scorer,
                                          f"{imp.reader.scope} span MLP")
    components[READER_DIR]["span_scorer"] = dict(
        variables=mapping, span_hidden_size=imp.span_hidden_size,
        layer_norm_epsilon=imp.span_layer_norm_epsilon)
  if imp.block_emb is not None:
    if not imp.embedder:
      raise ConversionError(f"{imp.input_path}: a block index ({imp.block_emb_source}) "
                            "without the embedder that computed it.")
    if imp.block_emb.ndim != 2:
      raise ConversionError(f"{imp.block_emb_source}: block_emb has shape "
                            f"{imp.block_emb.shape}, expected [K, D].")
    if imp.block_emb.shape[1] != config.projection_size:
      raise ConversionError(
          f"{imp.block_emb_source}: block_emb has shape {imp.block_emb.shape}, but the "
          f"embedder projects to D = {config.projection_size} "
          f"(projection/kernel {(config.embedder.hidden_size, config.projection_size)}).")
  models.manifest = dict(components=components)
  return models


def embedder_checkpoint(embedder: ProjectedEmbedder) -> tf.train.Checkpoint:
  """The checkpoint object of an embedder component (keys of the module docstring)."""
  return tf.train.Checkpoint(encoder=embedder.encoder, projection=embedder.projection,
                             projection_layer_norm=embedder.layer_norm)


def reader_checkpoint(reader: KnowledgeAugmentedEncoder,
                      span_scorer: Optional[SpanScorer] = None,
                      mlm_head: bool = True) -> tf.train.Checkpoint:
  """The checkpoint object of the reader component (keys of the module docstring).

  Without `mlm_head` (the input had none) the head is left out, so that loaders keep
  their own initialization and say so, instead of reading a random head as pre-trained.
  """
  items = dict(encoder=reader.encoder)
  if mlm_head:
    items["masked_lm"] = reader.masked_lm
  if span_scorer is not None:
    items["span_scorer"] = span_scorer
  return tf.train.Checkpoint(**items)


def _save(checkpoint: tf.train.Checkpoint, directory: str, step: int) -> str:
  """Writes `<directory>/ckpt-<step>` (no save counter: every value is a model weight)
  and a `checkpoint` state file with a relative path, so `tf.train.latest_checkpoint`
  finds it after the output directory is renamed."""
  name = f"{CHECKPOINT_NAME}-{step}"
  path = checkpoint.write(os.path.join(directory, name))
  with tf.io.gfile.GFile(os.path.join(directory, "checkpoint"), "w") as f:
    f.write(f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')
  return path


def _link_or_copy_tree(src: str, dst: str):
  """Hard-links (or copies, across devices / file systems) every file of `src` to `dst`."""
  tf.io.gfile.makedirs(dst)
  for name in tf.io.gfile.listdir(src):
    source, target = os.path.join(src, name), os.path.join(dst, name)
    try:
      os.link(source, target)
    except OSError:
      tf.io.gfile.copy(source, target)


def _resolve_casing(imp: ImportedWeights, vocab_path: Optional[str],
                    do_lower_case: Optional[bool]):
  if do_lower_case is not None:
    return do_lower_case, "--do_lower_case"
  if imp.do_lower_case is not None:
    return imp.do_lower_case, imp.do_lower_case_source
  value, how = imported.infer_do_lower_case(vocab_path, imp.input_path)
  if value is None:
    imp.notes.append("Casing unknown (no vocabulary): do_lower_case=True assumed.")
    return True, "default"
  return value, how


def write_output(imp: ImportedWeights, output_dir: str, export_hub: bool = False,
                 vocab_path: Optional[str] = None,
                 do_lower_case: Optional[bool] = None) -> Dict[str, Any]:
  """Builds the models, writes `output_dir` (module docstring) atomically.

  Args:
    imp: what the reader of the input found.
    output_dir: must not exist.
    export_hub: also write the TF-Hub modules under `tf_hub/` (needs a vocabulary).
    vocab_path: overrides the input's vocabulary.
    do_lower_case: overrides the input's (or the inferred) casing.

  Returns:
    The manifest written to `conversion.json`.
  """
  output_dir = os.path.normpath(output_dir)
  if tf.io.gfile.exists(output_dir):
    raise ConversionError(f"--output {output_dir} already exists; conversions never "
                          "overwrite, choose a new directory.")
  vocab_src = vocab_path or imp.vocab_path
  if export_hub and not vocab_src:
    raise ConversionError(f"--export_hub needs a vocabulary and {imp.input_path} has none: "
                          "pass --vocab_path.")
  lower, lower_source = _resolve_casing(imp, vocab_src, do_lower_case)
  final_vocab = os.path.join(os.path.abspath(output_dir), VOCAB_FILE) if vocab_src else None
  models = build_models(imp, final_vocab, lower)
  if vocab_src:
    with tf.io.gfile.GFile(vocab_src, "r") as f:
      num_tokens = sum(1 for _ in f)
    vocab_size = models.config.bert.vocab_size
    if num_tokens > vocab_size:
      raise ConversionError(f"{vocab_src} has {num_tokens} tokens, more than the "
                            f"{vocab_size} rows of the word embeddings.")
    if num_tokens < vocab_size:
      imp.notes.append(f"{vocab_src} has {num_tokens} tokens for {vocab_size} embedding "
                       "rows (the extra rows are never used).")
  staging = export_dirs.temp_dir_for(output_dir)
  tf.io.gfile.makedirs(staging)
  try:
    manifest = _write_staged(imp, models, staging, output_dir, export_hub, vocab_src,
                             lower_source)
    export_dirs.commit_directory(staging, output_dir)
  finally:
    export_dirs.remove_tree(staging)
  for note in imp.notes:
    logging.info("%s", note)
  return manifest


def _write_staged(imp, models: ConvertedModels, staging: str, output_dir: str,
                  export_hub: bool, vocab_src: Optional[str], lower_source) -> Dict[str, Any]:
  config = models.config
  components = models.manifest["components"]
  step = int(imp.global_step)
  if vocab_src:
    tf.io.gfile.copy(vocab_src, os.path.join(staging, VOCAB_FILE))
  for name, model in ((EMBEDDER_DIR, models.embedder),
                      (QUERY_EMBEDDER_DIR, models.query_embedder)):
    if model is not None:
      path = _save(embedder_checkpoint(model), os.path.join(staging, name), step)
      components[name]["checkpoint"] = os.path.relpath(path, staging)
      _write_json(os.path.join(staging, name, "bert_config.json"), config.embedder.to_dict())
  if models.reader is not None:
    path = _save(reader_checkpoint(models.reader, models.span_scorer,
                                   components[READER_DIR]["mlm_head"]),
                 os.path.join(staging, READER_DIR), step)
    components[READER_DIR]["checkpoint"] = os.path.relpath(path, staging)
    _write_json(os.path.join(staging, READER_DIR, "bert_config.json"), config.bert.to_dict())
    if models.span_scorer is not None:
      arrays = {k: v.numpy() for k, v in models.span_scorer.weight_dict().items()}
      buffer = io.BytesIO()  # zip needs a seekable file; GFile (gs://) is not.
      np.savez(buffer, **arrays)
      with tf.io.gfile.GFile(os.path.join(staging, READER_DIR, SPAN_NPZ), "wb") as f:
        f.write(buffer.getvalue())
      components[READER_DIR]["span_scorer"]["npz"] = os.path.join(READER_DIR, SPAN_NPZ)
  encoded = None
  if imp.block_emb is not None:
    encoded = block_emb_file.checkpoint_prefix(os.path.join(staging, EMBEDDER_DIR))
    block_emb_file.write_block_emb(encoded, imp.block_emb)
    components["block_emb"] = dict(prefix=os.path.relpath(encoded, staging),
                                   shape=list(imp.block_emb.shape),
                                   source=imp.block_emb_source)
  hub = {}
  if export_hub:
    hub = _export_hub(models, staging, os.path.join(staging, VOCAB_FILE), encoded)
  config.save(staging)
  manifest = dict(
      format=imp.source_format,
      input=imp.input_path if "://" in imp.input_path else os.path.abspath(imp.input_path),
      output=os.path.abspath(output_dir),
      created=int(time.time()), global_step=step, components=components,
      ignored=weight_assign.describe_ignored(imp.ignored), notes=list(imp.notes),
      vocab=dict(path=VOCAB_FILE if vocab_src else None, source=vocab_src,
                 do_lower_case=config.do_lower_case, do_lower_case_source=lower_source),
      projection_layer_norm_epsilon=(imp.projection_layer_norm_epsilon
                                     if imp.embedder else None),
      hub_modules=hub)
  _write_json(os.path.join(staging, MANIFEST_FILE), manifest)
  return manifest


def _export_hub(models: ConvertedModels, staging: str, vocab: str,
                encoded: Optional[str]) -> Dict[str, str]:
  tokenizer = Tokenizer(vocab, do_lower_case=models.config.do_lower_case)
  hub = {}
  for name, model in ((EMBEDDER_DIR, models.embedder),
                      (QUERY_EMBEDDER_DIR, models.query_embedder)):
    if model is not None:
      path = os.path.join(staging, HUB_DIR, name)
      tf_hub.save_embedder(model, tokenizer, path, models.config.query_seq_len)
      hub[name] = os.path.relpath(path, staging)
  if encoded and models.embedder is not None:
    _link_or_copy_tree(os.path.dirname(encoded),
                       os.path.join(staging, HUB_DIR, EMBEDDER_DIR, block_emb_file.ENCODED_DIR))
  if models.reader is not None:
    path = os.path.join(staging, HUB_DIR, READER_DIR)
    tf_hub.save_reader(models.reader, tokenizer, path)
    hub[READER_DIR] = os.path.relpath(path, staging)
  return hub


def _write_json(path: str, value):
  with tf.io.gfile.GFile(path, "w") as f:
    f.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


def read_manifest(output_dir: str) -> Dict[str, Any]:
  with tf.io.gfile.GFile(os.path.join(output_dir, MANIFEST_FILE), "r") as f:
    return json.load(f)


def load_converted(output_dir: str) -> ConvertedModels:
  """Rebuilds every model of a conversion output and restores its weights (all of them:
  `assert_consumed`)."""
  config = RealmConfig.load(output_dir)
  manifest = read_manifest(output_dir)
  components = manifest["components"]
  models = ConvertedModels(config=config, manifest=manifest)
  for name in (EMBEDDER_DIR, QUERY_EMBEDDER_DIR):
    if name in components:
      embedder = _new_embedder(config, name)
      embedder_checkpoint(embedder).read(
          os.path.join(output_dir, components[name]["checkpoint"])).assert_consumed()
      setattr(models, name, embedder)
  if READER_DIR in components:
    reader = KnowledgeAugmentedEncoder(config.bert, name="bert").build_variables()
    span = components[READER_DIR].get("span_scorer")
    scorer = None
    if span:
      scorer = SpanScorer(span["span_hidden_size"], span["layer_norm_epsilon"],
                          name="span_scorer").build_variables(config.bert.hidden_size)
    status = reader_checkpoint(reader, scorer, components[READER_DIR]["mlm_head"]).read(
        os.path.join(output_dir, components[READER_DIR]["checkpoint"]))
    status.assert_consumed()
    models.reader, models.span_scorer = reader, scorer
  return models


def block_emb_prefix(output_dir: str) -> Optional[str]:
  """The block index of a conversion output, or None."""
  entry = read_manifest(output_dir)["components"].get("block_emb")
  return os.path.join(output_dir, entry["prefix"]) if entry else None
