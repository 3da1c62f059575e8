"""The ORQA reader's span scorer: an MLP in which start and end interact.

As in `language/orqa/models/orqa_model.py`:

    proj = Dense(2 * S)(sequence_output)              # [R, L, 2S]  (the original `reader/dense`)
    start, end = split(proj, 2, axis=-1)              # [R, L, S] each, start first
    hidden = ReLU(start[:, s] + end[:, e])            # [R, num_spans, S]
    hidden = LayerNorm(epsilon=1e-3)(hidden)          # (`reader/layer_normalization`)
    logit = Dense(1)(hidden)[..., 0]                  # [R, num_spans]  (`reader/dense_1`)

S = `span_hidden_size` (256). The span mask (-10000 outside the block) and the block's
retrieval logit are added by the caller, as in the original. Sub-layer names, and the
checkpoint keys of converted weights (`export.convert`):

    span_projection/kernel [H, 2S], span_projection/bias [2S]
    span_layer_norm/gamma [S], span_layer_norm/beta [S]
    span_logits/kernel [S, 1], span_logits/bias [1]

`read_weights` reads such a converted `span_scorer.npz` and `assign_weights` loads it into
a built scorer (`orqa.finetune --init_span_scorer`); both name the file and the shapes
when they do not fit. The LayerNorm epsilon the conversion recorded (its
`conversion.json`) must be the scorer's as well.
"""

import io
import json
import os
import zipfile
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf
import tf_keras

from realm_tf import errors

# The original's span LayerNorm: Keras' LayerNormalization() default (orqa_model.py).
LAYER_NORM_EPSILON = 1e-3
WEIGHT_NAMES = ("span_projection/kernel", "span_projection/bias", "span_layer_norm/gamma",
                "span_layer_norm/beta", "span_logits/kernel", "span_logits/bias")


class SpanWeightsError(errors.RealmInputError):
  """Span scorer weights (e.g. a converted `span_scorer.npz`) that do not fit a scorer."""


def weight_shapes(hidden_size: int, span_hidden_size: int) -> Dict[str, Tuple[int, ...]]:
  """`WEIGHT_NAMES` -> shape for reader width H and span width S."""
  h, s = int(hidden_size), int(span_hidden_size)
  return {"span_projection/kernel": (h, 2 * s), "span_projection/bias": (2 * s,),
          "span_layer_norm/gamma": (s,), "span_layer_norm/beta": (s,),
          "span_logits/kernel": (s, 1), "span_logits/bias": (1,)}


def check_weights(arrays: Dict[str, np.ndarray], source: str,
                  span_hidden_size: Optional[int] = None,
                  hidden_size: Optional[int] = None) -> Tuple[int, int]:
  """Checks that `arrays` are one span MLP, of width S = `span_hidden_size` and reader
  width H = `hidden_size` when given; returns their (H, S).

  Raises:
    SpanWeightsError: missing or unexpected names, or shapes that are not those of one
      MLP or not those asked for; the message names `source` and both shapes.
  """
  missing = sorted(set(WEIGHT_NAMES) - set(arrays))
  extra = sorted(set(arrays) - set(WEIGHT_NAMES))
  if missing or extra:
    raise SpanWeightsError(f"{source}: not span scorer weights: missing {missing}, "
                           f"unexpected {extra} (expected {list(WEIGHT_NAMES)}).")
  shapes = {name: tuple(int(d) for d in np.shape(arrays[name])) for name in WEIGHT_NAMES}
  kernel, logits = shapes["span_projection/kernel"], shapes["span_logits/kernel"]
  if len(kernel) != 2 or len(logits) != 2:
    raise SpanWeightsError(f"{source}: span_projection/kernel {kernel} and span_logits/kernel "
                           f"{logits} must be matrices [H, 2S] and [S, 1].")
  # S from the output layer, H from the projection: the other shapes must follow.
  file_h, file_s = kernel[0], logits[0]
  want_h, want_s = hidden_size or file_h, span_hidden_size or file_s
  expected = weight_shapes(want_h, want_s)
  wrong = [f"{name} {shapes[name]} (expected {expected[name]})" for name in WEIGHT_NAMES
           if shapes[name] != expected[name]]
  if wrong:
    asked = ", ".join(f"{k}={v}" for k, v in (("H", hidden_size), ("S", span_hidden_size))
                      if v)
    raise SpanWeightsError(
        f"{source}: a span MLP for reader width H={file_h} and span_hidden_size S={file_s} "
        f"does not fit the model's {asked}: {'; '.join(wrong)}.")
  return file_h, file_s


def recorded_layer_norm_epsilon(path: str) -> Optional[float]:
  """The span LayerNorm epsilon `export.convert` recorded for the `span_scorer.npz` at
  `path` (in its output's `conversion.json`), or None when the file is not in one."""
  manifest = os.path.join(os.path.dirname(os.path.dirname(path)), "conversion.json")
  if not tf.io.gfile.exists(manifest):
    return None
  with tf.io.gfile.GFile(manifest, "r") as f:
    components = json.load(f).get("components", {})
  entry = components.get("bert", {}).get("span_scorer") or {}
  value = entry.get("layer_norm_epsilon")
  return None if value is None else float(value)


