"""aiohttp's HTTP/1.1 connection, as the REST front end (`lmn_tf.serving.rest`) needs it.

What aiohttp's parser refuses is answered in TF-Serving's shape (a JSON ``{"error": ...}``
4xx, never a text page or a 5xx); a connection closed while its client is still sending is
closed lingering, so the client reads its answer instead of a reset; a client that
half-closes after sending still gets its answer; an HTTP version other than 1.0 and 1.1 is
refused in HTTP/1.1 (``asked_version`` on the request).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import HttpVersion, HttpVersion10, HttpVersion11, StreamReader, web, web_protocol
from aiohttp.http_exceptions import BadHttpMessage, HttpProcessingError, LineTooLong

from lmn_tf.serving import rest_json

log = logging.getLogger("lmn_tf.serving")

JSON_HEADERS = {"Content-Type": "application/json", "Server": "lmn-tf-serving"}
MAX_LINE = 1 << 16  # request line: the former http.server front end's limit, 414 beyond
MAX_FIELD = 8190  # one header line: 431 beyond
MAX_HEADERS = 100  # the former front end's limit too, 431 beyond
# Idle keep-alive connections are closed after this long (nginx's default); a client that
# keeps its connection busy keeps it for good.
KEEPALIVE_SECONDS = 75.0

# -- aiohttp's connection, with TF-Serving-shaped refusals ----------------------------------
#
# aiohttp's public API has no hook for what follows: the answer to a request its parser
# refuses (a text page there, JSON here), the close of a connection whose client is still
# sending (a reset there, a lingering close here), a client that half-closes after sending
# (closed unanswered there), and the HTTP version of the status line. So this reaches into
# its internals: RequestHandler (connection_made, data_received, eof_received, handle_error,
# log_exception, _messages, _loop), Server (__call__, _make_request, _kwargs, _loop) and the
# transport it is given. tests/serving/test_rest_aiohttp_range.py exercises each on both
# ends of setup.py's aiohttp range.


LINGER_SECONDS = 2.0


class _LingeringTransport:
    """The connection's transport, closed the way a server must close on unread input.

    Closing a socket whose receive queue holds data the client is still sending (a body
    after a refused header, the rest of an oversized upload) sends a reset, and the client
    loses the answer already on its way. So ``close`` first sends our FIN after the answer
    (``write_eof``), then reads and drops the client's bytes until its own FIN or
    ``LINGER_SECONDS``, and only then closes. Everything else is the wrapped transport.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport, self._loop = transport, loop
        self.lingering = False
        self.peer_done = False  # the client's FIN has come: nothing more to read away
        self._timer: asyncio.TimerHandle | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        if self.lingering:
            return
        self.lingering = True
        transport = self._transport
        if transport.is_closing():
            return
        if self.peer_done:
            transport.close()  # flushes the answer; no input left to cause a reset
            return
        try:
            transport.resume_reading()  # aiohttp may have paused it; the bytes must go
            transport.write_eof()  # after what is buffered: the answer first
        except (OSError, RuntimeError, NotImplementedError):
            transport.close()
            return
        self._timer = self._loop.call_later(LINGER_SECONDS, self.finish)

    def finish(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._transport.close()


class _Connection(web_protocol.RequestHandler):
    """aiohttp's HTTP/1.1 connection; what it refuses is answered in JSON, never as a 5xx."""

    _lingering: _LingeringTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._lingering = _LingeringTransport(transport, self._loop)
        super().connection_made(self._lingering)

    def data_received(self, data: bytes) -> None:
        if self._lingering is not None and self._lingering.lingering:
            return  # closing: read away, parse nothing
        super().data_received(data)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # aiohttp's rule: half an answer cannot be fixed
            raise ConnectionError("Response is sent already, cannot send another response")
        if isinstance(exc, LineTooLong):
            status = 414 if exc.args[1] == MAX_LINE else 431
        elif isinstance(exc, BadHttpMessage) and "Too many headers" in exc.message:
            status = 431
        elif status >= 500:  # the parser's own failures are the request's fault here
            log.error("REST connection failed", exc_info=exc)
            status = 400
        text = exc.message if isinstance(exc, HttpProcessingError) else message
        response = web.Response(
            status=status,
            body=rest_json.dumps({"error": text or f"HTTP error {status}"}),
            headers=JSON_HEADERS,
        )
        response.force_close()
        return response

    last_payload: StreamReader | None = None  # the newest request's body (HttpServer sets it)

    def eof_received(self) -> bool:
        # A client that half-closes after sending (curl -T, the fuzzer) still reads the
        # answer: keep the socket open to write it (asyncio would close it now), take no
        # further request, and end a body still short of its Content-Length, which would
        # otherwise wait forever for bytes that cannot come. The body may belong to a
        # request still queued, or one taken from the queue whose handler has not started
        # yet (data and FIN often arrive together): hence last_payload.
        if self._lingering is not None:
            self._lingering.peer_done = True
            if self._lingering.lingering:
                self._lingering.finish()  # the client has sent all it will: close now
                return True
        self.close()
        payloads = [p for _, p in self._messages]
        if self.last_payload is not None:
            payloads.append(self.last_payload)
        for payload in payloads:
            if not payload.is_eof():
                payload.set_exception(BadHttpMessage("the connection ended inside the body"))
        return True

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        # a malformed request is the client's problem: not an ERROR line in the server log
        if isinstance(kwargs.get("exc_info"), HttpProcessingError):
            self.logger.debug(*args, **kwargs)
        else:
            super().log_exception(*args, **kwargs)


class _Request(web.BaseRequest):
    ATTRS = web.BaseRequest.ATTRS | frozenset(["asked_version"])
    asked_version: HttpVersion | None = None  # set when not HTTP/1.0 or 1.1: refused


class HttpServer(web.Server):
    """aiohttp's low-level server with `_Connection`s and requests that carry
    ``asked_version``."""

    def __call__(self) -> _Connection:
        return _Connection(self, loop=self._loop, **self._kwargs)

    def _make_request(self, message, payload, protocol, writer, task) -> web.BaseRequest:
        asked = message.version
        if asked not in (HttpVersion10, HttpVersion11):
            # aiohttp answers in the request's version; HTTP/2.0 or 9.9 in a status line is
            # no answer a client can read. Answer (the refusal) in HTTP/1.1 and close.
            message = message._replace(version=HttpVersion11, should_close=True)
        protocol.last_payload = payload
        request = _Request(message, payload, protocol, writer, task, self._loop)
        if asked != message.version:
            request.asked_version = asked
        return request

