"""The sample corpus embedded in realm-tf (written for the project, Apache-2.0).

`passages.jsonl` holds short encyclopedia passages in which facts recur across articles;
`qa_train.jsonl` and `qa_heldout.jsonl` split the open-domain QA pairs about them (all
pairs sharing an answer string are on the same side). `vocab.txt` is the uncased wordpiece
vocabulary `python -m realm_tf.vocabulary` learns from the passages and questions (see
README.md here); tests check it is reproducible.
"""
import os

SAMPLE_DIR = os.path.dirname(os.path.abspath(__file__))
PASSAGES_PATH = os.path.join(SAMPLE_DIR, "passages.jsonl")
QA_TRAIN_PATH = os.path.join(SAMPLE_DIR, "qa_train.jsonl")
QA_HELDOUT_PATH = os.path.join(SAMPLE_DIR, "qa_heldout.jsonl")
QA_PATHS = (QA_TRAIN_PATH, QA_HELDOUT_PATH)
VOCAB_PATH = os.path.join(SAMPLE_DIR, "vocab.txt")


def num_passages() -> int:
  """The number of passages in `passages.jsonl` (one per non-blank line)."""
  with open(PASSAGES_PATH, encoding="utf-8") as f:
    return sum(1 for line in f if line.strip())
