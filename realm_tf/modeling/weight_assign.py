"""Strict, named assignment of imported tensors to Keras variables.

Every weight load goes through `assign_strict`: `realm_tf.modeling.weights` (BERT
checkpoints and Hugging Face folders, for training) and the checkpoint converters
(`export.tf1_checkpoints`, `export.hf_realm`). Each turns its input into `SourceTensor`s
keyed by *target names*: the canonical TF1 BERT names of
`realm_tf.modeling.weights.canonical_targets` (`embeddings/word_embeddings`,
`encoder/layer_0/attention/self/query/kernel`, `cls/predictions/output_bias`, ...) plus
`projection/kernel|bias`, `projection_layer_norm/gamma|beta` for an embedder and the
`orqa.models.span_scorer.WEIGHT_NAMES` for a span scorer. `assign_strict` then checks that the
input and the model agree exactly, no variable missing, none left over, every shape
equal, and raises one `ConversionError` listing every problem by the variable's name in
the input and in the model, with both shapes, before anything is assigned.
"""

import dataclasses
import re
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from realm_tf import errors

# Attention weights are [H, H] / [H] in checkpoints and per-head in BertEncoderV2.
_PER_HEAD = re.compile(r"attention/(self/(query|key|value)/(kernel|bias)|output/dense/kernel)$")


class ConversionError(errors.WeightsMismatchError):
  """The input checkpoint does not fit the model, or cannot be converted."""


@dataclasses.dataclass
class SourceTensor:
  """One tensor of the input, in the target layout.

  Attributes:
    name: its name in the input (checkpoint variable or HF parameter name).
    value: the array in the target layout ([in, out] kernels).
    transposed: the input stored the transpose (a torch `Linear` weight [out, in]).
  """
  name: str
  value: np.ndarray
  transposed: bool = False

  @property
  def source_shape(self) -> Tuple[int, ...]:
    shape = tuple(self.value.shape)
    return shape[::-1] if self.transposed else shape


def flat_shape(target_name: str, variable: tf.Variable) -> Tuple[int, ...]:
  """The checkpoint shape of a variable: per-head attention weights flattened to 2-D/1-D."""
  shape = tuple(int(d) for d in variable.shape)
  if _PER_HEAD.search(target_name):
    if target_name.endswith("output/dense/kernel"):  # [heads, head_size, H]
      return (shape[0] * shape[1], shape[2])
    if target_name.endswith("kernel"):  # [H, heads, head_size]
      return (shape[0], shape[1] * shape[2])
    return (shape[0] * shape[1],)  # bias [heads, head_size]
  return shape


def _expected_source_shape(source: SourceTensor, expected: Tuple[int, ...]):
  return expected[::-1] if source.transposed else expected


def check_strict(targets: Dict[str, tf.Variable], sources: Dict[str, SourceTensor],
                 where: str, source_prefix: str = "") -> None:
  """Raises ConversionError unless `sources` and `targets` match name for name and shape.

  Args:
    targets: target name -> model variable.
    sources: target name -> the input's tensor.
    where: the input (file or folder) named in the error.
    source_prefix: how the input would name a missing target (for the message).
  """
  problems = []
  for name in sorted(set(targets) - set(sources)):
    expected = flat_shape(name, targets[name])
    problems.append(f"missing: {source_prefix}{name} (the model variable {name} has shape "
                    f"{expected}; the input has no such tensor)")
  for name in sorted(set(sources) - set(targets)):
    src = sources[name]
    problems.append(f"extra: {src.name} (shape {src.source_shape} in the input; the model "
                    "has no variable for it)")
  for name in sorted(set(sources) & set(targets)):
    src, variable = sources[name], targets[name]
    expected = flat_shape(name, variable)
    if tuple(src.value.shape) not in (expected, tuple(variable.shape)):
      problems.append(
          f"shape mismatch: {src.name} has shape {src.source_shape} in the input, the model "
          f"variable {name} expects {_expected_source_shape(src, expected)}")
  if problems:
    shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20
                             else [])
    raise ConversionError(f"{where} does not match the model:\n  " + "\n  ".join(shown))


def assign_strict(targets: Dict[str, tf.Variable], sources: Dict[str, SourceTensor],
                  where: str, source_prefix: str = "") -> Dict[str, str]:
  """Checks (`check_strict`), then assigns every source to its variable.

  Returns:
    target name -> input name, for the conversion manifest.
  """
  check_strict(targets, sources, where, source_prefix)
  for name, variable in targets.items():
    value = np.asarray(sources[name].value).reshape(variable.shape)
    variable.assign(value.astype(variable.dtype.as_numpy_dtype))
  return {name: sources[name].name for name in sorted(targets)}


def split_optional(sources: Dict[str, SourceTensor], names: Iterable[str], what: str,
                   where: str) -> Tuple[Dict[str, SourceTensor], Optional[Dict[str, SourceTensor]]]:
  """Splits an all-or-nothing group (e.g. the MLM head) off `sources`.

  Returns:
    (the other sources, the group or None when the input has none of it). A partial
    group raises ConversionError naming the missing members.
  """
  names = list(names)
  group = {n: sources[n] for n in names if n in sources}
  rest = {n: s for n, s in sources.items() if n not in group}
  if not group:
    return rest, None
  missing = [n for n in names if n not in group]
  if missing:
    raise ConversionError(f"{where}: the {what} is incomplete; missing {missing} (found "
                          f"{sorted(s.name for s in group.values())}).")
  return rest, group


def values_of(sources: Dict[str, SourceTensor]) -> Dict[str, np.ndarray]:
  return {name: src.value for name, src in sources.items()}


def describe_ignored(ignored: List[Tuple[str, str]]) -> Dict[str, str]:
  """input name -> why it was not converted, for the manifest."""
  return {name: reason for name, reason in sorted(ignored)}
