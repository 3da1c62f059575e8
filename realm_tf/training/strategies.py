"""`tf.distribute` strategy selection for the training entry points."""

from typing import Optional

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def make_strategy(name: str, tpu: Optional[str] = None) -> tf.distribute.Strategy:
  """The strategy `name` (`STRATEGIES`); `--tpu` implies "tpu".

  Args:
    name: default (one device), mirrored (all local GPUs, or logical CPU devices),
      multi_worker (MultiWorkerMirroredStrategy from TF_CONFIG) or tpu.
    tpu: TPU name or grpc address for `TPUClusterResolver` ("" or "local" for a TPU VM).
  """
  if tpu is not None or name == "tpu":
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == "default":
    return tf.distribute.get_strategy()
  raise ValueError(f"Unknown strategy {name!r}; expected one of {STRATEGIES}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this task writes checkpoints, exports and summaries."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not getattr(resolver, "task_type", None):
    return True
  return resolver.task_type in ("chief", "coordinator") or (
      resolver.task_type == "worker" and resolver.task_id == 0)
