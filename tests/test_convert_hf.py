"""`python -m export.convert --from=hf_bert|hf_realm`: safetensors folders with the exact
parameter names of Hugging Face's BERT and REALM classes convert completely and compute
what a NumPy forward pass on the HF tensors computes; MiniLM matches its reference."""

import realm_tf  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from safetensors.numpy import save_file

from export import convert
from export import converted
from realm_tf import errors
from realm_tf.errors import UnsupportedFormatError
from realm_tf.modeling.weight_assign import ConversionError
from realm_tf.retrieval import block_emb_file
from tests.conftest import REPO_ROOT, shared_path
from tests.test_convert_common import (IDS, MASK, POSITIONS, PROJ, SEGMENTS, SPAN, TINY,
                                       keras_inputs, np_bert, np_mlm, np_projection,
                                       np_span, random_bert, random_projection, random_span,
                                       span_candidates, write_vocab)

ATOL = 1e-5
REALM_CONFIG = dict(TINY, model_type="realm", hidden_act="gelu_new", layer_norm_eps=1e-12,
                    retriever_proj_size=PROJ, span_hidden_size=SPAN,
                    reader_layer_norm_eps=1e-3, num_candidates=8, max_span_width=10,
                    reader_beam_size=5, reader_seq_len=32, num_block_records=6,
                    searcher_beam_size=5, initializer_range=0.02, pad_token_id=1)


def hf_names(canon, prefix):
  """Canonical BERT tensors -> HF parameter names under `prefix` (torch layout)."""
  state = {}
  for name, value in canon.items():
    if name.startswith("cls/"):
      continue
    parts = name.split("/")
    if parts[0] == "encoder":
      parts = ["encoder", "layer", parts[1][len("layer_"):]] + parts[2:]
    if parts[-1] == "kernel":
      parts[-1], value = "weight", value.T
    elif parts[-1] == "gamma":
      parts[-1] = "weight"
    elif parts[-1] == "beta":
      parts[-1] = "bias"
    elif parts[-2] == "embeddings":
      parts.append("weight")
    state[prefix + ".".join(parts)] = np.ascontiguousarray(value)
  state[prefix + "embeddings.position_ids"] = np.arange(
      TINY["max_position_embeddings"], dtype=np.int64)[None]
  return state


def hf_mlm_head(canon, prefix, decoder=None):
  c = lambda n: canon["cls/predictions/" + n]
  return {prefix + "cls.predictions.transform.dense.weight": np.ascontiguousarray(
              c("transform/dense/kernel").T),
          prefix + "cls.predictions.transform.dense.bias": c("transform/dense/bias"),
          prefix + "cls.predictions.transform.LayerNorm.weight": c("transform/LayerNorm/gamma"),
          prefix + "cls.predictions.transform.LayerNorm.bias": c("transform/LayerNorm/beta"),
          prefix + "cls.predictions.bias": c("output_bias"),
          prefix + "cls.predictions.decoder.weight": (
              canon["embeddings/word_embeddings"] if decoder is None else decoder)}


def hf_embedder(canon, proj, prefix, rng):
  state = hf_names(canon, prefix + "realm.")
  state.update({prefix + "cls.dense.weight": np.ascontiguousarray(proj["kernel"].T),
                prefix + "cls.dense.bias": proj["bias"],
                prefix + "cls.LayerNorm.weight": proj["gamma"],
                prefix + "cls.LayerNorm.bias": proj["beta"]})
  # RealmScorerProjection.predictions: saved, never used.
  state.update(hf_mlm_head(random_bert(rng), prefix))
  return state


def hf_reader(canon, span, prefix, rng):
  state = hf_names(canon, prefix + "realm.")
  # RealmReader does not tie its decoder: it holds whatever HF initialized.
  state.update(hf_mlm_head(canon, prefix, decoder=rng.normal(size=[40, 64]).astype(np.float32)))
  q = prefix + "qa_outputs."
  state.update({q + "dense_intermediate.weight": np.ascontiguousarray(
                    span["span_projection/kernel"].T),
                q + "dense_intermediate.bias": span["span_projection/bias"],
                q + "layer_normalization.weight": span["span_layer_norm/gamma"],
                q + "layer_normalization.bias": span["span_layer_norm/beta"],
                q + "dense_output.weight": np.ascontiguousarray(span["span_logits/kernel"].T),
                q + "dense_output.bias": span["span_logits/bias"]})
  return state


