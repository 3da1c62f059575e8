r"""Starts a tf.data service dispatcher or worker for distributed example generation.

REALM's example generators (`language/realm/example_generator.py`) were gRPC servers that
the trainer polled. realm-tf generates examples with a serializable `tf.data` pipeline
(`realm_tf.generation.pipeline`) that the trainer sends to tf.data service workers with
`--data_service=grpc://host:port`:

  python -m realm_tf.data_service --mode=dispatcher --port=5050 --work_dir=/shared/dispatcher
  python -m realm_tf.data_service --mode=worker --port=5051 \
      --dispatcher_address=dispatcher-host:5050

Workers read the index and the corpora from the paths in the pipeline, so they need the
same file system view (e.g. GCS) as the trainer, as the original generators did.
"""

from absl import flags
from absl import logging

import realm_tf  # pylint: disable=unused-import  (selects Keras 2 before TensorFlow)
import tensorflow as tf

from realm_tf import cli

FLAGS = flags.FLAGS


def define_flags():
  """Defines the command-line flags (only when run as a program: tests import this
  module beside other entry points)."""
  flags.DEFINE_enum("mode", None, ["dispatcher", "worker"], "Which server to start.")
  flags.DEFINE_integer("port", 0, "Port to listen on (0: pick a free one and print it).")
  flags.DEFINE_string("dispatcher_address", None, "host:port of the dispatcher (workers).")
  flags.DEFINE_string("worker_address", None, "Address the dispatcher should use to reach "
                      "this worker (default: localhost:<port>).")
  flags.DEFINE_string("work_dir", None, "Dispatcher journal directory: with it, a restarted "
                      "dispatcher recovers its jobs (fault tolerance).")


def start_server(mode: str, port: int = 0, dispatcher_address: str = None,
                 worker_address: str = None, work_dir: str = None):
  """Starts and returns a `DispatchServer` or `WorkerServer`."""
  service = tf.data.experimental.service
  if mode == "dispatcher":
    return service.DispatchServer(service.DispatcherConfig(
        port=port, work_dir=work_dir, fault_tolerant_mode=bool(work_dir)))
  if not dispatcher_address:
    raise ValueError("--dispatcher_address is required for --mode=worker")
  config = dict(dispatcher_address=dispatcher_address, port=port)
  if worker_address:
    config["worker_address"] = worker_address
  return service.WorkerServer(service.WorkerConfig(**config))


def main(argv):
  del argv
  server = start_server(FLAGS.mode, FLAGS.port, FLAGS.dispatcher_address,
                        FLAGS.worker_address, FLAGS.work_dir)
  # Workers expose no public address; `_address` is "localhost:<bound port>".
  target = server.target if FLAGS.mode == "dispatcher" else server._address  # pylint: disable=protected-access
  print(f"tf.data service {FLAGS.mode} serving at {target}", flush=True)
  logging.info("tf.data service %s serving at %s", FLAGS.mode, target)
  server.join()  # until killed (SIGTERM/SIGINT)


if __name__ == "__main__":
  define_flags()
  flags.mark_flag_as_required("mode")
  cli.run(main)
