"""`lmn-tf experiment capacity` on a tiny size: the table, the command it records, and a rerun
that keeps the cells it finished."""

import functools
import json

from lmn_tf import cli
from lmn_tf.data import synthetic
from lmn_tf.experiments import capacity


def test_capacity_writes_each_cell_and_a_rerun_keeps_them(tmp_path, monkeypatch):
    monkeypatch.setitem(capacity.SIZES, 16, (4, 4, 3))  # 16 pairs, 3 exposures each
    monkeypatch.setattr(synthetic, "memorisation",
                        functools.partial(synthetic.memorisation, eval_samples=2000))
    argv = ["experiment", "capacity", "--sizes", "16", "--models", "base", "lmn",
            "--num-keys", "32", "--hparams", '{"top_k": 4}', "--learning-rate-decay",
            "none", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    results = json.loads((tmp_path / "capacity.json").read_text())
    assert results["complete"] and [r["row"] for r in results["runs"]] == ["base", "lmn √n=32"]
    base, lmn = results["runs"]
    assert base["gap_closed"] == 0.0 and lmn["hparams"]["top_k"] == 4
    assert "--learning-rate-decay none" in results["command"]
    assert """--hparams '{"top_k": 4}'""" in results["command"]
    assert "| 16 | 3 | lmn √n=32 |" in (tmp_path / "capacity.md").read_text()
    # The same command again trains nothing: every cell is already in the JSON.
    monkeypatch.setattr(capacity, "train", lambda *a, **k: 1 / 0)
    assert cli.main(argv) == 0
    assert json.loads((tmp_path / "capacity.json").read_text())["runs"] == results["runs"]
