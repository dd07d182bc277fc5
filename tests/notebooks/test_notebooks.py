"""The notebooks run top to bottom (small-data mode) and are committed without outputs.

Each notebook runs in a fresh "python3" kernel (the venv's ipykernel) with
``LMN_TF_NOTEBOOK_SMALL=1``, its working directory and ``TMPDIR`` in pytest's tmp dir, so
nothing it writes lands in the repository. A cell error fails the test; then each test checks
what the notebook is for (served == in-process, figures drawn, numbers in range).
"""

from __future__ import annotations

import ast
import json
import os
import pathlib
import re
import sys

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[2] / "notebooks"
NAMES = ("quickstart", "memory_scaling", "memory_inside")


@pytest.fixture(autouse=True)
def venv_kernel(monkeypatch):
    # JUPYTER_PATH comes first in the kernelspec search: "python3" is this venv's ipykernel,
    # whatever kernels the user installed elsewhere.
    monkeypatch.setenv("JUPYTER_PATH", str(pathlib.Path(sys.prefix, "share", "jupyter")))


def execute(name: str, tmp_path: pathlib.Path, **env: str) -> tuple[str, int]:
    """Runs ``notebooks/<name>.ipynb``; returns (all text output, number of PNG figures)."""
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    kernel_env = {**os.environ, "LMN_TF_NOTEBOOK_SMALL": "1", "TMPDIR": str(tmp_path),
                  "TF_CPP_MIN_LOG_LEVEL": "2", **env}
    client = NotebookClient(nb, kernel_name="python3", timeout=600,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=kernel_env)  # raises CellExecutionError on the first failing cell
    text, figures = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream" and out.name == "stdout":
                text.append(out.text)
            elif out.output_type in ("execute_result", "display_data"):
                text.append(out.data.get("text/plain", ""))
                figures += "image/png" in out.data
    return "\n".join(text), figures


def number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"no output matches {pattern!r}:\n{text}"
    return float(match[1])


def test_every_notebook_is_tested():
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_committed_clean(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    stale = [i for i, c in enumerate(code) if c.outputs or c.execution_count is not None]
    assert not stale, f"{name}: code cells {stale} have outputs; clear them before committing"
    first = ast.parse(code[0].source).body
    assert isinstance(first[0], ast.Import) and first[0].names[0].name == "lmn_tf", (
        f"{name}: `import lmn_tf` must be the first statement (it binds tf.keras to tf-keras)")
    assert "LMN_TF_NOTEBOOK_SMALL" in code[0].source, f"{name}: no small-data switch"
    assert "parameters" in code[0].metadata.get("tags", []), f"{name}: untagged parameters"


def test_quickstart(tmp_path):
    text, _ = execute("quickstart", tmp_path)
    assert 0.0 < number(r"eval AUC (\S+)", text) < 1.0
    assert number(r"max \|served - in-process\| = (\S+)", text) <= 1e-5
    assert number(r"server exit code (-?\d+)", text) == 0


def test_memory_scaling_recomputes_without_results(tmp_path):
    text, figures = execute("memory_scaling", tmp_path,
                            LMN_TF_TABLE2=str(tmp_path / "missing.json"))
    assert "recomputed" in text
    assert figures == 1
    aucs = [float(a) for a in re.findall(r"√n = +\d+ +AUC (\S+)", text)]
    assert len(aucs) == 3 and all(0.0 < a < 1.0 for a in aucs), text


def test_memory_scaling_reads_results(tmp_path):
    table2 = tmp_path / "table2.json"  # the shape `lmn-tf experiment table2` writes
    runs = [{"row": f"√n = {k}", "model": "lmn", "hparams": {"num_keys": k}, "seed": seed,
             "metrics": {"auc": 0.7 + k / 1e4 + seed / 1e3, "logloss": 0.6, "n": 100,
                         "train_seconds": k / 10}}
            for seed in (0, 1) for k in (50, 100, 200)]
    table2.write_text(json.dumps({
        "table": "table2", "complete": True, "command": "lmn-tf experiment table2",
        "settings": {"dataset": "ml-1m", "seeds": 2, "epochs": 1, "batch_size": 1000},
        "num_train": 10_000, "num_eval": 100, "runs": runs}))
    text, figures = execute("memory_scaling", tmp_path, LMN_TF_TABLE2=str(table2))
    assert "read from" in text and figures == 1
    assert number(r"√n = +200 +AUC (\S+)", text) == pytest.approx(0.7205, abs=1e-4)
    assert number(r"√n = +200 +AUC \S+ .*step (\S+) ms", text) == pytest.approx(2000, abs=1)


def test_memory_inside(tmp_path):
    text, figures = execute("memory_inside", tmp_path)
    assert figures == 2
    assert 0.0 < number(r"slot coverage on the probe batch: (\S+)", text) <= 1.0
    assert "nearest by read-out" in text
