"""The result-table runner every experiment writes through: the three files, the command
and code version in them, and what a rerun keeps."""

import json

from lmn_tf.experiments import runner


def _markdown(doc: dict) -> str:
    rows = "".join(f"| {r['row']} | {r['auc']} |\n" for r in doc["runs"])
    return f"Command: `{doc['command']}`\n{rows}"


def _plot(doc: dict, path) -> None:
    path.write_bytes(b"png of %d runs" % len(doc["runs"]))


def _table(stem, command: str) -> runner.ResultTable:
    return runner.ResultTable(stem, command, key=lambda r: r["row"], markdown=_markdown,
                              plot=_plot, fields={"settings": {"seeds": 1}},
                              summary=lambda doc: {"rows": len(doc["runs"])})


def test_cells_are_written_as_they_come_and_kept_by_the_same_command(tmp_path):
    stem = tmp_path / "out" / "t"
    table = _table(stem, "lmn-tf experiment t --a 1")
    table.add({"row": "x", "auc": 0.7})  # a table killed here keeps x
    doc = json.loads(stem.with_suffix(".json").read_text())
    assert doc["runs"] == [{"row": "x", "auc": 0.7}] and not doc["complete"]
    assert doc["command"] == "lmn-tf experiment t --a 1" and doc["code"] == runner.code_version()
    assert doc["settings"] == {"seeds": 1} and doc["summary"] == {"rows": 1}
    assert stem.with_suffix(".png").read_bytes() == b"png of 1 runs"
    assert "| x | 0.7 |" in stem.with_suffix(".md").read_text()

    again = _table(stem, "lmn-tf experiment t --a 1")
    assert again.done("x") == {"row": "x", "auc": 0.7} and again.done("y") is None
    again.add({"row": "y", "auc": 0.8})
    md = again.finish()
    doc = json.loads(stem.with_suffix(".json").read_text())
    assert [r["row"] for r in doc["runs"]] == ["x", "y"] and doc["complete"]
    assert md == stem.with_suffix(".md").read_text() and "| y | 0.8 |" in md

    other = _table(stem, "lmn-tf experiment t --a 2")  # another command: a fresh table
    assert other.done("x") is None and other.results["runs"] == []
    assert sorted(p.name for p in stem.parent.iterdir()) == ["t.json", "t.md", "t.png"]
