"""`orqa.finetune --init_span_scorer --num_train_steps=0`: a converted span MLP
(`export.convert`'s `bert/span_scorer.npz`) lands exactly in checkpoint 0, and that
model_dir answers through `orqa.predict` without any training; span MLPs that do not fit
are refused naming the file and both shapes.

The retriever module, its index and the block texts are the tiny model of
`tests/serving_testing.py` (shared with tests/test_serving.py in one pytest session).
"""

import os

import numpy as np
import pytest

import export  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow loads)
from absl import flags
import tensorflow as tf

from tests import serving_testing
from orqa import finetune
from orqa.data import jsonl_io
from orqa import predict
from orqa.models import span_scorer
from orqa.experiments import training_utils
from realm_tf import sample_data

TINY_H, SPAN_S = 128, 16  # The tiny reader's width; the span MLP's (not the default 256).


def _write_span_npz(path, hidden_size, span_hidden_size, seed=0, **overrides):
  """A span_scorer.npz as export.convert writes it, with random (non-initial) weights."""
  rng = np.random.default_rng(seed)
  arrays = {name: rng.normal(size=shape).astype(np.float32)
            for name, shape in span_scorer.weight_shapes(hidden_size, span_hidden_size).items()}
  arrays.update(overrides)
  np.savez(path, **arrays)
  return arrays


def _finetune(monkeypatch, *args):
  """Runs `python -m orqa.finetune <args>` in process, on flags of its own."""
  values = flags.FlagValues()
  finetune.define_flags(values)
  values(["orqa.finetune", *args])
  monkeypatch.setattr(finetune, "FLAGS", values)
  finetune.main(["orqa.finetune"])


def _args(tiny_dir, model_dir, npz, *extra):
  return (f"--model_dir={model_dir}",
          f"--retriever_module_path={os.path.join(tiny_dir, 'retriever', 'embedder')}",
          f"--block_records_path={os.path.join(tiny_dir, 'blocks.jsonl')}",
          "--reader_preset=tiny", f"--reader_vocab_path={sample_data.VOCAB_PATH}",
          f"--init_span_scorer={npz}", "--num_train_steps=0", "--retrieval_beam_size=8",
          "--reader_beam_size=3", "--reader_seq_len=96", "--query_seq_len=32",
          "--searcher=brute_force", *extra)


def test_converted_span_scorer_predicts_without_training(tmp_path, serving_shared_base,
                                                         monkeypatch):
  tiny_dir = serving_testing.cached_tiny_model(serving_shared_base)
  npz = str(tmp_path / "span_scorer.npz")
  arrays = _write_span_npz(npz, TINY_H, SPAN_S)
  model_dir = str(tmp_path / "orqa")
  # No --span_hidden_size and no --train_path: the file sets S, nothing is trained.
  _finetune(monkeypatch, *_args(tiny_dir, model_dir, npz))

  params = training_utils.read_params(model_dir)
  assert params["model"]["model"]["span_hidden_size"] == SPAN_S
  assert params["init_span_scorer"] == npz
  path = tf.train.latest_checkpoint(os.path.join(model_dir, training_utils.CHECKPOINT_DIR))
  assert path.endswith("ckpt-0")
  reader = tf.train.load_checkpoint(path)
  for name, value in arrays.items():
    key = f"model/span_scorer/{name}/.ATTRIBUTES/VARIABLE_VALUE"
    np.testing.assert_array_equal(reader.get_tensor(key), value, err_msg=name)

  # orqa.predict reads that model_dir as it is (no best export: the newest checkpoint).
  dataset = str(tmp_path / "questions.jsonl")
  question = next(jsonl_io.read_jsonl(sample_data.QA_TRAIN_PATH))[1]["question"]
  jsonl_io.write_jsonl(dataset, [{"question": question, "id": "q0"}])
  output = str(tmp_path / "predictions.jsonl")
  assert predict.predict(model_dir, dataset, output, batch_size=1, num_retrieved=3) == 1
  (_, record), = jsonl_io.read_jsonl(output)
  assert record["id"] == "q0" and isinstance(record["prediction"], str)
  assert len(record["block_ids"]) == 3 and record["predicted_block_id"] in record["block_ids"]
  assert np.isfinite(record["score"])


def test_span_scorer_that_does_not_fit_names_file_and_shapes(tmp_path, monkeypatch):
  npz = str(tmp_path / "span_scorer.npz")
  _write_span_npz(npz, TINY_H, SPAN_S)
  # An explicit --span_hidden_size other than the file's: refused before anything is built.
  with pytest.raises(span_scorer.SpanWeightsError,
                     match=r"span_scorer\.npz: .*S=16 does not fit the model's S=32: "
                           r"span_projection/kernel \(128, 32\) \(expected \(128, 64\)\)"):
    _finetune(monkeypatch, *_args("unused", str(tmp_path / "orqa"), npz,
                                  "--span_hidden_size=32"))
  assert not os.path.exists(tmp_path / "orqa")

  # A reader of another width (the file's H=64, the scorer's 128).
  other = str(tmp_path / "h64.npz")
  arrays = _write_span_npz(other, 64, SPAN_S)
  scorer = span_scorer.SpanScorer(SPAN_S).build_variables(TINY_H)
  with pytest.raises(span_scorer.SpanWeightsError,
                     match=r"h64\.npz: a span MLP for reader width H=64 .* the model's "
                           r"H=128, S=16: span_projection/kernel \(64, 32\) "
                           r"\(expected \(128, 32\)\)"):
    span_scorer.assign_weights(scorer, arrays, other)

  # Shapes that are not one MLP, and names that are not the span MLP's.
  bad = str(tmp_path / "bad.npz")
  _write_span_npz(bad, TINY_H, SPAN_S, **{"span_layer_norm/gamma": np.ones(17, np.float32)})
  with pytest.raises(span_scorer.SpanWeightsError,
                     match=r"span_layer_norm/gamma \(17,\) \(expected \(16,\)\)"):
    span_scorer.read_weights(bad)
  np.savez(bad, **{"reader/dense/kernel": np.ones([TINY_H, 2 * SPAN_S], np.float32)})
  with pytest.raises(span_scorer.SpanWeightsError, match=r"bad\.npz: not span scorer weights"):
    span_scorer.read_weights(bad)
