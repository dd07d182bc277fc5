"""`lmn-tf serve` under load (issue #18): REST and gRPC, batching off and on, by concurrency.

    python benchmarks/serving_load.py --model-base-path models/lmn --seconds 20   # full table
    python benchmarks/serving_load.py --seconds 2 --concurrency 1,64 --rows 1   # a smoke run

Serves one model (``--model-base-path BASE``, versions inside; without it an untrained LMN
at MovieLens-1M vocabulary sizes is exported into a temp dir: the same graph, hence the same
cost, as a trained one) with ``lmn-tf serve`` in its own process, once with batching off and
once with ``serving/batching.config``. For each protocol, request size (``--rows``) and
concurrency, a load generator in a separate process keeps ``concurrency`` requests in flight
(closed loop, keep-alive connections) for ``--seconds`` after a one-second warm-up:

- REST: ``wrk`` with a Lua script (POST body, status counts) when it is installed
  (``apt-get install wrk``), else a Python process (asyncio + aiohttp);
- gRPC: a Python process (``grpc.aio``) sending a PredictRequest built with the official
  protos, serialized once (the client never re-encodes, so its cost stays small).

Inputs are synthesised from the served signature (``serving_bench.synth``: ids in [1, 3)).
Each cell reports requests/s, rows/s, p50 / p99 / max latency, answers and errors by kind
(HTTP status or gRPC code; connect / read / write / timeout errors and exception names),
the server's CPU use, in all and by thread (event loop, workers, batch threads,
TensorFlow's and gRPC's own), and its RSS before and after. Then the same model is run in this
process (``Servable.run``, no server) at each request size with as many threads as the
server has workers: the rows/s a server could reach at best. ``--pin-client CPU`` pins the
load generator to that core (and the server to the others).

Cells whose requests take seconds (100 rows at concurrency 256) need ``--seconds`` well
above their latency: 20 s gives the full 32-cell table in about 15 minutes.
Prints a table, writes benchmarks/results/serving_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
MODEL = "lmn"
PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"

# -- the load generator (a process of its own; imports neither TensorFlow nor lmn_tf) --------


def _stats(latencies: list[float]) -> dict:
    if not latencies:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    lat = sorted(latencies)

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1e3

    return {"p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": lat[-1] * 1e3}


async def _closed_loop(call, concurrency: int, seconds: float, warmup: float) -> dict:
    """``concurrency`` workers call ``call()`` back to back; ``call`` returns the answer's
    kind ("200", "OK", "503", ...) or raises. Only calls started after ``warmup`` count."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    measure_from, end = start + warmup, start + warmup + seconds
    answers: dict[str, int] = {}
    ok_kinds = {"200", "OK"}
    latencies: list[float] = []

    async def worker(i: int) -> None:
        while (t0 := loop.time()) < end:
            try:
                kind = await call(i)
            except Exception as e:  # resets, timeouts, protocol errors: counted by kind
                kind = type(e).__name__
            if t0 >= measure_from:
                answers[kind] = answers.get(kind, 0) + 1
                if kind in ok_kinds:
                    latencies.append(loop.time() - t0)

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    wall = loop.time() - measure_from
    return {"requests": sum(answers.values()), "seconds": wall, "answers": answers,
            "ok": len(latencies), **_stats(latencies)}


async def _rest_client(spec: dict) -> dict:
    import aiohttp

    with open(spec["body_file"], "rb") as f:
        body = f.read()
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def call(_i: int) -> str:
            async with session.post(spec["url"], data=body, headers=headers) as r:
                await r.read()
                return str(r.status)

        return await _closed_loop(call, spec["concurrency"], spec["seconds"], spec["warmup"])


