"""Models built for pre-trained weights take the architecture recorded with them.

`realm_tf.pretrain --init_checkpoint / --init_hf_bert / --init_embedder` builds the
reader and the embedder for every kind of `export.convert` output (and for Google BERT
and Hugging Face folders directly): the pre-training model then computes the retrieval
scores and the loss of the converted model itself. Every loader checks the activation
and the epsilons as it checks names and shapes, and a setting that contradicts the
weights is an error naming it, the weights and both values.

The weights are random, of the `tiny` preset's shape (so that a model built from the
preset alone loads them without complaint and computes other numbers), written under the
original names with the fixtures of tests/test_convert_common.py and test_convert_hf.py.
"""

import realm_tf  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import dataclasses
import json
import os
import types

import numpy as np
import pytest
import tensorflow as tf

from export import convert
from export import converted
from orqa.models import span_scorer
from orqa.models import towers
from realm_tf.modeling import architecture
from realm_tf.modeling.architecture import ArchitectureConflictError, WeightsMismatchError
from realm_tf.modeling.config import BertConfig
from realm_tf.modeling import encoders
from realm_tf.modeling.realm_model import RealmModel
from realm_tf.modeling.weight_assign import ConversionError
from realm_tf.modeling import weights
from realm_tf import pretrain
from tests import modeling_testing
from tests.test_convert_common import (VOCAB, random_bert, random_projection,
                                       write_tf1_checkpoint, write_vocab)
from tests.test_convert_hf import hf_embedder, hf_mlm_head, hf_names, write_hf_folder

# The tiny preset's shape (L2 / H128 / A2 / I512) over the fixtures' 40-token vocabulary.
SHAPE = dict(vocab_size=len(VOCAB), hidden_size=128, num_hidden_layers=2,
             num_attention_heads=2, intermediate_size=512, max_position_embeddings=512,
             type_vocab_size=2)
PROJECTION = 128  # the original D (the default of a model without projection weights)
ATOL = 1e-5


def _google_bert(root, rng):
  """A Google BERT folder: bert_model.ckpt, bert_config.json (`gelu`: TF1's tanh
  approximation), vocab.txt."""
  folder = os.path.join(root, "uncased_L-2_H-128_A-2")
  canon = random_bert(rng, SHAPE)
  write_tf1_checkpoint(os.path.join(folder, "bert_model.ckpt"),
                       {(k if k.startswith("cls/") else "bert/" + k): v
                        for k, v in canon.items()})
  with open(os.path.join(folder, "bert_config.json"), "w") as f:
    json.dump(dict(SHAPE, hidden_act="gelu", hidden_dropout_prob=0.1,
                   attention_probs_dropout_prob=0.1, initializer_range=0.02), f)
  write_vocab(os.path.join(folder, "vocab.txt"))
  return folder


def _hf_bert(root, rng):
  """A Hugging Face BertForMaskedLM folder with the exact (erf) GELU."""
  canon = random_bert(rng, SHAPE)
  state = hf_names(canon, "bert.")
  state.update(hf_mlm_head(canon, ""))
  config = dict(SHAPE, model_type="bert", hidden_act="gelu", layer_norm_eps=1e-12)
  return write_hf_folder(os.path.join(root, "hf_bert"), config, state)


def _realm_modules(root, rng, layer_norm):
  """REALM's cc_news_pretrained layout: embedder/ (nested BERT module, dense and a
  projection LayerNorm named `layer_norm`) and bert/ (BERT + MLM head) hub modules."""
  folder = os.path.join(root, f"cc_news_{layer_norm}")
  emb, reader = random_bert(rng, SHAPE), random_bert(rng, SHAPE)
  proj = random_projection(rng, 128, PROJECTION)
  variables = {"module/" + (k if k.startswith("cls/") else "bert/" + k): v
               for k, v in emb.items()}
  variables.update({"dense/kernel": proj["kernel"], "dense/bias": proj["bias"],
                    f"{layer_norm}/gamma": proj["gamma"], f"{layer_norm}/beta": proj["beta"]})
  for name, values in (("embedder", variables),
                       ("bert", {(k if k.startswith("cls/") else "bert/" + k): v
                                 for k, v in reader.items()})):
    write_tf1_checkpoint(os.path.join(folder, name, "variables", "variables"), values)
    write_vocab(os.path.join(folder, name, "assets", "vocab.txt"))
  return folder


