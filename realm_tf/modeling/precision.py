"""Compute precision and XLA of the training steps, chosen from the hardware.

`precision` is "float32", "mixed_bfloat16" (Keras' mixed policy: variables, optimizer
state, losses and the model outputs the losses read stay float32; matmuls, activations
and their gradients are bfloat16) or "auto":

* on a TPU, or a GPU of compute capability 8.0 or more (A100, H100, ...):
  mixed_bfloat16;
* on a CPU with bfloat16 matrix instructions (x86 `avx512_bf16` or `amx_bf16` in
  /proc/cpuinfo, AArch64 `bf16`): mixed_bfloat16, which oneDNN runs on those units;
* otherwise (an AVX2-only CPU, an older GPU) float32: without bf16 units TensorFlow
  emulates bfloat16 matmuls, slower than float32.

`jit_compile` None ("auto") compiles the steps with XLA on GPUs and TPUs, where it fuses
the element-wise work into the matmuls; not on CPUs, where TensorFlow's oneDNN kernels
beat XLA's (docs/BENCHMARKS.md).

`policy_scope(precision)` sets the Keras global policy while a model is built (layers
take their dtype policy when they are created) and restores the previous one.
"""

import contextlib
import platform
from typing import Optional

import tensorflow as tf
import tf_keras

AUTO = "auto"
FLOAT32 = "float32"
MIXED_BFLOAT16 = "mixed_bfloat16"
PRECISIONS = (AUTO, FLOAT32, MIXED_BFLOAT16)
# /proc/cpuinfo flags of CPUs with bfloat16 dot-product / matrix instructions.
X86_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
ARM_BF16_FLAG = "bf16"


def check_precision(precision: str) -> str:
  """`precision` if it is one of `PRECISIONS`, else ValueError naming the choices."""
  if precision not in PRECISIONS:
    raise ValueError(f"precision={precision!r}; expected one of {PRECISIONS}.")
  return precision


def cpu_flags(cpuinfo_path: str = "/proc/cpuinfo") -> frozenset:
  """The CPU feature flags of /proc/cpuinfo (x86 `flags`, AArch64 `Features`); empty
  where there is no such file."""
  try:
    with open(cpuinfo_path, encoding="utf-8", errors="replace") as f:
      for line in f:
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
          return frozenset(value.split())
  except OSError:
    pass
  return frozenset()


def cpu_has_bf16(cpuinfo_path: str = "/proc/cpuinfo") -> bool:
  """Whether the CPU has bfloat16 matrix instructions (`X86_BF16_FLAGS`, or
  `ARM_BF16_FLAG` on AArch64)."""
  flags = cpu_flags(cpuinfo_path)
  if platform.machine().lower() in ("aarch64", "arm64"):
    return ARM_BF16_FLAG in flags
  return any(flag in flags for flag in X86_BF16_FLAGS)


def _gpu_supports_bf16(gpu) -> bool:
  details = tf.config.experimental.get_device_details(gpu)
  capability = details.get("compute_capability")
  return bool(capability) and tuple(capability) >= (8, 0)


def accelerator() -> Optional[str]:
  """"TPU", "GPU" or None (CPU only): the devices TensorFlow sees."""
  if tf.config.list_logical_devices("TPU"):
    return "TPU"
  if tf.config.list_physical_devices("GPU"):
    return "GPU"
  return None


def resolve_precision(precision: str = AUTO, cpuinfo_path: str = "/proc/cpuinfo") -> str:
  """"float32" or "mixed_bfloat16": `precision`, with "auto" chosen from the hardware
  (module docstring)."""
  check_precision(precision)
  if precision != AUTO:
    return precision
  kind = accelerator()
  if kind == "TPU":
    return MIXED_BFLOAT16
  if kind == "GPU":
    gpus = tf.config.list_physical_devices("GPU")
    return MIXED_BFLOAT16 if all(_gpu_supports_bf16(g) for g in gpus) else FLOAT32
  return MIXED_BFLOAT16 if cpu_has_bf16(cpuinfo_path) else FLOAT32


def resolve_jit_compile(jit_compile: Optional[bool] = None) -> bool:
  """`jit_compile`, with None meaning: on with a GPU or TPU, off on CPUs."""
  if jit_compile is not None:
    return bool(jit_compile)
  return accelerator() is not None


@contextlib.contextmanager
def policy_scope(precision: str = AUTO):
  """Builds layers under the Keras policy of `precision` (resolved); yields its name."""
  name = resolve_precision(precision)
  previous = tf_keras.mixed_precision.global_policy()
  tf_keras.mixed_precision.set_global_policy(name)
  try:
    yield name
  finally:
    tf_keras.mixed_precision.set_global_policy(previous)
