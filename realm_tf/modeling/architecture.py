"""The architecture pre-trained weights were made for, and models built to match it.

Weights hold their model's shapes but not everything it computes with: the activation
(Google's BERT, REALM and ORQA use the tanh-approximate GELU, most Hugging Face BERT
configs the exact one), the LayerNorm epsilons and, in TF1 checkpoints, the head count.
Those are recorded beside the weights:

* a Hugging Face BERT folder: `config.json` (and `tokenizer_config.json` for the casing);
* an `export.convert` output: its `config.json` (a `RealmConfig`) describes the `bert/`,
  `embedder/` and `query_embedder/` checkpoints beside it, the embedder's projection size
  and LayerNorm epsilon included;
* a Google BERT folder (or a checkpoint with one beside it): `bert_config.json`, whose
  `gelu` is TF1 BERT's tanh approximation (a realm-tf `BertConfig` dict, which has
  `layer_norm_eps`, is read as such);
* a realm-tf TF-Hub module (`realm_tf.tf_hub_modules`):
  `assets.extra/realm_tf_architecture.json`.

A bare TF1 or TF2 checkpoint records only its shapes. `read_architecture` returns what a
source records; `check_bert_config` and `check_projection` compare a model with it (the
weight loaders of `realm_tf.modeling.weights` call them before assigning anything);
`bert_config_for` and `realm_architecture` build a model's configs from its weights and
presets, raising `ArchitectureConflictError` (naming the setting, the weights and both
values) where a setting contradicts the weights.
"""

import dataclasses
import math
import os
import re
from typing import Any, Dict, List, Optional

import tensorflow as tf

from realm_tf import errors
from realm_tf.errors import WeightsMismatchError
from realm_tf.modeling import hf_bert
from realm_tf.modeling.config import CONFIG_FILENAME, BertConfig, RealmConfig
from realm_tf.tokenization import load_vocab

# Written by realm_tf.tf_hub_modules into every module it saves (assets.extra is
# SavedModel's place for files that are not loaded with the graph).
MODULE_ARCHITECTURE_FILE = os.path.join("assets.extra", "realm_tf_architecture.json")
CONVERSION_MANIFEST = "conversion.json"  # export.convert's manifest (export.converted)
BERT_CONFIG_FILE = "bert_config.json"
EMBEDDER_COMPONENTS = ("embedder", "query_embedder")
READER_COMPONENT = "bert"
# The defaults of an embedder whose weights have no projection: the original ICT module's
# Dense(128) and Keras LayerNormalization (epsilon 1e-3), orqa/models/ict_model.py.
DEFAULT_PROJECTION_SIZE = 128
DEFAULT_PROJECTION_LAYER_NORM_EPSILON = 1e-3

# The BertConfig fields that change what a model computes (dropout and the initializer
# range only matter in training from scratch).
MODEL_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "intermediate_size", "hidden_act", "max_position_embeddings",
                "type_vocab_size", "layer_norm_eps")
# The fields an encoder preset names.
PRESET_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads",
                 "intermediate_size")
# TF1 BERT's `gelu` is the tanh approximation (google-research/bert modeling.py).
TF1_ACTIVATIONS = {"gelu": "gelu_approximate", "relu": "relu", "tanh": "tanh",
                   "swish": "swish"}
_TF1_CONFIG_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers",
                      "num_attention_heads", "intermediate_size", "hidden_dropout_prob",
                      "attention_probs_dropout_prob", "max_position_embeddings",
                      "type_vocab_size", "initializer_range")
_TF2_VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"


class ArchitectureConflictError(WeightsMismatchError):
  """A setting (a flag or a preset) contradicts what the weights record."""


@dataclasses.dataclass(frozen=True)
class Setting:
  """A value and where it came from, for error messages.

  Attributes:
    name: the flag (e.g. `--bert_preset`) or parameter that holds it.
    value: its value.
    given: False when it is a default nobody chose: a default preset never contradicts
      the weights (they win).
  """
  name: str
  value: Any
  given: bool = True

  def describe(self) -> str:
    if self.given:
      return f"{self.name}={self.value}"
    return f"{self.value} (the default of {self.name})"


