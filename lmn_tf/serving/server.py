"""The model server: a ServerCore behind the gRPC and REST front ends, with clean shutdown.

``ModelServer.start`` loads the initial versions (blocking, like ``tensorflow_model_server``),
binds both ports and logs ``gRPC listening on HOST:PORT`` / ``REST listening on HOST:PORT``
(port 0 picks a free port; a negative port disables that front end). ``shutdown`` stops
accepting, lets in-flight requests finish, then unloads every version.

Threads: one asyncio loop serves both front ends (aiohttp and ``grpc.aio`` only move bytes
there), ``worker_threads`` workers decode, run and encode requests (dispatch.py), and with
batching ``num_batch_threads`` run the merged batches.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import threading
from collections.abc import Coroutine
from typing import Any

import tensorflow as tf

from lmn_tf.serving.batching import Batcher
from lmn_tf.serving.config import BatchingConfig, ModelConfig
from lmn_tf.serving.dispatch import Dispatcher
from lmn_tf.serving.grpc_service import make_server
from lmn_tf.serving.manager import ServerCore
from lmn_tf.serving.rest import RestServer
from lmn_tf.serving.servable import Servable
from lmn_tf.serving.threads import name_this_thread

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
        max_inflight_requests: per model, requests admitted and not yet answered (being
            read, decoded, queued for a worker or a batch, run, encoded); beyond it REST
            answers 503 and gRPC UNAVAILABLE at once. <= 0: no limit. With batching the
            batch queue's own bound (``max_enqueued_batches``) applies as well.
        worker_threads: threads that decode, run and encode requests, shared by both front
            ends; 0: two per usable core (``Session.run`` releases the GIL, so one thread per
            core runs TensorFlow while another decodes JSON or protos).
        rest_backlog: the REST listen backlog.
        intra_op_threads / inter_op_threads: TensorFlow session thread pools (0 = TF default,
            one thread per core each; the workers bound how many runs share them).
        max_load_retries: further attempts for a version that failed to load.
        shutdown_grace_seconds: how long in-flight requests may take to finish on shutdown.
    """

    host: str = "127.0.0.1"
    rest_port: int = 8501
    grpc_port: int = 8500
    poll_seconds: float = 1.0
    batching: BatchingConfig | None = None
    max_request_bytes: int = 64 << 20
    max_inflight_requests: int = 256
    worker_threads: int = 0
    rest_backlog: int = 1024
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    max_load_retries: int = 5
    shutdown_grace_seconds: float = 30.0

    def workers(self) -> int:
        """``worker_threads``, with 0 resolved to two per usable core."""
        return self.worker_threads or 2 * len(os.sched_getaffinity(0))


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
        self.dispatcher = Dispatcher(self.core, options.workers(), options.max_inflight_requests)
        self.rest: RestServer | None = None
        self.grpc = None
        self.rest_port = self.grpc_port = None
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._run_loop, name="front-ends", daemon=True)
        self._stop = threading.Event()

    def _run_loop(self) -> None:
        name_this_thread("lmn-frontend")
        self._loop.run_forever()

    def _on_loop(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Runs ``coro`` on the front ends' loop and waits for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

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
        self._loop_thread.start()
        if opts.grpc_port >= 0:
            self.grpc_port = self._on_loop(self._start_grpc())
            self._announce("gRPC", self.grpc_port)
        if opts.rest_port >= 0:
            self.rest = RestServer(
                self.dispatcher,
                opts.max_request_bytes,
                backlog=opts.rest_backlog,
                shutdown_grace=opts.shutdown_grace_seconds,
            )
            self.rest_port = self._on_loop(self.rest.start(opts.host, opts.rest_port))
            self._announce("REST", self.rest_port)

    async def _start_grpc(self) -> int:
        address = f"{self.options.host}:{self.options.grpc_port}"
        self.grpc, port = make_server(self.dispatcher, address, self.options.max_request_bytes)
        await self.grpc.start()
        return port

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
        if self._loop_thread.is_alive():
            self._on_loop(self._stop_front_ends())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop_thread.join()
        self.core.stop()  # queued batches run first; every version is unloaded
        self.dispatcher.shutdown()
        log.info("server stopped")

    async def _stop_front_ends(self) -> None:
        """Both stop accepting at once; in-flight requests get ``shutdown_grace_seconds``."""
        grace = self.options.shutdown_grace_seconds
        stops = []
        if self.grpc is not None:
            stops.append(self.grpc.stop(grace))
        if self.rest is not None:
            stops.append(self.rest.stop())
        await asyncio.gather(*stops)