async def _grpc_client(spec: dict) -> dict:
    import grpc

    with open(spec["body_file"], "rb") as f:
        request = f.read()
    n = max(1, min(8, spec["concurrency"] // 32))  # HTTP/2 connections: a few, like a pool
    channels = [grpc.aio.insecure_channel(spec["target"], options=[
        ("grpc.max_receive_message_length", -1), ("grpc.use_local_subchannel_pool", 1)])
        for _ in range(n)]
    calls = [c.unary_unary(PREDICT_METHOD) for c in channels]  # bytes in, bytes out

    async def call(i: int) -> str:
        try:
            await calls[i % n](request, timeout=60)
        except grpc.aio.AioRpcError as e:
            return e.code().name
        return "OK"

    try:
        return await _closed_loop(call, spec["concurrency"], spec["seconds"], spec["warmup"])
    finally:
        for c in channels:
            await c.close()


def client_main(spec: dict) -> None:
    if spec.get("cpu") is not None:
        os.sched_setaffinity(0, {spec["cpu"]})
    run = _rest_client if spec["protocol"] == "rest" else _grpc_client
    print(json.dumps(asyncio.run(run(spec))), flush=True)


# -- wrk ------------------------------------------------------------------------------------

_WRK_LUA = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("LOAD_BODY_FILE"), "rb"))
wrk.body = f:read("*a")
f:close()
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local counts = {}
  for _, t in ipairs(threads) do
    for status, n in pairs(t:get("statuses")) do
      counts[tostring(status)] = (counts[tostring(status)] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(counts) do table.insert(parts, string.format('"%s": %d', status, n)) end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "statuses": {%s}, "connect": %d, ' ..
    '"read": %d, "write": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, table.concat(parts, ", "), e.connect, e.read, e.write,
    e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def run_wrk(url: str, body_file: str, concurrency: int, seconds: float, cpu: int | None,
            workdir: str, server_pid: int) -> dict:
    script = os.path.join(workdir, "post.lua")
    with open(script, "w") as f:
        f.write(_WRK_LUA)
    threads = min(concurrency, 2)
    env = {**os.environ, "LOAD_BODY_FILE": body_file}
    prefix = ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []

    def wrk(duration: float) -> str:
        cmd = [*prefix, "wrk", "-t", str(threads), "-c", str(concurrency),
               "-d", f"{max(1, round(duration))}s", "--timeout", "30s", "-s", script, url]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout

    wrk(1)  # warm-up: connections, the server's pools
    # what the warm-up left in flight (its connections are gone, the requests are not)
    # would hold admission places and CPU during the measured run
    wait_idle(server_pid)
    out = wrk(seconds)
    line = next(ln for ln in out.splitlines() if ln.startswith("WRK_JSON "))
    w = json.loads(line[len("WRK_JSON "):])
    answers = dict(w["statuses"])
    for kind in ("connect", "read", "write", "timeout"):
        if w[kind]:
            answers[f"socket_{kind}"] = w[kind]
    return {"requests": w["requests"], "seconds": w["duration_us"] / 1e6, "answers": answers,
            "ok": answers.get("200", 0), "p50_ms": w["p50_us"] / 1e3,
            "p99_ms": w["p99_us"] / 1e3, "max_ms": w["max_us"] / 1e3}


def run_python_client(spec: dict) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--client", json.dumps(spec)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False,
                         timeout=spec["seconds"] + spec["warmup"] + 120)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the server and the cells ----------------------------------------------------------------


