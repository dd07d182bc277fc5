"""`lmn-tf experiment capacity`: does the memory memorise? A benchmark with a known answer.

On ``synthetic.memorisation`` (a random +-1 preference per (group, item) pair, groups visible
through the profile) every model is trained once over ``exposures`` samples of each pair and
scored on fresh samples. Per cell: AUC, the share of the Base -> Bayes-optimal gap it closes,
and the mean train-step time. Rows: Base, DIN, Cross (an explicit hashed profile x item
embedding: the reference a memory should approach) and LMN at its defaults at each √n, all
with `lmn-tf train`'s optimizer recipe (``--hparams`` adds LMN arguments, e.g. a preset of
``lmn_tf.models.lmn.PRESETS``; the optimizer flags change the recipe). Writes
``results/capacity.md``, ``.json`` and ``.png`` through `lmn_tf.experiments.runner`, updated
after each run; the same command run again trains only the cells not yet in them.

Example:
    lmn-tf experiment capacity --sizes 10000 --models base lmn --num-keys 100
"""

from __future__ import annotations

import argparse
import json
import pathlib
import tempfile

import tensorflow as tf

from lmn_tf.data import synthetic
from lmn_tf.experiments.runner import ResultTable
from lmn_tf.experiments.tables import OPTIMIZER_KEYS
from lmn_tf.train import DEFAULTS, add_optimizer_arguments, train

# pairs -> (groups, items, exposures): 20 exposures, fewer at 10^6 to fit the hour.
SIZES = {10_000: (100, 100, 20), 100_000: (100, 1000, 20), 1_000_000: (1000, 1000, 5)}
MODELS = ("base", "din", "cross", "lmn")
NUM_KEYS = (100, 316, 1000)
TRAIN = {"epochs": 1, "batch_size": 1024, "checkpoint_every": 0}  # the rest: DEFAULTS


def cells(sizes, models, num_keys) -> list[tuple[int, str, str, dict]]:
    """(pairs, row label, model, hparams) of every cell, smallest size first."""
    out = []
    for pairs in sizes:
        for model in models:
            if model != "lmn":
                hp = {"cross_buckets": 4 * pairs} if model == "cross" else {}
                out.append((pairs, model, model, hp))
                continue
            out += [(pairs, f"lmn √n={k}", "lmn", {"num_keys": k}) for k in num_keys]
    return out


def gap_closed(auc: float, base: float, bayes: float) -> float:
    """Share of the Base -> Bayes-optimal AUC gap that ``auc`` closes (0 = Base, 1 = Bayes)."""
    return (auc - base) / (bayes - base)


def markdown(results: dict) -> str:
    lines = ["# Capacity: memorising a random preference per (group, item) pair", "",
             f"Command: `{results['command']}`  ",
             *([f"Code: {results['code']}.  "] if results.get("code") else []),
             f"Wall time: {results['wall_seconds'] / 60:.1f} min "
             f"({'complete' if results['complete'] else 'INCOMPLETE'}).", "",
             "| pairs | exposures | row | AUC | gap closed | Bayes AUC | ms/step |",
             "|---:|---:|---|---:|---:|---:|---:|"]
    for r in results["runs"]:
        closed = "-" if r.get("gap_closed") is None else f"{100 * r['gap_closed']:.0f}%"
        lines.append(f"| {r['pairs']:,} | {r['exposures']} | {r['row']} | {r['auc']:.4f} | "
                     f"{closed} | {r['bayes_auc']:.4f} | {r['ms_per_step']:.1f} |")
    lines += ["", "Gap closed = (AUC - AUC_Base) / (AUC_Bayes - AUC_Base) at the same size; "
              "one seed; ms/step = training wall time / steps (batch 1024, shared 2-core CPU)."]
    return "\n".join(lines) + "\n"


def plot(results: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    rows = sorted({r["row"] for r in results["runs"]}, key=lambda r: (len(r), r))
    for row in rows:
        pts = sorted((r["pairs"], r["auc"]) for r in results["runs"] if r["row"] == row)
        ax.plot(*zip(*pts, strict=True), marker="o", label=row)
    bayes = sorted({(r["pairs"], r["bayes_auc"]) for r in results["runs"]})
    ax.plot(*zip(*bayes, strict=True), "k--", label="Bayes-optimal")
    ax.set(xscale="log", xlabel="pairs", ylabel="test AUC", title="Memorisation capacity")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES),
                        choices=list(SIZES), help="numbers of pairs")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--num-keys", type=int, nargs="+", default=list(NUM_KEYS),
                        help="LMN's √n values")
    parser.add_argument("--hparams", default="{}", help="JSON hparams added to every LMN run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results")
    add_optimizer_arguments(parser)  # lmn-tf train's recipe, unless the flags say otherwise


def run(args: argparse.Namespace) -> int:
    argv = " ".join(f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                    for k, v in vars(args).items()
                    if k in ("sizes", "models", "num_keys", "seed", *OPTIMIZER_KEYS)
                    and v != _default(k))
    extra = json.loads(args.hparams)
    if extra:
        argv += f" --hparams '{json.dumps(extra)}'"
    table = ResultTable(pathlib.Path(args.out) / "capacity",
                        f"lmn-tf experiment capacity {argv}".strip(),
                        key=lambda r: (r["pairs"], r["row"]), markdown=markdown, plot=plot)
    train_config = {**TRAIN, **{k: getattr(args, k) for k in OPTIMIZER_KEYS}}
    runs_dir = pathlib.Path(tempfile.mkdtemp(prefix="lmn-tf-capacity-"))
    data_of, base_auc = {}, {}
    for pairs, label, model, hparams in cells(args.sizes, args.models, args.num_keys):
        if done := table.done((pairs, label)):
            if model == "base":
                base_auc[pairs] = done["auc"]
            continue
        groups, items, exposures = SIZES[pairs]
        if pairs not in data_of:
            data_of = {pairs: synthetic.memorisation(groups, items, exposures, seed=args.seed)}
        data = data_of[pairs]
        hp = {**hparams, **extra} if model == "lmn" else hparams
        print(f"== capacity: {pairs:,} pairs, {label}", flush=True)
        tf.keras.backend.clear_session()
        config = {**train_config, "model": model, "dataset": "memorisation", "hparams": hp,
                  "seed": args.seed}
        slug = f"{pairs}-{label}".replace(" ", "").replace("√n=", "keys")
        metrics = train(config, runs_dir / slug, data=data, verbose=1)
        steps = -(-len(data[0]["label"]) // TRAIN["batch_size"])
        if model == "base":
            base_auc[pairs] = metrics["auc"]
        closed = (gap_closed(metrics["auc"], base_auc[pairs], metrics["bayes_auc"])
                  if pairs in base_auc else None)
        table.add({
            "pairs": pairs, "exposures": exposures, "row": label, "model": model,
            "hparams": hp, "auc": metrics["auc"], "bayes_auc": metrics["bayes_auc"],
            "gap_closed": closed, "ms_per_step": 1000 * metrics["train_seconds"] / steps})
        print(f"   AUC {metrics['auc']:.4f}" + (f"  gap closed {100 * closed:.0f}%"
                                                 if closed is not None else ""), flush=True)
    print(table.finish())
    return 0


def _default(key: str):
    return {"sizes": list(SIZES), "models": list(MODELS), "num_keys": list(NUM_KEYS),
            "seed": 0, **DEFAULTS}[key]
