"""`lmn-tf demo`: the README's main job, end to end on real MovieLens-1M data.

1. train LMN (DIN + LMNLayer) briefly on the latest ML-1M training events, evaluate AUC;
2. export the run as a TF-Serving SavedModel (``BASE/lmn/VERSION``, lookup-only memory);
3. start ``lmn-tf serve`` as its own process on 127.0.0.1 (free ports);
4. query a few evaluation events over REST and gRPC with the TF-Serving clients, as raw
   features (`lmn_tf.data.requests.request_features` on the raw event log: string ids, ids
   unseen in training included), and print the served probabilities next to the in-process
   model's on the same features;
5. stop the server with SIGTERM.

Everything goes under ``--workdir`` (default ``./demo-output``); a rerun trains a new run.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys
import time

import numpy as np

DEFAULTS = {"limit": 200_000, "eval_limit": 50_000, "epochs": 1, "rows": 5}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", default="demo-output", help="runs/ and models/ go here")
    parser.add_argument("--dataset", default="ml-1m", choices=("ml-1m", "ml-100k"))
    parser.add_argument("--limit", type=int, default=DEFAULTS["limit"],
                        help="train on the latest N training events (default: %(default)s)")
    parser.add_argument("--eval-limit", type=int, default=DEFAULTS["eval_limit"],
                        help="evaluate on the first N eval events (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    parser.add_argument("--rows", type=int, default=DEFAULTS["rows"],
                        help="evaluation rows to send to the server")


def wait_until_available(url: str, model_name: str, timeout: float = 120.0) -> None:
    from lmn_tf.serving import ServingError, model_status_rest

    deadline = time.monotonic() + timeout
    while True:
        try:
            status = model_status_rest(url, model_name)
            if any(v["state"] == "AVAILABLE" for v in status["model_version_status"]):
                return
        except (ServingError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"model {model_name!r} never became AVAILABLE at {url}")
        time.sleep(0.5)


def run(args: argparse.Namespace) -> int:
    from lmn_tf import train as training
    from lmn_tf.data import schema
    from lmn_tf.data.raw import read_log
    from lmn_tf.data.requests import request_features, stack
    from lmn_tf.export.command import run_vocabulary
    from lmn_tf.export.saved_model import export_saved_model
    from lmn_tf.serving import ServerProcess, predict_grpc, predict_rest

    work = pathlib.Path(args.workdir)
    run_dir, base_path = work / "runs" / "lmn", work / "models"
    shutil.rmtree(run_dir, ignore_errors=True)  # a demo run starts fresh, never resumes

    print(f"[1/4] training LMN on {args.dataset}: latest {args.limit:,} train events, "
          f"{args.epochs} epoch(s)", flush=True)
    data = training.load_data(args.dataset, args.limit, args.eval_limit)
    config = {"model": "lmn", "dataset": args.dataset, "epochs": args.epochs,
              "limit": args.limit, "eval_limit": args.eval_limit}
    metrics = training.train(config, run_dir, data=data)
    print(f"      eval AUC {metrics['auc']:.4f}  LogLoss {metrics['logloss']:.4f} "
          f"on {len(data[1][schema.LABEL]):,} events", flush=True)

    print("[2/4] exporting a lookup-only SavedModel (raw ids in, vocabularies as assets)",
          flush=True)
    model, _ = training.load_run(run_dir)
    warmup = {k: data[1][k][:64] for k in schema.FEATURES}  # real eval rows warm it up
    vocabulary = run_vocabulary(config, data[0])  # the ids of the events it trained on
    version_dir = export_saved_model(model, str(base_path), "lmn", warmup=warmup,
                                     vocabulary=vocabulary)
    print(f"      {version_dir}", flush=True)

    print("[3/4] starting the TF-Serving-protocol server on 127.0.0.1", flush=True)
    # TF-Serving's --model_base_path is the model's own folder, holding the versions.
    server = ServerProcess(["--model-base-path", base_path / "lmn", "--model-name", "lmn"],
                           work / "server.log")
    rest_url, grpc_target = server.rest, server.grpc
    try:
        wait_until_available(rest_url, "lmn")
        print(f"      REST {rest_url}  gRPC {grpc_target}", flush=True)
        print(f"[4/4] querying {args.rows} evaluation events as raw features", flush=True)
        log = read_log(args.dataset)
        first_eval = round(len(log.events["user_id"]) * 0.8)  # load()'s default split
        # Events spread over the evaluated period: warm and cold users alike.
        picked = np.linspace(0, len(data[1][schema.LABEL]) - 1, args.rows).astype(int)
        rows = stack([request_features(log.before(p), log.events["user_id"][p],
                                       log.events["item_id"][p], users=log.users,
                                       items=log.items, history=config.get("history", "rated"))
                      for p in first_eval + picked])
        unseen = int(np.sum(vocabulary.to_indices(rows)["user_id"] == 0))
        print(f"      {unseen} of {args.rows} users unseen in training (the unknown row)",
              flush=True)
        indices = vocabulary.to_indices(rows)  # what the export's lookup tables compute
        in_process = 1 / (1 + np.exp(-model.predict(indices, verbose=0).reshape(-1)))
        rest = predict_rest(rest_url, "lmn", rows)["probability"].reshape(-1)
        grpc_ = predict_grpc(grpc_target, "lmn", rows)["probability"].reshape(-1)
    finally:
        server.stop(timeout=60)  # SIGTERM: the server drains in-flight requests and exits 0

    print(f"\n{'user':>9} {'movie':<34} {'label':>5} {'in-process':>10} {'REST':>10} "
          f"{'gRPC':>10}")
    for i in range(args.rows):
        print(f"{rows['user_id'][i]:>9} {rows['item_id'][i][:34]:<34} "
              f"{int(data[1][schema.LABEL][picked[i]]):>5} {in_process[i]:>10.6f} "
              f"{rest[i]:>10.6f} {grpc_[i]:>10.6f}")
    worst = float(max(np.abs(rest - in_process).max(), np.abs(grpc_ - in_process).max()))
    summary = {"auc": metrics["auc"], "logloss": metrics["logloss"], "export": version_dir,
               "max_abs_diff_served_vs_in_process": worst, "unseen_users": unseen}
    print(json.dumps(summary))
    if worst > 1e-5:
        print(f"lmn-tf demo: served predictions differ from the model's by {worst:.2e}",
              file=sys.stderr)
        return 1
    return 0
