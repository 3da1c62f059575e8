"""Reading Hugging Face folders: BERT (`--from=hf_bert`) and REALM (`--from=hf_realm`).

A folder holds `config.json` and `model.safetensors` (or sharded `model-0000N-of-0000M
.safetensors` with `model.safetensors.index.json`), read with `safetensors`' numpy API:
no PyTorch, no `transformers` (`realm_tf.modeling.hf_bert.read_hf_state`, which training
uses too). `pytorch_model.bin` (a pickle) is refused with `UnsupportedFormatError`
explaining how to get safetensors.

Parameter names of `transformers/models/realm/modeling_realm.py` (B = a BERT's names as in
`BertModel`: `embeddings.*`, `encoder.layer.N.*`, `pooler.dense.*`; torch `Linear`
weights are [out, in] and are transposed):

| HF class | HF parameter | realm-tf target |
|---|---|---|
| RealmEmbedder | `realm.` + B | embedder BERT |
| | `cls.dense.weight` [D, H], `cls.dense.bias` [D] | `projection/kernel` [H, D], `projection/bias` |
| | `cls.LayerNorm.weight`, `cls.LayerNorm.bias` [D] | `projection_layer_norm/gamma`, `beta` (eps = `layer_norm_eps`) |
| | `cls.predictions.*` | ignored: `RealmScorerProjection.predictions` is never used in `forward` |
| RealmScorer | `embedder.` + RealmEmbedder names | embedder |
| | `query_embedder.` + RealmEmbedder names (when saved) | ignored when equal to `embedder.*` (the same module), else a separate query tower |
| RealmKnowledgeAugEncoder | `realm.` + B | reader BERT |
| | `cls.predictions.transform.dense.weight`, `.bias` | `cls/predictions/transform/dense/kernel`, `bias` |
| | `cls.predictions.transform.LayerNorm.weight`, `.bias` | `cls/predictions/transform/LayerNorm/gamma`, `beta` |
| | `cls.predictions.bias` [V] | `cls/predictions/output_bias` |
| | `cls.predictions.decoder.weight`, `.bias` | ignored: tied to the word embeddings and `cls.predictions.bias` |
| RealmReader | `realm.` + B, `cls.predictions.*` | reader BERT + MLM head, as above |
| | `qa_outputs.dense_intermediate.weight` [2S, H], `.bias` [2S] | `span_projection/kernel` [H, 2S], `bias` |
| | `qa_outputs.layer_normalization.weight`, `.bias` [S] | `span_layer_norm/gamma`, `beta` (eps = `reader_layer_norm_eps`) |
| | `qa_outputs.dense_output.weight` [1, S], `.bias` [1] | `span_logits/kernel` [S, 1], `bias` |
| RealmForOpenQA | `embedder.` + RealmEmbedder names | embedder |
| | `reader.` + RealmReader names | reader + span scorer |
| | `block_emb` [K, D] (a buffer) | the block index, `embedder/encoded/encoded.ckpt` |

`position_ids` / `token_type_ids` buffers are ignored. `hidden_act="gelu_new"` (REALM's
default) is the tanh-approximate GELU.
"""

import os
from typing import Dict, List, Tuple

import numpy as np
import tensorflow as tf

from export import imported
from export.imported import BertPart, ImportedWeights
from realm_tf.modeling.config import BertConfig
from realm_tf.modeling import hf_bert
from realm_tf.modeling.weight_assign import ConversionError, SourceTensor

REALM_CLASSES = ("RealmEmbedder", "RealmScorer", "RealmKnowledgeAugEncoder", "RealmReader",
                 "RealmForOpenQA")
_UNUSED_PREDICTIONS = ("RealmScorerProjection.predictions: never used by "
                       "RealmEmbedder.forward")


def read_config_dict(folder: str) -> dict:
  path = os.path.join(folder, hf_bert.CONFIG_FILE)
  if not tf.io.gfile.exists(path):
    raise ConversionError(f"No {hf_bert.CONFIG_FILE} in {folder}: not a Hugging Face folder.")
  return hf_bert.read_json_file(path)


def _casing(folder: str, result: ImportedWeights):
  """do_lower_case from the folder's tokenizer_config.json, when it says."""
  path = os.path.join(folder, "tokenizer_config.json")
  if tf.io.gfile.exists(path):
    value = hf_bert.read_json_file(path).get("do_lower_case")
    if value is not None:
      result.do_lower_case = bool(value)
      result.do_lower_case_source = "tokenizer_config.json"


