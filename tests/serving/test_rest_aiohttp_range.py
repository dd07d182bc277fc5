"""The REST front end on both ends of aiohttp's declared range (setup.py's ``aiohttp>=...``).

aiohttp's public API cannot express four things the REST front end does, so
``lmn_tf/serving/http_connection.py`` subclasses aiohttp's connection and server; an aiohttp
release inside the range could break them. Each is exercised here, over raw sockets, against
a real ``lmn-tf serve`` on the newest aiohttp (the one the venv pins) and on the oldest the
range admits (``.ci/aiohttp-oldest`` installs it; the server runs with it first on
``PYTHONPATH``):

- requests aiohttp's parser refuses get a JSON 4xx (414, 431, 400), not a text page
  (``handle_error``), and no ERROR line in the log (``log_exception``);
- HTTP versions other than 1.0 and 1.1 get a 400 in HTTP/1.1 (the request factory);
- a client still sending when the server answers and closes (413 over the cap, 431 with a
  body behind it) reads the answer, not a reset, and nothing it sent after is parsed
  (the lingering transport, ``data_received``);
- a client that half-closes after sending gets its answer, and a body short of its length
  ends in a 400 instead of a hang (``eof_received``, the queued and last payloads).
"""

import json
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import tensorflow as tf

from lmn_tf.serving import ServerProcess

pytestmark = [pytest.mark.aiohttp_range, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
CAP = 1 << 16  # --max-request-bytes
ROW = json.dumps({"instances": [[1.0, 2.0, 3.0, 4.0]]}).encode()


def _declared_oldest() -> str:
    return re.search(r'"aiohttp>=([0-9.]+),', (ROOT / "setup.py").read_text()).group(1)


def _pinned() -> str:
    text = (ROOT / "requirements" / "ci.txt").read_text()
    return re.search(r"^aiohttp==(\S+)$", text, re.MULTILINE).group(1)


def _aiohttp_version(env: dict) -> str:
    code = "import aiohttp; print(aiohttp.__version__)"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


class Scorer(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, "x")])
    def serve(self, x):
        return {"y": tf.reduce_sum(x, axis=1)}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("aiohttp_range")
    model = Scorer()
    tf.saved_model.save(model, str(root / "m" / "1"), signatures={"serving_default": model.serve})
    return root


@pytest.fixture(scope="module", params=["oldest", "newest"])
def server(base, request):
    if request.param == "oldest":
        folder = subprocess.run([str(ROOT / ".ci" / "aiohttp-oldest"), sys.executable],
                                capture_output=True, text=True, check=True).stdout.strip()
        env = {"PYTHONPATH": os.pathsep.join(filter(None, [folder, os.environ.get("PYTHONPATH")]))}
        want = _declared_oldest()
    else:
        env, want = {}, _pinned()
    got = _aiohttp_version(env)
    assert tuple(map(int, got.split("."))) == tuple(map(int, (want + ".0.0").split(".")[:3]))
    s = ServerProcess(["--model-base-path", str(base / "m"), "--model-name", "m",
                       "--poll-seconds", "0", "--max-request-bytes", str(CAP)],
                      str(base / f"server-{request.param}.log"), env=env)
    yield s
    assert s.stop() == 0, s.log()
    log = s.log()
    assert "Traceback" not in log and "Error handling request" not in log, log


def _answers(raw: bytes) -> list[tuple[bytes, int, dict, bytes]]:
    """Every HTTP response in ``raw``: (status line version, status, headers, body)."""
    answers = []
    while raw:
        head, _, raw = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, status = lines[0].split(" ")[:2]
        headers = dict(line.split(": ", 1) for line in lines[1:])
        length = int(headers["Content-Length"])
        answers.append((version.encode(), int(status), headers, raw[:length]))
        raw = raw[length:]
    return answers


