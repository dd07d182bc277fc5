"""Selection alone: the C++ two-stage kernel vs the stock TF two-stage path, same inputs.

    python benchmarks/selection_bench.py                       # √n 100 300 1000, H 1 4
    python benchmarks/selection_bench.py --sqrt-n 100 --heads 1 --steps 3

Times the (B·L, H, √n) row and column scores -> K slot ids step of ``LMNLayer`` (B = 256,
L = 50, K = 32 by default), interleaving the two paths per configuration (two rounds of
``--steps`` / 2 calls each, by ``benchmarks/peer/benchutil.py``'s ``time_rounds``; "*_ms" and
"*_cpu_ms" are the medians of all of a path's calls), and checks that they select the same
slots. Prints a table and writes benchmarks/results/selection_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from lmn_tf.memory import scoring  # sets tf-keras before tf.keras is used
from lmn_tf.memory.ops import selection

sys.path.insert(0, str(Path(__file__).parent / "peer"))
from benchutil import time_rounds

OUT = Path(__file__).parent / "results" / "selection_bench.json"


def _selection_fn(select, s_row, s_col, k):
    return tf.function(lambda: select(s_row, s_col, k))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sqrt-n", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--heads", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seq", type=int, default=50)
    parser.add_argument("--top-k", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="timed repetitions (median)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if not selection.kernel_available():
        parser.error("the selection kernel is not built (pip install -e .)")
    rows = []
    rng = np.random.default_rng(0)
    for sqrt_n in args.sqrt_n:
        for heads in args.heads:
            shape = (args.batch * args.seq, heads, sqrt_n)  # (B·L, H, √n)
            s_row, s_col = (tf.constant(rng.normal(size=shape), tf.float32) for _ in range(2))
            paths = {name: _selection_fn(fn, s_row, s_col, args.top_k)
                     for name, fn in (("stock", scoring.two_stage_top_k),
                                      ("kernel", selection.two_stage_top_k))}
            same = all(np.array_equal(a, b) for a, b in zip(paths["stock"](), paths["kernel"](),
                                                           strict=True))
            # interleaved halves: load changes hit both paths alike (traced by the check above)
            times = time_rounds({name: (lambda fn=fn: fn()[1].numpy())
                                 for name, fn in paths.items()},
                                2, steps=max(1, args.steps // 2), warmup=0)
            row = {"sqrt_n": sqrt_n, "heads": heads, "identical": bool(same)}
            for name, t in times.items():
                row[f"{name}_ms"] = t["wall_ms"]
                row[f"{name}_cpu_ms"] = t["cpu_ms"]
            row["speedup"] = row["stock_ms"] / row["kernel_ms"]
            row["speedup_cpu"] = row["stock_cpu_ms"] / row["kernel_cpu_ms"]
            rows.append(row)
            print(f"sqrt_n={sqrt_n} H={heads}: stock {row['stock_ms']:.1f} ms, kernel "
                  f"{row['kernel_ms']:.1f} ms ({row['speedup']:.1f}x wall, "
                  f"{row['speedup_cpu']:.1f}x CPU), identical={same}", flush=True)
    print(f"\nselection only, {args.batch * args.seq} queries, K={args.top_k}, median ms; "
          f"TF {tf.__version__}, {os.cpu_count()} cores (target: kernel >= 5x faster)")
    print(f"{'sqrt_n':>6} {'H':>2} {'stock':>8} {'kernel':>8} {'x wall':>7} {'x cpu':>6} same")
    for r in rows:
        print(f"{r['sqrt_n']:>6} {r['heads']:>2} {r['stock_ms']:>8.1f} {r['kernel_ms']:>8.1f} "
              f"{r['speedup']:>7.1f} {r['speedup_cpu']:>6.1f} {r['identical']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    args.out.write_text(json.dumps({"config": config, "tensorflow": tf.__version__,
                                    "rows": rows}, indent=1))
    print(f"wrote {args.out}")
    return 0 if all(r["identical"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
