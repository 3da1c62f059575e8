"""Loading pre-trained BERT weights into the REALM models.

Three sources, detected by `load_bert_weights`:

* Hugging Face BERT folders (`config.json` + `model.safetensors` + `vocab.txt`), via
  `realm_tf.modeling.hf_bert` (numpy only, no PyTorch);
* original TF1 BERT checkpoints (`bert/embeddings/...`, `cls/predictions/...`), the
  checkpoints the original REALM started from;
* tf-models-official TF2 checkpoints: `tf.train.Checkpoint(encoder=<BertEncoder(V2)>)`,
  optionally with `masked_lm=<MaskedLM>` (BertPretrainerV2's checkpoint items).

An embedder tower can also come whole (BERT, projection, LayerNorm) from a realm-tf
embedder module, e.g. an ICT export (`load_embedder_module`).

Before assigning anything, the model's config is checked against what the weights record
(`realm_tf.modeling.architecture`: the config files beside them, or their shapes): sizes,
head count, activation, LayerNorm epsilons, vocabulary size, and for an embedder
projection its size and epsilon. A mismatch raises `WeightsMismatchError` naming the
field, the weights and both values. Tensors are assigned by their canonical (TF1 BERT)
names with `realm_tf.modeling.weight_assign.assign_strict`, as the checkpoint converters
do: every encoder variable must be present with its shape. The MLM head is loaded when
the source has all of it; otherwise (e.g. the sentence-transformers MiniLM, a plain
`BertModel`) it keeps its initialization and the returned report says so.
"""

import dataclasses
import os
import re
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from realm_tf.modeling import architecture
from realm_tf.modeling.architecture import WeightsMismatchError
from realm_tf.modeling.config import BertConfig
from realm_tf.modeling import hf_bert
from realm_tf.modeling import weight_assign

_TF2_VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"


@dataclasses.dataclass
class LoadReport:
  """What `load_bert_weights` did: source format, loaded and skipped parts."""
  source: str
  format: str
  loaded_encoder: bool = False
  loaded_mlm_head: bool = False
  notes: List[str] = dataclasses.field(default_factory=list)


def _mismatch(what: str, weights_value, config_value, source: str):
  return WeightsMismatchError(
      f"{what} mismatch: the weights in {source} have {weights_value}, the model config "
      f"has {config_value}.")


def check_compatible(config: BertConfig, vocab_size: int, hidden_size: int,
                     num_layers: int, source: str):
  """Raises WeightsMismatchError if vocab size, hidden size or layer count differ."""
  if vocab_size != config.vocab_size:
    raise _mismatch("vocab_size", vocab_size, config.vocab_size, source)
  if hidden_size != config.hidden_size:
    raise _mismatch("hidden_size", hidden_size, config.hidden_size, source)
  if num_layers != config.num_hidden_layers:
    raise _mismatch("num_hidden_layers", num_layers, config.num_hidden_layers, source)


def _encoder_targets(encoder, num_layers: int) -> Dict[str, tf.Variable]:
  """Canonical (TF1 BERT) name -> variable of a BertEncoderV2 / BertEncoder."""
  targets = {
      "embeddings/word_embeddings": encoder._embedding_layer.embeddings,  # pylint: disable=protected-access
      "embeddings/position_embeddings": encoder._position_embedding_layer._position_embeddings,  # pylint: disable=protected-access
      "embeddings/token_type_embeddings": encoder._type_embedding_layer.embeddings,  # pylint: disable=protected-access
      "embeddings/LayerNorm/gamma": encoder._embedding_norm_layer.gamma,  # pylint: disable=protected-access
      "embeddings/LayerNorm/beta": encoder._embedding_norm_layer.beta,  # pylint: disable=protected-access
      "pooler/dense/kernel": encoder.pooler_layer.kernel,
      "pooler/dense/bias": encoder.pooler_layer.bias,
  }
  for i in range(num_layers):
    block = encoder.transformer_layers[i]
    attention = block._attention_layer  # pylint: disable=protected-access
    prefix = f"encoder/layer_{i}/"
    for part, dense in (("query", attention._query_dense), ("key", attention._key_dense),  # pylint: disable=protected-access
                        ("value", attention._value_dense)):  # pylint: disable=protected-access
      targets[prefix + f"attention/self/{part}/kernel"] = dense.kernel
      targets[prefix + f"attention/self/{part}/bias"] = dense.bias
    pairs = (("attention/output/dense", attention._output_dense),  # pylint: disable=protected-access
             ("intermediate/dense", block._intermediate_dense),  # pylint: disable=protected-access
             ("output/dense", block._output_dense))  # pylint: disable=protected-access
    for name, dense in pairs:
      targets[prefix + name + "/kernel"] = dense.kernel
      targets[prefix + name + "/bias"] = dense.bias
    for name, norm in (("attention/output/LayerNorm", block._attention_layer_norm),  # pylint: disable=protected-access
                       ("output/LayerNorm", block._output_layer_norm)):  # pylint: disable=protected-access
      targets[prefix + name + "/gamma"] = norm.gamma
      targets[prefix + name + "/beta"] = norm.beta
  return targets


