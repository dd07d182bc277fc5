"""The REST front end: TF-Serving's ``/v1/models/...`` API on ``http.server``.

URLs, JSON bodies, error bodies ``{"error": "..."}`` and status codes follow
``http_rest_api_handler.cc`` / ``http_server.cc``. Additions of this server: request
bodies above ``max_body_bytes`` get 413 (TF-Serving has no such cap), paths outside
``/v1/`` get 404 with a JSON error body (TF-Serving's HTTP server answers a bare 404), and
requests ``http.server`` itself refuses (bad request line or headers, unknown HTTP
version) get a JSON 4xx instead of its HTML page. Any method other than GET and POST is a
"Malformed request" (400), as in TF-Serving.
"""

from __future__ import annotations

import http.server
import logging
import re
import socket
import threading
import time
import urllib.parse

from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2

from lmn_tf.serving import protocol, rest_json
from lmn_tf.serving.errors import ServingError, invalid_argument
from lmn_tf.serving.manager import ServerCore

log = logging.getLogger("lmn_tf.serving")
_DISCARD_BYTES = 64 << 20

# http_rest_api_util.cc: kPredictionApiGegex / kModelStatusApiRegex
_PREDICT = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE,
)
_CHUNK_SIZE = re.compile(rb"([0-9a-fA-F]{1,15})(;[^\r\n]*)?\r?\n")  # hex size, extensions
_STATUS = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE,
)


