"""Reading TF1 checkpoints: Google BERT (`--from=bert_tf1`) and original REALM / ORQA
(`--from=realm_tf1`) checkpoints and TF-Hub v1 modules.

Inputs (any of):
  * a checkpoint prefix (`.../bert_model.ckpt`, `.../model.ckpt-12345`);
  * a directory with a `checkpoint` state file (the newest checkpoint is read) or with a
    single `*.ckpt.index` (Google's BERT folders: `bert_model.ckpt`);
  * a TF-Hub v1 module or TF1 SavedModel directory (`variables/variables.index`; its
    graph is not read, the vocabulary comes from `assets/vocab.txt`);
  * (realm_tf1) a directory holding such modules as `embedder/` and `bert/`, e.g. REALM's
    `cc_news_pretrained`.

Variable names (checked against google-research/language
`language/orqa/models/ict_model.py` and `language/orqa/models/orqa_model.py`, and against
the name map of HF `load_tf_weights_in_realm` in
`transformers/models/realm/modeling_realm.py`):

  Google BERT / hub BERT / REALM `bert`   bert/embeddings/..., bert/encoder/layer_N/...,
                                          bert/pooler/dense/..., cls/predictions/...
                                          (cls/seq_relationship/*, the NSP head: ignored)
  ICT / REALM `embedder` module           <m>bert/... (the nested BERT hub module, <m> =
                                          "module/"), and beside the nested module:
                                          dense/kernel [H, D], dense/bias [D] (tf.layers.dense)
                                          layer_normalization/gamma|beta [D] (ICT: Keras,
                                          eps 1e-3) or LayerNorm/gamma|beta (REALM, in HF's
                                          map; eps 1e-12)
  ORQA model checkpoint (model.ckpt-N)    retriever: module/ + the embedder module's names
                                          (ORQA from ICT: module/module/bert/...,
                                          module/dense/..., module/layer_normalization/...;
                                          from REALM, as HF maps it: module/module/module/
                                          {dense,LayerNorm}/... with the BERT module at
                                          module/module/module/module/{bert,cls}/...)
                                          reader (variable scope `reader`):
                                          reader/module/bert/..., reader/module/cls/...,
                                          reader/dense/kernel [H, 2S], reader/dense/bias,
                                          reader/layer_normalization/gamma|beta [S],
                                          reader/dense_1/kernel [S, 1], reader/dense_1/bias
                                          (HF: qa_outputs.dense_intermediate,
                                          .layer_normalization, .dense_output)
  block index                             block_emb [K, D] in <module>/encoded/encoded.ckpt

Each BERT is found by its `<scope>bert/embeddings/word_embeddings`; its projection or span
MLP is looked up in `<scope>` and in the scopes left after dropping trailing `module/`
segments (hub modules nest as `module/`). Optimizer slots and `global_step` are ignored;
any other variable that no model takes is an error.
"""

import dataclasses
import os
import re
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from export import imported
from export.imported import BertPart, ImportedWeights
from realm_tf.modeling import architecture
from realm_tf.modeling.config import BertConfig
from realm_tf.modeling import hf_bert
from realm_tf.modeling.weight_assign import ConversionError, SourceTensor
from realm_tf.retrieval import block_emb_file

_OPTIMIZER_PARTS = ("adam_m", "adam_v", "Adam", "Adam_1", "AdamWeightDecayOptimizer",
                    "AdamWeightDecayOptimizer_1", "Momentum", "Adagrad")
_BOOKKEEPING = ("global_step", "beta1_power", "beta2_power")
_BERT_ROOT = re.compile(r"^(.*?)bert/embeddings/word_embeddings$")
BERT_CONFIG_FILE = "bert_config.json"
_HUB_VARIABLES = os.path.join("variables", "variables")
# The fields of a BERT config that its variables' shapes show.
_SHAPE_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size",
                 "max_position_embeddings", "type_vocab_size")


def _exists(prefix: str) -> bool:
  return tf.io.gfile.exists(prefix + ".index")