def _mlm_targets(mlm_head) -> Dict[str, tf.Variable]:
  return {
      "cls/predictions/transform/dense/kernel": mlm_head.dense.kernel,
      "cls/predictions/transform/dense/bias": mlm_head.dense.bias,
      "cls/predictions/transform/LayerNorm/gamma": mlm_head.layer_norm.gamma,
      "cls/predictions/transform/LayerNorm/beta": mlm_head.layer_norm.beta,
      "cls/predictions/output_bias": mlm_head.bias,
  }


def canonical_targets(encoder, num_layers: int, mlm_head=None) -> Dict[str, tf.Variable]:
  """Canonical (TF1 BERT) name -> variable of a built encoder and optional MLM head.

  The names are those `assign_canonical` reads (`embeddings/...`, `encoder/layer_N/...`,
  `pooler/dense/...`, `cls/predictions/...`); checkpoint converters use them to check
  that every variable of a source lands somewhere (`realm_tf.modeling.weight_assign`).
  """
  targets = _encoder_targets(encoder, num_layers)
  if mlm_head is not None:
    targets.update(_mlm_targets(mlm_head))
  return targets


def _ensure_built(encoder, mlm_head=None):
  if not encoder.built:
    zeros = tf.zeros([1, 2], tf.int32)
    encoder(dict(input_word_ids=zeros, input_mask=tf.ones_like(zeros),
                 input_type_ids=zeros))
  if mlm_head is not None and not mlm_head.built:
    hidden = encoder.get_embedding_table().shape[-1]
    mlm_head(tf.zeros([1, 2, hidden]), tf.zeros([1, 1], tf.int32))


def _sources(canonical: Dict[str, np.ndarray],
             targets) -> Dict[str, weight_assign.SourceTensor]:
  """The canonical tensors named in `targets` (other tensors are another part's)."""
  return {name: weight_assign.SourceTensor(name, np.asarray(canonical[name]))
          for name in targets if name in canonical}


def assign_canonical(encoder, config: BertConfig, canonical: Dict[str, np.ndarray],
                     source: str, mlm_head=None, report: Optional[LoadReport] = None
                     ) -> LoadReport:
  """Assigns canonical (TF1 BERT named, [in, out] kernels) tensors to encoder and head."""
  report = report or LoadReport(source=source, format="canonical")
  if "embeddings/word_embeddings" not in canonical:
    raise WeightsMismatchError(f"No BERT word embeddings found in {source}.")
  vocab_size, hidden_size = canonical["embeddings/word_embeddings"].shape
  check_compatible(config, vocab_size, hidden_size, hf_bert.num_layers_in(canonical), source)
  _ensure_built(encoder, mlm_head)
  targets = _encoder_targets(encoder, config.num_hidden_layers)
  weight_assign.assign_strict(targets, _sources(canonical, targets), source)
  report.loaded_encoder = True
  if mlm_head is not None:
    head_targets = _mlm_targets(mlm_head)
    head = _sources(canonical, head_targets)
    if len(head) == len(head_targets):
      weight_assign.assign_strict(head_targets, head, source)
      report.loaded_mlm_head = True
    else:
      note = (f"{source} has no complete MLM head (cls/predictions); the head keeps its "
              "initialization.")
      logging.warning(note)
      report.notes.append(note)
  return report


def load_hf_bert(encoder, config: BertConfig, folder: str, mlm_head=None) -> LoadReport:
  """Loads a Hugging Face BERT folder into `encoder` (and `mlm_head` if it has one).

  The folder's own config.json must agree with `config` on every field that changes
  what the model computes (sizes, heads, activation, epsilon, vocab size):
  WeightsMismatchError otherwise.
  """
  architecture.check_bert_config(config, architecture.read_architecture(folder))
  _, canonical = hf_bert.load_hf_bert_folder(folder)
  report = LoadReport(source=folder, format="huggingface")
  return assign_canonical(encoder, config, canonical, folder, mlm_head, report)


