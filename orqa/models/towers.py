"""Building and loading the ORQA towers: the ICT / retriever embedder and the reader BERT.

Sources, as the original's `bert_hub_module_path`, `retriever_module_path` and
`reader_module_path` (hub handles there):

* an exported module (a TF2 SavedModel from `realm_tf.tf_hub_modules`): the embedder or the reader
  BERT, loaded trainable with `hub.KerasLayer`, tokenizer from its `tokenization_info`;
* a Hugging Face BERT folder (`config.json`, `model.safetensors`, `vocab.txt`);
* a TF1 BERT or TF2 tf-models checkpoint, e.g. an `export.convert` output's `bert/`
  (with a `--*_preset` for its shape when nothing beside it records the architecture);
* nothing: a randomly initialized BERT of a preset size (`tiny`, `mini`, `minilm`, `base`).

A BERT built for weights takes the architecture they record (activation, epsilons,
sizes; `realm_tf.modeling.architecture`); a preset that contradicts it is an error
naming the flag, the weights and both values.
"""

import dataclasses
import os
from typing import Optional, Tuple

from absl import logging
import tensorflow as tf
import tensorflow_hub as hub

from realm_tf import errors
from realm_tf.modeling import architecture
from realm_tf.modeling import attention
from realm_tf.modeling import encoders
from realm_tf.modeling import hf_bert
from realm_tf.modeling import weights
from realm_tf.modeling.config import BertConfig
from realm_tf.modeling.embedder import ProjectedEmbedder
from realm_tf.tokenization import Tokenizer


class ModuleError(errors.RealmInputError):
  """A module path or flag combination that cannot be used."""


def import_saved_model_ops() -> None:
  """Registers the custom ops an exported module may hold (tensorflow_text, scann)."""
  import tensorflow_text  # pylint: disable=g-import-not-at-top,unused-import
  try:
    import scann  # pylint: disable=g-import-not-at-top,unused-import
  except Exception:  # pylint: disable=broad-except  (optional; only ScaNN modules need it)
    pass


def is_saved_model(path: Optional[str]) -> bool:
  return bool(path) and tf.io.gfile.isdir(path) and tf.saved_model.contains_saved_model(path)


def load_module(path: str):
  """`tf.saved_model.load(path)` after registering the custom ops."""
  import_saved_model_ops()
  try:
    return tf.saved_model.load(path)
  except (OSError, tf.errors.NotFoundError) as e:
    raise ModuleError(f"Cannot load the SavedModel {path}: {e}") from e


def module_tokenizer(loaded, path: str) -> Tokenizer:
  """The tokenizer of a loaded module: its vocabulary asset and casing.

  realm-tf exports (`realm_tf.tf_hub_modules`) are read through their attributes, which also works
  for a module loaded under a distribution strategy's scope (whose restored functions
  cannot run in the cross-replica context); other modules through their
  `tokenization_info` signature.
  """
  if hasattr(loaded, "vocab_file") and hasattr(loaded, "lower_case"):
    vocab_file = loaded.vocab_file.asset_path.numpy().decode("utf-8")
    do_lower_case = bool(loaded.lower_case.numpy())
  elif "tokenization_info" in loaded.signatures:
    info = loaded.signatures["tokenization_info"]()
    vocab_file = info["vocab_file"].numpy().decode("utf-8")
    do_lower_case = bool(info["do_lower_case"].numpy())
  else:
    raise ModuleError(f"{path} has no tokenization_info signature "
                      f"(has {sorted(loaded.signatures)}).")
  if not tf.io.gfile.exists(vocab_file):
    # An asset path recorded at export time; the copy inside the module is authoritative.
    vocab_file = os.path.join(path, "assets", os.path.basename(vocab_file))
  return Tokenizer(vocab_file, do_lower_case=do_lower_case)


