"""The README's main job, end to end on a small slice: train -> export -> serve -> query."""

import json
import subprocess
import sys


def test_demo_serves_what_the_model_predicts(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "lmn_tf", "demo", "--workdir", str(tmp_path), "--dataset",
         "ml-100k", "--limit", "3000", "--eval-limit", "1000", "--rows", "4"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert 0.0 < summary["auc"] < 1.0
    assert summary["max_abs_diff_served_vs_in_process"] <= 1e-5
    assert summary["export"].endswith("/lmn/1")
    assert (tmp_path / "models" / "lmn" / "1" / "saved_model.pb").exists()
    log = (tmp_path / "server.log").read_text()
    assert "REST listening on 127.0.0.1:" in log and "server stopped" in log
