"""The distributed helpers in one process (Horovod world of size 1): docstring examples,
data sharding and the analytic byte counts of the benchmark."""

import doctest
import importlib.util
from pathlib import Path

import pytest
import tensorflow as tf

pytestmark = pytest.mark.horovod  # deselect with -m 'not horovod' (tests/conftest.py)


@pytest.fixture(scope="module")
def hvd():
    import horovod.tensorflow as hvd

    hvd.init()
    return hvd


def test_docstring_examples(hvd):
    from lmn_tf.distributed import values

    result = doctest.testmod(values, extraglobs={"tf": tf})
    assert result.attempted > 0 and result.failed == 0


def test_shard_dataset_keeps_global_batches(hvd):
    from lmn_tf.distributed import training

    batches = list(training.shard_dataset(tf.data.Dataset.range(10), 4).as_numpy_iterator())
    assert [b.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7]]  # remainder dropped


def test_value_store_is_local_on_one_rank(hvd):
    from lmn_tf.distributed import training
    from lmn_tf.memory.values import LocalValues

    assert isinstance(training.value_store(), LocalValues)


def test_bench_formulas():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "alltoall_bench.py"
    spec = importlib.util.spec_from_file_location("alltoall_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    row = bench.analytic(1000, 2, batch=256, queries=51, k=8, d=32)
    assert row["dense_allreduce_mb"] == pytest.approx(128.0)  # 2·(1/2)·4 B·10⁶·32
    assert row["alltoall_mb"] == pytest.approx(104448 * 260 / 2 / 1e6)
    assert bench.analytic(100, 2)["alltoall_mb"] == pytest.approx(1e4 * 260 / 2 / 1e6)  # U ≤ n


def test_early_stopping_is_refused_with_a_clear_error(hvd, tmp_path, capsys):
    from lmn_tf import cli
    from lmn_tf.distributed import fit

    with pytest.raises(ValueError, match=r"not supported with --horovod.*patience=2"):
        fit.train({"model": "base", "dataset": "synthetic", "patience": 2}, tmp_path)
    assert cli.main(["train", "--horovod", "--patience", "1", "--run-dir", str(tmp_path)]) == 2
    assert "Received: --patience 1" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before anything was written
