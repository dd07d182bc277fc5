"""`lmn-tf train / evaluate / experiment` on tiny slices, and run-directory round trips."""

import argparse
import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from lmn_tf import cli, train
from lmn_tf import data as lmn_data
from lmn_tf.ctr_metrics import predict
from lmn_tf.data import schema
from lmn_tf.data.random_batches import random_arrays
from lmn_tf.experiments import command, runner, tables
from lmn_tf.models.lmn import PRESETS, legacy_hparams
from lmn_tf.training.run_dir import run_config

TINY_LMN = ('{"embedding_dim": 8, "hidden_units": [16], "attention_units": [8], '
            '"num_keys": 6, "top_k": 2, "value_dim": 8}')


def test_cli_train_writes_run_dir_and_evaluate_reproduces_it(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "--model", "lmn", "--dataset", "ml-100k", "--limit", "600",
                     "--eval-limit", "300", "--batch-size", "128", "--run-dir", str(run),
                     "--hparams", TINY_LMN, "--quiet"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "lmn" and config["world_size"] == 1
    assert config["hparams"]["num_keys"] == 6 and config["vocab"]["num_items"] > 1000
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("ckpt-1")
    assert list((run / "logs").rglob("events.out.tfevents.*"))
    trained = json.loads((run / "metrics.json").read_text())
    capsys.readouterr()
    assert cli.main(["evaluate", "--run-dir", str(run), "--quiet"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["n"] == 300
    assert printed["auc"] == pytest.approx(trained["auc"], abs=1e-6)
    assert printed["logloss"] == pytest.approx(trained["logloss"], abs=1e-6)


def test_load_run_round_trip_gives_same_predictions_and_resumes(tmp_path):
    vocab = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    data = (random_arrays(vocab, 64, seed=1), random_arrays(vocab, 32, seed=2), vocab)
    config = {"model": "din", "dataset": "ml-100k", "batch_size": 16,
              "hparams": {"embedding_dim": 8, "hidden_units": [8], "attention_units": [4]}}
    train.train(config, tmp_path, data=data, verbose=0, evaluate=False)
    model, loaded_config = train.load_run(tmp_path)
    assert loaded_config["model"] == "din"
    ds = lmn_data.make_dataset(data[1], 8)
    first = predict(model, ds, verbose=0)[1]
    again = predict(train.load_run(tmp_path)[0], ds, verbose=0)[1]
    np.testing.assert_array_equal(first, again)
    # Training again resumes from the saved epoch and changes the weights.
    train.train({**config, "epochs": 2}, tmp_path, data=data, verbose=0, evaluate=False)
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-2")
    assert not np.allclose(first, predict(train.load_run(tmp_path)[0], ds, verbose=0)[1])


@pytest.mark.parametrize("addressing", ["learned", "fixed"])
def test_lmn_resumes_with_the_default_optimizer_recipe(tmp_path, addressing):
    # With fixed addressing the slow addressing Adam owns no variables and never steps: the
    # resume check must not hold it to the global step.
    vocab = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    data = (random_arrays(vocab, 64, seed=1), random_arrays(vocab, 32, seed=2), vocab)
    config = {"model": "lmn", "dataset": "ml-100k", "batch_size": 16,
              "hparams": {**json.loads(TINY_LMN), "addressing": addressing}}
    train.train(config, tmp_path, data=data, verbose=0, evaluate=False)
    train.train({**config, "epochs": 2}, tmp_path, data=data, verbose=0, evaluate=False)
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-2")


def test_load_run_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        train.load_run(tmp_path / "missing")
    (tmp_path / "config.json").write_text('{"model": "base", "vocab": {}}')
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        train.load_run(tmp_path)


def test_experiment_writes_tables(tmp_path, capsys):
    assert cli.main(["experiment", "table1", "--dataset", "ml-100k", "--models", "base",
                     "pooling", "--seeds", "2", "--limit", "400", "--eval-limit", "300",
                     "--batch-size", "200", "--out", str(tmp_path / "results"),
                     "--runs-dir", str(tmp_path / "runs"), "--quiet"]) == 0
    results = json.loads((tmp_path / "results" / "table1_ml100k.json").read_text())
    assert results["complete"] and len(results["runs"]) == 4
    base, pooling = results["summary"]
    assert base["row"] == "base" and base["seeds"] == 2 and "relaimpr" not in base
    expected = np.mean([r["metrics"]["auc"] for r in results["runs"] if r["model"] == "pooling"])
    assert pooling["auc"] == pytest.approx(expected)
    for r in results["runs"]:  # warm + cold events make up the whole, in the AUC's share
        m = r["metrics"]
        assert 0 < m["warm_share"] < 1 and {"auc_warm", "auc_cold"} <= set(m)
    cold = np.mean([r["metrics"]["auc_cold"] for r in results["runs"] if r["model"] == "base"])
    assert base["auc_cold"] == pytest.approx(cold)
    md = (tmp_path / "results" / "table1_ml100k.md").read_text()
    assert "| pooling |" in md and "Wall time" in md and "| cold users |" in md
    assert results["code"] == runner.code_version()  # which code made the table
    assert (f"Code: {results['code']}." in md) == (results["code"] is not None)


def test_experiment_with_patience_records_the_epochs_it_chose(tmp_path):
    assert cli.main(["experiment", "table1", "--dataset", "ml-100k", "--models", "base",
                     "--seeds", "1", "--epochs", "3", "--patience", "1", "--limit", "2000",
                     "--eval-limit", "300", "--batch-size", "200", "--out",
                     str(tmp_path / "results"), "--runs-dir", str(tmp_path / "runs"),
                     "--quiet"]) == 0
    results = json.loads((tmp_path / "results" / "table1_ml100k.json").read_text())
    (run,) = results["runs"]
    assert 1 <= run["metrics"]["epochs_trained"] <= 3 and "best_epoch" in run["metrics"]
    md = (tmp_path / "results" / "table1_ml100k.md").read_text()
    assert "up to 3 epochs, early stopping on validation AUC (patience 1)" in md


def _results(table: str, rows: dict[str, tuple[dict, list[float]]]) -> dict:
    runs = [{"row": row, "model": "lmn" if hp else row, "hparams": hp, "seed": seed,
             "metrics": {"auc": auc, "logloss": 0.5, "train_seconds": 1.0}}
            for row, (hp, aucs) in rows.items() for seed, auc in enumerate(aucs)]
    return {"table": table, "runs": runs, "complete": True, "command": "c", "num_train": 1,
            "num_eval": 1, "wall_seconds": 60, "settings": {
                "dataset": "ml-1m", "seeds": 3, "epochs": 1, "batch_size": 8}}


def test_table1_p_value_is_the_paired_t_test_against_din():
    results = _results("table1", {"din": ({}, [0.80, 0.81, 0.79]),
                                  "lmn": ({"num_keys": 8}, [0.81, 0.83, 0.79])})
    din, lmn = tables.summarize(results)
    # differences (0.01, 0.02, 0.00): t = sqrt(3) on 2 degrees of freedom
    assert lmn["p_vs_din"] == pytest.approx(1 - np.sin(np.arctan(np.sqrt(1.5))))
    assert "p_vs_din" not in din
    assert f"| {lmn['p_vs_din']:.3g} |" in tables.markdown(results)


def test_table2_scaling_trend(tmp_path):
    results = _results("table2", {f"√n = {k}": ({"num_keys": k}, aucs) for k, aucs in [
        (50, [0.80, 0.802]), (100, [0.803, 0.801]), (1000, [0.806, 0.808])]})
    trend = tables.scaling(tables.summarize(results))
    assert trend["spearman"] == pytest.approx(1.0)
    assert trend["auc_gain"] == pytest.approx(0.006)
    assert trend["std"] == pytest.approx(np.std([0.80, 0.802], ddof=1))
    results["runs"][-1]["metrics"]["auc"] = 0.79  # √n = 1000 now the worst
    assert tables.scaling(tables.summarize(results))["spearman"] == pytest.approx(-0.5)
    tables.plot_scaling(results, tmp_path / "table2.png")
    assert (tmp_path / "table2.png").stat().st_size > 0
    assert "Spearman rho(√n, mean AUC) = -0.50" in tables.markdown(results)


@pytest.mark.parametrize("argv, expected", [
    (["table1"], {"seeds": 3, "limit": 300_000, "patience": 0}),
    (["table2"], {"seeds": 2, "limit": 150_000, "eval_limit": 50_000}),
    (["table2", "--seeds", "5", "--limit", "0"], {"seeds": 5, "limit": 0}),
    (["table1"], {"values_optimizer": "sparse_adam", "addressing_learning_rate": 1e-4}),
    (["table1", "--values-optimizer", "adagrad", "--addressing-learning-rate", "none"],
     {"values_optimizer": "adagrad", "addressing_learning_rate": None}),  # the old recipe
])
def test_experiment_defaults_per_table(argv, expected):
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    settings = tables.settings_of(parser.parse_args(argv))
    assert {k: settings[k] for k in expected} == expected


def test_configs_from_before_the_feature_stack_read_as_their_old_setting():
    old = {"model": "din", "dataset": "ml-1m", "hparams": {"dropout": 0.1}}
    adagrad = {"values_optimizer": "adagrad", "addressing_learning_rate": None,
               "learning_rate_decay": "none"}
    assert train.stored_config(old) == {**old, **adagrad, "history": "positive", "hparams": {
        "feedback": False, "statistics": False, "dropout": 0.1}}
    # Before the memory's optimizer recipe: Adagrad values, addressing at the dense rate,
    # constant rates.
    rated = {**old, "history": "rated"}
    assert train.stored_config(rated) == {**rated, **adagrad}
    new = {**rated, "values_optimizer": "sparse_adam", "addressing_learning_rate": 1e-4,
           "learning_rate_decay": "cosine"}
    assert train.stored_config(new) == new


# LMN hparams in the names of older code -> today's (lmn_tf.models.lmn.legacy_hparams).
OLD_FIXED = {"memory_embeddings": "fixed", "memory_loss_weight": 0.0,
             "memory_options": {"addressing": "fixed", "query_norm": True}}
LEGACY_LMN = [
    ({"target_query": False}, {"queries": "history"}),
    ({"history_query": False}, {"queries": "target"}),
    ({"history_query": True, "target_query": True, "memory_pairs": "user"},
     {"queries": "history_and_target"}),
    ({"memory_pairs": "target", "target_query": False}, {"queries": "item_pairs"}),
    ({"stop_gradient": "query"}, {"memory_loss_stop_gradient": "query"}),
    ({"memory_options": {"query_norm": True}}, {"query_norm": True}),
    ({"memory_options": {"query_norm": True, "trainable_keys": False}},
     {"query_norm": True, "addressing": "fixed_keys"}),
    ({"memory_options": {"addressing": "fixed", "trainable_keys": False}},
     {"addressing": "fixed"}),
    ({"memory_options": {"trainable_keys": True}}, {}),
    ({"query_user_id": True}, {"query_user": "profile_and_id"}),
    ({"query_history": True, "query_user_id": False}, {"query_user": "profile_and_history"}),
    ({"history_query": False, "memory_embeddings": "fixed", "query_user_id": False,  # capacity
      "num_heads": 4, "top_k": 32, "memory_loss_weight": 0.0,
      "memory_options": {"addressing": "fixed", "query_norm": True}}, PRESETS["capacity"]),
    ({"memory_pairs": "target", "target_query": False, "readout": "pooled", **OLD_FIXED},
     {k: v for k, v in PRESETS["item_pairs"].items() if k not in ("num_heads", "top_k")}),
]


@pytest.mark.parametrize("old, new", LEGACY_LMN)
def test_lmn_hparams_of_older_code_read_in_todays_names(old, new):
    assert legacy_hparams({"num_keys": 6, **old}) == {"num_keys": 6, **new}
    assert legacy_hparams(new) == new  # today's spelling is left alone
    config = {"model": "lmn", "dataset": "ml-1m", "history": "rated", "hparams": old}
    # a config without learning_rate_decay predates LMN's current defaults: the paper's then
    assert train.stored_config(config)["hparams"] == {**PRESETS["paper"], **new}
    today = {**config, "hparams": new, "learning_rate_decay": "cosine"}
    # written before run configs named the stores: the profile store alone was the default
    assert train.stored_config(today)["hparams"] == {"query_user": "profile", **new}
    din = {**config, "model": "din", "hparams": {"dropout": 0.1}}
    assert train.stored_config(din)["hparams"] == {"dropout": 0.1}


def test_lmn_run_configs_name_their_stores_so_a_new_default_cannot_change_a_run():
    vocab = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    arrays = random_arrays(vocab, 8)
    config = run_config({"model": "lmn", "dataset": "ml-100k"}, arrays, arrays, vocab)
    assert config["hparams"] == {"query_user": ["profile", "group"]}  # today's default
    assert train.stored_config(json.loads(json.dumps(config)))["hparams"] == config["hparams"]
    one = run_config({"model": "lmn", "dataset": "ml-100k", "hparams": {"query_user": "group"}},
                     arrays, arrays, vocab)
    assert one["hparams"] == {"query_user": "group"}  # a choice is kept as given
    din = run_config({"model": "din", "dataset": "ml-100k"}, arrays, arrays, vocab)
    assert din["hparams"] == {}


@pytest.mark.parametrize("old, match", [
    ({"history_query": False, "target_query": False}, "query flags"),
    ({"memory_pairs": "target"}, "query flags"),  # the target paired with itself
    ({"query_user_id": True, "query_history": True}, "user flags"),
    ({"memory_options": {"scoring": "broadcast"}}, r"takes no \['scoring'\]"),
])
def test_lmn_hparams_older_code_refused_too_are_refused(old, match):
    with pytest.raises(ValueError, match=match):
        legacy_hparams(old)


@pytest.mark.parametrize("old, new", [LEGACY_LMN[-1], (
    {"target_query": False, "stop_gradient": "query",
     "memory_options": {"query_norm": True, "trainable_keys": False}},
    {"queries": "history", "memory_loss_stop_gradient": "query", "query_norm": True,
     "addressing": "fixed_keys"})])
def test_a_run_written_with_the_old_lmn_names_loads_and_resumes(tmp_path, old, new):
    vocab = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    data = (random_arrays(vocab, 64, seed=1), random_arrays(vocab, 32, seed=2), vocab)
    tiny = json.loads(TINY_LMN)
    hparams = {**PRESETS["paper"], **tiny, **new}  # as they ran: LMN's defaults were these
    config = {"model": "lmn", "dataset": "ml-100k", "batch_size": 16, "hparams": hparams,
              "values_optimizer": "adagrad", "addressing_learning_rate": None,
              "learning_rate_decay": "none"}
    train.train(config, tmp_path / "new", data=data, verbose=0, evaluate=False)
    # The same run as the older code wrote it: config.json with the old names, and without
    # the keys added since (stored_config reads them as train.LEGACY).
    shutil.copytree(tmp_path / "new", tmp_path / "old")
    stored = json.loads((tmp_path / "old" / "config.json").read_text())
    stored = {k: v for k, v in stored.items()
              if k not in ("values_optimizer", "addressing_learning_rate", "learning_rate_decay")}
    stored["hparams"] = {**tiny, **old}
    (tmp_path / "old" / "config.json").write_text(json.dumps(stored, indent=2))
    model, loaded = train.load_run(tmp_path / "old")
    twin, expected = train.load_run(tmp_path / "new")
    assert loaded == expected and loaded["hparams"] == hparams
    ds = lmn_data.make_dataset(data[1], 8)
    np.testing.assert_array_equal(predict(model, ds, verbose=0)[1],
                                  predict(twin, ds, verbose=0)[1])
    # Resuming it with today's names is the same run, not another config.
    train.train({**config, "epochs": 2}, tmp_path / "old", data=data, verbose=0, evaluate=False)
    assert tf.train.latest_checkpoint(str(tmp_path / "old" / "checkpoints")).endswith("ckpt-2")


def test_train_flags_spell_lmn_designs_in_todays_names():
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    args = parser.parse_args(["--run-dir", "r", "--queries", "item_pairs",
                              "--memory-loss-stop-gradient", "query", "--readout", "pooled"])
    assert train.hparams_from_args(args) == {
        "queries": "item_pairs", "memory_loss_stop_gradient": "query", "readout": "pooled"}
    with pytest.raises(SystemExit):
        parser.parse_args(["--run-dir", "r", "--no-target-query"])
