"""Checkpoint conversion: shared fixtures (random weights under the original names, an
independent NumPy forward pass) and tests of the strict assignment and the span scorer."""

import realm_tf  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from export import imported
from orqa.data import answer_spans
from orqa.models.span_scorer import SpanScorer
from realm_tf.modeling import weight_assign
from realm_tf.modeling.weight_assign import ConversionError, SourceTensor

# A tiny BERT: 2 layers, hidden 64 in 2 heads of 32 (so the head count matters).
TINY = dict(vocab_size=40, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=96, max_position_embeddings=48, type_vocab_size=2)
PROJ, SPAN = 16, 8  # projection size D, span hidden size S
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(35)]
IDS = np.array([[2, 7, 11, 4, 30, 3, 9, 3, 0, 0], [2, 5, 6, 3, 0, 0, 0, 0, 0, 0]])
MASK = (IDS > 0).astype(np.int64)
SEGMENTS = np.array([[0, 0, 0, 0, 0, 0, 1, 1, 0, 0], [0] * 10])
POSITIONS = np.array([[1, 3], [2, 1]])


def rand(rng, *shape, scale=0.1):
  return (rng.normal(size=shape) * scale).astype(np.float32)


def random_bert(rng, cfg=None, with_head=True, with_nsp=False):
  """Canonical (TF1 BERT, without `bert/`) names -> random arrays; MLM head as cls/..."""
  cfg = cfg or TINY
  h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
  w = {"embeddings/word_embeddings": rand(rng, v, h, scale=0.5),
       "embeddings/position_embeddings": rand(rng, cfg["max_position_embeddings"], h),
       "embeddings/token_type_embeddings": rand(rng, cfg["type_vocab_size"], h),
       "embeddings/LayerNorm/gamma": 1 + rand(rng, h), "embeddings/LayerNorm/beta": rand(rng, h),
       "pooler/dense/kernel": rand(rng, h, h), "pooler/dense/bias": rand(rng, h)}
  for l in range(cfg["num_hidden_layers"]):
    p = f"encoder/layer_{l}/"
    for n in ("query", "key", "value"):
      w[p + f"attention/self/{n}/kernel"] = rand(rng, h, h)
      w[p + f"attention/self/{n}/bias"] = rand(rng, h)
    for name, shape in (("attention/output/dense", (h, h)), ("intermediate/dense", (h, i)),
                        ("output/dense", (i, h))):
      w[p + name + "/kernel"], w[p + name + "/bias"] = rand(rng, *shape), rand(rng, shape[1])
    for name in ("attention/output/LayerNorm", "output/LayerNorm"):
      w[p + name + "/gamma"], w[p + name + "/beta"] = 1 + rand(rng, h), rand(rng, h)
  if with_head:
    w.update({"cls/predictions/transform/dense/kernel": rand(rng, h, h),
              "cls/predictions/transform/dense/bias": rand(rng, h),
              "cls/predictions/transform/LayerNorm/gamma": 1 + rand(rng, h),
              "cls/predictions/transform/LayerNorm/beta": rand(rng, h),
              "cls/predictions/output_bias": rand(rng, v)})
  if with_nsp:
    w.update({"cls/seq_relationship/output_weights": rand(rng, 2, h),
              "cls/seq_relationship/output_bias": rand(rng, 2)})
  return w


def random_projection(rng, h=64, d=PROJ):
  return {"kernel": rand(rng, h, d), "bias": rand(rng, d), "gamma": 1 + rand(rng, d),
          "beta": rand(rng, d)}


def random_span(rng, h=64, s=SPAN):
  return {"span_projection/kernel": rand(rng, h, 2 * s), "span_projection/bias": rand(rng, 2 * s),
          "span_layer_norm/gamma": 1 + rand(rng, s), "span_layer_norm/beta": rand(rng, s),
          "span_logits/kernel": rand(rng, s, 1), "span_logits/bias": rand(rng, 1)}


def gelu(x, approximate):
  if approximate:
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
  from scipy import special  # pylint: disable=g-import-not-at-top
  return 0.5 * x * (1 + special.erf(x / np.sqrt(2)))


