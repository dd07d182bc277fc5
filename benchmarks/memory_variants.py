"""How should the ranking model consume the memory? Each variant is one ``lmn-tf train``
command on the full ML-1M split; each trained run then gets ``memory_health.py``'s diagnostics.

Protocol (every row alike): all 800,167 training events, of which the latest 10% by time are
the validation split (``--patience 1``: validation AUC is scored after the epoch), one epoch,
batch 1024, seed 0, then the 200,042 test events once. Variants are compared on validation
AUC; the test columns are reported, not used to choose.

    python benchmarks/memory_variants.py --runs-dir RUNS [NAME ...]   # default: all
    python benchmarks/memory_variants.py --runs-dir RUNS --list

A run directory that already holds ``metrics.json`` is not trained again (delete it to
retrain), so a table can be rebuilt from finished runs. Prints a table and writes ``--out``
(.md and .json, through `lmn_tf.experiments.runner`: each row as it is finished, with the
command and the code version; the same command run again keeps the rows it finished).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shlex
import subprocess
import sys

from lmn_tf.experiments.runner import ResultTable
from lmn_tf.models.lmn import PRESETS

# The optimizer these rows were measured with (before SparseAdam and the slow addressing).
MEASURED_WITH = ["--learning-rate-decay", "none",
                 "--values-optimizer", "adagrad", "--values-learning-rate", "0.05",
                 "--values-initial-accumulator", "0.1", "--addressing-learning-rate", "none"]
FAST_VALUES = [*MEASURED_WITH, "--values-learning-rate", "0.3",  # the later flag wins
               "--values-initial-accumulator", "1e-6"]
PROFILE_ITEM = PRESETS["capacity"]  # a target-only store at fixed addresses
# The presets less one key (the paper's design's value), as these runs measured them.
USER_ITEM = {**PROFILE_ITEM, "query_user": "profile_and_id"}  # with the id
PAIRS = {**PRESETS["item_pairs"], "readout": "attended"}
# name -> (what it tests, lmn-tf train arguments)
VARIANTS = {
    "din": ("DIN, the reference", ["--model", "din"]),
    "lmn": ("LMN, the paper's design (the defaults up to this table)",
            ["--model", "lmn", *MEASURED_WITH, "--hparams", json.dumps(PRESETS["paper"])]),
    "spread": ("LMN, values that learn, reads spread (query_norm, fixed random keys)",
               ["--model", "lmn", *FAST_VALUES, "--hparams", json.dumps(
                   {"query_norm": True, "addressing": "fixed_keys"})]),
    "user-item": ("target-only cross store: (user id + profile, item) at fixed addresses",
                  ["--model", "lmn", *FAST_VALUES, "--hparams", json.dumps(USER_ITEM)]),
    "profile-item": ("target-only cross store: (profile, item) at fixed addresses",
                     ["--model", "lmn", *FAST_VALUES, "--hparams", json.dumps(PROFILE_ITEM)]),
    "item-item": ("item x item store: (history item, rating, target) at fixed addresses, "
                  "read-outs attended by the target",
                  ["--model", "lmn", *FAST_VALUES, "--hparams", json.dumps(PAIRS)]),
    "item-item-pooled": ("the item x item store, read-outs pooled into the MLP only",
                         ["--model", "lmn", *FAST_VALUES, "--hparams",
                          json.dumps(PRESETS["item_pairs"])]),
    "item-item-pooled-dropout": ("the pooled item x item store, dropout 0.3 on the read-outs",
                                 ["--model", "lmn", *FAST_VALUES, "--hparams", json.dumps(
                                     {**PRESETS["item_pairs"], "readout_dropout": 0.3})]),
    "cross": ("Base + an explicit hashed profile x item embedding (no memory)",
              ["--model", "cross", *MEASURED_WITH]),
}
PROTOCOL = ["--dataset", "ml-1m", "--epochs", "1", "--patience", "1", "--seed", "0"]


def command(name: str, run_dir: pathlib.Path, smoke: list[str] = ()) -> list[str]:
    return ["lmn-tf", "train", *VARIANTS[name][1], *PROTOCOL, *smoke, "--run-dir", str(run_dir)]


def markdown(results: dict) -> str:
    rows = results["runs"]
    lines = ["# How the ranking model consumes the memory: variants on the full ML-1M split", "",
             f"Command: `{results['command']}`  ",
             *([f"Code: {results['code']}.  "] if results.get("code") else []),
             f"Wall time: {results['wall_seconds'] / 60:.1f} min (training the runs not yet "
             "trained, and the diagnostics).", "",
             "| variant | what it tests | validation AUC | test AUC | warm | cold | "
             "AUC drop, values permuted | slot coverage | top-1% share | train s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        mem = (f"{r['auc'] - r['auc_values_permuted']:+.4f} | {r['slot_coverage']:.3f} | "
               f"{r['top_slot_share']:.3f}" if "slot_coverage" in r else "- | - | -")
        lines.append(f"| {r['variant']} | {r['what']} | {r['validation_auc']:.4f} | "
                     f"{r['auc']:.4f} | {r['auc_warm']:.4f} | {r['auc_cold']:.4f} | {mem} | "
                     f"{r['train_seconds']:.0f} |")
    lines += ["", "Each row is `lmn-tf train ARGS " + shlex.join(PROTOCOL) + " --run-dir RUN` "
        "with the variant's ARGS (`command` in the JSON). Protocol: "
        "the module docstring of `benchmarks/memory_variants.py`. Diagnostics from "
        "`benchmarks/memory_health.py`: AUC drop when the memory's value rows are shuffled "
        "(the model relies on what they store), and slot use on the first 4,096 test events.",
        ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"variants (default: all): {list(VARIANTS)}")
    parser.add_argument("--runs-dir", required=True)
    parser.add_argument("--rows", type=int, default=4096, help="test events for slot use")
    parser.add_argument("--list", action="store_true", help="print the commands and stop")
    parser.add_argument("--out", default="results/full_features/memory_variants")
    parser.add_argument("--limit", type=int, help="smoke runs only: train on the latest N "
                        "events and score the first N test events (the table uses all)")
    args = parser.parse_args()
    smoke = ["--limit", str(args.limit), "--eval-limit", str(args.limit),
             "--batch-size", "64"] if args.limit else []
    names = args.names or list(VARIANTS)
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    runs = pathlib.Path(args.runs_dir)
    if args.list:
        for name in names:
            print(shlex.join(command(name, runs / name, smoke)))
        return
    table = ResultTable(args.out, shlex.join(["python", "benchmarks/memory_variants.py",
                                              *sys.argv[1:]]),
                        key=lambda r: r["variant"], markdown=markdown)
    for i, name in enumerate(names):
        if table.done(name) or (runs / name / "metrics.json").is_file():
            print(f"== [{i + 1}/{len(names)}] {name}: trained ({runs / name})", flush=True)
            continue
        print(f"== [{i + 1}/{len(names)}] {name}: {shlex.join(command(name, runs / name, smoke))}",
              flush=True)
        argv = [sys.executable, "-m", "lmn_tf", *command(name, runs / name, smoke)[1:], "--quiet"]
        subprocess.run(argv, check=True)

    import memory_health  # the data and the models: only after the training subprocesses

    todo = [name for name in names if not table.done(name)]
    data = memory_health.run_data([str(runs / name) for name in todo], args.limit)
    for name in todo:
        print(f"== diagnostics: {name}", flush=True)
        metrics = json.loads((runs / name / "metrics.json").read_text())
        cached = runs / name / "memory_health.json"  # diagnostics of this very checkpoint
        if cached.is_file() and cached.stat().st_mtime > (runs / name / "metrics.json").stat(
                ).st_mtime:
            row = json.loads(cached.read_text())
        else:
            row = memory_health.health(str(runs / name), data, args.rows)
            cached.write_text(json.dumps(row, indent=2) + "\n")
        table.add({"variant": name, "what": VARIANTS[name][0],
                   "command": shlex.join(command(name, runs / name, smoke)),
                   "validation_auc": metrics["validation_auc"],
                   "train_seconds": metrics["train_seconds"], **row})
    print(table.finish())


if __name__ == "__main__":
    main()