def _hf_realm(root, rng):
  """HF RealmEmbedder and RealmKnowledgeAugEncoder folders (`gelu_new`, eps 1e-12)."""
  config = dict(SHAPE, model_type="realm", hidden_act="gelu_new", layer_norm_eps=1e-12,
                retriever_proj_size=PROJECTION, span_hidden_size=8,
                reader_layer_norm_eps=1e-3, initializer_range=0.02)
  emb, proj = random_bert(rng, SHAPE, with_head=False), random_projection(rng, 128,
                                                                           PROJECTION)
  state = hf_embedder(emb, proj, "", rng)
  state = {k: v for k, v in state.items() if not k.startswith("cls.predictions")}
  embedder = write_hf_folder(os.path.join(root, "hf_embedder"),
                             dict(config, architectures=["RealmEmbedder"]), state)
  reader = random_bert(rng, SHAPE)
  state = hf_names(reader, "realm.")
  state.update(hf_mlm_head(reader, ""))
  encoder = write_hf_folder(os.path.join(root, "hf_encoder"),
                            dict(config, architectures=["RealmKnowledgeAugEncoder"]), state)
  return embedder, encoder


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
  """kind -> (the conversion of the reader's source, pretrain flags, the reader's weights,
  the conversion of the embedder's source or None)."""
  root = str(tmp_path_factory.mktemp("sources"))
  rng = np.random.default_rng(0)
  out = lambda name: os.path.join(root, "converted", name)
  google = _google_bert(root, rng)
  hf = _hf_bert(root, rng)
  convert.convert("bert_tf1", google, out("bert_tf1"))
  convert.convert("hf_bert", hf, out("hf_bert"))
  for layer_norm in ("layer_normalization", "LayerNorm"):
    convert.convert("realm_tf1", _realm_modules(root, rng, layer_norm), out(layer_norm),
                    num_attention_heads=2, export_hub=layer_norm == "LayerNorm")
  hf_emb, hf_enc = _hf_realm(root, rng)
  convert.convert("hf_realm", hf_emb, out("hf_embedder"))
  convert.convert("hf_realm", hf_enc, out("hf_encoder"))
  bert = lambda name: os.path.join(out(name), "bert")
  emb = lambda name: os.path.join(out(name), "embedder")
  return {
      "bert_tf1": (out("bert_tf1"), dict(init_checkpoint=bert("bert_tf1")),
                   bert("bert_tf1"), None),
      "hf_bert": (out("hf_bert"), dict(init_checkpoint=bert("hf_bert")),
                  bert("hf_bert"), None),
      "realm_tf1_keras_layer_norm": (
          out("layer_normalization"),
          dict(init_checkpoint=bert("layer_normalization"),
               init_embedder=emb("layer_normalization")),
          bert("layer_normalization"), out("layer_normalization")),
      "realm_tf1_LayerNorm": (
          out("LayerNorm"), dict(init_checkpoint=bert("LayerNorm"),
                                 init_embedder=emb("LayerNorm")),
          bert("LayerNorm"), out("LayerNorm")),
      "hf_realm": (out("hf_encoder"), dict(init_checkpoint=bert("hf_encoder"),
                                           init_embedder=emb("hf_embedder")),
                   bert("hf_encoder"), out("hf_embedder")),
      # Not converted: read in place; the conversion of the same folder is the reference.
      "google_folder": (out("bert_tf1"), dict(init_checkpoint=google), google, None),
      "hf_folder": (out("hf_bert"), dict(init_hf_bert=hf), hf, None),
  }


class _Flags(types.SimpleNamespace):
  """`realm_tf.pretrain`'s FLAGS: the given values, the flags' defaults otherwise."""

  def __getattr__(self, name):
    return None


def _pretrain_config(vocab_path, **flag_values):
  values = dict(share_embedders=True, separate_candidate_segments=True,
                do_lower_case=True, keep_checkpoint_max=5, seed=0,
                recompute_activations=False, precision="auto", jit_compile=None,
                micro_batches=1, reader_only_steps=0,
                query_seq_len=8, candidate_seq_len=12, num_candidates=3, max_masks=2,
                num_train_steps=10, vocab_path=vocab_path)
  values.update(flag_values)
  return pretrain.config_from_flags(_Flags(**values), sample=False, vocab_path=vocab_path)


