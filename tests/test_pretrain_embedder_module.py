"""`realm_tf.pretrain --initial_embedder_module` starts the embedder towers from the module.

The original initialized REALM's trainable embedder from its ICT module
(`embedder_hub_module_handle`, language/realm/model.py) and searched that module's index
until the first refresh. A realm-tf embedder module (an ICT or pre-training export) gives
the whole tower: BERT, projection and its LayerNorm, with the architecture it records.
"""

import realm_tf  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import dataclasses
import os
import shutil
import types

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.modeling import architecture
from realm_tf.modeling.architecture import WeightsMismatchError
from realm_tf.modeling.config import BertConfig
from realm_tf.modeling.embedder import ProjectedEmbedder
from realm_tf.modeling.realm_model import RealmModel
from realm_tf.modeling import weights
from realm_tf import pretrain
from realm_tf import sample_data
from realm_tf import tf_hub_modules
from realm_tf.tokenization import Tokenizer
from tests import modeling_testing

QUERY_SEQ_LEN = 8
PROJECTION = 24  # neither the default 128 nor the tiny test configs' 16
EPSILON = 1e-5  # not the default 1e-3


class _Flags(types.SimpleNamespace):
  """`realm_tf.pretrain`'s FLAGS: the given values, None (the flag's default) otherwise."""

  def __getattr__(self, name):
    return None


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
  """An embedder module (random tiny BERT + projection, e.g. an ICT export) and a reader
  module of the same BERT size, saved as `realm_tf.tf_hub_modules` does."""
  root = tmp_path_factory.mktemp("modules")
  tokenizer = Tokenizer(sample_data.VOCAB_PATH)
  bert = BertConfig.preset("tiny", vocab_size=tokenizer.vocab_size, hidden_dropout_prob=0.0,
                           attention_probs_dropout_prob=0.0)
  tf.random.set_seed(7)
  embedder = ProjectedEmbedder(bert, projection_size=PROJECTION, dropout_rate=0.0,
                               layer_norm_epsilon=EPSILON, name="embedder").build_variables()
  # Projection LayerNorm weights away from their (1, 0) initialization.
  embedder.layer_norm.gamma.assign(1.0 + tf.random.normal([PROJECTION], stddev=0.3))
  embedder.layer_norm.beta.assign(tf.random.normal([PROJECTION], stddev=0.3))
  embedder_path = str(root / "ict" / "embedder")
  tf_hub_modules.save_embedder(embedder, tokenizer, embedder_path, QUERY_SEQ_LEN)
  reader = RealmModel(modeling_testing.tiny_realm_config(bert=bert, embedder=bert)).reader
  reader.build_variables()
  reader_path = str(root / "bert")
  tf_hub_modules.save_reader(reader, tokenizer, reader_path)
  return embedder_path, reader_path


def _config(**flag_values):
  values = dict(share_embedders=True, separate_candidate_segments=True,
                do_lower_case=True, keep_checkpoint_max=5, seed=0,
                recompute_activations=False, precision="auto", jit_compile=None,
                micro_batches=1, reader_only_steps=0,
                query_seq_len=QUERY_SEQ_LEN, candidate_seq_len=12, num_candidates=3,
                max_masks=2, num_train_steps=10, bert_preset="tiny", dropout_rate=0.0,
                vocab_path=sample_data.VOCAB_PATH)
  values.update(flag_values)
  return pretrain.config_from_flags(_Flags(**values), sample=False,
                                    vocab_path=sample_data.VOCAB_PATH)


def _initialized_model(config, flag_values):
  """The model `realm_tf.pretrain` builds and initializes (its `main`)."""
  model = RealmModel(config).build_variables()
  bert = flag_values.get("init_hf_bert") or flag_values.get("init_checkpoint")
  embedder_path = pretrain.embedder_weights_from_flags(
      _Flags(**flag_values), architecture.Setting("", bert)).value
  weights.load_pretrained_realm(model, bert_path=bert, embedder_path=embedder_path)
  return model