class RestServer(http.server.ThreadingHTTPServer):
    """A threading HTTP server bound to ``(host, port)``; port 0 picks a free one.

    Args:
        address: ``(host, port)``.
        core: the models.
        max_body_bytes: larger request bodies are refused with 413.
    """

    daemon_threads = True  # idle keep-alive connections must not block exit
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], core: ServerCore, max_body_bytes: int):
        self.core, self.max_body_bytes = core, max_body_bytes
        self._inflight = 0
        self._idle = threading.Condition()
        self.draining = False
        super().__init__(address, _Handler)

    def track(self, delta: int) -> None:
        with self._idle:
            self._inflight += delta
            if self._inflight == 0:
                self._idle.notify_all()

    def shutdown_request(self, request: socket.socket) -> None:
        # Lingering close: read (briefly) what the client is still sending. Closing a socket
        # with unread input resets the connection, and the client may lose our answer.
        deadline = time.monotonic() + 2.0
        try:
            request.shutdown(socket.SHUT_WR)
            request.settimeout(0.5)
            while time.monotonic() < deadline and request.recv(1 << 16):
                pass
        except OSError:
            pass
        self.close_request(request)

    def drain(self, timeout: float | None = None) -> bool:
        """Stops accepting, then waits for requests being processed to finish."""
        self.draining = True
        self.shutdown()
        with self._idle:
            return self._idle.wait_for(lambda: self._inflight == 0, timeout)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes: without TCP_NODELAY, Nagle + delayed ACK add
    # ~40 ms to every keep-alive response
    disable_nagle_algorithm = True
    server: RestServer
    server_version = "lmn-tf-serving"

    def log_message(self, format, *args):
        log.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def __getattr__(self, name: str):
        # http.server looks up do_<METHOD> and answers a 501 HTML page if there is none;
        # TF-Serving answers every other method with a JSON 400 "Malformed request"
        if name.startswith("do_"):
            return lambda: self._dispatch(self.command)
        raise AttributeError(name)

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":  # no status line, no headers: not served
            self.send_error(400, "HTTP/0.9 requests are not supported")
            return False
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None):
        """http.server's own refusals, as JSON; its 5xx (505 bad HTTP version) become 400."""
        code = 400 if code >= 500 else code
        if self.request_version == "HTTP/0.9":  # also the default of an unparsed request line
            self.request_version = "HTTP/1.1"  # so that a status line is written
        body = rest_json.dumps({"error": message or explain or f"HTTP error {code}"})
        self.close_connection = True  # the request was not understood: nothing to keep
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _dispatch(self, method: str) -> None:
        self.server.track(+1)
        try:
            status, body = self._handle(method)
        except ServingError as e:
            status, body = e.http_status, rest_json.dumps({"error": e.message})
        except Exception as e:  # a bug must cost one request, not the server
            log.exception("REST %s %s failed", method, self.path)
            status, body = 500, rest_json.dumps({"error": f"Internal error: {e}"})
        finally:
            self.server.track(-1)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.server.draining or self.close_connection:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(body)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True  # where the body ends is unknown
            raise invalid_argument("Invalid Content-Length")
        if length > self.server.max_body_bytes:
            self.close_connection = True
            if length <= self.server.max_body_bytes + _DISCARD_BYTES:
                # read it away: closing on unread data resets the socket before the client
                # reads the 413
                remaining = length
                while remaining > 0 and (chunk := self.rfile.read(min(1 << 20, remaining))):
                    remaining -= len(chunk)
            raise _TooLargeError(length, self.server.max_body_bytes)
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self) -> bytes:
        """A chunked body (RFC 9112 section 7.1; libevent, under TF-Serving, accepts them)."""
        keep_alive, self.close_connection = not self.close_connection, True  # until it ends well
        body = bytearray()
        while True:
            size = _CHUNK_SIZE.fullmatch(self.rfile.readline(1024))
            if size is None:
                raise invalid_argument("Invalid chunk size line in chunked request body")
            size = int(size.group(1), 16)
            if size == 0:
                break
            if len(body) + size > self.server.max_body_bytes:
                raise _TooLargeError(len(body) + size, self.server.max_body_bytes)
            chunk = self.rfile.read(size)
            if len(chunk) < size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise invalid_argument("Truncated chunk in chunked request body")
            body += chunk
        for _ in range(100):  # trailer fields, ignored, up to the empty line
            if self.rfile.readline(1 << 16) in (b"\r\n", b"\n", b""):
                self.close_connection = not keep_alive
                return bytes(body)
        raise invalid_argument("Too many trailer fields in chunked request body")

    def _handle(self, method: str) -> tuple[int, bytes]:
        try:
            body = self._read_body()
        except _TooLargeError as e:
            return 413, rest_json.dumps({"error": str(e)})
        path = urllib.parse.urlsplit(self.path).path
        if not re.fullmatch(r"/v1/.*", path, re.IGNORECASE):
            return 404, rest_json.dumps({"error": f"Not found: {method} {path}"})
        malformed = invalid_argument(f"Malformed request: {method} {path}")
        match = (
            _PREDICT.fullmatch(path)
            if method == "POST"
            else _STATUS.fullmatch(path)
            if method == "GET"
            else None
        )
        if match is None:
            raise malformed
        name = urllib.parse.unquote(match.group(1) or "")
        if not name:
            raise invalid_argument("Missing model name in request.")
        version = match.group(2)
        label = urllib.parse.unquote(match.group(3) or "")
        spec = model_pb2.ModelSpec(name=name, version_label=label)
        if version is not None:
            if int(version) >= 1 << 63:
                raise invalid_argument(f"Failed to convert version: {version} to numeric.")
            spec.version.value = int(version)
        if method == "POST":
            if match.group(4).lower() != "predict":
                spec.signature_name = rest_json.parse_body(body).get("signature_name", "")
                protocol.refuse_classify_regress(self.server.core, spec, match.group(4).lower())
            return 200, self._predict(spec, body)
        if match.group(4):
            request = get_model_metadata_pb2.GetModelMetadataRequest(
                model_spec=spec, metadata_field=[protocol.SIGNATURE_DEF]
            )
            response = protocol.model_metadata(self.server.core, request)
            return 200, rest_json.dumps(protocol.metadata_json(response))
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=spec)
        response = protocol.model_status(self.server.core, request)
        return 200, rest_json.dumps(protocol.to_json(response))

    def _predict(self, spec: model_pb2.ModelSpec, body: bytes) -> bytes:
        doc = rest_json.parse_body(body)
        spec.signature_name = doc.get("signature_name", "")
        infos = protocol.signature_inputs(self.server.core, spec)
        fmt, inputs = rest_json.request_arrays(doc, infos)
        _, outputs = protocol.predict(self.server.core, spec, inputs)
        return rest_json.dumps(rest_json.response_json(outputs, fmt))


class _TooLargeError(Exception):
    def __init__(self, length: int, limit: int):
        super().__init__(f"Request body of {length} bytes exceeds the limit of {limit} bytes")