def read_tf1_bert_checkpoint(path: str) -> Dict[str, np.ndarray]:
  """Canonical tensors of an original TF1 BERT checkpoint (`bert/...`, `cls/...`)."""
  reader = tf.train.load_checkpoint(path)
  canonical = {}
  for name in reader.get_variable_to_shape_map():
    if name.startswith("bert/"):
      canonical[name[len("bert/"):]] = reader.get_tensor(name)
    elif name.startswith("cls/predictions/"):
      canonical[name] = reader.get_tensor(name)
  return canonical


def load_tf1_bert_checkpoint(encoder, config: BertConfig, path: str,
                             mlm_head=None) -> LoadReport:
  """Loads an original (TF1, google-research/bert) BERT checkpoint."""
  report = LoadReport(source=path, format="tf1_bert")
  return assign_canonical(encoder, config, read_tf1_bert_checkpoint(path), path, mlm_head,
                          report)


def load_tf2_checkpoint(encoder, config: BertConfig, path: str, mlm_head=None,
                        encoder_key: str = "encoder",
                        mlm_key: str = "masked_lm") -> LoadReport:
  """Loads a tf-models-official TF2 checkpoint, `tf.train.Checkpoint(encoder=...)`.

  The checkpoint's encoder may be a `BertEncoderV2` or the older functional
  `BertEncoder` (same checkpoint keys). `mlm_key` names the MaskedLM item of
  BertPretrainerV2 checkpoints; it is loaded into `mlm_head` when present.
  """
  shapes = tf.train.load_checkpoint(path).get_variable_to_shape_map()
  # A checkpoint saves a shared variable once, under its first path in the object graph:
  # the word embeddings may be stored as the MLM head's tied `embedding_table`.
  emb_keys = [f"{encoder_key}/_embedding_layer/embeddings{_TF2_VALUE}",
              f"{mlm_key}/embedding_table{_TF2_VALUE}"]
  found = [k for k in emb_keys if k in shapes]
  if not found:
    raise WeightsMismatchError(f"{path} has no TF2 BERT encoder under '{encoder_key}' "
                               f"(none of {emb_keys}).")
  vocab_size, hidden_size = shapes[found[0]]
  layer_ids = {int(m.group(1)) for m in (
      re.match(rf"{re.escape(encoder_key)}/_transformer_layers/(\d+)/", k) for k in shapes)
               if m}
  check_compatible(config, vocab_size, hidden_size, len(layer_ids), path)
  _ensure_built(encoder, mlm_head)
  report = LoadReport(source=path, format="tf2_checkpoint")
  items = {encoder_key: encoder}
  has_head = mlm_head is not None and any(k.startswith(f"{mlm_key}/dense/") for k in shapes)
  if has_head:
    items[mlm_key] = mlm_head
  status = tf.train.Checkpoint(**items).read(path)
  status.assert_existing_objects_matched()
  status.expect_partial()
  report.loaded_encoder = True
  report.loaded_mlm_head = has_head
  if mlm_head is not None and not has_head:
    report.notes.append(f"{path} has no '{mlm_key}' MLM head; the head keeps its "
                        "initialization.")
  return report


def load_bert_weights(encoder, config: BertConfig, path: str, mlm_head=None) -> LoadReport:
  """Loads BERT weights from a HF folder, a TF1 BERT or a TF2 tf-models checkpoint
  (e.g. an `export.convert` output's `bert/` or `embedder/`), after checking `config`
  against what they record (`architecture.check_bert_config`)."""
  if hf_bert.is_hf_bert_folder(path):
    return load_hf_bert(encoder, config, path, mlm_head)
  prefix = architecture.checkpoint_prefix(path)
  if prefix is None:
    raise FileNotFoundError(f"No HF BERT folder or TF checkpoint at {path}.")
  architecture.check_bert_config(config, architecture.read_architecture(path))
  names = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
  if "bert/embeddings/word_embeddings" in names:
    return load_tf1_bert_checkpoint(encoder, config, prefix, mlm_head)
  return load_tf2_checkpoint(encoder, config, prefix, mlm_head)


def _embedder_towers(model) -> List:
  towers = [model.document_embedder]
  if model.query_embedder is not model.document_embedder:
    towers.append(model.query_embedder)
  return towers


