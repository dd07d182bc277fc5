"""`lmn-tf experiment table1|table2|ablation`: the paper's tables on public data.

- table1: every model x ``--seeds`` seeds; AUC and LogLoss mean ± std, RelaImpr vs Base.
- table2: LMN for √n ∈ {50, 100, 200, 300, 500, 1000} (2 seeds, 150k events by default).
- ablation: LMN's open design choices (read-out consumption, queries, stop-gradient, alpha).

Each writes ``results/<table>[_<dataset>].md`` and ``.json`` (every run's config and metrics,
the settings and the wall time; table2 also a ``.png``) through `lmn_tf.experiments.runner`,
updated after every run; the same command run again trains only the runs not yet in them.
On synthetic data the tables also give the oracle's AUC (true click probabilities on the
drawn labels) and the Bayes-optimal AUC. The defaults are sized for a 2-core CPU (see
``DEFAULTS``); pass ``--limit 0`` and more ``--epochs`` for full-data runs.

Example:
    lmn-tf experiment table1 --dataset ml-1m
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import tempfile

import numpy as np
import tensorflow as tf

from lmn_tf import ctr_metrics
from lmn_tf.experiments.runner import ResultTable
from lmn_tf.train import rate_or_none, train
from lmn_tf.training.datasets import DATASETS, load_data
from lmn_tf.training.run_dir import DEFAULTS as TRAIN_DEFAULTS

TABLES = ("table1", "table2", "ablation")

TABLE1_MODELS = ("base", "pooling", "din", "sim", "mimn", "lmn")
TABLE2_KEYS = (50, 100, 200, 300, 500, 1000)
ABLATION = {  # name -> LMN hparams on top of the defaults
    "attended + target query (default)": {},
    "pooled read-outs": {"readout": "pooled"},
    "no target query": {"queries": "history"},
    "stop-gradient on M_Q": {"memory_loss_stop_gradient": "query"},
    "alpha = 0 (no memory loss)": {"memory_loss_weight": 0.0},
    "alpha = 1": {"memory_loss_weight": 1.0},
}
OPTIMIZER_KEYS = ("values_optimizer", "values_learning_rate", "values_initial_accumulator",
                  "addressing_learning_rate", "learning_rate_decay")
OPTIMIZER_FLAG_TYPES = {"values_optimizer": str, "values_learning_rate": float,
                        "values_initial_accumulator": float,
                        "addressing_learning_rate": rate_or_none, "learning_rate_decay": str}
# Sized so that each table finishes in < 90 min on 2 CPU cores (wall times in results/*.md).
DEFAULTS = {"seeds": 3, "epochs": 1, "batch_size": 1024, "limit": 300_000, "eval_limit": 50_000,
            "patience": 0, **{k: TRAIN_DEFAULTS[k] for k in OPTIMIZER_KEYS}}
# Table 2 trains LMN six times per seed (up to √n = 1000), so it gets fewer seeds and events.
TABLE_DEFAULTS = {"table2": {"seeds": 2, "limit": 150_000}}


def _defaults(table: str) -> dict:
    return {**DEFAULTS, **TABLE_DEFAULTS.get(table, {})}


def settings_of(args: argparse.Namespace) -> dict:
    """The table's defaults overridden by the flags given on the command line."""
    given = {k: getattr(args, k) for k in DEFAULTS
             if k not in OPTIMIZER_KEYS and getattr(args, k) is not None}
    # The optimizer flags are absent unless given: "none" (None) is a value of its own there.
    given |= {k: getattr(args, k) for k in OPTIMIZER_KEYS if k in vars(args)}
    return {**_defaults(args.table), **given}


def _rows(table: str, models: list[str] | None, keys: list[int] | None):
    """(row label, model, hparams) of a table."""
    if table == "table1":
        return [(m, m, {}) for m in (models or TABLE1_MODELS)]
    if table == "table2":
        return [(f"√n = {k}", "lmn", {"num_keys": k}) for k in (keys or TABLE2_KEYS)]
    return [(name, "lmn", hp) for name, hp in ABLATION.items()]


def _mean_std(xs: list[float]) -> tuple[float, float]:
    return float(np.mean(xs)), float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0