def server_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds by thread name (digits dropped, so a pool's threads add up): the server
    names its loop ``lmn-frontend``, its workers ``lmn-worker`` and batch threads
    ``lmn-batch``; TensorFlow's pools and gRPC's core threads carry their own names."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                text = f.read()
        except OSError:  # the thread ended
            continue
        name = text[text.index("(") + 1 : text.rindex(")")].rstrip("0123456789_-")
        if name.startswith("python"):  # unnamed: TensorFlow's pools inherit the process name
            name = "tf-pools+main"
        fields = text.rsplit(")", 1)[1].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def wait_idle(pid: int, timeout: float = 60.0) -> float:
    """Waits until the server uses under 5% of a core (what a finished cell's clients left
    in flight, e.g. 64 queued 100-row requests, is done); returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        before = server_cpu_seconds(pid)
        time.sleep(0.5)
        if server_cpu_seconds(pid) - before < 0.025:
            break
    return time.monotonic() - started


def bodies(server, rows: int, workdir: str) -> tuple[str, str]:
    """REST body and serialized gRPC PredictRequest for ``rows`` rows, from the signature."""
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    from lmn_tf.serving import model_metadata_grpc, signature_defs

    sys.path.insert(0, HERE)
    from serving_bench import synth

    sig = signature_defs(model_metadata_grpc(server.grpc, MODEL))["serving_default"]
    f = synth(sig, rows, np.random.default_rng(rows))
    rest = os.path.join(workdir, f"rest-{rows}.json")
    instances = [{k: _jsonable(v[i]) for k, v in f.items()} for i in range(rows)]
    with open(rest, "w") as fh:
        json.dump({"instances": instances}, fh)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    for k, v in f.items():
        request.inputs[k].CopyFrom(tf.make_tensor_proto(v))
    grpc_file = os.path.join(workdir, f"grpc-{rows}.pb")
    with open(grpc_file, "wb") as fh:
        fh.write(request.SerializeToString())
    return rest, grpc_file


def _jsonable(value):
    if isinstance(value, bytes):
        return value.decode()
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value.decode() if isinstance(value, bytes) else value


def run_cell(server, protocol: str, rows: int, concurrency: int, files: dict, args,
             workdir: str) -> dict:
    rest_file, grpc_file = files[rows]
    wait_idle(server.pid)
    rss_before, cpu_before = server.rss_mb(), server_cpu_seconds(server.pid)
    threads_before = thread_cpu_seconds(server.pid)
    use_wrk = protocol == "rest" and args.rest_client in ("auto", "wrk") and shutil.which("wrk")
    if protocol == "rest" and args.rest_client == "wrk" and not use_wrk:
        raise SystemExit("--rest-client wrk: wrk is not installed (apt-get install wrk)")
    started = time.monotonic()
    if use_wrk:
        out = run_wrk(f"{server.rest}/v1/models/{MODEL}:predict", rest_file, concurrency,
                      args.seconds, args.pin_client, workdir, server.pid)
        client = "wrk"
    else:
        spec = {"protocol": protocol, "concurrency": concurrency, "seconds": args.seconds,
                "warmup": 1.0, "cpu": args.pin_client,
                "body_file": rest_file if protocol == "rest" else grpc_file,
                "url": f"{server.rest}/v1/models/{MODEL}:predict", "target": server.grpc}
        out = run_python_client(spec)
        client = "python"
    wall = time.monotonic() - started
    cpu = server_cpu_seconds(server.pid) - cpu_before
    after = thread_cpu_seconds(server.pid)
    by_thread = {k: v - threads_before.get(k, 0.0) for k, v in after.items()}
    by_thread = {k: round(100 * v / wall, 1) for k, v in sorted(by_thread.items(),
                 key=lambda kv: -kv[1]) if v > 0.005 * wall}
    seconds = out["seconds"] or 1e-9
    return {"protocol": protocol, "rows": rows, "concurrency": concurrency, "client": client,
            **out, "requests_per_s": out["requests"] / seconds,
            "ok_per_s": out["ok"] / seconds, "rows_per_s": out["ok"] * rows / seconds,
            "server_cpu_percent": 100 * cpu / wall, "server_cpu_percent_by_thread": by_thread,
            "rss_mb_before": rss_before, "rss_mb_after": server.rss_mb()}


def in_process(model_dir: str, rows_list: list[int], threads: int, seconds: float) -> dict:
    """rows/s of ``Servable.run`` in this process, ``threads`` callers, no server."""
    import numpy as np

    from lmn_tf.serving.servable import Servable

    sys.path.insert(0, HERE)
    from serving_bench import synth

    version = max(int(v) for v in os.listdir(model_dir) if v.isdigit())
    servable = Servable(MODEL, version, os.path.join(model_dir, str(version)))
    out = {}
    try:
        sig = servable.signature_defs["serving_default"]
        for rows in rows_list:
            f = synth(sig, rows, np.random.default_rng(rows))
            servable.run("serving_default", f)  # warm-up
            out[str(rows)] = _run_threads(servable, f, threads, seconds, rows)
    finally:
        servable.unload()
    return out


def _run_threads(servable, f: dict, threads: int, seconds: float, rows: int) -> dict:
    counts = [0] * threads
    end = time.monotonic() + seconds

    def loop(i: int) -> None:
        while time.monotonic() < end:
            servable.run("serving_default", f)
            counts[i] += 1

    pool = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    started = time.monotonic()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.monotonic() - started
    return {"threads": threads, "runs_per_s": sum(counts) / wall,
            "rows_per_s": sum(counts) * rows / wall}


def export_untrained(workdir: str, tiny: bool) -> str:
    sys.path.insert(0, HERE)
    from reliability_serving import export_in_subprocess

    export_in_subprocess(workdir, seed=1, tiny=tiny)
    return os.path.join(workdir, MODEL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-base-path", help="BASE with versions 1/, 2/ ... (the demo's "
                        "models/lmn); default: an untrained LMN exported into a temp dir")
    parser.add_argument("--tiny", action="store_true", help="untrained tiny LMN (smoke runs)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured per cell")
    parser.add_argument("--concurrency", default="1,16,64,256")
    parser.add_argument("--rows", default="1,100", help="rows per request")
    parser.add_argument("--protocols", default="rest,grpc")
    parser.add_argument("--batching", default="off,on")
    parser.add_argument("--rest-client", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--pin-client", type=int, help="CPU for the load generator; the "
                        "server gets the others")
    parser.add_argument("--server-flag", action="append", default=[],
                        help="extra `lmn-tf serve` flag (repeatable), e.g. --server-flag="
                        "--worker-threads=2")
    parser.add_argument("--out", default=os.path.join(RESULTS, "serving_load.json"))
    parser.add_argument("--client", help=argparse.SUPPRESS)  # the load generator process
    args = parser.parse_args(argv)
    if args.client:
        client_main(json.loads(args.client))
        return 0

    from lmn_tf.serving import ServerProcess

    work = tempfile.mkdtemp(prefix="serving-load-")
    model_dir = args.model_base_path or export_untrained(work, args.tiny)
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    rows_list = [int(r) for r in args.rows.split(",")]
    results: dict = {"command": "python benchmarks/serving_load.py " + " ".join(
        sys.argv[1:] if argv is None else argv), "model_dir": model_dir,
        "cpus": len(os.sched_getaffinity(0)), "load_average": os.getloadavg(), "cells": []}
    env = {"TF_CPP_MIN_LOG_LEVEL": "2"}
    server_cpus = None
    if args.pin_client is not None:
        server_cpus = sorted(os.sched_getaffinity(0) - {args.pin_client})
    try:
        for batching in args.batching.split(","):
            flags = ["--model-base-path", model_dir, "--model-name", MODEL, "--poll-seconds", "0",
                     *args.server_flag]
            if batching == "on":
                flags += ["--enable-batching", "--batching-parameters-file",
                          os.path.join(REPO, "serving", "batching.config")]
            log_path = os.path.join(work, f"server-batching-{batching}.log")
            server = ServerProcess(flags, log_path, env=env, timeout=300)
            try:
                if server_cpus:
                    os.sched_setaffinity(server.pid, set(server_cpus))
                files = {rows: bodies(server, rows, work) for rows in rows_list}
                for protocol in args.protocols.split(","):
                    for rows in rows_list:
                        for c in concurrencies:
                            print(f"batching {batching}, {protocol}, {rows} row(s), "
                                  f"concurrency {c} ...", flush=True)
                            cell = run_cell(server, protocol, rows, c, files, args, work)
                            cell["batching"] = batching
                            results["cells"].append(cell)
            finally:
                code = server.stop()
                results[f"server_exit_code_batching_{batching}"] = code
                results[f"server_log_errors_batching_{batching}"] = [
                    ln[:300] for ln in server.log().splitlines() if " ERROR " in ln][:10]
        threads = 2 * len(os.sched_getaffinity(0))  # the server's default --worker-threads
        print(f"in-process Servable.run, {threads} threads ...", flush=True)
        results["in_process"] = in_process(model_dir, rows_list, threads, args.seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(results, fh, indent=2)
    print_table(results)
    print(f"wrote {args.out}")
    return 0


def print_table(r: dict) -> None:
    head = (f"{'batch':<5} {'proto':<5} {'rows':>4} {'conc':>4} {'client':<6} {'req/s':>8} "
            f"{'rows/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'cpu%':>5} "
            f"{'RSS MB':>13}  answers")
    print("\n" + head)

    def ms(v):
        return f"{v:8.1f}" if v is not None else f"{'-':>8}"

    for c in r["cells"]:
        answers = ", ".join(f"{k}:{v}" for k, v in sorted(c["answers"].items()))
        print(f"{c['batching']:<5} {c['protocol']:<5} {c['rows']:>4} {c['concurrency']:>4} "
              f"{c['client']:<6} {c['requests_per_s']:>8.0f} {c['rows_per_s']:>9.0f} "
              f"{ms(c['p50_ms'])} {ms(c['p99_ms'])} {ms(c['max_ms'])} "
              f"{c['server_cpu_percent']:>5.0f} "
              f"{c['rss_mb_before']:>6.0f}>{c['rss_mb_after']:<6.0f}  {answers}")
    busiest = max((c["concurrency"] for c in r["cells"] if c["concurrency"] <= 64), default=0)
    print(f"\nserver CPU % by thread (100 = one core), concurrency {busiest} cells:")
    for c in r["cells"]:
        if c["concurrency"] == busiest:
            top = ", ".join(f"{k} {v:.0f}" for k, v in list(
                c["server_cpu_percent_by_thread"].items())[:6])
            print(f"  batching {c['batching']}, {c['protocol']}, {c['rows']} row(s): {top}")
    for rows, x in r.get("in_process", {}).items():
        line = f"\nin-process Servable.run, {rows} row(s), {x['threads']} threads: "
        line += f"{x['runs_per_s']:.0f} runs/s, {x['rows_per_s']:.0f} rows/s"
        served = [c for c in r["cells"] if str(c["rows"]) == rows]
        if served:
            best = max(served, key=lambda c: c["rows_per_s"])
            line += (f"; best served {best['rows_per_s']:.0f} rows/s ({best['protocol']}, "
                     f"batching {best['batching']}, concurrency {best['concurrency']}) = "
                     f"{best['rows_per_s'] / x['rows_per_s']:.0%} of in-process")
        print(line, end="")
    print()


if __name__ == "__main__":
    sys.exit(main())
