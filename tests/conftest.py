"""Shared test set-up: tf-keras before TensorFlow, quiet logs, deterministic seeds."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import lmn_tf  # noqa: F401  (binds tf.keras to tf-keras before any test module)