def summarize(results: dict) -> list[dict]:
    """Per row: AUC/LogLoss mean ± std over seeds, RelaImpr vs the first row and vs DIN."""
    by_row: dict[str, list[dict]] = {}
    for r in results["runs"]:
        by_row.setdefault(r["row"], []).append(r)
    first = next(iter(by_row), None)
    rows = []
    for name, runs in by_row.items():
        aucs = [r["metrics"]["auc"] for r in runs]
        row = {"row": name, "model": runs[0]["model"], "seeds": len(runs)}
        if "num_keys" in runs[0]["hparams"]:
            row["num_keys"] = runs[0]["hparams"]["num_keys"]
        row["auc"], row["auc_std"] = _mean_std(aucs)
        row["logloss"], row["logloss_std"] = _mean_std([r["metrics"]["logloss"] for r in runs])
        row["train_seconds"] = float(np.mean([r["metrics"]["train_seconds"] for r in runs]))
        for k in ("auc_warm", "auc_cold", "epochs_trained"):
            if all(k in r["metrics"] for r in runs):
                row[k], row[k + "_std"] = _mean_std([r["metrics"][k] for r in runs])
        for ref_name, key in ((first, "relaimpr"), ("din", "relaimpr_vs_din")):
            ref = {r["seed"]: r["metrics"]["auc"] for r in by_row.get(ref_name, [])}
            pairs = [(r["metrics"]["auc"], ref[r["seed"]]) for r in runs if r["seed"] in ref]
            if not pairs or ref_name == name:
                continue
            row[key], row[key + "_std"] = _mean_std([ctr_metrics.rela_impr(*p) for p in pairs])
            if key == "relaimpr_vs_din" and len(pairs) > 1:
                with contextlib.suppress(ValueError):  # equal differences: no p-value
                    _, row["p_vs_din"] = ctr_metrics.paired_t_test(*zip(*pairs, strict=True))
        for k in ("oracle_auc", "bayes_auc"):
            if k in runs[0]["metrics"]:
                row[k] = runs[0]["metrics"][k]
        rows.append(row)
    return rows


def markdown(results: dict) -> str:
    s = results["settings"]
    rows = summarize(results)
    lines = [f"# {results['table']} on {s['dataset']}", "",
             f"Command: `{results['command']}`  ",
             f"Settings: {s['seeds']} seeds, {_epochs(s)}, batch {s['batch_size']}, "
             f"train events {results['num_train']:,} (latest), eval events "
             f"{results['num_eval']:,} (earliest of the eval period).  ",
             *([f"Code: {results['code']}.  "] if results.get("code") else []),
             f"Wall time: {results['wall_seconds'] / 60:.1f} min "
             f"({'complete' if results['complete'] else 'INCOMPLETE'}).", "",
             "| Row | AUC | warm users | cold users | RelaImpr vs first row | RelaImpr vs DIN "
             "| p vs DIN | LogLoss | train s/run |",
             "|---|---|---|---|---|---|---|---|---|"]

    def pct(row, key):
        return (f"{100 * row[key]:+.2f}% ± {100 * row[key + '_std']:.2f}" if key in row else "-")

    def mean(row, key):
        return f"{row[key]:.4f} ± {row[key + '_std']:.4f}" if key in row else "-"

    for r in rows:
        lines.append(f"| {r['row']} | {mean(r, 'auc')} | {mean(r, 'auc_warm')} | "
                     f"{mean(r, 'auc_cold')} | {pct(r, 'relaimpr')} | {pct(r, 'relaimpr_vs_din')} "
                     f"| {_p(r)} | {mean(r, 'logloss')} | {r['train_seconds']:.0f} |")
    if rows and "bayes_auc" in rows[0]:
        lines += ["", f"True click probabilities on the same eval labels (oracle): AUC "
                  f"{rows[0]['oracle_auc']:.4f}; Bayes-optimal AUC (expected over labels): "
                  f"{rows[0]['bayes_auc']:.4f}."]
    if results["table"] == "table2" and len(rows) > 1:
        trend = scaling(rows)
        lines += ["", f"Scaling: Spearman rho(√n, mean AUC) = {trend['spearman']:.2f} over "
                  f"{len(rows)} sizes; AUC at the largest √n minus the smallest: "
                  f"{trend['auc_gain']:+.4f} (the larger of their two stds: "
                  f"{trend['std']:.4f}). Plot: `{results['table']}.png`."]
    lines += ["", "RelaImpr = (AUC - 0.5)/(AUC_ref - 0.5) - 1, paired by seed; ± is the std "
              "over seeds (ddof 1). p vs DIN: two-sided paired t-test of the AUCs by seed "
              "(`lmn_tf.ctr_metrics.paired_t_test`). Warm users have events in the training "
              "window, cold users none."]
    return "\n".join(lines) + "\n"


def scaling(rows: list[dict]) -> dict[str, float]:
    """Table 2's trend over its rows (``summarize``'s, one per √n): Spearman's rho between √n
    and mean AUC (ranks with ties averaged), the AUC gain of the largest √n over the smallest,
    and the larger std of those two rows."""
    keys = np.array([r["num_keys"] for r in rows], dtype=np.float64)
    aucs = np.array([r["auc"] for r in rows])
    rho = float(np.corrcoef(ctr_metrics.ranks(keys), ctr_metrics.ranks(aucs))[0, 1])
    lo, hi = rows[int(keys.argmin())], rows[int(keys.argmax())]
    return {"spearman": rho, "auc_gain": hi["auc"] - lo["auc"],
            "std": max(hi["auc_std"], lo["auc_std"])}