def read_weights(path: str, span_hidden_size: Optional[int] = None,
                 hidden_size: Optional[int] = None,
                 layer_norm_epsilon: float = LAYER_NORM_EPSILON) -> Dict[str, np.ndarray]:
  """The `WEIGHT_NAMES` arrays of a `span_scorer.npz` (as `export.convert` writes),
  checked with `check_weights` (SpanWeightsError naming `path`), and against the epsilon
  of the scorer they are for (`layer_norm_epsilon`) when the conversion recorded one."""
  recorded = recorded_layer_norm_epsilon(path)
  if recorded is not None and not np.isclose(recorded, layer_norm_epsilon, rtol=1e-6,
                                             atol=0.0):
    raise SpanWeightsError(f"{path}: the span MLP was converted with LayerNorm epsilon "
                           f"{recorded} (conversion.json), the model's span scorer uses "
                           f"{layer_norm_epsilon}.")
  if not tf.io.gfile.exists(path):
    raise SpanWeightsError(f"{path}: no such span scorer file (export.convert writes "
                           "<output>/bert/span_scorer.npz for ORQA readers).")
  with tf.io.gfile.GFile(path, "rb") as f:
    data = f.read()  # np.load needs a seekable file; GFile (gs://) is not.
  try:
    loaded = np.load(io.BytesIO(data), allow_pickle=False)
  except (OSError, ValueError, zipfile.BadZipFile) as e:
    raise SpanWeightsError(f"{path}: not a readable .npz file: {e}") from e
  if not isinstance(loaded, np.lib.npyio.NpzFile):
    raise SpanWeightsError(f"{path}: one array {np.shape(loaded)}, not an .npz of "
                           f"{list(WEIGHT_NAMES)}.")
  with loaded:
    arrays = {name: loaded[name] for name in loaded.files}
  check_weights(arrays, path, span_hidden_size, hidden_size)
  return arrays


def assign_weights(scorer: "SpanScorer", arrays: Dict[str, np.ndarray], source: str) -> None:
  """Assigns checked `arrays` to the built `scorer` (SpanWeightsError naming `source`)."""
  kernel = scorer.weight_dict()["span_projection/kernel"]
  check_weights(arrays, source, scorer.span_hidden_size, int(kernel.shape[0]))
  scorer.set_numpy_weights(arrays)


@tf_keras.utils.register_keras_serializable(package="orqa")
class SpanScorer(tf_keras.layers.Layer):
  """Span logits from the reader's sequence output and span candidates.

  Args:
    span_hidden_size: S, the width of the start and end projections (256).
    layer_norm_epsilon: epsilon of the LayerNorm (the Keras default 1e-3 of the original).
    initializer_range: stddev of the truncated-normal kernel initializers (0.02).

  Call: `scorer(sequence_output [R, L, H], starts int [num_spans], ends int [num_spans])`
  -> float32 [R, num_spans] (leading batch axes before R are allowed).
  """

  def __init__(self, span_hidden_size: int = 256,
               layer_norm_epsilon: float = LAYER_NORM_EPSILON,
               initializer_range: float = 0.02, **kwargs):
    super().__init__(**kwargs)
    self.span_hidden_size = span_hidden_size
    self.layer_norm_epsilon = layer_norm_epsilon
    self.initializer_range = initializer_range
    init = lambda: tf_keras.initializers.TruncatedNormal(stddev=initializer_range)
    self.span_projection = tf_keras.layers.Dense(2 * span_hidden_size, kernel_initializer=init(),
                                                 name="span_projection")
    self.span_layer_norm = tf_keras.layers.LayerNormalization(
        axis=-1, epsilon=layer_norm_epsilon, name="span_layer_norm")
    self.span_logits = tf_keras.layers.Dense(1, kernel_initializer=init(), name="span_logits")

  def call(self, sequence_output, starts, ends):
    projected = self.span_projection(sequence_output)  # [..., L, 2S]
    start_proj, end_proj = tf.split(projected, 2, axis=-1)  # [..., L, S] each
    axis = len(sequence_output.shape) - 2
    hidden = (tf.gather(start_proj, tf.cast(starts, tf.int32), axis=axis) +
              tf.gather(end_proj, tf.cast(ends, tf.int32), axis=axis))  # [..., num_spans, S]
    hidden = self.span_layer_norm(tf.nn.relu(hidden))
    logits = self.span_logits(hidden)[..., 0]  # [..., num_spans]
    return tf.cast(logits, tf.float32)

  def build_variables(self, hidden_size: int):
    """Creates the variables for encoder width `hidden_size`."""
    if not self.built:
      self(tf.zeros([1, 1, hidden_size]), tf.zeros([1], tf.int32), tf.zeros([1], tf.int32))
    return self

  def weight_dict(self) -> Dict[str, tf.Variable]:
    """`WEIGHT_NAMES` -> variable (the layer must be built)."""
    return {
        "span_projection/kernel": self.span_projection.kernel,
        "span_projection/bias": self.span_projection.bias,
        "span_layer_norm/gamma": self.span_layer_norm.gamma,
        "span_layer_norm/beta": self.span_layer_norm.beta,
        "span_logits/kernel": self.span_logits.kernel,
        "span_logits/bias": self.span_logits.bias,
    }

  def set_numpy_weights(self, arrays: Dict[str, np.ndarray]):
    """Assigns a `WEIGHT_NAMES` dict (e.g. a converted `span_scorer.npz`), checking shapes."""
    missing = sorted(set(WEIGHT_NAMES) - set(arrays))
    extra = sorted(set(arrays) - set(WEIGHT_NAMES))
    if missing or extra:
      raise ValueError(f"Span scorer weights: missing {missing}, unexpected {extra}.")
    self.build_variables(int(np.shape(arrays["span_projection/kernel"])[0]))
    for name, variable in self.weight_dict().items():
      value = np.asarray(arrays[name])
      if value.shape != tuple(variable.shape):
        raise ValueError(f"Span scorer weight {name}: shape {value.shape}, the layer's "
                         f"variable has {tuple(variable.shape)}.")
      variable.assign(value.astype(np.float32))

  def get_config(self):
    config = super().get_config()
    config.update(span_hidden_size=self.span_hidden_size,
                  layer_norm_epsilon=self.layer_norm_epsilon,
                  initializer_range=self.initializer_range)
    return config