def load_pretrained_realm(model, bert_path: Optional[str] = None,
                          embedder_path: Optional[str] = None) -> Dict[str, LoadReport]:
  """Initializes a `RealmModel`: the reader (encoder + MLM head) from `bert_path` and
  every embedder tower from `embedder_path`. A realm-tf embedder module (a SavedModel,
  e.g. an ICT export) gives the whole tower: BERT, projection and its LayerNorm
  (`load_embedder_module`). Otherwise `embedder_path` gives the towers' BERT, and the
  projection layers too when it is a converted embedder checkpoint
  (`load_embedder_projection`); else they keep their initialization."""
  reports = {}
  if bert_path:
    reports["bert"] = load_bert_weights(model.reader.encoder, model.config.bert, bert_path,
                                        mlm_head=model.reader.masked_lm)
  if embedder_path and architecture.is_saved_model(embedder_path):
    for tower in _embedder_towers(model):
      reports[tower.name] = load_embedder_module(tower, embedder_path)
  elif embedder_path:
    for tower in _embedder_towers(model):
      reports[tower.name] = load_bert_weights(tower.encoder, model.config.embedder,
                                              embedder_path)
      if load_embedder_projection(tower, embedder_path):
        reports[tower.name].notes.append(f"projection loaded from {embedder_path}")
  return reports


def load_embedder_projection(embedder, path: str) -> bool:
  """Loads the projection and its LayerNorm of a `ProjectedEmbedder` from a TF2
  checkpoint with `projection` and `projection_layer_norm` items (the layout of
  `python -m export.convert` embedder checkpoints). Returns False, loading nothing, when
  `path` holds no such items (e.g. a plain BERT checkpoint or a HF folder). The
  projection's size and LayerNorm epsilon must be the model's (WeightsMismatchError)."""
  if hf_bert.is_hf_bert_folder(path):
    return False
  prefix = architecture.checkpoint_prefix(path)
  if prefix is None:
    return False
  shapes = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
  key = f"projection/kernel{_TF2_VALUE}"
  if key not in shapes:
    return False
  if tuple(shapes[key]) != (embedder.encoder_config.hidden_size, embedder.projection_size):
    raise WeightsMismatchError(
        f"Shape mismatch for projection/kernel: the weights in {prefix} have "
        f"{tuple(shapes[key])}, the model expects "
        f"{(embedder.encoder_config.hidden_size, embedder.projection_size)}.")
  architecture.check_projection(embedder.projection_size, embedder.layer_norm.epsilon,
                                architecture.read_architecture(path))
  embedder.build_variables()
  status = tf.train.Checkpoint(projection=embedder.projection,
                               projection_layer_norm=embedder.layer_norm).read(prefix)
  status.assert_existing_objects_matched()
  status.expect_partial()
  return True


def load_embedder_module(embedder, path: str) -> LoadReport:
  """Loads a realm-tf embedder module (`realm_tf.tf_hub_modules.save_embedder`: ICT,
  pre-training and conversion exports) into a `ProjectedEmbedder`: BERT, projection and
  projection LayerNorm, as the original initialized REALM's embedder from its ICT module
  (`embedder_hub_module_handle`, language/realm/model.py).

  The module must record its architecture (`MODULE_ARCHITECTURE_FILE`), and the
  embedder's BERT config and projection must be the recorded ones.

  Raises:
    WeightsMismatchError: no recorded architecture (not a realm-tf embedder module), a
      module without a projection (a reader), or a field that differs (naming it).
  """
  arch = architecture.read_module_architecture(path)
  if arch is None:
    raise WeightsMismatchError(
        f"{path} records no architecture ({architecture.MODULE_ARCHITECTURE_FILE}): it is "
        "not a realm-tf embedder module; convert its weights (python -m export.convert) "
        "and load them as a checkpoint.")
  if not arch.has_projection:
    raise WeightsMismatchError(f"{path} is not an embedder module: it records no "
                               "projection (a reader BERT module?).")
  architecture.check_bert_config(embedder.encoder_config, arch)
  architecture.check_projection(embedder.projection_size, embedder.layer_norm.epsilon, arch)
  embedder.build_variables()
  # The module's root (`realm_tf.tf_hub_modules.EmbedderExport`) holds the embedder as
  # `model`; its SavedModel checkpoint keeps that object path.
  status = tf.train.Checkpoint(model=embedder).read(
      os.path.join(path, "variables", "variables"))
  status.assert_existing_objects_matched()
  status.expect_partial()
  report = LoadReport(source=path, format="realm_tf_module", loaded_encoder=True)
  report.notes.append(f"projection loaded from {path}")
  return report
