"""Loading pre-trained BERT weights: Hugging Face folders, TF1 and TF2 checkpoints."""

import realm_tf  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from scipy import special

from realm_tf.modeling import encoders, hf_bert, weights
from realm_tf.modeling.config import BertConfig
from realm_tf.modeling.mlm_head import MaskedLMHead
from realm_tf.modeling.reader import KnowledgeAugmentedEncoder
from official.nlp.modeling import layers as tfm_layers
from tests.conftest import shared_path

TINY = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=20, hidden_act="gelu",
            type_vocab_size=2, layer_norm_eps=1e-12, model_type="bert")


def _random_hf_state(rng, cfg, prefix="bert.", with_head=True):
  h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
  r = lambda *s: (rng.normal(size=s) * 0.2).astype(np.float32)
  s = {"embeddings.word_embeddings.weight": r(v, h),
       "embeddings.position_embeddings.weight": r(cfg["max_position_embeddings"], h),
       "embeddings.token_type_embeddings.weight": r(2, h),
       "embeddings.LayerNorm.weight": 1 + r(h), "embeddings.LayerNorm.bias": r(h),
       "embeddings.position_ids": np.arange(cfg["max_position_embeddings"])[None],
       "pooler.dense.weight": r(h, h), "pooler.dense.bias": r(h)}
  for l in range(cfg["num_hidden_layers"]):
    p = f"encoder.layer.{l}."
    for n in ("query", "key", "value"):
      s[p + f"attention.self.{n}.weight"], s[p + f"attention.self.{n}.bias"] = r(h, h), r(h)
    s[p + "attention.output.dense.weight"], s[p + "attention.output.dense.bias"] = r(h, h), r(h)
    s[p + "attention.output.LayerNorm.weight"] = 1 + r(h)
    s[p + "attention.output.LayerNorm.bias"] = r(h)
    s[p + "intermediate.dense.weight"], s[p + "intermediate.dense.bias"] = r(i, h), r(i)
    s[p + "output.dense.weight"], s[p + "output.dense.bias"] = r(h, i), r(h)
    s[p + "output.LayerNorm.weight"], s[p + "output.LayerNorm.bias"] = 1 + r(h), r(h)
  s = {prefix + k: val for k, val in s.items()}
  if with_head:
    s.update({"cls.predictions.transform.dense.weight": r(h, h),
              "cls.predictions.transform.dense.bias": r(h),
              "cls.predictions.transform.LayerNorm.weight": 1 + r(h),
              "cls.predictions.transform.LayerNorm.bias": r(h),
              "cls.predictions.bias": r(v),
              "cls.predictions.decoder.weight": s[prefix + "embeddings.word_embeddings.weight"]})
  return s


def _write_hf_folder(path, cfg, state):
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(cfg, f)
  save_file(state, os.path.join(path, "model.safetensors"))
  with open(os.path.join(path, "vocab.txt"), "w") as f:
    f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] +
                      [f"w{k}" for k in range(cfg["vocab_size"] - 5)]) + "\n")
  return str(path)


