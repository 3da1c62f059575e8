"""REALM featurization: salient-span query masking and the example features
(`language/realm/featurization.py`).

Every rule is implemented once, as batched in-graph TensorFlow ops on RaggedTensors, so the
training input pipeline runs it inside `tf.data` at scale. The eager methods (`mask_query`,
`featurize_query_and_docs`, ...) call the same ops on a batch of one and mirror the
original's Python API and exceptions, for debugging and tests.

Feature structure of one example (batched pipelines add a leading batch dimension):

  query_inputs      BertInputs [Q]       [CLS] masked query [SEP]; segments 0
  candidate_inputs  BertInputs [N, C]    [CLS] title [SEP] body [SEP]; segments 0 / 1
                                         (all 0 if not separate_candidate_segments)
  joint_inputs      BertInputs [N, Q+C]  [CLS] masked query [SEP] body [SEP]; no title
  mlm_targets       int32 [M]            original ids of the masked tokens, 0-padded
  mlm_positions     int32 [M]            masked token index + 1 (valid in query and joint)
  mlm_mask          int32 [M]            1 for real masks
  candidate_labels  float32 [N]          zeros (unused, kept for wire compatibility)
  export_timestamp  int32 []             timestamp of the embedder export that retrieved
Candidate 0 is the null document.
"""

import collections
from typing import Dict, Sequence

import numpy as np
import tensorflow as tf

from realm_tf import errors
from realm_tf.featurization.bert_inputs import BertInputs, bert_format
from realm_tf.tokenization import Tokenizer

Query = collections.namedtuple("Query", ["text", "tokens", "mask_spans", "orig_doc_uid"])
Query.__doc__ = """A pre-training query: text (bytes), tokens (list of Token), mask_spans
(list of (start, stop) byte offsets into text, stop exclusive) and orig_doc_uid."""

MASKING_OK = 0
MASKS_COVER_NO_TOKENS = 1
MASKS_WOULD_BE_TRUNCATED = 2
MASKING_ERROR_MESSAGES = {
    MASKS_COVER_NO_TOKENS: "Masks do not cover any tokens.",
    MASKS_WOULD_BE_TRUNCATED: "Masks would be truncated.",
}


class MaskingError(errors.RealmInputError):
  """The mask spans of a query cannot be masked (the original's MaskingError)."""


def _ragged_rows(rows: Sequence[Sequence[int]], dtype=tf.int32) -> tf.RaggedTensor:
  """A RaggedTensor [len(rows), (len)] from Python lists (empty rows allowed)."""
  lengths = [len(r) for r in rows]
  values = np.concatenate([np.asarray(r, np.int64).reshape([-1]) for r in rows] or
                          [np.zeros([0], np.int64)])
  return tf.RaggedTensor.from_row_lengths(tf.constant(values, dtype),
                                          tf.constant(lengths, tf.int64))


