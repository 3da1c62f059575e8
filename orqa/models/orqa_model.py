"""The ORQA model, batched: retrieve from a frozen index, read the top blocks.

The original is `language/orqa/models/orqa_model.py`, which ran one question at a time.

For B questions at once:

1. **retrieve**: `[CLS] question [SEP]` (retriever wordpieces, truncated to
   `query_seq_len`) -> the trainable question tower -> question_emb [B, D]; the searcher
   returns the top `retrieval_beam_size` block ids over the frozen `block_emb` [K, D];
   `retriever_logits` [B, beam] are the exact dot products with those rows (gradients reach
   the question tower only; the search itself has none).
2. **has_answer**: `retriever_correct` [B, beam]: the block text contains an answer
   (case-sensitive substring, the original's weak label).
3. **read** the top `reader_beam_size` blocks: `[CLS] question [SEP] title [SEP] block
   [SEP]` (`orqa.data.titled_reader_features`; the original had no title), the reader BERT,
   the span MLP (`orqa.models.span_scorer.SpanScorer`) over all spans of width <=
   `max_span_width` inside the block, plus -10000 outside the block, plus the block's
   retriever logit -> `reader_logits` [B, R, num_spans].
4. **losses** (`orqa.models.losses.compute_losses`): early-update retriever loss + marginal reader
   loss per question; **predictions**: the best (block, span), its score and answer text.

The block index (embeddings, titles, texts, searcher) is held by a `BlockIndex`, which is
not part of the model's checkpoint (it is frozen; `--refresh_index_every_steps` in
`orqa.finetune` re-embeds it).
"""

import dataclasses
import types
from typing import Any, Dict, Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras

from official.nlp.modeling import networks
from orqa.data import answer_spans
from orqa.data import titled_reader_features
from orqa.models import answer_text
from orqa.models import losses
from orqa.models import span_scorer as span_scorer_lib
from orqa.ops import orqa_ops
from realm_tf import errors
from realm_tf.featurization import bert_format
from realm_tf.modeling import precision
from realm_tf.modeling import recompute
from realm_tf.retrieval import searchers

TOP_K_MATCH = (5, 10, 50, 100, 500, 1000, 5000)


@dataclasses.dataclass
class OrqaConfig:
  """Shapes of the ORQA model (the flags of `orqa_experiment.py`), and how the reader runs.

  recompute_activations: recompute each reader transformer layer's activations in the
    backward pass instead of keeping them (`realm_tf.modeling.recompute`); needs a Keras
    reader (a Hugging Face folder, a checkpoint or random init, not a SavedModel module).
  jit_compile: XLA-compile the reader's forward and backward pass (the rest of the step,
    with its string ops and search, stays a TensorFlow graph); None: on with a GPU or TPU.
  """
  retrieval_beam_size: int = 5000
  reader_beam_size: int = 5
  reader_seq_len: int = 320
  query_seq_len: int = 64
  span_hidden_size: int = 256
  max_span_width: int = 10
  include_titles: bool = True
  recompute_activations: bool = False
  jit_compile: Optional[bool] = None

  def __post_init__(self):
    if self.reader_beam_size > self.retrieval_beam_size:
      raise ValueError(f"reader_beam_size ({self.reader_beam_size}) exceeds "
                       f"retrieval_beam_size ({self.retrieval_beam_size}).")

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)


class BlockEmbError(errors.RealmInputError):
  """Block embeddings and block texts that do not match."""