@dataclasses.dataclass
class Architecture:
  """What a source of weights records about the model it was made for.

  Attributes:
    source: the weights (folder, checkpoint prefix or module).
    recorded_in: the file the architecture was read from; None when read off the
      checkpoint's variable shapes.
    fields: the `BertConfig` fields the source determines (every one of `MODEL_FIELDS`
      when recorded in a file; only those visible in the shapes otherwise).
    config: the complete `BertConfig`, when recorded in a file.
    projection_size, projection_layer_norm_epsilon: the embedder projection, when the
      weights have one (the epsilon only when recorded).
    has_projection: whether the weights hold a projection.
    vocab_path: the vocabulary shipped with the weights, if any.
    do_lower_case: the casing, when recorded.
  """
  source: str
  recorded_in: Optional[str] = None
  fields: Dict[str, Any] = dataclasses.field(default_factory=dict)
  config: Optional[BertConfig] = None
  projection_size: Optional[int] = None
  projection_layer_norm_epsilon: Optional[float] = None
  has_projection: bool = False
  vocab_path: Optional[str] = None
  do_lower_case: Optional[bool] = None

  def where(self) -> str:
    """`source (where the architecture is recorded)`, for messages."""
    return f"{self.source} ({self.recorded_in or 'read off its variable shapes'})"


def bert_config_from_tf1_dict(d: Dict[str, Any], source: str = "bert_config.json"
                              ) -> BertConfig:
  """A Google `bert_config.json` dict (TF1 BERT: `gelu` is the tanh approximation)."""
  act = d.get("hidden_act", "gelu")
  if act not in TF1_ACTIVATIONS:
    raise WeightsMismatchError(f"{source}: unsupported hidden_act {act!r} (TF1 BERT "
                               f"knows {sorted(TF1_ACTIVATIONS)}).")
  return BertConfig(hidden_act=TF1_ACTIVATIONS[act],
                    **{k: d[k] for k in _TF1_CONFIG_FIELDS if k in d})


def read_bert_config_json(path: str) -> BertConfig:
  """A `bert_config.json`: a realm-tf `BertConfig` dict (it has `layer_norm_eps`; written
  by `export.convert`) or Google's TF1 BERT config."""
  d = hf_bert.read_json_file(path)  # InputFileError naming the file for bad JSON.
  try:
    if "layer_norm_eps" in d:
      return BertConfig.from_dict(d)
    return bert_config_from_tf1_dict(d, path)
  except ValueError as e:
    raise WeightsMismatchError(f"{path}: {e}") from e


def checkpoint_prefix(path: str) -> Optional[str]:
  """The TF checkpoint at `path`: a prefix, or a directory with a `checkpoint` state file
  or a single `*.ckpt.index` (Google's BERT folders); None if there is none."""
  if tf.io.gfile.exists(path + ".index"):
    return path
  if not tf.io.gfile.isdir(path):
    return None
  latest = tf.train.latest_checkpoint(path)
  if latest:
    return latest
  indexes = tf.io.gfile.glob(os.path.join(path, "*.ckpt.index"))
  if len(indexes) == 1:
    return indexes[0][:-len(".index")]
  return None


def is_saved_model(path: str) -> bool:
  return tf.io.gfile.isdir(path) and tf.saved_model.contains_saved_model(path)


def _exists(path: str) -> bool:
  return tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path)


def _hf_casing(folder: str) -> Optional[bool]:
  path = os.path.join(folder, "tokenizer_config.json")
  if not _exists(path):
    return None
  value = hf_bert.read_json_file(path).get("do_lower_case")
  return None if value is None else bool(value)


def _complete(source: str, recorded_in: str, config: BertConfig, **kwargs) -> Architecture:
  return Architecture(source=source, recorded_in=recorded_in, config=config,
                      fields={k: getattr(config, k) for k in MODEL_FIELDS}, **kwargs)


