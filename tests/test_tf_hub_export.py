"""TF-Hub exports: signatures, fresh-process hub.KerasLayer reload, equal outputs, training."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import tensorflow as tf

from realm_tf import tf_hub_modules as tf_hub
from tests import modeling_testing
from realm_tf.modeling.realm_model import RealmModel
from realm_tf.retrieval import export_dirs
from tests.conftest import REPO_ROOT, TINY_VOCAB


def _model():
  config = modeling_testing.tiny_realm_config(
      bert=modeling_testing.tiny_bert_config(vocab_size=len(TINY_VOCAB)),
      embedder=modeling_testing.tiny_bert_config(vocab_size=len(TINY_VOCAB)))
  return RealmModel(config).build_variables()


def test_export_layout_signatures_and_fresh_process_reload(tiny_tokenizer, tmp_path):
  model = _model()
  model_dir = str(tmp_path / "model")
  export = tf_hub.export_modules(model, tiny_tokenizer, model_dir, global_step=7, now=100)
  assert export == os.path.join(model_dir, "export", "tf_hub", "100")
  assert export_dirs.read_global_step(export) == 7
  assert sorted(os.listdir(os.path.dirname(export))) == ["100"]  # no temp dir left

  ids = np.array([[2, 5, 6, 7, 3, 0], [2, 12, 3, 0, 0, 0]], np.int32)
  mask = (ids > 0).astype(np.int32)
  segments = np.zeros_like(ids)
  positions = np.array([[1, 2], [1, 1]], np.int32)
  expected = {
      "embedder": model.document_embedder((ids, mask, segments), training=False).numpy(),
      "pooled": model.reader((ids, mask, segments), training=False)["pooled_output"].numpy(),
      "mlm": model.reader((ids, mask, segments), mlm_positions=positions,
                          training=False)["mlm_logits"].numpy(),
  }
  text_inputs = tiny_tokenizer.tokenize_ids(["the eiffel tower"])
  expected["text"] = model.document_embedder(
      (np.array([[2, 5, 6, 7, 3] + [0] * 3]), np.array([[1] * 5 + [0] * 3]),
       np.zeros([1, 8], np.int32)), training=False).numpy()
  del text_inputs
  np.savez(str(tmp_path / "inputs.npz"), ids=ids, mask=mask, segments=segments,
           positions=positions)
  script = textwrap.dedent(f"""
      import os, json
      os.environ["TF_USE_LEGACY_KERAS"] = "1"
      import numpy as np, tensorflow as tf, tensorflow_text, tensorflow_hub as hub, tf_keras
      data = np.load({str(tmp_path / 'inputs.npz')!r})
      ids, mask, seg, pos = data["ids"], data["mask"], data["segments"], data["positions"]
      export = {export!r}
      out = {{}}
      embedder = tf.saved_model.load(export + "/embedder")
      out["signatures_embedder"] = sorted(embedder.signatures)
      out["projected"] = embedder.signatures["projected"](
          input_ids=ids, input_mask=mask, segment_ids=seg)["default"].numpy().tolist()
      out["text"] = embedder.signatures["projected_text"](
          text=tf.constant(["the Eiffel tower"]))["default"].numpy().tolist()
      info = embedder.signatures["tokenization_info"]()
      out["vocab_exists"] = os.path.exists(info["vocab_file"].numpy().decode())
      out["lower"] = bool(info["do_lower_case"].numpy())
      bert = tf.saved_model.load(export + "/bert")
      out["signatures_bert"] = sorted(bert.signatures)
      out["mlm"] = bert.signatures["mlm"](input_ids=ids, input_mask=mask, segment_ids=seg,
                                          mlm_positions=pos)["mlm_logits"].numpy().tolist()
      # hub.KerasLayer inside a tf_keras model: same outputs, and it trains.
      layer = hub.KerasLayer(export + "/embedder", trainable=True)
      inputs = {{n: tf_keras.Input([None], dtype=tf.int32, name=n)
                for n in ("input_word_ids", "input_mask", "input_type_ids")}}
      keras_model = tf_keras.Model(inputs, layer(inputs))
      feed = dict(input_word_ids=ids, input_mask=mask, input_type_ids=seg)
      out["keras"] = keras_model(feed, training=False).numpy().tolist()
      out["num_trainable"] = len(keras_model.trainable_variables)
      before = [v.numpy().copy() for v in keras_model.trainable_variables]
      optimizer = tf_keras.optimizers.SGD(0.1)
      with tf.GradientTape() as tape:
        direction = tf.random.stateless_normal([16], [1, 2])
        loss = tf.reduce_sum(keras_model(feed, training=True) * direction)
      grads = tape.gradient(loss, keras_model.trainable_variables)
      optimizer.apply_gradients(zip(grads, keras_model.trainable_variables))
      out["unchanged"] = [v.name for b, v in zip(before, keras_model.trainable_variables)
                          if np.allclose(b, v.numpy())]
      bert_layer = hub.KerasLayer(export + "/bert", trainable=True)
      out["pooled"] = bert_layer(feed)["pooled_output"].numpy().tolist()
      print(json.dumps(out))
  """)
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, cwd=str(tmp_path), check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  out = json.loads(result.stdout.strip().splitlines()[-1])
  assert {"projected", "projected_text", "serving_default", "tokenization_info"} <= set(
      out["signatures_embedder"])
  assert {"tokens", "mlm", "serving_default", "tokenization_info"} <= set(out["signatures_bert"])
  np.testing.assert_allclose(out["projected"], expected["embedder"], atol=1e-5)
  np.testing.assert_allclose(out["keras"], expected["embedder"], atol=1e-5)
  np.testing.assert_allclose(out["text"], expected["text"], atol=1e-5)
  np.testing.assert_allclose(out["mlm"], expected["mlm"], atol=1e-5)
  np.testing.assert_allclose(out["pooled"], expected["pooled"], atol=1e-5)
  assert out["vocab_exists"] and out["lower"]
  # Attention key biases get no gradient: q.b is the same for every key, and the
  # softmax over keys ignores it. Every other variable trains.
  assert out["num_trainable"] > 10
  assert all("self_attention/key/bias" in name for name in out["unchanged"]), out["unchanged"]


def test_unshared_towers_export_the_query_embedder(tiny_tokenizer, tmp_path):
  config = modeling_testing.tiny_realm_config(
      bert=modeling_testing.tiny_bert_config(vocab_size=len(TINY_VOCAB)),
      embedder=modeling_testing.tiny_bert_config(vocab_size=len(TINY_VOCAB)),
      share_embedders=False)
  model = RealmModel(config).build_variables()
  export = tf_hub.export_modules(model, tiny_tokenizer, str(tmp_path), 1, now=5)
  assert sorted(os.listdir(export)) == ["bert", "embedder", "global_step.txt",
                                        "query_embedder"]
  query = tf.saved_model.load(os.path.join(export, "query_embedder"))
  ids = tf.constant([[2, 5, 3]])
  got = query.signatures["projected"](input_ids=ids, input_mask=tf.ones_like(ids),
                                      segment_ids=tf.zeros_like(ids))["default"]
  np.testing.assert_allclose(got, model.query_embedder((ids, tf.ones_like(ids),
                                                        tf.zeros_like(ids))), atol=1e-5)