def find_checkpoints(path: str, allow_module_dirs: bool = False
                     ) -> List[Tuple[str, str, Optional[str]]]:
  """The checkpoints at `path`: a list of (label, prefix, module_dir or None).

  Raises:
    ConversionError: nothing readable at `path`.
  """
  if _exists(path):
    return [("", path, None)]
  if not tf.io.gfile.isdir(path):
    raise ConversionError(f"No TF1 checkpoint or module at {path}: expected a checkpoint "
                          "prefix (with a .index file) or a directory.")
  if _exists(os.path.join(path, _HUB_VARIABLES)):
    return [("", os.path.join(path, _HUB_VARIABLES), path)]
  latest = tf.train.latest_checkpoint(path)
  if latest:
    return [("", latest, None)]
  indexes = sorted(n[:-len(".index")] for n in tf.io.gfile.listdir(path)
                   if n.endswith(".ckpt.index"))
  if len(indexes) == 1:
    return [("", os.path.join(path, indexes[0]), None)]
  if allow_module_dirs:
    found = []
    for label in ("embedder", "bert"):
      module = os.path.join(path, label)
      if _exists(os.path.join(module, _HUB_VARIABLES)):
        found.append((label, os.path.join(module, _HUB_VARIABLES), module))
    if found:
      return found
  raise ConversionError(f"No TF1 checkpoint found in {path}: no `checkpoint` state file, "
                        f"no single *.ckpt.index (found {indexes}), no "
                        f"{_HUB_VARIABLES}.index" +
                        (", no embedder/ or bert/ module" if allow_module_dirs else "") + ".")


def read_variables(prefix: str) -> Tuple[Dict[str, np.ndarray], List[str]]:
  """(name -> value of every model variable, names of the training-state variables).

  Optimizer slots are not read (they are two thirds of a training checkpoint);
  `global_step` is, to number the output.
  """
  reader = tf.train.load_checkpoint(prefix)
  values, bookkeeping = {}, []
  for name in reader.get_variable_to_shape_map():
    if is_bookkeeping(name):
      bookkeeping.append(name)
      if name == "global_step":
        values[name] = reader.get_tensor(name)
    else:
      values[name] = reader.get_tensor(name)
  return values, sorted(bookkeeping)


def is_bookkeeping(name: str) -> bool:
  """Optimizer slots, `global_step` and the like: state of training, not of the model."""
  parts = name.split("/")
  return bool(set(parts) & set(_OPTIMIZER_PARTS)) or parts[-1] in _BOOKKEEPING


def read_bert_config_file(path: str) -> BertConfig:
  """A Google `bert_config.json` (TF1 BERT: `gelu` means the tanh approximation)."""
  d = hf_bert.read_json_file(path)
  try:
    return architecture.bert_config_from_tf1_dict(d, path)
  except ValueError as e:
    raise ConversionError(f"{path}: {e}") from e


def check_config_fits(config: BertConfig, tensors: Dict[str, SourceTensor], where: str,
                      config_source: str):
  """Raises ConversionError when a BERT config file disagrees with the variable shapes
  of the BERT it describes (naming the field, both files and both values)."""
  shapes = config_from_shapes(tensors, where, config.num_attention_heads)
  for name in _SHAPE_FIELDS:
    if getattr(config, name) != getattr(shapes, name):
      raise ConversionError(
          f"{config_source} has {name}={getattr(config, name)}, but the BERT at {where} "
          f"has {getattr(shapes, name)} (read off its variable shapes).")


