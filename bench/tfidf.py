r"""A plain unigram TF-IDF retriever (scipy sparse) and its answer recall@k: the baseline
of the REALM paper's retrieval comparison.

Tokens: lowercased runs of two or more word characters (`\b\w\w+\b`). Weights: raw term
count x smoothed idf `ln((1 + N) / (1 + df)) + 1`, each passage vector L2-normalized; a
question is weighted the same way (terms absent from the passages ignored) and scored by
cosine similarity. Answer matching is realm-tf's (`realm_tf.retrieval.answer_recall`):
a normalized answer occurs as a run of whole tokens in the passage text.

  PYTHONPATH=. python bench/tfidf.py \
      --passages=../shared/data/corpus/enwiki2015-first30k.psgs100w.cap800.jsonl.gz \
      --questions=../shared/data/qa/NQ-open.efficientqa.dev.1.1.jsonl --output=tfidf.json
"""

import collections
import gzip
import json
import re
import time
from typing import Dict, List, Sequence, Tuple

import numpy as np
from scipy import sparse

TOKEN = re.compile(r"(?u)\b\w\w+\b")


def tokenize(text: str) -> List[str]:
  return TOKEN.findall(text.lower())


def read_passages(path: str) -> Tuple[List[str], List[str]]:
  """(titles, texts) of a passages jsonl(.gz), `{"title", "text"}` a line."""
  opener = gzip.open if path.endswith(".gz") else open
  titles, texts = [], []
  with opener(path, "rt", encoding="utf-8") as f:
    for line in f:
      record = json.loads(line)
      titles.append(record.get("title", ""))
      texts.append(record["text"])
  return titles, texts


class TfidfIndex:
  """Unigram TF-IDF vectors of a document collection (module docstring)."""

  def __init__(self, vocabulary: Dict[str, int], idf: np.ndarray, doc_matrix):
    self.vocabulary = vocabulary
    self.idf = idf  # [V]
    self.doc_matrix = doc_matrix  # CSR [num_docs, V], rows L2-normalized

  @property
  def vocabulary_size(self) -> int:
    return len(self.vocabulary)

  @classmethod
  def build(cls, documents: Sequence[str]) -> "TfidfIndex":
    vocabulary: Dict[str, int] = {}
    indptr, indices, counts = [0], [], []
    for doc in documents:
      for term, count in collections.Counter(tokenize(doc)).items():
        indices.append(vocabulary.setdefault(term, len(vocabulary)))
        counts.append(count)
      indptr.append(len(indices))
    tf = sparse.csr_matrix((np.asarray(counts, np.float32), np.asarray(indices, np.int32),
                            np.asarray(indptr, np.int64)),
                           shape=(len(documents), len(vocabulary)))
    df = np.bincount(tf.indices, minlength=len(vocabulary))
    idf = (np.log((1.0 + len(documents)) / (1.0 + df)) + 1.0).astype(np.float32)
    return cls(vocabulary, idf, _l2_normalize(tf @ sparse.diags(idf)))

  def vectors(self, texts: Sequence[str]):
    """L2-normalized TF-IDF vectors of `texts`: CSR [n, V]."""
    rows, cols, values = [], [], []
    for i, text in enumerate(texts):
      for term, count in collections.Counter(tokenize(text)).items():
        column = self.vocabulary.get(term)
        if column is not None:
          rows.append(i)
          cols.append(column)
          values.append(count * self.idf[column])
    matrix = sparse.csr_matrix((np.asarray(values, np.float32), (rows, cols)),
                               shape=(len(texts), len(self.vocabulary)))
    return _l2_normalize(matrix)

  def search(self, texts: Sequence[str], k: int, batch_size: int = 128) -> np.ndarray:
    """Top-k document ids per text, best first (ties by lower id): int64 [n, k]."""
    doc_t = self.doc_matrix.T.tocsr()  # [V, num_docs]
    k = min(k, self.doc_matrix.shape[0])
    out = []
    for start in range(0, len(texts), batch_size):
      scores = (self.vectors(texts[start:start + batch_size]) @ doc_t).toarray()  # [b, K]
      top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
      for row, candidates in zip(scores, top):
        # Sort by score descending, then id ascending.
        order = np.lexsort((candidates, -row[candidates]))
        out.append(candidates[order])
    return np.asarray(out, np.int64)


def _l2_normalize(matrix):
  matrix = sparse.csr_matrix(matrix, dtype=np.float32)
  norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
  norms[norms == 0] = 1.0
  return sparse.diags(1.0 / norms).astype(np.float32) @ matrix


def answer_recall(index: TfidfIndex, passage_texts: Sequence[str], qa_path: str,
                  ks: Sequence[int]) -> Dict[str, float]:
  """Share of the questions of `qa_path` whose answer occurs in one of the top-k
  passages' texts, for each k; plus the question count."""
  from realm_tf.retrieval import answer_recall as recall_lib  # pylint: disable=g-import-not-at-top
  questions, answers = recall_lib.load_qa_pairs(qa_path)
  start = time.time()
  retrieved = index.search(questions, max(ks))
  recall = recall_lib.ZeroShotRecall(questions, answers, passage_texts,
                                     query_inputs_fn=lambda q: q, ks=ks)
  result = recall.recall_from_retrieved(retrieved)
  result["num_questions"] = len(questions)
  result["search_secs"] = round(time.time() - start, 1)
  return result


def main():
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--passages", required=True)
  parser.add_argument("--questions", required=True, action="append")
  parser.add_argument("--ks", default="1,5,20,100")
  parser.add_argument("--output", default=None)
  args = parser.parse_args()
  start = time.time()
  titles, texts = read_passages(args.passages)
  index = TfidfIndex.build([f"{t} {x}" for t, x in zip(titles, texts)])
  result = {"passages": args.passages, "num_passages": len(texts),
            "vocabulary": index.vocabulary_size, "build_secs": round(time.time() - start, 1)}
  for path in args.questions:
    result[path] = answer_recall(index, texts, path, [int(k) for k in args.ks.split(",")])
  text = json.dumps(result, indent=2)
  print(text)
  if args.output:
    with open(args.output, "w", encoding="utf-8") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  main()