def _pretraining_model(config, flag_values):
  """What `realm_tf.pretrain` builds and initializes (its `main`)."""
  model = RealmModel(config).build_variables()
  bert = flag_values.get("init_hf_bert") or flag_values.get("init_checkpoint")
  weights.load_pretrained_realm(model, bert_path=bert,
                                embedder_path=flag_values.get("init_embedder") or bert)
  return model


def _converted_model(reader_output, embedder_output, config, trained):
  """The converted models themselves in one RealmModel of their own config.json (reader-
  only conversions: the embedder is the reader's BERT, with `trained`'s projection, which
  comes from no checkpoint)."""
  reader = converted.load_converted(reader_output)
  own = dataclasses.replace(reader.config, query_seq_len=config.query_seq_len,
                            candidate_seq_len=config.candidate_seq_len,
                            num_candidates=config.num_candidates, max_masks=config.max_masks)
  if embedder_output:
    embedder = converted.load_converted(embedder_output)
    own = dataclasses.replace(
        own, embedder=embedder.config.embedder,
        projection_size=embedder.config.projection_size,
        embedder_layer_norm_epsilon=embedder.config.embedder_layer_norm_epsilon)
  model = RealmModel(own).build_variables()
  model.reader.set_weights(reader.reader.get_weights())
  if embedder_output:
    model.document_embedder.set_weights(embedder.embedder.get_weights())
  else:
    tower = model.document_embedder
    tower.encoder.set_weights(reader.reader.encoder.get_weights())
    tower.projection.set_weights(trained.document_embedder.projection.get_weights())
    tower.layer_norm.set_weights(trained.document_embedder.layer_norm.get_weights())
  return model


@pytest.mark.parametrize("kind", ["bert_tf1", "hf_bert", "realm_tf1_keras_layer_norm",
                                  "realm_tf1_LayerNorm", "hf_realm", "google_folder",
                                  "hf_folder"])
def test_pretraining_model_computes_what_the_converted_model_computes(
    sources, kind):
  output, flag_values, _, embedder_output = sources[kind]
  vocab = os.path.join(output, "vocab.txt")
  # As in docs/CHECKPOINTS.md's recipe, the preset names the weights' size.
  config = _pretrain_config(vocab, bert_preset="tiny", **flag_values)
  model = _pretraining_model(config, flag_values)
  reference = _converted_model(output, embedder_output, config, model)
  for part in ("bert", "embedder"):
    mine, theirs = getattr(config, part), getattr(reference.config, part)
    assert {f: getattr(mine, f) for f in architecture.MODEL_FIELDS} == {
        f: getattr(theirs, f) for f in architecture.MODEL_FIELDS}, part
  assert config.projection_size == reference.config.projection_size
  assert config.embedder_layer_norm_epsilon == reference.config.embedder_layer_norm_epsilon
  features = modeling_testing.random_features(config, batch_size=3, seed=1)
  got = model(features, training=False)
  want = reference(features, training=False)
  np.testing.assert_allclose(got["retrieval_scores"].numpy(),
                             want["retrieval_scores"].numpy(), atol=ATOL)
  np.testing.assert_allclose(got["loss"].numpy(), want["loss"].numpy(), atol=ATOL)
  # The weights are not the preset's defaults: the scores are not trivially equal.
  assert np.ptp(got["retrieval_scores"].numpy()) > 1e-2


def test_each_converter_records_the_architecture_of_its_source(sources):
  expected = {"bert_tf1": ("gelu_approximate", None), "hf_bert": ("gelu", None),
              "realm_tf1_keras_layer_norm": ("gelu_approximate", 1e-3),
              "realm_tf1_LayerNorm": ("gelu_approximate", 1e-12),
              "hf_realm": ("gelu_approximate", 1e-12)}
  for kind, (act, epsilon) in expected.items():
    _, _, reader_dir, embedder_dir = sources[kind]
    assert architecture.read_architecture(reader_dir).config.hidden_act == act, kind
    if embedder_dir:
      arch = architecture.read_architecture(os.path.join(embedder_dir, "embedder"))
      assert (arch.config.hidden_act, arch.projection_layer_norm_epsilon,
              arch.projection_size) == (act, epsilon, PROJECTION), kind