@dataclasses.dataclass
class BertSource:
  """Where a BERT comes from (see the module docstring).

  Attributes:
    path: an exported module, a HF BERT folder or a TF checkpoint; None: random init.
    preset: encoder preset for a checkpoint or random init.
    vocab_path: vocabulary (required unless the module or HF folder has one).
    do_lower_case: uncased tokenization (HF folders and checkpoints; modules say it).
    dropout_rate: overrides the BERT's hidden and attention dropout (None: keep).
    path_flag, preset_flag: the flags that set `path` and `preset` (for errors).
    preset_given: False when `preset` is a flag's default: then it fills in what the
      weights do not record but never contradicts them.
  """
  path: Optional[str] = None
  preset: Optional[str] = None
  vocab_path: Optional[str] = None
  do_lower_case: bool = True
  dropout_rate: Optional[float] = None
  path_flag: str = "path"
  preset_flag: str = "preset"
  preset_given: bool = True

  def tokenizer(self) -> Tokenizer:
    vocab = self.vocab_path
    if not vocab and self.path and hf_bert.is_hf_bert_folder(self.path):
      vocab = hf_bert.vocab_path(self.path)
    if not vocab:
      raise ModuleError(f"No vocabulary for BERT source {self.path or self.preset!r}: "
                        "pass a vocab_path.")
    return Tokenizer(vocab, do_lower_case=self.do_lower_case)

  def config(self, vocab_size: int) -> BertConfig:
    """The BERT config: the architecture the weights record, else the preset's.

    Raises:
      ModuleError: no preset for weights that record only their shapes, or a vocabulary
        larger than the word embeddings.
      architecture.ArchitectureConflictError: the preset contradicts the weights.
    """
    arch = architecture.read_architecture(self.path) if self.path else None
    if not self.preset and (arch is None or arch.config is None):
      raise ModuleError(f"{self.path_flag}={self.path} records no architecture (only "
                        f"shapes, or no weights): pass {self.preset_flag} (its size).")
    preset = (architecture.Setting(self.preset_flag, self.preset, self.preset_given)
              if self.preset else None)
    config = architecture.bert_config_for(arch, preset, vocab_size)
    if config.vocab_size < vocab_size:
      raise ModuleError(f"The vocabulary has {vocab_size} entries but the BERT "
                        f"{self.path} has vocab_size {config.vocab_size}.")
    if self.dropout_rate is not None:
      config = dataclasses.replace(config, hidden_dropout_prob=self.dropout_rate,
                                   attention_probs_dropout_prob=self.dropout_rate)
    return config

  def load_weights(self, encoder, config: BertConfig) -> None:
    if not self.path:
      logging.info("BERT initialized randomly (preset %s).", self.preset)
      return
    report = weights.load_bert_weights(encoder, config, self.path)
    logging.info("Loaded BERT weights from %s (%s).", report.source, report.format)


def build_embedder(source: BertSource, projection_size: int = 128,
                   projection_dropout_rate: float = 0.1
                   ) -> Tuple[ProjectedEmbedder, Tokenizer]:
  """A new `ProjectedEmbedder` whose BERT is initialized from `source` (ICT's start)."""
  tokenizer = source.tokenizer()
  config = source.config(tokenizer.vocab_size)
  embedder = ProjectedEmbedder(config, projection_size=projection_size,
                               dropout_rate=projection_dropout_rate, name="embedder")
  embedder.build_variables()
  source.load_weights(embedder.encoder, config)
  return embedder, tokenizer


def load_embedder_module(path: str, trainable: bool = True
                         ) -> Tuple[hub.KerasLayer, Tokenizer]:
  """An exported embedder as a `hub.KerasLayer` ({input_word_ids, input_mask,
  input_type_ids} [B, L] -> [B, D]) and its tokenizer.

  Raises:
    ModuleError: `path` is not an exported module.
  """
  if not is_saved_model(path):
    raise ModuleError(f"{path} is not an exported embedder module (SavedModel).")
  loaded = load_module(path)
  tokenizer = module_tokenizer(loaded, path)
  return hub.KerasLayer(loaded, trainable=trainable, name="question_tower"), tokenizer


def build_reader(source: BertSource) -> Tuple[tf.Module, Tokenizer]:
  """The reader BERT: a layer {input_word_ids, input_mask, input_type_ids} [B, L] ->
  dict with `sequence_output` [B, L, H]; and its tokenizer.

  An exported reader module (`realm_tf.tf_hub_modules.save_reader`) is loaded trainable with
  `hub.KerasLayer`; otherwise a `BertEncoderV2` is built and initialized from `source`.
  """
  if is_saved_model(source.path):
    loaded = load_module(source.path)
    tokenizer = module_tokenizer(loaded, source.path)
    return hub.KerasLayer(loaded, trainable=True, name="reader"), tokenizer
  tokenizer = source.tokenizer()
  config = source.config(tokenizer.vocab_size)
  encoder = encoders.build_bert_encoder(config, name="reader")
  encoder(encoders.dummy_inputs(), training=False)
  attention.use_fast_attention(encoder)
  source.load_weights(encoder, config)
  return encoder, tokenizer
