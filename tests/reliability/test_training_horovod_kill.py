"""`horovodrun -np 2 ... lmn-tf train --horovod` with rank 1 killed (SIGKILL) in epoch 2: the
job exits non-zero within 60 s, the last complete checkpoint is intact (`lmn-tf evaluate`
loads it) and rerunning the command resumes from the committed shards."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.horovod  # deselect with -m 'not horovod' (tests/conftest.py)

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ARGS = ["--model", "lmn", "--dataset", "ml-100k", "--limit", "8192", "--eval-limit", "512",
        "--batch-size", "256", "--num-keys", "16", "--top-k", "8", "--epochs", "3",
        "--quiet"]  # 32 steps/epoch


def launch(*args: str, ranks: int = 0, mark: str = "") -> subprocess.Popen:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "TF_CPP_MIN_LOG_LEVEL": "2", "HOROVOD_LOG_LEVEL": "warning", "LMN_TF_TEST_JOB": mark}
    cmd = [sys.executable, "-m", "lmn_tf", *args]
    if ranks:
        cmd = [str(BIN / "horovodrun"), "-np", str(ranks), "-H", f"localhost:{ranks}", "--gloo",
               *cmd]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    try:
        return proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise


def rank_pid(mark: str, rank: int) -> int | None:
    """The pid of this job's worker ``rank`` (horovodrun passes the environment on)."""
    for entry in Path("/proc").iterdir():
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if f"LMN_TF_TEST_JOB={mark}".encode() in env and (
                f"HOROVOD_RANK={rank}".encode() in env):
            return int(entry.name)
    return None


def last_json(output: str) -> dict:
    line = [ln for ln in output.splitlines() if "{" in ln][-1]
    return json.loads(line[line.index("{"):])


def test_killed_worker_ends_the_job_and_the_last_checkpoint_survives(tmp_path):
    run, mark = tmp_path / "run", str(tmp_path)
    proc = launch("train", "--horovod", "--run-dir", str(run), *ARGS, ranks=2, mark=mark)
    state = run / "checkpoints" / "checkpoint"  # rank 0 writes it last in each epoch's end
    deadline = time.monotonic() + 240
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    victim = rank_pid(mark, 1)
    assert victim is not None and proc.poll() is None, finish(proc)[-3000:]
    os.kill(victim, signal.SIGKILL)  # in epoch 2: mid-step, almost surely mid-collective
    killed_at = time.monotonic()
    output = finish(proc, timeout=120)
    assert proc.returncode != 0, output[-3000:]
    assert time.monotonic() - killed_at < 60, output[-3000:]
    assert rank_pid(mark, 0) is None  # no orphaned rank left behind

    world = json.loads((run / "shards" / "world.json").read_text())
    epoch = world["meta"]["epoch"]
    assert 1 <= epoch < 3 and not (run / "metrics.json").exists()
    evaluated = launch("evaluate", "--run-dir", str(run), "--quiet")  # the consolidated model
    out = finish(evaluated)
    assert evaluated.returncode == 0, out[-3000:]
    assert 0.0 < last_json(out)["auc"] < 1.0

    resumed = launch("train", "--horovod", "--run-dir", str(run), *ARGS, ranks=2, mark=mark)
    out = finish(resumed)
    assert resumed.returncode == 0, out[-3000:]
    assert last_json(out)["initial_epoch"] == epoch  # the shards' committed epoch
    assert json.loads((run / "shards" / "world.json").read_text())["meta"] == {"epoch": 3}
    assert (run / "checkpoints" / "ckpt-3.index").exists()
