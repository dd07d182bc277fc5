"""Export a training run as a TF-Serving SavedModel (same as ``lmn-tf export``).

    python export/export_model.py --run-dir runs/lmn --base-path models --model-name lmn \
        [--version N] [--values-dtype float32|float16|bfloat16]

The code lives in ``lmn_tf.export``; this script only forwards its arguments.
"""

import sys

from lmn_tf.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
