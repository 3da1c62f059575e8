"""BERT's optimizer: AdamW without bias correction, linear warmup and decay.

The original used `bert.optimization.create_optimizer`:

* learning rate `init_lr * (1 - min(step, T) / T)` (polynomial decay, power 1, to 0 over
  T = num_train_steps), replaced by `init_lr * step / warmup` while `step < warmup`, with
  `warmup = min(10000, max(100, T // 10))`;
* gradients clipped to global norm 1.0;
* `AdamWeightDecayOptimizer`: beta1 0.9, beta2 0.999, epsilon 1e-6, **no bias
  correction**, `update = m / (sqrt(v) + eps) + 0.01 * param` with the decay term skipped
  for variables whose name matches `LayerNorm`, `layer_norm` or `bias`;
  `param -= lr * update`.

Keras' `AdamW` and tf-models' `AdamWeightDecay` apply bias correction, hence this small
`tf_keras` optimizer. It works with `model.fit`, or in a custom train step under
`strategy.run`: by default `apply_gradients` all-reduces (sums) the replicas' gradients
and *then* clips the global norm, so clipping sees the gradient of the whole global batch.
With per-replica losses normalized by the global token count (see
`realm_tf.modeling.realm_steps`) that sum is the gradient of the global-batch mean loss, i.e.
the replicas' gradients are averaged. The original on TPU clipped each core's gradient
locally and summed them (`CrossShardOptimizer`), a ~num_replicas times larger gradient
with per-core clipping; Adam is nearly invariant to that scale.
"""

import re
from typing import Optional, Sequence

import tensorflow as tf
import tf_keras

from realm_tf.modeling.config import RealmConfig, default_num_warmup_steps

DEFAULT_EXCLUDE_FROM_WEIGHT_DECAY = ("LayerNorm", "layer_norm", "bias")


@tf_keras.utils.register_keras_serializable(package="realm_tf")
class BertLearningRateSchedule(tf_keras.optimizers.schedules.LearningRateSchedule):
  """Linear warmup to `initial_learning_rate`, then linear decay to 0 at num_train_steps.

  Exactly the original's formula, including the small drop at step == warmup (the decay
  line starts from step 0, not from the end of warmup).
  """

  def __init__(self, initial_learning_rate: float, num_train_steps: int,
               num_warmup_steps: int):
    super().__init__()
    self.initial_learning_rate = float(initial_learning_rate)
    self.num_train_steps = int(num_train_steps)
    self.num_warmup_steps = int(num_warmup_steps)

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    init_lr = tf.constant(self.initial_learning_rate, tf.float32)
    total = float(self.num_train_steps)
    decayed = init_lr * (1.0 - tf.minimum(step, total) / total)
    if self.num_warmup_steps <= 0:
      return decayed
    warmup_lr = init_lr * step / float(self.num_warmup_steps)
    return tf.where(step < float(self.num_warmup_steps), warmup_lr, decayed)

  def get_config(self):
    return dict(initial_learning_rate=self.initial_learning_rate,
                num_train_steps=self.num_train_steps,
                num_warmup_steps=self.num_warmup_steps)


