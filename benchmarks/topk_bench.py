"""Where the LMNLayer's time goes as √n grows, and what exact per-axis top-K costs.

    python benchmarks/topk_bench.py              # kernels for m in 100..3000, layer split (~5 min)
    python benchmarks/topk_bench.py --no-layer --out benchmarks/results/topk_bench_kernels.json
    python benchmarks/topk_bench.py --no-kernels --out benchmarks/results/topk_bench_layer.json

Part 1 (kernels, N = B·L = 12 800 rows): ``tf.math.top_k(k=32)`` over m scores, the same
selection by ``scoring.block_top_k`` for several block sizes, and the one-axis score matmul.
Part 2 (layer, B = 256, L = 50, d = 32, K = 32): train step and forward of ``LMNLayer``, the
same with the selection replaced by this batch's precomputed slots ("no select": what the step
would cost if selection were free), the two-stage selection alone on random scores, and the
two score einsums alone. Times are medians over ``--repeats`` rounds that visit every
configuration in turn, so slow phases of a shared machine hit all cells alike
(``benchmarks/peer/benchutil.py``'s ``time_rounds``, shared by every script). Both process
CPU time (all threads; steadier under load) and wall time are recorded, in ms. Writes
benchmarks/results/topk_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent / "peer"))
import layer_bench  # imports lmn_tf first: tf-keras before tf.keras is used
from benchutil import time_rounds

from lmn_tf.memory import layer as memory_layer
from lmn_tf.memory import scoring

OUT = Path(__file__).parent / "results" / "topk_bench.json"


def _measure(cells: dict, repeats: int) -> dict:
    """cells: name -> zero-argument tf.function. Returns name -> {cpu_ms, wall_ms}: medians
    over `repeats` rounds, each one call of every cell in turn (after one warmup call each)."""
    timed = time_rounds({name: (lambda fn=fn: fn().numpy()) for name, fn in cells.items()},
                        repeats, steps=1, warmup=1,
                        progress=lambda it, desc: tqdm(it, desc=desc, leave=False))
    return {name: {"cpu_ms": round(t["cpu_ms"], 1), "wall_ms": round(t["wall_ms"], 1)}
            for name, t in timed.items()}


def kernels(args) -> dict:
    rng = np.random.default_rng(0)
    n, k, cells = args.batch * args.seq, args.top_k, {}
    for m in args.keys:
        x = tf.constant(rng.normal(size=(n, m)), tf.float32)
        q = tf.constant(rng.normal(size=(n, args.key_dim)), tf.float32)
        keys = tf.constant(rng.normal(size=(m, args.key_dim)), tf.float32)
        cells[f"m={m} top_k"] = tf.function(lambda x=x: tf.reduce_sum(tf.math.top_k(x, k)[0]))
        cells[f"m={m} matmul"] = tf.function(
            lambda q=q, keys=keys: tf.reduce_sum(tf.matmul(q, keys, transpose_b=True)))
        for b in args.blocks:
            if -(-m // b) > k:
                got = scoring.block_top_k(x, k, b)[1]
                assert np.array_equal(got.numpy(), tf.math.top_k(x, k).indices.numpy())
                cells[f"m={m} block_top_k b={b}"] = tf.function(
                    lambda x=x, b=b: tf.reduce_sum(scoring.block_top_k(x, k, b)[0]))
    return _measure(cells, args.repeats)


def layer_split(args) -> dict:
    slots = {}

    def precomputed(s_row, s_col, k):  # this batch's real slots: selection costs nothing
        ids = slots[(s_row.shape[-1], s_row.shape[-2])]
        return tf.zeros(ids.shape), ids

    # A benchmark-only mode; the layer looks its selection up in SELECTION at trace time.
    memory_layer.SELECTION["precomputed"] = precomputed
    rng = np.random.default_rng(1)
    cells = {}
    for sqrt_n in args.sqrt_n:
        for heads in args.heads:
            layer = layer_bench._layer(sqrt_n, heads, "two_stage", args)
            layer(*layer_bench._inputs(1, args)[:2])
            inputs = layer_bench._inputs(args.batch, args)
            slots[(sqrt_n, heads)] = tf.constant(layer(*inputs[:2], return_slots=True)[1])
            tag = f"sqrt_n={sqrt_n} H={heads}"
            for mode, name in (("two_stage", ""), ("precomputed", " no select")):
                layer.scoring = mode  # read when a function is traced: trace now
                for phase, make in (("train", layer_bench._train_step),
                                    ("forward", layer_bench._forward)):
                    cells[f"{tag} {phase}{name}"] = make(layer, inputs, False)
                    cells[f"{tag} {phase}{name}"]().numpy()
            layer.scoring = "two_stage"
            shape = (args.batch, args.seq, heads, sqrt_n)
            s_row, s_col = (tf.constant(rng.normal(size=shape), tf.float32) for _ in range(2))
            cells[f"{tag} select"] = tf.function(lambda r=s_row, c=s_col: tf.reduce_sum(
                scoring.two_stage_top_k(r, c, args.top_k)[0]))
            cells[f"{tag} axis top_k x2"] = tf.function(lambda r=s_row, c=s_col: tf.reduce_sum(
                scoring.axis_top_k(r, args.top_k)[0] + scoring.axis_top_k(c, args.top_k)[0]))
            q = tf.constant(rng.normal(size=(args.batch, args.seq, heads, args.key_dim)),
                            tf.float32)
            cells[f"{tag} score einsum x2"] = tf.function(lambda q=q, layer=layer: tf.reduce_sum(
                tf.einsum("blhd,hmd->blhm", q, layer.row_keys))
                + tf.reduce_sum(tf.einsum("blhd,hmd->blhm", q, layer.col_keys)))
    return _measure(cells, args.repeats)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, nargs="+", default=[100, 300, 1000, 2000, 3000])
    parser.add_argument("--blocks", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--sqrt-n", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--heads", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seq", type=int, default=50)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--top-k", type=int, default=32)
    parser.add_argument("--key-dim", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-layer", action="store_true", help="kernels only")
    parser.add_argument("--no-kernels", action="store_true", help="layer split only")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    result = {} if args.no_kernels else {"kernels": kernels(args)}
    if not args.no_layer:
        result["layer"] = layer_split(args)
    print(f"\nB·L={args.batch * args.seq} K={args.top_k} d_k={args.key_dim}, median of "
          f"{args.repeats} rounds, ms; TF {tf.__version__}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}")
    for part, cells in result.items():
        print(f"\n{part:<40} {'cpu':>9} {'wall':>9}")
        for name, t in cells.items():
            print(f"{name:<40} {t['cpu_ms']:>9.1f} {t['wall_ms']:>9.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    args.out.write_text(json.dumps({"config": config, "tensorflow": tf.__version__,
                                    "loadavg": os.getloadavg(), **result}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
