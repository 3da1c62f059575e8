"""Shared pytest fixtures. Keras 2 must be selected before TensorFlow is imported."""
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # As realm_tf/__init__.py.

import pytest  # pylint: disable=g-import-not-at-top

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DIR = os.path.join(REPO_ROOT, "..", "shared")

# A tiny vocabulary whose ids are easy to check by hand in featurization tests.
TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "eiffel", "tower", "was",
              "built", "in", "1889", "paris", "is", "a", "city", "france", ".", ",", "##s",
              "cafe", "au", "lait", "new", "york", "of", "river", "nile"]


def pytest_collection_modifyitems(items):
  """Files with end-to-end (`slow`) tests run first: pytest-xdist hands out whole files
  (`--dist loadfile`) in collection order (`--no-loadscope-reorder`; by default it starts
  with the files of most tests), so the long ones start early instead of leaving one worker
  busy alone at the end."""
  slow_files = {item.path for item in items if item.get_closest_marker("slow")}
  items.sort(key=lambda item: item.path not in slow_files)  # stable: order kept within


def shared_path(*parts):
  """Path under ../shared, or skip the test with a clear message when it is absent."""
  path = os.path.join(SHARED_DIR, *parts)
  if not os.path.exists(path):
    pytest.skip(f"{path} is absent: this test needs the project's ../shared data folder.")
  return path


@pytest.fixture(scope="session")
def serving_shared_base(tmp_path_factory):
  """Folder of the tiny serving model that several test files share (built once).

  Under pytest-xdist every worker has its own base temp folder; their common parent makes
  the workers share one build too (`tests/serving_testing.py` builds under a file lock).
  """
  base = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    base = base.parent
  return os.path.join(str(base), "serving_shared")


@pytest.fixture(scope="session")
def bert_vocab_path():
  """The standard uncased BERT vocab from ../shared (skips when absent)."""
  return shared_path("models", "all-MiniLM-L6-v2", "vocab.txt")


@pytest.fixture(scope="session")
def tiny_vocab_path(tmp_path_factory):
  path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
  path.write_text("\n".join(TINY_VOCAB) + "\n", encoding="utf-8")
  return str(path)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_vocab_path):
  from realm_tf.tokenization import Tokenizer  # pylint: disable=g-import-not-at-top
  return Tokenizer(tiny_vocab_path, do_lower_case=True)


@pytest.fixture(scope="session")
def bert_tokenizer(bert_vocab_path):
  from realm_tf.tokenization import Tokenizer  # pylint: disable=g-import-not-at-top
  return Tokenizer(bert_vocab_path, do_lower_case=True)