@tf_keras.utils.register_keras_serializable(package="realm_tf")
class BertAdamWeightDecay(tf_keras.optimizers.Optimizer):
  """BERT's AdamWeightDecayOptimizer (no bias correction) with global-norm clipping.

  Args:
    learning_rate: float or a `LearningRateSchedule` (e.g. `BertLearningRateSchedule`),
      evaluated at `self.iterations` (the global step before the update).
    beta_1, beta_2, epsilon: Adam constants (0.9, 0.999, 1e-6).
    weight_decay_rate: decoupled weight decay added to the update (0.01).
    exclude_from_weight_decay: regexes; variables whose name matches any get no decay.
    global_clipnorm: clip the (all-reduced) gradients to this global norm (1.0; None: off).
    jit_compile: XLA-compile each variable's update (Keras' option; off by default since
      whole train steps are compiled instead).

  Slot variables are `adam_m/<var>` and `adam_v/<var>`.
  """

  def __init__(self, learning_rate=1e-4, beta_1: float = 0.9, beta_2: float = 0.999,
               epsilon: float = 1e-6, weight_decay_rate: float = 0.01,
               exclude_from_weight_decay: Optional[Sequence[str]] = (
                   DEFAULT_EXCLUDE_FROM_WEIGHT_DECAY),
               global_clipnorm: Optional[float] = 1.0, jit_compile: bool = False,
               name: str = "BertAdamWeightDecay", **kwargs):
    super().__init__(name=name, global_clipnorm=global_clipnorm, jit_compile=jit_compile,
                     **kwargs)
    self._learning_rate = self._build_learning_rate(learning_rate)
    self.beta_1 = beta_1
    self.beta_2 = beta_2
    self.epsilon = epsilon
    self.weight_decay_rate = weight_decay_rate
    self.exclude_from_weight_decay_patterns = list(exclude_from_weight_decay or [])

  def build(self, var_list):
    super().build(var_list)
    if getattr(self, "_built", False):
      return
    self._built = True
    self._adam_m = [self.add_variable_from_reference(v, "adam_m") for v in var_list]
    self._adam_v = [self.add_variable_from_reference(v, "adam_v") for v in var_list]

  def use_weight_decay(self, variable) -> bool:
    """Whether `variable` gets weight decay (its name matches no exclusion pattern)."""
    if not self.weight_decay_rate:
      return False
    return not any(re.search(p, variable.name) for p in
                   self.exclude_from_weight_decay_patterns)

  def _clip_gradients(self, grads):
    # Sparse gradients of embedding lookups can repeat an index; the global norm is that
    # of the summed (dense) gradient, as with the original's one-hot TPU embeddings. The
    # update densifies them anyway: every row's moments decay at every step (the
    # original's AdamWeightDecayOptimizer does the same).
    grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g
             for g in grads]
    return super()._clip_gradients(grads)

  def update_step(self, gradient, variable):
    if isinstance(gradient, tf.IndexedSlices):
      gradient = tf.convert_to_tensor(gradient)
    index = self._index_dict[self._var_key(variable)]
    m, v = self._adam_m[index], self._adam_v[index]
    lr = tf.cast(self.learning_rate, variable.dtype)
    gradient = tf.cast(gradient, variable.dtype)
    next_m = self.beta_1 * m + (1.0 - self.beta_1) * gradient
    next_v = self.beta_2 * v + (1.0 - self.beta_2) * tf.square(gradient)
    update = next_m / (tf.sqrt(next_v) + self.epsilon)
    if self.use_weight_decay(variable):
      update += self.weight_decay_rate * variable
    variable.assign_sub(lr * update)
    m.assign(next_m)
    v.assign(next_v)

  def get_config(self):
    config = super().get_config()
    config.update(
        learning_rate=self._serialize_hyperparameter(self._learning_rate),
        beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon,
        weight_decay_rate=self.weight_decay_rate,
        exclude_from_weight_decay=list(self.exclude_from_weight_decay_patterns))
    config.pop("weight_decay", None)  # Decay is part of the update rule here.
    return config


def bert_adamw(learning_rate: float, num_train_steps: int,
               num_warmup_steps: Optional[int] = None, **kwargs) -> BertAdamWeightDecay:
  """BERT's AdamW: lr warmed up over `num_warmup_steps` (None: the original's
  `min(10000, max(100, T // 10))`), then decayed linearly to 0 at `num_train_steps`.

  The one optimizer builder of REALM pre-training, ICT and ORQA fine-tuning; `kwargs` go to
  `BertAdamWeightDecay` (betas, epsilon, weight decay, clipping).
  """
  if num_warmup_steps is None:
    num_warmup_steps = default_num_warmup_steps(num_train_steps)
  schedule = BertLearningRateSchedule(learning_rate, num_train_steps, num_warmup_steps)
  return BertAdamWeightDecay(learning_rate=schedule, **kwargs)


def create_optimizer(config: RealmConfig, jit_compile: bool = False) -> BertAdamWeightDecay:
  """The trainer's optimizer from a `RealmConfig` (learning_rate, num_train_steps, ...)."""
  return bert_adamw(config.learning_rate, config.num_train_steps, config.warmup_steps,
                    beta_1=config.adam_beta_1, beta_2=config.adam_beta_2,
                    epsilon=config.adam_epsilon, weight_decay_rate=config.weight_decay_rate,
                    global_clipnorm=config.clip_norm or None, jit_compile=jit_compile)