def _shape_fields(shapes: Dict[str, List[int]]) -> Dict[str, Any]:
  """The `BertConfig` fields visible in the variable shapes of a TF1 BERT checkpoint
  (`bert/...`) or a tf-models TF2 one (`encoder/...`): sizes, and in TF2 the head count."""
  if "bert/embeddings/word_embeddings" in shapes:  # TF1 BERT
    get = lambda name: shapes.get("bert/" + name)
    layer = re.compile(r"^bert/encoder/layer_(\d+)/")
    word, position, token_type, inner, query = (
        "embeddings/word_embeddings", "embeddings/position_embeddings",
        "embeddings/token_type_embeddings", "encoder/layer_0/intermediate/dense/kernel", None)
  else:  # TF2: tf.train.Checkpoint(encoder=BertEncoderV2[, masked_lm=...])
    get = lambda name: shapes.get(f"encoder/{name}{_TF2_VALUE}")
    layer = re.compile(r"^encoder/_transformer_layers/(\d+)/")
    word, position, token_type, inner, query = (
        "_embedding_layer/embeddings", "_position_embedding_layer/embeddings",
        "_type_embedding_layer/embeddings", "_transformer_layers/0/_intermediate_dense/kernel",
        "_transformer_layers/0/_attention_layer/_query_dense/kernel")
  word_shape = get(word) or shapes.get(f"masked_lm/embedding_table{_TF2_VALUE}")
  if not word_shape:
    return {}
  fields = dict(vocab_size=int(word_shape[0]), hidden_size=int(word_shape[1]))
  indices = {int(m.group(1)) for m in map(layer.match, shapes) if m}
  fields["num_hidden_layers"] = max(indices) + 1 if indices else 0
  for name, key, axis in (("max_position_embeddings", position, 0),
                          ("type_vocab_size", token_type, 0),
                          ("intermediate_size", inner, 1)):
    shape = get(key)
    if shape:
      fields[name] = int(shape[axis])
  query_shape = get(query) if query else None
  if query_shape and len(query_shape) == 3:
    fields["num_attention_heads"] = int(query_shape[1])  # [hidden, heads, head_size]
  return fields


def _projection_shape(shapes: Dict[str, List[int]]) -> Optional[int]:
  kernel = shapes.get(f"projection/kernel{_TF2_VALUE}")
  return int(kernel[-1]) if kernel else None


def _conversion_part(folder: str, source: str, shapes) -> Optional[Architecture]:
  """The architecture of an `export.convert` component directory, from the output's
  `config.json`; None when `folder` is not one."""
  parent = os.path.dirname(os.path.normpath(folder))
  component = os.path.basename(os.path.normpath(folder))
  config_path = os.path.join(parent, CONFIG_FILENAME)
  if not (_exists(os.path.join(parent, CONVERSION_MANIFEST)) and _exists(config_path)):
    return None
  try:
    config = RealmConfig.load(config_path)
  except ValueError as e:
    raise WeightsMismatchError(f"{config_path}: {e}") from e
  vocab = os.path.join(parent, "vocab.txt")
  common = dict(vocab_path=vocab if _exists(vocab) else None,
                do_lower_case=config.do_lower_case)
  if component in EMBEDDER_COMPONENTS:
    return _complete(source, config_path, config.embedder,
                     projection_size=config.projection_size,
                     projection_layer_norm_epsilon=config.embedder_layer_norm_epsilon,
                     has_projection=_projection_shape(shapes) is not None, **common)
  if component == READER_COMPONENT:
    return _complete(source, config_path, config.bert, **common)
  return None


def read_module_architecture(path: str) -> Optional[Architecture]:
  """What a realm-tf TF-Hub module records (`MODULE_ARCHITECTURE_FILE`), or None."""
  record = os.path.join(path, MODULE_ARCHITECTURE_FILE)
  if not _exists(record):
    return None
  d = hf_bert.read_json_file(record)
  try:
    config = BertConfig.from_dict(d["bert"])
  except (KeyError, ValueError) as e:
    raise WeightsMismatchError(f"{record}: {e}") from e
  vocab = os.path.join(path, "assets", "vocab.txt")
  has_projection = d.get("projection_size") is not None
  return _complete(path, record, config, projection_size=d.get("projection_size"),
                   projection_layer_norm_epsilon=d.get("projection_layer_norm_epsilon"),
                   has_projection=has_projection,
                   vocab_path=vocab if _exists(vocab) else None)


def module_architecture_record(model) -> Dict[str, Any]:
  """The `MODULE_ARCHITECTURE_FILE` contents for a `ProjectedEmbedder` or a
  `KnowledgeAugmentedEncoder` (anything with an `encoder_config`)."""
  record = {"bert": model.encoder_config.to_dict()}
  if hasattr(model, "projection_size"):
    record["projection_size"] = int(model.projection_size)
    record["projection_layer_norm_epsilon"] = float(model.layer_norm.epsilon)
  return record


