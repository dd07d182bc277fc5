"""The ``lmn-tf`` command line: one subcommand per module, imported only when used."""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, help). Each module defines add_arguments(parser) and run(args) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("lmn_tf.demo", "train -> export -> serve -> query on MovieLens-1M (the README job)"),
    "train": ("lmn_tf.train", "train a ranking model"),
    "tune": ("lmn_tf.tuning", "choose a model's learning rate on validation, test it once"),
    "evaluate": ("lmn_tf.evaluate", "evaluate a checkpoint"),
    "experiment": ("lmn_tf.experiments.command",
                   "write a result table: the paper's Table 1 / 2, the ablation, capacity"),
    "export": ("lmn_tf.export.command", "export a checkpoint as a TF-Serving SavedModel"),
    "serve": ("lmn_tf.serving.command", "serve SavedModels over TF-Serving's REST and gRPC API"),
    "predict": ("lmn_tf.serving.predict_command", "query a TF-Serving endpoint"),
}


def main(argv: list[str] | None = None) -> int:
    """Runs one subcommand. As the command (no ``argv``: the ``lmn-tf`` script, ``python -m
    lmn_tf``) it first drops TensorFlow's start-up noise from stderr (`lmn_tf.tf_log_filter`,
    unless TF_CPP_MIN_LOG_LEVEL is set); called from Python, it leaves the caller's stderr alone.
    """
    as_command = argv is None
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="lmn-tf", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints usage / the error and exits
    name = COMMANDS[argv[0]][0]
    if argv[0] == "train" and "--horovod" in argv:
        name = "lmn_tf.distributed.fit"  # the one path that imports Horovod
    if as_command:  # before the subcommand's module imports TensorFlow
        from lmn_tf import tf_log_filter

        tf_log_filter.install()
    try:
        module = importlib.import_module(name)
    except ImportError as e:
        if name != "lmn_tf.distributed.fit":
            raise
        print(f"lmn-tf train --horovod: {e}", file=sys.stderr)  # no Horovod for this TF
        return 2
    command = argparse.ArgumentParser(prog=f"lmn-tf {argv[0]}", description=module.__doc__)
    module.add_arguments(command)
    return int(module.run(command.parse_args(argv[1:])) or 0)


if __name__ == "__main__":
    sys.exit(main())