def config_from_shapes(tensors: Dict[str, SourceTensor], where: str,
                       num_attention_heads: Optional[int] = None) -> BertConfig:
  """A BERT config read off canonical tensors' shapes (hub modules ship no config).

  The head count is not visible in the shapes: `num_attention_heads`, or hidden / 64
  (every Google BERT, small BERTs included, has 64-wide heads).
  """
  vocab_size, hidden = tensors["embeddings/word_embeddings"].value.shape
  if num_attention_heads is None:
    if hidden % 64:
      raise ConversionError(f"{where}: hidden size {hidden} is not a multiple of 64; pass "
                            "--num_attention_heads or --bert_config_file.")
    num_attention_heads = hidden // 64
  layers = hf_bert.num_layers_in({k: None for k in tensors})
  inner = tensors.get("encoder/layer_0/intermediate/dense/kernel")
  return BertConfig(
      vocab_size=int(vocab_size), hidden_size=int(hidden), num_hidden_layers=layers,
      num_attention_heads=num_attention_heads,
      intermediate_size=int(inner.value.shape[1]) if inner else 4 * int(hidden),
      hidden_act="gelu_approximate",
      max_position_embeddings=int(tensors["embeddings/position_embeddings"].value.shape[0]),
      type_vocab_size=int(tensors["embeddings/token_type_embeddings"].value.shape[0]))


class _Claims:
  """Names of one checkpoint, and which were taken (each exactly once) or ignored."""

  def __init__(self, prefix: str, label: str = ""):
    self.variables, bookkeeping = read_variables(prefix)
    self.label = label
    self.prefix = prefix
    self.taken = set()
    self.ignored = []
    for name in bookkeeping:
      self.ignore(name, "optimizer or training-loop state")

  def display(self, name: str) -> str:
    return f"{self.label}:{name}" if self.label else name

  def take(self, name: str, target: str, out: Dict[str, SourceTensor]):
    if name in self.taken:
      raise ConversionError(f"{self.prefix}: variable {name} claimed twice.")
    self.taken.add(name)
    out[target] = SourceTensor(self.display(name), np.asarray(self.variables[name]))

  def ignore(self, name: str, reason: str):
    self.taken.add(name)
    self.ignored.append((self.display(name), reason))

  def leftover(self) -> List[str]:
    return sorted(set(self.variables) - self.taken)


def _take_bert(claims: _Claims, scope: str, keep_head: bool, head_reason: str
               ) -> Dict[str, SourceTensor]:
  """Canonical tensors of the BERT at `scope` (`<scope>bert/...`, `<scope>cls/...`)."""
  out = {}
  for name in sorted(claims.variables):
    if name in claims.taken:
      continue
    if name.startswith(scope + "bert/"):
      claims.take(name, name[len(scope + "bert/"):], out)
    elif name.startswith(scope + "cls/predictions/"):
      if keep_head:
        claims.take(name, name[len(scope):], out)
      else:
        claims.ignore(name, head_reason)
    elif name.startswith(scope + "cls/seq_relationship/"):
      claims.ignore(name, "the next-sentence-prediction head, unused by REALM")
  return out


def _ancestors(scope: str) -> List[str]:
  """`scope` and the scopes left by dropping trailing `module/` segments."""
  found = [scope]
  while scope.endswith("module/"):
    scope = scope[:-len("module/")]
    found.append(scope)
  return found


def _find_head_scope(variables: Dict[str, np.ndarray], scope: str) -> Tuple[str, str]:
  """(kind, scope) of the layers above the BERT at `scope`: "span", "projection" or ""."""
  for parent in _ancestors(scope):
    if parent + "dense_1/kernel" in variables and parent + "dense/kernel" in variables:
      return "span", parent
    if parent + "dense/kernel" in variables:
      return "projection", parent
  return "", ""


def _layer_norm(claims: _Claims, scope: str, out: Dict[str, SourceTensor],
                target: str) -> float:
  """Takes `<scope>layer_normalization/*` (eps 1e-3) or `<scope>LayerNorm/*` (1e-12)."""
  for name, eps in (("layer_normalization", 1e-3), ("LayerNorm", 1e-12)):
    if scope + name + "/gamma" in claims.variables:
      for leaf in ("gamma", "beta"):
        full = f"{scope}{name}/{leaf}"
        if full not in claims.variables:
          raise ConversionError(f"{claims.prefix}: {full} is missing (found "
                                f"{scope}{name}/gamma).")
        claims.take(full, f"{target}/{leaf}", out)
      return eps
  raise ConversionError(f"{claims.prefix}: {scope}dense/kernel has no LayerNorm beside it "
                        f"(expected {scope}layer_normalization/gamma or "
                        f"{scope}LayerNorm/gamma).")


