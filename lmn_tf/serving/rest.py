"""The REST front end: TF-Serving's ``/v1/models/...`` API on aiohttp's HTTP/1.1 server.

URLs, JSON bodies, error bodies ``{"error": "..."}`` and status codes follow
``http_rest_api_handler.cc`` / ``http_server.cc``. aiohttp (its llhttp parser) does the
protocol: request lines, headers, ``Content-Length`` and chunked bodies, keep-alive,
pipelining, the listen backlog and graceful shutdown. This module routes, bounds bodies and
answers (the JSON work and the model run on the dispatcher's workers, never on the event
loop); `lmn_tf.serving.http_connection` closes connections so that a client still sending
gets its answer, not a reset.

Additions of this server: request bodies above ``max_body_bytes`` get 413 (TF-Serving has
no such cap), paths outside ``/v1/`` get 404 with a JSON error body (TF-Serving's HTTP
server answers a bare 404), requests the HTTP parser refuses (bad request line or headers,
HTTP versions other than 1.0 and 1.1, a body cut short) get a JSON 4xx instead of a plain
text page (414 for a request line above 64 KiB, 431 for a header above 8 KiB or more than
100 headers), and a model with ``max_inflight`` requests in the server already answers
503 at once. Any method other than GET and POST is a "Malformed request" (400), as in
TF-Serving.
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2

from lmn_tf.serving import protocol, rest_json
from lmn_tf.serving.dispatch import Decoded, Dispatcher
from lmn_tf.serving.errors import ServingError, invalid_argument
from lmn_tf.serving.http_connection import (
    JSON_HEADERS,
    KEEPALIVE_SECONDS,
    MAX_FIELD,
    MAX_HEADERS,
    MAX_LINE,
    HttpServer,
)
from lmn_tf.serving.servable import DEFAULT_SIGNATURE, Servable

log = logging.getLogger("lmn_tf.serving")

# http_rest_api_util.cc: kPredictionApiGegex / kModelStatusApiRegex
_PREDICT = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE,
)
_STATUS = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE,
)


class _RefusalError(Exception):
    """An answer that also ends the connection (the rest of the request is not trusted)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class RestServer:
    """TF-Serving's REST API on ``(host, port)``; port 0 picks a free one.

    Call ``start`` and ``stop`` on the event loop that serves it.

    Args:
        dispatcher: the worker pool and admission shared with gRPC.
        max_body_bytes: larger request bodies are refused with 413.
        backlog: the listen backlog (connections the kernel holds before ``accept``).
        shutdown_grace: seconds ``stop`` lets in-flight requests take.

    Attributes:
        port: the bound port, once started.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        max_body_bytes: int,
        backlog: int = 1024,
        shutdown_grace: float = 30.0,
    ):
        self.dispatcher, self.core = dispatcher, dispatcher.core
        self.max_body_bytes, self.backlog = max_body_bytes, backlog
        self.shutdown_grace = shutdown_grace
        self.port: int | None = None
        self._runner: web.ServerRunner | None = None
        self._draining = False

    async def start(self, host: str, port: int) -> int:
        server = HttpServer(
            self._handle,
            access_log=None,  # one line per request is a cost under load; debug logs below
            keepalive_timeout=KEEPALIVE_SECONDS,
            max_line_size=MAX_LINE,
            max_field_size=MAX_FIELD,
            max_headers=MAX_HEADERS,
        )
        self._runner = web.ServerRunner(
            server, handle_signals=False, shutdown_timeout=self.shutdown_grace
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=self.backlog, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self.port

    async def stop(self) -> None:
        """Stops listening, answers in-flight requests (``shutdown_grace`` s at most), closes.

        Idle keep-alive connections are closed at once; busy ones get their answer with
        ``Connection: close``.
        """
        self._draining = True
        if self._runner is not None:
            await self._runner.cleanup()

    # -- one request ---------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        close = self._draining
        try:
            status, body = await self._answer(request)
        except _RefusalError as e:
            status, body, close = e.status, rest_json.dumps({"error": str(e)}), True
        except ServingError as e:
            status, body = e.http_status, rest_json.dumps({"error": e.message})
        except Exception as e:  # a bug must cost one request, not the server
            log.exception("REST %s %s failed", request.method, request.raw_path[:200])
            status, body = 500, rest_json.dumps({"error": f"Internal error: {e}"})
        log.debug("REST %s %s -> %d", request.method, request.raw_path[:200], status)
        response = web.Response(status=status, body=body, headers=JSON_HEADERS)
        if close:
            response.force_close()  # Connection: close; aiohttp reads away an unread body
        return response

    async def _answer(self, request: web.BaseRequest) -> tuple[int, bytes]:
        asked = getattr(request, "asked_version", None)
        if asked is not None:
            raise _RefusalError(400, f"HTTP version {asked[0]}.{asked[1]} is not supported")
        method = request.method
        path = urllib.parse.urlsplit(request.raw_path).path
        if not re.fullmatch(r"/v1/.*", path, re.IGNORECASE):
            return 404, rest_json.dumps({"error": f"Not found: {method} {path}"})
        spec, api = _route(method, path)
        with self.dispatcher.admission.admit(spec.name):  # before the body: 503 costs nothing
            if api in ("predict", "classify", "regress"):
                body = await self._read_body(request)
                if api == "predict":
                    return 200, await self._predict(spec, body)
                await self.dispatcher.call(self._refuse, spec, body, api)
            if api == "metadata":
                return 200, await self.dispatcher.call(self._metadata, spec)
            return 200, await self.dispatcher.call(self._status, spec)

    async def _read_body(self, request: web.BaseRequest) -> bytes:
        """The body (aiohttp has undone any chunking), refused beyond ``max_body_bytes``."""
        limit = self.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise _TooLargeError(request.content_length, limit)
        body = bytearray()
        try:
            while chunk := await request.content.readany():
                body += chunk
                if len(body) > limit:
                    raise _TooLargeError(len(body), limit)
        except HttpProcessingError as e:  # bad chunk framing, a body cut short
            raise _RefusalError(400, f"Invalid request body: {e.message}") from None
        return bytes(body)

    async def _predict(self, spec: model_pb2.ModelSpec, body: bytes) -> bytes:
        def decode(servable: Servable) -> Decoded:
            doc = rest_json.parse_body(body)
            name = doc.get("signature_name", "")
            sig = servable.signature_defs.get(name or DEFAULT_SIGNATURE)
            if sig is None:  # http_rest_api_handler.cc: GetInfoMap
                raise invalid_argument(
                    f'Serving signature name: "{name or DEFAULT_SIGNATURE}" '
                    "not found in signature def"
                )
            fmt, inputs = rest_json.request_arrays(doc, dict(sig.inputs))
            return Decoded(name, inputs, (), fmt)

        def encode(_spec: model_pb2.ModelSpec, outputs: dict, fmt: Any) -> bytes:
            return rest_json.dumps(rest_json.response_json(outputs, fmt))

        return await self.dispatcher.predict(spec, decode, encode, len(body))

    def _refuse(self, spec: model_pb2.ModelSpec, body: bytes, api: str) -> None:
        spec.signature_name = rest_json.parse_body(body).get("signature_name", "")
        protocol.refuse_classify_regress(self.core, spec, api)

    def _metadata(self, spec: model_pb2.ModelSpec) -> bytes:
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=spec, metadata_field=[protocol.SIGNATURE_DEF]
        )
        response = protocol.model_metadata(self.core, request)
        return rest_json.dumps(protocol.metadata_json(response))

    def _status(self, spec: model_pb2.ModelSpec) -> bytes:
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=spec)
        response = protocol.model_status(self.core, request)
        return rest_json.dumps(protocol.to_json(response))


def _route(method: str, path: str) -> tuple[model_pb2.ModelSpec, str]:
    """The ModelSpec a ``/v1/models/...`` path names, and its call: predict, classify,
    regress, metadata or status."""
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
        return spec, match.group(4).lower()
    return spec, "metadata" if match.group(4) else "status"


class _TooLargeError(_RefusalError):
    def __init__(self, length: int, limit: int):
        super().__init__(413, f"Request body of {length} bytes exceeds the limit of {limit} bytes")
