#!/usr/bin/env python3
"""Peer benchmark: a PyTorch product-key-memory (PKM) layer on this CPU.

Peer code: lucidrains' `product-key-memory` package (PyPI), class `PKM`, used as
shipped except for one swap: its value table `nn.EmbeddingBag(n, dim, mode='sum')`
is replaced by the same table with `sparse=True` (same weights), so the value
gradient is sparse (as in Lample et al.'s PKM code and as our TF layer does).
Its forward is: to_queries (Linear dim -> 2*H*d) -> LayerNorm(d) -> per-half
scores vs √n sub-keys -> per-half top-K -> K*K candidate sums -> top-K ->
softmax -> EmbeddingBag(sum, per_sample_weights) over n = √n² values.

Also timed: the paper's "broadcast" scoring (LMN eq. 9): the full √n x √n score
matrix S[i,j] = S_row[i] + S_col[j] per query and head, then top-K over all n,
reusing the same module's parameters and value table. The full matrix for all
queries is Q*H*n floats (18 GB at √n=300, H=4), so it is built in chunks of
queries capped at --broadcast-chunk-mb; FLOPs and per-query work are unchanged.
Before timing, each broadcast config checks (and warns if not) that both
variants give the same outputs, i.e. pick the same slots.

Timings (torch.set_num_threads(--threads)), each the median of --runs after
--warmup runs, per configuration; a timed run during which another process took
CPU is repeated (up to --extra-runs) and the quiet runs' median is reported;
glibc malloc is set per --malloc (see benchutil.TUNED_MALLOC):
  fwd      forward only, under torch.no_grad() (inference)
  fwd_bwd  forward + loss = sum(out * R) (R fixed random) + backward
           (sparse value grad, dense grads for query proj / norm / keys)
  opt      optimizer step on the values only (SparseAdam, or SGD)
  train    fwd_bwd + opt, measured in the same iterations
Writes a table to stdout and JSON to --out (default: results_pkm_torch.json
beside this file). The JSON schema is meant to be shared with other layers'
harnesses (e.g. our TF layer) so that roofline.py can compare them.
"""
import argparse
import importlib.metadata as md
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from benchutil import (  # noqa: E402
    Contention,
    contended_run,
    cpu_model,
    ensure_malloc,
    loadavg,
    malloc_env,
    probe,
    stats_ms,
    wait_quiet,
)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sqrt-n", type=int, nargs="+", default=[100, 300, 1000],
                   help="sub-key counts √n (values n = √n²)")
    p.add_argument("--heads", type=int, nargs="+", default=[1, 4])
    p.add_argument("--topk", type=int, default=32, help="K")
    p.add_argument("--dim", type=int, default=32,
                   help="query half dim d (dim_head) and value/input dim")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--seq", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--optimizer", choices=["sparseadam", "sgd"], default="sparseadam")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--dense-values", action="store_true",
                   help="keep the package's dense value gradient (ablation)")
    p.add_argument("--broadcast-sqrt-n", type=int, nargs="*", default=[100, 300],
                   help="√n values for the broadcast variant (empty: skip it)")
    p.add_argument("--broadcast-heads", type=int, nargs="*", default=None,
                   help="heads for the broadcast variant (default: --heads)")
    p.add_argument("--broadcast-warmup", type=int, default=1)
    p.add_argument("--broadcast-runs", type=int, default=3)
    p.add_argument("--broadcast-chunk-mb", type=float, default=64.0,
                   help="cap on one chunk's full score tensor (queries*H*n*4 bytes)")
    p.add_argument("--broadcast-train", nargs="*", default=["100:1", "100:4"],
                   metavar="SQRTN:H",
                   help="broadcast configs that also get fwd+bwd/opt timings (others: fwd only)")
    p.add_argument("--malloc", choices=["tuned", "default"], default="tuned",
                   help="glibc malloc settings (see benchutil.TUNED_MALLOC); 'default' = "
                        "glibc's own, whose page-fault cost depends on process history")
    p.add_argument("--no-check", action="store_true", help="skip the equality check")
    p.add_argument("--extra-runs", type=int, default=20,
                   help="timed runs during which another process took CPU are repeated, "
                        "up to this many extra per loop")
    p.add_argument("--broadcast-extra-runs", type=int, default=2)
    p.add_argument("--wait-quiet", type=float, default=120.0, metavar="S",
                   help="before each config wait up to S s for other processes to go "
                        "idle (shared machine); 0 = don't wait")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join(HERE, "results_pkm_torch.json"))
    p.add_argument("--show", metavar="JSON", help="only print the table of a results file")
    p.add_argument("--merge", action="store_true",
                   help="keep --out's other results; replace only the configs run now")
    return p.parse_args()