def test_loaders_refuse_another_activation_or_epsilon(sources):
  _, _, reader_dir, _ = sources["bert_tf1"]
  recorded = architecture.read_architecture(reader_dir).config
  exact = dataclasses.replace(recorded, hidden_act="gelu")
  with pytest.raises(WeightsMismatchError, match=r"hidden_act mismatch: the weights in "
                     r".*bert \(.*config.json\) have gelu_approximate, the model config "
                     r"has gelu"):
    weights.load_bert_weights(encoders.build_bert_encoder(exact), exact, reader_dir)
  _, _, hf_folder, _ = sources["hf_folder"]
  approximate = dataclasses.replace(recorded, hidden_act="gelu_approximate")
  with pytest.raises(WeightsMismatchError, match=r"hidden_act mismatch: .*hf_bert "
                     r"\(.*config.json\) have gelu, the model config has gelu_approximate"):
    weights.load_hf_bert(encoders.build_bert_encoder(approximate), approximate, hf_folder)
  _, _, google, _ = sources["google_folder"]
  with pytest.raises(WeightsMismatchError, match=r"hidden_act mismatch: .*bert_config.json"):
    weights.load_bert_weights(encoders.build_bert_encoder(exact), exact, google)
  # The embedder projection: recorded 1e-12, the model's 1e-3.
  output, _, _, _ = sources["realm_tf1_LayerNorm"]
  config = converted.load_converted(output).config
  model = RealmModel(dataclasses.replace(config, embedder_layer_norm_epsilon=1e-3))
  model.build_variables()
  with pytest.raises(WeightsMismatchError, match=r"projection LayerNorm epsilon mismatch: "
                     r".* have 1e-12, the model has 0.001"):
    weights.load_pretrained_realm(model, embedder_path=os.path.join(output, "embedder"))


def test_flags_that_contradict_the_weights_name_flag_weights_and_values(
    sources, tmp_path):
  output, flag_values, _, _ = sources["realm_tf1_LayerNorm"]
  vocab = os.path.join(output, "vocab.txt")
  with pytest.raises(ArchitectureConflictError, match=r"--bert_preset=mini contradicts the "
                     r"weights in .*LayerNorm/bert \(.*config.json\): hidden_size is 128 "
                     r"there and 256 from --bert_preset"):
    _pretrain_config(vocab, bert_preset="mini", **flag_values)
  # A default preset never contradicts: the weights decide.
  assert _pretrain_config(vocab, **flag_values).bert.hidden_size == 128
  with pytest.raises(ArchitectureConflictError, match=r"--embedder_preset=base contradicts"):
    _pretrain_config(vocab, embedder_preset="base", **flag_values)
  with pytest.raises(ArchitectureConflictError, match=r"--do_lower_case=False contradicts "
                     r".*do_lower_case is True there and False from --do_lower_case"):
    _pretrain_config(vocab, do_lower_case=False, **flag_values)
  other = tmp_path / "other_vocab.txt"
  other.write_text("\n".join(VOCAB[:7] + ["zzz"] + VOCAB[8:]) + "\n")
  with pytest.raises(ArchitectureConflictError, match=r"--vocab_path=.*other_vocab.txt is "
                     r"not the vocabulary of the weights .*line 8 is 'w2' there and 'zzz'"):
    _pretrain_config(str(other), **flag_values)
  larger = tmp_path / "larger_vocab.txt"
  larger.write_text("\n".join(VOCAB + ["extra"]) + "\n")
  with pytest.raises(ArchitectureConflictError, match=r"the vocabulary size .* is 40 there "
                     r"and 41 from --vocab_path"):
    _pretrain_config(str(larger), **flag_values)
  # The initial index's query tower must be the embedder's architecture: the TF-Hub
  # export of the same conversion passes, that of another (epsilon 1e-12) does not.
  module = os.path.join(output, "tf_hub", "embedder")
  assert architecture.read_module_architecture(module).projection_layer_norm_epsilon == 1e-12
  _pretrain_config(vocab, initial_embedder_module=module, **flag_values)
  keras_output, keras_flags, _, _ = sources["realm_tf1_keras_layer_norm"]
  with pytest.raises(ArchitectureConflictError, match=r"--initial_embedder_module=.* has "
                     r"projection LayerNorm epsilon 1e-12, but the embedder loaded from "
                     r"--init_embedder=.* has 0.001"):
    _pretrain_config(os.path.join(keras_output, "vocab.txt"),
                     initial_embedder_module=module, **keras_flags)


