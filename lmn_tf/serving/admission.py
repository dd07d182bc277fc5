"""Back-pressure: at most ``limit`` requests of one model in the server at a time.

A request is admitted before its body is read and leaves when its answer is built, so the
count covers everything the server holds for it: the body, the parse, the wait for a
worker thread or a batch, the run and the encoding. Beyond the limit a request is refused
at once with UNAVAILABLE (REST: 503), as TF-Serving refuses a task when its batching queue
is full, so a client can retry elsewhere or shed load instead of queueing without bound.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import grpc

from lmn_tf.serving.errors import ServingError


class Admission:
    """A per-model count of admitted requests with an upper bound.

    Args:
        limit: most requests admitted at once per model; 0 or less means no limit.

    Example:
        >>> admission = Admission(2)
        >>> with admission.admit("lmn"):
        ...     admission.inflight("lmn")
        1
    """

    def __init__(self, limit: int):
        self.limit = limit
        self._lock = threading.Lock()  # REST and gRPC may admit from different threads
        self._inflight: dict[str, int] = {}

    @contextlib.contextmanager
    def admit(self, model: str) -> Iterator[None]:
        """Holds one place for ``model`` for the ``with`` block.

        Raises:
            ServingError: UNAVAILABLE when ``limit`` requests of the model are in already.
        """
        with self._lock:
            count = self._inflight.get(model, 0)
            if 0 < self.limit <= count:
                raise ServingError(
                    grpc.StatusCode.UNAVAILABLE,
                    f"Too many requests in flight for model {model} (limit {self.limit}); "
                    "retry later",
                )
            self._inflight[model] = count + 1
        try:
            yield
        finally:
            with self._lock:
                self._inflight[model] -= 1
                if not self._inflight[model]:  # names come from clients: keep no empty ones
                    del self._inflight[model]

    def inflight(self, model: str) -> int:
        """Requests of ``model`` admitted and not yet answered."""
        with self._lock:
            return self._inflight.get(model, 0)
