"""LMNLayer beside a PyTorch product-key-memory peer, in one run on the same CPU.

    python benchmarks/peer_bench.py --setup       # once: builds the peer venv (about a minute)
    python benchmarks/peer_bench.py               # √n 100 300 1000 x H 1 4 (about 15 min)
    python benchmarks/peer_bench.py --sqrt-n 100 --heads 1 --runs 3 --rounds 1   # smoke run

The peer is lucidrains' ``product-key-memory`` 0.3.0 (``PKM``) with a sparse value
``EmbeddingBag``, timed by ``benchmarks/peer/pkm_torch_bench.py`` in its own venv (torch is
never a dependency of lmn-tf). Per configuration the two are interleaved: peer, ours, then
(with ``--rounds 2``) ours, peer, so that drift on a shared machine hits both; each side's
figure is the median over rounds of its median step. Both sides time their steps the same way
(``benchmarks/peer/benchutil.py``): up to ``--runs`` more calls while fewer than ``--runs``
were quiet, and the median of the quiet calls when at least 3 were quiet, else of all. Both run
with the same thread count and glibc malloc settings (``benchutil.TUNED_MALLOC``).

What is timed (B = 256, L = 50, K = 32, d = 32 by default):
- forward: the peer under ``torch.no_grad()``; ours ``LMNLayer(items, user, mask)`` in a
  ``tf.function`` (inference path, ``training=False``);
- train step: the peer's forward + backward + SparseAdam step on the values; ours forward
  with ``training=True``, the memory loss, backward and a CompositeOptimizer step (values on
  sparse Adagrad, the rest on Adam), as ``benchmarks/layer_bench.py`` times it.
Ours does more per query (a user input, a sequence mask and the memory loss), so the ratios
favour the peer slightly. Prints a table with TF/torch ratios (the targets of issue 16:
forward <= 0.5x, train step <= 0.6x) and writes ``benchmarks/results/peer_bench.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE / "peer"))
from benchutil import TUNED_MALLOC, ensure_malloc, loadavg, median_used, time_call  # noqa: E402

PEER_VENV = pathlib.Path.home() / ".cache" / "lmn-tf" / "venv-peer"
OUT = HERE / "results" / "peer_bench.json"
TARGETS = {"forward": 0.5, "train": 0.6}  # ours / peer, issue 16


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sqrt-n", type=int, nargs="+", default=[100, 300, 1000])
    p.add_argument("--heads", type=int, nargs="+", default=[1, 4])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--seq", type=int, default=50)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--top-k", type=int, default=32)
    p.add_argument("--threads", type=int, default=2, help="both sides' intra-op threads")
    p.add_argument("--runs", type=int, default=10, help="timed steps per side and round")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2, help="peer/ours alternations per config")
    p.add_argument("--selection", choices=("kernel", "stock"), default="kernel",
                   help="our two-stage selection: the C++ kernel or the stock TF ops")
    p.add_argument("--peer-venv", type=pathlib.Path, default=PEER_VENV)
    p.add_argument("--setup", action="store_true", help="build the peer venv and exit")
    p.add_argument("--out", type=pathlib.Path, default=OUT)
    return p.parse_args(argv)


def setup(venv: pathlib.Path) -> int:
    env = {**os.environ, "VENV": str(venv)}
    return subprocess.run(["bash", str(HERE / "peer" / "setup_venv.sh")], env=env).returncode


def peer_ms(args, sqrt_n: int, heads: int) -> dict:
    """The peer's median forward and train step (ms), from its harness in its own venv."""
    python = args.peer_venv / "bin" / "python"
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "peer.json"
        cmd = [str(python), str(HERE / "peer" / "pkm_torch_bench.py"), "--sqrt-n", str(sqrt_n),
               "--heads", str(heads), "--broadcast-sqrt-n", "--topk", str(args.top_k),
               "--dim", str(args.dim), "--batch", str(args.batch), "--seq", str(args.seq),
               "--threads", str(args.threads), "--runs", str(args.runs), "--warmup",
               str(args.warmup), "--extra-runs", str(args.runs), "--wait-quiet", "0",
               "--out", str(out)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        (entry,) = json.loads(out.read_text())["results"]
    # the quiet runs' median when there were enough of them, else every run's
    pick = lambda s: (s["quiet"] or s)["median"]  # noqa: E731
    return {"forward": pick(entry["fwd_ms"]), "train": pick(entry["train_ms"])}


def ours_ms(args, sqrt_n: int, heads: int) -> dict:
    """Our median forward and train step (ms), timed in this process."""
    import layer_bench  # beside this script: the same layer, inputs and train step
    import tensorflow as tf

    from lmn_tf.memory.ops import stock_selection

    bench = argparse.Namespace(seq=args.seq, dim=args.dim, top_k=args.top_k, key_dim=args.dim)
    layer = layer_bench._layer(sqrt_n, heads, "two_stage", bench)
    inputs = layer_bench._inputs(args.batch, bench)
    layer(*layer_bench._inputs(1, bench)[:2])  # build eagerly, on one row
    with stock_selection() if args.selection == "stock" else contextlib.nullcontext():
        forward = layer_bench._forward(layer, inputs, xla=False)
        step = layer_bench._train_step(layer, inputs, xla=False)
        # as the peer's harness: up to --runs extra calls, the quiet calls' median
        result = {phase: median_used(time_call(lambda fn=fn: fn().numpy(), args.runs,
                                               args.warmup, extra=args.runs)["wall"])[0]
                  for phase, fn in (("forward", forward), ("train", step))}
    del layer
    tf.keras.backend.clear_session()
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.setup:
        return setup(args.peer_venv)
    if not (args.peer_venv / "bin" / "python").exists():
        sys.exit(f"no peer venv at {args.peer_venv}: run `python {__file__} --setup` first")
    ensure_malloc("tuned")  # re-executes this script once with TUNED_MALLOC set
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from lmn_tf.memory.ops import kernel_available

    if args.selection == "kernel" and not kernel_available():
        sys.exit("the selection kernel is not built: python lmn_tf/memory/ops/build.py")
    rows, start = [], time.time()
    for sqrt_n in args.sqrt_n:
        for heads in args.heads:
            got = {"peer": [], "ours": []}
            load = loadavg()
            for r in range(args.rounds):
                order = ("peer", "ours") if r % 2 == 0 else ("ours", "peer")
                for side in order:
                    fn = peer_ms if side == "peer" else ours_ms
                    got[side].append(fn(args, sqrt_n, heads))
            row = {"sqrt_n": sqrt_n, "heads": heads, "loadavg_before": load,
                   "loadavg_after": loadavg()}
            for side, runs in got.items():
                for phase in TARGETS:
                    row[f"{side}_{phase}_ms"] = statistics.median(r[phase] for r in runs)
                    row[f"{side}_{phase}_rounds_ms"] = [round(r[phase], 2) for r in runs]
            for phase in TARGETS:
                row[f"{phase}_ratio"] = row[f"ours_{phase}_ms"] / row[f"peer_{phase}_ms"]
            rows.append(row)
            print(f"  √n={sqrt_n:<5d} H={heads}  forward ours {row['ours_forward_ms']:.1f} / "
                  f"peer {row['peer_forward_ms']:.1f} ms = {row['forward_ratio']:.2f}x   train "
                  f"ours {row['ours_train_ms']:.1f} / peer {row['peer_train_ms']:.1f} ms = "
                  f"{row['train_ratio']:.2f}x", flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            config = {k: str(v) if isinstance(v, pathlib.Path) else v
                      for k, v in vars(args).items()}
            args.out.write_text(json.dumps({  # after every configuration: a killed run keeps rows
                "config": config, "tensorflow": tf.__version__, "malloc": TUNED_MALLOC,
                "cpus": os.cpu_count(), "wall_seconds": round(time.time() - start, 1),
                "rows": rows}, indent=1) + "\n")
    print(f"\nB={args.batch} L={args.seq} K={args.top_k} d={args.dim}, {args.threads} threads, "
          f"median of {args.runs} steps x {args.rounds} rounds, ms; ours: {args.selection} "
          f"selection, TF {tf.__version__}")
    print(f"{'√n':>5} {'H':>2} {'fwd ours':>9} {'fwd peer':>9} {'ratio':>6} "
          f"{'train ours':>10} {'train peer':>10} {'ratio':>6}")
    for r in rows:
        print(f"{r['sqrt_n']:>5} {r['heads']:>2} {r['ours_forward_ms']:>9.1f} "
              f"{r['peer_forward_ms']:>9.1f} {r['forward_ratio']:>5.2f}x "
              f"{r['ours_train_ms']:>10.1f} {r['peer_train_ms']:>10.1f} {r['train_ratio']:>5.2f}x")
    met = {p: all(r[f"{p}_ratio"] <= t for r in rows) for p, t in TARGETS.items()}
    print("targets: " + ", ".join(f"{p} <= {t}x of the peer on every row: "
                                 f"{'met' if met[p] else 'missed'}" for p, t in TARGETS.items()))
    print(f"wrote {args.out} ({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
