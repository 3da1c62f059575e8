"""The sample corpus embedded in realm-tf (written for the project, Apache-2.0).

`vocab.txt` is the uncased wordpiece vocabulary `python -m realm_tf.vocabulary` learns
from the passages and questions (see README.md here); tests check it is reproducible.
"""
import os

SAMPLE_DIR = os.path.dirname(os.path.abspath(__file__))
PASSAGES_PATH = os.path.join(SAMPLE_DIR, "passages.jsonl")
QA_PATH = os.path.join(SAMPLE_DIR, "qa.jsonl")
VOCAB_PATH = os.path.join(SAMPLE_DIR, "vocab.txt")
