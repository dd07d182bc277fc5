"""Compile the kernel library (the selection op and the sparse Adam step) against the installed
TensorFlow (g++, no Bazel needed).

    python lmn_tf/memory/ops/build.py [OUT.so]   # default: next to this file, if stale

setup.py's build step, ``.ci`` and the Bazel genrule all run this one function, so there is
one set of flags. Portable on purpose: ``-O3`` and the compiler's auto-vectorisation for the
baseline x86-64 ISA, no ``-march=native`` (a wheel built here must run on other CPUs).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = [HERE / "two_stage_top_k_op.cc", HERE / "sparse_adam_op.cc"]  # one library
LIBRARY = "_two_stage_top_k"  # stem of what lmn_tf.memory.ops.selection loads


def library_name(tf_version: str | None = None) -> str:
    """File name of the kernel for a TensorFlow version (default: the installed one).

    The version is in the name because a custom op only loads into the TensorFlow it was
    compiled against, and one checkout may serve venvs of several (CI runs 2.18 and 2.21).
    """
    if tf_version is None:
        import tensorflow as tf

        tf_version = tf.__version__
    return f"{LIBRARY}.tf{tf_version}.so"
CXX_FLAGS = ["-O3", "-fPIC", "-shared", "-Wall", "-Wno-sign-compare"]


def compile_command(out: Path) -> list[str]:
    """The g++ command line; imports TensorFlow (ImportError when it is not installed)."""
    import tensorflow as tf

    cxx = os.environ.get("CXX", "g++")
    return [cxx, *CXX_FLAGS, *map(str, SOURCES), "-o", str(out),
            *tf.sysconfig.get_compile_flags(), *tf.sysconfig.get_link_flags()]


def build_library(out: Path | None = None, verbose: bool = True) -> Path:
    """Builds the kernel library at ``out`` (default: beside this file) and returns its path.

    Raises:
        ImportError: TensorFlow is not importable (then there is nothing to build against).
        subprocess.CalledProcessError: the compiler failed.
    """
    out = Path(out or HERE / library_name()).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = compile_command(out)
    if verbose:
        print("building", out.name, ":", shlex.join(cmd), file=sys.stderr)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")  # atomic: a loader never sees half
    cmd[cmd.index("-o") + 1] = str(tmp)
    try:
        subprocess.run(cmd, check=True)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


if __name__ == "__main__":
    if sysconfig.get_platform().startswith("win"):
        sys.exit("the selection kernel builds on Linux/macOS only")
    if len(sys.argv) > 1:
        build_library(Path(sys.argv[1]))
    elif (HERE / library_name()).exists() and all(
            (HERE / library_name()).stat().st_mtime >= src.stat().st_mtime for src in SOURCES):
        print(f"{library_name()} is up to date", file=sys.stderr)
    else:
        build_library()
