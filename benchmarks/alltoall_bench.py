"""Bytes and step time of the alltoall value store vs replicating the value table.

Per rank and training step (lookup + backward + update of the memory values):

- alltoall store (``lmn_tf.distributed.AlltoallValues``): ids out, rows back, row gradients
  out again — ``U·(4 + 8·d)·(N-1)/N`` bytes for U distinct ids (dedup bounds U by
  ``min(F, n)`` for F lookups); grows with the batch, not with n.
- replicated table, dense gradient allreduce (ring): ``2·(N-1)/N·4·n·d`` — grows with n.
- replicated table, Horovod's default for a ``tf.IndexedSlices`` gradient (allgather of rows
  and indices, ring): ``(N-1)·F·(4·d + 4)`` — grows with the batch and with N.

The analytic table uses the paper's shape (L = 50 history items + the target querying,
d = 32) with K = 8 slots per query and 256 examples per rank. The measured part launches
this file under ``horovodrun --gloo`` with 1 and 2 ranks at √n = 100 and 300, times a
step per mode, and counts the bytes each rank really wrote to its gloo sockets
(``/proc/self/io`` ``wchar``, minus Horovod's idle coordination traffic), to check the
formulas. CPU-only, 2 shared cores: step times are noisy; bytes are exact up to the
coordination overhead.

Run: ``python benchmarks/alltoall_bench.py`` (prints tables, writes
``benchmarks/results/alltoall_bench.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
D, L_QUERIES, K, B_LOCAL = 32, 51, 8, 256  # analytic: d, L + target, top-K, batch per rank
MB = 1e6


def analytic(sqrt_n: int, ranks: int, batch: int = B_LOCAL, queries: int = L_QUERIES,
             k: int = K, d: int = D) -> dict:
    n, f = sqrt_n**2, batch * queries * k  # slots, lookups per rank and step
    u = min(f, n)  # dedup: at most n distinct rows travel
    off = (ranks - 1) / ranks  # the share of rows owned by other ranks
    return {"sqrt_n": sqrt_n, "rows": n, "ranks": ranks, "lookups": f,
            "table_mb": 4 * n * d / MB, "shard_mb": 4 * n * d / ranks / MB,
            "alltoall_mb": u * (4 + 8 * d) * off / MB,
            "dense_allreduce_mb": 2 * off * 4 * n * d / MB,
            "sparse_allgather_mb": (ranks - 1) * f * (4 * d + 4) / MB}


# ----------------------------------------------------------------------------- worker


def _wchar() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("wchar"))


def worker(out_dir: str, steps: int, batch: int) -> None:
    import tensorflow as tf

    import lmn_tf  # noqa: F401  (tf-keras first)
    from lmn_tf.distributed import training
    from lmn_tf.distributed.values import AlltoallValues
    from lmn_tf.memory.values import LocalValues

    training.init()
    import horovod.tensorflow as hvd

    rank, size = hvd.rank(), hvd.size()
    start = _wchar()
    time.sleep(1.0)
    idle_per_s = _wchar() - start  # Horovod's background coordination, even when idle
    modes = ["local"] if size == 1 else ["alltoall", "dense_allreduce", "sparse_allgather"]
    f = batch * L_QUERIES * K
    results = []
    for sqrt_n in (100, 300):
        n = sqrt_n**2
        ids_of = [np.random.default_rng([r, sqrt_n]).integers(0, n, (batch, L_QUERIES, K))
                  for r in range(size)]
        for mode in modes:
            layer = tf.keras.layers.Layer()
            store = AlltoallValues() if mode == "alltoall" else LocalValues()
            store.build(layer, n, D, tf.keras.initializers.RandomNormal(seed=0))
            table = store.table
            opt = tf.keras.optimizers.legacy.SGD(0.01)  # sparse updates for IndexedSlices
            ids = tf.constant(ids_of[rank], tf.int32)
            weights = tf.random.stateless_normal((*ids.shape, D), (rank, 1))

            @tf.function
            def step(ids, weights, store=store, table=table, opt=opt, mode=mode):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_sum(store.lookup(ids) * weights)
                if mode == "sparse_allgather":  # Horovod's default path for IndexedSlices
                    tape = hvd.DistributedGradientTape(tape)
                (grad,) = tape.gradient(loss, [table])  # a list: Horovod tapes need one
                if mode == "dense_allreduce":
                    grad = hvd.allreduce(tf.convert_to_tensor(grad), op=hvd.Average)
                opt.apply_gradients([(grad, table)])
                return loss

            for _ in range(3):  # trace and warm up
                step(ids, weights)
            times, before = [], _wchar()
            for _ in range(steps):
                t0 = time.perf_counter()
                float(step(ids, weights))
                times.append(time.perf_counter() - t0)
            measured = (_wchar() - before - idle_per_s * sum(times)) / steps
            # Predicted bytes this rank wrote, from the exact ids of every rank.
            uniq = [np.unique(i) for i in ids_of]
            if mode == "alltoall":
                mine_out = int(np.sum(uniq[rank] % size != rank))  # ids I ask others for
                asked = sum(int(np.sum(u % size == rank)) for r, u in enumerate(uniq)
                            if r != rank)  # rows others ask me for
                predicted = 4 * mine_out + 4 * D * asked + 4 * D * mine_out
            elif mode == "dense_allreduce":
                predicted = 2 * (size - 1) / size * 4 * n * D
            elif mode == "sparse_allgather":
                predicted = (size - 1) * f * (4 * D + 4)
            else:
                predicted = 0
            results.append({"sqrt_n": sqrt_n, "ranks": size, "mode": mode, "rank": rank,
                            "lookups": f, "distinct": len(uniq[rank]),
                            "step_ms_median": 1e3 * float(np.median(times)),
                            "bytes_measured": measured, "bytes_predicted": predicted})
    with open(f"{out_dir}/rank{rank}.json", "w") as fh:
        json.dump({"idle_bytes_per_s": idle_per_s, "results": results}, fh)


# ----------------------------------------------------------------------------- driver


def launch(ranks: int, steps: int, batch: int) -> list[dict]:
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": f"{HERE.parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "TF_CPP_MIN_LOG_LEVEL": "2", "TF_USE_LEGACY_KERAS": "1"}
    with tempfile.TemporaryDirectory() as out:
        cmd = [str(bin_dir / "horovodrun"), "-np", str(ranks), "-H", f"localhost:{ranks}",
               "--gloo", sys.executable, __file__, "--worker", out, "--steps", str(steps),
               "--batch", str(batch)]
        print(f"$ horovodrun -np {ranks} ... ({steps} steps per mode)", flush=True)
        subprocess.run(cmd, env=env, check=True, timeout=600, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        return [json.loads(Path(out, f"rank{r}.json").read_text()) for r in range(ranks)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=16, help="examples per rank, measured")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2],
                        help="horovodrun -np of each measured launch")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "alltoall_bench.json")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps, args.batch)
        return 0

    rows = [analytic(s, r) for r in (2, 8) for s in (100, 300, 1000)]
    print(f"Analytic, per rank and step: {B_LOCAL} examples x {L_QUERIES} queries x K={K} "
          f"= {B_LOCAL * L_QUERIES * K} lookups, d={D}, float32 (MB = 1e6 bytes)")
    print(f"{'√n':>5} {'N':>2} {'table MB':>9} {'shard MB':>9} {'alltoall≤':>10} "
          f"{'dense AR':>9} {'sparse AG':>10}")
    for r in rows:
        print(f"{r['sqrt_n']:>5} {r['ranks']:>2} {r['table_mb']:>9.1f} {r['shard_mb']:>9.1f} "
              f"{r['alltoall_mb']:>10.1f} {r['dense_allreduce_mb']:>9.1f} "
              f"{r['sparse_allgather_mb']:>10.1f}")

    measured, idle = [], {}
    for ranks in args.ranks:
        for rank_result in launch(ranks, args.steps, args.batch):
            measured += rank_result["results"]
            idle[ranks] = rank_result["idle_bytes_per_s"]
    print(f"\nMeasured (gloo, CPU, {args.batch} examples per rank = "
          f"{args.batch * L_QUERIES * K} lookups, {args.steps} steps; bytes = wchar per rank "
          f"and step minus idle coordination ≈ {idle.get(2, 0) / 1e3:.0f} kB/s)")
    print(f"{'√n':>5} {'N':>2} {'rank':>4} {'mode':>17} {'distinct':>8} {'step ms':>8} "
          f"{'bytes pred':>11} {'bytes meas':>11} {'meas/pred':>9}")
    for m in measured:
        ratio = m["bytes_measured"] / m["bytes_predicted"] if m["bytes_predicted"] else float("nan")
        print(f"{m['sqrt_n']:>5} {m['ranks']:>2} {m['rank']:>4} {m['mode']:>17} "
              f"{m['distinct']:>8} {m['step_ms_median']:>8.1f} {m['bytes_predicted']:>11.0f} "
              f"{m['bytes_measured']:>11.0f} {ratio:>9.3f}")
    out = args.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"analytic": rows, "measured": measured,
                               "idle_bytes_per_s": idle, "steps": args.steps,
                               "batch_per_rank": args.batch}, indent=1) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
