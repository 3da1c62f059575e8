"""The README's first command (`make demo` -> python -m export.walkthrough) and its vocabulary."""
import filecmp
import os
import subprocess
import sys

from realm_tf import sample_data
from realm_tf import vocabulary
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