args = parse_args()
ensure_malloc(args.malloc)

import torch  # noqa: E402
from torch import nn  # noqa: E402

try:
    from einops import rearrange
    from product_key_memory import PKM
except ImportError as e:  # pragma: no cover
    sys.exit(f"product-key-memory not importable ({e}); see README.md for the install steps")


def pkg_version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def build(sqrt_n, heads, dense_values):
    """The package's PKM with the value table made sparse-gradient."""
    torch.manual_seed(args.seed)
    m = PKM(dim=args.dim, heads=heads, num_keys=sqrt_n, topk=args.topk, dim_head=args.dim)
    if not dense_values:
        old = m.values
        new = nn.EmbeddingBag(old.num_embeddings, old.embedding_dim, mode="sum", sparse=True)
        with torch.no_grad():
            new.weight.copy_(old.weight)
        m.values = new
    return m


def broadcast_forward(pkm, x, chunk_queries):
    """Same module, paper's scoring: full √n x √n scores per (query, head), top-K of n."""
    b, t, h, m, k = *x.shape[:2], pkm.heads, pkm.num_keys, pkm.topk
    q = pkm.to_queries(pkm.pre_layernorm(x))
    q = rearrange(q, "b t (p h d) -> (b p h) t d", p=2, h=h)
    q = pkm.norm(q)
    q = rearrange(q, "(b p h) t d -> p b t h d", p=2, h=h)
    dots = torch.einsum("p b t h d, h n p d -> b t h p n", q, pkm.keys)
    dots = dots.reshape(b * t, h, 2, m)
    scores, idx = [], []
    for s in range(0, b * t, chunk_queries):
        d = dots[s:s + chunk_queries]
        full = d[:, :, 0, :, None] + d[:, :, 1, None, :]        # (c, h, m, m): slot i*m+j
        sc, ix = full.reshape(full.shape[0], h, m * m).topk(k, dim=-1)
        scores.append(sc)
        idx.append(ix)
    scores, idx = torch.cat(scores), torch.cat(idx)
    attn = pkm.gate_activation(scores)
    out = pkm.values(idx.reshape(b * t, h * k), per_sample_weights=attn.reshape(b * t, h * k))
    return out.reshape(b, t, -1)


