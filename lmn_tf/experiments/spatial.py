"""`lmn-tf experiment spatial`: does a user read what similar users wrote? A known answer.

On ``synthetic.spatial`` (a random +-1 preference per (latent group, item) pair; the group
shows only in the items a user browses, never as a feature) every model is trained once over
``exposures`` samples of each pair and scored on fresh samples of warm users and of cold
users (no training sample). Per cell and subset: AUC, the Bayes-optimal AUC and the share of
the Base -> Bayes gap closed. Rows: Base, DIN, SIM, a (user, item) pair store (``Cross`` with
the user id: it cannot reach cold users), the oracle (``Cross`` over the group, given as the
profile: what a perfect router could store) and LMN at its defaults at each √n.
Writes ``results/spatial.md``, ``.json`` and ``.png`` through `lmn_tf.experiments.runner`;
the same command run again trains only the cells not yet in them.

Example:
    lmn-tf experiment spatial --seeds 1 --models base lmn --num-keys 100 --items 100
"""

from __future__ import annotations

import argparse
import json
import pathlib
import tempfile

import numpy as np
import tensorflow as tf

from lmn_tf.data import synthetic
from lmn_tf.data.pipeline import make_dataset
from lmn_tf.experiments.capacity import gap_closed
from lmn_tf.experiments.runner import ResultTable
from lmn_tf.memory.diagnostics import group_slot_overlap
from lmn_tf.train import DEFAULTS, train
from lmn_tf.training.run_dir import load_run

MODELS = ("base", "din", "sim", "pair", "oracle", "lmn")
NUM_KEYS = (100, 316, 1000)
SUBSETS = ("all", "warm", "cold")
# Task size flags -> synthetic.spatial's arguments (README reports them with the table).
TASK = {"groups": "num_groups", "items": "num_items", "exposures": "exposures",
        "users_per_group": "users_per_group", "cold_users_per_group": "cold_users_per_group",
        "taste_size": "taste_size", "history_noise": "history_noise",
        "eval_samples": "eval_samples"}


def cells(models, num_keys) -> list[tuple[str, str, dict, bool]]:
    """(row label, model, hparams, oracle data?) of every cell of one seed."""
    out = []
    for model in models:
        if model == "lmn":
            out += [(f"lmn √n={k}", "lmn", {"num_keys": k}, False) for k in num_keys]
        elif model == "pair":
            out.append(("pair (user, item)", "cross", {"cross_with": "user"}, False))
        elif model == "oracle":
            out.append(("oracle (group, item)", "cross", {"cross_with": "profile"}, True))
        else:
            out.append((model, model, {}, False))
    return out


def subset_scores(metrics: dict, eval_arrays: dict, warm_users: np.ndarray) -> dict:
    """AUC and Bayes-optimal AUC on all, warm and cold users' evaluation samples."""
    warm = np.isin(eval_arrays["user_id"], warm_users)
    p = eval_arrays[synthetic.TRUE_PROB]
    out = {}
    for name, mask, key in (("all", np.ones_like(warm), "auc"), ("warm", warm, "auc_warm"),
                            ("cold", ~warm, "auc_cold")):
        out[name] = {"auc": metrics.get(key), "bayes_auc": synthetic.expected_auc(p[mask],
                                                                                  p[mask])}
    return out


def cold_slot_overlap(run_dir: pathlib.Path, eval_arrays: dict, warm_users: np.ndarray,
                      rows: int = 20_000) -> dict[str, float]:
    """``group_slot_overlap`` of a trained LMN's reads on the first ``rows`` evaluation
    samples of cold users: do users of one latent group read the same slots? Of all stores
    together, and, where the model has several, of each (``"stores"``, by ``query_user``)."""
    model, _ = load_run(run_dir)
    cold = ~np.isin(eval_arrays["user_id"], warm_users)
    sub = {k: v[cold][:rows] for k, v in eval_arrays.items()}

    def of(store):
        slots = np.concatenate([model.read_slots(features, store).numpy()
                                for features in make_dataset(sub, 2048)])
        return group_slot_overlap(slots, sub[synthetic.GROUP], sub["item_id"], sub["user_id"])

    stores = model.query_users
    return {**of(None), **({"stores": {s: of(s) for s in stores}} if len(stores) > 1 else {})}


