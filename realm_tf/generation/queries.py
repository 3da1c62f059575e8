"""Pre-training passages to masked queries, in-graph (`text_features_to_query` of
`language/realm/example_generator.py`).

Per passage of the pre-training corpus: map every salient span to the first
sentence that fully contains it (spans outside every sentence are dropped, duplicates
collapse), pick one (span, sentence) uniformly at random, and make the sentence the query
with that span masked. With a seed the choice is stateless, keyed by the passage's
fingerprint, so the same shards and seed always give the same queries (the eval split is
reproducible across runs; the original used Python's unseeded `random`). Without one
(training) every pass over the data draws new spans.
"""

from typing import Dict

import tensorflow as tf

from realm_tf.featurization import Featurizer, document_fingerprint

# Status of a passage or example; counters are kept per status (the original's STATS).
OK = 0
NO_VALID_SPANS = 1
TOKENIZATION_ERROR = 2
MASKING_ERROR = 3
DUPLICATE_CANDIDATES = 4
STATUS_NAMES = ("ok", "no_valid_spans", "tokenization_error", "masking_error",
                "duplicate_candidates")

PRETRAIN_FEATURES = {
    "title": tf.io.FixedLenFeature([], tf.string),
    "text": tf.io.FixedLenFeature([], tf.string),
    "sentence_byte_start": tf.io.RaggedFeature(tf.int64),
    "sentence_byte_limit": tf.io.RaggedFeature(tf.int64),
    "span_byte_start": tf.io.RaggedFeature(tf.int64),
    "span_byte_limit": tf.io.RaggedFeature(tf.int64),
}


def parse_pretrain_example(serialized) -> Dict[str, tf.Tensor]:
  """Parses one pre-training record."""
  return tf.io.parse_single_example(serialized, PRETRAIN_FEATURES)


def choose_span(passage: Dict[str, tf.Tensor], seed) -> Dict[str, tf.Tensor]:
  """Chooses the masked span and its sentence for one parsed passage.

  Args:
    passage: `parse_pretrain_example` output.
    seed: int64 [2] stateless random seed, or None for a fresh draw on every pass.

  Returns:
    dict: query (string [], the sentence), span_start / span_limit (int64 [], relative to
    the sentence), orig_doc_uid (int64 []), status (int32 [], OK or NO_VALID_SPANS).
  """
  sent_start = passage["sentence_byte_start"]  # [num_sentences]
  sent_limit = passage["sentence_byte_limit"]
  span_start = passage["span_byte_start"]  # [num_spans]
  span_limit = passage["span_byte_limit"]
  inside = tf.logical_and(span_start[:, None] >= sent_start[None, :],
                          span_limit[:, None] <= sent_limit[None, :])  # [spans, sentences]
  has_sentence = tf.reduce_any(inside, axis=1)
  first_sentence = tf.argmax(tf.cast(inside, tf.int32), axis=1, output_type=tf.int32)
  # Distinct spans inside some sentence, in order of first occurrence.
  keys = tf.boolean_mask(tf.stack([span_start, span_limit], axis=1), has_sentence)
  sentences = tf.boolean_mask(first_sentence, has_sentence)
  distinct, index = tf.unique(keys[:, 0] * (1 << 32) + keys[:, 1])
  first_of_each = tf.math.unsorted_segment_min(tf.range(tf.shape(index)[0]), index,
                                               tf.size(distinct))  # [num_distinct]
  num_valid = tf.shape(first_of_each)[0]

  num_valid = tf.size(first_of_each)
  valid = num_valid > 0

  uid = document_fingerprint(passage["title"], passage["text"])
  if seed is None:
    pick = tf.random.uniform([], 0, tf.maximum(num_valid, 1), dtype=tf.int32)
  else:
    choice_seed = tf.stack([tf.cast(seed[0], tf.int64) ^ uid, tf.cast(seed[1], tf.int64)])
    pick = tf.random.stateless_uniform([], choice_seed, 0, tf.maximum(num_valid, 1),
                                       dtype=tf.int32)
  # A passage without valid spans points at a zero padding entry; its status says so.
  num_keys = tf.shape(keys)[0]
  chosen = tf.gather(tf.concat([first_of_each, [num_keys]], 0),
                     tf.where(valid, pick, num_valid))
  span = tf.gather(tf.concat([keys, tf.zeros([1, 2], tf.int64)], 0), chosen)
  sentence = tf.gather(tf.concat([sentences, [0]], 0), chosen)
  begin = tf.gather(tf.concat([sent_start, [0]], 0), sentence)
  end = tf.gather(tf.concat([sent_limit, [0]], 0), sentence)
  query = tf.strings.substr(passage["text"], begin, end - begin)  # bytes
  utf8_ok = tf.equal(tf.strings.unicode_transcode(query, "UTF-8", "UTF-8", errors="replace"),
                     query)
  status = tf.where(valid, tf.where(utf8_ok, OK, TOKENIZATION_ERROR), NO_VALID_SPANS)
  return dict(query=tf.where(utf8_ok, query, ""), span_start=span[0] - begin,
              span_limit=span[1] - begin, orig_doc_uid=uid,
              status=tf.cast(status, tf.int32))


