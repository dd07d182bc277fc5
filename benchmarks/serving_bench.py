"""Predict latency (p50/p99 at several batch sizes) and throughput (requests/s at several
client concurrencies) of `lmn-tf serve`, over REST and gRPC, for one or more SavedModels.

    python benchmarks/serving_bench.py --model lmn=models/lmn --model din=models/din

Each --model NAME=BASE_PATH points at a TF-Serving base path (NAME/VERSION/ inside);
--untrained lmn,din exports those lmn_tf models untrained (same graphs, same latency);
without either, a small stand-in SavedModel (user_id, hist_item_ids (B, 50), dense inputs) is
built in a temp dir. Inputs are synthesised from the served signature: ids in [1, 3), never
padding; for the raw-feature ``serving_default`` of an lmn_tf export they are spelled as raw
values by `Vocabulary.identity` ("1", "2"), which an `--untrained` export's tables hold (a
trained export maps them to its unknown row: the same graph runs).
With `din` served, every other model's p50 latency over DIN's is reported per cell
(`lmn_over_din_p50` in the JSON). `--untrained lmn,din` compares the real models at their
defaults: the same feature stack, L = 50 and batch; LMN = DIN + the memory (√n = 300, K = 8,
H = 1, d_v = 32) + its read-out attention. Add `--model lmn_old=BASE` to serve an earlier
export next to them. The server runs as a separate process; the clients are Python threads
in this one, so at high concurrency the client side (GIL, JSON) is part of what is measured.
Prints a table, writes JSON. A quick check that it runs (seconds, not a measurement):

    python benchmarks/serving_bench.py --untrained lmn,din --batches 1 --concurrency 1 \
        --requests 2 --seconds 0.2 --out /tmp/serving_bench.json
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import os
import sys
import tempfile
import threading
import time

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from lmn_tf.data.raw import RAW_FEATURES
from lmn_tf.data.schema import Vocab
from lmn_tf.data.vocabulary import Vocabulary
from lmn_tf.serving import ServerProcess, model_metadata_grpc, predict_rest_body, signature_defs

# MovieLens-1M's vocabulary sizes: the untrained exports' (and their identity tables').
ML1M_VOCAB = Vocab(num_users=6041, num_items=3707, num_genders=3, num_ages=8,
                   num_occupations=22, num_zips=3440, num_genres=19, num_years=82)


def build_stand_in(path: str) -> None:
    class StandIn(tf.Module):
        def __init__(self):
            super().__init__()
            rng = np.random.default_rng(0)
            self.user = tf.Variable(rng.normal(size=(1000, 32)).astype(np.float32))
            self.item = tf.Variable(rng.normal(size=(5000, 32)).astype(np.float32))

        @tf.function(
            input_signature=[
                tf.TensorSpec([None], tf.int32, "user_id"),
                tf.TensorSpec([None, 50], tf.int32, "hist_item_ids"),
            ]
        )
        def serve(self, user_id, hist_item_ids):
            user = tf.gather(self.user, user_id)  # (B, 32)
            hist = tf.reduce_mean(tf.gather(self.item, hist_item_ids), axis=1)  # (B, 32)
            logit = tf.reduce_sum(user * hist, -1)
            return {"probability": tf.sigmoid(logit), "logit": logit}

    model = StandIn()
    tf.saved_model.save(model, path, signatures={"serving_default": model.serve})


def export_untrained(names: list[str], base: str) -> dict[str, str]:
    """Untrained lmn_tf models at MovieLens-1M vocabulary sizes, exported like trained ones.

    Latency depends on the graph, not on the weights' values, so this stands in for the
    trained exports when none is at hand.
    """
    from lmn_tf.data.random_batches import zero_features
    from lmn_tf.export import export_saved_model
    from lmn_tf.models import build_model

    for name in names:
        model = build_model(name, ML1M_VOCAB)
        model(zero_features(2), training=False)  # builds every variable
        export_saved_model(model, base, name)
    return {name: os.path.join(base, name) for name in names}


def start_server(models: dict[str, str], workdir: str, extra: list[str]) -> ServerProcess:
    config = os.path.join(workdir, "models.config")
    with open(config, "w") as f:
        f.write("model_config_list {\n")
        for name, base in models.items():
            f.write(
                f'  config {{ name: "{name}" base_path: "{os.path.abspath(base)}" '
                'model_platform: "tensorflow" }\n'
            )
        f.write("}\n")
    return ServerProcess(
        ["--model-config-file", config, "--poll-seconds", "0", *extra],
        os.path.join(workdir, "server.log"),
        env={"TF_CPP_MIN_LOG_LEVEL": "2"},
        timeout=300,
    )


def synth(sig, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A batch for signature ``sig``: ids (integer and string inputs) in [1, 3), floats
    normal. An lmn_tf export's raw-feature ``serving_default`` gets the ids as raw values
    (`Vocabulary.to_raw`: "1", "2", zips "001", ages and years of those indices)."""
    out = {}
    for name, info in sig.inputs.items():
        shape = [batch if d.size < 0 else d.size for d in info.tensor_shape.dim]
        dtype = tf.dtypes.as_dtype(info.dtype)
        if dtype.is_floating:
            out[name] = rng.normal(size=shape).astype(dtype.as_numpy_dtype)
        else:
            out[name] = rng.integers(1, 3, shape)
    if set(out) == set(RAW_FEATURES):
        return Vocabulary.identity(ML1M_VOCAB).to_raw(out)
    for name, info in sig.inputs.items():  # any other signature: its dtypes, ids as text
        dtype = tf.dtypes.as_dtype(info.dtype)
        if dtype == tf.string:
            out[name] = out[name].astype(str).astype(object)
        elif not dtype.is_floating:
            out[name] = out[name].astype(dtype.as_numpy_dtype)
    return out


