r"""One SavedModel from question to answer, with the index inside: `python -m export.serving`.

  python -m export.serving --finetuned_model=<orqa.finetune model_dir> --output_dir=serving \
      [--searcher=brute_force|scann] [--top_k=5] [--block_records_path=...] \
      [--checkpoint_path=...] [--max_question_chars=1000] [--overwrite]

The model of `orqa.predict` (the same `params.json`, the same restored checkpoint: the best
export, else the newest training checkpoint) is rebuilt around a `ServingIndex` and saved
with one signature, `serving_default`:

  inputs   question          string [B]
  outputs  answer            string [B]       the answer text ("" for an empty question)
           answer_score      float32 [B]      reader span logit + retriever logit
                                              (-inf for an empty question)
           answer_block_id   int32 [B]        the block the answer comes from (-1: none)
           answer_block_title, answer_block_text  string [B]
           answer_start, answer_end  int32 [B]  byte offsets in answer_block_text of the
                                              original tokens the answer span covers (-1)
           block_ids         int32 [B, k]     the top-k retrieved blocks, best first
           block_titles, block_texts  string [B, k]
           retrieval_scores  float32 [B, k]   question . block embedding

Inside: the reader and retriever tokenizers (tensorflow_text ops), the question tower, the
block embeddings (a variable), the block titles and texts (string variables, no pickles),
the searcher (exact brute force over the variable, or ScaNN's TF ops with its serialized
state), the reader BERT, the span scorer and the answer extraction, all in TF ops. Retrieval,
reading and the answer text are `OrqaModel`'s own (`with_text=True`, the computation
`orqa.predict` and evaluation run), so what is served is what was evaluated. Load it with

  import tensorflow_text  # noqa (and `import scann` for --searcher=scann)
  model = tf.saved_model.load(path)
  model.signatures["serving_default"](question=tf.constant(["who ...?"]))

Requests: an empty batch gives empty outputs; an empty (or whitespace) question gives the
empty answer above; questions are cut to `max_question_chars` characters (invalid UTF-8
is replaced by U+FFFD first); non-string inputs are refused by the signature.

The output directory is written atomically (a temp sibling renamed into place).
`serving_config.json` beside `saved_model.pb` records what was exported.
"""

import json
import os
import shutil
import time
import types
from typing import Any, Dict, Optional

import export  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow loads)
from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from orqa.experiments import training_utils
from orqa.models import builder
from orqa.models import orqa_model
from orqa.models import towers
from orqa import predict
from realm_tf import cli
from realm_tf import errors
from realm_tf.retrieval import block_emb_file
from realm_tf.retrieval import export_dirs
from realm_tf.retrieval import searchers
from realm_tf import tf_hub_modules

FLAGS = flags.FLAGS
SIGNATURE_KEY = "serving_default"
CONFIG_FILENAME = "serving_config.json"
DEFAULT_MAX_QUESTION_CHARS = 1000
OUTPUT_KEYS = ("answer", "answer_score", "answer_block_id", "answer_block_title",
               "answer_block_text", "answer_start", "answer_end", "block_ids",
               "block_titles", "block_texts", "retrieval_scores")
# The order of `scann_ops.scann_to_tensors`'s outputs, and of `tensors_to_scann`'s inputs.
_SCANN_STATE = ("scann_config", "serialized_partitioner", "datapoint_to_token",
                "ah_codebook", "hashed_dataset", "int8_dataset", "int8_multipliers",
                "dp_norms", "dataset")


class ServingError(errors.RealmInputError):
  """A model directory or flag combination that cannot be exported."""


def define_flags():
  """Command-line flags (module docstring)."""
  flags.DEFINE_string("finetuned_model", None, "An orqa.finetune model_dir.")
  flags.DEFINE_string("output_dir", None, "Where the SavedModel is written.")
  flags.DEFINE_enum("searcher", searchers.BRUTE_FORCE, list(searchers.SEARCHER_TYPES),
                    "brute_force (exact) or scann (ScaNN TF ops; load with `import scann`).")
  flags.DEFINE_integer("top_k", 5, "Retrieved blocks returned per question.")
  flags.DEFINE_string("block_records_path", None,
                      "Block texts (default: the model's params.json block_records_path).")
  flags.DEFINE_string("checkpoint_path", None, "Checkpoint prefix (default: as orqa.predict).")
  flags.DEFINE_integer("max_question_chars", DEFAULT_MAX_QUESTION_CHARS,
                       "Questions are cut to this many characters.")
  flags.DEFINE_boolean("overwrite", False, "Replace an existing output_dir.")
  flags.mark_flags_as_required(["finetuned_model", "output_dir"])


