"""The REST front end: TF-Serving's ``/v1/models/...`` API on ``http.server``.

URLs, JSON bodies, error bodies ``{"error": "..."}`` and status codes follow
``http_rest_api_handler.cc`` / ``http_server.cc``. Additions of this server: request
bodies above ``max_body_bytes`` get 413 (TF-Serving has no such cap), and paths outside
``/v1/`` get 404 with a JSON error body (TF-Serving's HTTP server answers a bare 404).
"""

from __future__ import annotations

import http.server
import logging
import re
import threading
import urllib.parse

import grpc
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

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

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
        self.wfile.write(body)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise ServingError(
                grpc.StatusCode.UNIMPLEMENTED,
                "Chunked request bodies are not supported; send Content-Length",
            )
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise invalid_argument("Invalid Content-Length") from None
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
                raise ServingError(
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"{match.group(4)} is not served here; use predict",
                )
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
