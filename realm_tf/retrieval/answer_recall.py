"""Answer matching and zero-shot answer recall@k of a question set against a block index.

The REALM paper's retrieval metric (Table 2, "zero-shot Recall@5"): embed each question
with the query tower as it stands, retrieve the top-k blocks from the index, and count the
questions whose answer occurs in one of them. Pre-training tracks it across training and
index refreshes; ICT and the demo report it for their retrievers.

Answer matching follows DPR / Pyserini (and ORQA's `HasAnswer` in spirit): a normalized
answer must occur as a contiguous run of whole tokens in the normalized block text, with
SQuAD-style normalization (NFD, lowercase, punctuation and articles dropped); for regex
references (CuratedTREC) the pattern must be found anywhere in the block, case-insensitive.
"""

import re
import string
import unicodedata
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from realm_tf.corpus import io as corpus_io
from realm_tf import errors
from realm_tf.retrieval import corpus_reader

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
REGEX_FLAGS = re.IGNORECASE | re.UNICODE | re.MULTILINE
DEFAULT_KS = (1, 5, 20)


def normalize_answer(s: str) -> str:
  """SQuAD-style normalization: NFD, lowercase, drop punctuation and articles, squash spaces."""
  s = unicodedata.normalize("NFD", s)
  s = s.lower()
  s = "".join(ch for ch in s if ch not in _PUNCTUATION)
  s = _ARTICLES.sub(" ", s)
  return " ".join(s.split())


def compile_regex(pattern: str) -> Optional["re.Pattern"]:
  """The compiled reference regex (case-insensitive), or None when it is invalid."""
  try:
    return re.compile(pattern, flags=REGEX_FLAGS)
  except re.error:
    return None


def _contains_run(haystack: Sequence[str], needle: Sequence[str]) -> bool:
  n = len(needle)
  if n == 0:
    return False
  first = needle[0]
  for i in range(len(haystack) - n + 1):
    if haystack[i] == first and list(haystack[i:i + n]) == list(needle):
      return True
  return False


def make_answer_matcher(answers: Sequence[str], is_regex: bool) -> Callable[[str], bool]:
  """A function block_text -> whether some answer occurs in it.

  String answers: the normalized answer's tokens occur as a contiguous run of the
  normalized block's tokens (an answer that normalizes to nothing never matches).
  Regex answers: `re.search` on the NFD block text, case-insensitive; invalid ones never
  match.
  """
  if is_regex:
    regexes = [r for r in map(compile_regex, answers) if r is not None]

    def match_regex(text: str) -> bool:
      text = unicodedata.normalize("NFD", text)
      return any(r.search(text) is not None for r in regexes)

    return match_regex

  needles = [t for t in (normalize_answer(a).split() for a in answers) if t]

  def match_string(text: str) -> bool:
    tokens = normalize_answer(text).split()
    return any(_contains_run(tokens, needle) for needle in needles)

  return match_string


def load_qa_pairs(path: str) -> Tuple[List[str], List[List[str]]]:
  """(questions, answer lists) of an open-QA jsonl file, `{"question", "answer": [...]}`
  a line (the ORQA format).

  Raises:
    FileNotFoundError: `path` does not exist.
    errors.InputFileError: a malformed line (names the file and line), or no pairs.
  """
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"QA file not found: {path}")
  questions, answers = [], []
  for line_number, line in corpus_io.read_lines(path):
    try:
      record = corpus_io.decode_json_line(line)
    except corpus_io.RecordError as e:
      raise errors.InputFileError(path, line_number, str(e)) from None
    question, answer = record.get("question"), record.get("answer")
    if not isinstance(question, str) or not question.strip():
      raise errors.InputFileError(path, line_number,
                                        "field 'question' must be a non-empty string")
    if (not isinstance(answer, list) or not answer or
        not all(isinstance(a, str) for a in answer)):
      raise errors.InputFileError(path, line_number,
                                        "field 'answer' must be a non-empty list of strings")
    questions.append(question)
    answers.append(answer)
  if not questions:
    raise errors.InputFileError(path, 0, "no QA pairs")
  return questions, answers


def load_block_texts(shard_paths: Sequence[str]) -> List[str]:
  """Body text of every block of the retrieval corpus shards, row i = block i."""
  texts = []
  for batch in corpus_reader.records_dataset(shard_paths).batch(8192):
    texts.extend(t.decode("utf-8") for t in
                 corpus_reader.parse_block_texts(batch)["body"].numpy())
  return texts