def write_hf_folder(path, config, state, shards=1):
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(config, f)
  with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
    json.dump({"do_lower_case": True}, f)
  write_vocab(os.path.join(path, "vocab.txt"))
  if shards == 1:
    save_file(state, os.path.join(path, "model.safetensors"))
    return str(path)
  names = sorted(state)
  weight_map = {}
  for i in range(shards):
    shard = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
    part = {n: state[n] for n in names[i::shards]}
    save_file(part, os.path.join(path, shard))
    weight_map.update({n: shard for n in part})
  with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
    json.dump({"metadata": {}, "weight_map": weight_map}, f)
  return str(path)


def _accounted(manifest):
  names = set(manifest["ignored"])
  for entry in manifest["components"].values():
    names.update(entry.get("variables", {}).values())
    names.update(entry.get("span_scorer", {}).get("variables", {}).values())
  if "block_emb" in manifest["components"]:
    names.add("block_emb")
  return names


def _expected_embedding(canon, proj):
  _, pooled = np_bert(canon, IDS, MASK, SEGMENTS)  # gelu_new: the tanh approximation
  return np_projection(proj, pooled, 1e-12)  # RealmScorerProjection: layer_norm_eps


def _check_reader(models, canon, span=None):
  out = models.reader(keras_inputs(), mlm_positions=tf.constant(POSITIONS), training=False)
  seq, pooled = np_bert(canon, IDS, MASK, SEGMENTS)
  np.testing.assert_allclose(out["sequence_output"].numpy(), seq, atol=ATOL)
  np.testing.assert_allclose(out["pooled_output"].numpy(), pooled, atol=ATOL)
  np.testing.assert_allclose(out["mlm_logits"].numpy(), np_mlm(canon, seq, POSITIONS),
                             atol=ATOL)
  if span is not None:
    starts, ends = span_candidates()
    got = models.span_scorer(out["sequence_output"], starts, ends).numpy()
    np.testing.assert_allclose(got, np_span(span, seq, starts, ends), atol=ATOL)


@pytest.mark.parametrize("realm_class", ["RealmEmbedder", "RealmScorer",
                                         "RealmKnowledgeAugEncoder", "RealmReader",
                                         "RealmForOpenQA"])
def test_hf_realm_classes_convert_completely(tmp_path, realm_class):
  rng = np.random.default_rng(len(realm_class))
  emb, proj, reader, span = (random_bert(rng, with_head=False), random_projection(rng),
                             random_bert(rng), random_span(rng))
  block_emb = rng.normal(size=[6, PROJ]).astype(np.float32)
  if realm_class == "RealmEmbedder":
    state = hf_embedder(emb, proj, "", rng)
  elif realm_class == "RealmScorer":
    state = hf_embedder(emb, proj, "embedder.", rng)
    # The shared query tower, when a checkpoint lists it under its second name.
    state.update({"query_" + k: v for k, v in state.items()})
  elif realm_class == "RealmKnowledgeAugEncoder":
    state = hf_names(reader, "realm.")
    state.update(hf_mlm_head(reader, ""))
  elif realm_class == "RealmReader":
    state = hf_reader(reader, span, "", rng)
  else:
    state = hf_embedder(emb, proj, "embedder.", rng)
    state.update(hf_reader(reader, span, "reader.", rng))
    state["block_emb"] = block_emb
  folder = write_hf_folder(str(tmp_path / "hf"), dict(REALM_CONFIG, architectures=[realm_class]),
                           state, shards=2 if realm_class == "RealmForOpenQA" else 1)
  out = str(tmp_path / "out")
  manifest = convert.convert("hf_realm", folder, out)
  assert _accounted(manifest) == set(state)
  assert manifest["notes"][0] == f"Hugging Face class: {realm_class}."
  assert manifest["vocab"]["do_lower_case_source"] == "tokenizer_config.json"
  models = converted.load_converted(out)
  has_embedder = realm_class in ("RealmEmbedder", "RealmScorer", "RealmForOpenQA")
  has_reader = realm_class in ("RealmKnowledgeAugEncoder", "RealmReader", "RealmForOpenQA")
  assert (models.embedder is not None, models.reader is not None) == (has_embedder, has_reader)
  assert models.query_embedder is None and models.config.share_embedders
  assert models.config.bert.hidden_act == "gelu_approximate"
  if has_embedder:
    assert models.config.embedder_layer_norm_epsilon == 1e-12
    np.testing.assert_allclose(models.embedder(keras_inputs(), training=False).numpy(),
                               _expected_embedding(emb, proj), atol=ATOL)
  if has_reader:
    _check_reader(models, reader, span if realm_class != "RealmKnowledgeAugEncoder" else None)
  if realm_class == "RealmForOpenQA":
    np.testing.assert_array_equal(
        block_emb_file.read_block_emb(converted.block_emb_prefix(out)), block_emb)
    assert manifest["components"]["block_emb"]["shape"] == [6, PROJ]