def layer_norm(x, gamma, beta, eps):
  mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + eps) * gamma + beta


def np_bert(w, ids, mask, segments, heads=2, approximate=True):
  """BERT forward in float64 NumPy on canonical weights: (sequence [B, L, H], pooled [B, H])."""
  g = lambda n: np.float64(w[n])
  dense = lambda x, n: x @ g(n + "/kernel") + g(n + "/bias")
  ln = lambda x, n: layer_norm(x, g(n + "/gamma"), g(n + "/beta"), 1e-12)
  b, length = ids.shape
  x = (g("embeddings/word_embeddings")[ids] + g("embeddings/position_embeddings")[:length] +
       g("embeddings/token_type_embeddings")[segments])
  x = ln(x, "embeddings/LayerNorm")
  d = x.shape[-1] // heads
  layers = len({k.split("/")[1] for k in w if k.startswith("encoder/")})
  for l in range(layers):
    p = f"encoder/layer_{l}/"
    q, k, v = (dense(x, p + f"attention/self/{n}").reshape(b, length, heads, d)
               for n in ("query", "key", "value"))
    scores = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(d)
    scores += (1.0 - mask[:, None, None, :]) * -10000.0
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    ctx = np.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, length, -1)
    x = ln(x + dense(ctx, p + "attention/output/dense"), p + "attention/output/LayerNorm")
    inner = gelu(dense(x, p + "intermediate/dense"), approximate)
    x = ln(x + dense(inner, p + "output/dense"), p + "output/LayerNorm")
  pooled = np.tanh(dense(x[:, 0], "pooler/dense"))
  return x, pooled


def np_mlm(w, sequence, positions, approximate=True):
  """MLM logits [B, M, V] at `positions` [B, M]."""
  g = lambda n: np.float64(w[n])
  x = np.take_along_axis(sequence, positions[..., None], axis=1)
  x = gelu(x @ g("cls/predictions/transform/dense/kernel") +
           g("cls/predictions/transform/dense/bias"), approximate)
  x = layer_norm(x, g("cls/predictions/transform/LayerNorm/gamma"),
                 g("cls/predictions/transform/LayerNorm/beta"), 1e-12)
  return x @ g("embeddings/word_embeddings").T + g("cls/predictions/output_bias")


def np_projection(proj, pooled, eps):
  x = pooled @ np.float64(proj["kernel"]) + proj["bias"]
  return layer_norm(x, proj["gamma"], proj["beta"], eps)


def np_span(span, sequence, starts, ends, eps=1e-3):
  g = lambda n: np.float64(span[n])
  proj = sequence @ g("span_projection/kernel") + g("span_projection/bias")
  s = proj.shape[-1] // 2
  hidden = np.maximum(proj[:, starts, :s] + proj[:, ends, s:], 0)
  hidden = layer_norm(hidden, g("span_layer_norm/gamma"), g("span_layer_norm/beta"), eps)
  return (hidden @ g("span_logits/kernel"))[..., 0] + g("span_logits/bias")[0]


def write_tf1_checkpoint(prefix, variables):
  """Saves `variables` (name -> array) as a TF1 checkpoint with `tf.compat.v1`: graph
  variables under exactly these names, a `Saver`, and its `checkpoint` state file."""
  os.makedirs(os.path.dirname(prefix), exist_ok=True)
  with tf.Graph().as_default():
    created = [tf.compat.v1.get_variable(name, initializer=tf.constant(value))
               for name, value in variables.items()]
    saver = tf.compat.v1.train.Saver(created)
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.global_variables_initializer())
      saver.save(session, prefix, write_meta_graph=False)
  return prefix


def write_vocab(path):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write("\n".join(VOCAB) + "\n")
  return path


def keras_inputs():
  return dict(input_word_ids=tf.constant(IDS, tf.int32), input_mask=tf.constant(MASK, tf.int32),
              input_type_ids=tf.constant(SEGMENTS, tf.int32))