class Featurizer:
  """Turns queries and candidate documents into REALM model inputs.

  Args:
    query_seq_len: Q, length of the query inputs.
    candidate_seq_len: C, length of the candidate inputs (joint inputs are Q + C).
    num_candidates: N, candidates per example including the null document.
    max_masks: M, masked positions kept per example (more are masked but untargeted).
    tokenizer: a `Tokenizer`.
    separate_candidate_segments: segment ids 0 (title) / 1 (body) in candidate inputs;
      all 0 otherwise. Applied both here and when embedding the corpus (the original
      applied it only to the corpus embedding).
  """

  def __init__(self, query_seq_len: int, candidate_seq_len: int, num_candidates: int,
               max_masks: int, tokenizer: Tokenizer,
               separate_candidate_segments: bool = True):
    if query_seq_len < 3 or candidate_seq_len < 3:
      raise ValueError(f"query_seq_len ({query_seq_len}) and candidate_seq_len "
                       f"({candidate_seq_len}) must be at least 3.")
    if num_candidates < 1 or max_masks < 1:
      raise ValueError(f"num_candidates ({num_candidates}) and max_masks ({max_masks}) "
                       "must be positive.")
    self.query_seq_len = query_seq_len
    self.candidate_seq_len = candidate_seq_len
    self.num_candidates = num_candidates
    self.max_masks = max_masks
    self.tokenizer = tokenizer
    self.separate_candidate_segments = separate_candidate_segments

  @classmethod
  def from_config(cls, config) -> "Featurizer":
    """The featurizer of a `RealmConfig` (its lengths, counts, vocabulary and casing):
    what pre-training used, rebuilt from a run's config.json."""
    return cls(config.query_seq_len, config.candidate_seq_len, config.num_candidates,
               config.max_masks,
               Tokenizer(config.vocab_path, do_lower_case=config.do_lower_case),
               config.separate_candidate_segments)

  # ------------------------------------------------------------------ in-graph, batched

  def mask_query_tf(self, token_ids, token_starts, token_limits, span_starts,
                    span_limits) -> Dict[str, tf.Tensor]:
    """Masks every token lying entirely inside a span (the original `mask_query`).

    Args:
      token_ids: int RaggedTensor [batch, (T)].
      token_starts, token_limits: int RaggedTensors [batch, (T)], byte offsets.
      span_starts, span_limits: int [batch, S] byte offsets of the mask spans (S >= 0).

    Returns:
      dict with
        masked_token_ids: int32 RaggedTensor [batch, (T)], covered tokens -> [MASK];
        mask_indices: int32 RaggedTensor [batch, (m)], covered token indices, sorted;
        mlm_positions, mlm_targets, mlm_mask: int32 [batch, M];
        error: int32 [batch], MASKING_OK or a MASKS_* code.
    """
    token_ids = tf.cast(token_ids, tf.int32)
    starts = tf.cast(token_starts.flat_values, tf.int64)[:, None]  # [total_tokens, 1]
    limits = tf.cast(token_limits.flat_values, tf.int64)[:, None]
    rows = token_starts.value_rowids()
    span_starts = tf.gather(tf.cast(span_starts, tf.int64), rows)  # [total_tokens, S]
    span_limits = tf.gather(tf.cast(span_limits, tf.int64), rows)
    covered_flat = tf.reduce_any(
        tf.logical_and(starts >= span_starts, limits <= span_limits), axis=1)
    covered = token_ids.with_flat_values(covered_flat)  # [batch, (T)]

    indices = tf.ragged.boolean_mask(
        tf.ragged.range(tf.cast(token_ids.row_lengths(), tf.int32)), covered)  # [batch, (m)]
    targets = tf.ragged.boolean_mask(token_ids, covered)
    num_masked = indices.row_lengths()
    last_index = tf.reduce_max(indices, axis=1)  # int32 min for empty rows
    has_spans = tf.shape(span_starts)[1] > 0
    error = tf.where(
        tf.logical_and(has_spans, num_masked == 0), MASKS_COVER_NO_TOKENS,
        tf.where(
            tf.logical_and(num_masked > 0, last_index >= self.query_seq_len - 2),
            MASKS_WOULD_BE_TRUNCATED, MASKING_OK))

    masked = token_ids.with_flat_values(
        tf.where(covered_flat, self.tokenizer.mask_id, token_ids.flat_values))
    shape = [None, self.max_masks]
    return dict(
        masked_token_ids=masked,
        mask_indices=indices,
        # Positions are +1 for [CLS]; more than M masks are silently untargeted.
        mlm_positions=(indices + 1).to_tensor(0, shape=shape),  # [batch, M]
        mlm_targets=targets.to_tensor(0, shape=shape),
        mlm_mask=tf.ones_like(indices).to_tensor(0, shape=shape),
        error=tf.cast(error, tf.int32))

  def tokenize_and_mask_tf(self, texts, span_starts, span_limits) -> Dict[str, tf.Tensor]:
    """Tokenizes query texts [batch] and masks spans [batch, S]; see `mask_query_tf`.

    Also returns `token_ids` (RaggedTensor [batch, (T)], before masking).
    """
    ids, starts, limits = self.tokenizer.tokenize_with_offsets(texts)
    masking = self.mask_query_tf(ids, starts, limits, span_starts, span_limits)
    masking["token_ids"] = ids
    return masking

  def featurize_query_tf(self, masked_token_ids) -> BertInputs:
    """`[CLS] masked query [SEP]`: BertInputs [batch, Q]."""
    return bert_format([masked_token_ids], self.query_seq_len, self.tokenizer.cls_id,
                       self.tokenizer.sep_id)

  def featurize_documents_tf(self, title_ids, body_ids) -> BertInputs:
    """`[CLS] title [SEP] body [SEP]` for documents [batch, (len)]: BertInputs [batch, C].

    The title has priority (truncated to C-3); the body takes what remains.
    """
    inputs = bert_format([title_ids, body_ids], self.candidate_seq_len,
                         self.tokenizer.cls_id, self.tokenizer.sep_id)
    if not self.separate_candidate_segments:
      inputs = inputs._replace(segment_ids=tf.zeros_like(inputs.segment_ids))
    return inputs

  def featurize_candidates_tf(self, title_ids, body_ids) -> BertInputs:
    """Candidate inputs for [batch, N, (len)] title/body ids: BertInputs [batch, N, C]."""
    flat = self.featurize_documents_tf(title_ids.merge_dims(0, 1), body_ids.merge_dims(0, 1))
    return tf.nest.map_structure(
        lambda t: tf.reshape(t, [-1, self.num_candidates, self.candidate_seq_len]), flat)

  def featurize_joint_tf(self, masked_token_ids, body_ids) -> BertInputs:
    """Reader inputs `[CLS] query [SEP] body [SEP]` (no title): BertInputs [batch, N, Q+C].

    Args:
      masked_token_ids: RaggedTensor [batch, (T)] masked query ids.
      body_ids: RaggedTensor [batch, N, (len)] candidate body ids.
    """
    query = tf.cast(masked_token_ids, tf.int32)[:, :self.query_seq_len - 2]
    num_rows = tf.shape(body_ids.row_lengths(axis=1), out_type=tf.int64)[0]
    query = tf.gather(query, tf.repeat(tf.range(num_rows), self.num_candidates))  # [b*N, (T)]
    body = tf.cast(body_ids.merge_dims(0, 1), tf.int32)[:, :self.candidate_seq_len - 2]
    seq_len = self.query_seq_len + self.candidate_seq_len
    flat = bert_format([query, body], seq_len, self.tokenizer.cls_id, self.tokenizer.sep_id)
    return tf.nest.map_structure(
        lambda t: tf.reshape(t, [-1, self.num_candidates, seq_len]), flat)

  def featurize_examples_tf(self, masking: Dict[str, tf.Tensor], title_ids, body_ids,
                            export_timestamp) -> Dict[str, object]:
    """Builds the batched example features (module docstring).

    Args:
      masking: output of `mask_query_tf` / `tokenize_and_mask_tf` for the queries.
      title_ids, body_ids: int RaggedTensors [batch, N, (len)] of the N candidates,
        the null document first (`documents.prepend_null_document`).
      export_timestamp: int [batch] or scalar.
    """
    masked = masking["masked_token_ids"]
    batch = tf.shape(masking["mlm_positions"])[0]
    return dict(
        query_inputs=self.featurize_query_tf(masked),
        candidate_inputs=self.featurize_candidates_tf(title_ids, body_ids),
        joint_inputs=self.featurize_joint_tf(masked, body_ids),
        mlm_targets=masking["mlm_targets"],
        mlm_positions=masking["mlm_positions"],
        mlm_mask=masking["mlm_mask"],
        candidate_labels=tf.zeros([batch, self.num_candidates], tf.float32),
        export_timestamp=tf.broadcast_to(tf.cast(export_timestamp, tf.int32), [batch]))

  # ------------------------------------------------------------------ eager, one example

  def _mask_one(self, query: Query) -> Dict[str, tf.Tensor]:
    """`mask_query_tf` on a batch of one query; raises MaskingError on failure."""
    tokens = query.tokens
    spans = np.asarray(query.mask_spans, np.int64).reshape([1, -1, 2])
    masking = self.mask_query_tf(
        _ragged_rows([[t.id for t in tokens]]),
        _ragged_rows([[t.start for t in tokens]], tf.int64),
        _ragged_rows([[t.stop for t in tokens]], tf.int64), spans[:, :, 0], spans[:, :, 1])
    error = int(masking["error"][0])
    if error != MASKING_OK:
      raise MaskingError(MASKING_ERROR_MESSAGES[error])
    return masking

  def mask_query(self, query: Query) -> Dict[str, np.ndarray]:
    """Eager `mask_query` of the original.

    Returns:
      dict of numpy arrays: token_ids_after_masking, masked_token_ids (original ids of
      the masked tokens), mask_indices (sorted, deduplicated).

    Raises:
      MaskingError: the spans cover no token, or a mask would be truncated.
    """
    masking = self._mask_one(query)
    indices = masking["mask_indices"][0].numpy()
    return dict(token_ids_after_masking=masking["masked_token_ids"][0].numpy(),
                masked_token_ids=np.asarray([t.id for t in query.tokens], np.int32)[indices],
                mask_indices=indices)

  def featurize_document(self, doc) -> BertInputs:
    """Eager candidate inputs of one `Document`: BertInputs of numpy [C]."""
    inputs = self.featurize_documents_tf(_ragged_rows([doc.title_token_ids]),
                                         _ragged_rows([doc.body_token_ids]))
    return BertInputs(*[t[0].numpy() for t in inputs])

  def featurize_query_and_docs(self, query: Query, docs: Sequence,
                               model_timestamp: int = 0) -> Dict[str, object]:
    """Eager features of one example (module docstring) as numpy arrays.

    Args:
      query: the masked `Query`.
      docs: N `Document`s, the null document first (`postprocess_candidates`).
      model_timestamp: export timestamp of the retrieving embedder (0 = initial).

    Raises:
      MaskingError: as `mask_query`.
      ValueError: len(docs) != N.
    """
    if len(docs) != self.num_candidates:
      raise ValueError(f"Got {len(docs)} documents, expected num_candidates="
                       f"{self.num_candidates}.")
    masking = self._mask_one(query)
    titles = tf.RaggedTensor.from_uniform_row_length(
        _ragged_rows([d.title_token_ids for d in docs]), self.num_candidates)
    bodies = tf.RaggedTensor.from_uniform_row_length(
        _ragged_rows([d.body_token_ids for d in docs]), self.num_candidates)
    features = self.featurize_examples_tf(masking, titles, bodies, [model_timestamp])
    return tf.nest.map_structure(lambda t: t[0].numpy(), features)
