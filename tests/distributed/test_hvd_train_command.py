"""`horovodrun -np 2 ... lmn-tf train --horovod`: a real 2-rank run on ML-100K writes shard
checkpoints and a consolidated model that evaluate/export read unchanged, and resumes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.horovod  # deselect with -m 'not horovod' (tests/conftest.py)

REPO = Path(__file__).resolve().parents[2]
ARGS = ["--model", "lmn", "--dataset", "ml-100k", "--limit", "2048", "--eval-limit", "512",
        "--batch-size", "256", "--num-keys", "16", "--top-k", "8", "--quiet"]


def lmn_tf(*args: str, ranks: int = 0, timeout: float = 300) -> subprocess.CompletedProcess:
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "TF_CPP_MIN_LOG_LEVEL": "2", "HOROVOD_LOG_LEVEL": "warning"}
    cmd = [sys.executable, "-m", "lmn_tf", *args]
    if ranks:
        cmd = [str(bin_dir / "horovodrun"), "-np", str(ranks), "-H", f"localhost:{ranks}",
               "--gloo", *cmd]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def last_json(out: subprocess.CompletedProcess) -> dict:
    """The last JSON line printed (horovodrun prefixes rank output with `[0]<stdout>:`)."""
    line = [ln for ln in out.stdout.splitlines() if "{" in ln][-1]
    return json.loads(line[line.index("{"):])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("hvd") / "run"
    out = lmn_tf("train", "--horovod", "--epochs", "1", "--run-dir", str(run_dir), *ARGS,
                 ranks=2)
    return run_dir, out


def test_two_rank_run_writes_shards_and_a_consolidated_model(run):
    run_dir, out = run
    metrics = last_json(out)  # rank 0 alone prints it
    assert "[1]<stdout>:{" not in out.stdout
    assert metrics["world_size"] == 2 and metrics["initial_epoch"] == 0
    assert 0.0 < metrics["auc"] < 1.0
    assert json.loads((run_dir / "config.json").read_text())["world_size"] == 2
    world = json.loads((run_dir / "shards" / "world.json").read_text())  # the commit record
    assert world["world_size"] == 2 and world["meta"] == {"epoch": 1}
    version = run_dir / "shards" / f"v-{world['version']:06d}"
    assert {p.name for p in version.iterdir()} == {"rank-0-of-2", "rank-1-of-2"}
    evaluated = last_json(lmn_tf("evaluate", "--run-dir", str(run_dir)))
    assert abs(evaluated["auc"] - metrics["auc"]) < 1e-6  # the consolidated model, 1 process


def test_consolidated_run_exports(run, tmp_path):
    run_dir, _ = run
    out = lmn_tf("export", "--run-dir", str(run_dir), "--base-path", str(tmp_path))
    assert out.stdout.strip().endswith("/lmn/1")
    assert (tmp_path / "lmn" / "1" / "saved_model.pb").exists()


def test_two_rank_run_resumes_from_its_shards(run):
    run_dir, _ = run
    out = lmn_tf("train", "--horovod", "--epochs", "2", "--run-dir", str(run_dir), *ARGS,
                 ranks=2)
    assert last_json(out)["initial_epoch"] == 1  # epoch 1 came from the shards
    assert last_json(out)["world_size"] == 2
    assert json.loads((run_dir / "shards" / "world.json").read_text())["meta"] == {"epoch": 2}
    assert (run_dir / "checkpoints" / "ckpt-2.index").exists()