def read_architecture(path: str) -> Architecture:
  """What the weights at `path` record about their model (module docstring).

  Raises:
    FileNotFoundError: no HF folder, TF checkpoint or module at `path`.
    WeightsMismatchError: a config file beside the weights cannot be read.
  """
  if hf_bert.is_hf_bert_folder(path):
    config_path = os.path.join(path, hf_bert.CONFIG_FILE)
    try:
      config = hf_bert.read_hf_config(path)
    except ValueError as e:
      raise WeightsMismatchError(f"{config_path}: {e}") from e
    vocab = os.path.join(path, hf_bert.VOCAB_FILE)
    return _complete(path, config_path, config, vocab_path=vocab if _exists(vocab) else None,
                     do_lower_case=_hf_casing(path))
  if is_saved_model(path):
    module = read_module_architecture(path)
    return module or Architecture(source=path, recorded_in=None)
  prefix = checkpoint_prefix(path)
  if prefix is None:
    raise FileNotFoundError(f"No HF BERT folder, TF checkpoint or module at {path}.")
  shapes = dict(tf.train.list_variables(prefix))
  folder = path if tf.io.gfile.isdir(path) else os.path.dirname(prefix)
  part = _conversion_part(folder, path, shapes)
  if part is not None:
    return part
  projection = _projection_shape(shapes)
  config_path = os.path.join(folder, BERT_CONFIG_FILE)
  vocab = os.path.join(folder, "vocab.txt")
  common = dict(projection_size=projection, has_projection=projection is not None,
                vocab_path=vocab if _exists(vocab) else None)
  if _exists(config_path):
    return _complete(path, config_path, read_bert_config_json(config_path), **common)
  return Architecture(source=path, fields=_shape_fields(shapes), **common)


def _differs(a, b) -> bool:
  if isinstance(a, float) or isinstance(b, float):
    return not math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=0.0)
  return a != b


def check_bert_config(config: BertConfig, arch: Architecture) -> None:
  """Raises WeightsMismatchError naming the first field in which `config` differs from
  what the weights record (sizes, heads, activation, epsilon, vocabulary)."""
  for name in MODEL_FIELDS:
    if name in arch.fields and _differs(arch.fields[name], getattr(config, name)):
      raise WeightsMismatchError(
          f"{name} mismatch: the weights in {arch.where()} have {arch.fields[name]}, the "
          f"model config has {getattr(config, name)}.")


def _unrecorded_epsilon(arch: Architecture) -> WeightsMismatchError:
  return WeightsMismatchError(
      f"{arch.source} holds an embedder projection but records no epsilon for its "
      "LayerNorm: load it from its export.convert output directory, whose config.json "
      "records it.")


def check_projection(projection_size: int, layer_norm_epsilon: float,
                     arch: Architecture) -> None:
  """Raises WeightsMismatchError when the embedder projection of the weights differs in
  size or LayerNorm epsilon from the model's, or when its epsilon is not recorded."""
  if not arch.has_projection:
    return
  if arch.projection_size is not None and arch.projection_size != projection_size:
    raise WeightsMismatchError(
        f"projection_size mismatch: the weights in {arch.where()} have "
        f"{arch.projection_size}, the model has {projection_size}.")
  if arch.projection_layer_norm_epsilon is None:
    raise _unrecorded_epsilon(arch)
  if _differs(arch.projection_layer_norm_epsilon, layer_norm_epsilon):
    raise WeightsMismatchError(
        f"projection LayerNorm epsilon mismatch: the weights in {arch.where()} have "
        f"{arch.projection_layer_norm_epsilon}, the model has {layer_norm_epsilon}.")


def _conflict(setting: Setting, arch: Architecture, field: str, setting_value,
              weights_value) -> ArchitectureConflictError:
  return ArchitectureConflictError(
      f"{setting.describe()} contradicts the weights in {arch.where()}: {field} is "
      f"{weights_value} there and {setting_value} from {setting.name}.")


