"""`lmn-tf experiment spatial` on a tiny task: warm and cold rows, the task it records, and a
rerun that keeps the cells it finished."""

import json

from lmn_tf import cli
from lmn_tf.experiments import spatial


def test_spatial_writes_warm_and_cold_cells_and_a_rerun_keeps_them(tmp_path, monkeypatch):
    argv = ["experiment", "spatial", "--seeds", "1", "--models", "base", "oracle", "lmn",
            "--num-keys", "8", "--hparams", '{"top_k": 4, "num_heads": 1}', "--groups", "4",
            "--items", "10", "--exposures", "2", "--users-per-group", "3",
            "--cold-users-per-group", "2", "--taste-size", "3", "--eval-samples", "2000",
            "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    results = json.loads((tmp_path / "spatial.json").read_text())
    rows = [r["row"] for r in results["runs"]]
    assert results["complete"] and rows == ["base", "oracle (group, item)", "lmn √n=8"]
    base, oracle, lmn = results["runs"]
    assert base["gap_closed"] == {"all": 0.0, "warm": 0.0, "cold": 0.0}
    assert oracle["model"] == "cross" and lmn["hparams"] == {"num_keys": 8, "top_k": 4,
                                                             "num_heads": 1}
    for subset in ("warm", "cold"):
        assert 0.5 < lmn["scores"][subset]["bayes_auc"] < 1
    # the default two stores: both together, and each on its own
    overlap = lmn["slot_overlap"]
    assert set(overlap) == {"within", "across", "stores"} and "slot_overlap" not in base
    assert set(overlap["stores"]) == {"profile", "group"}
    for pair in (overlap, *overlap["stores"].values()):
        assert all(0 <= pair[k] <= 1 for k in ("within", "across"))
    assert results["task"]["num_groups"] == 4 and "--eval-samples 2000" in results["command"]
    table = (tmp_path / "spatial.md").read_text()
    assert "| lmn √n=8 | 1 |" in table and "(profile: " in table
    assert (tmp_path / "spatial.png").stat().st_size > 0
    monkeypatch.setattr(spatial, "train", lambda *a, **k: 1 / 0)  # nothing left to train
    assert cli.main(argv) == 0
    assert json.loads((tmp_path / "spatial.json").read_text())["runs"] == results["runs"]
