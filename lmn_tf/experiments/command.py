"""`lmn-tf experiment TABLE`: write a result table (``results/TABLE.md``, ``.json``, ``.png``).

Tables: ``table1`` / ``table2`` (the paper's, `lmn_tf.experiments.tables`), ``ablation``
(LMN's design choices, the same module), ``capacity`` (memorisation,
`lmn_tf.experiments.capacity`), ``spatial`` (a latent group's preferences for cold users,
`lmn_tf.experiments.spatial`). ``lmn-tf experiment TABLE --help`` lists a table's flags.

Example:
    lmn-tf experiment table1 --dataset ml-1m
"""

from __future__ import annotations

import argparse
import importlib

# table -> (module, help). Each module defines add_arguments(parser) and run(args) -> int.
TABLES: dict[str, tuple[str, str]] = {
    "table1": ("lmn_tf.experiments.tables", "every model x seeds: AUC, LogLoss, RelaImpr"),
    "table2": ("lmn_tf.experiments.tables", "LMN's AUC against the memory size √n"),
    "ablation": ("lmn_tf.experiments.tables", "LMN's open design choices"),
    "capacity": ("lmn_tf.experiments.capacity", "memorising a random preference per pair"),
    "spatial": ("lmn_tf.experiments.spatial", "similar users' preferences for cold users"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="table", required=True, metavar="TABLE")
    for name, (module, help_) in TABLES.items():
        table = sub.add_parser(name, help=help_,
                               description=importlib.import_module(module).__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        importlib.import_module(module).add_arguments(table)


def run(args: argparse.Namespace) -> int:
    return importlib.import_module(TABLES[args.table][0]).run(args)