class ScannResource(tf.saved_model.experimental.TrackableResource):
  """A ScaNN searcher handle that a SavedModel recreates on load.

  ScaNN's own `ScannState` keeps the searcher in variables, but a SavedModel creates
  resources before it restores variables, so the handle would be built from empty
  tensors. Here the serialized state is a set of constants of the resource's creation
  function: the searcher is rebuilt once when the SavedModel loads. They count against
  the 2 GB GraphDef limit (about 600 bytes per 128-d block with exact reordering, so a
  few million blocks); beyond that, use the brute-force variable.
  """

  def __init__(self, searcher: searchers.ScannSearcher):
    handle = searcher.searcher_handle
    from scann import scann_ops  # pylint: disable=g-import-not-at-top
    tensors = scann_ops.scann_to_tensors(handle)
    self._state = types.SimpleNamespace(**{
        name: t.numpy() for name, t in zip(_SCANN_STATE, tensors)})
    self._create_op = scann_ops.tensors_to_scann
    self._search_op = scann_ops.scann_search_batched
    super().__init__(device="/CPU:0")

  def _create_resource(self):
    state = self._state
    return self._create_op(
        tf.constant(state.dataset), tf.constant(state.scann_config),
        tf.constant(state.serialized_partitioner), tf.constant(state.datapoint_to_token),
        tf.constant(state.ah_codebook), tf.constant(state.hashed_dataset),
        tf.constant(state.int8_dataset), tf.constant(state.int8_multipliers),
        tf.constant(state.dp_norms))

  def search(self, query_emb, k: int, pre_reorder: int):
    ids, scores = self._search_op(self.resource_handle, query_emb, k, pre_reorder, -1,
                                  False)
    return tf.cast(ids, tf.int32), scores


class ServingIndex(tf.Module):
  """The block index of the serving model: what `OrqaModel` needs of a `BlockIndex`.

  Args:
    block_emb: float32 [K, D].
    titles, bodies: K strings.
    searcher_type: "brute_force" or "scann".
    num_neighbors: the retrieval beam.
  """

  def __init__(self, block_emb: np.ndarray, titles, bodies, searcher_type: str,
               num_neighbors: int):
    super().__init__(name="serving_index")
    block_emb = np.asarray(block_emb, np.float32)
    if not len(titles) == len(bodies) == block_emb.shape[0]:
      raise orqa_model.BlockEmbError(
          f"{block_emb.shape[0]} block embeddings but {len(bodies)} block texts and "
          f"{len(titles)} titles: the index and the block records must come from the "
          "same corpus, in the same order.")
    self.searcher_type = searcher_type
    self._num_blocks = int(block_emb.shape[0])
    with tf.device("/CPU:0"):
      self.block_emb = tf.Variable(block_emb, trainable=False, name="block_emb")  # [K, D]
      self.titles = tf.Variable(_encode(titles), trainable=False, name="titles")  # [K]
      self.bodies = tf.Variable(_encode(bodies), trainable=False, name="bodies")  # [K]
    self.scann = None
    self._pre_reorder = 0
    if searcher_type == searchers.SCANN:
      if searchers.import_scann() is None:
        raise ServingError("--searcher=scann needs an importable scann.")
      searcher = searchers.ScannSearcher.build(block_emb, min(num_neighbors,
                                                              self._num_blocks))
      self._pre_reorder = int(searcher.params()["reorder_num_neighbors"] or -1)
      self.scann = ScannResource(searcher)
    elif searcher_type != searchers.BRUTE_FORCE:
      raise ServingError(f"Unknown searcher {searcher_type!r}; expected one of "
                         f"{searchers.SEARCHER_TYPES}.")

  @property
  def num_blocks(self) -> int:
    return self._num_blocks

  def search(self, query_emb, k: int):
    """Top-k blocks for query_emb [B, D], as `orqa_model.BlockIndex.search`.

    Returns:
      ids int32 [B, k] and valid bool [B, k] (ScaNN pads with id 0 and a NaN score when
      the searched leaves hold fewer than k blocks).
    """
    k = min(int(k), self._num_blocks)
    with tf.device("/CPU:0"):
      if self.scann is None:
        ids, scores = searchers.exact_top_k(query_emb, self.block_emb, k)
      else:
        pre_reorder = max(self._pre_reorder, k) if self._pre_reorder > 0 else -1
        ids, scores = self.scann.search(query_emb, k, pre_reorder)  # [B, <= k]
        # Fewer than k when the searched leaves hold fewer blocks: pad, marked invalid.
        missing = k - tf.shape(ids)[1]
        ids = tf.pad(ids, [[0, 0], [0, missing]])
        scores = tf.pad(scores, [[0, 0], [0, missing]], constant_values=np.nan)
    ids = tf.ensure_shape(ids, [None, k])
    return ids, tf.ensure_shape(tf.math.is_finite(scores), [None, k])


