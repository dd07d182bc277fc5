"""LMNLayer speed: forward and train step vs √n, heads, scoring mode and XLA.

    python benchmarks/layer_bench.py            # the issue's grid (minutes on 2 cores)
    python benchmarks/layer_bench.py --quick    # √n 100 and 1000, H = 1, fewer steps
    python benchmarks/layer_bench.py --sqrt-n 3000 --forward-only --no-xla --block-min-keys 0
                                                # per-axis top-K without block pruning
    python benchmarks/layer_bench.py --sqrt-n 100 300 1000 --no-xla --warmup 1 \
        --broadcast-gb 0 --selection kernel stock   # the C++ selection kernel vs stock ops

Prints a table and writes benchmarks/results/layer_bench.json. A train step is forward,
memory loss, gradient and a CompositeOptimizer step (values: legacy Adagrad, sparse; the
rest: legacy Adam). The broadcast mode materialises B·L·H·n scores; where that exceeds
``--broadcast-gb`` both modes are also timed at the largest batch that fits ("B" column),
so the two-stage/broadcast ratio is always measured on equal work, in the same run.
Rows record the median wall time ("ms") and process CPU time over all threads ("cpu_ms") of
the timed steps, as ``benchmarks/peer/benchutil.py``'s ``time_call`` measures them for every
script; on a shared machine the CPU-time ratios are the steadier ones.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from lmn_tf.memory import LMNLayer, slot_usage_metrics  # sets tf-keras before tf.keras is used
from lmn_tf.memory import scoring as selection
from lmn_tf.memory.ops import kernel_available, stock_selection

sys.path.insert(0, str(Path(__file__).parent / "peer"))
from benchutil import time_call

OUT = Path(__file__).parent / "results" / "layer_bench.json"


def _median_ms(fn, steps: int, warmup: int) -> dict:
    """Median wall time and process CPU time (all threads; steadier on a shared machine)."""
    t = time_call(lambda: fn().numpy(), steps, warmup)  # warmup: tracing / XLA compilation
    return {"ms": t["wall_ms"], "cpu_ms": t["cpu_ms"]}


def _inputs(batch, args, seed=0):
    rng = np.random.default_rng(seed)
    items = tf.constant(rng.normal(size=(batch, args.seq, args.dim)), tf.float32)
    user = tf.constant(rng.normal(size=(batch, args.dim)), tf.float32)
    mask = tf.sequence_mask(rng.integers(args.seq // 2, args.seq + 1, batch), args.seq)
    return items, user, mask


def _layer(sqrt_n, heads, scoring, args):
    return LMNLayer(num_keys=sqrt_n, top_k=args.top_k, num_heads=heads, key_dim=args.key_dim,
                    scoring=scoring)


def _forward(layer, inputs, xla):
    items, user, mask = inputs
    return tf.function(lambda: tf.reduce_sum(layer(items, user, mask=mask)), jit_compile=xla)


def _train_step(layer, inputs, xla, dense=False):
    import tensorflow_recommenders as tfrs  # after lmn_tf: TFRS touches tf.keras on import

    items, user, mask = inputs
    values = {v.ref() for v in layer.value_variables}
    rest = [v for v in layer.trainable_variables if v.ref() not in values]
    optimizer = tfrs.experimental.optimizers.CompositeOptimizer([
        (tf.keras.optimizers.legacy.Adagrad(0.1), lambda: layer.value_variables),
        (tf.keras.optimizers.legacy.Adam(1e-3), lambda: rest)])
    if dense:  # the anti-pattern, for comparison: Adam's update touches every value row
        optimizer = tf.keras.optimizers.legacy.Adam(1e-3)

    @tf.function(jit_compile=xla)
    def grads():
        with tf.GradientTape() as tape:
            # training=True: the real train step (its backward is O(K) per query); without
            # it the layer takes the inference path, whose top-k gradient is O(√n).
            out = layer(items, user, mask=mask, training=True)
            loss = tf.reduce_mean(out**2) + tf.add_n(layer.losses)
        return loss, tape.gradient(loss, layer.trainable_variables)

    @tf.function
    def step():
        # The optimizer update stays outside the XLA cluster: tf-keras' sparse apply ops
        # have no XLA kernels, and the step then has the same shape with and without XLA.
        loss, g = grads()
        optimizer.apply_gradients(zip(g, layer.trainable_variables, strict=True))
        return loss

    return step


def _time(args, layer, phase, xla, batch, scoring="two_stage", path="kernel"):
    if path == "stock":  # the path is chosen when the function is traced, in _median_ms
        with stock_selection():
            return _time(args, layer, phase, xla, batch, scoring, "kernel")
    inputs = _inputs(batch, args)
    layer.scoring = scoring  # read when a function is traced: one layer serves both modes
    if phase == "forward":
        fn = _forward(layer, inputs, xla)
    else:
        fn = _train_step(layer, inputs, xla, dense=phase == "train_adam")
    try:
        return _median_ms(fn, args.steps, args.warmup)
    except (tf.errors.OpError, ValueError) as err:  # e.g. out of memory: record, go on
        print(f"  failed: sqrt_n={layer.num_keys} H={layer.num_heads} {scoring} {phase} "
              f"xla={xla}: {type(err).__name__}: {str(err)[:200]}")
        return {"ms": None, "cpu_ms": None}
    finally:
        layer.scoring = "two_stage"


def _diagnostics_ms(args, sqrt_n):
    """Cost of updating and reading all three usage metrics for one batch of slot ids."""
    metrics = slot_usage_metrics(sqrt_n**2, window=100)
    rng = np.random.default_rng(0)
    slots = tf.constant(rng.integers(0, sqrt_n**2, (args.batch, args.seq, 1, args.top_k)),
                        tf.int32)

    @tf.function
    def update():
        for metric in metrics:
            metric.update_state(slots)
        return tf.stack([metric.result() for metric in metrics])

    return _median_ms(update, args.steps, args.warmup)["ms"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sqrt-n", type=int, nargs="+", default=[100, 300, 1000, 3000])
    parser.add_argument("--heads", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seq", type=int, default=50)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--top-k", type=int, default=32)
    parser.add_argument("--key-dim", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="timed repetitions (median)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--broadcast-gb", type=float, default=1.0,
                        help="largest B·L·H·n float32 score tensor to materialise")
    parser.add_argument("--dense-adam", action="store_true",
                        help="also time a train step with Adam on the values (dense, O(n))")
    parser.add_argument("--quick", action="store_true", help="√n 100 and 1000, H 1, 3 steps")
    parser.add_argument("--forward-only", action="store_true", help="skip the train steps")
    parser.add_argument("--no-xla", action="store_true", help="skip the jit_compile rows")
    parser.add_argument("--block-min-keys", type=int, default=selection.BLOCK_MIN_KEYS,
                        help="per-axis block pruning from this many keys (0: never), "
                        "for before/after comparisons")
    parser.add_argument("--selection", nargs="+", choices=("kernel", "stock"),
                        default=["kernel"], help="two-stage selection paths to time: the C++ "
                        "kernel (lmn_tf.memory.ops) and/or the stock TF ops")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if "kernel" in args.selection and not kernel_available():
        parser.error("the selection kernel is not built (pip install -e .)")
    if args.quick:
        args.sqrt_n, args.heads, args.steps, args.warmup = [100, 1000], [1], 3, 1
    selection.BLOCK_MIN_KEYS = args.block_min_keys or 2**31  # read when a function is traced

    rows = []

    def save(**extra):  # after every configuration, so an interrupted run keeps its rows
        args.out.parent.mkdir(parents=True, exist_ok=True)
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        args.out.write_text(json.dumps({"config": config, "tensorflow": tf.__version__,
                                        "rows": rows, **extra}, indent=1))

    grid = [(s, h) for s in args.sqrt_n for h in args.heads]
    for sqrt_n, heads in tqdm(grid, desc="layer_bench", unit="config"):
        # One layer (one n-row table) per configuration: tables at √n = 3000 are 1.2 GB.
        layer = _layer(sqrt_n, heads, "two_stage", args)
        layer(*_inputs(1, args)[:2])  # build eagerly, on one row
        per_row = args.seq * heads * sqrt_n**2 * 4  # broadcast score bytes per batch row
        fit = min(args.batch, int(args.broadcast_gb * 2**30 // per_row))
        phases = ["forward"] if args.forward_only else ["forward", "train"]
        # Adam's slots at √n = 3000: 2.3 GB more
        if args.dense_adam and sqrt_n <= 1000 and not args.forward_only:
            phases.append("train_adam")
        for xla in (False,) if args.no_xla else (False, True):
            for phase in phases if not xla else phases[:2]:
                for path in args.selection:
                    rows.append({"sqrt_n": sqrt_n, "heads": heads, "xla": xla, "phase": phase,
                                 "batch": args.batch, "scoring": "two_stage",
                                 "selection": path,
                                 **_time(args, layer, phase, xla, args.batch, path=path)})
            # Broadcast vs two-stage on equal work, forward only (its train step is worse).
            if fit >= 1:
                for scoring in ("broadcast", "two_stage") if fit < args.batch else ("broadcast",):
                    rows.append({"sqrt_n": sqrt_n, "heads": heads, "xla": xla,
                                 "phase": "forward", "batch": fit, "scoring": scoring,
                                 "selection": args.selection[0],
                                 **_time(args, layer, "forward", xla, fit, scoring,
                                         path=args.selection[0])})
        del layer
        gc.collect()
        tf.keras.backend.clear_session()
        save()
    diagnostics = {s: _diagnostics_ms(args, s) for s in args.sqrt_n}

    def ms(field="ms", selection=args.selection[0], **key):
        key["selection"] = selection
        found = [r[field] for r in rows if all(r[k] == v for k, v in key.items())]
        return found[0] if found else None

    print(f"\nB={args.batch} L={args.seq} d={args.dim} K={args.top_k} d_k={args.key_dim}, "
          f"median of {args.steps} steps, ms; TF {tf.__version__}, {os.cpu_count()} cores")
    print(f"{'sqrt_n':>6} {'H':>2} {'xla':>5} {'fwd':>9} {'train':>9} {'train Adam':>10} | "
          f"{'B':>4} {'fwd bcast':>10} {'fwd 2-stage':>11} {'bcast/2st':>9}")
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    for sqrt_n, heads in grid:
        for xla in (False,) if args.no_xla else (False, True):
            key = {"sqrt_n": sqrt_n, "heads": heads, "xla": xla}
            bcast = [r for r in rows if r["scoring"] == "broadcast" and
                     all(r[k] == v for k, v in key.items())]
            b = bcast[0]["batch"] if bcast else None
            fb = bcast[0]["ms"] if bcast else None
            ft = ms(**key, phase="forward", scoring="two_stage", batch=b) if b else None
            ratio = f"{fb / ft:.1f}x" if fb and ft else "-"
            print(f"{sqrt_n:>6} {heads:>2} {xla!s:>5} "
                  f"{fmt(ms(**key, phase='forward', scoring='two_stage', batch=args.batch)):>9} "
                  f"{fmt(ms(**key, phase='train', scoring='two_stage', batch=args.batch)):>9} "
                  f"{fmt(ms(**key, phase='train_adam', batch=args.batch)):>10} | "
                  f"{b or '-':>4} {fmt(fb):>10} {fmt(ft):>11} {ratio:>9}")
    ratios = {}
    lo, hi = min(args.sqrt_n), 1000 if 1000 in args.sqrt_n else max(args.sqrt_n)
    for heads in args.heads:
        for xla in (False,) if args.no_xla else (False, True):
            for field in ("ms", "cpu_ms"):  # wall, and CPU time (less sensitive to load)
                a, b = (ms(field, sqrt_n=s, heads=heads, xla=xla, phase="train",
                           scoring="two_stage", batch=args.batch) for s in (hi, lo))
                if a and b:
                    name = f"train sqrt_n={hi}/{lo} H={heads} xla={xla} {field[:-3] or 'wall'}"
                    ratios[name] = round(a / b, 2)
    for name, value in ratios.items():
        print(f"{name}: {value}x (target <= 1.3x)")
    if len(args.selection) > 1:  # kernel vs stock selection, same layer, same run
        print(f"\n{'sqrt_n':>6} {'H':>2} {'xla':>5} {'phase':>7} {'kernel ms':>10} "
              f"{'stock ms':>9} {'kernel/stock':>12} {'cpu ratio':>9}")
        for sqrt_n, heads in grid:
            for xla in (False,) if args.no_xla else (False, True):
                for phase in ("forward",) if args.forward_only else ("forward", "train"):
                    key = {"sqrt_n": sqrt_n, "heads": heads, "xla": xla, "phase": phase,
                           "scoring": "two_stage", "batch": args.batch}
                    got = {p: (ms(selection=p, **key), ms("cpu_ms", selection=p, **key))
                           for p in ("kernel", "stock")}
                    (kw, kc), (sw, sc) = got["kernel"], got["stock"]
                    wall = f"{kw / sw:.2f}x" if kw and sw else "-"
                    cpu = f"{kc / sc:.2f}x" if kc and sc else "-"
                    print(f"{sqrt_n:>6} {heads:>2} {xla!s:>5} {phase:>7} {fmt(kw):>10} "
                          f"{fmt(sw):>9} {wall:>12} {cpu:>9}")
    print("diagnostics update+result per batch (ms): "
          + ", ".join(f"n={s * s}: {v:.1f}" for s, v in diagnostics.items()))
    save(train_ratios=ratios, diagnostics_ms=diagnostics)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