def test_orqa_reader_from_a_converted_checkpoint(sources):
  output, _, reader_dir, _ = sources["bert_tf1"]
  vocab = os.path.join(output, "vocab.txt")
  source = towers.BertSource(path=reader_dir, vocab_path=vocab,
                              path_flag="--reader_module_path",
                              preset_flag="--reader_preset")
  encoder, _ = towers.build_reader(source)
  reference = converted.load_converted(output).reader
  features = modeling_testing.random_features(
      modeling_testing.tiny_realm_config(bert=BertConfig.preset("tiny", vocab_size=40),
                                      embedder=BertConfig.preset("tiny", vocab_size=40)), 2)
  inputs = {k: v for k, v in zip(("input_word_ids", "input_mask", "input_type_ids"),
                                 features["query_inputs"])}
  np.testing.assert_allclose(encoder(inputs)["sequence_output"].numpy(),
                             reference(inputs)["sequence_output"].numpy(), atol=ATOL)
  with pytest.raises(ArchitectureConflictError, match=r"--reader_preset=mini contradicts"):
    towers.build_reader(dataclasses.replace(source, preset="mini"))


def test_converters_refuse_configs_they_cannot_honour(tmp_path):
  rng = np.random.default_rng(3)
  folder = _google_bert(str(tmp_path), rng)
  with open(os.path.join(folder, "bert_config.json"), "w") as f:
    json.dump(dict(SHAPE, num_hidden_layers=3, hidden_act="gelu"), f)
  with pytest.raises(ConversionError, match=r"bert_config.json has num_hidden_layers=3, "
                     r"but the BERT at .* has 2"):
    convert.convert("bert_tf1", folder, str(tmp_path / "out1"))
  canon = random_bert(rng, SHAPE)
  state = hf_names(canon, "bert.")
  config = dict(SHAPE, model_type="bert", hidden_act="gelu", layer_norm_eps=1e-5)
  hf = write_hf_folder(str(tmp_path / "hf"), config, state)
  with pytest.raises(ConversionError, match=r"hf/config.json: layer_norm_eps=1e-05 is not "
                     r"supported"):
    convert.convert("hf_bert", hf, str(tmp_path / "out2"))
  base = tmp_path / "base_config.json"
  base.write_text(json.dumps(dict(SHAPE, hidden_size=768, num_attention_heads=12)))
  with pytest.raises(ConversionError, match=r"--bert_config_file has hidden_size 768, "
                     r"which none of the BERTs"):
    convert.convert("realm_tf1", _realm_modules(str(tmp_path), rng, "LayerNorm"),
                    str(tmp_path / "out3"), bert_config_file=str(base))


def test_orqa_span_scorer_with_another_recorded_epsilon_is_refused(tmp_path):
  """`orqa.finetune --init_span_scorer`: the span MLP's LayerNorm epsilon recorded by the
  conversion must be the model's (ORQA's 1e-3)."""
  rng = np.random.default_rng(5)
  npz = tmp_path / "out" / "bert" / "span_scorer.npz"
  npz.parent.mkdir(parents=True)
  np.savez(npz, **{name: rng.normal(size=shape).astype(np.float32)
                   for name, shape in span_scorer.weight_shapes(128, 8).items()})
  manifest = tmp_path / "out" / "conversion.json"
  for epsilon in (1e-3, 1e-12):
    manifest.write_text(json.dumps({"components": {"bert": {"span_scorer": {
        "layer_norm_epsilon": epsilon}}}}))
    if epsilon == 1e-3:
      assert set(span_scorer.read_weights(str(npz))) == set(span_scorer.WEIGHT_NAMES)
      continue
    with pytest.raises(span_scorer.SpanWeightsError, match=r"span_scorer.npz: the span MLP "
                       r"was converted with LayerNorm epsilon 1e-12 \(conversion.json\), "
                       r"the model's span scorer uses 0.001"):
      span_scorer.read_weights(str(npz))
