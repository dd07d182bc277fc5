"""One way to write a result table: ``STEM.md`` + ``STEM.json`` (+ ``STEM.png``), each naming
the command that made it and the code version, rewritten after every finished cell.

A table is a list of cells (one trained run each). An experiment asks `ResultTable.done` for
a cell's key before running it, and `ResultTable.add`s the result when it has it: the files
are rewritten then, so a killed experiment keeps what it finished, and the same command run
again skips those cells and runs only the rest (another command starts a fresh table).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import time
from collections.abc import Callable, Hashable

from lmn_tf import checkpointing


def code_version() -> str | None:
    """``git describe`` of the checkout this package runs from (a table says which code made
    it), None outside a git checkout."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=10, cwd=pathlib.Path(__file__).parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return f"commit {out.stdout.strip()}" if out.returncode == 0 else None


class ResultTable:
    """The files of one result table, and the cells a rerun of its command keeps.

    Args:
        stem: the files' path without suffix (``results/table1``); its folder is created.
        command: the command line that makes this table; a rerun keeps the finished cells
            only when it is the same.
        key: a cell's identity, from its record (``(row, seed)``).
        markdown: the table as Markdown, from the results document.
        plot: draws the results document to a PNG path, or None for no figure.
        fields: more of the results document (settings, data sizes), set on every write.
        summary: derived fields written to the JSON beside the records (``{"summary":
            ...}``), or None.

    Attributes:
        results: the document the JSON holds: ``command``, ``code``, ``runs`` (one record a
            cell), ``complete``, ``wall_seconds`` and ``fields``.
    """

    def __init__(self, stem: str | pathlib.Path, command: str,
                 key: Callable[[dict], Hashable], markdown: Callable[[dict], str],
                 plot: Callable[[dict, pathlib.Path], None] | None = None,
                 fields: dict | None = None, summary: Callable[[dict], dict] | None = None):
        self.stem, self.key = pathlib.Path(stem), key
        self._markdown, self._plot, self._summary = markdown, plot, summary
        self.stem.parent.mkdir(parents=True, exist_ok=True)
        self._start, self._earlier = time.time(), 0.0  # seconds the kept cells took
        self.results = {**(fields or {}), "command": command, "code": code_version(),
                        "runs": [], "complete": False, "wall_seconds": 0.0}
        previous = self.stem.with_suffix(".json")
        finished = json.loads(previous.read_text()) if previous.is_file() else {}
        if isinstance(finished, dict) and finished.get("command") == command:
            self.results["runs"] = finished["runs"]
            self._earlier = finished.get("wall_seconds", 0.0)

    def done(self, key: Hashable) -> dict | None:
        """The record of a cell this command already finished, or None."""
        return next((r for r in self.results["runs"] if self.key(r) == key), None)

    def add(self, record: dict) -> None:
        """Records a finished cell and rewrites the files."""
        self.results["runs"].append(record)
        self.write()

    def finish(self) -> str:
        """Marks the table complete, rewrites the files; returns the Markdown."""
        self.results["complete"] = True
        return self.write()

    def write(self) -> str:
        """Rewrites JSON, Markdown and figure (each atomically); returns the Markdown."""
        self.results["wall_seconds"] = self._earlier + time.time() - self._start
        doc = self.results
        if self._summary is not None:
            doc = {**doc, "summary": self._summary(doc)}
        md = self._markdown(doc)
        checkpointing.atomic_write(self.stem.with_suffix(".json"), json.dumps(doc, indent=2) + "\n")
        checkpointing.atomic_write(self.stem.with_suffix(".md"), md)
        if self._plot is not None and doc["runs"]:
            png = self.stem.with_suffix(".png")
            tmp = png.with_name(png.name + ".tmp.png")
            self._plot(doc, tmp)
            tmp.replace(png)
        return md