class _State:
  """A folder's tensors and which of them were taken or ignored."""

  def __init__(self, tensors: Dict[str, np.ndarray], folder: str):
    self.tensors = tensors
    self.folder = folder
    self.taken = set()
    self.ignored: List[Tuple[str, str]] = []

  def take(self, name: str, target: str, out: Dict[str, SourceTensor],
           transpose: bool = False):
    value = np.asarray(self.tensors[name])
    self.taken.add(name)
    out[target] = SourceTensor(name, np.ascontiguousarray(value.T) if transpose else value,
                               transposed=transpose)

  def ignore(self, name: str, reason: str):
    self.taken.add(name)
    self.ignored.append((name, reason))

  def names(self, prefix: str) -> List[str]:
    return sorted(n for n in self.tensors if n.startswith(prefix) and n not in self.taken)

  def check_leftover(self):
    leftover = sorted(set(self.tensors) - self.taken)
    if leftover:
      listed = [f"{n} {tuple(np.shape(self.tensors[n]))}" for n in leftover[:20]]
      raise ConversionError(f"{self.folder}: {len(leftover)} tensor(s) that no realm-tf "
                            f"model takes: {listed}")


def _take_bert(state: _State, prefix: str, out: Dict[str, SourceTensor]):
  """`<prefix>` + BertModel names -> canonical names."""
  for name in state.names(prefix):
    target, transpose, reason = hf_bert.hf_name_to_canonical(name[len(prefix):])
    if target is None:
      state.ignore(name, reason)
    elif target.startswith(("embeddings/", "encoder/", "pooler/")):
      state.take(name, target, out, transpose)


def _take_mlm_head(state: _State, prefix: str, out: Dict[str, SourceTensor]):
  """`<prefix>cls.predictions.*` -> `cls/predictions/*`."""
  for name in state.names(prefix + "cls.predictions."):
    target, transpose, reason = hf_bert.hf_name_to_canonical(name[len(prefix):])
    if target is None:
      state.ignore(name, reason)
    else:
      state.take(name, target, out, transpose)


def _take_linear(state: _State, name: str, target: str, out: Dict[str, SourceTensor]):
  for leaf, dst, transpose in (("weight", "kernel", True), ("bias", "bias", False)):
    full = f"{name}.{leaf}"
    if full not in state.tensors:
      raise ConversionError(f"{state.folder}: {full} is missing.")
    state.take(full, f"{target}/{dst}", out, transpose)


def _take_layer_norm(state: _State, name: str, target: str, out: Dict[str, SourceTensor]):
  for leaf, dst in (("weight", "gamma"), ("bias", "beta")):
    full = f"{name}.{leaf}"
    if full not in state.tensors:
      raise ConversionError(f"{state.folder}: {full} is missing.")
    state.take(full, f"{target}/{dst}", out)


def _embedder(state: _State, prefix: str) -> Dict[str, SourceTensor]:
  """A RealmEmbedder's tensors under `prefix` ("", "embedder.", "query_embedder.")."""
  out = {}
  _take_bert(state, prefix + "realm.", out)
  _take_linear(state, prefix + "cls.dense", "projection", out)
  _take_layer_norm(state, prefix + "cls.LayerNorm", "projection_layer_norm", out)
  for name in state.names(prefix + "cls.predictions."):
    state.ignore(name, _UNUSED_PREDICTIONS)
  return out


def _reader(state: _State, prefix: str) -> Tuple[Dict[str, SourceTensor],
                                                 Dict[str, SourceTensor]]:
  """A RealmReader's (BERT + MLM head, span scorer) tensors under `prefix`."""
  bert, span = {}, {}
  _take_bert(state, prefix + "realm.", bert)
  _take_mlm_head(state, prefix, bert)
  _take_linear(state, prefix + "qa_outputs.dense_intermediate", "span_projection", span)
  _take_layer_norm(state, prefix + "qa_outputs.layer_normalization", "span_layer_norm", span)
  _take_linear(state, prefix + "qa_outputs.dense_output", "span_logits", span)
  return bert, span


def detect_realm_class(config: dict, names: List[str], folder: str) -> str:
  """The REALM class of a folder, from its parameter names (checked against
  config.json's `architectures` when present)."""
  has = lambda p: any(n.startswith(p) for n in names)
  if "block_emb" in names or (has("embedder.") and has("reader.")):
    found = "RealmForOpenQA"
  elif has("embedder."):
    found = "RealmScorer"
  elif has("qa_outputs."):
    found = "RealmReader"
  elif has("cls.dense."):
    found = "RealmEmbedder"
  elif has("realm."):
    found = "RealmKnowledgeAugEncoder"
  else:
    raise ConversionError(f"{folder}: no REALM parameters (none starts with realm., "
                          "embedder. or reader.); for a BERT folder use --from=hf_bert.")
  declared = [a for a in config.get("architectures") or [] if a in REALM_CLASSES]
  if declared and declared[0] != found:
    raise ConversionError(f"{folder}: config.json declares {declared[0]}, but the "
                          f"parameter names are those of {found}.")
  return found


