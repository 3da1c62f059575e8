"""orqa.demo's HTTP limits: bounded bodies, idle timeouts, a cap on connections.

The app runs over a stand-in answerer (the HTTP layer is under test, not the model);
tests/test_demo_page.py drives the same server over the real serving model.
"""

import json
import resource
import socket
import threading
import time

import pytest

from orqa import demo


class EchoAnswerer:
  """Answers with the question (and counts calls)."""

  def __init__(self):
    self.calls = 0

  def answer(self, question):
    self.calls += 1
    return {"question": question, "answer": question[::-1], "score": 1.0,
            "evidence": None, "passages": []}


@pytest.fixture
def serve():
  servers = []

  def start(**limits):
    answerer = EchoAnswerer()
    server = demo.DemoServer(demo.make_app(answerer, demo.WEB_DIR), "127.0.0.1", 0,
                             **limits)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    servers.append(server)
    return server.server_address, answerer

  yield start
  for server in servers:
    server.shutdown()


def _status(sock) -> int:
  answer = b""
  while b"\r\n" not in answer:
    chunk = sock.recv(4096)
    if not chunk:
      break
    answer += chunk
  return int(answer.split(b" ", 2)[1]) if answer else 0


def _post(address, question, timeout=30):
  body = json.dumps({"question": question}).encode()
  with socket.create_connection(address, timeout=timeout) as sock:
    sock.sendall(b"POST /api/answer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    data = b""
    while True:
      chunk = sock.recv(65536)
      if not chunk:
        break
      data += chunk
  head, _, payload = data.partition(b"\r\n\r\n")
  return int(head.split(b" ", 2)[1]), json.loads(payload)


def test_answers_and_refuses_large_bodies_in_json(serve):
  address, answerer = serve()
  assert _post(address, "where is paris") == (200, {
      "question": "where is paris", "answer": "sirap si erehw", "score": 1.0,
      "evidence": None, "passages": []})
  status, result = _post(address, "x" * demo.MAX_BODY_BYTES)
  assert status == 413 and "bytes" in result["error"]
  assert answerer.calls == 1


def test_a_streamed_body_is_not_read_into_memory(serve):
  """A chunked body (no Content-Length) of 64 MB is refused after a bounded read."""
  address, answerer = serve()
  before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
  chunk = b"x" * (1 << 20)
  status = 0
  with socket.create_connection(address, timeout=30) as sock:
    sock.sendall(b"POST /api/answer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    try:
      for _ in range(64):
        sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
      sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
      pass  # The server answered and closed early: the point.
    try:
      status = _status(sock)
    except ConnectionResetError:
      status = 413  # Reset after the answer was sent and discarded by the kernel.
  grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
  assert status == 413
  assert grown_mb < 16, f"the server buffered the body: peak memory +{grown_mb:.0f} MB"
  assert answerer.calls == 0


def test_idle_connections_are_closed(serve):
  address, _ = serve(idle_timeout_secs=1)
  with socket.create_connection(address, timeout=20) as sock:
    start = time.time()
    assert sock.recv(1) == b""  # Closed by the server, not by our timeout.
    assert time.time() - start < 15


def test_connections_are_capped_and_threads_do_not_grow(serve):
  address, _ = serve(max_connections=8, threads=2, idle_timeout_secs=60)
  assert _post(address, "warm")[0] == 200
  threads_before = threading.active_count()
  idle = [socket.create_connection(address, timeout=10) for _ in range(200)]
  try:
    time.sleep(1.0)
    # One thread per connection would be +200; a fixed pool adds none.
    assert threading.active_count() <= threads_before + 1
  finally:
    for sock in idle:
      sock.close()
  # Once the idle connections are gone the server answers again.
  assert _post(address, "again")[0] == 200


def test_limits_must_be_positive():
  with pytest.raises(demo.errors.ArgumentError, match="max_connections"):
    demo.DemoServer(demo.make_app(EchoAnswerer(), demo.WEB_DIR), "127.0.0.1", 0,
                    max_connections=0)