@pytest.mark.parametrize("share_embedders", [True, False])
def test_towers_start_from_the_initial_embedder_module(modules, share_embedders):
  embedder_path, _ = modules
  flag_values = dict(initial_embedder_module=embedder_path, share_embedders=share_embedders)
  config = _config(**flag_values)
  # The architecture the module records, not the defaults (D 128, epsilon 1e-3).
  assert config.projection_size == PROJECTION
  assert config.embedder_layer_norm_epsilon == pytest.approx(EPSILON)
  model = _initialized_model(config, flag_values)
  assert (model.query_embedder is model.document_embedder) == share_embedders

  loaded = tf.saved_model.load(embedder_path)
  features = modeling_testing.random_features(config, batch_size=3, seed=1)
  query, candidates = features["query_inputs"], features["candidate_inputs"]
  want_query = loaded.signatures["projected"](
      input_ids=query.token_ids, input_mask=query.mask, segment_ids=query.segment_ids
  )["default"].numpy()  # [3, D]
  flat = [tf.reshape(t, [-1, config.candidate_seq_len]) for t in candidates]
  want_candidates = loaded.signatures["projected"](
      input_ids=flat[0], input_mask=flat[1], segment_ids=flat[2])["default"].numpy()
  got_query = model.embed_queries(query, training=False).numpy()
  got_candidates = model.embed_candidates(candidates, training=False).numpy()
  np.testing.assert_allclose(got_query, want_query, atol=1e-6)
  np.testing.assert_allclose(got_candidates.reshape(want_candidates.shape), want_candidates,
                             atol=1e-6)
  # A freshly initialized model of the same config computes something else.
  fresh = RealmModel(config).build_variables()
  assert np.abs(fresh.embed_queries(query, training=False).numpy() - want_query).max() > 0.1


def test_init_embedder_still_decides_the_towers_weights(modules, tmp_path):
  embedder_path, _ = modules
  # Other embedder weights of the same architecture, as a module.
  arch = architecture.read_module_architecture(embedder_path)
  tf.random.set_seed(11)
  second = ProjectedEmbedder(arch.config, projection_size=PROJECTION, dropout_rate=0.0,
                             layer_norm_epsilon=EPSILON, name="embedder").build_variables()
  second_path = str(tmp_path / "second" / "embedder")
  tf_hub_modules.save_embedder(second, Tokenizer(sample_data.VOCAB_PATH), second_path,
                               QUERY_SEQ_LEN)
  flag_values = dict(initial_embedder_module=embedder_path, init_embedder=second_path)
  model = _initialized_model(_config(**flag_values), flag_values)
  for got, want in zip(model.document_embedder.variables, second.variables):
    np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_a_module_without_a_record_only_gives_the_initial_index(modules, tmp_path):
  embedder_path, _ = modules
  bare = str(tmp_path / "bare")  # the same module without its architecture record
  shutil.copytree(embedder_path, bare)
  os.remove(os.path.join(bare, architecture.MODULE_ARCHITECTURE_FILE))
  assert architecture.read_module_architecture(bare) is None
  reader_weights = architecture.Setting("--init_checkpoint", None)
  assert pretrain.embedder_weights_from_flags(
      _Flags(initial_embedder_module=bare), reader_weights) is reader_weights


def test_module_loading_checks_the_recorded_architecture(modules):
  embedder_path, reader_path = modules
  arch = architecture.read_module_architecture(embedder_path)
  other_epsilon = ProjectedEmbedder(arch.config, projection_size=PROJECTION,
                                    layer_norm_epsilon=1e-3)
  with pytest.raises(WeightsMismatchError, match=r"projection LayerNorm epsilon mismatch: "
                     r".*embedder .* have 1e-05, the model has 0.001"):
    weights.load_embedder_module(other_epsilon, embedder_path)
  other_activation = ProjectedEmbedder(
      dataclasses.replace(arch.config, hidden_act="relu"), projection_size=PROJECTION,
      layer_norm_epsilon=EPSILON)
  with pytest.raises(WeightsMismatchError, match=r"hidden_act mismatch"):
    weights.load_embedder_module(other_activation, embedder_path)
  with pytest.raises(WeightsMismatchError, match=r"is not an embedder module"):
    weights.load_embedder_module(
        ProjectedEmbedder(arch.config, projection_size=PROJECTION,
                          layer_norm_epsilon=EPSILON), reader_path)
