"""examples/ run as a user runs them, in their small mode (the keras3 extra's venv in CI)."""

import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.skipif(importlib.util.find_spec("keras_rs") is None,
                    reason='keras-rs not installed: pip install "lmn-tf[keras3]" (make test '
                           "installs it in the newest-TensorFlow venv)")
def test_keras_rs_ranking_example_trains_exports_and_serves(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "examples/keras_rs_ranking.py"), "--small",
                          "--workdir", str(tmp_path)], capture_output=True, text=True,
                         timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    auc = float(re.search(r"eval AUC (\d\.\d+)", run.stdout)[1])
    assert 0.0 < auc < 1.0
    diffs = [float(d) for d in re.findall(r"max \|diff\| (\S+)", run.stdout)]
    assert len(diffs) == 2 and max(diffs) <= 1e-5, run.stdout  # REST and gRPC
