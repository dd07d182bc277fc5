"""In-process latency of exported SavedModels, and which ops the time goes to.

    python benchmarks/serving_profile.py --untrained lmn,din [--batches 1,32,256] [--ops 15]

Exports the named lmn_tf models untrained at MovieLens-1M sizes (as
``serving_bench.py --untrained`` does), loads each version the way ``lmn-tf serve`` does (the
``serve`` MetaGraph in a v1 Session, ``lmn_tf.serving.servable.Servable``) and times one
``Session.run`` of ``serving_default`` per batch size: no HTTP, gRPC or JSON, so the numbers
isolate the graph. Also times ``tf.saved_model.load(...).signatures["serving_default"]``
(the TF2 path). With ``--ops N``, one traced run per model and batch prints the N ops with
the most summed kernel time (step stats), and the graph's op count. Writes JSON.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf

import lmn_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before tf.keras is touched)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serving_bench import export_untrained, synth

from lmn_tf.serving.servable import Servable


def timed(calls: dict, n: int) -> dict[str, dict[str, float]]:
    """p50/p99 wall ms and mean process CPU ms per call; the calls alternate, so load swings
    on a shared machine hit every model alike."""
    for fn in calls.values():
        for _ in range(5):
            fn()
    wall: dict = {k: [] for k in calls}
    cpu = dict.fromkeys(calls, 0.0)
    for _ in range(n):
        for k, fn in calls.items():
            c, t = time.process_time(), time.perf_counter()
            fn()
            wall[k].append((time.perf_counter() - t) * 1e3)
            cpu[k] += (time.process_time() - c) * 1e3 / n
    return {k: {"p50_ms": float(np.percentile(w, 50)), "p99_ms": float(np.percentile(w, 99)),
                "cpu_ms": cpu[k]} for k, w in wall.items()}


def op_profile(servable: Servable, f: dict[str, np.ndarray], top: int, runs: int = 20):
    """Summed per-op kernel time (µs) over ``runs`` traced runs, by op type and by node."""
    sig = servable.signature_defs["serving_default"]
    feed = {sig.inputs[k].name: v for k, v in f.items()}
    fetch = [sig.outputs[a].name for a in sorted(sig.outputs)]
    by_type, by_node = collections.Counter(), collections.Counter()
    opts = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
    for _ in range(runs):
        meta = tf.compat.v1.RunMetadata()
        servable._session.run(fetch, feed_dict=feed, options=opts, run_metadata=meta)
        for dev in meta.step_stats.dev_stats:
            for node in dev.node_stats:
                us = (node.op_end_rel_micros - node.op_start_rel_micros) / runs
                op = node.timeline_label.split("=", 1)[-1].split("(")[0].strip() or node.node_name
                by_type[op] += us
                by_node[node.node_name] += us
    nodes = sum(len(d.node_stats) for d in meta.step_stats.dev_stats)
    return {"kernels_per_run": nodes, "kernel_us": sum(by_type.values()),
            "by_type": by_type.most_common(top), "by_node": by_node.most_common(top)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--untrained", default="lmn,din")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=VERSION_DIR")
    parser.add_argument("--batches", default="1,32,256")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--intra-op-threads", type=int, default=0,
                        help="Session intra-op pool size, like `lmn-tf serve` (0 = TF default)")
    parser.add_argument("--ops", type=int, default=0, help="print the N costliest ops")
    parser.add_argument("--out", default="benchmarks/results/serving_profile.json")
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="serving-profile-")
    paths = {n: os.path.join(b, "1") for n, b in
             export_untrained(args.untrained.split(","), workdir).items()} if args.untrained else {}
    paths.update(m.split("=", 1) for m in args.model)
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=args.intra_op_threads)
    servables = {n: Servable(n, 1, p, session_config=config) for n, p in paths.items()}
    loaded = {n: tf.saved_model.load(p).signatures["serving_default"] for n, p in paths.items()}
    rng = np.random.default_rng(0)
    results: dict = {"config": vars(args), "models": {n: {} for n in paths}}
    for b in (int(x) for x in args.batches.split(",")):
        feats = {n: synth(s.signature_defs["serving_default"], b, rng)  # raw ids of [1, 3)
                 for n, s in servables.items()}
        session = timed({n: functools.partial(s.run, "serving_default", feats[n])
                         for n, s in servables.items()}, args.requests)
        tf2 = timed({n: functools.partial(loaded[n], **{k: tf.constant(v) for k, v in
                                                        feats[n].items()})
                     for n in servables}, args.requests)
        for n, s in servables.items():
            row = results["models"][n][f"b{b}"] = {"session": session[n], "tf2_load": tf2[n]}
            print(f"{n:6} b{b:<4} session p50 {row['session']['p50_ms']:7.3f} ms "
                  f"p99 {row['session']['p99_ms']:7.3f} cpu {row['session']['cpu_ms']:7.3f} | "
                  f"tf.saved_model.load p50 {row['tf2_load']['p50_ms']:7.3f} ms", flush=True)
            if args.ops:
                prof = row["ops"] = op_profile(s, feats[n], args.ops)
                print(f"   {prof['kernels_per_run']} kernels, {prof['kernel_us']:.0f} µs summed")
                for op, us in prof["by_type"]:
                    print(f"     {us:9.1f} µs  {op}")
                for op, us in prof["by_node"]:
                    print(f"     {us:9.1f} µs  node {op}")
        if {"lmn", "din"} <= set(paths):
            lmn, din = results["models"]["lmn"][f"b{b}"], results["models"]["din"][f"b{b}"]
            r = {"session": lmn["session"]["p50_ms"] / din["session"]["p50_ms"],
                 "session_cpu": lmn["session"]["cpu_ms"] / din["session"]["cpu_ms"],
                 "tf2_load": lmn["tf2_load"]["p50_ms"] / din["tf2_load"]["p50_ms"]}
            results.setdefault("lmn_over_din_p50", {})[f"b{b}"] = r
            print(f"LMN/DIN b{b}: session p50 {r['session']:.2f}, session cpu "
                  f"{r['session_cpu']:.2f}, tf2 p50 {r['tf2_load']:.2f}")
    for s in servables.values():
        s.unload()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