def bert_config_for(arch: Optional[Architecture], preset: Optional[Setting],
                    vocab_size: Optional[int] = None) -> BertConfig:
  """The BERT config of a model initialized from weights with architecture `arch`.

  A recorded architecture is the model's; an explicit `preset` must agree with it on the
  sizes (`PRESET_FIELDS`). Weights that record only their shapes take the activation
  (and, for TF1 checkpoints, the head count) from `preset`, whose sizes must fit them.
  Without weights (`arch` None) the config is the preset's.

  Args:
    arch: `read_architecture` of the weights, or None.
    preset: the encoder preset and the setting that chose it; None only with a recorded
      architecture.
    vocab_size: the vocabulary size when the weights do not set it (no weights, or
      shapes without word embeddings).

  Raises:
    ArchitectureConflictError: the preset contradicts the weights (naming both).
  """
  if arch is not None and arch.config is not None:
    if preset is not None and preset.given and preset.value:
      preset_config = BertConfig.preset(preset.value)
      for name in PRESET_FIELDS:
        if getattr(preset_config, name) != getattr(arch.config, name):
          raise _conflict(preset, arch, name, getattr(preset_config, name),
                          getattr(arch.config, name))
    return arch.config
  if preset is None or not preset.value:
    if arch is None:
      raise ValueError("Neither weights nor a preset: nothing gives the BERT's size.")
    raise ArchitectureConflictError(f"{arch.source} records no BERT config (only shapes): "
                                    "name its size with a preset.")
  config = BertConfig.preset(preset.value)
  fields = dict(arch.fields) if arch else {}
  if "vocab_size" not in fields:
    if vocab_size is None:
      raise ValueError("vocab_size is needed for weights without word embeddings.")
    fields["vocab_size"] = vocab_size
  for name, value in fields.items():
    if name in PRESET_FIELDS and getattr(config, name) != value:
      raise _conflict(preset, arch, name, getattr(config, name), value)
  return dataclasses.replace(config, **fields)


@dataclasses.dataclass
class RealmArchitecture:
  """The model part of a `RealmConfig` for given weights (`realm_architecture`)."""
  bert: BertConfig
  embedder: BertConfig
  projection_size: int
  projection_layer_norm_epsilon: float
  notes: List[str] = dataclasses.field(default_factory=list)


def _check_vocabulary(vocab: Setting, arch: Architecture, vocab_size: int) -> None:
  """The vocabulary in use must fit the weights' word embeddings and, when the weights
  ship one, be theirs."""
  tokens = load_vocab(vocab.value)
  if len(tokens) > vocab_size:
    raise _conflict(vocab, arch, "the vocabulary size (rows of the word embeddings)",
                    len(tokens), vocab_size)
  if arch.vocab_path and os.path.abspath(arch.vocab_path) != os.path.abspath(vocab.value):
    theirs = load_vocab(arch.vocab_path)
    if theirs != tokens:
      line = next((i for i, (a, b) in enumerate(zip(tokens, theirs)) if a != b),
                  min(len(tokens), len(theirs)))
      mine_token = tokens[line] if line < len(tokens) else "<end>"
      their_token = theirs[line] if line < len(theirs) else "<end>"
      raise ArchitectureConflictError(
          f"{vocab.describe()} is not the vocabulary of the weights in {arch.source} "
          f"({arch.vocab_path}): line {line + 1} is {their_token!r} there and "
          f"{mine_token!r} in {vocab.value}.")


def _check_casing(do_lower_case: Setting, arch: Architecture) -> None:
  """The casing in use (the tokenizer's, a default or not) must be the recorded one."""
  if arch.do_lower_case is not None and arch.do_lower_case != bool(do_lower_case.value):
    raise _conflict(do_lower_case, arch, "do_lower_case", bool(do_lower_case.value),
                    arch.do_lower_case)