def mask_queries(batch: Dict[str, tf.Tensor], featurizer: Featurizer) -> Dict[str, object]:
  """Tokenizes and masks a batch of `choose_span` outputs [batch].

  Returns:
    `featurizer.tokenize_and_mask_tf` output plus `orig_doc_uid` [batch] and `status`
    [batch], which becomes MASKING_ERROR where masking failed.
  """
  masking = featurizer.tokenize_and_mask_tf(batch["query"], batch["span_start"][:, None],
                                            batch["span_limit"][:, None])
  status = tf.where(tf.logical_and(batch["status"] == OK, masking["error"] != 0),
                    MASKING_ERROR, batch["status"])
  masking.update(orig_doc_uid=batch["orig_doc_uid"], status=tf.cast(status, tf.int32))
  return masking


def query_dataset(paths, featurizer: Featurizer, batch_size: int, seed, shuffle: bool,
                  shuffle_buffer: int = 10000, sample_shards: int = 0) -> tf.data.Dataset:
  """Batches of masked queries from pre-training shards (GZIP TFRecords).

  Args:
    paths: shard paths, read in the given order (deterministic) unless `shuffle`.
    featurizer: the `Featurizer`.
    batch_size: queries per batch (the original's retrieval_batch_size, 64). The
      remainder of a pass is dropped, as the original.
    seed: int64 [2] seed of the span choice (and shuffling), or None: fresh draws on
      every iteration of the dataset (training).
    shuffle: interleave shards non-deterministically and shuffle (training).
    shuffle_buffer: shuffle buffer size (the original: 10000).
    sample_shards: if > 0, read only this many of `paths`, sampled without replacement
      when the dataset is iterated (unseeded: on tf.data service every worker samples its
      own shards, like each of the original's generator processes).

  Returns:
    Dataset of `mask_queries` dicts with leading dimension batch_size; passages that
    failed keep their non-OK status (counted and dropped downstream).
  """
  files = tf.data.Dataset.from_tensor_slices(list(paths))
  if sample_shards:
    files = files.shuffle(len(paths)).take(sample_shards)
  records = files.interleave(
      lambda path: tf.data.TFRecordDataset(path, "GZIP", buffer_size=16 << 20),
      cycle_length=max(1, len(paths)), num_parallel_calls=tf.data.AUTOTUNE,
      deterministic=not shuffle)
  if shuffle:
    records = records.shuffle(
        shuffle_buffer, seed=None if seed is None else int(seed[0]) ^ int(seed[1]))
  if seed is not None:
    seed = tf.constant(seed, tf.int64)
  queries = records.map(lambda r: choose_span(parse_pretrain_example(r), seed),
                        num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle)
  return queries.batch(batch_size, drop_remainder=True).map(
      lambda b: mask_queries(b, featurizer), num_parallel_calls=tf.data.AUTOTUNE,
      deterministic=not shuffle)
