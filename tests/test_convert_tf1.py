"""`python -m export.convert --from=bert_tf1|realm_tf1`: TF1 checkpoints written with
`tf.compat.v1` under the original variable names convert completely and compute what a
NumPy forward pass on the TF1 variables computes."""

import realm_tf  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from export import convert
from export import converted
from realm_tf.modeling.realm_model import RealmModel
from realm_tf.modeling.weight_assign import ConversionError
from realm_tf.modeling import weights
from realm_tf.retrieval import block_emb_file
from tests.conftest import REPO_ROOT
from tests.test_convert_common import (IDS, MASK, POSITIONS, PROJ, SEGMENTS, TINY,
                                       keras_inputs, np_bert, np_mlm, np_projection,
                                       np_span, random_bert, random_projection, random_span,
                                       span_candidates, write_tf1_checkpoint, write_vocab)

ATOL = 1e-5


def _google_bert_folder(root, rng, extra=None, drop=None):
  """A Google BERT TF1 folder: bert_model.ckpt (+ NSP head, Adam slots, global_step),
  bert_config.json, vocab.txt."""
  folder = os.path.join(root, "uncased_L-2_H-64_A-2")
  canon = random_bert(rng, with_nsp=True)
  variables = {(k if k.startswith("cls/") else "bert/" + k): v for k, v in canon.items()}
  variables["bert/pooler/dense/kernel/adam_m"] = np.zeros([64, 64], np.float32)
  variables["bert/pooler/dense/kernel/adam_v"] = np.zeros([64, 64], np.float32)
  variables["global_step"] = np.int64(7)
  variables.update(extra or {})
  for name in drop or ():
    del variables[name]
  write_tf1_checkpoint(os.path.join(folder, "bert_model.ckpt"), variables)
  with open(os.path.join(folder, "bert_config.json"), "w") as f:
    json.dump(dict(TINY, hidden_act="gelu", hidden_dropout_prob=0.1,
                   attention_probs_dropout_prob=0.1, initializer_range=0.02), f)
  write_vocab(os.path.join(folder, "vocab.txt"))
  return folder, canon, variables


def _check_reader(reader, canon, approximate=True):
  out = reader(keras_inputs(), mlm_positions=tf.constant(POSITIONS), training=False)
  seq, pooled = np_bert(canon, IDS, MASK, SEGMENTS, approximate=approximate)
  np.testing.assert_allclose(out["sequence_output"].numpy(), seq, atol=ATOL)
  np.testing.assert_allclose(out["pooled_output"].numpy(), pooled, atol=ATOL)
  np.testing.assert_allclose(out["mlm_logits"].numpy(), np_mlm(canon, seq, POSITIONS,
                                                                approximate), atol=ATOL)
  return seq


def _accounted(manifest):
  """Every input name the manifest says was converted or ignored."""
  names = set(manifest["ignored"])
  for entry in manifest["components"].values():
    names.update(entry.get("variables", {}).values())
    names.update(entry.get("span_scorer", {}).get("variables", {}).values())
  return names


def test_bert_tf1_folder_converts_completely(tmp_path):
  folder, canon, variables = _google_bert_folder(str(tmp_path), np.random.default_rng(0))
  out = str(tmp_path / "out")
  manifest = convert.convert("bert_tf1", folder, out)
  assert _accounted(manifest) == set(variables)
  assert set(manifest["ignored"]) == {"cls/seq_relationship/output_weights",
                                      "cls/seq_relationship/output_bias", "global_step",
                                      "bert/pooler/dense/kernel/adam_m",
                                      "bert/pooler/dense/kernel/adam_v"}
  assert manifest["components"]["bert"]["mlm_head"] is True
  assert manifest["vocab"]["do_lower_case"] is True
  models = converted.load_converted(out)
  assert models.config.bert.hidden_act == "gelu_approximate"  # TF1 BERT's gelu
  assert models.config.vocab_path == os.path.join(out, "vocab.txt")
  _check_reader(models.reader, canon)
  assert sorted(os.listdir(out)) == ["bert", "config.json", "conversion.json", "vocab.txt"]
  # The reader checkpoint loads with the existing BERT loader (tf-models keys).
  encoder_only = RealmModel(models.config).build_variables().reader
  report = weights.load_bert_weights(encoder_only.encoder, models.config.bert,
                                     os.path.join(out, "bert"), encoder_only.masked_lm)
  assert report.format == "tf2_checkpoint" and report.loaded_mlm_head