class BlockIndex:
  """The frozen retrieval index: block_emb [K, D], titles and texts [K], a searcher.

  Args:
    block_emb: float32 [K, D]; row i = block i.
    titles, bodies: K strings each (block i's title and text).
    searcher_type: "brute_force" (exact, deterministic) or "scann" (the original's
      approximate search; falls back to brute force when scann is unavailable).
    num_neighbors: the largest k searched (ScaNN is built for it).
    scann_params: optional `searchers.ScannSearcher.build` parameters.

  Everything lives on the CPU, outside any distribution strategy (one copy, read by all
  replicas).
  """

  def __init__(self, block_emb: np.ndarray, titles: Sequence[str], bodies: Sequence[str],
               searcher_type: str = searchers.BRUTE_FORCE, num_neighbors: int = 5000,
               scann_params: Optional[Dict[str, Any]] = None):
    block_emb = np.asarray(block_emb, np.float32)
    if block_emb.ndim != 2:
      raise BlockEmbError(f"block_emb must be [K, D], got {block_emb.shape}.")
    if not len(titles) == len(bodies) == block_emb.shape[0]:
      raise BlockEmbError(f"{block_emb.shape[0]} block embeddings but {len(bodies)} block "
                            f"texts and {len(titles)} titles: the index and the block "
                            "records must come from the same corpus, in the same order.")
    self.searcher_type = searcher_type
    self.num_neighbors = min(num_neighbors, block_emb.shape[0])
    self.scann_params = dict(scann_params or {})
    with tf.device("/CPU:0"), tf.init_scope():
      self.block_emb = tf.Variable(block_emb, trainable=False, name="block_emb")  # [K, D]
      self.titles = tf.constant(np.array([t.encode("utf-8") for t in titles], object))
      self.bodies = tf.constant(np.array([b.encode("utf-8") for b in bodies], object))
    self._searcher = None
    self._build_searcher(block_emb)

  @property
  def num_blocks(self) -> int:
    return int(self.block_emb.shape[0])

  @property
  def dims(self) -> int:
    return int(self.block_emb.shape[1])

  def _build_searcher(self, block_emb: np.ndarray) -> None:
    if self.searcher_type == searchers.SCANN:
      searcher = searchers.build_searcher(searchers.SCANN, block_emb, self.num_neighbors,
                                          **self.scann_params)
      self._searcher = searcher if searcher.searcher_type == searchers.SCANN else None
    elif self.searcher_type == searchers.BRUTE_FORCE:
      self._searcher = None
    else:
      raise ValueError(f"Unknown searcher {self.searcher_type!r}; expected one of "
                       f"{searchers.SEARCHER_TYPES}.")

  def search(self, query_emb, k: int):
    """Top-k blocks for query_emb [B, D], best first.

    Returns:
      ids int32 [B, k] and valid bool [B, k]. When the leaves ScaNN searches hold fewer
      than k blocks, the missing entries are id 0 and not valid.
    """
    k = min(int(k), self.num_blocks)
    with tf.device("/CPU:0"):
      if self._searcher is None:
        ids, scores = searchers.exact_top_k(query_emb, self.block_emb, k)
      else:
        ids, scores = self._searcher.search(query_emb, k)  # [B, <= k]
        # ScaNN returns fewer than k (or pads with NaN scores) when the searched leaves
        # hold fewer blocks: pad to k, marked invalid.
        missing = k - tf.shape(ids)[1]
        ids = tf.pad(ids, [[0, 0], [0, missing]])
        scores = tf.pad(scores, [[0, 0], [0, missing]], constant_values=np.nan)
    ids = tf.ensure_shape(ids, [None, k])  # [B, k]
    return ids, tf.ensure_shape(tf.math.is_finite(scores), [None, k])

  def assign(self, block_emb: np.ndarray) -> None:
    """Replaces the embeddings (same K and D) and rebuilds an approximate searcher.

    Callers must re-trace functions that search with a ScaNN searcher.
    """
    block_emb = np.asarray(block_emb, np.float32)
    if block_emb.shape != tuple(self.block_emb.shape):
      raise BlockEmbError(f"New block_emb {block_emb.shape} != {tuple(self.block_emb.shape)}")
    self.block_emb.assign(block_emb)
    self._build_searcher(block_emb)


