"""Quiet TensorFlow start-up for the ``lmn-tf`` command: drop TF's known C++ log noise from stderr.

Why: on a machine without a GPU, ``import tensorflow`` and its first device enumeration print
errors that are not errors (``Unable to register cuDNN factory``, ``failed call to cuInit``;
TensorFlow then simply runs on the CPU), and grappler prints ``PredictCost()`` warnings while
it optimises graphs. ``TF_CPP_MIN_LOG_LEVEL`` hides TensorFlow's own timestamped lines, but
not the absl-format ones (``E0000 00:00:...``, ``W0000 ...``), which are printed before
absl's logging is initialised and ignore it.

So, when the user has not set ``TF_CPP_MIN_LOG_LEVEL``, :func:`install` (called by the
``lmn-tf`` command only, never by ``import lmn_tf``) sets it to 2 (no INFO or WARNING from
TensorFlow's C++ logs), and routes file descriptor 2 for the rest of the command through a
small filter process that drops, line by line, what :func:`is_noise` matches: absl INFO and
WARNING lines (what level 2 means, applied to the lines that ignore it), absl's ``WARNING:
All log messages before absl::InitializeLog()`` banner, and the four known CPU-machine
errors above. Every other line (tracebacks, Python warnings, TensorFlow's real errors, fatal
checks) is passed on unchanged. The filter is a separate process, not a thread, so that what
the command wrote just before a crash (an abort's last message) still gets through.

A ``TF_CPP_MIN_LOG_LEVEL`` set by the user (e.g. 0 to see everything) is respected as is:
then nothing is filtered, and TensorFlow hides exactly what that level hides.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import subprocess
import sys

LEVEL = "2"  # TF_CPP_MIN_LOG_LEVEL when the user set none: errors only

# absl: "E0000 00:00:1796581905.506025    4954 cuda_dnn.cc:8310] msg" (MMDD is 0000 before
# absl::InitializeLog); TensorFlow's own: "2026-12-06 18:24:54.810747: E path/file.cc:477] msg".
_ABSL = rb"(?P<absl>[IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] "
_TSL = rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: (?P<tsl>[IWEF]) \S+:\d+\] "
_LINE = re.compile(rb"(?:%s|%s)(?P<msg>.*)" % (_ABSL, _TSL))
_BANNER = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
# Errors TensorFlow prints on every start-up without a usable GPU; it then uses the CPU.
_KNOWN_ERRORS = re.compile(rb"Unable to register cu(?:DNN|FFT|BLAS) factory|failed call to cuInit")


def is_noise(line: bytes) -> bool:
    """Whether one stderr line (without its newline) is TensorFlow noise the command drops."""
    if line.rstrip() == _BANNER:
        return True
    m = _LINE.match(line)
    if m is None:
        return False
    if m["absl"] in (b"I", b"W"):  # below LEVEL; TF_CPP_MIN_LOG_LEVEL does not reach them
        return True
    return (m["absl"] or m["tsl"]) == b"E" and _KNOWN_ERRORS.match(m["msg"]) is not None


def forward(src: int, dst: int) -> None:
    """Copy ``src`` to ``dst`` until EOF, dropping the lines :func:`is_noise` matches.

    Whole lines are judged; an unfinished line is held until its newline, unless it holds a
    carriage return (a progress bar redrawing itself in place), which is passed on at once.
    """
    pending = b""
    while chunk := os.read(src, 1 << 16):
        *lines, pending = (pending + chunk).split(b"\n")
        out = b"".join(line + b"\n" for line in lines if not is_noise(line))
        if b"\r" in pending:
            out, pending = out + pending, b""
        _write_all(dst, out)
    if pending and not is_noise(pending):
        _write_all(dst, pending)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def install() -> None:
    """Filter this process's fd 2 (and its children's, which inherit it) until it exits.

    Does nothing if ``TF_CPP_MIN_LOG_LEVEL`` is already set, or if fd 2 cannot be duplicated.
    Call it before TensorFlow is imported.
    """
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = LEVEL
    try:
        original = os.dup(2)
        read_end, write_end = os.pipe()
        # -I -S: the filter needs nothing but the standard library; __file__ runs this module
        # as a script (the `__main__` block below), without importing lmn_tf.
        proc = subprocess.Popen([sys.executable, "-I", "-S", os.path.abspath(__file__)],
                                stdin=read_end, stdout=original, stderr=original)
    except OSError:
        return
    os.close(read_end)
    sys.stderr.flush()
    os.dup2(write_end, 2)
    os.close(write_end)

    def restore() -> None:  # at exit: hand fd 2 back, let the filter drain the pipe
        sys.stderr.flush()
        os.dup2(original, 2)  # closes this process's write end: the filter reads EOF
        with contextlib.suppress(subprocess.TimeoutExpired):  # a child holding fd 2 runs on
            proc.wait(timeout=10)

    atexit.register(restore)


if __name__ == "__main__":
    # Ctrl-C and a SIGTERM to the command's process group are for the command: the filter
    # keeps passing its last words on and ends at EOF, when every writer has exited.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    forward(0, 1)
