"""What a checkpoint converter found in its input, independent of the input's format.

`export.tf1_checkpoints` (Google BERT and the original REALM / ORQA TF1 checkpoints and
hub modules) and `export.hf_realm` (Hugging Face BERT and REALM folders) both produce an
`ImportedWeights`; `export.converted` builds the realm-tf Keras models from it and writes
the output directory. Tensors are keyed by the target names of `realm_tf.modeling.weight_assign`.
"""

import dataclasses
import os
import re
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from realm_tf.modeling.config import BertConfig
from realm_tf.modeling.weight_assign import SourceTensor

PROJECTION_NAMES = ("projection/kernel", "projection/bias", "projection_layer_norm/gamma",
                    "projection_layer_norm/beta")
MLM_HEAD_NAMES = ("cls/predictions/transform/dense/kernel",
                  "cls/predictions/transform/dense/bias",
                  "cls/predictions/transform/LayerNorm/gamma",
                  "cls/predictions/transform/LayerNorm/beta", "cls/predictions/output_bias")


@dataclasses.dataclass
class BertPart:
  """One BERT of the input (an embedder tower or a reader).

  Attributes:
    config: its shape and activation.
    tensors: target name -> tensor: canonical BERT names, the MLM head's
      `cls/predictions/*` (optional for a reader), and `PROJECTION_NAMES` for an embedder.
    scope: where it sits in the input (a variable scope or a parameter prefix).
  """
  config: BertConfig
  tensors: Dict[str, SourceTensor]
  scope: str


@dataclasses.dataclass
class ImportedWeights:
  """Everything a converter read.

  Attributes:
    source_format: the `--from` value.
    input_path: the `--input` value.
    embedder: the retriever tower (documents, and queries when `query_embedder` is None).
    query_embedder: a separate query tower (HF `RealmScorer` with unshared towers).
    reader: the reader BERT (REALM's knowledge-augmented encoder or ORQA's reader).
    span_scorer: ORQA's span MLP (`orqa.models.span_scorer.WEIGHT_NAMES` -> tensor).
    projection_layer_norm_epsilon: epsilon of the embedder's projection LayerNorm.
    span_hidden_size, span_layer_norm_epsilon: the span scorer's S and epsilon.
    block_emb: the block-embedding index [K, D], and `block_emb_source` where it was.
    ignored: (input name, reason) of tensors deliberately not converted.
    notes: human-readable remarks for the manifest and the log.
    vocab_path: the vocabulary found in the input (or given), if any.
    do_lower_case, do_lower_case_source: the casing and how it was determined.
    global_step: the training step of the input, when it has one.
  """
  source_format: str
  input_path: str
  embedder: Optional[BertPart] = None
  query_embedder: Optional[BertPart] = None
  reader: Optional[BertPart] = None
  span_scorer: Optional[Dict[str, SourceTensor]] = None
  projection_layer_norm_epsilon: float = 1e-3
  span_hidden_size: Optional[int] = None
  span_layer_norm_epsilon: float = 1e-3
  block_emb: Optional[np.ndarray] = None
  block_emb_source: Optional[str] = None
  ignored: List[Tuple[str, str]] = dataclasses.field(default_factory=list)
  notes: List[str] = dataclasses.field(default_factory=list)
  vocab_path: Optional[str] = None
  do_lower_case: Optional[bool] = None
  do_lower_case_source: Optional[str] = None
  global_step: int = 0

  def parts(self) -> Dict[str, BertPart]:
    """The BERTs present, by output component name."""
    named = {"embedder": self.embedder, "query_embedder": self.query_embedder,
             "bert": self.reader}
    return {k: v for k, v in named.items() if v is not None}


def find_vocab(*candidates: str) -> Optional[str]:
  """The first existing file among `candidates` (None entries are skipped)."""
  for path in candidates:
    if path and tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path):
      return path
  return None


def infer_do_lower_case(vocab_path: Optional[str], input_path: str
                        ) -> Tuple[Optional[bool], Optional[str]]:
  """Guesses the casing of a BERT vocabulary: (do_lower_case, how it was decided).

  The path name decides first (Google's `uncased_L-12_H-768_A-12` / `cased_...`, HF
  `bert-base-uncased`); otherwise the vocabulary: a cased BERT vocabulary has thousands of
  capitalized wordpieces, an uncased one none (apart from `[CLS]`-style tokens).
  """
  parts = os.path.normpath(input_path).lower().split(os.sep)[-2:]
  name = "/".join(parts)  # the model's folder (and its parent), not the whole path
  if re.search(r"(?<![a-z])uncased(?![a-z])", name):
    return True, "the input path names an uncased model"
  if re.search(r"(?<![a-z])cased(?![a-z])", name):
    return False, "the input path names a cased model"
  if vocab_path is None:
    return None, None
  with tf.io.gfile.GFile(vocab_path, "r") as f:
    tokens = [line.rstrip("\n") for line in f]
  words = [t for t in tokens if not (t.startswith("[") and t.endswith("]"))]
  upper = sum(1 for t in words if any(c.isupper() for c in t))
  cased = upper > max(10, len(words) // 100)
  return (not cased), (f"{upper} of {len(words)} vocabulary entries have capital letters")
