"""BUILD stays in sync with the package, builds offline, and its py_tests really run."""

import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.bazel  # deselect with -m 'not bazel' (tests/conftest.py)

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Fast, dependency-light targets: enough to prove `bazel test` runs our pytest suite.
BAZEL_TESTS = ["//:test_ctr_metrics", "//:data_test_data_sequences"]


def bazel(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    # The Bazel server would otherwise outlive the test run by hours.
    return subprocess.run(["bazel", "--max_idle_secs=60", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_build_file_matches_import_graph():
    result = subprocess.run([sys.executable, ".ci/bazel/gen_build.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_module_and_test_belongs_to_a_target():
    build = (ROOT / "BUILD").read_text()
    for path in [*ROOT.glob("lmn_tf/**/*.py"), *ROOT.glob("tests/**/test_*.py")]:
        rel = path.relative_to(ROOT).as_posix()
        if rel != "tests/test_bazel_build.py":
            assert f'"{rel}"' in build, f"{rel} is in no BUILD target"


def test_bazel_build_and_test_offline():
    built = bazel("build", "//...")
    assert built.returncode == 0, built.stderr[-3000:]
    tested = bazel(
        "test", "--incompatible_use_python_toolchains=false",
        f"--python_path={sys.executable}",  # the pinned venv's interpreter
        f"--test_env=HOME={os.environ.get('HOME', '/root')}", "--test_output=errors",
        *BAZEL_TESTS)
    assert tested.returncode == 0, tested.stdout[-3000:] + tested.stderr[-3000:]
    for target in BAZEL_TESTS:
        assert f"{target} " in tested.stdout and "PASSED" in tested.stdout