@pytest.mark.parametrize("change,pattern", [
    (dict(extra={"bert/encoder/layer_0/attention/self/query/extra": np.zeros([3, 5])}),
     r"extra: bert/encoder/layer_0/attention/self/query/extra \(shape \(3, 5\)"),
    (dict(extra={"bert/encoder/layer_1/intermediate/dense/kernel":
                 np.zeros([64, 80], np.float32)}),
     r"bert/encoder/layer_1/intermediate/dense/kernel has shape \(64, 80\) in the input, "
     r"the model variable encoder/layer_1/intermediate/dense/kernel expects \(64, 96\)"),
    (dict(drop=["bert/encoder/layer_1/output/LayerNorm/beta"]),
     r"missing: encoder/layer_1/output/LayerNorm/beta \(.* has shape \(64,\)"),
    (dict(extra={"other/scope/kernel": np.zeros([2], np.float32)}),
     r"variable\(s\) that no realm-tf model takes: \['other/scope/kernel \(2,\)'\]"),
])
def test_bert_tf1_mismatches_name_the_variable_and_shapes(tmp_path, change, pattern):
  folder, _, _ = _google_bert_folder(str(tmp_path), np.random.default_rng(1), **change)
  out = str(tmp_path / "out")
  with pytest.raises(ConversionError, match=pattern):
    convert.convert("bert_tf1", folder, out)
  assert not os.path.exists(out) and not [n for n in os.listdir(tmp_path)
                                          if n.startswith("temp-")]


def _hub_module(path, variables, vocab=True):
  write_tf1_checkpoint(os.path.join(path, "variables", "variables"), variables)
  if vocab:
    write_vocab(os.path.join(path, "assets", "vocab.txt"))


def test_realm_cc_news_modules_with_index_and_hub_export(tmp_path):
  """REALM's cc_news_pretrained layout: embedder/ (ICT-style module: nested BERT module,
  dense, Keras LayerNorm, encoded/encoded.ckpt) and bert/ (BERT + MLM head)."""
  rng = np.random.default_rng(2)
  emb_bert, proj = random_bert(rng), random_projection(rng)
  reader_bert = random_bert(rng)
  emb_vars = {"module/" + (k if k.startswith("cls/") else "bert/" + k): v
              for k, v in emb_bert.items()}
  emb_vars.update({"dense/kernel": proj["kernel"], "dense/bias": proj["bias"],
                   "layer_normalization/gamma": proj["gamma"],
                   "layer_normalization/beta": proj["beta"]})
  root = str(tmp_path / "cc_news_pretrained")
  _hub_module(os.path.join(root, "embedder"), emb_vars)
  block_emb = rng.normal(size=[11, PROJ]).astype(np.float32)
  write_tf1_checkpoint(os.path.join(root, "embedder", "encoded", "encoded.ckpt"),
                       {"block_emb": block_emb})
  _hub_module(os.path.join(root, "bert"),
              {(k if k.startswith("cls/") else "bert/" + k): v for k, v in reader_bert.items()})
  out = str(tmp_path / "out")
  manifest = convert.convert("realm_tf1", root, out, export_hub=True, num_attention_heads=2)

  names = {f"embedder:{n}" for n in emb_vars} | {f"bert:{n}" for n in
                                                  ["bert/" + k for k in reader_bert
                                                   if not k.startswith("cls/")] +
                                                  [k for k in reader_bert if k.startswith("cls/")]}
  assert _accounted(manifest) == names
  assert all("MLM head of the retriever" in manifest["ignored"][f"embedder:module/{k}"]
             for k in emb_bert if k.startswith("cls/"))
  models = converted.load_converted(out)
  assert models.config.embedder_layer_norm_epsilon == 1e-3
  _, pooled = np_bert(emb_bert, IDS, MASK, SEGMENTS)
  expected_emb = np_projection(proj, pooled, 1e-3)
  np.testing.assert_allclose(models.embedder(keras_inputs(), training=False).numpy(),
                             expected_emb, atol=ATOL)
  _check_reader(models.reader, reader_bert)
  for prefix in (converted.block_emb_prefix(out),
                 os.path.join(out, "tf_hub", "embedder", "encoded", "encoded.ckpt")):
    np.testing.assert_array_equal(
        tf.train.load_checkpoint(prefix).get_tensor("block_emb"), block_emb)

  # The TF-Hub modules compute the same.
  embedder = tf.saved_model.load(os.path.join(out, "tf_hub", "embedder"))
  ids = tf.constant(IDS, tf.int32)
  got = embedder.signatures["projected"](input_ids=ids, input_mask=tf.constant(MASK, tf.int32),
                                         segment_ids=tf.constant(SEGMENTS, tf.int32))
  np.testing.assert_allclose(got["default"].numpy(), expected_emb, atol=ATOL)
  bert = tf.saved_model.load(os.path.join(out, "tf_hub", "bert"))
  got = bert.signatures["mlm"](input_ids=ids, input_mask=tf.constant(MASK, tf.int32),
                               segment_ids=tf.constant(SEGMENTS, tf.int32),
                               mlm_positions=tf.constant(POSITIONS, tf.int32))
  seq, _ = np_bert(reader_bert, IDS, MASK, SEGMENTS)
  np.testing.assert_allclose(got["mlm_logits"].numpy(), np_mlm(reader_bert, seq, POSITIONS),
                             atol=ATOL)

  # realm_tf.pretrain's initializer loads both parts, projection included.
  model = RealmModel(models.config).build_variables()
  weights.load_pretrained_realm(model, bert_path=os.path.join(out, "bert"),
                                embedder_path=os.path.join(out, "embedder"))
  np.testing.assert_allclose(model.embed_queries(keras_inputs()).numpy(), expected_emb,
                             atol=ATOL)


