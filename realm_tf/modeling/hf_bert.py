"""Hugging Face BERT folders (`config.json`, `model.safetensors` or its shards,
`vocab.txt`), read without PyTorch or `transformers`: `safetensors.numpy` gives the
tensors, which are renamed to the canonical (original TF1 BERT) names that
`realm_tf.modeling.weights` assigns to a `BertEncoderV2` and a `MaskedLMHead`.

`read_hf_state` is the one reader of Hugging Face weights: training's `--init_hf_bert`
and the converters (`export.hf_realm`) both use it.
"""

import json
import os
import re
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from realm_tf import errors
from realm_tf.modeling.config import BertConfig

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
VOCAB_FILE = "vocab.txt"
_OTHER_WEIGHT_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5",
                       "flax_model.msgpack")

_LINEAR_PARENTS = ("query", "key", "value", "dense")


def is_hf_bert_folder(path: str) -> bool:
  """Whether `path` is a folder with a HF `config.json` and `model.safetensors`."""
  return (tf.io.gfile.isdir(path) and
          tf.io.gfile.exists(os.path.join(path, CONFIG_FILE)) and
          tf.io.gfile.exists(os.path.join(path, WEIGHTS_FILE)))


def read_json_file(path: str) -> dict:
  """A JSON object from a file (config.json, an index).

  Raises:
    InputFileError: the file is not UTF-8 JSON holding an object (names the file and line).
  """
  with tf.io.gfile.GFile(path, "rb") as f:
    data = f.read()
  try:
    value = json.loads(data.decode("utf-8"))
  except UnicodeDecodeError as e:
    raise errors.InputFileError(path, None, f"not UTF-8 ({e.reason} at byte {e.start})"
                                ) from None
  except json.JSONDecodeError as e:
    raise errors.InputFileError(path, e.lineno, f"not valid JSON ({e.msg} at column "
                                f"{e.colno})") from None
  if not isinstance(value, dict):
    raise errors.InputFileError(path, None, "expected a JSON object")
  return value


def read_hf_config(folder: str) -> BertConfig:
  """The `BertConfig` of a HF BERT folder's `config.json`.

  Raises:
    InputFileError: config.json is not JSON or not a BERT config.
  """
  path = os.path.join(folder, CONFIG_FILE)
  config = read_json_file(path)
  try:
    return BertConfig.from_hf_dict(config)
  except (KeyError, TypeError, ValueError) as e:
    raise errors.InputFileError(path, None, f"not a BERT config: {e}") from None


def load_safetensors_file(path: str) -> Dict[str, np.ndarray]:
  """All tensors of one safetensors file (memory-mapped when local).

  Raises:
    InputFileError: the file is truncated or not a safetensors file.
  """
  from safetensors import safe_open  # pylint: disable=g-import-not-at-top
  from safetensors.numpy import load as load_bytes  # pylint: disable=g-import-not-at-top
  try:
    if os.path.exists(path):  # Local: memory-mapped, one tensor at a time.
      with safe_open(path, framework="np") as f:
        return {name: f.get_tensor(name) for name in f.keys()}
    with tf.io.gfile.GFile(path, "rb") as f:
      return load_bytes(f.read())
  except Exception as e:  # pylint: disable=broad-except  (SafetensorError, struct errors)
    if isinstance(e, (OSError, tf.errors.OpError)) and not os.path.exists(path):
      raise
    raise errors.InputFileError(path, None, f"not a valid safetensors file "
                                f"({type(e).__name__}: {e})") from None


