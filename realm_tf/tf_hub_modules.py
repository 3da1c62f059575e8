"""TF-Hub (TF2 SavedModel) exports of REALM's embedder and reader BERT.

The layout around them: docs/ARCHITECTURE.md.

Embedder module (`.../embedder`), loadable with `hub.KerasLayer(path, trainable=True)`:
  __call__ / serving_default  {input_word_ids, input_mask, input_type_ids} int32 [B, L]
                              -> float32 [B, D] (dropout only with training=True)
  projected                   {input_ids, input_mask, segment_ids} -> {"default": [B, D]}
                              (the original's signature and output key)
  projected_text              {text: string [B]} -> {"default": [B, D]}: the tokenizer is
                              inside; inputs are formatted as queries `[CLS] text [SEP]`
  tokenization_info           {} -> {vocab_file (asset path), do_lower_case}

Reader module (`.../bert`):
  __call__ / serving_default  hub names -> {pooled_output, sequence_output}
  tokens                      original names -> {pooled_output, sequence_output}
  mlm                         original names + mlm_positions [B, M] -> {mlm_logits [B, M, V]}
  tokenization_info           as above

Both modules also record their architecture (BERT config; the embedder's projection size
and LayerNorm epsilon) in `assets.extra/realm_tf_architecture.json`, which loaders compare
with the models they build (`realm_tf.modeling.architecture`).

`export_modules` writes `export/<prefix>/<ts>/{embedder,bert[,query_embedder]}` and
`global_step.txt` into a temporary directory and renames it into place, so readers (the
refresh job) never see a partial export.
"""

import json
import os
import shutil
from typing import Optional, Sequence

import tensorflow as tf
import tf_keras
from tf_keras.src.saving.legacy.saved_model import utils as keras_saved_model_utils

from realm_tf.featurization import bert_format
from realm_tf.modeling import architecture
from realm_tf.retrieval import export_dirs
from realm_tf.tokenization import Tokenizer

_INT_SPEC = tf.TensorSpec([None, None], tf.int32)
HUB_INPUTS = ("input_word_ids", "input_mask", "input_type_ids")
ORIGINAL_INPUTS = ("input_ids", "input_mask", "segment_ids")


def _hub_inputs(input_ids, input_mask, segment_ids):
  return dict(input_word_ids=input_ids, input_mask=input_mask, input_type_ids=segment_ids)


class _ModuleExport(tf.__internal__.tracking.AutoTrackable):
  """Root object of an export: the wrapped Keras model (object path `model`, which
  `realm_tf.modeling.weights.load_embedder_module` reads), the vocabulary and tokenizer,
  and the reusable SavedModel's `variables`, `trainable_variables`,
  `regularization_losses` and `__call__(inputs, training)`, as `hub.KerasLayer` uses them.

  The root is not a Keras object, and `_save` keeps Keras from tracing every layer's call
  functions into the SavedModel: nothing loads those, and they made an export 2-3x slower.
  """

  def __init__(self, model: tf_keras.Model, tokenizer: Tokenizer):
    self.model = model
    self.tokenizer = tokenizer
    self.vocab_file = tf.saved_model.Asset(tokenizer.vocab_path)
    self.lower_case = tf.Variable(tokenizer.do_lower_case, trainable=False,
                                  name="do_lower_case")
    self.variables = list(model.variables)
    self.trainable_variables = list(model.trainable_variables)
    self.regularization_losses = []

  def call(self, inputs, training):
    raise NotImplementedError

  @tf.function
  def __call__(self, inputs, training=False):
    return self.call(inputs, training)

  @tf.function(input_signature=[])
  def tokenization_info(self):
    return dict(vocab_file=self.vocab_file.asset_path, do_lower_case=self.lower_case)


class EmbedderExport(_ModuleExport):
  """The embedder module. Args: embedder (a `ProjectedEmbedder`), tokenizer, query_seq_len."""

  def __init__(self, embedder: tf_keras.Model, tokenizer: Tokenizer, query_seq_len: int):
    super().__init__(embedder, tokenizer)
    self.query_seq_len = query_seq_len

  def call(self, inputs, training):
    return self.model(inputs, training=training)  # [B, D]

  @tf.function(input_signature=[_INT_SPEC] * 3)
  def projected(self, input_ids, input_mask, segment_ids):
    return {"default": self.call(_hub_inputs(input_ids, input_mask, segment_ids),
                                 training=False)}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def projected_text(self, text):
    ids = self.tokenizer.tokenize_ids(text)  # [B, (tokens)]
    inputs = bert_format([ids], self.query_seq_len, self.tokenizer.cls_id,
                         self.tokenizer.sep_id)
    return self.projected(*inputs)