def chunk_for(sqrt_n, heads):
    per_query = heads * sqrt_n * sqrt_n * 4
    return max(1, int(args.broadcast_chunk_mb * 2**20 // per_query))


def check_equal(pkm, sqrt_n, heads):
    """Two-stage (package) and broadcast pick the same slots → same outputs."""
    g = torch.Generator().manual_seed(args.seed + 1)
    x = torch.randn(4, 16, args.dim, generator=g)
    with torch.no_grad():
        a = pkm(x)
        b = broadcast_forward(pkm, x, chunk_for(sqrt_n, heads))
    err = (a - b).abs().max().item()
    ok = torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    return ok, err


def make_opt(pkm):
    w = pkm.values.weight
    if args.optimizer == "sparseadam" and not args.dense_values:
        return torch.optim.SparseAdam([w], lr=args.lr)
    if args.optimizer == "sparseadam":
        return torch.optim.Adam([w], lr=args.lr)
    return torch.optim.SGD([w], lr=args.lr)


def timed_loop(fn, warmup, runs, extra):
    """warmup calls, then timed calls of fn (returning a tuple of seconds) until `runs`
    of them were quiet (no other process took CPU meanwhile) or runs + --extra-runs
    calls were made. Returns (one list per tuple field, contended flag per call)."""
    for _ in range(warmup):
        fn()
    cols, busy = None, []
    while True:
        p0 = probe()
        res = fn()
        busy.append(contended_run(p0, probe())[1])
        cols = [[] for _ in res] if cols is None else cols
        for c, v in zip(cols, res, strict=False):
            c.append(v)
        quiet = len(busy) - sum(busy)
        if quiet >= runs or len(busy) >= runs + extra:
            return cols, busy


def run_config(impl, sqrt_n, heads, warmup, runs, do_train=True):
    pkm = build(sqrt_n, heads, args.dense_values)
    pkm.train()  # no dropout configured: train/eval identical; train mode for the grads
    g = torch.Generator().manual_seed(args.seed + 2)
    x = torch.randn(args.batch, args.seq, args.dim, generator=g)
    r = torch.randn(args.batch, args.seq, args.dim, generator=g)
    chunk = chunk_for(sqrt_n, heads)
    extra = args.extra_runs if impl == "two_stage" else args.broadcast_extra_runs
    fwd = (lambda: pkm(x)) if impl == "two_stage" else (lambda: broadcast_forward(pkm, x, chunk))
    entry = {"impl": impl, "sqrt_n": sqrt_n, "n": sqrt_n * sqrt_n, "heads": heads,
             "topk": args.topk, "dim": args.dim, "queries": args.batch * args.seq,
             "warmup": warmup, "runs_timed": runs, "loadavg_before": loadavg()}
    if impl == "broadcast":
        entry["chunk_queries"] = chunk
        entry["full_score_bytes_unchunked"] = args.batch * args.seq * heads * sqrt_n**2 * 4
    if not args.no_check and impl == "broadcast":
        ok, err = check_equal(pkm, sqrt_n, heads)
        entry["check_vs_two_stage"] = {"allclose": ok, "max_abs_err": err}
        if not ok:
            print(f"WARNING: broadcast != two-stage at √n={sqrt_n} H={heads}: max err {err:g}",
                  file=sys.stderr)

    # forward (inference)
    def fwd_once():
        t0 = time.perf_counter()
        out = fwd()
        t1 = time.perf_counter()
        del out
        return (t1 - t0,)

    with torch.no_grad():
        (ts,), busy = timed_loop(fwd_once, warmup, runs, extra)
    entry["fwd_ms"] = stats_ms(ts, busy)

    if do_train:
        opt = make_opt(pkm)
        params = list(pkm.parameters())

        def step():
            for p_ in params:
                p_.grad = None
            t0 = time.perf_counter()
            loss = (fwd() * r).sum()
            loss.backward()
            t1 = time.perf_counter()
            opt.step()
            t2 = time.perf_counter()
            return t1 - t0, t2 - t1

        (fb, op), busy = timed_loop(step, warmup, runs, extra)
        entry["fwd_bwd_ms"] = stats_ms(fb, busy)
        entry["opt_ms"] = stats_ms(op, busy)
        entry["train_ms"] = stats_ms([a + b for a, b in zip(fb, op, strict=False)], busy)
        g_ = pkm.values.weight.grad
        entry["value_grad"] = f"sparse nnz={g_._nnz()}" if g_.is_sparse else "dense"
    entry["loadavg_after"] = loadavg()
    return entry


def fmt(e, key):
    """median [p25-p75] of the quiet runs ('*': too few quiet runs, all runs used)."""
    s = e.get(key)
    if not s:
        return "-"
    q, star = (s["quiet"], " ") if s.get("quiet") else (s, "*")
    return f"{q['median']:.1f} [{q['p25']:.1f}-{q['p75']:.1f}]{star}"


def fmt_quiet(e, key):
    s = e.get(key)
    if not s or "contended_runs" not in s:
        return "-"
    return f"{s['n'] - s['contended_runs']}/{s['n']}"


def main():
    if args.show:
        with open(args.show) as f:
            print_table(json.load(f))
        return
    torch.set_num_threads(args.threads)
    cpu = cpu_model() or platform.processor()
    meta = {
        "harness": "peers/pkm_torch_bench.py",
        "peer": {"package": "product-key-memory", "version": pkg_version("product-key-memory"),
                 "class": "product_key_memory.PKM",
                 "modification": None if args.dense_values else
                 "values EmbeddingBag swapped for sparse=True copy (same weights)"},
        "torch_version": torch.__version__,
        "einops_version": pkg_version("einops"),
        "python": platform.python_version(),
        "cpu": cpu, "nproc": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "malloc_env": malloc_env(),
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    results, kept = [], []
    if args.merge and os.path.exists(args.out):
        with open(args.out) as f:
            kept = json.load(f).get("results", [])
    plan = [("two_stage", s, h, args.warmup, args.runs, True)
            for s in args.sqrt_n for h in args.heads]
    bheads = args.broadcast_heads if args.broadcast_heads is not None else args.heads
    btrain = set(args.broadcast_train or [])
    plan += [("broadcast", s, h, args.broadcast_warmup, args.broadcast_runs,
              f"{s}:{h}" in btrain)
             for s in args.broadcast_sqrt_n for h in bheads]
    t_start = time.perf_counter()
    for impl, s, h, w, n, tr in plan:
        waited = wait_quiet(args.wait_quiet) if args.wait_quiet > 0 else (0.0, None)
        with Contention() as c:
            e = run_config(impl, s, h, w, n, tr)
        e["contention"] = c.result
        e["contention"]["waited_for_quiet_s"], e["contention"]["quiet_at_start"] = waited
        e["measured"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        results.append(e)
        cr = c.result or {}
        print(f"  done {impl:9s} √n={s:<5d} H={h}  fwd {fmt(e, 'fwd_ms')} ms  "
              f"fwd+bwd {fmt(e, 'fwd_bwd_ms')} ms  ({cr.get('wall_s')} s wall, "
              f"foreign cpu {cr.get('foreign_cpu_s')} s, steal {cr.get('steal_s')} s)",
              flush=True)
        meta["total_wall_s"] = round(time.perf_counter() - t_start, 1)
        done = {(r["impl"], r["sqrt_n"], r["heads"]) for r in results}
        meta["results"] = [r for r in kept if (r["impl"], r["sqrt_n"], r["heads"]) not in done]
        meta["results"] += results
        meta["results"].sort(key=lambda r: (r["impl"] != "two_stage", r["sqrt_n"], r["heads"]))
        with open(args.out, "w") as f:  # write as we go: a killed run keeps what it had
            json.dump(meta, f, indent=1)
    run_now = results
    results = meta["results"]

    print()
    print_table(meta)
    fc = sum((e.get("contention") or {}).get("foreign_cpu_s", 0) for e in run_now)
    print(f"\nother processes used {fc:.1f} CPU-s during the {meta['total_wall_s']} s run "
          f"(0 = quiet machine; up to {args.threads}x wall = fully contended)")
    print(f"wrote {args.out}")


def print_table(meta):
    cfg = meta["config"]
    results = meta["results"]
    mal = "tuned" if any(meta.get("malloc_env", {}).values()) else "default"
    print(f"peer: product-key-memory {meta['peer']['version']}, torch {meta['torch_version']}, "
          f"{meta['torch_threads']} threads, Q={cfg['batch']}x{cfg['seq']}="
          f"{cfg['batch'] * cfg['seq']} queries, K={cfg['topk']}, d={cfg['dim']}, "
          f"opt={cfg['optimizer']}, malloc={mal}")
    print("times in ms: median [p25-p75] of the quiet timed runs (no other process took CPU "
          "during them); '*' = fewer than 3 quiet runs, all runs used; quiet = quiet/timed runs")
    hdr = (f"{'impl':9s} {'√n':>5s} {'H':>2s} {'fwd':>23s} {'fwd+bwd':>23s} {'opt step':>19s} "
           f"{'train step':>23s} {'quiet fwd':>9s} {'quiet trn':>9s}")
    print(hdr)
    print("-" * len(hdr))
    for e in results:
        print(f"{e['impl']:9s} {e['sqrt_n']:5d} {e['heads']:2d} {fmt(e, 'fwd_ms'):>23s} "
              f"{fmt(e, 'fwd_bwd_ms'):>23s} {fmt(e, 'opt_ms'):>19s} {fmt(e, 'train_ms'):>23s} "
              f"{fmt_quiet(e, 'fwd_ms'):>9s} {fmt_quiet(e, 'train_ms'):>9s}")


if __name__ == "__main__":
    main()