def realm_architecture(vocab: Setting, do_lower_case: Setting, bert_preset: Setting,
                       embedder_preset: Setting, bert_weights: Optional[Setting] = None,
                       embedder_weights: Optional[Setting] = None,
                       initial_embedder_module: Optional[Setting] = None
                       ) -> RealmArchitecture:
  """The reader and embedder architecture of a REALM model initialized from weights.

  The recorded architecture of `bert_weights` is the reader's and that of
  `embedder_weights` the embedder's (with its projection size and LayerNorm epsilon when
  the weights hold a projection; otherwise the original ICT's 128 and 1e-3). Presets
  only fill in what the weights do not record. Every contradiction is an
  `ArchitectureConflictError` naming the setting, the weights and both values: an
  explicit preset of other sizes, a vocabulary larger than the word embeddings or
  different from the one shipped with the weights, a casing other than the recorded one,
  and an initial embedder module (the index's query tower) of another architecture than
  the embedder's weights.

  Args:
    vocab: the vocabulary file in use.
    do_lower_case: the casing in use.
    bert_preset, embedder_preset: encoder presets (`given` False for defaults).
    bert_weights, embedder_weights: the paths the reader and the embedder towers are
      loaded from (None: random initialization).
    initial_embedder_module: the module whose index is used before the first refresh.
  """
  notes = []
  vocab_size = len(load_vocab(vocab.value))
  configs = {}
  archs = {}
  for part, weights, preset in (("bert", bert_weights, bert_preset),
                                ("embedder", embedder_weights, embedder_preset)):
    arch = read_architecture(weights.value) if weights and weights.value else None
    archs[part] = arch
    config = bert_config_for(arch, preset, vocab_size)
    if arch is not None:
      _check_vocabulary(vocab, arch, config.vocab_size)
      _check_casing(do_lower_case, arch)
      if arch.config is None:
        notes.append(f"{arch.source} records only its shapes: the {part}'s activation "
                     f"({config.hidden_act}) and head count ({config.num_attention_heads}) "
                     f"come from the preset {preset.describe()}.")
    configs[part] = config
  if configs["bert"].vocab_size != configs["embedder"].vocab_size:
    raise ArchitectureConflictError(
        f"The reader ({bert_weights.describe() if archs['bert'] else bert_preset.describe()})"
        f" has {configs['bert'].vocab_size} word embeddings and the embedder "
        f"({embedder_weights.describe() if archs['embedder'] else embedder_preset.describe()})"
        f" {configs['embedder'].vocab_size}; both read the same token ids.")
  embedder_arch = archs["embedder"]
  projection_size, epsilon = DEFAULT_PROJECTION_SIZE, DEFAULT_PROJECTION_LAYER_NORM_EPSILON
  if embedder_arch is not None and embedder_arch.has_projection:
    if embedder_arch.projection_layer_norm_epsilon is None:
      raise _unrecorded_epsilon(embedder_arch)
    projection_size = embedder_arch.projection_size
    epsilon = embedder_arch.projection_layer_norm_epsilon
  result = RealmArchitecture(bert=configs["bert"], embedder=configs["embedder"],
                             projection_size=projection_size,
                             projection_layer_norm_epsilon=epsilon, notes=notes)
  if initial_embedder_module and initial_embedder_module.value:
    _check_initial_module(initial_embedder_module, vocab, embedder_weights, embedder_arch,
                          result)
  return result


def _check_initial_module(module: Setting, vocab: Setting,
                          embedder_weights: Optional[Setting],
                          embedder_arch: Optional[Architecture],
                          result: RealmArchitecture) -> None:
  """The initial index's query tower reads the vocabulary in use and, when the embedder
  is loaded from weights, computes as that embedder."""
  arch = read_module_architecture(module.value)
  if arch is None:
    result.notes.append(f"{module.describe()} records no architecture (not a realm-tf "
                        "export); it is not checked against the embedder.")
    return
  if arch.vocab_path:
    _check_vocabulary(vocab, arch, arch.config.vocab_size)
  if embedder_arch is None:
    return  # A randomly initialized embedder: the module's weights are unrelated.
  for name in MODEL_FIELDS:
    mine = getattr(result.embedder, name)
    if _differs(arch.fields[name], mine):
      raise _module_conflict(module, arch, embedder_weights, name, arch.fields[name], mine)
  for name, theirs, mine in (
      ("projection_size", arch.projection_size, result.projection_size),
      ("projection LayerNorm epsilon", arch.projection_layer_norm_epsilon,
       result.projection_layer_norm_epsilon)):
    if theirs is not None and _differs(theirs, mine):
      raise _module_conflict(module, arch, embedder_weights, name, theirs, mine)


def _module_conflict(module: Setting, arch: Architecture, weights: Setting, field: str,
                     theirs, mine) -> ArchitectureConflictError:
  return ArchitectureConflictError(
      f"{module.describe()} ({arch.recorded_in}) has {field} {theirs}, but the embedder "
      f"loaded from {weights.describe()} has {mine}: the initial index would be searched "
      "with another model than the one being trained.")
