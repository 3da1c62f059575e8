r"""The ORQA demo page over the serving SavedModel: `python -m orqa.demo`.

It replaces the original `language/orqa/predict/orqa_demo.py`.

  python -m orqa.demo --serving_model=serving_dir [--port=8080] [--host=127.0.0.1]

A WSGI app served by waitress (a small, well-kept pure-Python HTTP server), with:

  GET  /                 the page (`orqa/web/index.html`): a question box; the answer
                         highlighted inside its evidence passage; the retrieved passages
                         with their titles and retrieval scores
  GET  /static/<file>    `orqa/web/<file>` (the page's script and style)
  POST /api/answer       {"question": "..."} -> {"question", "answer", "score",
                         "evidence": {"block_id", "title", "text", "highlight": [start,
                         end] (character offsets in text, or null)}, "passages": [{"rank",
                         "block_id", "title", "text", "score"}]}; errors: 4xx with
                         {"error": "..."}

Limits: a request body is at most `MAX_BODY_BYTES` (64 KiB; 413 beyond, and the server
never buffers more than `SERVER_MAX_BODY_BYTES` of any body, chunked or not); every
malformed request gets a 4xx (a bad or negative Content-Length, a body that is not a
UTF-8 JSON object `{"question": str}`, a lone surrogate, nesting too deep); connections
idle for `--idle_timeout_secs` are closed; at most `--max_connections` are open at once
(more wait in the listen backlog); `--threads` handle requests, whatever the number of
connections.

The serving model comes from `python -m export.serving`; it is loaded once (with
`tensorflow_text`, and `scann` when importable) and warmed up before the port opens.
The server listens on loopback unless `--host` says otherwise.
"""

import json
import logging as std_logging
import mimetypes
import os
import threading
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from absl import app
from absl import flags
from absl import logging
from waitress import server as waitress_server

from realm_tf import cli
from realm_tf import errors

FLAGS = flags.FLAGS
WEB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web")
MAX_BODY_BYTES = 64 * 1024
# What the server itself buffers at most (it answers 413 beyond, without the app); over
# MAX_BODY_BYTES so that the app answers the 413s of ordinary oversized requests in JSON.
SERVER_MAX_BODY_BYTES = 4 * MAX_BODY_BYTES


def define_flags():
  flags.DEFINE_string("serving_model", None, "A SavedModel from python -m export.serving.")
  flags.DEFINE_integer("port", 8080, "Port (0: any free port).")
  flags.DEFINE_string("host", "127.0.0.1", "Interface to listen on.")
  flags.DEFINE_string("web_path", "", "Static files (default: orqa/web next to this file).")
  flags.DEFINE_integer("threads", 4, "Threads answering requests.")
  flags.DEFINE_integer("max_connections", 64, "Connections open at once (more wait).")
  flags.DEFINE_integer("idle_timeout_secs", 30, "Close connections idle this long.")
  flags.mark_flags_as_required(["serving_model"])


class RequestError(errors.RealmInputError):
  """A request the API refuses (HTTP status and message)."""

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status


def _text(value: bytes) -> str:
  return value.decode("utf-8", errors="replace")


def _char_offset(text: bytes, byte_offset: int) -> int:
  return len(text[:byte_offset].decode("utf-8", errors="replace"))


class Answerer:
  """Calls the serving signature for one question and shapes the JSON answer."""

  def __init__(self, serving_model: str):
    import tensorflow_text  # pylint: disable=g-import-not-at-top,unused-import
    try:
      import scann  # pylint: disable=g-import-not-at-top,unused-import
    except ImportError:
      pass
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    self._tf = tf
    self._model = tf.saved_model.load(serving_model)
    self._signature = self._model.signatures["serving_default"]
    self._lock = threading.Lock()

  def answer(self, question: str) -> Dict[str, Any]:
    with self._lock:  # One request at a time keeps the CPU threads for that request.
      out = self._signature(question=self._tf.constant([question]))
    out = {k: v.numpy()[0] for k, v in out.items()}
    evidence = None
    if int(out["answer_block_id"]) >= 0:
      text = out["answer_block_text"]
      start, end = int(out["answer_start"]), int(out["answer_end"])
      highlight = ([_char_offset(text, start), _char_offset(text, end)]
                   if 0 <= start < end else None)
      evidence = dict(block_id=int(out["answer_block_id"]),
                      title=_text(out["answer_block_title"]), text=_text(text),
                      highlight=highlight)
    passages = [dict(rank=i + 1, block_id=int(b), title=_text(t), text=_text(x),
                     score=float(s))
                for i, (b, t, x, s) in enumerate(zip(out["block_ids"], out["block_titles"],
                                                     out["block_texts"],
                                                     out["retrieval_scores"]))
                if int(b) >= 0]
    score = float(out["answer_score"])
    return dict(question=question, answer=_text(out["answer"]),
                score=score if score > -1e30 else None, evidence=evidence,
                passages=passages)


