"""benchmarks/serving_bench.py runs: its smallest size, not a measurement (the README's
figures come from full runs on a quiet machine)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from lmn_tf.data.raw import RAW_FEATURES
from lmn_tf.data.vocabulary import Vocabulary

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
_SPEC = importlib.util.spec_from_file_location("serving_bench", BENCHMARKS / "serving_bench.py")
serving_bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(serving_bench)


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
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "serving_bench.py"), "--untrained", "lmn,din",
         "--batches", "1", "--concurrency", "1", "--requests", "2", "--seconds", "0.2",
         "--out", str(out)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads(out.read_text())
    for name in ("lmn", "din"):
        assert set(results["models"][name]["latency"]) == {"rest/b1", "grpc/b1"}
        assert set(results["models"][name]["requests_per_s"]) == {"rest/c1", "grpc/c1"}
    assert set(results["lmn_over_din_p50"]) == {"rest/b1", "grpc/b1"}
