"""Configuration of the REALM models and trainer (the original's `estimator_params.json`).

Two dataclasses, both JSON round-trippable:

* `BertConfig`: the shape of one BERT encoder (Hugging Face `config.json` field names, so a
  HF folder's config reads directly), with encoder presets `tiny` (L2/H128/A2), `mini`
  (L4/H256/A4), `minilm` (L6/H384/A12) and `base` (L12/H768/A12).
* `RealmConfig`: the reader BERT (`bert`), the retriever BERT (`embedder`), the embedder
  projection, and every hyperparameter the original trainer took
  (`language/realm/train_realm.py`, `language/common/utils/experiment_utils.py`), plus
  the constants of BERT's optimizer. `RealmConfig.save(model_dir)` writes
  `model_dir/config.json` (sorted keys, like the original's params file), which the
  refresher and example generator read back to rebuild the featurizer.
"""

import dataclasses
import json
import os
from typing import Any, Dict, Optional

import tensorflow as tf

from realm_tf import errors
from realm_tf.modeling import precision as precision_lib

CONFIG_FILENAME = "config.json"

# hidden_act values: "gelu" is the exact (erf) GELU of Hugging Face BERT; "gelu_approximate"
# is the tanh approximation of the original TF1 BERT code and tf-models-official.
ACTIVATIONS = ("gelu", "gelu_approximate", "relu", "tanh", "swish", "silu")
_HF_ACTIVATION_ALIASES = {
    "gelu": "gelu",
    "gelu_new": "gelu_approximate",
    "gelu_pytorch_tanh": "gelu_approximate",
    "gelu_fast": "gelu_approximate",
    "gelu_approximate": "gelu_approximate",
    "relu": "relu",
    "tanh": "tanh",
    "swish": "swish",
    "silu": "silu",
}


def check_known_keys(cls, d: Dict[str, Any]) -> None:
  """Refuses keys of `d` that are not fields of the dataclass `cls` (a saved config of
  another version or program), naming them: `errors.ArgumentError`."""
  known = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(d) - known)
  if unknown:
    raise errors.ArgumentError(
        f"Unknown {cls.__name__} keys {unknown}; known keys: {sorted(known)}.")


@dataclasses.dataclass
class BertConfig:
  """Hyperparameters of one BERT encoder (`official.nlp.modeling.networks.BertEncoderV2`).

  Attributes follow the Hugging Face `BertConfig` names so that a HF `config.json` maps
  onto it one to one (`from_hf_dict`).
  """
  vocab_size: int = 30522
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  hidden_act: str = "gelu"
  hidden_dropout_prob: float = 0.1
  attention_probs_dropout_prob: float = 0.1
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  initializer_range: float = 0.02
  layer_norm_eps: float = 1e-12

  def __post_init__(self):
    if self.hidden_act not in ACTIVATIONS:
      raise ValueError(f"hidden_act={self.hidden_act!r}; expected one of {ACTIVATIONS}.")
    if self.hidden_size % self.num_attention_heads:
      raise ValueError(f"hidden_size ({self.hidden_size}) is not a multiple of "
                       f"num_attention_heads ({self.num_attention_heads}).")
    # BertEncoderV2 hard-codes LayerNorm epsilon 1e-12 (BERT's value).
    if abs(self.layer_norm_eps - 1e-12) > 1e-15:
      raise ValueError(f"layer_norm_eps={self.layer_norm_eps} is not supported: "
                       "BertEncoderV2 uses 1e-12.")

  @classmethod
  def preset(cls, name: str, **overrides) -> "BertConfig":
    """A preset encoder size: one of `PRESETS` (tiny, mini, minilm, base)."""
    if name not in PRESETS:
      raise ValueError(f"Unknown preset {name!r}; expected one of {sorted(PRESETS)}.")
    return dataclasses.replace(PRESETS[name], **overrides)

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: Dict[str, Any]) -> "BertConfig":
    check_known_keys(cls, d)
    return cls(**d)

  @classmethod
  def from_hf_dict(cls, d: Dict[str, Any]) -> "BertConfig":
    """From a Hugging Face BERT `config.json` dict (extra HF keys are ignored)."""
    if d.get("model_type", "bert") != "bert":
      raise ValueError(f"model_type={d.get('model_type')!r}: only BERT is supported.")
    if d.get("position_embedding_type", "absolute") != "absolute":
      raise ValueError("Only absolute position embeddings are supported, got "
                       f"{d.get('position_embedding_type')!r}.")
    act = d.get("hidden_act", "gelu")
    if act not in _HF_ACTIVATION_ALIASES:
      raise ValueError(f"Unsupported hidden_act {act!r}.")
    kwargs = {f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d}
    kwargs["hidden_act"] = _HF_ACTIVATION_ALIASES[act]
    return cls(**kwargs)


