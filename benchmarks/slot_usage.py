"""How much of a trained LMN's memory is read: slot coverage, usage entropy, top-1% share.

Reads the first ``--rows`` ML-1M evaluation events through each run's memory (every history
item and the target, as ``LMN.interest`` does) and prints one row per run; writes JSON.

    python benchmarks/slot_usage.py runs/lmn runs/lmn-qn [--rows 4096]
"""

from __future__ import annotations

import argparse
import json
import pathlib

import tensorflow as tf

import lmn_tf  # noqa: F401  (tf-keras before TensorFlow)
from lmn_tf.data import make_dataset
from lmn_tf.memory import slot_usage_metrics
from lmn_tf.train import load_data, load_run


def usage(run_dir: str, batch: dict) -> dict[str, float]:
    model, _ = load_run(run_dir)
    memory = model.memory
    memory.memory_loss_weight = 0.0  # lookup only: reading must not add losses or metrics
    seq, mask = model.sequence(batch)  # (B, L, d), (B, L)
    target = model.target_item(model.features.target(batch))  # (B, d)
    items = tf.concat([seq, target[:, None]], 1)  # (B, L + 1, d), target last
    mask = tf.concat([mask, tf.ones_like(mask[:, :1])], 1)
    _, slots = memory(items, model.features.user(batch), mask=mask, return_slots=True)
    metrics = slot_usage_metrics(memory.num_slots)
    for metric in metrics:
        metric.update_state(slots)
    return {"run": run_dir, "slots": memory.num_slots,
            "query_norm": memory.query_norm,
            **{m.name: float(m.result()) for m in metrics}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", help="LMN run directories")
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--out", default="benchmarks/results/slot_usage.json")
    args = parser.parse_args()
    _, eval_arrays, _ = load_data("ml-1m", eval_limit=args.rows, progress=False)
    batch = next(iter(make_dataset(eval_arrays, args.rows)))
    rows = [usage(run, batch) for run in args.runs]
    print(f"{'run':<30} {'slots':>7} {'query_norm':>10} {'coverage':>9} {'entropy':>8} "
          f"{'top-1% share':>12}")
    for r in rows:
        print(f"{r['run']:<30} {r['slots']:>7} {r['query_norm']!s:>10} {r['slot_coverage']:>9.4f}"
              f" {r['slot_entropy']:>8.4f} {r['top_slot_share']:>12.4f}")
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