def realm_bert_config(config: dict, folder: str = "config.json") -> BertConfig:
  """The BERT part of a HF `RealmConfig` dict (ConversionError naming `folder` when
  realm-tf's encoder cannot compute it, e.g. a LayerNorm epsilon other than 1e-12)."""
  return _bert_config(dict(config, model_type="bert"), folder)


def _bert_config(config: dict, folder: str) -> BertConfig:
  try:
    return BertConfig.from_hf_dict(config)
  except ValueError as e:
    raise ConversionError(f"{os.path.join(folder, hf_bert.CONFIG_FILE)}: {e}") from e


def _same(a: Dict[str, SourceTensor], b: Dict[str, SourceTensor]) -> bool:
  return set(a) == set(b) and all(np.array_equal(a[k].value, b[k].value) for k in a)


def read_hf_realm(folder: str) -> ImportedWeights:
  """Reads a Hugging Face REALM folder (any class of the module docstring's table)."""
  config = read_config_dict(folder)
  if config.get("model_type", "realm") != "realm":
    raise ConversionError(f"{folder}: model_type={config.get('model_type')!r}, expected "
                          "'realm' (use --from=hf_bert for BERT).")
  state = _State(hf_bert.read_hf_state(folder), folder)
  realm_class = detect_realm_class(config, list(state.tensors), folder)
  bert_config = realm_bert_config(config, folder)
  result = ImportedWeights(source_format="hf_realm", input_path=folder)
  result.notes.append(f"Hugging Face class: {realm_class}.")
  result.projection_layer_norm_epsilon = float(config.get("layer_norm_eps", 1e-12))
  result.span_layer_norm_epsilon = float(config.get("reader_layer_norm_eps", 1e-3))
  result.span_hidden_size = int(config.get("span_hidden_size", 256))
  if realm_class == "RealmEmbedder":
    result.embedder = BertPart(bert_config, _embedder(state, ""), folder)
  elif realm_class == "RealmKnowledgeAugEncoder":
    tensors = {}
    _take_bert(state, "realm.", tensors)
    _take_mlm_head(state, "", tensors)
    result.reader = BertPart(bert_config, tensors, folder)
  elif realm_class == "RealmReader":
    bert, result.span_scorer = _reader(state, "")
    result.reader = BertPart(bert_config, bert, folder)
  else:  # RealmScorer, RealmForOpenQA
    result.embedder = BertPart(bert_config, _embedder(state, "embedder."), folder)
    if state.names("query_embedder."):
      query = _embedder(state, "query_embedder.")
      if _same(query, result.embedder.tensors):
        for src in query.values():
          state.ignored.append((src.name, "the same module as embedder.* (shared towers)"))
      else:
        result.query_embedder = BertPart(bert_config, query, folder + " (query_embedder)")
    if realm_class == "RealmForOpenQA":
      bert, result.span_scorer = _reader(state, "reader.")
      result.reader = BertPart(bert_config, bert, folder + " (reader)")
      if "block_emb" in state.tensors:
        result.block_emb = np.asarray(state.tensors["block_emb"], np.float32)
        result.block_emb_source = f"{folder}:block_emb"
        state.taken.add("block_emb")
  state.check_leftover()
  result.ignored = state.ignored
  result.vocab_path = imported.find_vocab(os.path.join(folder, hf_bert.VOCAB_FILE))
  _casing(folder, result)
  return result


def read_hf_bert(folder: str) -> ImportedWeights:
  """Reads a Hugging Face BERT folder (BertModel, BertForMaskedLM, BertForPreTraining)."""
  config = read_config_dict(folder)
  if config.get("model_type") == "realm":
    raise ConversionError(f"{folder} is a REALM folder: use --from=hf_realm.")
  bert_config = _bert_config(config, folder)
  state = _State(hf_bert.read_hf_state(folder), folder)
  prefix = "bert." if any(n.startswith("bert.") for n in state.tensors) else ""
  tensors = {}
  _take_bert(state, prefix, tensors)
  _take_mlm_head(state, "", tensors)
  for name in state.names("cls.seq_relationship."):
    state.ignore(name, "the next-sentence-prediction head, unused by REALM")
  state.check_leftover()
  result = ImportedWeights(source_format="hf_bert", input_path=folder,
                           reader=BertPart(bert_config, tensors, folder),
                           ignored=state.ignored)
  result.vocab_path = imported.find_vocab(os.path.join(folder, hf_bert.VOCAB_FILE))
  _casing(folder, result)
  return result
