"""``lmn-tf export``: the latest checkpoint of a training run -> a TF-Serving version.

    lmn-tf export --run-dir runs/lmn --base-path models --model-name lmn [--version N]
                  [--values-dtype float32|float16|bfloat16]

Prints the new version directory. A MovieLens run's ``serving_default`` takes raw ids, its
vocabularies the ids of the run's training period (`run_vocabulary`). Exits 2 with a
one-line reason when the run directory is missing, has no ``config.json`` or no checkpoint
(an untrained run).
"""

from __future__ import annotations

import argparse
import os
import sys

from lmn_tf.export.saved_model import VALUES_DTYPES

WARMUP_ROWS = 64


class RunError(Exception):
    """The run directory cannot be exported (missing, no config, no checkpoint)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", required=True,
                        help="training run directory (config.json + checkpoints/)")
    parser.add_argument("--base-path", required=True, help="TF-Serving base path")
    parser.add_argument("--model-name", default="lmn", help="model name (default: lmn)")
    parser.add_argument("--version", type=int, default=None,
                        help="integer version (default: the next free one)")
    parser.add_argument("--values-dtype", choices=sorted(VALUES_DTYPES), default="float32",
                        help="storage dtype of the memory value table (default: float32)")


def check_run_dir(run_dir: str) -> None:
    """Raises ``RunError`` unless ``run_dir`` holds a config and at least one checkpoint."""
    import tensorflow as tf

    if not os.path.isdir(run_dir):
        raise RunError(f"run directory not found: {run_dir}")
    if not os.path.isfile(os.path.join(run_dir, "config.json")):
        raise RunError(f"not a training run (no config.json): {run_dir}")
    checkpoints = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(checkpoints) or tf.train.latest_checkpoint(checkpoints) is None:
        raise RunError(f"the run has no checkpoint (untrained?): {checkpoints}")


def warmup_features(model, n: int = WARMUP_ROWS) -> dict | None:
    """Warm-up rows: random valid ids over the model's vocabularies (``data.random_batches``).

    Not evaluation rows: reading them may rebuild the dataset cache (minutes) or need data
    files the export machine lacks. Random ids exercise every embedding table, the full
    sequence length and the memory, which is what warm-up is for. The library takes real
    rows through ``export_saved_model(..., warmup=...)``.
    """
    from lmn_tf.data import schema
    from lmn_tf.data.random_batches import random_arrays

    vocab = getattr(model, "vocab", None)
    if vocab is None:
        return None  # export_saved_model falls back to signature.example_features()
    return {k: v for k, v in random_arrays(vocab, n).items() if k in schema.FEATURES}


def run_vocabulary(config: dict, train_arrays: dict | None = None):
    """The raw vocabulary of a run: its dataset's ids, restricted to its training period.

    For MovieLens, `Vocabulary.from_log` of the dataset's files narrowed to the ids that
    occur in the run's training events (``train.load_data`` with the run's ``limit`` and
    ``history``, or ``train_arrays`` when the caller holds them), so an id first seen later
    maps to the unknown row. ``None`` for synthetic data (no raw ids: the export spells
    index k as ``"k"``).
    """
    from lmn_tf.data.movielens import DATASETS
    from lmn_tf.data.raw import read_log
    from lmn_tf.data.vocabulary import Vocabulary

    dataset = config.get("dataset")
    if dataset not in DATASETS:
        return None
    if train_arrays is None:
        from lmn_tf.train import history_of, load_data

        train_arrays, _, _ = load_data(dataset, config.get("limit"), progress=False,
                                       history=history_of(config))
    return Vocabulary.from_log(read_log(dataset)).restricted(train_arrays)


def run(args: argparse.Namespace) -> int:
    try:
        check_run_dir(args.run_dir)
        from lmn_tf.export.saved_model import export_saved_model
        from lmn_tf.train import load_run

        model, config = load_run(args.run_dir)
        path = export_saved_model(model, args.base_path, args.model_name, version=args.version,
                                  values_dtype=args.values_dtype,
                                  warmup=warmup_features(model),
                                  vocabulary=run_vocabulary(config))
    except (RunError, FileExistsError) as e:
        print(f"lmn-tf export: error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0