def top_k_blocks(query_emb: tf.Tensor, block_emb: tf.Tensor, k: int,
                 chunk_size: int = 1 << 16) -> np.ndarray:
  """Exact maximum-inner-product top-k, chunked over the blocks.

  Args:
    query_emb: float [n, D].
    block_emb: float [K, D].
    k: blocks per question (capped at K).
    chunk_size: blocks scored at once (bounds the [n, chunk] score matrix).

  Returns:
    int64 [n, min(k, K)] block ids, best first (ties by lower id).
  """
  num_blocks = int(block_emb.shape[0])
  k = min(k, num_blocks)
  best_scores, best_ids = None, None
  for start in range(0, num_blocks, chunk_size):
    scores = tf.matmul(query_emb, block_emb[start:start + chunk_size],
                       transpose_b=True)  # [n, chunk]
    top = tf.math.top_k(scores, k=min(k, int(scores.shape[1])))
    ids = top.indices + start
    if best_scores is None:
      best_scores, best_ids = top.values, ids
    else:
      scores = tf.concat([best_scores, top.values], 1)  # [n, 2k]
      ids = tf.concat([best_ids, ids], 1)
      merged = tf.math.top_k(scores, k=k)
      best_scores = merged.values
      best_ids = tf.gather(ids, merged.indices, batch_dims=1)
  return best_ids.numpy().astype(np.int64)


class ZeroShotRecall:
  """Answer recall@k of fixed questions against any (query tower, block index) pair.

  Args:
    questions: the question strings.
    answers: per question, its reference answers (strings or regexes).
    block_texts: text of every block of the index, row i = block i (body only, as the
      reader sees it; pass "title body" to count answers in titles too).
    query_inputs_fn: question strings [n] -> the query tower's inputs (e.g.
      `Featurizer.featurize_query_tf` of the tokenized questions): a BertInputs or dict.
    is_regex: regex references (CuratedTREC).
    ks: the cut-offs reported (recall@k for each).
  """

  def __init__(self, questions: Sequence[str], answers: Sequence[Sequence[str]],
               block_texts: Sequence[str], query_inputs_fn: Callable, is_regex: bool = False,
               ks: Sequence[int] = DEFAULT_KS):
    if len(questions) != len(answers):
      raise ValueError(f"{len(questions)} questions but {len(answers)} answer lists.")
    if not questions:
      raise ValueError("ZeroShotRecall needs at least one question.")
    self.ks = sorted({int(k) for k in ks})
    if self.ks[0] < 1:
      raise ValueError(f"Recall cut-offs must be positive, got {list(ks)}.")
    self.questions = list(questions)
    self._matchers = [make_answer_matcher(a, is_regex) for a in answers]
    self._block_texts = block_texts
    self._inputs = query_inputs_fn(tf.constant(self.questions))
    self._hit_cache: Dict[tuple, bool] = {}

  @property
  def num_questions(self) -> int:
    return len(self.questions)

  def _has_answer(self, question: int, block: int) -> bool:
    key = (question, block)
    if key not in self._hit_cache:
      self._hit_cache[key] = self._matchers[question](self._block_texts[block])
    return self._hit_cache[key]

  def first_hits(self, retrieved: np.ndarray) -> List[Optional[int]]:
    """Per question, the rank of its first block holding an answer (None: none)."""
    return [next((rank for rank, block in enumerate(row) if self._has_answer(i, int(block))),
                 None) for i, row in enumerate(retrieved)]

  def recall_from_retrieved(self, retrieved: np.ndarray) -> Dict[str, float]:
    """{"recall@k": share of questions with an answer in their top k} from block ids
    [num_questions, >= max(ks)]."""
    first = self.first_hits(np.asarray(retrieved)[:, :self.ks[-1]])
    n = len(first)
    return {f"recall@{k}": sum(r is not None and r < k for r in first) / n for k in self.ks}

  def __call__(self, embed_fn: Callable, block_emb, batch_size: int = 256) -> Dict[str, float]:
    """Recall@k of the questions embedded by `embed_fn` against `block_emb` [K, D], and
    `query_cosine` (see `mean_pairwise_cosine`).

    Args:
      embed_fn: query inputs (a slice of what `query_inputs_fn` returned) -> [b, D].
      block_emb: the index, float [K, D] (a tensor or array).
      batch_size: questions embedded at once.
    """
    block_emb = tf.convert_to_tensor(block_emb, tf.float32)
    embeddings = []
    for start in range(0, self.num_questions, batch_size):
      batch = tf.nest.map_structure(lambda t, s=start: t[s:s + batch_size], self._inputs)
      embeddings.append(tf.cast(embed_fn(batch), tf.float32))
    query_emb = tf.concat(embeddings, 0)  # [num_questions, D]
    metrics = self.recall_from_retrieved(top_k_blocks(query_emb, block_emb, self.ks[-1]))
    metrics["query_cosine"] = mean_pairwise_cosine(query_emb)
    return metrics


def mean_pairwise_cosine(emb) -> float:
  """Mean cosine similarity over pairs of distinct rows of `emb` [n, D] (0 for n < 2).

  A collapse detector for a query tower: near 1 when every question is embedded alike, so
  that all of them retrieve the same blocks whatever they ask.
  """
  emb = np.asarray(emb, np.float64)
  n = len(emb)
  if n < 2:
    return 0.0
  unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
  total = float(np.square(unit.sum(axis=0)).sum())  # sum over all ordered pairs, i = j too
  return (total - n) / (n * (n - 1))