def test_orqa_model_checkpoint_with_span_mlp(tmp_path):
  """A REALM-ORQA model directory (model.ckpt-N) under the names HF's
  `load_tf_weights_in_realm` maps: the retriever's projection at
  `module/module/module/{dense,LayerNorm}` and its BERT module (with an MLM head the
  embedder does not use) at `module/module/module/module/{bert,cls}`; the reader at
  `reader/module/{bert,cls}` with the span MLP `reader/{dense,layer_normalization,dense_1}`
  (orqa_model.py's `tf.layers.dense` / Keras LayerNorm / `tf.layers.dense` under
  `variable_scope("reader")`); Adam slots and global_step. The block index comes from
  --block_emb."""
  rng = np.random.default_rng(4)
  emb_bert, proj = random_bert(rng), random_projection(rng)
  reader_bert, span = random_bert(rng), random_span(rng)
  retriever = "module/module/module/"
  variables = {retriever + "module/" + (k if k.startswith("cls/") else "bert/" + k): v
               for k, v in emb_bert.items()}
  variables.update({retriever + "dense/kernel": proj["kernel"],
                    retriever + "dense/bias": proj["bias"],
                    retriever + "LayerNorm/gamma": proj["gamma"],
                    retriever + "LayerNorm/beta": proj["beta"]})
  variables.update({"reader/module/" + (k if k.startswith("cls/") else "bert/" + k): v
                    for k, v in reader_bert.items()})
  tf1_span = {"dense/kernel": "span_projection/kernel", "dense/bias": "span_projection/bias",
              "layer_normalization/gamma": "span_layer_norm/gamma",
              "layer_normalization/beta": "span_layer_norm/beta",
              "dense_1/kernel": "span_logits/kernel", "dense_1/bias": "span_logits/bias"}
  variables.update({"reader/" + k: span[v] for k, v in tf1_span.items()})
  variables["reader/dense/kernel/Adam"] = np.zeros_like(span["span_projection/kernel"])
  variables["global_step"] = np.int64(1234)
  model_dir = str(tmp_path / "orqa_nq_model")
  write_tf1_checkpoint(os.path.join(model_dir, "model.ckpt-1234"), variables)
  block_emb = rng.normal(size=[5, PROJ]).astype(np.float32)
  index = write_tf1_checkpoint(str(tmp_path / "ict" / "encoded" / "encoded.ckpt"),
                               {"block_emb": block_emb})
  out = str(tmp_path / "out")
  manifest = convert.convert("realm_tf1", model_dir, out, vocab_path=write_vocab(
      str(tmp_path / "vocab.txt")), num_attention_heads=2, block_emb=index)
  assert _accounted(manifest) == set(variables)
  assert manifest["global_step"] == 1234
  assert manifest["components"]["bert"]["checkpoint"] == "bert/ckpt-1234"
  assert manifest["components"]["bert"]["span_scorer"]["variables"] == {
      "span_projection/kernel": "reader/dense/kernel",
      "span_projection/bias": "reader/dense/bias",
      "span_layer_norm/gamma": "reader/layer_normalization/gamma",
      "span_layer_norm/beta": "reader/layer_normalization/beta",
      "span_logits/kernel": "reader/dense_1/kernel", "span_logits/bias": "reader/dense_1/bias"}
  assert manifest["components"]["embedder"]["variables"]["projection/kernel"] == (
      "module/module/module/dense/kernel")
  assert all("MLM head of the retriever" in manifest["ignored"][
      f"{retriever}module/{k}"] for k in emb_bert if k.startswith("cls/"))
  models = converted.load_converted(out)
  # `LayerNorm` (not Keras' `layer_normalization`): epsilon 1e-12, as HF's RealmEmbedder.
  assert models.config.embedder_layer_norm_epsilon == 1e-12
  _, pooled = np_bert(emb_bert, IDS, MASK, SEGMENTS)
  np.testing.assert_allclose(models.embedder(keras_inputs(), training=False).numpy(),
                             np_projection(proj, pooled, 1e-12), atol=ATOL)
  seq = _check_reader(models.reader, reader_bert)
  starts, ends = span_candidates()
  got = models.span_scorer(models.reader(keras_inputs())["sequence_output"], starts, ends)
  np.testing.assert_allclose(got.numpy(), np_span(span, seq, starts, ends), atol=ATOL)
  npz = np.load(os.path.join(out, "bert", "span_scorer.npz"))
  assert sorted(npz.files) == sorted(span) and all(
      np.array_equal(npz[k], span[k]) for k in span)
  np.testing.assert_array_equal(block_emb_file.read_block_emb(converted.block_emb_prefix(out)),
                                block_emb)


