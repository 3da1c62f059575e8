"""Shared pieces of the train-step benchmarks (`realm_train_step.py`, `orqa_train_step.py`,
`profile_train_step.py`): the matmul limit, peak memory, fresh-process runs, profiles.

* `matmul_rate(dtype)`: GFLOP/s of square matmuls (2048 on a CPU, 8192 on a GPU) in this
  process, on the default device: the "limit" every figure is a share of.
* `peak_memory()`: peak resident set size of this process (`ru_maxrss`) and, on a GPU, the
  peak of `tf.config.experimental.get_memory_info`.
* `run_isolated(script, config)`: runs `script --one=<json>` in a fresh Python process and
  returns the JSON object it prints last, so peak memory is per configuration.
* `profile_op_types(fn, logdir)`: runs `fn` once under the TensorFlow profiler and sums the
  op time by op type and by name scope (forward / backward / optimizer, component).
"""

import collections
import glob
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from typing import Any, Callable, Dict, Optional

import tensorflow as tf

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MATMUL_TYPES = ("Einsum", "_MklEinsum", "MatMul", "_MklMatMul", "_FusedMatMul",
                "_MklFusedMatMul", "_MklNativeFusedMatMul", "BatchMatMulV2",
                "_MklBatchMatMulV2", "BatchMatMulV3")


def gpu_device() -> Optional[str]:
  gpus = tf.config.list_logical_devices("GPU")
  return gpus[0].name if gpus else None


def device_description() -> Dict[str, Any]:
  """The device the steps run on, and the CPU's bf16 support."""
  from realm_tf.modeling import precision  # pylint: disable=g-import-not-at-top
  gpus = tf.config.list_physical_devices("GPU")
  info = dict(tensorflow=tf.__version__, cpu_count=os.cpu_count(),
              cpu_bf16=precision.cpu_has_bf16(),
              onednn=os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
              auto_precision=precision.resolve_precision(),
              auto_jit_compile=precision.resolve_jit_compile())
  if gpus:
    details = tf.config.experimental.get_device_details(gpus[0])
    info["device"] = f"GPU {details.get('device_name', gpus[0].name)}"
  else:
    info["device"] = f"CPU x{os.cpu_count()} ({platform.machine()})"
  try:
    info["load_average_1m"] = round(os.getloadavg()[0], 2)
  except OSError:
    pass
  return info


def matmul_rate(dtype=tf.float32, min_seconds: float = 1.0, per_cpu_second: bool = False
                ) -> float:
  """GFLOP/s of n x n matmuls in `dtype` (n = 8192 on a GPU, 2048 on a CPU); with
  `per_cpu_second`, GFLOP per second of this process's CPU time instead (on a shared
  CPU machine that is what other processes' load changes least)."""
  n = 8192 if gpu_device() else 2048
  a = tf.random.normal([n, n], dtype=tf.float32)
  b = tf.random.normal([n, n], dtype=tf.float32)
  a, b = tf.cast(a, dtype), tf.cast(b, dtype)

  @tf.function
  def product(x):
    return tf.reduce_sum(tf.cast(tf.matmul(x, b)[:1, :1], tf.float32))

  float(product(a))
  count, start, cpu_start = 0, time.perf_counter(), cpu_seconds()
  while True:
    total = product(a)
    count += 1
    elapsed = time.perf_counter() - start
    if elapsed >= min_seconds and count >= 2:
      break
  float(total)
  elapsed = (cpu_seconds() - cpu_start) if per_cpu_second else time.perf_counter() - start
  return 2.0 * n ** 3 * count / elapsed / 1e9


def reset_gpu_peak():
  device = gpu_device()
  if device:
    tf.config.experimental.reset_memory_stats(device.replace("/device:", ""))


def peak_memory() -> Dict[str, float]:
  """Peak RSS (GiB) of this process; the peak bytes in use of TensorFlow's CPU allocator
  where it keeps statistics (the oneDNN allocator does), i.e. the tensors' own peak
  without the pool's fragmentation; on a GPU the peak device memory (GiB)."""
  result = dict(peak_rss_gib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss /
                                   2 ** 20, 3))
  try:
    info = tf.config.experimental.get_memory_info("CPU:0")
    result["cpu_allocator_peak_gib"] = round(info["peak"] / 2 ** 30, 3)
  except ValueError:  # No statistics without oneDNN's allocator.
    pass
  device = gpu_device()
  if device:
    info = tf.config.experimental.get_memory_info(device.replace("/device:", ""))
    result["gpu_peak_gib"] = round(info["peak"] / 2 ** 30, 3)
  return result


def cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def system_seconds() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def time_steps(step: Callable[[], Any], num_steps: int, read: Callable[[Any], float]
               ) -> Dict[str, Any]:
  """Runs `step` `num_steps` times; wall, CPU and system seconds per step, read values."""
  values = []
  cpu0, sys0, start = cpu_seconds(), system_seconds(), time.perf_counter()
  for _ in range(num_steps):
    values.append(read(step()))
  wall = time.perf_counter() - start
  return dict(s_per_step=wall / num_steps, cpu_s_per_step=(cpu_seconds() - cpu0) / num_steps,
              sys_s_per_step=(system_seconds() - sys0) / num_steps, values=values)


