"""Every script in benchmarks/ runs: each in its tiniest mode, in a subprocess, writing its JSON
to a temp path (never over benchmarks/results/). Not measurements: the figures come from full
runs on a quiet machine (benchmarks/README.md lists each script's full run and smoke command).

What cannot run here is exercised as far as is honest, and says why: peer_bench.py times a
stand-in peer (the real one lives in a PyTorch venv that `--setup` downloads), pkm_torch_bench.py
needs torch (`--help` and its torch-free helpers only), alltoall_bench.py and
reliability_training.py launch horovodrun (the `horovod` marker), and reliability_training.py
runs only with LMN_TF_SLOW_SMOKE=1: its smallest run is over this file's budget."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from lmn_tf.data.raw import RAW_FEATURES
from lmn_tf.data.vocabulary import Vocabulary
from lmn_tf.memory.ops import kernel_available

# The scripts' rot does not depend on the TensorFlow version: the latest-TF run of `make test`
# leaves these out (Makefile's LATEST_DESELECT), which keeps CI under its time budget.
pytestmark = pytest.mark.benchmark_smoke

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


serving_bench = _load(BENCHMARKS / "serving_bench.py")


def bench(script: str, *args, timeout: float = 300) -> str:
    """Runs benchmarks/SCRIPT ARGS in a subprocess; it must exit 0. Returns its stdout."""
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), *map(str, args)],
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def raw_signature() -> meta_graph_pb2.SignatureDef:
    """The inputs of an lmn_tf export's serving_default (free batch dimension)."""
    sig = meta_graph_pb2.SignatureDef()
    for name, (dtype, shape) in RAW_FEATURES.items():
        info = sig.inputs[name]
        info.dtype = tf.as_dtype(dtype).as_datatype_enum
        for size in (-1, *shape):
            info.tensor_shape.dim.add(size=size)
    return sig


def test_synth_sends_raw_ids_an_untrained_export_knows():
    f = serving_bench.synth(raw_signature(), 3, np.random.default_rng(0))
    assert f["user_id"].dtype == object and isinstance(f["user_id"][0], str)
    assert f["hist_item_ids"].shape == (3, 50)
    # What the export's lookup tables compute from them:
    indices = Vocabulary.identity(serving_bench.ML1M_VOCAB).to_indices(f)
    for name in ("user_id", "user_zip", "user_age", "item_id", "item_genres", "item_year",
                 "hist_item_ids", "sim_item_ids"):
        assert set(np.unique(indices[name])) <= {1, 2}, name  # known ids, never padding


def test_serving_bench_runs_on_untrained_lmn_and_din(tmp_path):
    out = tmp_path / "serving_bench.json"
    bench("serving_bench.py", "--untrained", "lmn,din", "--batches", "1", "--concurrency", "1",
          "--requests", "2", "--seconds", "0.2", "--out", out)
    results = json.loads(out.read_text())
    for name in ("lmn", "din"):
        assert set(results["models"][name]["latency"]) == {"rest/b1", "grpc/b1"}
        assert set(results["models"][name]["requests_per_s"]) == {"rest/c1", "grpc/c1"}
    assert set(results["lmn_over_din_p50"]) == {"rest/b1", "grpc/b1"}


# ------------------------------------------------------------------ the memory layer alone

TINY_LAYER = ["--heads", "1", "--batch", "2", "--seq", "2", "--top-k", "4"]


def test_selection_bench(tmp_path):
    out = tmp_path / "selection_bench.json"
    bench("selection_bench.py", "--sqrt-n", "8", *TINY_LAYER, "--steps", "1", "--out", out)
    (row,) = json.loads(out.read_text())["rows"]
    assert row["identical"]  # the kernel and the stock path select the same slots


def test_step_parts_bench(tmp_path):
    out = tmp_path / "step_parts_bench.json"
    bench("step_parts_bench.py", "--batch", "8", "--seq", "3", "--heads", "2", "--top-k", "4",
          "--dim", "4", "--rows", "64", "--buckets", "16", "--groups", "5", "--steps", "1",
          "--rounds", "1", "--out", out)
    rows = json.loads(out.read_text())["rows"]
    assert [r["part"] for r in rows] == ["sparse_adam", "router", "read_out"]
    assert all(r["old_ms"] > 0 and r["new_ms"] > 0 for r in rows)


