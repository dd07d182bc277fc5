"""Compile the selection kernel against the installed TensorFlow (g++, no Bazel needed).

    python lmn_tf/memory/ops/build.py [OUT.so]   # default: next to this file

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
SOURCES = [HERE / "two_stage_top_k_op.cc"]
LIBRARY = "_two_stage_top_k.so"  # what lmn_tf.memory.ops.selection loads
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
    out = Path(out or HERE / LIBRARY).resolve()
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
    build_library(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