def _take_dense(claims: _Claims, name: str, target: str, out: Dict[str, SourceTensor]):
  for leaf in ("kernel", "bias"):
    full = f"{name}/{leaf}"
    if full not in claims.variables:
      raise ConversionError(f"{claims.prefix}: {full} is missing.")
    claims.take(full, f"{target}/{leaf}", out)


def read_realm_tf1(path: str, num_attention_heads: Optional[int] = None,
                   bert_config: Optional[BertConfig] = None) -> ImportedWeights:
  """Reads original REALM / ORQA TF1 checkpoints or modules at `path` (module docstring)."""
  result = ImportedWeights(source_format="realm_tf1", input_path=path)
  sources = find_checkpoints(path, allow_module_dirs=True)
  embedders, readers = [], []
  for label, prefix, module_dir in sources:
    claims = _Claims(prefix, label)
    if "global_step" in claims.variables:
      result.global_step = int(claims.variables["global_step"])
    if "block_emb" in claims.variables:
      result.block_emb = np.asarray(claims.variables["block_emb"], np.float32)
      result.block_emb_source = f"{prefix}:block_emb"
      claims.taken.add("block_emb")
    scopes = sorted(m.group(1) for m in map(_BERT_ROOT.match, claims.variables) if m)
    for scope in scopes:
      kind, head_scope = _find_head_scope(claims.variables, scope)
      where = f"{prefix} ({scope or '<root>'}bert)"
      if kind == "projection":
        tensors = _take_bert(claims, scope, keep_head=False,
                             head_reason="the MLM head of the retriever's BERT module, "
                                         "unused by the embedder")
        _take_dense(claims, head_scope + "dense", "projection", tensors)
        result.projection_layer_norm_epsilon = _layer_norm(
            claims, head_scope, tensors, "projection_layer_norm")
        embedders.append((where, tensors))
      else:
        tensors = _take_bert(claims, scope, keep_head=True, head_reason="")
        if kind == "span":
          span = {}
          _take_dense(claims, head_scope + "dense", "span_projection", span)
          _take_dense(claims, head_scope + "dense_1", "span_logits", span)
          result.span_layer_norm_epsilon = _layer_norm(claims, head_scope, span,
                                                       "span_layer_norm")
          result.span_hidden_size = int(span["span_logits/kernel"].value.shape[0])
          result.span_scorer = span
        readers.append((where, tensors))
    leftover = claims.leftover()
    if leftover:
      listed = [f"{n} {tuple(np.shape(claims.variables[n]))}" for n in leftover[:20]]
      raise ConversionError(f"{prefix}: {len(leftover)} variable(s) that no realm-tf model "
                            f"takes: {listed}")
    result.ignored += claims.ignored
    if module_dir:
      result.vocab_path = result.vocab_path or imported.find_vocab(
          os.path.join(module_dir, "assets", "vocab.txt"))
      encoded = block_emb_file.checkpoint_prefix(module_dir)
      if result.block_emb is None and _exists(encoded):
        result.block_emb = block_emb_file.read_block_emb(encoded)
        result.block_emb_source = encoded
  for what, found in (("embedder", embedders), ("reader", readers)):
    if len(found) > 1:
      raise ConversionError(f"{path}: more than one {what} BERT found: "
                            f"{[w for w, _ in found]}; convert them one at a time.")
  if not embedders and not readers:
    raise ConversionError(f"{path}: no BERT (no variable ending in "
                          "bert/embeddings/word_embeddings).")
  found = embedders[:1] + readers[:1]
  if bert_config is not None and not any(
      bert_config.hidden_size == t["embeddings/word_embeddings"].value.shape[1]
      for _, t in found):
    widths = [int(t["embeddings/word_embeddings"].value.shape[1]) for _, t in found]
    raise ConversionError(f"--bert_config_file has hidden_size {bert_config.hidden_size}, "
                          f"which none of the BERTs in {path} has (hidden sizes {widths}).")
  if embedders:
    where, tensors = embedders[0]
    result.embedder = BertPart(
        _config_for(tensors, where, num_attention_heads, bert_config), tensors, where)
  if readers:
    where, tensors = readers[0]
    result.reader = BertPart(
        _config_for(tensors, where, num_attention_heads, bert_config), tensors, where)
  if result.block_emb is None:
    result.block_emb = _find_block_emb(path, result)
  return result


