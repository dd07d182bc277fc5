"""Export benchmark: SavedModel size and load time at √n ∈ {300, 1000}, float32 vs float16.

    python benchmarks/export_bench.py                      # sizes and load times
    python benchmarks/export_bench.py --run-dir runs/lmn   # + AUC of each values dtype

For each √n an untrained LMN (paper widths: embedding 32, d_v 32) sized like MovieLens-1M is
built and exported with each values dtype. Load time is TF-Serving's path: the ``serve``
MetaGraph loaded into a fresh Session (median of ``--repeats``), and the first
``serving_default`` call on a 64-row batch. With ``--run-dir``, the run's latest checkpoint
is exported in float32/float16/bfloat16 and each export is scored (AUC) on the run's
evaluation data through its signature. Prints a table, writes results/export_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import tempfile
import time

import numpy as np
import tensorflow as tf

import lmn_tf  # noqa: F401  (tf-keras before TensorFlow)
from lmn_tf.data import schema
from lmn_tf.data.random_batches import random_arrays, zero_features
from lmn_tf.data.vocabulary import Vocabulary
from lmn_tf.export import export_saved_model
from lmn_tf.models import build_model

ML_1M = schema.Vocab(num_users=6041, num_items=3884, num_genders=3, num_ages=8,
                     num_occupations=22, num_zips=679, num_genres=19, num_years=11)
HERE = pathlib.Path(__file__).resolve().parent


def dir_bytes(path: str) -> int:
    return sum(f.stat().st_size for f in pathlib.Path(path).rglob("*") if f.is_file())


def session_load(path: str, features: dict) -> tuple[float, float]:
    """(load seconds, first-call seconds) through the v1 loader, as TF-Serving loads;
    ``features`` are raw (``serving_default``'s inputs)."""
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        start = time.perf_counter()
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)
        loaded = time.perf_counter()
        sig = meta.signature_def["serving_default"]
        sess.run(sig.outputs["probability"].name,
                 {sig.inputs[k].name: features[k] for k in sig.inputs})
        return loaded - start, time.perf_counter() - loaded


def size_and_load(num_keys: int, dtypes: list[str], repeats: int, base: str) -> list[dict]:
    tf.keras.utils.set_random_seed(0)
    # top-K at its default, capped for the smoke test's tiny √n
    model = build_model("lmn", ML_1M, num_keys=num_keys, top_k=min(32, num_keys))
    model(zero_features(1))
    features = {k: v for k, v in random_arrays(ML_1M, 64).items() if k != schema.LABEL}
    rows = []
    for dtype in dtypes:
        start = time.perf_counter()
        path = export_saved_model(model, base, f"lmn_{num_keys}", values_dtype=dtype,
                                  warmup=features)
        export_s = time.perf_counter() - start
        raw = Vocabulary.identity(ML_1M).to_raw(features)  # what serving_default takes
        loads = [session_load(path, raw) for _ in range(repeats)]
        values = model.memory.value_store.table
        rows.append({
            "num_keys": num_keys, "slots": num_keys**2, "values_dtype": dtype,
            "values_mb": values.shape.num_elements() * tf.as_dtype(dtype).size / 1e6,
            "export_mb": dir_bytes(path) / 1e6, "export_s": export_s,
            "load_s": statistics.median(s for s, _ in loads),
            "first_call_s": statistics.median(s for _, s in loads)})
        print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in rows[-1].items()), flush=True)
    return rows


def auc_by_dtype(run_dir: str, dtypes: list[str], base: str, batch: int = 4096) -> dict:
    """AUC of the run's Keras model and of its export in each values dtype (from logits)."""
    from lmn_tf import ctr_metrics
    from lmn_tf.data import make_dataset
    from lmn_tf.train import history_of, load_data, load_run

    model, config = load_run(run_dir)
    _, eval_, _ = load_data(config["dataset"], eval_limit=config.get("eval_limit"),
                            progress=False, history=history_of(config))
    labels = eval_[schema.LABEL]
    _, keras_logits = ctr_metrics.predict(model, make_dataset(eval_, batch), verbose=0)
    out = {"run_dir": run_dir, "dataset": config["dataset"], "limit": config.get("limit"),
           "n_eval": len(labels), "hparams": config.get("hparams", {}),
           "keras_auc": ctr_metrics.auc(labels, keras_logits.reshape(-1))}
    logits = {}
    for dtype in dtypes:
        path = export_saved_model(model, base, "lmn_run", values_dtype=dtype)
        serve = tf.saved_model.load(path).signatures["serving_indices"]  # index features
        logits[dtype] = np.concatenate([
            serve(**{k: tf.constant(eval_[k][i:i + batch]) for k in schema.FEATURES}
                  )["logit"].numpy() for i in range(0, len(labels), batch)])
        out[dtype] = {"auc": ctr_metrics.auc(labels, logits[dtype]),
                      "export_mb": dir_bytes(path) / 1e6,
                      "max_abs_logit_diff_vs_keras": float(np.max(np.abs(
                          logits[dtype] - keras_logits.reshape(-1))))}
        print(f"{dtype}: AUC {out[dtype]['auc']:.6f}, {out[dtype]['export_mb']:.1f} MB",
              flush=True)
    for dtype in dtypes:
        out[dtype]["auc_change"] = out[dtype]["auc"] - out["float32"]["auc"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-keys", type=int, nargs="+", default=[300, 1000])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--run-dir", help="also score each values dtype on this run's eval data")
    parser.add_argument("--out", default=str(HERE / "results" / "export_bench.json"))
    args = parser.parse_args()
    results: dict = {"size_and_load": []}
    with tempfile.TemporaryDirectory() as base:
        for num_keys in args.num_keys:
            results["size_and_load"] += size_and_load(num_keys, args.dtypes, args.repeats, base)
        if args.run_dir:
            results["auc"] = auc_by_dtype(args.run_dir, ["float32", "float16", "bfloat16"], base)
    print(f"\n{'√n':>5} {'values':>8} {'table MB':>9} {'export MB':>10} {'load s':>7} "
          f"{'1st call s':>10}")
    for r in results["size_and_load"]:
        print(f"{r['num_keys']:>5} {r['values_dtype']:>8} {r['values_mb']:>9.1f} "
              f"{r['export_mb']:>10.1f} {r['load_s']:>7.2f} {r['first_call_s']:>10.2f}")
    if "auc" in results:
        print(f"   keras: AUC {results['auc']['keras_auc']:.6f} (the run's model, no export)")
        for dtype in ("float32", "float16", "bfloat16"):
            a = results["auc"][dtype]
            print(f"{dtype:>8}: AUC {a['auc']:.6f} ({a['auc_change']:+.6f}), "
                  f"{a['export_mb']:.1f} MB, max |logit - keras| "
                  f"{a['max_abs_logit_diff_vs_keras']:.2e}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