def _encode(texts) -> np.ndarray:
  return np.array([t.encode("utf-8") if isinstance(t, str) else bytes(t) for t in texts],
                  dtype=object)


class ServingModule(tf.Module):
  """Root of the serving SavedModel (module docstring).

  Args:
    model: an `OrqaModel` whose index is `index`.
    index: its `ServingIndex`.
    top_k: blocks returned per question.
    max_question_chars: questions are cut to this many characters.
  """

  def __init__(self, model: orqa_model.OrqaModel, index: ServingIndex, top_k: int,
               max_question_chars: int = DEFAULT_MAX_QUESTION_CHARS):
    super().__init__(name="orqa_serving")
    if top_k < 1:
      raise ServingError(f"top_k must be positive, got {top_k}.")
    if max_question_chars < 1:
      raise ServingError(f"max_question_chars must be positive, got {max_question_chars}.")
    self.model = model
    self.index = index
    self.retriever_tokenizer = model.retriever_tokenizer
    self.reader_tokenizer = model.reader_tokenizer
    self.top_k = min(int(top_k), index.num_blocks)
    self.beam = min(max(self.top_k, model.config.reader_beam_size), index.num_blocks)
    self.max_question_chars = int(max_question_chars)
    self.serve = tf.function(self._serve, input_signature=[
        tf.TensorSpec([None], tf.string, name="question")])

  def _serve(self, question):
    question = tf.strings.unicode_transcode(question, "UTF-8", "UTF-8", errors="replace")
    question = tf.strings.substr(question, 0, self.max_question_chars, unit="UTF8_CHAR")
    batch_size = tf.shape(question)[0]
    return tf.cond(batch_size > 0, lambda: self._answer(question),
                   lambda: self._empty_outputs())

  def _empty_outputs(self):
    k = self.top_k
    return dict(
        answer=tf.zeros([0], tf.string), answer_score=tf.zeros([0], tf.float32),
        answer_block_id=tf.zeros([0], tf.int32),
        answer_block_title=tf.zeros([0], tf.string),
        answer_block_text=tf.zeros([0], tf.string),
        answer_start=tf.zeros([0], tf.int32), answer_end=tf.zeros([0], tf.int32),
        block_ids=tf.zeros([0, k], tf.int32), block_titles=tf.zeros([0, k], tf.string),
        block_texts=tf.zeros([0, k], tf.string),
        retrieval_scores=tf.zeros([0, k], tf.float32))

  def _answer(self, question):
    outputs = self.model(question, None, training=False, retrieval_beam_size=self.beam,
                         with_text=True)
    block_ids = outputs["block_ids"][:, :self.top_k]  # [B, k]
    scores = outputs["retriever_logits"][:, :self.top_k]  # [B, k]
    answer_block_id = outputs["predicted_block_id"]  # [B]
    title = tf.gather(self.index.titles, answer_block_id)  # [B]
    body = tf.gather(self.index.bodies, answer_block_id)  # [B]

    empty = tf.equal(tf.strings.length(tf.strings.strip(question)), 0)  # [B]
    empty_k = tf.broadcast_to(empty[:, None], tf.shape(block_ids))
    no_answer = tf.logical_or(empty, outputs["answer_start"] < 0)
    neg_inf = tf.constant(-np.inf, tf.float32)
    return dict(
        answer=tf.where(no_answer, "", outputs["answer"]),
        answer_score=tf.where(empty, neg_inf, outputs["score"]),
        answer_block_id=tf.where(empty, -1, answer_block_id),
        answer_block_title=tf.where(empty, "", title),
        answer_block_text=tf.where(empty, "", body),
        answer_start=tf.where(no_answer, -1, outputs["answer_start"]),
        answer_end=tf.where(no_answer, -1, outputs["answer_end"]),
        block_ids=tf.where(empty_k, -1, block_ids),
        block_titles=tf.where(empty_k | (block_ids < 0), "",
                              tf.gather(self.index.titles, tf.maximum(block_ids, 0))),
        block_texts=tf.where(empty_k | (block_ids < 0), "",
                             tf.gather(self.index.bodies, tf.maximum(block_ids, 0))),
        retrieval_scores=tf.where(empty_k, neg_inf, scores))


