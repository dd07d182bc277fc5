"""Training reliability, measured: kill -9 and resume, a killed Horovod worker, damaged files.

1. Crash and resume. ``lmn-tf train`` on MovieLens-1M runs uninterrupted; the same command
   runs again in another directory, is killed (SIGKILL) at a random step of epoch 2, and is
   rerun unchanged. Compares the two runs' eval AUC / LogLoss and their final checkpoints.
2. Horovod. ``horovodrun -np 2 --gloo lmn-tf train --horovod`` with rank 1 killed at a
   random moment of epoch 2, ``--trials`` times: exit code and seconds from the kill to the
   job's exit; then ``lmn-tf evaluate`` on the last complete checkpoint and a resumed run.
3. Damaged checkpoints. Each kind of damage applied to a fresh copy of a run: what
   TensorFlow's own restore does, and what ``load_run`` (evaluate/export) does.

    python benchmarks/reliability_training.py [--limit 100000 --eval-limit 30000 --epochs 2]

Prints tables and writes benchmarks/results/reliability_training.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent
sys.path.insert(0, str(REPO))  # this clone's lmn_tf, whichever clone the venv last installed


def launch(args: list[str], ranks: int = 0, mark: str = "") -> subprocess.Popen:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "TF_CPP_MIN_LOG_LEVEL": "2", "HOROVOD_LOG_LEVEL": "warning",
           "LMN_TF_BENCH_JOB": mark}
    cmd = [sys.executable, "-m", "lmn_tf", *args]
    if ranks:
        cmd = [str(BIN / "horovodrun"), "-np", str(ranks), "-H", f"localhost:{ranks}", "--gloo",
               *cmd]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def finish(proc: subprocess.Popen, what: str, timeout: float = 3600) -> str:
    try:
        output = proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed ({proc.returncode}):\n{output[-4000:]}")
    return output


def last_json(output: str) -> dict:
    line = [ln for ln in output.splitlines() if "{" in ln][-1]
    return json.loads(line[line.index("{"):])


def wait_for(path: pathlib.Path, proc: subprocess.Popen, timeout: float = 3600) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{path} never appeared:\n{proc.communicate()[0][-4000:]}")
        time.sleep(0.02)


def crash_and_resume(args, work: pathlib.Path, rng: random.Random) -> dict:
    from lmn_tf import checkpointing

    flags = ["--model", "lmn", "--dataset", "ml-1m", "--limit", str(args.limit),
             "--eval-limit", str(args.eval_limit), "--epochs", str(args.epochs),
             "--batch-size", str(args.batch_size), "--checkpoint-every", str(args.every),
             "--seed", "0", "--quiet"]
    steps = math.ceil(args.limit / args.batch_size)
    runs = {"uninterrupted": work / "uninterrupted", "killed": work / "killed"}
    print(f"[1] uninterrupted: lmn-tf train {' '.join(flags)}", flush=True)
    start = time.monotonic()
    clean = last_json(finish(launch(["train", *flags, "--run-dir", str(runs["uninterrupted"])]),
                             "uninterrupted run"))
    clean_seconds = time.monotonic() - start
    step_seconds = clean["train_seconds"] / (args.epochs * steps)

    # A random step of epoch 2: wait for the mid-epoch checkpoint before it, then kill after
    # a random fraction of the time the next `every` steps take (timed on this very run).
    before = rng.choice([m for m in range(args.every, 2 * steps, args.every)
                         if steps < m <= 2 * steps - args.every] or [steps])
    fraction = rng.random()
    target = before + round(fraction * args.every)
    print(f"[1] killed run: SIGKILL at step ~{target}, {fraction:.2f} of the way from the "
          f"checkpoint at step {before} to the next", flush=True)
    start = time.monotonic()
    proc = launch(["train", *flags, "--run-dir", str(runs["killed"])])
    state, seen = runs["killed"] / "checkpoints" / "mid-epoch", []  # (step, time) of saves
    while not seen or seen[-1][0] < before:
        if proc.poll() is not None:
            raise SystemExit(f"the run ended before step {before}:\n{proc.communicate()[0]}")
        latest = checkpointing.latest(state) if (state / "checkpoint").exists() else None
        step = int(latest.rsplit("-", 1)[1]) if latest else 0
        if step and (not seen or step != seen[-1][0]):
            seen.append((step, time.monotonic()))
        time.sleep(0.01)
    if len(seen) >= 2:
        step_seconds = (seen[-1][1] - seen[0][1]) / (seen[-1][0] - seen[0][0])
    time.sleep(fraction * args.every * step_seconds)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    killed_seconds = time.monotonic() - start
    mid = checkpointing.latest(state)
    start = time.monotonic()
    resumed = last_json(finish(launch(["train", *flags, "--run-dir", str(runs["killed"])]),
                               "resumed run"))
    resume_seconds = time.monotonic() - start

    import numpy as np
    import tensorflow as tf

    readers = [tf.train.load_checkpoint(str(r / "checkpoints" / f"ckpt-{args.epochs}"))
               for r in runs.values()]
    keys = [k for k, t in readers[0].get_variable_to_dtype_map().items()
            if t != tf.string and "_ranking_metrics" not in k]
    max_diff = max(float(np.abs(readers[0].get_tensor(k).astype(float)
                                - readers[1].get_tensor(k).astype(float)).max()) for k in keys)
    return {
        "command": "lmn-tf train " + " ".join(flags) + " --run-dir RUN",
        "steps_per_epoch": steps, "kill_target_step": target,
        "kill_fraction_of_checkpoint_interval": fraction,
        "last_checkpoint_before_kill": mid, "resumed_from_step": resumed["initial_step"],
        "uninterrupted": {k: clean[k] for k in ("auc", "logloss", "n")},
        "resumed": {k: resumed[k] for k in ("auc", "logloss", "n")},
        "auc_difference": resumed["auc"] - clean["auc"],
        "logloss_difference": resumed["logloss"] - clean["logloss"],
        "checkpoint_tensors_compared": len(keys),
        "checkpoint_max_abs_difference": max_diff,
        "seconds": {"uninterrupted": clean_seconds, "killed_run": killed_seconds,
                    "resume": resume_seconds},
    }


def rank_pid(mark: str, rank: int) -> int | None:
    for entry in pathlib.Path("/proc").iterdir():
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if (f"LMN_TF_BENCH_JOB={mark}".encode() in env
                and f"HOROVOD_RANK={rank}".encode() in env):
            return int(entry.name)
    return None


def horovod_kill(args, work: pathlib.Path, rng: random.Random) -> dict:
    flags = ["--model", "lmn", "--dataset", "ml-100k", "--limit", "16384", "--eval-limit",
             "2000", "--batch-size", "256", "--num-keys", "32", "--epochs", "3", "--quiet"]
    trials = []
    for trial in range(args.trials):
        run, mark = work / f"hvd-{trial}", f"{work}/hvd-{trial}"
        print(f"[2] horovod trial {trial + 1}/{args.trials}", flush=True)
        proc = launch(["train", "--horovod", "--run-dir", str(run), *flags], ranks=2, mark=mark)
        wait_for(run / "checkpoints" / "checkpoint", proc)  # epoch 1 consolidated
        delay = rng.uniform(0.0, 1.5)
        time.sleep(delay)
        victim = rank_pid(mark, 1)
        if victim is None or proc.poll() is not None:
            raise SystemExit(f"rank 1 not found:\n{proc.communicate()[0][-4000:]}")
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        output = proc.communicate(timeout=300)[0]
        exit_seconds = time.monotonic() - killed
        world = json.loads((run / "shards" / "world.json").read_text())
        trials.append({"kill_delay_after_epoch_1": delay, "returncode": proc.returncode,
                       "exit_seconds_after_kill": exit_seconds,
                       "orphans": [r for r in (0, 1) if rank_pid(mark, r) is not None],
                       "committed_epoch": world["meta"]["epoch"],
                       "tail": output.strip().splitlines()[-1][:200] if output.strip() else ""})
    run = work / f"hvd-{args.trials - 1}"
    evaluated = last_json(finish(launch(["evaluate", "--run-dir", str(run), "--quiet"]),
                                 "evaluate"))
    resumed = last_json(finish(launch(["train", "--horovod", "--run-dir", str(run), *flags],
                                      ranks=2), "horovod resume"))
    return {"command": "horovodrun -np 2 -H localhost:2 --gloo lmn-tf train --horovod "
                       + " ".join(flags) + " --run-dir RUN",
            "trials": trials, "evaluate_last_checkpoint": {k: evaluated[k] for k in ("auc", "n")},
            "resumed": {"initial_epoch": resumed["initial_epoch"], "auc": resumed["auc"]}}


def damaged_checkpoints(work: pathlib.Path) -> list[dict]:
    import tensorflow as tf

    from lmn_tf import checkpointing, train
    from lmn_tf.data import schema
    from lmn_tf.data.random_batches import random_arrays

    vocab = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    data = (random_arrays(vocab, 96, seed=1), random_arrays(vocab, 32, seed=2), vocab)
    config = {"model": "lmn", "dataset": "ml-100k", "batch_size": 16, "checkpoint_every": 0,
              "hparams": {"embedding_dim": 8, "hidden_units": [8], "attention_units": [4],
                          "num_keys": 4, "top_k": 2, "value_dim": 8}}
    base = work / "damage-base"
    train.train(config, base, data=data, verbose=0, evaluate=False)
    data_file = "ckpt-1.data-00000-of-00001"

    def flip(p, at=None):
        b = bytearray(p.read_bytes())
        b[len(b) // 2 if at is None else at] ^= 1
        p.write_bytes(bytes(b))

    damage = {
        "data file truncated to half": lambda d: (d / data_file).write_bytes(
            (d / data_file).read_bytes()[: (d / data_file).stat().st_size // 2]),
        "one bit flipped in data": lambda d: flip(d / data_file),
        "4 bytes appended to data": lambda d: (d / data_file).write_bytes(
            (d / data_file).read_bytes() + b"\0" * 4),
        "data file deleted": lambda d: (d / data_file).unlink(),
        "index replaced by garbage": lambda d: (d / "ckpt-1.index").write_bytes(b"garbage"),
        "one bit flipped in index": lambda d: flip(d / "ckpt-1.index", at=40),
        "state file is garbage": lambda d: (d / "checkpoint").write_text("garbage {{"),
        "state file names a missing checkpoint": lambda d: (d / "checkpoint").write_text(
            'model_checkpoint_path: "ckpt-7"\n'),
    }
    rows = []
    for name, apply in damage.items():
        run = work / "damage" / name.replace(" ", "-")
        shutil.copytree(base, run)
        apply(run / "checkpoints")
        # TensorFlow alone: what a plain tf.train.latest_checkpoint + restore would do.
        model = train.build_from_config(json.loads((run / "config.json").read_text()))
        latest = tf.train.latest_checkpoint(str(run / "checkpoints"))
        if latest is None:
            tf_result = "no checkpoint found: a resumed run would start from scratch"
        else:
            try:
                train.run_checkpoint(model).restore(latest).expect_partial()
                tf_result = "no error (weights-only restore; unread tensors unchecked)"
            except Exception as e:  # report whatever TF raises
                tf_result = f"{type(e).__name__}: {str(e).splitlines()[-1][:90]}"
        try:
            train.load_run(run)
            ours = "loaded"
        except checkpointing.CheckpointError as e:
            ours = str(e).replace(str(run / "checkpoints") + "/", "")[:110]
        rows.append({"damage": name, "tensorflow_restore": tf_result, "lmn_tf_load_run": ours})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=100_000)
    parser.add_argument("--eval-limit", type=int, default=30_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--every", type=int, default=20, help="--checkpoint-every")
    parser.add_argument("--trials", type=int, default=2, help="Horovod kill trials")
    parser.add_argument("--seed", type=int, default=0, help="kill-time randomness")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/reliability_training.json"))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="lmn-tf-reliability-") as tmp:
        work = pathlib.Path(tmp)
        resume = crash_and_resume(args, work, rng)
        hvd = horovod_kill(args, work, rng)
        damage = damaged_checkpoints(work)
    results = {"args": vars(args), "crash_and_resume": resume, "horovod_kill": hvd,
               "damaged_checkpoints": damage}
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(results, indent=2) + "\n")

    r = resume
    print(f"\n## kill -9 at step ~{r['kill_target_step']} (epoch 2), same command rerun\n"
          f"{r['command']}\n")
    print("| run | AUC | LogLoss | n |\n|---|---|---|---|")
    for name in ("uninterrupted", "resumed"):
        m = r[name]
        print(f"| {name} | {m['auc']:.6f} | {m['logloss']:.6f} | {m['n']} |")
    print(f"| difference | {r['auc_difference']:+.2e} | {r['logloss_difference']:+.2e} | |")
    print(f"resumed from step {r['resumed_from_step']} of {2 * r['steps_per_epoch']}; "
          f"{r['checkpoint_tensors_compared']} checkpoint tensors (weights, Adam and Adagrad "
          f"slots, iterations), max |difference| {r['checkpoint_max_abs_difference']:.1e}; "
          f"seconds: {', '.join(f'{k} {v:.0f}' for k, v in r['seconds'].items())}")
    print(f"\n## Horovod: rank 1 killed in epoch 2\n{hvd['command']}\n")
    print("| trial | exit code | seconds to exit | orphans | committed epoch |\n"
          "|---|---|---|---|---|")
    for k, t in enumerate(hvd["trials"], 1):
        print(f"| {k} | {t['returncode']} | {t['exit_seconds_after_kill']:.1f} | "
              f"{len(t['orphans'])} | {t['committed_epoch']} |")
    print(f"evaluate on the last checkpoint: AUC {hvd['evaluate_last_checkpoint']['auc']:.4f}; "
          f"rerun resumed at epoch {hvd['resumed']['initial_epoch']}, AUC "
          f"{hvd['resumed']['auc']:.4f}")
    print("\n## Damaged checkpoint files\n\n| damage | TensorFlow restore | lmn-tf load_run |\n"
          "|---|---|---|")
    for row in damage:
        print(f"| {row['damage']} | {row['tensorflow_restore']} | {row['lmn_tf_load_run']} |")


if __name__ == "__main__":
    main()
