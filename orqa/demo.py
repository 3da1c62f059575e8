r"""The ORQA demo page (spec 6.8) over the serving SavedModel: `python -m orqa.demo`.

  python -m orqa.demo --serving_model=serving_dir [--port=8080] [--host=127.0.0.1]

A standard-library HTTP server (`http.server`) with:

  GET  /                 the page (`orqa/web/index.html`): a question box; the answer
                         highlighted inside its evidence passage; the retrieved passages
                         with their titles and retrieval scores
  GET  /static/<file>    `orqa/web/<file>` (the page's script and style)
  POST /api/answer       {"question": "..."} -> {"question", "answer", "score",
                         "evidence": {"block_id", "title", "text", "highlight": [start,
                         end] (character offsets in text, or null)}, "passages": [{"rank",
                         "block_id", "title", "text", "score"}]}; errors: 400 / 413 with
                         {"error": "..."}

The serving model comes from `python -m export.serving`; it is loaded once (with
`tensorflow_text`, and `scann` when importable) and warmed up before the port opens.
The server listens on loopback unless `--host` says otherwise.
"""

import http.server
import json
import mimetypes
import os
import threading
from typing import Any, Dict, Optional

from absl import app
from absl import flags
from absl import logging

from realm_tf import cli
from realm_tf import errors

FLAGS = flags.FLAGS
WEB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web")
MAX_BODY_BYTES = 64 * 1024


def define_flags():
  flags.DEFINE_string("serving_model", None, "A SavedModel from python -m export.serving.")
  flags.DEFINE_integer("port", 8080, "Port (0: any free port).")
  flags.DEFINE_string("host", "127.0.0.1", "Interface to listen on.")
  flags.DEFINE_string("web_path", "", "Static files (default: orqa/web next to this file).")
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
  """The question of a POST /api/answer body."""
  if len(body) > MAX_BODY_BYTES:
    raise RequestError(413, f"Request body over {MAX_BODY_BYTES} bytes.")
  try:
    request = json.loads(body.decode("utf-8"))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise RequestError(400, f"The body must be a JSON object: {e}") from e
  if not isinstance(request, dict) or not isinstance(request.get("question"), str):
    raise RequestError(400, 'The body must be a JSON object {"question": "<text>"}.')
  return request["question"]


def make_handler(answerer: Answerer, web_path: str):
  """The request handler class bound to an answerer and a static directory."""

  class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "orqa-demo/1.0"

    def log_message(self, fmt, *args):  # pylint: disable=arguments-differ
      logging.info("%s %s", self.address_string(), fmt % args)

    def _send(self, status: int, body: bytes, content_type: str):
      self.send_response(status)
      self.send_header("Content-Type", content_type)
      self.send_header("Content-Length", str(len(body)))
      self.send_header("Cache-Control", "no-store")
      self.end_headers()
      self.wfile.write(body)

    def _send_json(self, status: int, value: Any):
      self._send(status, json.dumps(value).encode("utf-8"), "application/json; charset=utf-8")

    def _send_file(self, name: str):
      path = os.path.normpath(os.path.join(web_path, name))
      if not path.startswith(os.path.normpath(web_path) + os.sep) or not os.path.isfile(path):
        self._send_json(404, {"error": f"Not found: {self.path}"})
        return
      content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
      if content_type.startswith("text/") or content_type.endswith("javascript"):
        content_type += "; charset=utf-8"
      with open(path, "rb") as f:
        self._send(200, f.read(), content_type)

    def do_GET(self):  # pylint: disable=invalid-name
      route = self.path.split("?", 1)[0]
      if route in ("/", "/index.html"):
        self._send_file("index.html")
      elif route.startswith("/static/"):
        self._send_file(route[len("/static/"):])
      else:
        self._send_json(404, {"error": f"Not found: {route}"})

    def do_POST(self):  # pylint: disable=invalid-name
      if self.path.split("?", 1)[0] != "/api/answer":
        self._send_json(404, {"error": f"Not found: {self.path}"})
        return
      try:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
          raise RequestError(413, f"Request body over {MAX_BODY_BYTES} bytes.")
        question = parse_request(self.rfile.read(length))
        self._send_json(200, answerer.answer(question))
      except RequestError as e:
        self._send_json(e.status, {"error": str(e)})
      except Exception as e:  # pylint: disable=broad-except  (the server keeps serving)
        logging.exception("Answering failed")
        self._send_json(500, {"error": f"{type(e).__name__}: {e}"})

  return Handler


def make_server(serving_model: str, host: str = "127.0.0.1", port: int = 8080,
                web_path: Optional[str] = None) -> http.server.ThreadingHTTPServer:
  """Loads and warms up the model, then binds the server (not yet serving)."""
  answerer = Answerer(serving_model)
  answerer.answer("")  # Warm-up, as the original demo.
  handler = make_handler(answerer, web_path or WEB_DIR)
  return http.server.ThreadingHTTPServer((host, port), handler)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  server = make_server(FLAGS.serving_model, FLAGS.host, FLAGS.port, FLAGS.web_path or None)
  host, port = server.server_address[:2]
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
