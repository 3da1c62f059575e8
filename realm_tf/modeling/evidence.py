"""Whether REALM's retrieved candidates hold what a masked span needs, in-graph.

REALM's retriever learns only from masked spans that a retrieved document helps predict
(the originating document is never a candidate). The cheapest proxy is verbatim
evidence: a masked span (a run of consecutive masked positions) whose wordpieces occur
contiguously in one of the example's retrieved candidates. A retriever that learns from
REALM's signal raises it. Chance is the same count against unrelated candidates (pass
another batch's): when the two are equal, the posterior over candidates differs from the
prior only by noise and the retriever has nothing to learn from. Neighbouring examples
of an unshuffled evaluation stream come from the same article, so the other examples of
a batch are no baseline.
"""

from typing import Dict

import tensorflow as tf


def _found(candidate_ids, targets, continues):
  """bool [B, M]: for each masked token, whether the span up to it occurs contiguously in
  one of the candidates. candidate_ids [B, N, C], targets [B, M], continues [B, M]."""
  found, match = [], None
  for j in range(targets.shape[1]):
    equal = tf.equal(candidate_ids, targets[:, j, None, None])  # [B, N, C]
    if match is not None:
      # Continuing a span: the previous wordpiece must match just before this one.
      previous = tf.pad(match, [[0, 0], [0, 0], [1, 0]])[:, :, :-1]  # [B, N, C]
      equal = tf.logical_and(equal, tf.logical_or(
          tf.logical_not(continues[:, j, None, None]), previous))
    match = equal
    found.append(tf.reduce_any(equal, axis=[1, 2]))  # [B]
  return tf.stack(found, axis=1)  # [B, M]


def masked_span_evidence(candidate_ids, mlm_positions, mlm_targets,
                         mlm_mask) -> Dict[str, tf.Tensor]:
  """Counts of masked spans found verbatim in one of their example's candidates.

  Args:
    candidate_ids: int [B, N, C] candidate token ids; candidate 0 is the null document
      and is not counted. Row b is searched for example b's spans (pass the candidates
      of unrelated examples for chance).
    mlm_positions, mlm_targets, mlm_mask: int [B, M] (static M), positions in
      increasing order as the featurizer writes them.

  Returns:
    float64 scalars: `spans` (masked spans in the batch) and `evidence` (spans found in
    one of candidates 1..N-1 of their row).
  """
  candidates = tf.cast(candidate_ids, tf.int32)[:, 1:]  # [B, N-1, C]
  positions = tf.cast(mlm_positions, tf.int32)  # [B, M]
  targets = tf.cast(mlm_targets, tf.int32)  # [B, M]
  real = tf.cast(mlm_mask, tf.bool)  # [B, M]
  extends = tf.logical_and(tf.logical_and(real[:, 1:], real[:, :-1]),
                           tf.equal(positions[:, 1:], positions[:, :-1] + 1))  # [B, M-1]
  continues = tf.pad(extends, [[0, 0], [1, 0]])  # [B, M]: token j extends j-1's span
  ends = tf.logical_and(real, tf.logical_not(tf.pad(extends, [[0, 0], [0, 1]])))  # [B, M]
  found = _found(candidates, targets, continues)  # [B, M]
  return dict(spans=tf.reduce_sum(tf.cast(ends, tf.float64)),
              evidence=tf.reduce_sum(tf.cast(tf.logical_and(ends, found), tf.float64)))


def masked_spans(positions, targets, mask):
  """One example's masked spans in Python: the target wordpiece sequences of its runs of
  consecutive real masked positions (what `masked_span_evidence` counts)."""
  spans, current, last = [], [], None
  for position, target, real in zip(positions, targets, mask):
    if not real:
      continue
    if last is not None and position != last + 1:
      spans.append(current)
      current = []
    current.append(int(target))
    last = position
  return spans + ([current] if current else [])