def _np_bert(state, cfg, ids, mask, positions, prefix="bert."):
  """An independent NumPy BERT forward pass + MLM head on HF-named weights (one example)."""
  g = lambda n: np.float64(state[prefix + n])
  gelu = lambda x: 0.5 * x * (1 + special.erf(x / np.sqrt(2)))

  def ln(x, name, st=None):
    w = (lambda n: np.float64(st[n])) if st is not None else g
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-12) * w(name + ".weight") + w(name + ".bias")

  lin = lambda x, name, w=g: x @ w(name + ".weight").T + w(name + ".bias")
  n_len, heads = len(ids), cfg["num_attention_heads"]
  d = cfg["hidden_size"] // heads
  x = (g("embeddings.word_embeddings.weight")[ids] +
       g("embeddings.position_embeddings.weight")[:n_len] +
       g("embeddings.token_type_embeddings.weight")[np.zeros(n_len, int)])
  x = ln(x, "embeddings.LayerNorm")
  for l in range(cfg["num_hidden_layers"]):
    p = f"encoder.layer.{l}."
    q, k, v = (lin(x, p + f"attention.self.{n}").reshape(n_len, heads, d)
               for n in ("query", "key", "value"))
    scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(d) + (1 - mask)[None, None] * -1e9
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    ctx = np.einsum("hqk,khd->qhd", probs, v).reshape(n_len, -1)
    x = ln(x + lin(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
    inter = gelu(lin(x, p + "intermediate.dense"))
    x = ln(x + lin(inter, p + "output.dense"), p + "output.LayerNorm")
  w = lambda n: np.float64(state[n])
  hm = gelu(lin(x[positions], "cls.predictions.transform.dense", w))
  hm = ln(hm, "cls.predictions.transform.LayerNorm", state)
  logits = hm @ g("embeddings.word_embeddings.weight").T + w("cls.predictions.bias")
  return x, logits


def _inputs(ids, mask):
  ids = tf.constant([ids], tf.int32)
  return dict(input_word_ids=ids, input_mask=tf.constant([mask], tf.int32),
              input_type_ids=tf.zeros_like(ids))


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
  state = _random_hf_state(np.random.default_rng(0), TINY)
  return _write_hf_folder(tmp_path_factory.mktemp("hf_bert"), TINY, state), state


def test_hf_folder_matches_numpy_bert(hf_folder):
  folder, state = hf_folder
  config = hf_bert.read_hf_config(folder)
  assert config.num_hidden_layers == 2 and config.vocab_size == 50
  reader = KnowledgeAugmentedEncoder(config)
  report = weights.load_bert_weights(reader.encoder, config, folder,
                                     mlm_head=reader.masked_lm)
  assert report.format == "huggingface" and report.loaded_encoder and report.loaded_mlm_head
  ids, mask, positions = [2, 7, 11, 4, 30, 3, 0, 0], [1, 1, 1, 1, 1, 1, 0, 0], [1, 3]
  out = reader(_inputs(ids, mask), mlm_positions=tf.constant([positions]))
  seq, logits = _np_bert(state, TINY, np.array(ids), np.array(mask), positions)
  np.testing.assert_allclose(out["sequence_output"][0, :6].numpy(), seq[:6], atol=1e-4)
  np.testing.assert_allclose(out["mlm_logits"][0].numpy(), logits, atol=1e-4)


def test_checkpoints_tf1_and_tf2_load_like_hf(hf_folder, tmp_path):
  folder, _ = hf_folder
  config = hf_bert.read_hf_config(folder)
  reference = KnowledgeAugmentedEncoder(config)
  weights.load_hf_bert(reference.encoder, config, folder, mlm_head=reference.masked_lm)
  inputs, positions = _inputs([2, 9, 4, 3], [1, 1, 1, 1]), tf.constant([[1, 2]])
  expected = reference(inputs, mlm_positions=positions)["mlm_logits"].numpy()

  # Original TF1 BERT checkpoint names (bert/..., cls/predictions/...).
  canonical = hf_bert.hf_to_canonical(hf_bert.read_hf_state(folder))
  names = [n if n.startswith("cls/") else "bert/" + n for n in canonical]
  tf1_prefix = str(tmp_path / "tf1" / "bert_model.ckpt")
  tf.raw_ops.SaveV2(prefix=tf1_prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                    tensors=[tf.constant(v) for v in canonical.values()])
  tf1_reader = KnowledgeAugmentedEncoder(config)
  report = weights.load_bert_weights(tf1_reader.encoder, config, tf1_prefix,
                                     mlm_head=tf1_reader.masked_lm)
  assert report.format == "tf1_bert" and report.loaded_mlm_head
  np.testing.assert_allclose(tf1_reader(inputs, mlm_positions=positions)["mlm_logits"],
                             expected, atol=1e-5)

  # tf-models-official TF2 checkpoint: Checkpoint(encoder=BertEncoderV2, masked_lm=MaskedLM).
  encoder = encoders.build_bert_encoder(config)
  encoder(inputs)
  masked_lm = tfm_layers.MaskedLM(embedding_table=encoder.get_embedding_table(),
                                  activation="gelu")
  masked_lm(encoder(inputs)["sequence_output"], positions)
  for dst, src in zip(encoder.weights, reference.encoder.weights):
    dst.assign(src)
  for name in ("dense", "layer_norm"):
    for dst, src in zip(getattr(masked_lm, name).weights,
                        getattr(reference.masked_lm, name).weights):
      dst.assign(src)
  masked_lm.bias.assign(reference.masked_lm.bias)
  tf2_dir = str(tmp_path / "tf2")
  tf.train.Checkpoint(encoder=encoder, masked_lm=masked_lm).save(os.path.join(tf2_dir, "ckpt"))
  tf2_reader = KnowledgeAugmentedEncoder(config)
  report = weights.load_bert_weights(tf2_reader.encoder, config, tf2_dir,
                                     mlm_head=tf2_reader.masked_lm)
  assert report.format == "tf2_checkpoint" and report.loaded_mlm_head
  np.testing.assert_allclose(tf2_reader(inputs, mlm_positions=positions)["mlm_logits"],
                             expected, atol=1e-5)
  # The encoder alone (e.g. an embedder tower) loads from the same checkpoint.
  alone = encoders.build_bert_encoder(config)
  weights.load_bert_weights(alone, config, tf2_dir)
  np.testing.assert_allclose(alone(inputs)["sequence_output"],
                             reference.encoder(inputs)["sequence_output"], atol=1e-5)
  # A TF2 checkpoint of a different depth is refused.
  small = BertConfig.from_dict(dict(config.to_dict(), num_hidden_layers=1))
  with pytest.raises(weights.WeightsMismatchError, match=r"num_hidden_layers.*have 2.*has 1"):
    weights.load_bert_weights(encoders.build_bert_encoder(small), small, tf2_dir)


@pytest.mark.parametrize("field,value,pattern", [
    ("vocab_size", 60, r"vocab_size mismatch: .* have 50, the model config has 60"),
    ("hidden_size", 32, r"hidden_size mismatch: .* have 16, the model config has 32"),
    ("num_hidden_layers", 3, r"num_hidden_layers mismatch: .* have 2, .* has 3"),
])
def test_mismatch_errors_name_both_values(hf_folder, field, value, pattern):
  folder, _ = hf_folder
  config = BertConfig.from_dict(dict(hf_bert.read_hf_config(folder).to_dict(),
                                     **{field: value}))
  with pytest.raises(weights.WeightsMismatchError, match=pattern):
    weights.load_bert_weights(encoders.build_bert_encoder(config), config, folder)


def test_minilm_matches_reference_outputs():
  folder = shared_path("models", "all-MiniLM-L6-v2")
  config = hf_bert.read_hf_config(folder)
  assert (config.num_hidden_layers, config.hidden_size, config.hidden_act) == (6, 384, "gelu")
  encoder = encoders.build_bert_encoder(config)
  encoder(_inputs([101, 102], [1, 1]))
  head = MaskedLMHead(embedding_table=encoder.get_embedding_table())
  report = weights.load_bert_weights(encoder, config, folder, mlm_head=head)
  # The folder is a plain BertModel: the MLM head keeps its initialization.
  assert report.loaded_encoder and not report.loaded_mlm_head and report.notes
  with open(os.path.join(folder, "reference_outputs.json")) as f:
    records = json.load(f)["records"]
  assert records
  for record in records:
    ids = record["input_ids"]
    out = encoder(_inputs(ids, [1] * len(ids)), training=False)
    seq = out["sequence_output"][0].numpy()
    sentence = seq.mean(0) / np.linalg.norm(seq.mean(0))
    np.testing.assert_allclose(sentence, record["sentence_embedding"], atol=1e-4)
    np.testing.assert_allclose(seq[0], record["first_token_hidden"], atol=1e-4)
    np.testing.assert_allclose(seq[-1], record["last_token_hidden"], atol=1e-4)