def rates(flops_per_step: float, timing: Dict[str, Any], limits: Dict[str, float],
          cpu_limit: Optional[float] = None) -> Dict[str, float]:
  """Achieved GFLOP/s and its share of each measured matmul limit; with `cpu_limit`
  (float32 matmul GFLOP per CPU second), also the share per CPU second, which other
  processes' load distorts less than wall time (an upper bound of the quiet-machine
  share where the step does not keep every core busy)."""
  achieved = flops_per_step / timing["s_per_step"] / 1e9
  out = dict(achieved_gflops=round(achieved, 2))
  for name, limit in limits.items():
    out[f"share_of_{name}"] = round(achieved / limit, 3)
  if cpu_limit and not gpu_device():
    per_cpu_s = flops_per_step / timing["cpu_s_per_step"] / 1e9
    out["share_of_float32_matmul_per_cpu_s"] = round(per_cpu_s / cpu_limit, 3)
  return out


def timed_step_fields(step: Callable[[], Any], read: Callable[[Any], float],
                      warmup_steps: int, steps: int, bfloat16: bool,
                      flops_per_step: float, batch_size: int) -> Dict[str, Any]:
  """Times `step` after `warmup_steps` untimed ones, between two measurements of the
  matmul limits (float32, and bfloat16 if `bfloat16`; averaged, as the machine is shared),
  and returns the result fields the train-step benchmarks share: time per step, examples/s,
  CPU and system seconds, FLOPs, the limits, the achieved shares, peak memory and the
  values `read` took from the timed steps."""

  def limits_now() -> Dict[str, float]:
    now = {"float32_matmul": matmul_rate(tf.float32)}
    if bfloat16:
      now["bfloat16_matmul"] = matmul_rate(tf.bfloat16)
    return now

  warmup = time_steps(step, warmup_steps, read)
  before, cpu_before = limits_now(), matmul_rate(tf.float32, per_cpu_second=True)
  timing = time_steps(step, steps, read)
  after, cpu_after = limits_now(), matmul_rate(tf.float32, per_cpu_second=True)
  limits = {k: (v + after[k]) / 2 for k, v in before.items()}
  cpu_limit = (cpu_before + cpu_after) / 2
  return dict(warmup_s=round(warmup["s_per_step"] * warmup_steps, 2),
              s_per_step=round(timing["s_per_step"], 3),
              examples_per_s=round(batch_size / timing["s_per_step"], 4),
              cpu_s_per_step=round(timing["cpu_s_per_step"], 2),
              sys_s_per_step=round(timing["sys_s_per_step"], 2),
              tflop_per_example=round(flops_per_step / batch_size / 1e12, 4),
              **{f"{k}_gflops": round(v, 1) for k, v in limits.items()},
              float32_matmul_gflop_per_cpu_s=round(cpu_limit, 1),
              **rates(flops_per_step, timing, limits, cpu_limit),
              **peak_memory(),
              losses=[round(v, 4) for v in timing["values"]])


def run_isolated(script: str, config: Dict[str, Any], timeout: Optional[float] = None
                 ) -> Dict[str, Any]:
  """Runs `python script --one=<json config>` in a fresh process; its last JSON line."""
  env = dict(os.environ)
  env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
  proc = subprocess.run([sys.executable, script, "--one=" + json.dumps(config)],
                        capture_output=True, text=True, env=env, timeout=timeout,
                        check=False)
  lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
  if proc.returncode != 0 or not lines:
    tail = (proc.stderr or "")[-2000:]
    return dict(config, error=f"exit {proc.returncode}: {tail}")
  return json.loads(lines[-1])


def _xspace(logdir: str):
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=g-import-not-at-top
  paths = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True),
                 key=os.path.getmtime)
  space = xplane_pb2.XSpace()
  with open(paths[-1], "rb") as f:
    space.ParseFromString(f.read())
  return space


def op_events(logdir: str):
  """(op name, op type, seconds) of every TensorFlow op executed in the profile."""
  space = _xspace(logdir)
  for plane in space.planes:
    metadata = plane.event_metadata
    for line in plane.lines:
      if not line.name.startswith("tf_Compute") and "TensorFlow Ops" not in line.name:
        continue
      for event in line.events:
        label = metadata[event.metadata_id].name
        if ":" not in label or "::" in label:
          continue
        name, op_type = label.rsplit(":", 1)
        yield name, op_type, event.duration_ps / 1e12


def profile_op_types(fn: Callable[[], Any], logdir: str,
                     scope_of: Callable[[str, str], str]) -> Dict[str, Any]:
  """Profiles one call of `fn`; op seconds by op type, by `scope_of(name, type)` and by
  category (matmul / element-wise), with each share of the total op time."""
  tf.profiler.experimental.start(logdir)
  try:
    fn()
  finally:
    tf.profiler.experimental.stop()
  by_type, by_scope = collections.Counter(), collections.Counter()
  for name, op_type, seconds in op_events(logdir):
    by_type[op_type] += seconds
    by_scope[scope_of(name, op_type)] += seconds
  total = sum(by_type.values()) or 1.0
  table = lambda counter: {k: dict(s=round(v, 3), share=round(v / total, 3))
                           for k, v in counter.most_common()}
  matmul = sum(v for k, v in by_type.items() if k in MATMUL_TYPES)
  return dict(op_seconds=round(total, 3), matmul_share=round(matmul / total, 3),
              by_type=table(by_type), by_scope=table(by_scope))


def layer_kind(name: str) -> str:
  """The part of a transformer layer (or other component) an op belongs to."""
  for pattern, kind in ((r"self_attention/(query|key|value|attention_output)/", "projections"),
                        (r"self_attention/(einsum|softmax|dropout)", "attention"),
                        (r"/(intermediate|output)/", "feed_forward"),
                        (r"(Gelu|activation)", "gelu"),
                        (r"layer_norm|LayerNorm", "layer_norm"),
                        (r"dropout", "dropout")):
    if re.search(pattern, name):
      return kind
  return "other"
