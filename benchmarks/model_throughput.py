"""Training throughput of the ranking models on ML-1M, in one run: examples/s of `model.fit`.

    python benchmarks/model_throughput.py                      # DIN and LMN, batch 1024
    python benchmarks/model_throughput.py --models base din lmn --steps 50 --rounds 1
    python benchmarks/model_throughput.py --models lmn --num-keys 100 1000 \
        --hparams '{"queries": "target", ...}'        # one LMN row per √n, same batches

Each model trains on the latest ML-1M training events with the optimizer `lmn-tf train`
uses (`train.config_optimizer` at `train.DEFAULTS`), through `model.fit` on the same batches
(`training=True`, the memory loss included). The first ``--warmup`` steps (tracing) are not
timed; a callback times the next ``--steps``. With ``--rounds 2`` the models alternate
(DIN, LMN, LMN, DIN) so that drift on a shared machine hits both, and each model's figure is
the median over rounds. LMN runs with the selection kernel when it is built (the default
path of `LMNLayer`). Prints a table with every model's throughput relative to the first
model's and writes ``benchmarks/results/model_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import time

import tensorflow as tf

from lmn_tf import train
from lmn_tf.data import pipeline
from lmn_tf.memory.ops import kernel_available
from lmn_tf.models import build_model

OUT = pathlib.Path(__file__).parent / "results" / "model_throughput.json"


class _StepTimer(tf.keras.callbacks.Callback):
    """Wall time of the batches after the first ``warmup`` ones."""

    def __init__(self, warmup: int):
        super().__init__()
        self.warmup, self.started, self.steps = warmup, None, 0

    def on_train_batch_end(self, batch, logs=None):
        if batch + 1 == self.warmup:
            self.started = time.perf_counter()
        elif batch + 1 > self.warmup:
            self.steps += 1
            self.elapsed = time.perf_counter() - self.started


def examples_per_second(name: str, hparams: dict, data, args) -> float:
    train_arrays, _, vocab = data
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(0)
    model = build_model(name, vocab, **hparams)
    steps = args.warmup + args.steps
    config = {**train.DEFAULTS, "num_train": steps * args.batch_size}  # the decay over the run
    model.compile(optimizer=train.config_optimizer(model, config))  # lmn-tf train's
    ds = pipeline.make_dataset(train_arrays, args.batch_size, shuffle=True,
                               drop_remainder=True).repeat()
    timer = _StepTimer(args.warmup)
    model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[timer])
    return timer.steps * args.batch_size / timer.elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["din", "lmn"])
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=100, help="timed steps per model, round")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--limit", type=int, default=300_000,
                        help="the latest N training events to draw the batches from")
    parser.add_argument("--hparams", default="{}", help="JSON hparams of every LMN row")
    parser.add_argument("--num-keys", type=int, nargs="+",
                        help="one LMN row per √n (default: one row, LMN's own)")
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    args = parser.parse_args(argv)
    data = train.load_data("ml-1m", args.limit, 1)
    specs = {}  # row label -> (model, hparams)
    for name in args.models:
        if name != "lmn":
            specs[name] = (name, {})
            continue
        for k in args.num_keys or [None]:
            hp = {**json.loads(args.hparams), **({"num_keys": k} if k else {})}
            specs[f"lmn √n={k}" if k else "lmn"] = ("lmn", hp)
    labels = list(specs)
    got: dict[str, list[float]] = {m: [] for m in labels}
    start = time.time()
    for r in range(args.rounds):
        for label in labels if r % 2 == 0 else labels[::-1]:
            got[label].append(examples_per_second(*specs[label], data, args))
            print(f"  round {r + 1}: {label} {got[label][-1]:,.0f} examples/s", flush=True)
    rows = [{"model": m, "hparams": specs[m][1], "examples_per_second": statistics.median(v),
             "rounds": [round(x, 1) for x in v]} for m, v in got.items()]
    ref = rows[0]["examples_per_second"]
    for row in rows:
        row["relative_to_first"] = row["examples_per_second"] / ref
    print(f"\nML-1M, batch {args.batch_size}, {args.steps} timed steps x {args.rounds} rounds, "
          f"{os.cpu_count()} cores, TF {tf.__version__}, selection kernel "
          f"{'on' if kernel_available() else 'off'}")
    print(f"{'model':<14} {'examples/s':>11} {'vs ' + labels[0]:>8}")
    for row in rows:
        print(f"{row['model']:<14} {row['examples_per_second']:>11,.0f} "
              f"{row['relative_to_first']:>7.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "config": {k: str(v) if isinstance(v, pathlib.Path) else v for k, v in vars(args).items()},
        "tensorflow": tf.__version__, "kernel": kernel_available(),
        "wall_seconds": round(time.time() - start, 1), "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
