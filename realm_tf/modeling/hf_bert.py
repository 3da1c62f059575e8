"""Hugging Face BERT folders (`config.json`, `model.safetensors`, `vocab.txt`), read without
PyTorch or `transformers`: `safetensors.numpy` gives the tensors, which are renamed to the
canonical (original TF1 BERT) names that `realm_tf.modeling.weights` assigns to a
`BertEncoderV2` and a `MaskedLMHead`.
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
VOCAB_FILE = "vocab.txt"

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
  """The raw tensors of `folder/model.safetensors` (numpy, HF names)."""
  path = os.path.join(folder, WEIGHTS_FILE)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{path} not found (only safetensors weights are supported; "
                            "convert pytorch_model.bin with the safetensors tools).")
  return load_safetensors_file(path)


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
