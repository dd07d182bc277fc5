"""The memory memorises: a random preference per (group, item) pair that only a store of the
pairs can hold (issue 15's task, at 2,000 pairs so it runs in seconds).

Base (group + item embeddings into an MLP) cannot express a full-rank +-1 table; LMNLayer with
fixed addressing over frozen random embeddings of the pair's ids must close most of the
Base -> Bayes gap, and must stop doing so when its values stop learning.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import lmn_tf
from lmn_tf.data.synthetic import expected_auc

G, NI, EXPOSURES = 40, 50, 20


def _task(seed=0):
    rng = np.random.default_rng(seed)
    prob = 1 / (1 + np.exp(-(1.5 * rng.choice([-1.0, 1.0], (G, NI)) + rng.normal(0, 0.5, NI))))
    pair = rng.permutation(np.repeat(np.arange(G * NI), EXPOSURES))
    test = rng.integers(0, G * NI, 50_000)
    draw = [(p // NI, p % NI, (rng.random(len(p)) < prob[p // NI, p % NI]).astype(np.float32))
            for p in (pair, test)]
    return draw, prob[test // NI, test % NI]


class _Model(tf.keras.Model):
    def __init__(self, memory: bool):
        super().__init__()
        self.group, self.item = tf.keras.layers.Embedding(G, 32), tf.keras.layers.Embedding(NI, 32)
        # The memory's own frozen embeddings: an address that never drifts.
        self.address = [tf.keras.layers.Embedding(n, 32, trainable=False) for n in (G, NI)]
        self.memory = memory and lmn_tf.LMNLayer(
            num_keys=64, top_k=8, num_heads=4, addressing="fixed", query_norm=True,
            memory_loss_weight=0.0)
        self.mlp = tf.keras.Sequential([tf.keras.layers.Dense(64, "relu"),
                                        tf.keras.layers.Dense(1)])

    def call(self, inputs, training=False):
        g, i = inputs
        h = [self.group(g), self.item(i)]
        if self.memory:
            items = self.address[1](i)[:, None]  # (B, 1, 32)
            h.append(self.memory(items, self.address[0](g), training=training)[:, 0])
        return self.mlp(tf.concat(h, -1))[:, 0]


def _gap_closed_by(memory: bool, values_lr=0.3, initial_accumulator=1e-6) -> float:
    tf.keras.utils.set_random_seed(0)
    ((g, i, y), (tg, ti, ty)), p = _task()
    results = {}
    for name, use in (("base", False), ("model", memory)):
        model = _Model(use)
        model((g[:1], i[:1]))
        values = model.memory.value_variables if use else []
        dense = [v for v in model.trainable_variables if all(v is not w for w in values)]
        adam = tf.keras.optimizers.legacy.Adam(3e-3)
        adagrad = tf.keras.optimizers.legacy.Adagrad(
            values_lr, initial_accumulator_value=initial_accumulator)

        @tf.function
        def step(g, i, y, model=model, dense=dense, values=values, adam=adam, adagrad=adagrad):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
                    y, model((g, i), training=True)))
            grads = tape.gradient(loss, dense + values)
            adam.apply_gradients(zip(grads[:len(dense)], dense, strict=True))
            if values:
                adagrad.apply_gradients(zip(grads[len(dense):], values, strict=True))

        for s in range(0, len(y), 256):
            step(g[s:s + 256], i[s:s + 256], y[s:s + 256])
        results[name] = expected_auc(model((tg, ti)).numpy(), ty)
    bayes = expected_auc(p, ty)
    return (results["model"] - results["base"]) / (bayes - results["base"])


def test_the_memory_stores_the_pairs():
    assert _gap_closed_by(memory=True) > 0.5


@pytest.mark.parametrize("values_lr, initial_accumulator", [(0.0, 1e-6), (0.05, 0.1)],
                         ids=["values-frozen", "old-adagrad-start"])
def test_without_learning_values_it_stores_nothing(values_lr, initial_accumulator):
    assert _gap_closed_by(True, values_lr, initial_accumulator) < 0.25
