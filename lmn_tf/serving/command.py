"""Serve SavedModels over TF-Serving's REST and gRPC prediction API.

Loads BASE/VERSION/ SavedModels (the `serve` MetaGraph, signatures by name) like
tensorflow_model_server, serves the newest version, and picks up new versions dropped into
the base path. Example:

    lmn-tf serve --model-base-path models/lmn --model-name lmn --rest-port 8501 --grpc-port 8500
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import signal

from lmn_tf.serving.config import (
    BatchingConfig,
    ModelConfig,
    load_batching_parameters,
    load_model_config_file,
)
from lmn_tf.serving.server import ModelServer, ServerOptions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    models = parser.add_argument_group("models (one of --model-base-path or --model-config-file)")
    models.add_argument("--model-base-path", help="directory holding numbered versions 1/, 2/, ...")
    models.add_argument(
        "--model-name", default="default", help="name clients use (default: default)"
    )
    models.add_argument(
        "--model-config-file",
        help="TF-Serving ModelServerConfig text proto (serving/models.config); relative "
        "base_path entries are taken relative to the file",
    )
    net = parser.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    net.add_argument("--rest-port", type=int, default=8501, help="0: any free port; <0: off")
    net.add_argument("--grpc-port", type=int, default=8500, help="0: any free port; <0: off")
    net.add_argument(
        "--max-request-bytes",
        type=int,
        default=64 << 20,
        help="REST body / gRPC message cap (default: 64 MiB)",
    )
    net.add_argument(
        "--rest-backlog", type=int, default=1024, help="REST listen backlog (default: 1024)"
    )
    run = parser.add_argument_group("serving")
    run.add_argument(
        "--poll-seconds",
        type=float,
        default=1.0,
        help="base path poll interval; <=0 disables (default: 1)",
    )
    run.add_argument("--max-load-retries", type=int, default=5)
    run.add_argument(
        "--max-inflight-requests",
        type=int,
        default=256,
        help="per model, requests in the server at once; beyond: REST 503 / gRPC UNAVAILABLE "
        "at once (default: 256; <=0: no limit)",
    )
    run.add_argument(
        "--worker-threads",
        type=int,
        default=0,
        help="threads decoding, running and encoding requests (default 0: two per core)",
    )
    run.add_argument("--intra-op-threads", type=int, default=0, help="0: TF default (cores)")
    run.add_argument("--inter-op-threads", type=int, default=0, help="0: TF default (cores)")
    run.add_argument("--shutdown-grace-seconds", type=float, default=30.0)
    batch = parser.add_argument_group("server-side batching (off by default)")
    batch.add_argument("--enable-batching", action="store_true")
    batch.add_argument(
        "--batching-parameters-file",
        help="TF-Serving BatchingParameters text proto (serving/batching.config)",
    )
    batch.add_argument("--max-batch-size", type=int, help="overrides the file (default: 32)")
    batch.add_argument(
        "--batch-timeout-micros", type=int, help="overrides the file (default: 1000)"
    )
    batch.add_argument("--num-batch-threads", type=int, help="overrides the file (default: 2)")
    batch.add_argument(
        "--max-enqueued-batches",
        type=int,
        help="overrides the file (default: 100); beyond: UNAVAILABLE / 503",
    )
    parser.add_argument("--log-level", default="INFO")


def _models(args: argparse.Namespace) -> list[ModelConfig]:
    if bool(args.model_base_path) == bool(args.model_config_file):
        raise SystemExit("lmn-tf serve: give exactly one of --model-base-path, --model-config-file")
    if args.model_config_file:
        return load_model_config_file(args.model_config_file)
    return [ModelConfig(args.model_name, args.model_base_path)]


def _batching(args: argparse.Namespace) -> BatchingConfig | None:
    if not args.enable_batching:
        return None
    config = (
        load_batching_parameters(args.batching_parameters_file)
        if args.batching_parameters_file
        else BatchingConfig()
    )
    overrides = {
        k: getattr(args, k)
        for k in (
            "max_batch_size", "batch_timeout_micros", "num_batch_threads", "max_enqueued_batches"
        )
        if getattr(args, k) is not None
    }
    if overrides and config.allowed_batch_sizes and "max_batch_size" in overrides:
        overrides["allowed_batch_sizes"] = ()  # they must end at max_batch_size
    return BatchingConfig(**{**config.__dict__, **overrides})


def run(args: argparse.Namespace) -> int:
    # A crash inside TensorFlow's C++ (seen once: SIGSEGV during a version swap under load,
    # on a loaded CI machine) then leaves every thread's Python stack in the server's log.
    faulthandler.enable()
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("tensorflow").propagate = False  # it prints its own lines already
    options = ServerOptions(
        host=args.host,
        rest_port=args.rest_port,
        grpc_port=args.grpc_port,
        poll_seconds=args.poll_seconds,
        batching=_batching(args),
        max_request_bytes=args.max_request_bytes,
        max_inflight_requests=args.max_inflight_requests,
        worker_threads=args.worker_threads,
        rest_backlog=args.rest_backlog,
        intra_op_threads=args.intra_op_threads,
        inter_op_threads=args.inter_op_threads,
        max_load_retries=args.max_load_retries,
        shutdown_grace_seconds=args.shutdown_grace_seconds,
    )
    server = ModelServer(_models(args), options)
    server.install_signal_handlers()
    server.start()
    server.wait_for_signal()
    # Interpreter teardown (TensorFlow's) takes a moment; a repeated SIGTERM must not turn
    # the clean exit into a kill.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return 0
