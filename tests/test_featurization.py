"""Featurization rules of `language/realm/featurization.py`, with hand-checked ids.

Tiny vocab (tests/conftest.py): [PAD]0 [UNK]1 [CLS]2 [SEP]3 [MASK]4 the5 eiffel6 tower7
was8 built9 in10 1889=11 paris12 is13 a14 city15 france16 .17 ,18 ##s19 ...
"""
import hashlib

import hypothesis
from hypothesis import strategies as st
import numpy as np
import pytest
import tensorflow as tf

from realm_tf.featurization import (NULL_DOCUMENT, BertInputs, Document, Featurizer,
                                    MaskingError, Query, bert_format, document_fingerprint,
                                    get_document_uid, has_duplicates, has_duplicates_tf,
                                    postprocess_candidates, prepend_null_document,
                                    select_candidates_tf)
from realm_tf.featurization import example_io
from tests import modeling_testing

TEXT = b"The Eiffel Tower was built in 1889."
# the(0,3) eiffel(4,10) tower(11,16) was(17,20) built(21,26) in(27,29) 1889(30,34) .(34,35)
TEXT_IDS = [5, 6, 7, 8, 9, 10, 11, 17]
PARIS = Document(uid=1, title_token_ids=np.array([12]), body_token_ids=np.array([13, 14, 15, 25, 16]))
LONG_TITLE = Document(uid=2, title_token_ids=np.array([6, 7, 8, 9, 10, 11]),
                      body_token_ids=np.array([12]))


def ragged(rows):
  return tf.ragged.constant(rows, dtype=tf.int32, ragged_rank=1)


@pytest.fixture
def featurizer(tiny_tokenizer):
  return Featurizer(query_seq_len=10, candidate_seq_len=8, num_candidates=3, max_masks=2,
                    tokenizer=tiny_tokenizer)


def test_from_config_matches_the_config(tiny_vocab_path):
  config = modeling_testing.tiny_realm_config(
      query_seq_len=9, candidate_seq_len=11, num_candidates=4, max_masks=3,
      vocab_path=tiny_vocab_path, do_lower_case=False, separate_candidate_segments=False)
  f = Featurizer.from_config(config)
  assert (f.query_seq_len, f.candidate_seq_len, f.num_candidates, f.max_masks,
          f.separate_candidate_segments) == (9, 11, 4, 3, False)
  assert (f.tokenizer.vocab_path, f.tokenizer.do_lower_case) == (tiny_vocab_path, False)


def query(tokenizer, spans, text=TEXT):
  return Query(text=text, tokens=tokenizer.tokenize(text), mask_spans=spans, orig_doc_uid=7)


# --- bert_format ---


def test_bert_format_layout_priority_and_segments():
  out = bert_format([ragged([[1, 2, 3]]), ragged([[4, 5]]), ragged([[6]])], 8, 101, 102)
  # Budget 8-1-3 = 4: s1 keeps 3, s2 keeps 1, s3 keeps 0; every [SEP] survives.
  assert out.token_ids.numpy().tolist() == [[101, 1, 2, 3, 102, 4, 102, 102]]
  assert out.segment_ids.numpy().tolist() == [[0, 0, 0, 0, 0, 1, 1, 2]]
  assert out.mask.numpy().tolist() == [[1] * 8]


def test_bert_format_pads_with_zeros_per_row():
  out = bert_format([ragged([[7], []])], 5, 2, 3)
  assert out.token_ids.numpy().tolist() == [[2, 7, 3, 0, 0], [2, 3, 0, 0, 0]]
  assert out.mask.numpy().tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]]
  assert out.segment_ids.numpy().tolist() == [[0] * 5, [0] * 5]


def test_bert_format_negative_budget_raises():
  with pytest.raises(ValueError, match="no room"):
    bert_format([ragged([[1]]), ragged([[2]])], 2, 101, 102)


# --- query masking ---


def test_mask_query_masks_whole_tokens_inside_span(featurizer, tiny_tokenizer):
  out = featurizer.mask_query(query(tiny_tokenizer, [(30, 34)]))  # "1889"
  assert out["token_ids_after_masking"].tolist() == [5, 6, 7, 8, 9, 10, 4, 17]
  assert out["masked_token_ids"].tolist() == [11]
  assert out["mask_indices"].tolist() == [6]


def test_mask_query_partial_overlap_is_not_masked(featurizer, tiny_tokenizer):
  # "iffel Tower": "eiffel" is only partly inside, "tower" entirely.
  out = featurizer.mask_query(query(tiny_tokenizer, [(5, 16)]))
  assert out["mask_indices"].tolist() == [2]