def stat(values) -> str:
    """Mean (± std over seeds, ddof 1) of the values that exist."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    mean = np.mean(values)
    return f"{mean:.4f}" if len(values) < 2 else f"{mean:.4f} ± {np.std(values, ddof=1):.4f}"


def closed(runs: list[dict], subset: str) -> str:
    """Mean (± std) share of the gap the runs closed on ``subset``, in percent."""
    pct = 100 * np.asarray([r["gap_closed"][subset] for r in runs
                            if r.get("gap_closed", {}).get(subset) is not None])
    if not len(pct):
        return "-"
    return f"{pct.mean():.0f}%" if len(pct) < 2 else f"{pct.mean():.0f}% ± {pct.std(ddof=1):.0f}"


def overlap(runs: list[dict]) -> str:
    """Mean slot overlap within / across groups over the runs that measured it."""
    got = [r["slot_overlap"] for r in runs if r.get("slot_overlap")]
    if not got:
        return "-"

    def pair(overlaps):
        return " / ".join(f"{np.mean([g[k] for g in overlaps]):.3f}" for k in ("within", "across"))

    stores = [g["stores"] for g in got if "stores" in g]
    per_store = (" (" + ", ".join(f"{name}: {pair([s[name] for s in stores])}"
                                  for name in stores[0]) + ")") if stores else ""
    return pair(got) + per_store


def markdown(results: dict) -> str:
    task = results.get("task", {})
    lines = ["# Spatial: a preference per (latent group, item) pair, cold users included", "",
             f"Command: `{results['command']}`  ",
             *([f"Code: {results['code']}.  "] if results.get("code") else []),
             f"Task: {', '.join(f'{k} {v}' for k, v in task.items())}.  ",
             f"Wall time: {results['wall_seconds'] / 60:.1f} min "
             f"({'complete' if results['complete'] else 'INCOMPLETE'}).", "",
             "| row | seeds | AUC | warm AUC | cold AUC | gap closed, warm | gap closed, cold "
             "| slot overlap, cold: within / across group | ms/step |",
             "|---|---:|---:|---:|---:|---:|---:|---|---:|"]
    rows = list(dict.fromkeys(r["row"] for r in results["runs"]))
    for row in rows:
        runs = [r for r in results["runs"] if r["row"] == row]
        lines.append(
            f"| {row} | {len(runs)} | {stat(r['scores']['all']['auc'] for r in runs)} | "
            f"{stat(r['scores']['warm']['auc'] for r in runs)} | "
            f"{stat(r['scores']['cold']['auc'] for r in runs)} | {closed(runs, 'warm')} | "
            f"{closed(runs, 'cold')} | {overlap(runs)} | "
            f"{np.mean([r['ms_per_step'] for r in runs]):.1f} |")
    bayes = [r["scores"] for r in results["runs"] if r["row"] == rows[0]] if rows else []
    if bayes:
        lines += ["", "Bayes-optimal AUC (mean over seeds): all "
                  f"{np.mean([b['all']['bayes_auc'] for b in bayes]):.4f}, warm "
                  f"{np.mean([b['warm']['bayes_auc'] for b in bayes]):.4f}, cold "
                  f"{np.mean([b['cold']['bayes_auc'] for b in bayes]):.4f}."]
    lines += ["", "Gap closed = (AUC - AUC_Base) / (AUC_Bayes - AUC_Base) on the same seed and "
              "users; ± is the std over seeds (ddof 1); ms/step = training wall time / steps "
              "(batch 1024, shared 2-core CPU). Warm users have training samples, cold users "
              "none. Slot overlap: mean Jaccard overlap of the slots two cold users' samples of "
              "one item read, users of one latent group vs of two "
              "(`lmn_tf.memory.diagnostics.group_slot_overlap`)."]
    return "\n".join(lines) + "\n"


def plot(results: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(dict.fromkeys(r["row"] for r in results["runs"]))
    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(len(rows))
    for offset, subset in ((-0.2, "warm"), (0.2, "cold")):
        means = [np.mean([r["gap_closed"][subset] for r in results["runs"]
                          if r["row"] == row and r["gap_closed"].get(subset) is not None]
                         or [np.nan]) for row in rows]
        ax.bar(x + offset, 100 * np.asarray(means), width=0.4, label=f"{subset} users")
    ax.set_xticks(x, rows, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="Base -> Bayes gap closed (%)", title="Spatial task")
    ax.axhline(0, color="k", lw=0.5)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--num-keys", type=int, nargs="+", default=list(NUM_KEYS),
                        help="LMN's √n values")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 of every cell")
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--exposures", type=int, default=20,
                        help="training samples of every (group, item) pair")
    parser.add_argument("--users-per-group", type=int, default=20, help="warm users")
    parser.add_argument("--cold-users-per-group", type=int, default=5)
    parser.add_argument("--taste-size", type=int, default=50)
    parser.add_argument("--history-noise", type=float, default=0.2)
    parser.add_argument("--eval-samples", type=int, default=200_000)
    parser.add_argument("--hparams", default="{}", help="JSON hparams added to every LMN run")
    parser.add_argument("--out", default="results")


def run(args: argparse.Namespace) -> int:
    defaults = {a.dest: a.default for a in _parser()._actions}
    argv = " ".join(f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                    for k, v in vars(args).items()
                    if k in defaults and k not in ("hparams", "out", "help")
                    and v != defaults[k])
    extra = json.loads(args.hparams)
    if extra:
        argv += f" --hparams '{json.dumps(extra)}'"
    task = {TASK[k]: getattr(args, k) for k in TASK}
    table = ResultTable(pathlib.Path(args.out) / "spatial",
                        f"lmn-tf experiment spatial {argv}".strip(),
                        key=lambda r: (r["row"], r["seed"]), markdown=markdown, plot=plot,
                        fields={"task": task})
    runs_dir = pathlib.Path(tempfile.mkdtemp(prefix="lmn-tf-spatial-"))
    for seed in range(args.seeds):
        data, base = {}, None
        for label, model, hparams, oracle in cells(args.models, args.num_keys):
            if done := table.done((label, seed)):
                base = done["scores"] if model == "base" else base
                continue
            if oracle not in data:
                print(f"== spatial: seed {seed}, building the task"
                      f"{' (oracle profiles)' if oracle else ''}", flush=True)
                data[oracle] = synthetic.spatial(**task, group_in_profile=oracle, seed=seed)
            train_arrays, eval_arrays, _ = data[oracle]
            hp = {**hparams, **extra} if model == "lmn" else hparams
            print(f"== spatial: seed {seed}, {label}", flush=True)
            tf.keras.backend.clear_session()
            config = {"model": model, "dataset": "spatial", "hparams": hp, "seed": seed,
                      "checkpoint_every": 0, "epochs": DEFAULTS["epochs"]}
            slug = f"{seed}-{label}".replace(" ", "").replace("√n=", "keys")
            for ch in "(),":
                slug = slug.replace(ch, "")
            metrics = train(config, runs_dir / slug, data=data[oracle], verbose=1)
            warm_users = np.unique(train_arrays["user_id"])
            scores = subset_scores(metrics, eval_arrays, warm_users)
            if model == "base":
                base = scores
            closed = {s: gap_closed(scores[s]["auc"], base[s]["auc"], scores[s]["bayes_auc"])
                      for s in SUBSETS if base is not None and scores[s]["auc"] is not None
                      and base[s]["auc"] is not None}
            steps = -(-len(train_arrays["label"]) // DEFAULTS["batch_size"])
            table.add({"row": label, "seed": seed, "model": model, "hparams": hp,
                       "scores": scores, "gap_closed": closed,
                       "ms_per_step": 1000 * metrics["train_seconds"] / steps,
                       **({"slot_overlap": cold_slot_overlap(runs_dir / slug, eval_arrays,
                                                             warm_users)}
                          if model == "lmn" else {})})
            print("   " + "  ".join(f"{s} AUC {scores[s]['auc']:.4f}" for s in SUBSETS
                                    if scores[s]["auc"] is not None), flush=True)
    print(table.finish())
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser
