"""Experiments that write result tables, each an ``lmn-tf experiment`` subcommand
(`command`), all written by one runner (`runner.ResultTable`: Markdown, JSON, PNG, the
command and the code version; finished cells kept on a rerun of the same command).

- ``tables``: the paper's Table 1 and Table 2, and the ablation of LMN's design choices.
- ``capacity``: memorisation, a benchmark with a known answer.
"""
