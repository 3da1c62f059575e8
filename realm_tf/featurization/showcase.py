"""A few REALM training examples built from the sample corpus and printed as text.

For the first QA pairs of the sample set, the sentence holding the answer becomes the
query with the answer masked as its salient span; the candidates are the null document
plus the passages a bag-of-wordpieces TF-IDF ranks highest, the originating passage
removed (by UID, as the original); everything is featurized in-graph and decoded back to
wordpieces, so a reader sees exactly what the reader BERT and the retriever receive.
"""

import json
import re
from typing import List, Tuple

import numpy as np
import tensorflow as tf

from realm_tf import sample_data
from realm_tf.featurization import Featurizer, get_document_uid, prepend_null_document
from realm_tf.tokenization import Tokenizer


def _read_jsonl(path: str) -> List[dict]:
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def sentence_containing(text: str, start: int) -> Tuple[int, int]:
  """(start, end) character offsets of the sentence around character `start`."""
  for match in re.finditer(r"[^.!?]*(?:[.!?]+|$)\s*", text):
    if match.start() <= start < match.end():
      return match.start(), len(match.group(0).rstrip()) + match.start()
  return 0, len(text)


def tfidf_rank(doc_ids, query_ids, vocab_size: int) -> np.ndarray:
  """Passage indices by descending TF-IDF cosine to the query (bag of wordpieces)."""
  counts = np.zeros([len(doc_ids), vocab_size], np.float32)
  for row, ids in enumerate(doc_ids):
    np.add.at(counts[row], ids, 1.0)
  idf = np.log((1 + len(doc_ids)) / (1 + (counts > 0).sum(0))) + 1
  docs = counts * idf
  docs /= np.linalg.norm(docs, axis=1, keepdims=True) + 1e-9
  query = np.zeros([vocab_size], np.float32)
  np.add.at(query, query_ids, 1.0)
  return np.argsort(-(docs @ (query * idf)), kind="stable")


def print_examples(num_examples: int = 3, query_seq_len: int = 96,
                   candidate_seq_len: int = 288, num_candidates: int = 4,
                   max_masks: int = 10, vocab_path: str = sample_data.VOCAB_PATH) -> None:
  """Builds and prints `num_examples` featurized examples of the sample corpus."""
  tokenizer = Tokenizer(vocab_path, do_lower_case=True)
  featurizer = Featurizer(query_seq_len, candidate_seq_len, num_candidates, max_masks,
                          tokenizer)
  passages = _read_jsonl(sample_data.PASSAGES_PATH)
  qa_pairs = _read_jsonl(sample_data.QA_TRAIN_PATH)[:num_examples]
  print(f"Sample corpus: {len(passages)} passages; featurizing {len(qa_pairs)} examples "
        f"(Q={query_seq_len}, C={candidate_seq_len}, N={num_candidates})")
  title_ids = tokenizer.tokenize_ids([p["title"] for p in passages])
  body_ids = tokenizer.tokenize_ids([p["text"] for p in passages])
  uids = [get_document_uid(p["title"].encode(), p["text"].encode()) for p in passages]

  queries, spans, candidates, origins = [], [], [], []
  for qa in qa_pairs:
    answer = qa["answer"][0]
    origin = next(i for i, p in enumerate(passages) if answer in p["text"])
    text = passages[origin]["text"]
    char_start = text.index(answer)
    sent_start, sent_end = sentence_containing(text, char_start)
    sentence = text[sent_start:sent_end]
    span_start = len(sentence[:char_start - sent_start].encode())
    queries.append(sentence.encode())
    spans.append([span_start, span_start + len(answer.encode())])
    query_ids = tokenizer.tokenize_ids([sentence])[0].numpy()
    ranked = tfidf_rank(body_ids.to_list(), query_ids, tokenizer.vocab_size)
    # Remove the originating passage (by UID, as the original) and keep N-1.
    candidates.append([i for i in ranked if uids[i] != uids[origin]][:num_candidates - 1])
    origins.append(origin)

  spans = tf.constant(spans, tf.int64)
  masking = featurizer.tokenize_and_mask_tf(tf.constant(queries), spans[:, :1], spans[:, 1:])
  flat = tf.constant(np.reshape(candidates, [-1]))

  def gather(ids):  # [batch, N-1, (len)] -> with the null document first
    rows = tf.RaggedTensor.from_uniform_row_length(tf.gather(ids, flat), num_candidates - 1)
    return prepend_null_document(rows)

  features = featurizer.featurize_examples_tf(masking, gather(title_ids), gather(body_ids), 0)
  for i, qa in enumerate(qa_pairs):
    print("\n" + "=" * 78)
    print(f"Example {i}: from passage {passages[origins[i]]['title']!r}  (error code "
          f"{int(masking['error'][i])})")
    print(f"  question (not used by pre-training): {qa['question']}")
    print("  query_inputs: " +
          tokenizer.token_ids_to_str(features["query_inputs"].token_ids[i]))
    n = int(features["mlm_mask"][i].numpy().sum())
    positions = features["mlm_positions"][i][:n].numpy().tolist()
    print(f"  mlm_positions: {positions}  mlm_targets: "
          f"{tokenizer.token_ids_to_str(features['mlm_targets'][i][:n])!r}")
    for j in range(num_candidates):
      text = tokenizer.token_ids_to_str(features["candidate_inputs"].token_ids[i, j])
      label = "null document" if j == 0 else passages[candidates[i][j - 1]]["title"]
      print(f"  candidate {j} ({label}): {text[:150]}{'...' if len(text) > 150 else ''}")
    joint = tokenizer.token_ids_to_str(features["joint_inputs"].token_ids[i, 1])
    print(f"  joint_inputs[1]: {joint[:200]}{'...' if len(joint) > 200 else ''}")
