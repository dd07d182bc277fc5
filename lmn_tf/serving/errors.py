"""The one error type of the server and clients: a canonical status code plus a message.

TF-Serving returns every failure as a ``tensorflow::Status``; gRPC sends its code as is and
the REST front end maps it to an HTTP status with ``ToHTTPStatusCode`` (http_server.cc).
The same table is used here in both directions, so a client sees the same code from us and
from the real server.
"""

from __future__ import annotations

import grpc

# tensorflow_serving/model_servers/http_server.cc: ToHTTPStatusCode.
_HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
# Inverse for clients; the first code wins where the table is not one-to-one.
_CODE_OF_HTTP: dict[int, grpc.StatusCode] = {}
for _code, _http in _HTTP_STATUS.items():
    _CODE_OF_HTTP.setdefault(_http, _code)
_CODE_OF_INT = {code.value[0]: code for code in grpc.StatusCode}


class ServingError(Exception):
    """A failed request: a canonical (gRPC) status code and TF-Serving's message.

    Args:
        code: the ``grpc.StatusCode``.
        message: the message, worded like TF-Serving's where it has one.
    """

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS.get(self.code, 500)

    @property
    def error_code_name(self) -> str:
        """The code's name in ``tensorflow.error.Code`` (``INVALID_ARGUMENT``, ...)."""
        return self.code.name

    @classmethod
    def from_http(cls, status: int, message: str) -> ServingError:
        return cls(_CODE_OF_HTTP.get(status, grpc.StatusCode.UNKNOWN), message)

    @classmethod
    def from_int(cls, code: int, message: str) -> ServingError:
        """From a TensorFlow / absl status code number (``tf.errors.OpError.error_code``)."""
        return cls(_CODE_OF_INT.get(code, grpc.StatusCode.UNKNOWN), message)

    def __repr__(self) -> str:
        return f"ServingError({self.code.name}, {self.message!r})"


def invalid_argument(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, message)
