"""The sample corpus embedded in realm-tf (written for the project, Apache-2.0)."""
import os
SAMPLE_DIR = os.path.dirname(os.path.abspath(__file__))
PASSAGES_PATH = os.path.join(SAMPLE_DIR, "passages.jsonl")
QA_PATH = os.path.join(SAMPLE_DIR, "qa.jsonl")
