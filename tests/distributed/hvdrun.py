"""Launch real multi-process Horovod jobs (``horovodrun --gloo``) from pytest tests.

Workers are scripts beside this file (``_worker_*.py``, not collected); each rank writes
``rank<r>.json`` into a directory the test passes, and the test asserts on those files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


class HorovodJob:
    def __init__(self, returncode: int, seconds: float, output: str, results: list[dict]):
        self.returncode, self.seconds, self.output, self.results = (
            returncode, seconds, output, results)


def horovodrun(script: str, np: int, out_dir: Path, *args: str, timeout: float = 90,
               check: bool = True) -> HorovodJob:
    """Run ``horovodrun -np N -H localhost:N --gloo python script out_dir *args``."""
    bin_dir = Path(sys.executable).parent  # the venv: horovodrun and python live together
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["TF_USE_LEGACY_KERAS"] = "1"  # tf-keras, whatever the worker imports first
    env["HOROVOD_LOG_LEVEL"] = "warning"
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [str(bin_dir / "horovodrun"), "-np", str(np), "-H", f"localhost:{np}", "--gloo",
           sys.executable, str(HERE / script), str(out_dir), *args]
    start = time.monotonic()
    # Own session, so a timeout can kill horovodrun *and* the ranks it spawned.
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"horovodrun did not finish within {timeout} s:\n{output[-4000:]}")
    seconds = time.monotonic() - start
    results = []
    for rank in range(np):
        path = out_dir / f"rank{rank}.json"
        results.append(json.loads(path.read_text()) if path.exists() else None)
    if check:
        assert proc.returncode == 0, f"horovodrun exited {proc.returncode}:\n{output[-4000:]}"
        assert all(r is not None for r in results), f"missing rank results:\n{output[-4000:]}"
    return HorovodJob(proc.returncode, seconds, output, results)
