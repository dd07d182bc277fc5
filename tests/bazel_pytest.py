"""Entry point of every Bazel py_test: run one test file under pytest (fixtures, conftest)."""

import sys

import pytest

if __name__ == "__main__":
    sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", *sys.argv[1:]]))