PRESETS = {
    "tiny": BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=512),
    "mini": BertConfig(hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                       intermediate_size=1024),
    "minilm": BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                         intermediate_size=1536),
    "base": BertConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                       intermediate_size=3072),
}


# Keys of config.json files written by earlier versions: Estimator-era loop settings and
# initial-weight paths that nothing read are dropped; `tf_random_seed` is now `seed`.
_REMOVED_KEYS = frozenset({"eval_throttle_secs", "eval_start_delay_secs", "num_input_threads",
                           "train_preprocessing_servers", "eval_preprocessing_servers",
                           "bert_hub_module_handle", "embedder_hub_module_handle"})
_RENAMED_KEYS = {"tf_random_seed": "seed"}


@dataclasses.dataclass
class RealmConfig:
  """Everything the REALM trainer needs; written to model_dir/config.json.

  Model:
    bert: the knowledge-augmented encoder (reader) BERT.
    embedder: the retriever BERT (query and document towers).
    projection_size: retriever embedding size D (128).
    embedder_dropout_rate: dropout on the projected embedding in training (0.1).
    embedder_layer_norm_epsilon: epsilon of the projection LayerNorm (Keras default 1e-3).
    share_embedders: one tower for queries and documents (default), or a separate query
      tower (exported as `query_embedder`).
    separate_candidate_segments: segment ids 0/1 for title/body in candidate inputs.

  Data (the featurizer's parameters): query_seq_len Q, candidate_seq_len C,
  num_candidates N (null document included), max_masks M, vocab_path, do_lower_case.

  Optimizer (google-research/bert `optimization.py`): learning_rate, num_train_steps,
  num_warmup_steps (None: the original's `min(10000, max(100, num_train_steps // 10))`),
  weight_decay_rate, adam_beta_1, adam_beta_2, adam_epsilon, clip_norm.

  reader_only_steps: for the first N training steps the query and document towers get
  zero gradients, so only the reader learns (the towers move only by the optimizer's
  decoupled weight decay, a factor 1 - 0.01 * lr per step); 0, the original, trains
  everything from step 0. A reader without a trained MLM head (e.g. a sentence
  encoder's weights) first learns to read the retrieved documents, so the towers do not
  follow the retrieval gradient of a reader that cannot yet use them (docs/BENCHMARKS.md
  has a run where that alone did not keep the retriever from degrading).
  freeze_reader: the reader's variables are left out of the train step, so only the
  retriever towers learn (False, the original, trains everything). Meant for a reader
  that already reads (e.g. the sample run's constructed copy circuit), which updates at
  the towers' learning rate can erase.
  freeze_document_tower: the document tower's variables are left out of the train step
  (needs share_embedders=False), so the index built at the start never goes stale and
  only the query tower (and the reader) learn, as in ORQA fine-tuning; False, the
  original, trains both towers and relies on index refreshes.

  Loop: batch_size and eval_batch_size are *global* batch sizes; the remaining
  fields keep the original's flag names and defaults; seed seeds initialization and
  example generation (the original's `tf_random_seed`).

  Compute (memory and speed, not the math; `realm_tf.modeling.precision`):
    recompute_activations: recompute each transformer layer's activations in the backward
      pass instead of keeping them (`realm_tf.modeling.recompute`).
    precision: "auto" (mixed_bfloat16 on TPUs, bf16-capable GPUs and CPUs with bf16
      instructions; float32 elsewhere), "float32" or "mixed_bfloat16" (float32 variables,
      optimizer and losses).
    jit_compile: XLA-compile the train step's forward and backward pass; None: on with a
      GPU or TPU, off on CPUs.
    micro_batches: run each replica's batch as this many sequential micro-batches whose
      gradients are summed (the same gradient, the memory of one micro-batch).
  """
  bert: BertConfig = dataclasses.field(default_factory=BertConfig)
  embedder: BertConfig = dataclasses.field(default_factory=BertConfig)
  projection_size: int = 128
  embedder_dropout_rate: float = 0.1
  embedder_layer_norm_epsilon: float = 1e-3
  share_embedders: bool = True
  separate_candidate_segments: bool = True
  # Featurization (values of the original launcher).
  query_seq_len: int = 96
  candidate_seq_len: int = 288
  num_candidates: int = 8
  max_masks: int = 10
  vocab_path: Optional[str] = None
  do_lower_case: bool = True
  # Optimizer (BERT's AdamW).
  learning_rate: float = 3e-5
  num_train_steps: int = 200000
  num_warmup_steps: Optional[int] = None
  weight_decay_rate: float = 0.01
  adam_beta_1: float = 0.9
  adam_beta_2: float = 0.999
  adam_epsilon: float = 1e-6
  clip_norm: float = 1.0
  reader_only_steps: int = 0
  freeze_reader: bool = False
  freeze_document_tower: bool = False
  # Loop.
  batch_size: int = 16
  eval_batch_size: int = 16
  num_eval_steps: Optional[int] = None
  save_checkpoints_steps: int = 1000
  keep_checkpoint_max: int = 5
  seed: Optional[int] = None
  # Compute.
  recompute_activations: bool = False
  precision: str = "auto"
  jit_compile: Optional[bool] = None
  micro_batches: int = 1

  def __post_init__(self):
    if isinstance(self.bert, dict):
      self.bert = BertConfig.from_dict(self.bert)
    if isinstance(self.embedder, dict):
      self.embedder = BertConfig.from_dict(self.embedder)
    if self.bert.vocab_size != self.embedder.vocab_size:
      raise ValueError(f"The reader vocab_size ({self.bert.vocab_size}) differs from the "
                       f"embedder vocab_size ({self.embedder.vocab_size}); both read the "
                       "same featurized token ids.")
    joint_len = self.query_seq_len + self.candidate_seq_len
    if joint_len > self.bert.max_position_embeddings:
      raise ValueError(f"query_seq_len + candidate_seq_len = {joint_len} exceeds the reader's "
                       f"max_position_embeddings ({self.bert.max_position_embeddings}).")
    longest = max(self.query_seq_len, self.candidate_seq_len)
    if longest > self.embedder.max_position_embeddings:
      raise ValueError(f"Sequence length {longest} exceeds the embedder's "
                       f"max_position_embeddings ({self.embedder.max_position_embeddings}).")
    if self.num_train_steps < 1:
      raise ValueError(f"num_train_steps must be positive, got {self.num_train_steps}.")
    if self.reader_only_steps < 0:
      raise ValueError(f"reader_only_steps must be >= 0, got {self.reader_only_steps}.")
    if self.freeze_reader and self.reader_only_steps:
      raise ValueError(f"freeze_reader and reader_only_steps={self.reader_only_steps} "
                       "contradict each other: a frozen reader trains at no step.")
    if self.freeze_document_tower and self.share_embedders:
      raise ValueError("freeze_document_tower needs share_embedders=False: with one shared "
                       "tower, freezing the documents' would freeze the queries' too.")
    precision_lib.check_precision(self.precision)
    if self.micro_batches < 1 or self.batch_size % self.micro_batches:
      raise ValueError(f"micro_batches={self.micro_batches} must be positive and divide "
                       f"batch_size={self.batch_size}.")

  @classmethod
  def preset(cls, name: str, embedder_preset: Optional[str] = None,
             **overrides) -> "RealmConfig":
    """A config whose reader uses encoder preset `name` (embedder: `embedder_preset`, same
    by default); `overrides` set other fields."""
    bert = BertConfig.preset(name)
    embedder = BertConfig.preset(embedder_preset or name)
    return cls(bert=bert, embedder=embedder, **overrides)

  @property
  def warmup_steps(self) -> int:
    """The warmup length: `num_warmup_steps` or the original's formula."""
    if self.num_warmup_steps is not None:
      return self.num_warmup_steps
    return default_num_warmup_steps(self.num_train_steps)

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: Dict[str, Any]) -> "RealmConfig":
    d = {_RENAMED_KEYS.get(k, k): v for k, v in d.items() if k not in _REMOVED_KEYS}
    check_known_keys(cls, d)
    for key in ("bert", "embedder"):
      if key in d and isinstance(d[key], dict):
        d[key] = BertConfig.from_dict(d[key])
    return cls(**d)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  @classmethod
  def from_json(cls, text: str) -> "RealmConfig":
    return cls.from_dict(json.loads(text))

  def save(self, model_dir: str) -> str:
    """Writes `model_dir/config.json` atomically (temp file + rename); returns its path."""
    tf.io.gfile.makedirs(model_dir)
    path = os.path.join(model_dir, CONFIG_FILENAME)
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
      f.write(self.to_json() + "\n")
    tf.io.gfile.rename(tmp, path, overwrite=True)
    return path

  @classmethod
  def load(cls, path: str) -> "RealmConfig":
    """Reads a config from a `config.json` path or a model_dir holding one."""
    if tf.io.gfile.isdir(path):
      path = os.path.join(path, CONFIG_FILENAME)
    with tf.io.gfile.GFile(path, "r") as f:
      return cls.from_json(f.read())


def default_num_warmup_steps(num_train_steps: int) -> int:
  """The original's warmup: `min(10000, max(100, int(num_train_steps / 10)))`."""
  return min(10000, max(100, int(num_train_steps / 10)))
