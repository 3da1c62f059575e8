"""Run a test snippet in a fresh Python process with N logical CPU devices.

Logical devices must be configured before TensorFlow initializes its devices, which has
already happened in the pytest process. `run_with_logical_cpus` therefore starts a new
interpreter that configures `num_devices` logical CPUs, then runs `script`, which reports
its result by calling `emit(obj)` (JSON-serializable). Inside the script,
`mirrored_strategy()` returns a `MirroredStrategy` over all logical CPUs.

  result = strategy_utils.run_with_logical_cpus('''
  strategy = mirrored_strategy()
  emit({"replicas": strategy.num_replicas_in_sync})
  ''')
"""

import json
import os
import subprocess
import sys
import textwrap
from typing import Any, Optional

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_RESULT_MARKER = "__STRATEGY_UTILS_RESULT__"

_PREAMBLE = """
import json, os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, {repo_root!r})
import tensorflow as tf
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * {num_devices})

def mirrored_strategy():
  devices = [d.name for d in tf.config.list_logical_devices("CPU")]
  return tf.distribute.MirroredStrategy(devices)

def emit(obj):
  print({marker!r} + json.dumps(obj), flush=True)
"""


def run_with_logical_cpus(script: str, num_devices: int = 2, timeout: float = 600,
                          env: Optional[dict] = None) -> Any:
  """Runs `script` in a subprocess with `num_devices` logical CPUs; returns what it emits.

  Raises AssertionError (with the child's output) if the child fails or emits nothing.
  """
  source = _PREAMBLE.format(repo_root=REPO_ROOT, num_devices=num_devices,
                            marker=_RESULT_MARKER) + textwrap.dedent(script)
  child_env = dict(os.environ)
  child_env.update(env or {})
  proc = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True,
                        timeout=timeout, env=child_env, cwd=REPO_ROOT, check=False)
  results = [line[len(_RESULT_MARKER):] for line in proc.stdout.splitlines()
             if line.startswith(_RESULT_MARKER)]
  if proc.returncode != 0 or not results:
    raise AssertionError(
        f"Subprocess failed (exit code {proc.returncode}).\n--- stdout ---\n"
        f"{proc.stdout[-5000:]}\n--- stderr ---\n{proc.stderr[-5000:]}")
  return json.loads(results[-1])