def _exchange(port: int, data: bytes) -> list[tuple[bytes, int, dict, bytes]]:
    """Sends ``data`` and half-closes from a thread while this one reads the answer to EOF
    (a reset on either side fails the test)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sent: list[BaseException] = []

        def send():
            try:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
            except OSError as e:
                sent.append(e)

        sender = threading.Thread(target=send)
        sender.start()
        raw = b""
        while chunk := sock.recv(1 << 16):
            raw += chunk
        sender.join()
    assert not sent, f"the server stopped reading: {sent[0]!r}"
    return _answers(raw)


def _request(method: bytes = b"POST", target: bytes = b"/v1/models/m:predict",
             version: bytes = b"HTTP/1.1", headers: bytes = b"", body: bytes = ROW,
             length: int | None = None) -> bytes:
    length = len(body) if length is None else length
    framing = b"Content-Length: %d\r\n" % length if method == b"POST" else b""
    return (b"%s %s %s\r\nHost: x\r\n" % (method, target, version)) + framing + headers + (
        b"\r\n" + body)


def _one_json_error(answers, status: int, text: str, version: bytes | None = None) -> None:
    """One answer, ``status`` with a JSON error holding ``text``, in ``version`` (default:
    any HTTP/1.x: aiohttp answers a request line it could not read in HTTP/1.0)."""
    assert len(answers) == 1, answers
    got_version, got, headers, body = answers[0]
    versions = (version,) if version else (b"HTTP/1.0", b"HTTP/1.1")
    assert got == status and got_version in versions, answers
    assert headers["Content-Type"] == "application/json"
    doc = json.loads(body)
    assert set(doc) == {"error"} and text in doc["error"], doc


REFUSED = {  # what aiohttp's parser refuses: (request, status, error text)
    "request-line-414": (_request(target=b"/v1/models/" + b"a" * 70000 + b":predict"), 414,
                         "Got more than 65536 bytes"),
    "headers-431": (_request(headers=b"".join(b"X-%d: y\r\n" % i for i in range(150))), 431,
                    "Too many headers"),
    "header-line-431": (_request(headers=b"X-Long: " + b"y" * 9000 + b"\r\n"), 431,
                        "Got more than 8190 bytes"),
    "content-length-400": (_request(length=-5), 400, ""),
    "http-2.0-400": (_request(method=b"GET", target=b"/v1/models/m", version=b"HTTP/2.0",
                              body=b""), 400, "HTTP version 2.0 is not supported"),
}
IN_HTTP_1_1 = {"http-2.0-400"}  # an answer in the version asked would be unreadable


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_requests_get_a_json_4xx(server, case):
    data, status, text = REFUSED[case]
    _one_json_error(_exchange(server.rest_port, data), status, text,
                    b"HTTP/1.1" if case in IN_HTTP_1_1 else None)


def test_a_client_still_sending_reads_its_answer_and_nothing_after_is_parsed(server):
    behind = _request(method=b"GET", target=b"/v1/models/m", body=b"")  # pipelined: dropped
    big = b" " * (8 << 20)
    for _ in range(3):
        _one_json_error(_exchange(server.rest_port, _request(body=big) + behind), 413,
                        "exceeds the limit")
        many = b"".join(b"X-%d: y\r\n" % i for i in range(150))
        _one_json_error(_exchange(server.rest_port, _request(headers=many, body=big) + behind),
                        431, "Too many headers")


@pytest.mark.parametrize(
    "framing, body, status",
    [
        (b"Content-Length: 200\r\n", ROW, 400),  # shorter than it says
        (b"Transfer-Encoding: chunked\r\n", b"5\r\nabc", 400),  # a chunk cut short
        (b"Content-Length: %d\r\n" % len(ROW), ROW, 200),
    ],
    ids=["short-body", "short-chunk", "complete"],
)
def test_half_closed_clients_get_their_answer(server, framing, body, status):
    # data and FIN in one go: the end of input often arrives before the handler runs
    request = (b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
               + framing + b"\r\n" + body)
    for _ in range(10):
        with socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) as sock:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
            raw = b""
            while chunk := sock.recv(1 << 16):
                raw += chunk
        [(_, got, headers, answer)] = _answers(raw)
        assert got == status and headers["Content-Type"] == "application/json", raw
        doc = json.loads(answer)
        assert doc == {"predictions": [10.0]} if status == 200 else set(doc) == {"error"}
