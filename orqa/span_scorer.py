"""The ORQA reader's span scorer: an MLP in which start and end interact (spec 6.3, read 9).

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
"""

from typing import Dict

import numpy as np
import tensorflow as tf
import tf_keras

WEIGHT_NAMES = ("span_projection/kernel", "span_projection/bias", "span_layer_norm/gamma",
                "span_layer_norm/beta", "span_logits/kernel", "span_logits/bias")


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

  def __init__(self, span_hidden_size: int = 256, layer_norm_epsilon: float = 1e-3,
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