def _config_for(tensors: Dict[str, SourceTensor], where: str,
                num_attention_heads: Optional[int],
                bert_config: Optional[BertConfig]) -> BertConfig:
  """The config of one BERT of a hub module: its shapes, with the head count and
  activation of `bert_config` (a `--bert_config_file`) when that has the same width (and
  then it must agree with every shape)."""
  if bert_config is not None:
    hidden = tensors["embeddings/word_embeddings"].value.shape[1]
    if bert_config.hidden_size == hidden:
      check_config_fits(bert_config, tensors, where, "--bert_config_file")
      config = config_from_shapes(tensors, where, bert_config.num_attention_heads)
      return dataclasses.replace(config, hidden_act=bert_config.hidden_act)
  return config_from_shapes(tensors, where, num_attention_heads)


def _find_block_emb(path: str, result: ImportedWeights) -> Optional[np.ndarray]:
  """`<path>/encoded/encoded.ckpt` or `<path>/embedder/encoded/encoded.ckpt`, if any."""
  if not tf.io.gfile.isdir(path):
    return None
  for module_dir in (path, os.path.join(path, "embedder")):
    prefix = block_emb_file.checkpoint_prefix(module_dir)
    if _exists(prefix):
      result.block_emb_source = prefix
      return block_emb_file.read_block_emb(prefix)
  return None


def read_bert_tf1(path: str, bert_config_file: Optional[str] = None,
                  num_attention_heads: Optional[int] = None) -> ImportedWeights:
  """Reads a Google BERT TF1 checkpoint (folder with bert_model.ckpt, bert_config.json,
  vocab.txt; or a checkpoint prefix / hub module) as a reader with its MLM head."""
  result = ImportedWeights(source_format="bert_tf1", input_path=path)
  sources = find_checkpoints(path)
  _, prefix, module_dir = sources[0]
  folder = module_dir or (path if tf.io.gfile.isdir(path) else os.path.dirname(path))
  claims = _Claims(prefix)
  if "global_step" in claims.variables:
    result.global_step = int(claims.variables["global_step"])
  if "bert/embeddings/word_embeddings" not in claims.variables:
    raise ConversionError(f"{prefix} has no bert/embeddings/word_embeddings: not a Google "
                          "BERT checkpoint (try --from=realm_tf1).")
  tensors = _take_bert(claims, "", keep_head=True, head_reason="")
  leftover = claims.leftover()
  if leftover:
    listed = [f"{n} {tuple(np.shape(claims.variables[n]))}" for n in leftover[:20]]
    raise ConversionError(f"{prefix}: {len(leftover)} variable(s) that no realm-tf model "
                          f"takes: {listed}")
  result.ignored = claims.ignored
  config_file = bert_config_file or imported.find_vocab(
      os.path.join(folder, BERT_CONFIG_FILE))
  if config_file:
    config = read_bert_config_file(config_file)
    check_config_fits(config, tensors, prefix, config_file)
  else:
    config = config_from_shapes(tensors, prefix, num_attention_heads)
    result.notes.append(f"No {BERT_CONFIG_FILE} beside {prefix}: the config was read off "
                        f"the variable shapes ({config.num_attention_heads} heads).")
  result.reader = BertPart(config, tensors, prefix)
  result.vocab_path = imported.find_vocab(os.path.join(folder, "vocab.txt"),
                                          os.path.join(folder, "assets", "vocab.txt"))
  return result