def test_hf_realm_errors_name_tensors_and_shapes(tmp_path):
  rng = np.random.default_rng(7)
  state = hf_reader(random_bert(rng), random_span(rng), "", rng)
  state["qa_outputs.dense_output.weight"] = np.zeros([1, SPAN + 1], np.float32)
  folder = write_hf_folder(str(tmp_path / "a"), REALM_CONFIG, state)
  with pytest.raises(ConversionError, match=r"qa_outputs.dense_output.weight has shape "
                     r"\(1, 9\) in the input, the model variable span_logits/kernel "
                     r"expects \(1, 8\)"):
    convert.convert("hf_realm", folder, str(tmp_path / "out"))
  state = hf_reader(random_bert(rng), random_span(rng), "", rng)
  state["qa_outputs.extra.weight"] = np.zeros([2, 3], np.float32)
  del state["realm.encoder.layer.1.output.dense.bias"]
  folder = write_hf_folder(str(tmp_path / "b"), REALM_CONFIG, state)
  with pytest.raises(ConversionError, match=r"qa_outputs.extra.weight \(2, 3\)"):
    convert.convert("hf_realm", folder, str(tmp_path / "out"))
  del state["qa_outputs.extra.weight"]
  folder = write_hf_folder(str(tmp_path / "c"), REALM_CONFIG, state)
  with pytest.raises(ConversionError, match=r"missing: encoder/layer_1/output/dense/bias"):
    convert.convert("hf_realm", folder, str(tmp_path / "out"))
  folder = write_hf_folder(str(tmp_path / "d"), dict(REALM_CONFIG,
                                                     architectures=["RealmEmbedder"]), state)
  with pytest.raises(ConversionError, match=r"declares RealmEmbedder, but the parameter "
                     r"names are those of RealmReader"):
    convert.convert("hf_realm", folder, str(tmp_path / "out"))
  assert not os.path.exists(tmp_path / "out")


def test_pytorch_bin_is_refused_with_instructions(tmp_path):
  folder = tmp_path / "torch"
  folder.mkdir()
  (folder / "config.json").write_text(json.dumps(REALM_CONFIG))
  (folder / "pytorch_model.bin").write_bytes(b"not read")
  with pytest.raises(UnsupportedFormatError, match=r"pytorch_model.bin.*safetensors"):
    convert.convert("hf_realm", str(folder), str(tmp_path / "out"))


def test_hf_bert_for_masked_lm(tmp_path):
  rng = np.random.default_rng(8)
  canon = random_bert(rng)
  state = hf_names(canon, "bert.")
  state.update(hf_mlm_head(canon, ""))
  state["cls.seq_relationship.weight"] = np.zeros([2, 64], np.float32)
  state["cls.seq_relationship.bias"] = np.zeros([2], np.float32)
  config = dict(TINY, model_type="bert", hidden_act="gelu", layer_norm_eps=1e-12)
  folder = write_hf_folder(str(tmp_path / "hf"), config, state)
  out = str(tmp_path / "out")
  manifest = convert.convert("hf_bert", folder, out)
  assert _accounted(manifest) == set(state)
  models = converted.load_converted(out)
  assert models.config.bert.hidden_act == "gelu"
  result = models.reader(keras_inputs(), mlm_positions=tf.constant(POSITIONS))
  seq, _ = np_bert(canon, IDS, MASK, SEGMENTS, approximate=False)
  np.testing.assert_allclose(result["mlm_logits"].numpy(),
                             np_mlm(canon, seq, POSITIONS, approximate=False), atol=ATOL)
  with pytest.raises(ConversionError, match=r"use --from=hf_bert"):
    convert.read_input("hf_realm", folder)