def test_layer_bench(tmp_path):
    out = tmp_path / "layer_bench.json"
    bench("layer_bench.py", "--sqrt-n", "8", *TINY_LAYER, "--dim", "4", "--key-dim", "4",
          "--steps", "1", "--warmup", "0", "--no-xla", "--out", out)
    assert json.loads(out.read_text())["rows"]


def test_keras3_bench(tmp_path):
    out = tmp_path / "keras3_bench.json"
    bench("keras3_bench.py", "--sqrt-n", "8", *TINY_LAYER, "--dim", "4", "--key-dim", "4",
          "--steps", "1", "--rounds", "1", "--warmup", "0", "--out", out)
    results = json.loads(out.read_text())
    assert {(r["layer"], r["step"]) for r in results["rows"]} == {
        (layer, step) for layer in ("tf-keras", "keras3") for step in ("forward", "train")}
    # benchutil's summary (the peer comparison's statistics) of every timed call
    assert all(r["wall"]["n"] == r["calls"] == 1 for r in results["rows"])


def test_topk_bench(tmp_path):
    out = tmp_path / "topk_bench.json"
    bench("topk_bench.py", "--keys", "64", "--blocks", "8", "--sqrt-n", "8", *TINY_LAYER,
          "--dim", "4", "--key-dim", "4", "--repeats", "1", "--out", out)
    results = json.loads(out.read_text())
    assert results["kernels"] and results["layer"]  # "no select" rows included


def test_capacity_probe(tmp_path):
    out = tmp_path / "capacity_probe.jsonl"
    bench("capacity_probe.py", "--groups", "4", "--items", "4", "--exposures", "2",
          "--sqrt-n", "4", "--top-k", "2", "--batch", "16", "--json", out)
    assert 0 <= json.loads(out.read_text().splitlines()[-1])["auc"] <= 1


def test_spatial_ceiling(tmp_path):
    out = tmp_path / "spatial_ceiling.json"
    bench("spatial_ceiling.py", "--groups", "4", "--items", "12", "--exposures", "4",
          "--taste-size", "3", "--eval-samples", "400", "--out", out)
    rows = json.loads(out.read_text())["rows"]
    assert [r["users"] for r in rows] == ["warm", "cold"]
    assert all(0 <= r["auc"] <= 1 and 0.5 < r["bayes_auc"] <= 1 for r in rows)


# ---------------------------------------------------------------- models, runs, exports


def test_model_throughput(tmp_path):
    out = tmp_path / "model_throughput.json"
    bench("model_throughput.py", "--models", "din", "lmn", "--batch-size", "32", "--steps", "1",
          "--warmup", "1", "--rounds", "1", "--limit", "2000", "--out", out)
    assert len(json.loads(out.read_text())["rows"]) == 2


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """memory_variants.py's `lmn` row trained on 2,000 ML-1M events (its smoke mode), with
    memory_health's diagnostics; the run directory is then reused by the scripts that read
    runs."""
    tmp = tmp_path_factory.mktemp("memory_variants")
    out = tmp / "table"
    bench("memory_variants.py", "--runs-dir", tmp / "runs", "--limit", "2000", "--rows", "64",
          "--out", out, "lmn")
    table = json.loads(out.with_suffix(".json").read_text())
    (row,) = table["runs"]
    assert row["variant"] == "lmn" and "auc_values_permuted" in row
    assert table["complete"] and table["command"].startswith("python benchmarks/memory_variants.py")
    return tmp / "runs"


def test_memory_health(tiny_runs, tmp_path):
    out = tmp_path / "memory_health.json"
    bench("memory_health.py", tiny_runs / "lmn", "--rows", "64", "--eval-limit", "500",
          "--out", out)
    (row,) = json.loads(out.read_text())
    assert {"auc", "auc_values_permuted", "slot_coverage"} <= set(row)


def test_export_bench(tiny_runs, tmp_path):
    out = tmp_path / "export_bench.json"
    bench("export_bench.py", "--num-keys", "8", "--dtypes", "float16", "--repeats", "1",
          "--run-dir", tiny_runs / "lmn", "--out", out)  # --run-dir: float32, float16, bfloat16
    results = json.loads(out.read_text())
    assert [r["values_dtype"] for r in results["size_and_load"]] == ["float16"]
    assert abs(results["auc"]["float32"]["auc"] - results["auc"]["keras_auc"]) < 1e-6


