"""lmn-tf: the Large Memory Network (product-key memory) for recommendation, in TensorFlow.

Importing ``lmn_tf`` pins ``tf.keras`` to tf-keras (Keras 2): TensorFlow Recommenders and
Horovod's Keras integration both require it, and the choice is made once per process, the
first time anything touches ``tf.keras``. So this module sets ``TF_USE_LEGACY_KERAS=1``
before TensorFlow is imported, and refuses to run if Keras 3 already won. It imports
TensorFlow only to check that, when something imported it first: otherwise the variable
decides, and the ``lmn-tf`` command can quiet TensorFlow's start-up before it loads.
"""

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def _check_legacy_keras() -> None:
    if os.environ["TF_USE_LEGACY_KERAS"].lower() not in ("1", "true"):
        raise ImportError(
            "lmn_tf needs tf-keras: TF_USE_LEGACY_KERAS must be 1 (or unset). "
            f"Received: TF_USE_LEGACY_KERAS={os.environ['TF_USE_LEGACY_KERAS']!r}"
        )
    if "tensorflow" not in sys.modules:
        return  # tf.keras is not bound yet: TF_USE_LEGACY_KERAS=1 binds it to tf-keras
    import tensorflow as tf

    if not tf.keras.__name__.startswith("tf_keras"):
        raise ImportError(
            f"tf.keras is already bound to Keras 3 ({tf.keras.__name__}, {tf.keras.__version__}) "
            "in this process, but lmn_tf needs tf-keras (Keras 2). Import lmn_tf (or set "
            "TF_USE_LEGACY_KERAS=1) before anything touches tf.keras."
        )


_check_legacy_keras()

__all__ = ["LMNLayer"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy, so that `lmn_tf.serving` (which must not depend on model code) stays light.
    if name == "LMNLayer":
        from lmn_tf.memory.layer import LMNLayer

        return LMNLayer
    raise AttributeError(f"module 'lmn_tf' has no attribute {name!r}")