def test_minilm_converts_and_matches_reference_outputs(tmp_path):
  folder = shared_path("models", "all-MiniLM-L6-v2")
  out = str(tmp_path / "minilm")
  manifest = convert.convert("hf_bert", folder, out)
  assert manifest["components"]["bert"]["mlm_head"] is False
  assert any("no MLM head" in note for note in manifest["notes"])
  reader = converted.load_converted(out).reader
  # No random head is stored as if it were pre-trained.
  keys = [name for name, _ in tf.train.list_variables(os.path.join(out, "bert"))]
  assert any(k.startswith("encoder/") for k in keys)
  assert not any(k.startswith("masked_lm/") for k in keys)
  with open(os.path.join(folder, "reference_outputs.json")) as f:
    records = json.load(f)["records"]
  for record in records:
    ids = tf.constant([record["input_ids"]], tf.int32)
    seq = reader(dict(input_word_ids=ids, input_mask=tf.ones_like(ids),
                      input_type_ids=tf.zeros_like(ids)), training=False)["sequence_output"]
    seq = seq[0].numpy()
    sentence = seq.mean(0) / np.linalg.norm(seq.mean(0))
    np.testing.assert_allclose(sentence, record["sentence_embedding"], atol=1e-4)
    np.testing.assert_allclose(seq[0], record["first_token_hidden"], atol=1e-4)
    np.testing.assert_allclose(seq[-1], record["last_token_hidden"], atol=1e-4)


def test_hf_realm_scorer_with_its_own_query_tower(tmp_path):
  rng = np.random.default_rng(9)
  doc, doc_proj = random_bert(rng, with_head=False), random_projection(rng)
  query, query_proj = random_bert(rng, with_head=False), random_projection(rng)
  state = hf_embedder(doc, doc_proj, "embedder.", rng)
  state.update(hf_embedder(query, query_proj, "query_embedder.", rng))
  folder = write_hf_folder(str(tmp_path / "hf"), REALM_CONFIG, state)
  out = str(tmp_path / "out")
  manifest = convert.convert("hf_realm", folder, out)
  assert _accounted(manifest) == set(state)
  models = converted.load_converted(out)
  assert not models.config.share_embedders
  np.testing.assert_allclose(models.embedder(keras_inputs()).numpy(),
                             _expected_embedding(doc, doc_proj), atol=ATOL)
  np.testing.assert_allclose(models.query_embedder(keras_inputs()).numpy(),
                             _expected_embedding(query, query_proj), atol=ATOL)


def test_corrupt_config_or_weights_name_the_file_in_one_line(tmp_path):
  rng = np.random.default_rng(9)
  state = hf_names(random_bert(rng), "bert.")
  config = dict(TINY, model_type="bert", hidden_act="gelu", layer_norm_eps=1e-12)
  folder = write_hf_folder(str(tmp_path / "hf"), config, state)
  weights = os.path.join(folder, "model.safetensors")
  data = open(weights, "rb").read()
  with open(weights, "wb") as f:  # Truncated: a SafetensorError naming no file before.
    f.write(data[:len(data) // 2])
  with pytest.raises(errors.InputFileError, match="not a valid safetensors file") as info:
    convert.read_input("hf_bert", folder)
  assert info.value.path == weights
  config_path = os.path.join(folder, "config.json")
  with open(config_path, "w") as f:  # A JSONDecodeError naming no file before.
    f.write('{"hidden_size": 64,\n "vocab_size": ')
  with pytest.raises(errors.InputFileError, match="not valid JSON") as info:
    convert.read_input("hf_bert", folder)
  assert info.value.path == config_path and info.value.line_number == 2
  result = subprocess.run(
      [sys.executable, "-m", "export.convert", "--from=hf_bert", f"--input={folder}",
       f"--output={tmp_path / 'out'}"], cwd=REPO_ROOT, capture_output=True, text=True,
      check=False)
  assert result.returncode == 1 and "Traceback" not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith(f"InputFileError: {config_path}:2: not valid JSON")
  assert not os.path.exists(tmp_path / "out")