def plot_scaling(results: dict, path: pathlib.Path) -> None:
    """Table 2's AUC against √n (mean ± std over seeds, log x) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(summarize(results), key=lambda r: r["num_keys"])
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.errorbar([r["num_keys"] for r in rows], [r["auc"] for r in rows],
                yerr=[r["auc_std"] for r in rows], marker="o", capsize=3)
    ax.set(xscale="log", xlabel="√n (keys per axis; n = √n² slots)", ylabel="test AUC",
           title=f"LMN memory size on {results['settings']['dataset']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of one table; ``lmn-tf experiment`` names the table (``args.table``)."""
    parser.add_argument("--dataset", choices=DATASETS, default="ml-1m")
    # None = the table's default (DEFAULTS, then TABLE_DEFAULTS).
    parser.add_argument("--seeds", type=int, default=None, help="default 3 (table2: 2)")
    parser.add_argument("--epochs", type=int, default=None, help="default 1")
    parser.add_argument("--batch-size", type=int, default=None, help="default 1024")
    parser.add_argument("--limit", type=int, default=None,
                        help="train on the latest N train events (0: all; default 300,000, "
                             "table2: 150,000)")
    parser.add_argument("--patience", type=int, default=None,
                        help="default 0: exactly --epochs; N: up to --epochs, stopping when "
                             "validation AUC has not improved for N epochs (`lmn-tf train`)")
    parser.add_argument("--eval-limit", type=int, default=None,
                        help="evaluate on the first N eval events (0: all; default 50,000)")
    for key in OPTIMIZER_KEYS:
        parser.add_argument("--" + key.replace("_", "-"), default=argparse.SUPPRESS,
                            type=OPTIMIZER_FLAG_TYPES[key],
                            help=f"as `lmn-tf train`'s; default {TRAIN_DEFAULTS[key]}")
    parser.add_argument("--models", nargs="+", help="table1: a subset of the models")
    parser.add_argument("--num-keys", type=int, nargs="+", help="table2: the √n values")
    parser.add_argument("--hparams", default="{}", help="JSON hparams added to every LMN run")
    parser.add_argument("--out", default="results", help="directory of the .md/.json tables")
    parser.add_argument("--runs-dir", help="where run directories go (default: a temp dir)")
    parser.add_argument("--quiet", action="store_true", help="no per-step progress bars")


def run(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    args = argparse.Namespace(**{**vars(args), **settings})
    suffix = "" if args.dataset == "ml-1m" else f"_{args.dataset.replace('-', '')}"
    runs_dir = pathlib.Path(args.runs_dir or tempfile.mkdtemp(prefix="lmn-tf-experiment-"))
    data = load_data(args.dataset, args.limit or None, args.eval_limit or None)
    table = ResultTable(
        pathlib.Path(args.out) / f"{args.table}{suffix}",
        "lmn-tf experiment " + " ".join(_argv(args)), key=lambda r: (r["row"], r["seed"]),
        markdown=markdown, plot=plot_scaling if args.table == "table2" else None,
        summary=summarize,
        fields={"table": args.table, "settings": {"dataset": args.dataset, **settings},
                "num_train": len(data[0]["label"]), "num_eval": len(data[1]["label"])})
    extra = json.loads(args.hparams)
    rows = _rows(args.table, args.models, args.num_keys)
    for seed in range(args.seeds):  # seed-major: a partial table still covers every row
        for label, model, hparams in rows:
            if table.done((label, seed)):
                print(f"== {args.table}: {label}, seed {seed}: in the table", flush=True)
                continue
            hp = {**extra, **hparams} if model == "lmn" else hparams
            config = {"model": model, "dataset": args.dataset, "hparams": hp, "seed": seed,
                      "epochs": args.epochs, "batch_size": args.batch_size,
                      "limit": args.limit or None, "eval_limit": args.eval_limit or None,
                      "patience": args.patience,
                      **{k: getattr(args, k) for k in OPTIMIZER_KEYS}}
            slug = f"{args.table}-{label}-{seed}".replace(" ", "").replace("√n=", "keys")
            print(f"== {args.table}: {label}, seed {seed}", flush=True)
            tf.keras.backend.clear_session()
            metrics = train(config, runs_dir / "".join(c for c in slug if c.isalnum() or c in "-_"),
                            data=data, verbose=0 if args.quiet else 1)
            print(f"   AUC {metrics['auc']:.4f}  LogLoss {metrics['logloss']:.4f}  "
                  f"({metrics['train_seconds']:.0f} s)", flush=True)
            table.add({"row": label, "model": model, "hparams": hp, "seed": seed,
                       "metrics": metrics})
    print(table.finish())
    return 0


def _argv(args: argparse.Namespace) -> list[str]:
    argv = [args.table, "--dataset", args.dataset]
    for k, v in _defaults(args.table).items():
        if getattr(args, k) != v:
            argv += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
    if args.models:
        argv += ["--models", *args.models]
    if args.num_keys:
        argv += ["--num-keys", *map(str, args.num_keys)]
    if args.hparams != "{}":
        argv += ["--hparams", f"'{args.hparams}'"]
    return argv


def _p(row: dict) -> str:
    return f"{row['p_vs_din']:.3g}" if "p_vs_din" in row else "-"


def _epochs(settings: dict) -> str:
    if settings.get("patience"):
        return (f"up to {settings['epochs']} epochs, early stopping on validation AUC "
                f"(patience {settings['patience']})")
    return f"{settings['epochs']} epoch(s)"