def span_candidates(max_width=3):
  starts, ends, _ = answer_spans.span_candidates(tf.ones([1, IDS.shape[1]], tf.int32), max_width)
  return starts.numpy(), ends.numpy()


# --- tests of the shared machinery ---


def _targets():
  dense = tf_keras.layers.Dense(3, name="d")
  dense.build([None, 4])
  return {"d/kernel": dense.kernel, "d/bias": dense.bias}


def test_strict_assignment_names_missing_extra_and_mis_shaped():
  targets = _targets()
  ok = {"d/kernel": SourceTensor("in/kernel", np.ones([4, 3], np.float32)),
        "d/bias": SourceTensor("in/bias", np.ones([3], np.float32))}
  assert weight_assign.assign_strict(targets, ok, "x") == {"d/bias": "in/bias",
                                                           "d/kernel": "in/kernel"}
  with pytest.raises(ConversionError, match=r"missing: d/bias .*shape \(3,\)"):
    weight_assign.assign_strict(targets, {"d/kernel": ok["d/kernel"]}, "x")
  extra = dict(ok, e=SourceTensor("in/extra", np.ones([5, 2], np.float32)))
  with pytest.raises(ConversionError, match=r"extra: in/extra \(shape \(5, 2\)"):
    weight_assign.assign_strict(targets, extra, "x")
  # A torch Linear weight is reported in its own [out, in] layout.
  bad = dict(ok, **{"d/kernel": SourceTensor("lin.weight", np.ones([4, 5], np.float32),
                                             transposed=True)})
  with pytest.raises(ConversionError, match=r"lin.weight has shape \(5, 4\) in the input, "
                     r"the model variable d/kernel expects \(3, 4\)"):
    weight_assign.assign_strict(targets, bad, "x")


def test_split_optional_is_all_or_nothing():
  src = lambda: SourceTensor("a", np.zeros([1]))
  rest, group = weight_assign.split_optional({"x": src()}, ["h1", "h2"], "head", "where")
  assert group is None and set(rest) == {"x"}
  with pytest.raises(ConversionError, match=r"head is incomplete; missing \['h2'\]"):
    weight_assign.split_optional({"h1": src()}, ["h1", "h2"], "head", "where")


def test_span_scorer_matches_numpy_and_round_trips_config():
  rng = np.random.default_rng(3)
  arrays = random_span(rng)
  scorer = SpanScorer(span_hidden_size=SPAN, name="span_scorer")
  scorer.set_numpy_weights(arrays)
  sequence = rand(rng, 2, IDS.shape[1], 64, scale=1.0)
  starts, ends = span_candidates()
  got = scorer(tf.constant(sequence), starts, ends).numpy()
  np.testing.assert_allclose(got, np_span(arrays, sequence, starts, ends), atol=1e-5)
  clone = SpanScorer.from_config(scorer.get_config())
  assert (clone.span_hidden_size, clone.layer_norm_epsilon) == (SPAN, 1e-3)
  with pytest.raises(ValueError, match=r"span_logits/kernel: shape \(9, 1\)"):
    SpanScorer(SPAN).set_numpy_weights(dict(arrays, **{"span_logits/kernel":
                                                       np.zeros([9, 1], np.float32)}))


def test_casing_is_inferred_from_path_or_vocabulary(tmp_path):
  assert imported.infer_do_lower_case(None, "/m/uncased_L-2_H-128_A-2")[0] is True
  assert imported.infer_do_lower_case(None, "/m/cased_L-12_H-768_A-12")[0] is False
  assert imported.infer_do_lower_case(None, "/showcased/bert-base-cased")[0] is False
  assert imported.infer_do_lower_case(None, "/showcased/model")[0] is None
  lower = tmp_path / "lower.txt"
  lower.write_text("\n".join(VOCAB))
  assert imported.infer_do_lower_case(str(lower), "/m/x")[0] is True
  upper = tmp_path / "upper.txt"
  upper.write_text("\n".join(VOCAB + [f"Word{i}" for i in range(50)]))
  assert imported.infer_do_lower_case(str(upper), "/m/x")[0] is False