# ------------------------------------------------------------------------------- serving


def test_serving_profile(tmp_path):
    out = tmp_path / "serving_profile.json"
    bench("serving_profile.py", "--untrained", "lmn,din", "--batches", "1", "--requests", "1",
          "--out", out)
    assert set(json.loads(out.read_text())["lmn_over_din_p50"]) == {"b1"}


def test_serving_load(tmp_path):
    out = tmp_path / "serving_load.json"
    bench("serving_load.py", "--tiny", "--seconds", "0.2", "--concurrency", "1", "--rows", "1",
          "--batching", "off", "--rest-client", "python", "--out", out)
    assert json.loads(out.read_text())["cells"]


def test_reliability_serving(tmp_path):
    out = tmp_path / "reliability_serving.json"
    bench("reliability_serving.py", "--tiny", "--fuzz", "3", "--load", "3", "--concurrency", "1",
          "--out", out)  # exits 1 unless every check passed (hot-swaps included)
    assert json.loads(out.read_text())["alive_at_end"]


# ---------------------------------------------------------------- Horovod and the peer


def test_alltoall_bench_formulas_match_the_readme():
    """The analytic bytes (no Horovod needed): README's √n = 1000, 2 ranks row."""
    row = _load(BENCHMARKS / "alltoall_bench.py").analytic(1000, 2)
    assert round(row["alltoall_mb"], 1) == 13.6 and round(row["dense_allreduce_mb"]) == 128
    bench("alltoall_bench.py", "--help")


@pytest.mark.horovod  # launches horovodrun
def test_alltoall_bench(tmp_path):
    out = tmp_path / "alltoall_bench.json"
    bench("alltoall_bench.py", "--steps", "1", "--batch", "1", "--ranks", "2", "--out", out)
    modes = {m["mode"] for m in json.loads(out.read_text())["measured"]}
    assert modes == {"alltoall", "dense_allreduce", "sparse_allgather"}


STUB_PEER = """#!/bin/sh
# A stand-in for the peer venv's python: writes fixed timings where --out says.
while [ $# -gt 0 ]; do [ "$1" = --out ] && out=$2; shift; done
echo '{"results": [{"fwd_ms": {"quiet": null, "median": 1.0},
                    "train_ms": {"quiet": null, "median": 2.0}}]}' > "$out"
"""


def test_peer_bench_with_a_stub_peer(tmp_path):
    """The real peer (lucidrains' product-key-memory on torch) is installed by `--setup` into
    its own venv, from the network: not here. A stub answers in its place, so everything
    but the peer's timing runs: our side of every row, the ratios, the JSON."""
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(STUB_PEER)
    python.chmod(0o755)
    out = tmp_path / "peer_bench.json"
    bench("peer_bench.py", "--sqrt-n", "8", "--heads", "1", "--batch", "2", "--seq", "2",
          "--dim", "4", "--top-k", "4", "--runs", "1", "--warmup", "0", "--rounds", "1",
          "--selection", "kernel" if kernel_available() else "stock",
          "--peer-venv", tmp_path / "venv", "--out", out)
    (row,) = json.loads(out.read_text())["rows"]
    assert row["peer_forward_ms"] == 1.0 and row["ours_forward_ms"] > 0


def test_pkm_torch_bench_help_and_helpers():
    """pkm_torch_bench.py imports torch after parsing its arguments; torch is never an lmn-tf
    dependency (it lives in the peer venv), so only `--help` and the torch-free helpers run."""
    assert "--sqrt-n" in bench("peer/pkm_torch_bench.py", "--help")
    benchutil = _load(BENCHMARKS / "peer" / "benchutil.py")
    stats = benchutil.stats_ms([0.001, 0.003, 0.002], contended=[False, True, False],
                               min_quiet=2)
    assert stats["median"] == 2.0 and stats["quiet"]["median"] == 1.5
    assert stats["contended_runs"] == 1


