"""Documents, their UIDs, the null document and candidate post-processing.

As `language/realm/featurization.py` and `language/realm/example_generator.py`.
"""

import collections
import hashlib
from typing import List, Sequence

import numpy as np
import tensorflow as tf

Document = collections.namedtuple("Document", ["uid", "title_token_ids", "body_token_ids"])
Document.__doc__ = """A retrieval-corpus block: uid (int) and int32 numpy token ids."""

UID_SEPARATOR = " <sep> "


def get_document_uid(title: bytes, body: bytes) -> int:
  """The original's document UID: SHA1 of "title <sep> body" as a 160-bit int."""
  text = f"{title.decode('utf-8')}{UID_SEPARATOR}{body.decode('utf-8')}"
  return int(hashlib.sha1(text.encode("utf-8")).hexdigest(), 16)


def document_fingerprint(title, body):
  """In-graph document UID: 64-bit fingerprint of the same "title <sep> body" string.

  TensorFlow has no SHA1 op; a FarmHash fingerprint of the string the original hashes
  identifies documents inside tf.data (collision odds for 13M documents: ~5e-6).

  Args:
    title: string tensor [...].
    body: string tensor [...], same shape.

  Returns:
    int64 tensor [...].
  """
  joined = tf.strings.join([title, body], separator=UID_SEPARATOR)
  flat = tf.reshape(joined, [-1])
  fingerprints = tf.bitcast(tf.fingerprint(flat, method="farmhash64"), tf.int64)  # [n]
  return tf.reshape(fingerprints, tf.shape(joined))


NULL_DOCUMENT = Document(
    uid=get_document_uid(b"", b""),
    title_token_ids=np.zeros([0], np.int32),
    body_token_ids=np.zeros([0], np.int32))


def has_duplicates(docs: Sequence[Document]) -> bool:
  """Whether retrieved documents repeat a UID (duplicate blocks in the index)."""
  uids = [d.uid for d in docs]
  return len(set(uids)) != len(uids)


def postprocess_candidates(candidates: Sequence[Document], orig_doc_uid: int,
                           num_candidates: int) -> List[Document]:
  """Removes the originating document, prepends the null document, truncates to N.

  Raises:
    ValueError: fewer than N-1 candidates remain (the original asserts).
  """
  kept = [d for d in candidates if d.uid != orig_doc_uid]
  if len(kept) < num_candidates - 1:
    raise ValueError(f"Only {len(kept)} candidates remain after removing the originating "
                     f"document; need {num_candidates - 1}.")
  return [NULL_DOCUMENT] + kept[:num_candidates - 1]


def has_duplicates_tf(candidate_uids):
  """In-graph duplicate check. candidate_uids: int64 [batch, k] -> bool [batch]."""
  same = tf.equal(candidate_uids[:, :, None], candidate_uids[:, None, :])  # [batch, k, k]
  k = tf.shape(candidate_uids)[1]
  off_diagonal = tf.logical_not(tf.eye(k, dtype=tf.bool))
  return tf.reduce_any(tf.logical_and(same, off_diagonal), axis=[1, 2])


def select_candidates_tf(candidate_uids, orig_doc_uids, num_candidates: int):
  """In-graph origin removal: which retrieved candidates to keep, in order.

  Args:
    candidate_uids: int64 [batch, k] UIDs of the retrieved documents, best first.
    orig_doc_uids: int64 [batch] UID of each query's originating document.
    num_candidates: N; N-1 retrieved documents are kept (the null document is the Nth).

  Returns:
    (indices, valid): int32 [batch, N-1] positions into the k retrieved documents, and
    bool [batch], False where fewer than N-1 remain (the original asserts instead).
  """
  keep = tf.not_equal(candidate_uids, orig_doc_uids[:, None])  # [batch, k]
  k = tf.shape(candidate_uids)[1]
  # Stable order: kept positions first, in retrieval order.
  order_key = tf.where(keep, 0, k) + tf.range(k)[None, :]
  indices = tf.argsort(order_key, axis=1, stable=True)[:, :num_candidates - 1]
  valid = tf.reduce_sum(tf.cast(keep, tf.int32), axis=1) >= num_candidates - 1
  return tf.cast(indices, tf.int32), valid


def prepend_null_document(token_ids: tf.RaggedTensor) -> tf.RaggedTensor:
  """Puts an empty (null) document first. token_ids: [batch, n, (len)] -> [batch, n+1, (len)]."""
  token_ids = token_ids.with_row_splits_dtype(tf.int64)
  batch = token_ids.nrows()
  empty = tf.RaggedTensor.from_row_lengths(
      tf.zeros([0], token_ids.dtype), tf.zeros([batch], tf.int64))  # [batch, (0)]
  empty = tf.RaggedTensor.from_uniform_row_length(empty, 1)  # [batch, 1, (0)]
  return tf.concat([empty, token_ids], axis=1)
