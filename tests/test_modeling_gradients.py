"""Gradients of the REALM loss reach both retriever towers and the reader."""

import realm_tf  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.modeling import optimizer as optimizer_lib
from realm_tf.modeling.realm_model import RealmModel
from realm_tf.modeling import realm_steps
from tests import modeling_testing


def _grads(model, features, training=True):
  with tf.GradientTape() as tape:
    loss = model(features, training=training)["loss"]
  variables = model.trainable_variables
  return dict(zip([v.name for v in variables], tape.gradient(loss, variables))), variables


def _nonzero(g):
  return g is not None and float(tf.norm(tf.convert_to_tensor(g))) > 0.0


def _is_reader_pooler(name):
  # The MLM loss does not use the reader's pooled output.
  return name.startswith("bert/") and "pooler_transform" in name


def test_gradients_reach_every_used_variable_of_both_towers_and_reader():
  config = modeling_testing.tiny_realm_config(share_embedders=False)
  model = RealmModel(config)
  features = modeling_testing.random_features(config, 3, seed=0)
  grads, variables = _grads(model, features)
  towers = {"query_embedder": model.query_embedder, "embedder": model.document_embedder,
            "bert": model.reader}
  for tower_name, tower in towers.items():
    names = [v.name for v in tower.trainable_variables]
    assert names, tower_name
    missing = [n for n in names if not _is_reader_pooler(n) and not _nonzero(grads[n])]
    assert not missing, f"{tower_name}: no gradient for {missing}"
  assert len(grads) == len(variables)
  # The reader's output weights are tied to its word embeddings: one variable.
  assert model.reader.masked_lm.embedding_table is model.reader.encoder.get_embedding_table()


def test_shared_towers_get_gradients_from_queries_and_documents():
  config = modeling_testing.tiny_realm_config()
  model = RealmModel(config)
  assert model.query_embedder is model.document_embedder
  features = modeling_testing.random_features(config, 3, seed=1)
  both, _ = _grads(model, features, training=False)
  model.train_document_tower = False
  query_only, _ = _grads(model, features, training=False)
  name = model.query_embedder.projection.kernel.name
  assert _nonzero(both[name]) and _nonzero(query_only[name])
  # The document path adds to the shared weights' gradient.
  assert not np.allclose(both[name].numpy(), query_only[name].numpy(), atol=1e-7)


def test_frozen_document_tower_gets_no_gradient_and_no_update():
  config = modeling_testing.tiny_realm_config(share_embedders=False)
  model = RealmModel(config, train_document_tower=False)
  features = modeling_testing.random_features(config, 3, seed=2)
  with tf.GradientTape() as tape:
    loss = model(features, training=True)["loss"]
  doc_vars = model.document_embedder.trainable_variables
  assert all(g is None for g in tape.gradient(loss, doc_vars))

  # The Keras way: document tower not trainable, so the train step leaves it unchanged.
  model = RealmModel(config).build_variables()
  model.document_embedder.trainable = False
  doc_ids = {id(v) for v in model.document_embedder.weights}
  assert not any(id(v) in doc_ids for v in model.trainable_variables)
  before_doc = [v.numpy() for v in model.document_embedder.weights]
  before_query = [v.numpy() for v in model.query_embedder.weights]
  step = realm_steps.make_train_step(
      model, optimizer_lib.BertAdamWeightDecay(learning_rate=1e-3))
  step(features)
  for a, v in zip(before_doc, model.document_embedder.weights):
    np.testing.assert_array_equal(a, v.numpy())
  assert any(not np.array_equal(a, v.numpy())
             for a, v in zip(before_query, model.query_embedder.weights))



def _moved_by(step, features, model, num_steps=1):
  """Which parts (query / document tower, reader) `num_steps` train steps changed."""
  parts = dict(query=model.query_embedder, document=model.document_embedder,
               reader=model.reader)
  before = {name: [v.numpy() for v in part.weights] for name, part in parts.items()}
  for _ in range(num_steps):
    step(features)
  return {name: any(not np.array_equal(a, v.numpy())
                    for a, v in zip(before[name], part.weights))
          for name, part in parts.items()}


def test_reader_only_steps_hold_both_towers_then_train_them():
  config = modeling_testing.tiny_realm_config(share_embedders=False, reader_only_steps=2)
  model = RealmModel(config).build_variables()
  features = modeling_testing.random_features(config, 3, seed=4)
  # Without weight decay the held towers must not move at all.
  step = realm_steps.make_train_step(
      model, optimizer_lib.BertAdamWeightDecay(learning_rate=1e-3, weight_decay_rate=0.0))
  for _ in range(2):  # steps 0 and 1
    assert _moved_by(step, features, model) == dict(query=False, document=False, reader=True)
  assert _moved_by(step, features, model) == dict(query=True, document=True,
                                                  reader=True)  # step 2


def test_reader_only_steps_must_not_be_negative():
  with pytest.raises(ValueError, match="reader_only_steps"):
    modeling_testing.tiny_realm_config(reader_only_steps=-1)


@pytest.mark.parametrize("frozen", ["freeze_reader", "freeze_document_tower"])
def test_frozen_parts_get_no_update_while_the_rest_trains(frozen):
  config = modeling_testing.tiny_realm_config(share_embedders=False, **{frozen: True})
  model = RealmModel(config).build_variables()
  features = modeling_testing.random_features(config, 3, seed=5)
  step = realm_steps.make_train_step(
      model, optimizer_lib.BertAdamWeightDecay(learning_rate=1e-3))
  still = "reader" if frozen == "freeze_reader" else "document"
  assert _moved_by(step, features, model, num_steps=2) == {
      name: name != still for name in ("query", "document", "reader")}


def test_freeze_settings_that_contradict_are_refused():
  with pytest.raises(ValueError, match="freeze_reader"):
    modeling_testing.tiny_realm_config(freeze_reader=True, reader_only_steps=3)
  with pytest.raises(ValueError, match="share_embedders=False"):
    modeling_testing.tiny_realm_config(freeze_document_tower=True)