def test_benchutil_timing_on_a_fake_clock(monkeypatch):
    """time_call / time_rounds, the timing every script shares, on a clock the calls advance:
    each call takes (wall s, own CPU s, other processes' CPU s) from a script."""
    benchutil = _load(BENCHMARKS / "peer" / "benchutil.py")
    clock = {"wall": 0.0, "cpu": 0.0, "busy": 0.0}
    monkeypatch.setattr(benchutil, "time", type("FakeTime", (), {
        "perf_counter": staticmethod(lambda: clock["wall"]),
        "process_time": staticmethod(lambda: clock["cpu"])}))
    monkeypatch.setattr(benchutil, "_proc_stat", lambda: (clock["busy"], 0.0))

    def calls(*script):
        script = list(script)

        def fn():
            wall, cpu, foreign = script.pop(0)
            clock["wall"] += wall
            clock["cpu"] += cpu
            clock["busy"] += cpu + foreign
        return fn

    # a warmup call (not timed), then 3 calls; the second is contended (1 s of foreign CPU)
    script = [(9, 9, 0), (0.001, 0.002, 0), (0.003, 0.004, 1), (0.002, 0.006, 0)]
    t = benchutil.time_call(calls(*script), steps=3, warmup=1)
    assert t["wall_ms"] == pytest.approx(2.0) and t["cpu_ms"] == pytest.approx(4.0)
    assert t["calls"] == t["wall"]["n"] == 3 and t["wall"]["contended_runs"] == 1
    assert t["wall"]["quiet"] is None  # 2 quiet calls: fewer than 3
    assert benchutil.median_used(t["wall"]) == (pytest.approx(2.0), "all")
    # extra: one more call, until 3 were quiet; the quiet calls' median leaves out the 3 ms
    t = benchutil.time_call(calls(*script, (0.004, 0.001, 0)), steps=3, warmup=1, extra=2)
    assert t["calls"] == 4 and t["wall_ms"] == pytest.approx(2.5)
    assert benchutil.median_used(t["wall"]) == (pytest.approx(2.0), "quiet")

    # round-robin: warmup of each cell, then per round `steps` calls of a, then of b
    order = []
    a, b = calls(*[(0.1, 0, 0)] + [(w / 1000, w / 2000, 0) for w in (1, 4, 2, 3)]), calls(
        *[(0.01, 0.01, 0)] * 5)
    cells = {"a": lambda: order.append("a") or a(), "b": lambda: order.append("b") or b()}
    got = benchutil.time_rounds(cells, rounds=2, steps=2, warmup=1)
    assert order == ["a", "b"] + ["a", "a", "b", "b"] * 2
    assert got["a"]["wall_ms"] == pytest.approx(2.5) and got["a"]["cpu_ms"] == pytest.approx(1.25)
    assert got["a"]["wall"]["runs"] == pytest.approx([1, 4, 2, 3])
    assert got["b"]["wall_ms"] == pytest.approx(10) and got["b"]["calls"] == 4


@pytest.mark.horovod  # its part 2 kills a rank of a horovodrun job
@pytest.mark.skipif(not os.environ.get("LMN_TF_SLOW_SMOKE"), reason=(
    "reliability_training.py's smallest run (three ML-1M trainings, one killed, and a "
    "2-rank Horovod job of fixed size killed and resumed) takes 2-3 min on 2 shared cores, "
    "over this file's 4-minute budget: LMN_TF_SLOW_SMOKE=1 runs it (passed 2026-12-06); "
    "tests/reliability holds the fast versions of its cases"))
def test_reliability_training(tmp_path):
    out = tmp_path / "reliability_training.json"
    bench("reliability_training.py", "--limit", "1024", "--eval-limit", "500", "--epochs", "2",
          "--batch-size", "64", "--every", "4", "--trials", "1", "--out", out, timeout=600)
    results = json.loads(out.read_text())
    assert results["crash_and_resume"]["checkpoint_max_abs_difference"] == 0
    assert results["damaged_checkpoints"]


def test_every_benchmark_script_has_a_smoke_test():
    """A new script in benchmarks/ gets its smoke test here (and its line in
    benchmarks/README.md)."""
    source = Path(__file__).read_text()
    scripts = sorted(p.relative_to(BENCHMARKS).as_posix() for p in BENCHMARKS.rglob("*.py"))
    assert [s for s in scripts if f'"{s}"' not in source and s != "peer/benchutil.py"] == []
    readme = (BENCHMARKS / "README.md").read_text()
    assert [s for s in scripts if s not in readme] == []
