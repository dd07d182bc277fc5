"""The model server: a ServerCore behind the gRPC and REST front ends, with clean shutdown.

``ModelServer.start`` loads the initial versions (blocking, like ``tensorflow_model_server``),
binds both ports and logs ``gRPC listening on HOST:PORT`` / ``REST listening on HOST:PORT``
(port 0 picks a free port; a negative port disables that front end). ``shutdown`` stops
accepting, lets in-flight requests finish, then unloads every version.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading

import tensorflow as tf

from lmn_tf.serving.batching import Batcher
from lmn_tf.serving.config import BatchingConfig, ModelConfig
from lmn_tf.serving.grpc_service import make_server
from lmn_tf.serving.manager import ServerCore
from lmn_tf.serving.rest import RestServer
from lmn_tf.serving.servable import Servable

log = logging.getLogger("lmn_tf.serving")


@dataclasses.dataclass
class ServerOptions:
    """How to serve (the models come separately).

    Args:
        host: the address both front ends bind; 127.0.0.1 keeps the server local.
        rest_port / grpc_port: 0 picks a free port, negative disables the front end.
        poll_seconds: base path poll interval; <= 0 disables polling.
        batching: server-side batching parameters, or None (off, the default).
        max_request_bytes: cap on REST bodies (413) and gRPC messages (RESOURCE_EXHAUSTED).
        grpc_threads: gRPC worker threads (REST uses a thread per connection).
        intra_op_threads / inter_op_threads: TensorFlow session thread pools (0 = TF default).
        max_load_retries: further attempts for a version that failed to load.
        shutdown_grace_seconds: how long in-flight requests may take to finish on shutdown.
    """

    host: str = "127.0.0.1"
    rest_port: int = 8501
    grpc_port: int = 8500
    poll_seconds: float = 1.0
    batching: BatchingConfig | None = None
    max_request_bytes: int = 64 << 20
    grpc_threads: int = 16
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    max_load_retries: int = 5
    shutdown_grace_seconds: float = 30.0


class ModelServer:
    """Serves ``models`` over TF-Serving's REST and gRPC APIs.

    Args:
        models: what to serve.
        options: how.

    Example:
        >>> models = [ModelConfig("lmn", "/models/lmn")]
        >>> server = ModelServer(models, ServerOptions(rest_port=0))  # doctest: +SKIP
        >>> server.start(); server.wait_for_signal()  # doctest: +SKIP
    """

    def __init__(self, models: list[ModelConfig], options: ServerOptions):
        self.options = options
        self.core = ServerCore(models, self._load, options.poll_seconds, options.max_load_retries)
        self.rest: RestServer | None = None
        self.grpc = None
        self.rest_port = self.grpc_port = None
        self._stop = threading.Event()

    def _load(self, name: str, version: int, path: str) -> Servable:
        config = tf.compat.v1.ConfigProto(
            intra_op_parallelism_threads=self.options.intra_op_threads,
            inter_op_parallelism_threads=self.options.inter_op_threads,
        )
        servable = Servable(name, version, path, session_config=config)
        try:
            if self.options.batching is not None:
                servable.batcher = Batcher(servable.run, self.options.batching)
            servable.warmup()
        except BaseException:
            servable.unload()
            raise
        return servable

    def start(self) -> None:
        opts = self.options
        self.core.start()
        if opts.grpc_port >= 0:
            self.grpc, self.grpc_port = make_server(
                self.core,
                f"{opts.host}:{opts.grpc_port}",
                opts.max_request_bytes,
                opts.grpc_threads,
            )
            self.grpc.start()
            self._announce("gRPC", self.grpc_port)
        if opts.rest_port >= 0:
            self.rest = RestServer((opts.host, opts.rest_port), self.core, opts.max_request_bytes)
            self.rest_port = self.rest.server_address[1]
            threading.Thread(target=self.rest.serve_forever, name="rest", daemon=True).start()
            self._announce("REST", self.rest_port)

    def _announce(self, what: str, port: int) -> None:
        host = self.options.host
        shown = f"[{host}]" if ":" in host else host
        log.info("%s listening on %s:%d", what, shown, port)
        print(f"{what} listening on {shown}:{port}", flush=True)  # tests and scripts read this

    def install_signal_handlers(self) -> None:
        """SIGTERM / SIGINT end ``wait_for_signal`` (call before ``start``)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())

    def wait_for_signal(self) -> None:
        """Blocks until a handled signal arrives, then shuts down."""
        while not self._stop.wait(0.5):
            pass
        log.info("shutting down: finishing in-flight requests")
        self.shutdown()

    def shutdown(self) -> None:
        grace = self.options.shutdown_grace_seconds
        stopped = self.grpc.stop(grace) if self.grpc is not None else None
        if self.rest is not None and not self.rest.drain(grace):
            log.warning("REST requests still running after %.0f s", grace)
        if stopped is not None:
            stopped.wait()
        if self.rest is not None:
            self.rest.server_close()
        self.core.stop()
        log.info("server stopped")