def read_hf_state(folder: str) -> Dict[str, np.ndarray]:
  """All tensors (numpy, HF names) of a folder's safetensors weights: `model.safetensors`
  or the shards that `model.safetensors.index.json` lists.

  Raises:
    errors.UnsupportedFormatError: the folder has only PyTorch / TF / Flax weights.
    errors.WeightsMismatchError: the index lists tensors that no shard holds, or has no map.
    FileNotFoundError: no weights at all.
  """
  single = os.path.join(folder, WEIGHTS_FILE)
  if tf.io.gfile.exists(single):
    return load_safetensors_file(single)
  index = os.path.join(folder, SAFETENSORS_INDEX)
  if tf.io.gfile.exists(index):
    weight_map = read_json_file(index).get("weight_map")
    if not isinstance(weight_map, dict):
      raise errors.WeightsMismatchError(f"{index}: no 'weight_map' object")
    state = {}
    for shard in sorted(set(weight_map.values())):
      state.update(load_safetensors_file(os.path.join(folder, shard)))
    missing = sorted(set(weight_map) - set(state))
    if missing:
      raise errors.WeightsMismatchError(f"{index} lists tensors that no shard holds: {missing[:10]}")
    return state
  others = [n for n in _OTHER_WEIGHT_FILES if tf.io.gfile.exists(os.path.join(folder, n))]
  if others:
    raise errors.UnsupportedFormatError(
        f"{folder} has {others} but no {WEIGHTS_FILE}: realm-tf reads Hugging Face "
        "weights only as safetensors (a pickled pytorch_model.bin cannot be read safely "
        "without PyTorch). Download the safetensors revision if the model has one "
        "(`huggingface-cli download <model> --revision refs/pr/<n>`), or convert once on a "
        "machine with PyTorch: `python -c \"import torch; from safetensors.torch import "
        "save_file; s = torch.load('pytorch_model.bin', map_location='cpu'); "
        "save_file({k: v.contiguous() for k, v in s.items()}, 'model.safetensors')\"`.")
  raise FileNotFoundError(f"No {WEIGHTS_FILE} or {SAFETENSORS_INDEX} in {folder}.")


def vocab_path(folder: str) -> str:
  """The path of the folder's `vocab.txt` (FileNotFoundError if absent)."""
  path = os.path.join(folder, VOCAB_FILE)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{path} not found.")
  return path


def hf_name_to_canonical(name: str) -> Tuple[Optional[str], bool, Optional[str]]:
  """Maps one HF BERT tensor name to its canonical (TF1 BERT) name.

  Returns:
    (canonical name, transpose, None) for a tensor the models take, where `transpose`
    says that the value is a torch `Linear` weight [out, in] to transpose to [in, out];
    or (None, False, reason) for a tensor that is dropped on purpose.
  """
  if name.startswith("bert."):
    name = name[len("bert."):]
  if name.endswith("position_ids") or name.endswith("token_type_ids"):
    return None, False, "a buffer of constant ids, not a weight"
  if name.startswith("cls.seq_relationship"):
    return None, False, "the next-sentence-prediction head, unused by REALM"
  if name in ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias"):
    return None, False, ("tied: realm-tf's MLM head uses the word embeddings and "
                         "cls.predictions.bias")
  if name == "cls.predictions.bias":
    return "cls/predictions/output_bias", False, None
  parts = name.split(".")
  if len(parts) >= 3 and parts[0] == "encoder" and parts[1] == "layer":
    parts = ["encoder", f"layer_{parts[2]}"] + parts[3:]
  leaf, parent = parts[-1], parts[-2] if len(parts) > 1 else ""
  transpose = False
  if parent == "LayerNorm":
    parts[-1] = {"weight": "gamma", "gamma": "gamma", "bias": "beta",
                 "beta": "beta"}.get(leaf, leaf)
  elif parent.endswith("embeddings") and leaf == "weight":
    parts = parts[:-1]
  elif parent in _LINEAR_PARENTS and leaf == "weight":
    parts[-1] = "kernel"
    transpose = True
  return "/".join(parts), transpose, None


def hf_to_canonical(state: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """Renames HF BERT tensors to TF1 BERT names, transposing Linear weights to [in, out].

  `bert.` prefixes (BertForPreTraining / BertForMaskedLM) are dropped; `cls.predictions.*`
  becomes `cls/predictions/*` (the MLM head; `decoder.weight` is tied to the word
  embeddings and skipped). Unused tensors (position_ids, NSP head) are dropped
  (`hf_name_to_canonical` says why).
  """
  canonical = {}
  for name, value in state.items():
    target, transpose, _ = hf_name_to_canonical(name)
    if target is None:
      continue
    canonical[target] = np.ascontiguousarray(value.T) if transpose else value
  return canonical


def load_hf_bert_folder(folder: str) -> Tuple[BertConfig, Dict[str, np.ndarray]]:
  """(config, canonical tensors) of a HF BERT folder."""
  return read_hf_config(folder), hf_to_canonical(read_hf_state(folder))


def num_layers_in(canonical: Dict[str, np.ndarray]) -> int:
  """Number of transformer layers in canonical tensors (1 + the largest layer index)."""
  indices = [int(m.group(1)) for m in (re.match(r"encoder/layer_(\d+)/", k)
                                       for k in canonical) if m]
  return max(indices) + 1 if indices else 0
