"""Three parts of the LMN ranking model's train step, each against what it replaced, in one run:

- ``sparse_adam``: `SparseAdam`'s step on a (rows, d) table from a gradient of ``reads`` rows
  with repeats: the C++ op (`LmnSparseAdamApply`) against the stock path (tf-keras'
  `tf.unique` + segment sum, then gathers and three scatters);
- ``router``: the group router's cosines of B history bags (L items each) to C centroids of
  width D: one sparse (B, D) x (D, C) product against a (B, L, C) gather and an einsum;
- ``read_out``: the weighted sum of B·L·H·K value rows, forward and backward: one
  (1, H·K) x (H·K, d) matmul per item against a broadcast product and sum.

    python benchmarks/step_parts_bench.py             # ML-1M's defaults: B 1024, H 4, K 32
    python benchmarks/step_parts_bench.py --batch 8 --rows 64 --steps 1   # smoke

Both sides of a part alternate in rounds (`benchutil.time_rounds`); a ratio is new / old wall
time (medians). Prints a table and writes ``benchmarks/results/step_parts_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from lmn_tf.memory import SparseAdam  # sets tf-keras before tf.keras is used
from lmn_tf.memory.ops import kernel_available, sparse_adam

sys.path.insert(0, str(Path(__file__).parent / "peer"))
from benchutil import time_rounds

OUT = Path(__file__).parent / "results" / "step_parts_bench.json"


def sparse_adam_cells(args, rng):
    n, d, reads = args.rows, args.dim, args.batch * args.heads * args.top_k
    ids = tf.constant(rng.integers(0, n, reads), tf.int32)
    grad = tf.constant(rng.normal(size=(reads, d)), tf.float32)
    cells = {}
    for name, use_op in (("stock", False), ("op", True)):
        table, optimizer = tf.Variable(rng.normal(size=(n, d)).astype(np.float32)), SparseAdam(0.03)

        def step(table=table, optimizer=optimizer, use_op=use_op):
            supports = sparse_adam.supports
            sparse_adam.supports = supports if use_op else (lambda *a: False)
            try:
                optimizer.apply_gradients([(tf.IndexedSlices(grad, ids, (n, d)), table)])
            finally:
                sparse_adam.supports = supports

        traced = tf.function(step)
        cells[name] = lambda traced=traced, table=table: (traced(), table.numpy()[0, 0])
    return cells


def router_cells(args, rng):
    b, length, d, c = args.batch, args.seq, args.buckets, args.groups
    centroids = tf.constant(rng.normal(size=(d, c)), tf.float32)  # (D, C)
    bucket = tf.constant(rng.integers(0, d, (b, length)), tf.int64)
    weight = tf.constant(rng.random((b, length)), tf.float32)
    gather = tf.function(lambda: tf.einsum("bl,blc->bc", weight, tf.gather(centroids, bucket)))

    def product():
        rows = tf.repeat(tf.range(b, dtype=tf.int64), length)
        bags = tf.SparseTensor(tf.stack([rows, tf.reshape(bucket, [-1])], 1),
                               tf.reshape(weight, [-1]), (b, d))
        return tf.sparse.sparse_dense_matmul(bags, centroids)

    product = tf.function(product)
    np.testing.assert_allclose(gather().numpy(), product().numpy(), rtol=1e-4, atol=1e-3)
    return {"gather": lambda: gather().numpy(), "product": lambda: product().numpy()}


def read_out_cells(args, rng):
    shape = (args.batch, 1, args.heads, args.top_k)
    w = tf.constant(rng.normal(size=shape), tf.float32)
    v = tf.constant(rng.normal(size=(*shape, args.dim)), tf.float32)
    hk = args.heads * args.top_k

    def with_grads(read):
        def fn():
            with tf.GradientTape() as tape:
                tape.watch([w, v])
                out = read(w, v)
                loss = tf.reduce_sum(out * out)
            return tape.gradient(loss, [w, v])
        return tf.function(fn)

    broadcast = with_grads(lambda w, v: tf.reduce_sum(w[..., None] * v, (2, 3)))
    matmul = with_grads(lambda w, v: tf.reshape(tf.matmul(
        tf.reshape(w, (args.batch, 1, 1, hk)), tf.reshape(v, (args.batch, 1, hk, args.dim))),
        (args.batch, 1, args.dim)))
    for a, b in zip(broadcast(), matmul(), strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)
    return {"broadcast": lambda: broadcast()[0].numpy(), "matmul": lambda: matmul()[0].numpy()}


PARTS = {"sparse_adam": (sparse_adam_cells, "stock", "op"),
         "router": (router_cells, "gather", "product"),
         "read_out": (read_out_cells, "broadcast", "matmul")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1024, help="B, queries per step")
    parser.add_argument("--seq", type=int, default=50, help="L, history items per bag")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--top-k", type=int, default=32)
    parser.add_argument("--dim", type=int, default=32, help="d, the value width")
    parser.add_argument("--rows", type=int, default=90_000, help="value table rows (√n = 300)")
    parser.add_argument("--buckets", type=int, default=4096, help="D, a history bag's width")
    parser.add_argument("--groups", type=int, default=316, help="C, the router's centroids")
    parser.add_argument("--steps", type=int, default=20, help="timed calls per side, round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if not kernel_available():
        print("the kernel library is not built: the sparse_adam part's two sides are both "
              "the stock path", file=sys.stderr)
    rng = np.random.default_rng(0)
    start, rows = time.time(), []
    print(f"{'part':<12} {'old':>10} {'ms':>8} {'new':>8} {'ms':>8} {'new/old':>8}")
    for part, (cells_of, old, new) in PARTS.items():
        got = time_rounds(cells_of(args, rng), args.rounds, steps=args.steps, warmup=2)
        ratio = got[new]["wall_ms"] / got[old]["wall_ms"]
        rows.append({"part": part, "old": old, "new": new, "old_ms": got[old]["wall_ms"],
                     "new_ms": got[new]["wall_ms"], "ratio": ratio, "timings": got})
        print(f"{part:<12} {old:>10} {got[old]['wall_ms']:>8.2f} {new:>8} "
              f"{got[new]['wall_ms']:>8.2f} {ratio:>7.2f}x", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "tensorflow": tf.__version__, "kernel": kernel_available(), "cores": os.cpu_count(),
        "wall_seconds": round(time.time() - start, 1), "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
