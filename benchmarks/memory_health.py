"""Is a trained LMN's memory used, and does it carry information? One row per run.

For each run directory (any model; the memory columns need an LMN run), on ML-1M:

- AUC on the evaluation events, and separately on warm users (with events in the run's
  training window) and cold users (none): does a model win or lose everywhere?
- LMN only, ``auc_values_permuted``: the AUC with the memory's value rows shuffled (a fixed
  permutation within each store). If the memory stored something the model relies on, this
  falls.
- LMN only, slot use on the first ``--rows`` evaluation events (the memory's queries, from
  ``LMN.memory_inputs`` as in training): coverage, usage entropy, top-1% share.
- LMN only, from the checkpoint's sparse optimizer (legacy Adagrad): value rows whose
  accumulator left its start (rows updated; at the default start 0.1, float32 hides squared
  gradients below about 4e-9), and the largest accumulator entry.

    python benchmarks/memory_health.py RUN [RUN ...] [--rows 4096] [--eval-limit N]

Prints a table and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np
import tensorflow as tf

import lmn_tf  # noqa: F401  (tf-keras before TensorFlow)
from lmn_tf import checkpointing, ctr_metrics
from lmn_tf.data import make_dataset
from lmn_tf.memory import slot_usage_metrics
from lmn_tf.train import DEFAULTS, history_of, load_data, load_run

ACCUMULATOR = "model/memory/values/.OPTIMIZER_SLOT/optimizer/Optimizer0/accumulator/" \
              ".ATTRIBUTES/VARIABLE_VALUE"


def slot_use(model, batch: dict) -> dict[str, float]:
    slots = model.read_slots(batch)  # every store's, in one id space of model.num_slots
    metrics = slot_usage_metrics(model.num_slots)
    for metric in metrics:
        metric.update_state(slots)
    return {m.name: float(m.result()) for m in metrics}


def updated_rows(run_dir: str, config: dict) -> dict[str, float]:
    reader = tf.train.load_checkpoint(str(checkpointing.latest(pathlib.Path(run_dir)
                                                               / "checkpoints")))
    if not reader.has_tensor(ACCUMULATOR):
        return {}
    acc = reader.get_tensor(ACCUMULATOR)  # (n, d_v), every entry starts at `start`
    start = {**DEFAULTS, **config}["values_initial_accumulator"]  # older runs lack the key
    return {"value_rows_updated": int((acc != np.float32(start)).any(1).sum()),
            "value_rows": int(acc.shape[0]), "accumulator_max": float(acc.max())}


def aucs(labels, logits, warm) -> dict[str, float]:
    return {"auc": ctr_metrics.auc(labels, logits),
            "auc_warm": ctr_metrics.auc(labels[warm], logits[warm]),
            "auc_cold": ctr_metrics.auc(labels[~warm], logits[~warm])}


def health(run_dir: str, data: dict, rows: int) -> dict:
    model, config = load_run(run_dir)
    train, eval_arrays = data[config.get("limit"), history_of(config)]
    warm = np.isin(eval_arrays["user_id"], np.unique(train["user_id"]))
    dataset = make_dataset(eval_arrays, 4096)
    labels, logits = ctr_metrics.predict(model, dataset, verbose=0)
    row = {"run": run_dir, "model": config["model"], "warm_share": float(warm.mean()),
           **aucs(labels, logits, warm)}
    if hasattr(model, "memory"):
        tables = model.sparse_variables()  # one value table per store
        row.update(slot_use(model, next(iter(make_dataset(eval_arrays, rows)))))
        row.update(updated_rows(run_dir, config))
        trained = [values.numpy() for values in tables]
        rng = np.random.default_rng(0)
        for values, table in zip(tables, trained, strict=True):
            values.assign(table[rng.permutation(len(table))])
        _, permuted = ctr_metrics.predict(model, dataset, verbose=0)
        for values, table in zip(tables, trained, strict=True):
            values.assign(table)
        row["auc_values_permuted"] = ctr_metrics.auc(labels, permuted)
    return row


def run_data(runs: list[str], eval_limit: int | None = None) -> dict:
    """``health``'s data: ML-1M (train, eval) arrays per (limit, history) the runs used."""
    configs = [json.loads((pathlib.Path(r) / "config.json").read_text()) for r in runs]
    keys = {(c.get("limit"), history_of(c)) for c in configs}
    return {(limit, history): load_data("ml-1m", limit=limit, eval_limit=eval_limit,
                                        progress=False, history=history)[:2]
            for limit, history in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", help="run directories (ML-1M)")
    parser.add_argument("--rows", type=int, default=4096, help="eval events for slot use")
    parser.add_argument("--eval-limit", type=int, help="first N eval events (default: all)")
    parser.add_argument("--out", default="benchmarks/results/memory_health.json")
    args = parser.parse_args()
    data = run_data(args.runs, args.eval_limit)
    rows = [health(run, data, args.rows) for run in args.runs]
    print(f"{'run':<34} {'AUC':>7} {'warm':>7} {'cold':>7} {'permuted':>8} {'coverage':>9} "
          f"{'entropy':>8} {'top-1%':>7} {'rows updated':>13}")
    for r in rows:
        mem = (f"{r['auc_values_permuted']:>8.4f} {r['slot_coverage']:>9.4f} "
               f"{r['slot_entropy']:>8.4f} {r['top_slot_share']:>7.4f} "
               f"{r.get('value_rows_updated', '-'):>13}"
               if "slot_coverage" in r else " ".join(f"{'-':>{w}}" for w in (8, 9, 8, 7, 13)))
        print(f"{r['run'][-34:]:<34} {r['auc']:>7.4f} {r['auc_warm']:>7.4f} "
              f"{r['auc_cold']:>7.4f} {mem}")
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
