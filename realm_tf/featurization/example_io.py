"""Serialization of REALM examples to `tf.train.Example` and back.

realm-tf writes readable feature names (`query_inputs/token_ids`, `mlm_targets`, ...). The
original's generators named each feature by its index in `tf.nest.flatten(structure)`
("0".."13"); because our nested structure has the same keys and namedtuple fields, the
flat order is identical, so `parse_examples(..., original_layout=True)` reads examples the
original wrote and `serialize_example(..., original_layout=True)` writes them for it.
"""

from typing import Dict

import numpy as np
import tensorflow as tf

from realm_tf.featurization.bert_inputs import BertInputs


def feature_structure(query_seq_len: int, candidate_seq_len: int, num_candidates: int,
                      max_masks: int) -> Dict[str, object]:
  """The example structure as `tf.TensorSpec`s (unbatched)."""
  q, c, n, m = query_seq_len, candidate_seq_len, num_candidates, max_masks

  def bert(shape):
    return BertInputs(*[tf.TensorSpec(shape, tf.int32) for _ in BertInputs._fields])

  return dict(
      query_inputs=bert([q]),
      candidate_inputs=bert([n, c]),
      joint_inputs=bert([n, q + c]),
      mlm_targets=tf.TensorSpec([m], tf.int32),
      mlm_positions=tf.TensorSpec([m], tf.int32),
      mlm_mask=tf.TensorSpec([m], tf.int32),
      candidate_labels=tf.TensorSpec([n], tf.float32),
      export_timestamp=tf.TensorSpec([], tf.int32))


def _joined_paths(structure, prefix=""):
  """"a/b" paths of the leaves, in `tf.nest.flatten` order (sorted dict keys, fields)."""
  if isinstance(structure, dict):
    items = sorted(structure.items())
  elif isinstance(structure, tuple) and hasattr(structure, "_fields"):
    items = zip(structure._fields, structure)
  else:
    return [prefix]
  return [path for key, value in items
          for path in _joined_paths(value, f"{prefix}/{key}" if prefix else key)]


def feature_names(structure, original_layout: bool = False):
  """Flat feature names in `tf.nest.flatten` order: readable paths or "0".."13"."""
  paths = _joined_paths(structure)
  return [str(i) for i in range(len(paths))] if original_layout else paths


def serialize_example(features: Dict[str, object], original_layout: bool = False) -> bytes:
  """Serializes one unbatched example (numpy or eager tensors) to `tf.train.Example` bytes."""
  names = feature_names(features, original_layout)
  out = {}
  for name, value in zip(names, tf.nest.flatten(features)):
    value = np.asarray(value).reshape([-1])
    if value.dtype.kind == "f":
      out[name] = tf.train.Feature(float_list=tf.train.FloatList(value=value))
    else:
      out[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=value))
  return tf.train.Example(features=tf.train.Features(feature=out)).SerializeToString()


def parse_examples(serialized, structure, original_layout: bool = False):
  """Parses a batch of serialized examples [batch] into the nested structure.

  Args:
    serialized: string tensor [batch].
    structure: `feature_structure(...)`.
    original_layout: features named "0".."13" as the original wrote them.

  Returns:
    The nested structure with tensors of shape [batch] + spec.shape.
  """
  specs = tf.nest.flatten(structure)
  names = feature_names(structure, original_layout)
  parse_spec = {
      name: tf.io.FixedLenFeature([int(np.prod(spec.shape))],
                                  tf.float32 if spec.dtype.is_floating else tf.int64)
      for name, spec in zip(names, specs)
  }
  parsed = tf.io.parse_example(serialized, parse_spec)
  leaves = [tf.reshape(tf.cast(parsed[name], spec.dtype), [-1] + spec.shape.as_list())
            for name, spec in zip(names, specs)]
  return tf.nest.pack_sequence_as(structure, leaves)