def test_mask_query_overlapping_spans_are_deduplicated_and_sorted(featurizer, tiny_tokenizer):
  out = featurizer.mask_query(query(tiny_tokenizer, [(11, 20), (4, 16)]))
  assert out["mask_indices"].tolist() == [1, 2, 3]
  assert out["masked_token_ids"].tolist() == [6, 7, 8]


def test_mask_query_no_token_covered_raises(featurizer, tiny_tokenizer):
  with pytest.raises(MaskingError, match="Masks do not cover any tokens."):
    featurizer.mask_query(query(tiny_tokenizer, [(12, 14)]))  # inside "tower"


def test_mask_query_without_spans_masks_nothing(featurizer, tiny_tokenizer):
  out = featurizer.mask_query(query(tiny_tokenizer, []))
  assert out["mask_indices"].tolist() == []
  assert out["token_ids_after_masking"].tolist() == TEXT_IDS


def test_mask_query_truncation_raises(tiny_tokenizer):
  # "1889" is token 6; with Q=8 only Q-2=6 tokens survive.
  short = Featurizer(8, 8, 3, 2, tiny_tokenizer)
  with pytest.raises(MaskingError, match="Masks would be truncated."):
    short.mask_query(query(tiny_tokenizer, [(30, 34)]))
  Featurizer(9, 8, 3, 2, tiny_tokenizer).mask_query(query(tiny_tokenizer, [(30, 34)]))


# --- documents, the null document, UIDs ---


def test_featurize_document_title_priority_and_segments(featurizer):
  doc = featurizer.featurize_document(PARIS)
  assert doc.token_ids.tolist() == [2, 12, 3, 13, 14, 15, 25, 3]  # body cut to 4
  assert doc.segment_ids.tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
  long_title = featurizer.featurize_document(LONG_TITLE)
  assert long_title.token_ids.tolist() == [2, 6, 7, 8, 9, 10, 3, 3]  # title cut to C-3
  assert long_title.segment_ids.tolist() == [0, 0, 0, 0, 0, 0, 0, 1]


def test_featurize_document_without_separate_segments(tiny_tokenizer):
  same = Featurizer(10, 8, 3, 2, tiny_tokenizer, separate_candidate_segments=False)
  assert same.featurize_document(PARIS).segment_ids.tolist() == [0] * 8


def test_null_document_features(featurizer):
  null = featurizer.featurize_document(NULL_DOCUMENT)
  assert null.token_ids.tolist() == [2, 3, 3, 0, 0, 0, 0, 0]
  assert null.segment_ids.tolist() == [0, 0, 1, 0, 0, 0, 0, 0]
  assert null.mask.tolist() == [1, 1, 1, 0, 0, 0, 0, 0]


def test_document_uid_is_sha1_of_title_sep_body():
  expected = int(hashlib.sha1("Paris <sep> Paris is a city.".encode()).hexdigest(), 16)
  assert get_document_uid(b"Paris", b"Paris is a city.") == expected
  assert NULL_DOCUMENT.uid == int(hashlib.sha1(b" <sep> ").hexdigest(), 16)


def test_document_fingerprint_in_graph():
  fp = document_fingerprint(tf.constant(["Paris", "Paris", "Rome"]),
                            tf.constant(["text", "text", "text"])).numpy()
  assert fp.dtype == np.int64 and fp[0] == fp[1] != fp[2]


def test_postprocess_candidates_removes_origin_and_prepends_null():
  docs = [Document(u, [], []) for u in (4, 7, 5, 6)]
  out = postprocess_candidates(docs, orig_doc_uid=7, num_candidates=3)
  assert [d.uid for d in out] == [NULL_DOCUMENT.uid, 4, 5]
  with pytest.raises(ValueError, match="candidates remain"):
    postprocess_candidates(docs[:2], orig_doc_uid=7, num_candidates=3)


def test_candidate_selection_and_duplicates_in_graph():
  uids = tf.constant([[4, 7, 5], [1, 2, 3], [9, 9, 8]], tf.int64)
  indices, valid = select_candidates_tf(uids, tf.constant([7, 2, 1], tf.int64), 3)
  assert indices.numpy().tolist() == [[0, 2], [0, 2], [0, 1]]
  assert valid.numpy().tolist() == [True, True, True]
  _, valid = select_candidates_tf(uids[:, :2], tf.constant([7, 9, 9], tf.int64), 3)
  assert valid.numpy().tolist() == [False, True, False]
  assert has_duplicates_tf(uids).numpy().tolist() == [False, False, True]
  assert has_duplicates([Document(9, [], []), Document(9, [], [])])


