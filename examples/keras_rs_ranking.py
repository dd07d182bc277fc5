"""A Keras 3 ranking model with Keras-RS layers and the LMN memory, on MovieLens.

Built the Keras 3 way: a functional model whose behaviour-history items query
``lmn_tf.keras3.LMNLayer`` with the user, a Keras-RS ``FeatureCross`` (DCN) over the user,
the target item and the pooled memory read-out, an MLP, then ``model.fit`` with
``MemoryAdam`` (the memory's three-rate recipe, the Adam rates decaying over the run). Then
it exports a SavedModel with ``model.export``, serves it with ``lmn-tf serve``, queries five
evaluation events over REST and gRPC and checks the served scores against the in-process
ones (within 1e-5).

    pip install "lmn-tf[keras3]"
    python examples/keras_rs_ranking.py              # ML-1M: 200k training, 50k eval events
    python examples/keras_rs_ranking.py --small      # ML-100K, 2,000 / 500 events (CI)

Prints the eval AUC, the served and in-process scores; exits 1 if they differ.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

import keras
import keras_rs
import numpy as np

import lmn_tf  # noqa: F401  (binds tf.keras to tf-keras; `import keras` stays Keras 3)
from lmn_tf.data import movielens, schema
from lmn_tf.keras3 import LMNLayer, MemoryAdam
from lmn_tf.serving import (
    ServerProcess,
    ServingError,
    model_status_rest,
    predict_grpc,
    predict_rest,
)

INPUTS = ("user_id", "user_gender", "user_age", "user_occupation", "item_id",
          "hist_item_ids", "hist_ratings")
BATCH = 256
TOLERANCE = 1e-5  # served vs in-process: the same graph, float32 on both sides


def build_model(vocab: schema.Vocab, num_keys: int, dim: int = 32) -> keras.Model:
    """User, target item and rated history -> click logit."""
    inputs = {name: keras.Input(schema.FEATURES[name][1], dtype="int32", name=name)
              for name in INPUTS}
    items = keras.layers.Embedding(vocab.num_items, dim, name="item_embedding")
    user = keras.layers.Add(name="user")([
        keras.layers.Embedding(size, dim, name=f"{name}_embedding")(inputs[name])
        for name, size in (("user_id", vocab.num_users), ("user_gender", vocab.num_genders),
                           ("user_age", vocab.num_ages),
                           ("user_occupation", vocab.num_occupations))])
    # A behaviour reads as its item, shifted by the rating the user gave it.
    ratings = keras.layers.Embedding(schema.NUM_RATINGS, dim, name="rating_embedding")
    history = keras.layers.Add()([items(inputs["hist_item_ids"]), ratings(inputs["hist_ratings"])])
    mask = keras.ops.not_equal(inputs["hist_item_ids"], 0)
    read = LMNLayer(num_keys=num_keys, top_k=8, name="memory")(history, user, mask=mask)
    weights = keras.ops.expand_dims(keras.ops.cast(mask, "float32"), -1)
    pooled = keras.ops.sum(read * weights, 1) / keras.ops.maximum(keras.ops.sum(weights, 1), 1.0)
    x = keras.layers.Concatenate()([user, items(inputs["item_id"]), pooled])
    x = keras_rs.layers.FeatureCross(projection_dim=dim)(x, x)
    x = keras.layers.Dense(64, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(1, name="logit")(x), name="lmn_keras_rs")


def wait_until_available(url: str, name: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if any(v["state"] == "AVAILABLE"
                   for v in model_status_rest(url, name)["model_version_status"]):
                return
        except (ServingError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"model {name!r} never became AVAILABLE at {url}")


def _fmt(values: np.ndarray) -> str:
    return " ".join(f"{v:+.5f}" for v in values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true",
                        help="ML-100K, 2,000 training / 500 eval events, √n = 32 (CI)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--workdir", type=pathlib.Path, default=None,
                        help="where the export and the server log go (default: a temp dir)")
    args = parser.parse_args(argv)
    dataset, limit, eval_limit, num_keys = (("ml-100k", 2_000, 500, 32) if args.small
                                            else ("ml-1m", 200_000, 50_000, 300))
    keras.utils.set_random_seed(0)
    # The latest `limit` training events and the first `eval_limit` after them.
    train, test, vocab = movielens.load(dataset, progress=False)
    train = {k: v[-limit:] for k, v in train.items()}
    test = {k: v[:eval_limit] for k, v in test.items()}
    x, y = {k: train[k] for k in INPUTS}, train[schema.LABEL]
    x_test, y_test = {k: test[k] for k in INPUTS}, test[schema.LABEL]

    model = build_model(vocab, num_keys)
    steps = args.epochs * -(-len(y) // BATCH)  # the Adam rates decay to 0 over the run
    model.compile(optimizer=MemoryAdam(1e-3, values_learning_rate=0.03,
                                       addressing_learning_rate=1e-4, decay_steps=steps),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True),
                  metrics=[keras.metrics.AUC(from_logits=True, name="auc")])
    model.fit(x, y, batch_size=BATCH, epochs=args.epochs, verbose=2)
    auc = model.evaluate(x_test, y_test, batch_size=1024, verbose=0, return_dict=True)["auc"]
    print(f"{dataset}: {len(y)} training events, eval AUC {auc:.4f} on {len(y_test)} events")

    workdir = args.workdir or pathlib.Path(tempfile.mkdtemp(prefix="lmn-keras-rs-"))
    model.export(str(workdir / "models" / "lmn_keras_rs" / "1"), verbose=False)
    rows = {k: v[:5] for k, v in x_test.items()}
    want = model.predict(rows, verbose=0)[:, 0]
    with ServerProcess(["--model-base-path", str(workdir / "models" / "lmn_keras_rs"),
                        "--model-name", "lmn_keras_rs"], str(workdir / "server.log")) as server:
        wait_until_available(server.rest, "lmn_keras_rs")
        served = {"REST": predict_rest(server.rest, "lmn_keras_rs", rows),
                  "gRPC": predict_grpc(server.grpc, "lmn_keras_rs", rows)}
        server.stop()
    worst = 0.0
    for protocol, outputs in served.items():
        (got,) = outputs.values()
        diff = float(np.max(np.abs(got[:, 0] - want)))
        worst = max(worst, diff)
        print(f"{protocol:5s} served logits {_fmt(got[:, 0])}  max |diff| {diff:.1e}")
    print(f"in-process logits  {_fmt(want)}")
    if worst > TOLERANCE:
        print(f"served and in-process scores differ by {worst:.1e} > {TOLERANCE}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
