"""`lmn_tf.distributed` says what to do when Horovod cannot run with this TensorFlow: not
installed, or installed next to a TensorFlow newer than Horovod 0.28 builds against. Runs in
every environment (no horovod marker): the failures are simulated in a subprocess."""

import os
import subprocess
import sys

import pytest

PRELUDE = """
import sys
import lmn_tf, tensorflow as tf
tf.__version__ = {tf_version!r}  # what _check_horovod reads
if {hide_horovod}:
    sys.modules["horovod"] = None  # import horovod -> ImportError, as when not installed
import lmn_tf.distributed
"""
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _import(tf_version: str, hide_horovod: bool) -> subprocess.CompletedProcess:
    code = PRELUDE.format(tf_version=tf_version, hide_horovod=hide_horovod)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=180, env=ENV)


@pytest.mark.parametrize("tf_version", ["2.21.0", "2.19.0rc0"])
@pytest.mark.parametrize("hide_horovod", [True, False])
def test_newer_tensorflow_is_refused_with_the_ceiling(tf_version, hide_horovod):
    result = _import(tf_version, hide_horovod)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: lmn_tf.distributed"), result.stderr[-2000:]
    assert "TensorFlow <= 2.18" in last and f"TensorFlow {tf_version}" in last, last


def test_missing_horovod_says_how_to_build_it():
    result = _import("2.18.1", hide_horovod=True)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "needs Horovod, which is not installed" in last, result.stderr[-2000:]
    assert "HOROVOD_WITH_TENSORFLOW=1" in last and "lmn-tf[distributed]" in last


def test_train_horovod_command_prints_the_error(tmp_path):
    code = ("import sys, lmn_tf, tensorflow as tf\n"
            "tf.__version__ = '2.21.0'\n"
            "from lmn_tf.cli import main\n"
            f"sys.exit(main(['train', '--horovod', '--run-dir', {str(tmp_path)!r}]))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=180, env=ENV)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "lmn-tf train --horovod: lmn_tf.distributed" in result.stderr
    assert "Traceback" not in result.stderr