def parse_request(body: bytes) -> str:
  """The question of a POST /api/answer body.

  Raises:
    RequestError: 413 for a body over `MAX_BODY_BYTES`, 400 for anything but a UTF-8
      JSON object with a string `question` of valid Unicode.
  """
  if len(body) > MAX_BODY_BYTES:
    raise RequestError(413, f"Request body over {MAX_BODY_BYTES} bytes.")
  try:
    request = json.loads(body.decode("utf-8"))
  except (UnicodeDecodeError, ValueError) as e:  # ValueError: JSON, over-long integers
    raise RequestError(400, f"The body must be a JSON object: {e}") from None
  except RecursionError:
    raise RequestError(400, "The body must be a JSON object: nested too deeply.") from None
  if not isinstance(request, dict) or not isinstance(request.get("question"), str):
    raise RequestError(400, 'The body must be a JSON object {"question": "<text>"}.')
  question = request["question"]
  try:
    question.encode("utf-8")
  except UnicodeEncodeError:
    raise RequestError(400, "The question is not valid Unicode (a lone surrogate).") from None
  return question


def read_body(environ: Dict[str, Any]) -> bytes:
  """The request body, reading at most `MAX_BODY_BYTES` + 1 bytes.

  Raises:
    RequestError: 413 when the declared or the actual length is over the limit, 400 for
      a malformed Content-Length.
  """
  declared = environ.get("CONTENT_LENGTH") or "0"
  if not declared.isdigit():
    raise RequestError(400, f"Invalid Content-Length {declared!r}.")
  if int(declared) > MAX_BODY_BYTES:
    raise RequestError(413, f"Request body over {MAX_BODY_BYTES} bytes.")
  body = environ["wsgi.input"].read(min(int(declared), MAX_BODY_BYTES + 1))
  if len(body) > MAX_BODY_BYTES:
    raise RequestError(413, f"Request body over {MAX_BODY_BYTES} bytes.")
  return body