def test_prepend_null_document():
  docs = tf.RaggedTensor.from_uniform_row_length(ragged([[1, 2], [3], [4], []]), 2)
  out = prepend_null_document(docs)
  assert out.to_list() == [[[], [1, 2], [3]], [[], [4], []]]


# --- whole examples ---


def test_featurize_query_and_docs(featurizer, tiny_tokenizer):
  q = query(tiny_tokenizer, [(30, 34)])
  feats = featurizer.featurize_query_and_docs(q, [NULL_DOCUMENT, PARIS, LONG_TITLE], 1234)
  assert feats["query_inputs"].token_ids.tolist() == [2, 5, 6, 7, 8, 9, 10, 4, 17, 3]
  assert feats["query_inputs"].segment_ids.tolist() == [0] * 10
  assert feats["candidate_inputs"].token_ids.tolist() == [
      [2, 3, 3, 0, 0, 0, 0, 0], [2, 12, 3, 13, 14, 15, 25, 3], [2, 6, 7, 8, 9, 10, 3, 3]]
  # Joint: [CLS] query[:Q-2] [SEP] body[:C-2] [SEP]; no title.
  masked = [5, 6, 7, 8, 9, 10, 4, 17]
  joint = feats["joint_inputs"]
  assert joint.token_ids.tolist() == [
      [2] + masked + [3, 3] + [0] * 7,
      [2] + masked + [3, 13, 14, 15, 25, 16, 3, 0, 0],
      [2] + masked + [3, 12, 3] + [0] * 6]
  assert joint.segment_ids.tolist()[1] == [0] * 10 + [1] * 6 + [0, 0]
  assert joint.mask.tolist()[0] == [1] * 11 + [0] * 7
  assert feats["mlm_positions"].tolist() == [7, 0]
  assert feats["mlm_targets"].tolist() == [11, 0]
  assert feats["mlm_mask"].tolist() == [1, 0]
  assert feats["candidate_labels"].tolist() == [0.0, 0.0, 0.0]
  assert feats["export_timestamp"] == 1234


def test_more_masks_than_max_masks_are_masked_but_untargeted(featurizer, tiny_tokenizer):
  q = query(tiny_tokenizer, [(0, 16)])  # "The Eiffel Tower": 3 tokens, M = 2
  feats = featurizer.featurize_query_and_docs(q, [NULL_DOCUMENT, PARIS, PARIS], 0)
  assert feats["query_inputs"].token_ids.tolist()[:5] == [2, 4, 4, 4, 8]
  assert feats["mlm_positions"].tolist() == [1, 2]
  assert feats["mlm_targets"].tolist() == [5, 6]
  assert feats["mlm_mask"].tolist() == [1, 1]


def test_long_query_is_truncated_in_query_and_joint(tiny_tokenizer):
  f = Featurizer(6, 5, 1, 1, tiny_tokenizer)
  q = query(tiny_tokenizer, [(0, 3)])
  feats = f.featurize_query_and_docs(q, [PARIS], 0)
  assert feats["query_inputs"].token_ids.tolist() == [2, 4, 6, 7, 8, 3]
  assert feats["joint_inputs"].token_ids.tolist() == [[2, 4, 6, 7, 8, 3, 13, 14, 15, 3, 0]]


def test_wrong_number_of_documents_raises(featurizer, tiny_tokenizer):
  with pytest.raises(ValueError, match="expected num_candidates=3"):
    featurizer.featurize_query_and_docs(query(tiny_tokenizer, [(30, 34)]), [PARIS], 0)