def test_realm_tf1_refuses_a_second_embedder_and_partial_projection(tmp_path):
  rng = np.random.default_rng(5)
  bert, proj = random_bert(rng, with_head=False), random_projection(rng)
  variables = {"module/bert/" + k: v for k, v in bert.items()}
  variables.update({"dense/kernel": proj["kernel"], "dense/bias": proj["bias"]})
  prefix = write_tf1_checkpoint(str(tmp_path / "a" / "model.ckpt"), variables)
  with pytest.raises(ConversionError, match=r"dense/kernel has no LayerNorm beside it"):
    convert.read_input("realm_tf1", prefix, num_attention_heads=2)
  variables.update({"layer_normalization/gamma": proj["gamma"],
                    "layer_normalization/beta": proj["beta"]})
  variables.update({"query/module/bert/" + k: v for k, v in bert.items()})
  variables.update({"query/dense/kernel": proj["kernel"], "query/dense/bias": proj["bias"],
                    "query/layer_normalization/gamma": proj["gamma"],
                    "query/layer_normalization/beta": proj["beta"]})
  prefix = write_tf1_checkpoint(str(tmp_path / "b" / "model.ckpt"), variables)
  with pytest.raises(ConversionError, match=r"more than one embedder BERT"):
    convert.read_input("realm_tf1", prefix, num_attention_heads=2)


def test_cli_converts(tmp_path):
  folder, canon, _ = _google_bert_folder(str(tmp_path), np.random.default_rng(6))
  out = str(tmp_path / "out")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  result = subprocess.run(
      [sys.executable, "-m", "export.convert", "--from=bert_tf1", f"--input={folder}",
       f"--output={out}"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
      timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads(result.stdout)
  assert summary["output"] == out and summary["ignored"] == 5
  assert summary["components"]["bert"]["checkpoint"] == "bert/ckpt-7"
  _check_reader(converted.load_converted(out).reader, canon)
  with pytest.raises(ConversionError, match=r"already exists"):  # Never overwritten.
    convert.convert("bert_tf1", folder, out)