def build_serving_module(model_dir: str, searcher: str = searchers.BRUTE_FORCE,
                         top_k: int = 5, block_records_path: Optional[str] = None,
                         checkpoint_path: Optional[str] = None,
                         max_question_chars: int = DEFAULT_MAX_QUESTION_CHARS
                         ) -> ServingModule:
  """Rebuilds and restores the model of an `orqa.finetune` model_dir, as orqa.predict."""
  params = training_utils.read_params(model_dir)
  model_params = builder.ModelParams(**params["model"])
  if block_records_path:
    model_params.block_records_path = block_records_path
  config = model_params.orqa_config()
  prefix = block_emb_file.checkpoint_prefix(model_params.retriever_module_path)
  block_emb = block_emb_file.read_block_emb(prefix)
  titles, bodies = builder.load_block_records(model_params.block_records_path)
  refresh = bool(params.get("refresh_index_every_steps"))
  path = predict.checkpoint_to_restore(model_dir, checkpoint_path)
  if refresh:  # The fine-tuning re-embedded the blocks: the checkpoint holds block_emb.
    block_emb = tf.train.load_checkpoint(path).get_tensor(
        "block_emb/.ATTRIBUTES/VARIABLE_VALUE")
  beam = min(max(top_k, config.reader_beam_size), block_emb.shape[0])
  index = ServingIndex(block_emb, titles, bodies, searcher, beam)
  strategy = tf.distribute.get_strategy()
  model = builder.build_model(model_params, strategy, index=index)
  checkpoint = tf.train.Checkpoint(model=model)
  checkpoint.read(path).expect_partial().assert_existing_objects_matched()
  logging.info("Restored %s (%d blocks, searcher %s).", path, index.num_blocks, searcher)
  return ServingModule(model, index, top_k, max_question_chars)


def save(module: ServingModule, output_dir: str, overwrite: bool = False,
         extra_config: Optional[Dict[str, Any]] = None) -> str:
  """Saves the serving SavedModel into `output_dir` atomically; returns output_dir."""
  output_dir = os.path.abspath(output_dir)
  if os.path.exists(output_dir) and not overwrite:
    raise ServingError(f"{output_dir} exists; pass --overwrite to replace it.")
  staging = export_dirs.temp_dir_for(output_dir)
  try:
    # The tf.function, not a concrete function traced here: saving traces again whatever
    # was traced outside it (the whole retrieve-and-read graph, about a third of the time).
    tf_hub_modules.save_without_layer_traces(module, staging, {SIGNATURE_KEY: module.serve})
    config = dict(signature=SIGNATURE_KEY, outputs=list(OUTPUT_KEYS),
                  top_k=module.top_k, beam=module.beam,
                  searcher=module.index.searcher_type, num_blocks=module.index.num_blocks,
                  max_question_chars=module.max_question_chars,
                  custom_ops=["tensorflow_text"] + (
                      ["scann"] if module.index.searcher_type == searchers.SCANN else []),
                  orqa_config=module.model.config.to_dict(), **(extra_config or {}))
    with open(os.path.join(staging, CONFIG_FILENAME), "w", encoding="utf-8") as f:
      f.write(json.dumps(config, indent=2, sort_keys=True) + "\n")
    old = None
    if os.path.exists(output_dir):
      old = export_dirs.temp_dir_for(output_dir)
      os.rename(output_dir, old)
    export_dirs.commit_directory(staging, output_dir)
    if old:
      shutil.rmtree(old, ignore_errors=True)
  finally:
    if os.path.exists(staging):
      shutil.rmtree(staging, ignore_errors=True)
  return output_dir


def export_serving_model(model_dir: str, output_dir: str, searcher: str = searchers.BRUTE_FORCE,
                         top_k: int = 5, block_records_path: Optional[str] = None,
                         checkpoint_path: Optional[str] = None,
                         max_question_chars: int = DEFAULT_MAX_QUESTION_CHARS,
                         overwrite: bool = False) -> str:
  """Builds and saves the serving SavedModel of an `orqa.finetune` model_dir."""
  start = time.monotonic()
  module = build_serving_module(model_dir, searcher, top_k, block_records_path,
                                checkpoint_path, max_question_chars)
  save(module, output_dir, overwrite,
       extra_config=dict(finetuned_model=os.path.abspath(model_dir)))
  logging.info("Saved the serving model to %s in %.1f s.", output_dir,
               time.monotonic() - start)
  return output_dir


def load(path: str):
  """Loads a serving SavedModel after registering its custom ops."""
  towers.import_saved_model_ops()
  return tf.saved_model.load(path)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  path = export_serving_model(FLAGS.finetuned_model, FLAGS.output_dir, FLAGS.searcher,
                              FLAGS.top_k, FLAGS.block_records_path, FLAGS.checkpoint_path,
                              FLAGS.max_question_chars, FLAGS.overwrite)
  print(path)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