def test_in_graph_pipeline_equals_eager(featurizer, tiny_tokenizer):
  """The batched tf.data path gives the eager features, error codes included."""
  texts = [TEXT, b"Paris is a city in France.", TEXT]
  spans = [[30, 34], [0, 5], [12, 14]]  # the last covers no token

  def featurize(batch):
    masking = featurizer.tokenize_and_mask_tf(batch["text"], batch["span"][:, :1],
                                              batch["span"][:, 1:])
    n = tf.shape(batch["text"])[0]
    titles = prepend_null_document(tf.RaggedTensor.from_uniform_row_length(
        tf.ragged.constant([[12], [6, 7, 8, 9, 10, 11]] * 3, tf.int32)[:2 * n], 2))
    bodies = prepend_null_document(tf.RaggedTensor.from_uniform_row_length(
        tf.ragged.constant([[13, 14, 15, 25, 16], [12]] * 3, tf.int32)[:2 * n], 2))
    return masking["error"], featurizer.featurize_examples_tf(masking, titles, bodies, 5)

  ds = tf.data.Dataset.from_tensor_slices({"text": texts, "span": spans}).batch(3)
  errors, batch = next(iter(ds.map(featurize)))
  assert errors.numpy().tolist() == [0, 0, 1]
  for i in range(2):
    q = query(tiny_tokenizer, [tuple(spans[i])], texts[i])
    eager = featurizer.featurize_query_and_docs(q, [NULL_DOCUMENT, PARIS, LONG_TITLE], 5)
    for got, want in zip(tf.nest.flatten(batch), tf.nest.flatten(eager)):
      np.testing.assert_array_equal(got[i], want)


# --- serialization ---


@pytest.mark.parametrize("original_layout", [False, True])
def test_serialize_and_parse_roundtrip(featurizer, tiny_tokenizer, original_layout):
  feats = featurizer.featurize_query_and_docs(query(tiny_tokenizer, [(30, 34)]),
                                              [NULL_DOCUMENT, PARIS, LONG_TITLE], 99)
  serialized = example_io.serialize_example(feats, original_layout)
  structure = example_io.feature_structure(10, 8, 3, 2)
  parsed = example_io.parse_examples(tf.constant([serialized]), structure, original_layout)
  for got, want in zip(tf.nest.flatten(parsed), tf.nest.flatten(feats)):
    np.testing.assert_array_equal(got[0], want)
  assert isinstance(parsed["joint_inputs"], BertInputs)


def test_original_layout_feature_order():
  structure = example_io.feature_structure(4, 5, 2, 3)
  names = example_io.feature_names(structure)
  assert names[:5] == ["candidate_inputs/token_ids", "candidate_inputs/mask",
                       "candidate_inputs/segment_ids", "candidate_labels", "export_timestamp"]
  assert names[8:] == ["mlm_mask", "mlm_positions", "mlm_targets", "query_inputs/token_ids",
                       "query_inputs/mask", "query_inputs/segment_ids"]
  assert example_io.feature_names(structure, original_layout=True) == [
      str(i) for i in range(14)]


# --- properties over random texts and spans ---

WORDS = ["the", "Eiffel", "tower", "was", "built", "in", "1889", "Paris", "is", "a", "city",
         "France", ".", ",", "towers", "café", "zzz", "Nile", "of"]


@hypothesis.settings(max_examples=40, deadline=None,
                     suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
@hypothesis.given(words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=14),
                  span=st.tuples(st.integers(0, 80), st.integers(0, 80)),
                  bodies=st.lists(st.lists(st.integers(5, 27), max_size=12), min_size=2,
                                  max_size=2))
def test_feature_invariants(tiny_tokenizer, words, span, bodies):
  f = Featurizer(9, 7, 3, 3, tiny_tokenizer)
  text = " ".join(words).encode()
  start, limit = min(span), max(span)
  q = Query(text, tiny_tokenizer.tokenize(text), [(start, limit)], 0)
  docs = [NULL_DOCUMENT] + [Document(i, np.array(b[:3]), np.array(b)) for i, b in
                            enumerate(bodies)]
  try:
    feats = f.featurize_query_and_docs(q, docs, 0)
  except MaskingError:
    return
  ids = {t.id for t in q.tokens}
  for inputs, length in ((feats["query_inputs"], 9), (feats["candidate_inputs"], 7),
                         (feats["joint_inputs"], 16)):
    assert inputs.token_ids.shape[-1] == length
    np.testing.assert_array_equal(inputs.mask, (inputs.token_ids != 0).astype(np.int32))
    assert np.all(inputs.segment_ids[inputs.mask == 0] == 0)
  real = feats["mlm_mask"] == 1
  assert real.any() and np.all(feats["mlm_positions"][~real] == 0)
  assert np.all(feats["mlm_targets"][~real] == 0)
  for position, target in zip(feats["mlm_positions"][real], feats["mlm_targets"][real]):
    assert feats["query_inputs"].token_ids[position] == tiny_tokenizer.mask_id
    assert np.all(feats["joint_inputs"].token_ids[:, position] == tiny_tokenizer.mask_id)
    assert target == q.tokens[position - 1].id and target in ids
