"""orqa.demo: the JSON API and the page in headless Chromium.

The server runs in this process on a free loopback port over the tiny serving model of
`tests/serving_testing.py` (untrained: the "expected answer" of a sample question is what
the SavedModel answers). The browser test needs the Debian packages `chromium` and
`chromium-driver` (`/usr/bin/chromium`, `/usr/bin/chromedriver`) and `selenium`; it is
skipped, saying so, where they are absent.
"""

import json
import os
import shutil
import socket
import tempfile
import threading
import urllib.error
import urllib.request

import pytest

import orqa  # pylint: disable=unused-import
import tensorflow as tf

from export import serving
from tests import serving_testing
from orqa import demo
from orqa.data import jsonl_io
from realm_tf import sample_data

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def serving_dir(serving_shared_base):
  return serving_testing.cached_serving_model(serving_shared_base)


@pytest.fixture(scope="module")
def server_url(serving_dir):
  server = demo.make_server(serving_dir, host="127.0.0.1", port=0)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  host, port = server.server_address[:2]
  assert host == "127.0.0.1"
  yield f"http://127.0.0.1:{port}"
  server.shutdown()
  server.server_close()


@pytest.fixture(scope="module")
def sample_question():
  return next(r for _, r in jsonl_io.read_jsonl(sample_data.QA_TRAIN_PATH))["question"]


@pytest.fixture(scope="module")
def expected(serving_dir, sample_question):
  out = serving.load(serving_dir).signatures[serving.SIGNATURE_KEY](
      question=tf.constant([sample_question]))
  return {k: v.numpy()[0] for k, v in out.items()}


def _post(url, body: bytes):
  request = urllib.request.Request(url + "/api/answer", data=body, method="POST",
                                   headers={"Content-Type": "application/json"})
  try:
    with urllib.request.urlopen(request, timeout=60) as response:
      return response.status, json.loads(response.read())
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read())


def test_api_answer(server_url, sample_question, expected):
  status, result = _post(server_url, json.dumps({"question": sample_question}).encode())
  assert status == 200
  assert result["answer"] == expected["answer"].decode()
  assert result["evidence"]["block_id"] == int(expected["answer_block_id"])
  start, end = result["evidence"]["highlight"]
  highlighted = result["evidence"]["text"][start:end]
  assert result["answer"].replace(" ", "") in highlighted.replace(" ", "")
  assert [p["block_id"] for p in result["passages"]] == expected["block_ids"].tolist()


def test_api_errors_keep_the_server_up(server_url):
  assert _post(server_url, b"not json")[0] == 400
  assert _post(server_url, json.dumps({"question": 3}).encode())[0] == 400
  assert _post(server_url, json.dumps(["q"]).encode())[0] == 400
  assert _post(server_url, b"x" * (demo.MAX_BODY_BYTES + 1))[0] == 413
  status, result = _post(server_url, json.dumps({"question": ""}).encode())
  assert status == 200 and result["answer"] == "" and result["passages"] == []
  with urllib.request.urlopen(server_url + "/", timeout=30) as response:
    assert b"question-form" in response.read()
  with pytest.raises(urllib.error.HTTPError):
    urllib.request.urlopen(server_url + "/static/../demo.py", timeout=30)


def _raw(url, request: bytes, timeout=30) -> int:
  """Sends raw bytes to the server; returns the HTTP status of its answer."""
  host, port = url.rsplit("/", 1)[-1].split(":")
  with socket.create_connection((host, int(port)), timeout=timeout) as sock:
    sock.sendall(request)
    answer = b""
    while b"\r\n" not in answer:
      chunk = sock.recv(4096)
      if not chunk:
        break
      answer += chunk
  return int(answer.split(b" ", 2)[1])


MALFORMED = {
    "negative_length": b"POST /api/answer HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "length_not_a_number": (b"POST /api/answer HTTP/1.1\r\nHost: x\r\n"
                            b"Content-Length: abc\r\n\r\n{}"),
    "body_without_length": (b"POST /api/answer HTTP/1.1\r\nHost: x\r\nConnection: close"
                            b"\r\n\r\n" + json.dumps({"question": "where"}).encode()),
    "lone_surrogate": b'{"question": "where is \\ud800 paris"}',
    "deeply_nested": b"[" * 30000 + b"]" * 30000,
    "huge_integer": b'{"question": "x", "n": ' + b"9" * 20000 + b"}",
    "wrong_method": b"PUT /api/answer HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_every_malformed_request_gets_a_4xx(server_url, case):
  request = MALFORMED[case]
  if not request.startswith((b"POST ", b"PUT ")):  # A body: send it with its length.
    request = (b"POST /api/answer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
               b"\r\nContent-Length: " + str(len(request)).encode() + b"\r\n\r\n" + request)
  status = _raw(server_url, request)
  assert 400 <= status < 500, status
  # The server still answers.
  assert _post(server_url, json.dumps({"question": "where"}).encode())[0] == 200


def _chrome_driver():
  missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
  if missing:
    pytest.skip(f"{' and '.join(missing)} absent: install the Debian packages chromium "
                "and chromium-driver (apt-get install -y chromium chromium-driver) to run "
                "the browser test.")
  webdriver = pytest.importorskip(
      "selenium.webdriver", reason="selenium is not installed (pip install -r requirements.txt)")
  from selenium.webdriver.chrome.service import Service  # pylint: disable=g-import-not-at-top
  profile = tempfile.mkdtemp(prefix="chromium-profile-")
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", "--window-size=1200,1400",
               f"--user-data-dir={profile}"):
    options.add_argument(flag)
  driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
  return driver, profile


def test_page_in_headless_chromium(server_url, sample_question, expected, tmp_path):
  driver, profile = _chrome_driver()
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.support import expected_conditions  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=g-import-not-at-top
  try:
    driver.get(server_url + "/")
    box = driver.find_element(By.ID, "question")
    box.send_keys(sample_question)
    driver.find_element(By.ID, "ask").click()
    WebDriverWait(driver, 60).until(
        expected_conditions.visibility_of_element_located((By.ID, "result")))
    screenshot = os.environ.get("ORQA_DEMO_SCREENSHOT") or str(tmp_path / "demo.png")
    driver.save_screenshot(screenshot)
    answer = expected["answer"].decode()
    assert driver.find_element(By.ID, "answer").text == answer
    mark = driver.find_element(By.CSS_SELECTOR, "#evidence mark.answer")
    assert answer.replace(" ", "") in mark.text.replace(" ", "")
    titles = [e.text for e in driver.find_elements(By.CSS_SELECTOR,
                                                   "#passages .passage-item .title")]
    assert titles == [t.decode() for t in expected["block_titles"]]
    assert driver.find_element(By.ID, "status").text == ""
  finally:
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)
