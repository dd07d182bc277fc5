"""A model with Horovod-sharded values exports one consolidated table (2 real ranks)."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.horovod  # deselect with -m 'not horovod' (tests/conftest.py)

HERE = Path(__file__).resolve().parent


def test_sharded_values_are_consolidated(tmp_path):
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": f"{HERE.parents[1]}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "TF_CPP_MIN_LOG_LEVEL": "2", "HOROVOD_LOG_LEVEL": "warning"}
    cmd = [str(bin_dir / "horovodrun"), "-np", "2", "-H", "localhost:2", "--gloo",
           sys.executable, str(HERE / "_worker_export.py"), str(tmp_path)]
    proc = subprocess.Popen(cmd, env=env, cwd=HERE.parents[1], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # horovodrun and both ranks
        output, _ = proc.communicate()
        raise AssertionError(f"horovodrun timed out:\n{output[-4000:]}") from None
    assert proc.returncode == 0, output[-4000:]
    chief, other = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert other["path"] is None  # only the chief writes
    assert chief["path"] == str(tmp_path / "models" / "lmn" / "1")
    assert chief["max_diff"] <= 1e-5, chief
    assert any(n.endswith("memory/values") for n in chief["variables"]), chief["variables"]
    assert not any("shard" in name for name in chief["variables"]), chief["variables"]
    assert sorted(os.listdir(tmp_path / "models" / "lmn")) == ["1"]
