"""The `lmn-tf` command drops TensorFlow's known start-up noise from stderr, and only that."""

import os
import re
import select
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lmn_tf.tf_log_filter import forward, is_noise

# Lines TensorFlow 2.18 printed on this CPU-only machine (`lmn-tf demo`, 2026-12-06).
NOISE = [
    "2026-12-06 18:32:00.327484: E external/local_xla/xla/stream_executor/cuda/cuda_fft.cc:477] "
    "Unable to register cuFFT factory: Attempting to register factory for plugin cuFFT when one "
    "has already been registered",
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "E0000 00:00:1796581920.340625    4980 cuda_dnn.cc:8310] Unable to register cuDNN factory: "
    "Attempting to register factory for plugin cuDNN when one has already been registered",
    "E0000 00:00:1796581920.344354    4980 cuda_blas.cc:1418] Unable to register cuBLAS factory: "
    "Attempting to register factory for plugin cuBLAS when one has already been registered",
    "2026-12-06 18:32:03.766289: E external/local_xla/xla/stream_executor/cuda/cuda_driver.cc:152] "
    "failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    'W0000 00:00:1796581932.500825    4980 op_level_cost_estimator.cc:699] Error in PredictCost() '
    'for the op: op: "Softmax" attr { key: "T" value { type: DT_FLOAT } }',
    "I0000 00:00:1796581935.576898    5012 mlir_graph_optimization_pass.cc:401] MLIR V1 "
    "optimization pass is not enabled",
]
KEPT = [
    "2026-12-06 18:32:03.766289: E tensorflow/core/framework/op_kernel.cc:1817] OP_REQUIRES "
    "failed at strided_slice_op.cc:117 : INVALID_ARGUMENT: slice index 3 is out of bounds",
    "E0000 00:00:1796581920.340625    4980 some_op.cc:12] a real error",
    "F0000 00:00:1796581920.340625    4980 tensor.cc:812] Check failed: 1 == NumElements()",
    "Traceback (most recent call last):",
    "WARNING:tensorflow:From /work/main/lmn_tf/checkpointing.py:193: update_checkpoint_state "
    "(from tensorflow.python.checkpoint.checkpoint_management) is deprecated",
    "lmn-tf train: error: the following arguments are required: --run-dir",
    "",
]
# What the command must never show unless asked (TF_CPP_MIN_LOG_LEVEL set).
NOISE_LINE = re.compile(r"^(?:[EWI]0000 |\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [EWI] |"
                        r"WARNING: All log messages before absl)", re.MULTILINE)


@pytest.mark.parametrize("line", NOISE)
def test_known_noise_is_dropped(line):
    assert is_noise(line.encode())


@pytest.mark.parametrize("line", KEPT)
def test_everything_else_is_kept(line):
    assert not is_noise(line.encode())


def test_forward_keeps_lines_and_passes_progress_bars_at_once():
    src_r, src_w = os.pipe()
    dst_r, dst_w = os.pipe()
    thread = threading.Thread(target=forward, args=(src_r, dst_w))
    thread.start()
    try:
        os.write(src_w, f"{NOISE[2]}\n{KEPT[0]}\n{NOISE[5]}\n\rread: 50%".encode())
        # The progress bar's redraw comes through before its line ends.
        assert select.select([dst_r], [], [], 30)[0], "the filter held a progress bar back"
        assert os.read(dst_r, 1 << 16).decode() == f"{KEPT[0]}\n\rread: 50%"
        os.write(src_w, f"\rread: 100%\n{NOISE[1]}\nlast words, no newline".encode())
    finally:
        os.close(src_w)  # EOF: the filter passes on what it holds and returns
        thread.join(30)
        os.close(dst_w)
    with os.fdopen(dst_r, "rb") as rest:
        assert rest.read().decode() == "\rread: 100%\nlast words, no newline"
    os.close(src_r)


def _command(*args: str, **env: str) -> subprocess.CompletedProcess:
    # The console script when the venv has it (as `make demo` runs it), else python -m lmn_tf:
    # both call lmn_tf.cli.main() as the command.
    script = Path(sys.executable).with_name("lmn-tf")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "lmn_tf"]
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # conftest's
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=180,
                          env={**environ, **env})


def test_command_is_quiet_and_keeps_real_errors():
    # `train` imports TensorFlow, whose start-up prints the noise; the argparse error is real.
    result = _command("train", "--run-dir", "unused", "--no-such-flag")
    assert result.returncode == 2
    assert "unrecognized arguments: --no-such-flag" in result.stderr
    assert not NOISE_LINE.search(result.stderr), result.stderr


def test_explicit_log_level_is_passed_through():
    result = _command("train", "--help", TF_CPP_MIN_LOG_LEVEL="0")
    assert result.returncode == 0 and "usage: lmn-tf train" in result.stdout
    assert NOISE_LINE.search(result.stderr), result.stderr  # level 0 shows TF's INFO lines