class ReaderExport(_ModuleExport):
  """The reader BERT module. Args: reader (a `KnowledgeAugmentedEncoder`), tokenizer."""

  def call(self, inputs, training):
    outputs = self.model(inputs, training=training)
    return dict(pooled_output=outputs["pooled_output"],
                sequence_output=outputs["sequence_output"])

  @tf.function(input_signature=[_INT_SPEC] * 3)
  def tokens(self, input_ids, input_mask, segment_ids):
    return self.call(_hub_inputs(input_ids, input_mask, segment_ids), training=False)

  @tf.function(input_signature=[_INT_SPEC] * 4)
  def mlm(self, input_ids, input_mask, segment_ids, mlm_positions):
    outputs = self.model(_hub_inputs(input_ids, input_mask, segment_ids),
                         mlm_positions=mlm_positions, training=False)
    return dict(mlm_logits=outputs["mlm_logits"])


_HUB_SPECS = {n: tf.TensorSpec([None, None], tf.int32, name=n) for n in HUB_INPUTS}


def save_without_layer_traces(obj, path: str, signatures: dict) -> None:
  """`tf.saved_model.save` without the call functions Keras would trace for every layer
  of the Keras models `obj` holds: callers load SavedModels by their signatures and
  functions, and the traces made saving 2-3x slower."""
  with keras_saved_model_utils.keras_option_scope(save_traces=False):
    tf.saved_model.save(obj, path, signatures=signatures)


def _save(module: _ModuleExport, path: str, signatures: dict) -> None:
  """Saves `module` with `__call__` traced in both training modes (as `hub.KerasLayer`
  calls it) and `serving_default` = `__call__(training=False)` on the hub input names."""
  module.__call__.get_concrete_function(_HUB_SPECS, training=True)
  serving = module.__call__.get_concrete_function(_HUB_SPECS, training=False)
  save_without_layer_traces(module, path, dict(signatures, serving_default=serving))


def _write_architecture(model: tf_keras.Model, path: str) -> None:
  """Writes `architecture.MODULE_ARCHITECTURE_FILE` of a realm-tf model into `path`."""
  if not hasattr(model, "encoder_config"):
    return  # not a realm-tf model: nothing is recorded
  record = os.path.join(path, architecture.MODULE_ARCHITECTURE_FILE)
  tf.io.gfile.makedirs(os.path.dirname(record))
  with tf.io.gfile.GFile(record, "w") as f:
    f.write(json.dumps(architecture.module_architecture_record(model), indent=2,
                       sort_keys=True) + "\n")


def save_embedder(embedder: tf_keras.Model, tokenizer: Tokenizer, path: str,
                  query_seq_len: int) -> None:
  """Saves the embedder module (module docstring) to `path`."""
  module = EmbedderExport(embedder, tokenizer, query_seq_len)
  _save(module, path, {"projected": module.projected,
                       "projected_text": module.projected_text,
                       "tokenization_info": module.tokenization_info})
  _write_architecture(embedder, path)


def save_reader(reader: tf_keras.Model, tokenizer: Tokenizer, path: str) -> None:
  """Saves the reader BERT module (module docstring) to `path`."""
  module = ReaderExport(reader, tokenizer)
  _save(module, path, {"tokens": module.tokens, "mlm": module.mlm,
                       "tokenization_info": module.tokenization_info})
  _write_architecture(reader, path)


def export_modules(model, tokenizer: Tokenizer, model_dir: str, global_step: int,
                   prefix: str = "tf_hub", exports_to_keep: Optional[int] = 5,
                   now: Optional[float] = None, also_to: Sequence[str] = ()) -> str:
  """Exports a `RealmModel`'s modules to `model_dir/export/<prefix>/<ts>/`, atomically.

  Writes `embedder` (the document tower), `bert` (the reader), `query_embedder` when the
  towers are not shared (the original `language/realm/model.py` never exported it), and
  `global_step.txt`; then keeps the newest `exports_to_keep`. A copy goes to each prefix
  in `also_to` (e.g. "tf_hub_best"), committed the same way.

  Returns:
    The committed export directory.
  """
  base = export_dirs.export_base(model_dir, prefix)
  timestamp = export_dirs.new_timestamp(base, now)
  final = os.path.join(base, str(timestamp))
  staging = export_dirs.temp_dir_for(final)
  query_seq_len = model.config.query_seq_len
  save_embedder(model.document_embedder, tokenizer, os.path.join(staging, "embedder"),
                query_seq_len)
  if model.query_embedder is not model.document_embedder:
    save_embedder(model.query_embedder, tokenizer,
                  os.path.join(staging, "query_embedder"), query_seq_len)
  save_reader(model.reader, tokenizer, os.path.join(staging, "bert"))
  export_dirs.write_global_step(staging, global_step)
  # Copies are made from the staging directory: once committed, the refresh job may
  # move the export away at any moment.
  for other in also_to:
    other_base = export_dirs.export_base(model_dir, other)
    other_final = os.path.join(other_base, str(export_dirs.new_timestamp(other_base, now)))
    other_staging = export_dirs.temp_dir_for(other_final)
    shutil.copytree(staging, other_staging)
    export_dirs.commit_directory(other_staging, other_final)
    if exports_to_keep:
      export_dirs.clean_exports(model_dir, other, exports_to_keep)
  export_dirs.commit_directory(staging, final)
  if exports_to_keep:
    export_dirs.clean_exports(model_dir, prefix, exports_to_keep)
  return final

