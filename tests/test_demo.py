"""The README's first command (`make demo` -> python -m export.walkthrough) and its vocabulary."""
import filecmp
import os
import subprocess
import sys

from export import walkthrough
from realm_tf import sample_data
from realm_tf import vocabulary
from realm_tf.training import eval_results
from tests.conftest import REPO_ROOT


def test_demo_prints_decoded_examples():
  command = [sys.executable, "-m", "export.walkthrough", "--num_examples=2",
             "--stages=examples"]
  result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  out = result.stdout
  assert out.count("Example ") == 2
  assert "candidate 0 (null document): [CLS] [SEP] [SEP]" in out
  assert "[MASK]" in out and "mlm_targets: 'gustave eiffel'" in out
  # The originating passage is never a candidate.
  first = out.split("Example 1")[0]
  assert "candidate 1 (Eiffel Tower)" not in first and "from passage 'Eiffel Tower'" in first


def test_sample_vocab_is_reproducible(tmp_path):
  vocab = vocabulary.learn_wordpiece_vocab(
      vocabulary.corpus_texts(sample_data.PASSAGES_PATH, list(sample_data.QA_PATHS)))
  path = os.path.join(tmp_path, "vocab.txt")
  vocabulary.write_vocab(vocab, path)
  assert filecmp.cmp(path, sample_data.VOCAB_PATH, shallow=False), (
      "realm_tf/sample_data/vocab.txt is stale: regenerate it (see its README).")
  assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def test_learning_table_reads_the_first_and_last_held_out_evaluations(tmp_path):
  pretrain, finetune = str(tmp_path / "pretrain"), str(tmp_path / "finetune")
  eval_results.append(os.path.join(pretrain, "ict"), 0, {"recall@5": 0.05, "accuracy": 0.1})
  eval_results.append(os.path.join(pretrain, "ict"), 300, {"recall@5": 0.3, "accuracy": 0.6})
  eval_results.append(pretrain, 0, {"recall@5": 0.3, "recall@20": 0.6, "query_cosine": 0.2,
                                    "null_document_mass": 0.3, "evidence_rate": 0.06,
                                    "retrieval_utility": 0.0, "mlm_accuracy": 0.01,
                                    "null_mlm_accuracy": 0.01})
  eval_results.append(pretrain, 300, {"recall@5": 0.1, "recall@20": 0.2,
                                      "query_cosine": 0.97, "null_document_mass": 1.0,
                                      "evidence_rate": 0.25,
                                      "retrieval_utility": 0.5,
                                      "mlm_accuracy": 0.02, "null_mlm_accuracy": 0.01})
  for step, exact in ((0, 0.0), (100, 0.25), (200, 0.125)):
    eval_results.append(finetune, step, {"exact_match": exact})
  table = walkthrough.learning_table(pretrain, finetune)
  rows = [(line[:58].strip(), line[58:].split()[:2]) for line in table.splitlines()[1:]]
  assert rows[0] == ("zero-shot evidence recall@5, held-out questions", ["0.050", "0.300"])
  assert rows[1] == ("zero-shot evidence recall@5, held-out questions", ["0.300", "0.100"])
  values = dict(rows[2:])
  assert values["query embedding cosine, held-out questions (1: collapsed)"] == [
      "0.200", "0.970"]
  assert values["retrieval mass on the null document, held-out passages"] == [
      "0.300", "1.000"]
  assert values["masked spans in a retrieved passage, held-out passages"] == [
      "0.060", "0.250"]
  # Untrained, then the best evaluation.
  assert values["ORQA exact match, held-out questions"] == ["0.000", "0.250"]
  assert "ICT in-batch retrieval accuracy, held-out passages: 0.600" in table