def _hub_inputs(inputs) -> Dict[str, tf.Tensor]:
  token_ids, mask, segment_ids = inputs
  return dict(input_word_ids=tf.cast(token_ids, tf.int32), input_mask=tf.cast(mask, tf.int32),
              input_type_ids=tf.cast(segment_ids, tf.int32))


class OrqaModel(tf_keras.Model):
  """Question tower + reader BERT + span scorer over a `BlockIndex` (module docstring).

  Args:
    question_tower: {input_word_ids, input_mask, input_type_ids} [B, Q] -> [B, D]
      (e.g. `modules.load_embedder_module`), trainable.
    retriever_tokenizer: the question tower's tokenizer.
    reader: {input_word_ids, input_mask, input_type_ids} [N, L] -> dict with
      `sequence_output` [N, L, H] (`modules.build_reader`).
    reader_tokenizer: the reader's tokenizer.
    index: the `BlockIndex`.
    config: `OrqaConfig`.
  """

  def __init__(self, question_tower, retriever_tokenizer, reader, reader_tokenizer,
               index: BlockIndex, config: OrqaConfig, **kwargs):
    super().__init__(**kwargs)
    if config.recompute_activations and not isinstance(reader, networks.BertEncoderV2):
      raise ValueError(
          f"recompute_activations needs a Keras BERT reader (a Hugging Face folder, a "
          f"checkpoint or random init); the reader {reader.name!r} is a "
          f"{type(reader).__name__}, e.g. a SavedModel module, whose layers cannot be "
          "recomputed one by one.")
    self.config = config
    self.question_tower = question_tower
    self.reader = reader
    self.span_scorer = span_scorer_lib.SpanScorer(config.span_hidden_size, name="span_scorer")
    with tf.init_scope():
      vocab = tf.constant(reader_tokenizer.vocab)  # [V]
    # Not tracked: not part of the checkpoint.
    self._static = types.SimpleNamespace(
        index=index, retriever_tokenizer=retriever_tokenizer,
        reader_tokenizer=reader_tokenizer, vocab=vocab,
        jit_compile=precision.resolve_jit_compile(config.jit_compile), read_functions={})

  @property
  def index(self) -> BlockIndex:
    return self._static.index

  @property
  def reader_tokenizer(self):
    return self._static.reader_tokenizer

  @property
  def retriever_tokenizer(self):
    return self._static.retriever_tokenizer

  def build_variables(self):
    """Creates the span scorer's variables (call under the strategy's scope)."""
    tokenizer = self.reader_tokenizer
    dummy = tf.constant([[tokenizer.cls_id, tokenizer.sep_id]], tf.int32)
    inputs = _hub_inputs((dummy, tf.ones_like(dummy), tf.zeros_like(dummy)))
    # In a replica context: a reader module loaded under a strategy cannot run outside one.
    strategy = tf.distribute.get_strategy()
    outputs = strategy.run(lambda: self.reader(inputs, training=False)["sequence_output"])
    hidden_size = strategy.experimental_local_results(outputs)[0].shape[-1]
    self.span_scorer.build_variables(int(hidden_size))
    return self

  def embed_questions(self, questions, training=False):
    """question_emb float32 [B, D] of question strings [B]."""
    tokenizer = self.retriever_tokenizer
    ids = tokenizer.tokenize_ids(questions)  # [B, (q)]
    inputs = bert_format([ids], self.config.query_seq_len, tokenizer.cls_id, tokenizer.sep_id)
    return tf.cast(self.question_tower(_hub_inputs(inputs), training=training), tf.float32)

  def call(self, questions, answers=None, training=None, retrieval_beam_size=None,
           with_text: bool = False):
    """Runs retrieval and reading for a batch.

    Args:
      questions: string [B].
      answers: string [B, A] padded with "" (or ragged [B, (A)]), or None (prediction).
      training: dropout on (also on the embedding used for the search, as the original).
      retrieval_beam_size: overrides the config's beam (capped at K).
      with_text: also compute the predicted answer strings (`answer`) and their offsets.

    Returns:
      dict of tensors:
        block_ids int32 [B, beam] (-1 where the searcher found fewer blocks),
        retriever_logits [B, beam] (-10000 there);
        reader_logits [B, R, num_spans];
        predicted_block (index in 0..R-1), predicted_block_id, start, end (positions in the
          reader input) int32 [B], score [B];
        with answers: retriever_correct [B, beam], reader_correct [B, R, num_spans],
          loss, retriever_loss, reader_loss [B], exact_match, reader_oracle [B] bool,
          top_<k>_match [B] bool;
        with_text: answer string [B] and its byte offsets in the predicted block's text,
          answer_start and answer_end int32 [B] (-1: no answer).
    """
    config = self.config
    questions = tf.convert_to_tensor(questions, tf.string)
    beam = min(int(retrieval_beam_size or config.retrieval_beam_size), self.index.num_blocks)
    num_read = min(config.reader_beam_size, beam)

    # Retrieve.
    question_emb = self.embed_questions(questions, training=training)  # [B, D]
    block_ids, valid = self.index.search(tf.stop_gradient(question_emb), beam)  # [B, beam]
    retrieved_emb = tf.gather(self.index.block_emb, block_ids)  # [B, beam, D]
    retriever_logits = tf.einsum("bd,bkd->bk", question_emb, retrieved_emb)  # [B, beam]
    retriever_logits += losses.mask_to_score(valid)  # ScaNN's padding: -10000.
    read_ids = block_ids[:, :num_read]  # [B, R]
    outputs = dict(block_ids=tf.where(valid, block_ids, -1),  # [B, beam], -1: none
                   retriever_logits=retriever_logits)

    # Read.
    titles = tf.gather(self.index.titles, read_ids)  # [B, R]
    bodies = tf.gather(self.index.bodies, read_ids)  # [B, R]
    features = titled_reader_features.featurize(
        questions, titles, bodies, answers, self.reader_tokenizer, config.reader_seq_len,
        include_titles=config.include_titles)
    inputs = features.inputs  # [B, R, L] each
    seq_len = config.reader_seq_len
    flat = [tf.reshape(t, [-1, seq_len]) for t in (inputs.token_ids, inputs.mask,
                                                   inputs.segment_ids)]  # [B * R, L]
    sequence_output = self._read(_hub_inputs(flat), training)  # [B * R, L, H]
    starts, ends, span_mask = answer_spans.span_candidates(inputs.block_mask,
                                                    config.max_span_width)  # [S], [B, R, S]
    # The scorer sees rank-3 inputs, as when its variables were built.
    reader_logits = tf.reshape(self.span_scorer(sequence_output, starts, ends),
                               tf.shape(span_mask))  # [B, R, S]
    reader_logits += losses.mask_to_score(span_mask)
    reader_logits += retriever_logits[:, :num_read, tf.newaxis]
    outputs["reader_logits"] = reader_logits
    outputs["reader_nonpad_ratio"] = tf.reduce_mean(tf.cast(inputs.mask, tf.float32))

    # Predict.
    predicted_block, candidate = answer_spans.predict_span(reader_logits)  # [B], [B]
    outputs.update(
        predicted_block=predicted_block,
        predicted_block_id=tf.gather(read_ids, predicted_block, batch_dims=1),
        start=tf.gather(starts, candidate), end=tf.gather(ends, candidate),
        score=answer_spans.gather_prediction(reader_logits, predicted_block, candidate))
    if with_text:
      outputs["answer"], outputs["answer_start"], outputs["answer_end"] = self._answer_text(
          features, bodies, predicted_block, outputs["start"], outputs["end"])

    if answers is not None:
      retriever_bodies = tf.gather(self.index.bodies, block_ids)  # [B, beam]
      retriever_correct = tf.logical_and(
          orqa_ops.has_answer_batch(retriever_bodies, answers), valid)  # [B, beam]
      reader_correct = tf.logical_and(
          answer_spans.reader_correct(starts, ends, inputs.gold_starts, inputs.gold_ends),
          valid[:, :num_read, tf.newaxis])  # [B, R, S]
      loss = losses.compute_losses(retriever_logits, retriever_correct, reader_logits,
                                   reader_correct)
      outputs.update(
          retriever_correct=retriever_correct, reader_correct=reader_correct,
          loss=loss.loss, retriever_loss=loss.retriever_loss, reader_loss=loss.reader_loss,
          exact_match=answer_spans.prediction_is_correct(reader_correct, predicted_block, candidate),
          reader_oracle=tf.reduce_any(reader_correct, axis=[1, 2]),
          num_read_correct=tf.reduce_sum(tf.cast(reader_correct, tf.int32), axis=[1, 2]))
      for k, match in answer_spans.top_k_match(retriever_correct, TOP_K_MATCH).items():
        outputs[f"top_{k}_match"] = match
    return outputs

  def _read(self, inputs, training):
    """The reader's sequence_output [N, L, H] (recomputed and XLA-compiled per config)."""
    training = bool(training)
    functions = self._static.read_functions
    if training not in functions:
      def read(inputs):
        if self.config.recompute_activations:
          return recompute.encoder_outputs(self.reader, inputs, training)["sequence_output"]
        return self.reader(inputs, training=training)["sequence_output"]
      functions[training] = (tf.function(read, jit_compile=True)
                             if self._static.jit_compile else read)
    return functions[training](inputs)

  def _answer_text(self, features, bodies, predicted_block, start, end):
    """The original's answer, `get_final_text(wordpieces, original tokens of the span)`
    (in TF ops: `answer_text.final_text`), and where it is in its block's text.

    Returns:
      answer string [B] ("" without a span) and its byte offsets in the predicted block's
      text, answer_start and answer_end int32 [B] (-1 without a span).
    """
    inputs = features.inputs
    num_read = tf.shape(inputs.token_ids, out_type=tf.int64)[1]
    token_ids = tf.gather(inputs.token_ids, predicted_block, batch_dims=1)  # [B, L]
    token_map = tf.gather(inputs.token_map, predicted_block, batch_dims=1)  # [B, L]
    orig_start = tf.gather(token_map, start, batch_dims=1)  # [B]
    orig_end = tf.gather(token_map, end, batch_dims=1)  # [B]
    flat_orig = features.orig_tokens.merge_dims(0, 1)  # [B * R, (n)]
    rows = (tf.range(tf.shape(predicted_block, out_type=tf.int64)[0]) * num_read +
            tf.cast(predicted_block, tf.int64))
    orig_tokens = tf.gather(flat_orig, rows)  # [B, (n)]
    positions = tf.ragged.range(start, tf.maximum(end + 1, start))  # [B, (span)]
    pieces = tf.gather(self._static.vocab, tf.gather(token_ids, positions, batch_dims=1))
    pred_text = tf.strings.reduce_join(pieces, axis=-1, separator=" ")  # [B]
    answer = answer_text.final_text(
        pred_text, answer_text.span_tokens(orig_tokens, orig_start, orig_end),
        self.reader_tokenizer)  # [B]
    body = tf.gather(bodies, predicted_block, batch_dims=1)  # [B]
    starts, limits = answer_text.token_byte_offsets(body, self.reader_tokenizer)
    # A span outside any block (only when no block has tokens) has no answer.
    has_span = orig_start >= 0
    none = tf.fill(tf.shape(orig_start), -1)
    return (tf.where(has_span, answer, tf.zeros_like(answer)),
            tf.where(has_span, tf.cast(answer_text.gather_rows(starts, orig_start),
                                       tf.int32), none),
            tf.where(has_span, tf.cast(answer_text.gather_rows(limits, orig_end),
                                       tf.int32), none))


def log_config(config: OrqaConfig) -> None:
  logging.info("ORQA model: %s", config.to_dict())