class RestCaller:
    def __init__(self, port: int, name: str, f: dict[str, np.ndarray]):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.path = f"/v1/models/{name}:predict"
        self.body = json.dumps(predict_rest_body(f)).encode()  # encoded once, sent n times

    def __call__(self):
        self.conn.request("POST", self.path, self.body, {"Content-Type": "application/json"})
        response = self.conn.getresponse()
        body = json.loads(response.read())
        assert response.status == 200, body


class GrpcCaller:
    def __init__(self, port: int, name: str, f: dict[str, np.ndarray]):
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.request = predict_pb2.PredictRequest()
        self.request.model_spec.name = name
        for k, v in f.items():
            self.request.inputs[k].CopyFrom(tf.make_tensor_proto(v))

    def __call__(self):
        response = self.stub.Predict(self.request, timeout=60)
        for v in response.outputs.values():
            tf.make_ndarray(v)


def latency(callers: dict, n: int) -> dict[str, dict[str, float]]:
    """p50/p99 per model; the models' requests alternate, so load swings hit all alike."""
    for caller in callers.values():
        for _ in range(5):  # warm the connection and the kernels for this shape
            caller()
    times: dict[str, list[float]] = {name: [] for name in callers}
    for _ in range(n):
        for name, caller in callers.items():
            t = time.perf_counter()
            caller()
            times[name].append((time.perf_counter() - t) * 1e3)
    return {
        name: {"p50_ms": float(np.percentile(t, 50)), "p99_ms": float(np.percentile(t, 99))}
        for name, t in times.items()
    }


def throughput(make_caller, concurrency: int, seconds: float) -> float:
    callers = [make_caller() for _ in range(concurrency)]
    for c in callers:
        c()
    done, stop = [0] * concurrency, threading.Event()

    def loop(i: int):
        while not stop.is_set():
            callers[i]()
            done[i] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", default=[], metavar="NAME=BASE_PATH")
    parser.add_argument(
        "--untrained",
        metavar="NAMES",
        help="export these lmn_tf models untrained (e.g. lmn,din) and serve them",
    )
    parser.add_argument("--batches", default="1,32,256")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--requests", type=int, default=100, help="per latency cell")
    parser.add_argument("--seconds", type=float, default=3.0, help="per throughput cell")
    parser.add_argument("--out", default="benchmarks/results/serving_bench.json")
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra `lmn-tf serve` flag, e.g. --server-arg=--enable-batching",
    )
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    levels = [int(c) for c in args.concurrency.split(",")]
    workdir = tempfile.mkdtemp(prefix="serving-bench-")
    models = dict(m.split("=", 1) for m in args.model)
    if args.untrained:
        models.update(export_untrained(args.untrained.split(","), workdir))
    if not models:
        build_stand_in(os.path.join(workdir, "stand_in", "1"))
        models = {"stand_in": os.path.join(workdir, "stand_in")}
    server = start_server(models, workdir, args.server_arg)
    rest_port, grpc_port = server.rest_port, server.grpc_port
    results: dict = {"models": {}, "config": vars(args)}
    try:
        rng = np.random.default_rng(0)
        sigs = {
            name: signature_defs(model_metadata_grpc(f"127.0.0.1:{grpc_port}", name))[
                "serving_default"
            ]
            for name in models
        }
        rows = results["models"] = {n: {"latency": {}, "requests_per_s": {}} for n in models}
        for proto, cls, port in (("rest", RestCaller, rest_port), ("grpc", GrpcCaller, grpc_port)):
            for b in batches:
                callers = {n: cls(port, n, synth(sigs[n], b, rng)) for n in models}
                for n, v in latency(callers, args.requests).items():
                    rows[n]["latency"][f"{proto}/b{b}"] = v
            for n in models:
                f1 = synth(sigs[n], 1, rng)
                for c in levels:
                    rps = throughput(functools.partial(cls, port, n, f1), c, args.seconds)
                    rows[n]["requests_per_s"][f"{proto}/c{c}"] = rps
    finally:
        server.stop(120)

    print(f"{'model':10} {'cell':12} {'p50 ms':>8} {'p99 ms':>8}")
    for name, row in results["models"].items():
        for cell, v in row["latency"].items():
            print(f"{name:10} {cell:12} {v['p50_ms']:8.2f} {v['p99_ms']:8.2f}")
    print(f"\n{'model':10} {'cell':12} {'req/s':>8}")
    for name, row in results["models"].items():
        for cell, v in row["requests_per_s"].items():
            print(f"{name:10} {cell:12} {v:8.1f}")
    if "din" in results["models"]:  # every other model against DIN, cell by cell
        din = results["models"]["din"]["latency"]
        for name, row in results["models"].items():
            if name == "din":
                continue
            ratio = {cell: row["latency"][cell]["p50_ms"] / v["p50_ms"] for cell, v in din.items()}
            results[f"{name}_over_din_p50"] = ratio
            print(f"\n{name}/DIN p50 latency ratio: "
                  + ", ".join(f"{k} {v:.3f}" for k, v in ratio.items()))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