def _response(start_response, status: int, body: bytes, content_type: str) -> List[bytes]:
  reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            413: "Payload Too Large", 500: "Internal Server Error"}.get(status, "Error")
  start_response(f"{status} {reason}", [
      ("Content-Type", content_type), ("Content-Length", str(len(body))),
      ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")])
  return [body]


def _json_response(start_response, status: int, value: Any) -> List[bytes]:
  return _response(start_response, status, json.dumps(value).encode("utf-8"),
                   "application/json; charset=utf-8")


def _static_file(web_path: str, name: str) -> Tuple[bytes, str]:
  """(bytes, content type) of a file under `web_path`; RequestError 404 otherwise."""
  root = os.path.normpath(web_path)
  path = os.path.normpath(os.path.join(root, name))
  try:
    inside = path.startswith(root + os.sep) and os.path.isfile(path)
  except ValueError:  # An embedded NUL byte.
    inside = False
  if not inside:
    raise RequestError(404, f"Not found: /static/{name}")
  content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
  if content_type.startswith("text/") or content_type.endswith("javascript"):
    content_type += "; charset=utf-8"
  with open(path, "rb") as f:
    return f.read(), content_type


def make_app(answerer, web_path: str) -> Callable:
  """The WSGI app: the page, its static files and POST /api/answer over `answerer`."""

  def application(environ, start_response) -> Iterable[bytes]:
    method = environ.get("REQUEST_METHOD", "")
    route = environ.get("PATH_INFO", "")
    try:
      if route == "/api/answer":
        if method != "POST":
          raise RequestError(405, "Use POST /api/answer.")
        question = parse_request(read_body(environ))
        return _json_response(start_response, 200, answerer.answer(question))
      if method not in ("GET", "HEAD"):
        raise RequestError(405, f"{method} is not allowed on {route}.")
      if route in ("/", "/index.html"):
        return _response(start_response, 200, *_static_file(web_path, "index.html"))
      if route.startswith("/static/"):
        return _response(start_response, 200,
                         *_static_file(web_path, route[len("/static/"):]))
      raise RequestError(404, f"Not found: {route}")
    except RequestError as e:
      return _json_response(start_response, e.status, {"error": str(e)})
    except Exception as e:  # pylint: disable=broad-except  (the server keeps serving)
      logging.exception("Answering failed")
      return _json_response(start_response, 500, {"error": f"{type(e).__name__}: {e}"})

  return application


class DemoServer:
  """A waitress server of a WSGI app with the demo's limits, and a stop for tests.

  Args:
    application: the WSGI app.
    host, port: where to listen (port 0: any free port).
    threads: threads answering requests.
    max_connections: connections open at once; more wait in the listen backlog.
    idle_timeout_secs: connections idle this long are closed.
  """

  def __init__(self, application: Callable, host: str = "127.0.0.1", port: int = 8080,
               threads: int = 4, max_connections: int = 64, idle_timeout_secs: int = 30):
    for name, value in (("threads", threads), ("max_connections", max_connections),
                        ("idle_timeout_secs", idle_timeout_secs)):
      if value < 1:
        raise errors.ArgumentError(f"--{name}={value} must be positive.")
    self._server = waitress_server.create_server(
        application, host=host, port=port, threads=threads,
        connection_limit=max_connections, channel_timeout=idle_timeout_secs,
        cleanup_interval=max(1, min(idle_timeout_secs, 30)),
        max_request_body_size=SERVER_MAX_BODY_BYTES, max_request_header_size=64 * 1024,
        asyncore_use_poll=True, expose_tracebacks=False, ident="orqa-demo")
    self._stopped = threading.Event()

  @property
  def server_address(self) -> Tuple[str, int]:
    return self._server.effective_host, int(self._server.effective_port)

  def serve_forever(self) -> None:
    """Serves until `shutdown()` (or Ctrl-C)."""
    self._server.run()

  def shutdown(self) -> None:
    """Stops serving: closes the listening socket and every connection."""
    if self._stopped.is_set():
      return
    self._stopped.set()
    std_logging.getLogger("waitress").setLevel(std_logging.CRITICAL)
    server = self._server
    while server._map:  # pylint: disable=protected-access
      for dispatcher in list(server._map.values()):  # pylint: disable=protected-access
        dispatcher.handle_close()
    server.task_dispatcher.shutdown()

  def server_close(self) -> None:
    self.shutdown()


def make_server(serving_model: str, host: str = "127.0.0.1", port: int = 8080,
                web_path: Optional[str] = None, threads: int = 4,
                max_connections: int = 64, idle_timeout_secs: int = 30) -> DemoServer:
  """Loads and warms up the model, then binds the server (not yet serving)."""
  answerer = Answerer(serving_model)
  answerer.answer("")  # Warm-up, as the original demo.
  return DemoServer(make_app(answerer, web_path or WEB_DIR), host, port, threads=threads,
                    max_connections=max_connections, idle_timeout_secs=idle_timeout_secs)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  server = make_server(FLAGS.serving_model, FLAGS.host, FLAGS.port, FLAGS.web_path or None,
                       threads=FLAGS.threads, max_connections=FLAGS.max_connections,
                       idle_timeout_secs=FLAGS.idle_timeout_secs)
  host, port = server.server_address
  print(f"ORQA demo on http://{host}:{port}/  (Ctrl-C stops it)", flush=True)
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    pass
  finally:
    server.server_close()


if __name__ == "__main__":
  define_flags()
  cli.run(main)
