"""The Keras 3 LMNLayer (TensorFlow backend) against the tf-keras one: forward and train step.

    python benchmarks/keras3_bench.py                 # √n = 300, B = 256, L = 50, defaults
    python benchmarks/keras3_bench.py --sqrt-n 1000   # a larger memory

Both layers run the same math (lmn_tf.memory.core) on the same configuration and inputs, each
in one tf.function. Forward: the inference path (``training=False``, what ``predict`` and
serving run). Train step: forward in training mode, memory loss, gradient and each Keras's
three-rate recipe: tf-keras ``SparseAdam(0.03)`` on the values and a legacy ``Adam(1e-4)`` on
the addressing (as ``CompositeOptimizer`` applies them); Keras 3 ``MemoryAdam`` (the same
rates in one optimizer). The two layers are timed in alternating rounds, so drift in the
machine's load hits both. Both sides are timed and summarised by ``benchmarks/peer/benchutil.py``
(``time_rounds``, the statistics every benchmark script reports): a call during which other
processes took CPU time counts as contended, and a row's "ms" is the median wall time of its
quiet calls when at least 3 were quiet, else of all ("ms_basis" says which; "wall" holds
quartiles and every call); "cpu_ms" is the median process CPU time over all threads. The
keras3 / tf-keras ratios use one basis for both sides. Prints a table and writes
benchmarks/results/keras3_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import lmn_tf  # noqa: F401  (binds tf.keras to tf-keras; `import keras` stays Keras 3)
from lmn_tf.keras3 import LMNLayer as Keras3Layer
from lmn_tf.keras3 import MemoryAdam
from lmn_tf.memory import LMNLayer as Keras2Layer
from lmn_tf.memory import SparseAdam
from lmn_tf.memory.ops import kernel_available

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE / "peer"))
from benchutil import loadavg, median_used, time_rounds  # noqa: E402

OUT = HERE / "results" / "keras3_bench.json"


def _steps(layer, optimizers, items, user, mask):
    """tf.functions for the layer's forward and train step."""

    @tf.function
    def forward():
        return tf.reduce_sum(layer(items, user, mask=mask, training=False))

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            out = layer(items, user, mask=mask, training=True)
            loss = tf.reduce_mean(tf.square(out)) + tf.add_n(layer.losses)
        variables = layer.trainable_variables
        grads = tape.gradient(loss, variables)
        for optimizer, part in optimizers:
            ids = {id(v) for v in part()}
            optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables, strict=True)
                                       if id(v) in ids])
        return loss

    return forward, train_step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sqrt-n", type=int, default=300)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--top-k", type=int, default=32)
    parser.add_argument("--key-dim", type=int, default=32)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seq", type=int, default=50)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="timed calls per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    load_before = loadavg()  # a busy machine makes every figure here suspect
    rng = np.random.default_rng(0)
    items = tf.constant(rng.normal(size=(args.batch, args.seq, args.dim)), tf.float32)
    user = tf.constant(rng.normal(size=(args.batch, args.dim)), tf.float32)
    mask = tf.sequence_mask(rng.integers(args.seq // 2, args.seq + 1, args.batch), args.seq)
    config = {"num_keys": args.sqrt_n, "top_k": args.top_k, "num_heads": args.heads,
              "key_dim": args.key_dim}
    tf.keras.utils.set_random_seed(0)
    keras2 = Keras2Layer(**config)
    keras2(items, user, mask=mask, training=True)  # builds it
    keras3 = Keras3Layer(**config)
    keras3(items, user, mask=mask)
    variants = {
        "tf-keras": _steps(keras2, [(SparseAdam(0.03), lambda: keras2.value_variables),
                                    (tf.keras.optimizers.legacy.Adam(1e-4),
                                     lambda: keras2.addressing_variables)],
                           items, user, mask),
        "keras3": _steps(keras3, [(MemoryAdam(1e-3), lambda: keras3.trainable_variables)],
                         items, user, mask),
    }
    cells = {(name, kind): (lambda fn=fn: fn().numpy())
             for name, fns in variants.items() for kind, fn in zip(("forward", "train"), fns,
                                                                    strict=True)}
    # warmup: tracing, the kernel's first load, optimizer slots
    times = time_rounds(cells, args.rounds, steps=args.steps, warmup=max(args.warmup, 1))
    rows = []
    for (name, kind), t in times.items():
        ms, basis = median_used(t["wall"])
        rows.append({"layer": name, "step": kind, "ms": ms, "ms_basis": basis,
                     "cpu_ms": t["cpu_ms"], "calls": t["calls"], "wall": t["wall"]})
    ratios = {}
    for kind in ("forward", "train"):
        a, b = (next(r for r in rows if r["layer"] == n and r["step"] == kind)
                for n in ("keras3", "tf-keras"))
        basis = "quiet" if a["ms_basis"] == b["ms_basis"] == "quiet" else "all"
        wall_a, wall_b = ((r["wall"]["quiet"] if basis == "quiet" else r["wall"])["median"]
                          for r in (a, b))
        ratios[kind] = {"ms": wall_a / wall_b, "ms_basis": basis,
                        "cpu_ms": a["cpu_ms"] / b["cpu_ms"]}

    print(f"√n = {args.sqrt_n}, H = {args.heads}, K = {args.top_k}, B = {args.batch}, "
          f"L = {args.seq}, d = {args.dim}; selection kernel: {kernel_available()}")
    print(f"{'layer':10s} {'step':8s} {'ms':>9s} {'basis':>6s} {'cpu_ms':>9s} {'contended':>9s}")
    for r in rows:
        contended = f"{r['wall']['contended_runs']}/{r['calls']}"
        print(f"{r['layer']:10s} {r['step']:8s} {r['ms']:9.2f} {r['ms_basis']:>6s} "
              f"{r['cpu_ms']:9.2f} {contended:>9s}")
    for kind, ratio in ratios.items():
        print(f"keras3 / tf-keras {kind:8s} {ratio['ms']:.3f} (wall, {ratio['ms_basis']}) "
              f"{ratio['cpu_ms']:.3f} (cpu)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "rows": rows, "keras3_over_tf_keras": ratios,
        "selection_kernel": kernel_available(), "load_average_before": load_before,
        "load_average_after": loadavg(),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                     "python": platform.python_version()},
        "cpus": os.cpu_count()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
