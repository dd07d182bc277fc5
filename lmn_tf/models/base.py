"""The ranking-model skeleton every model shares, and Base: a DNN on user + target item.

A model is a ``tfrs.models.Model``: ``call`` predicts logits (B, 1), ``compute_loss`` trains
with ``tfrs.tasks.Ranking`` (binary cross-entropy on logits, AUC metric). Subclasses only add
sequence representations in ``interest``; the shared ``FeatureStack`` and MLP head stay the
same, so the models differ exactly in how they read the user's behaviour.

``train_step`` is TFRS's, with one seam: the gradient tape comes from ``self.make_tape()``,
so distributed training can wrap it (e.g. ``model.tape_fn = hvd.DistributedGradientTape``)
without re-implementing the step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import tensorflow as tf
import tensorflow_recommenders as tfrs

from lmn_tf.data import schema
from lmn_tf.models.features import FeatureStack


class RankingModel(tfrs.models.Model):
    """Shared features + ``interest`` + MLP head -> click logit.

    Args:
        vocab: ``schema.Vocab`` (or a dict of its fields) sizing the embedding tables.
        embedding_dim: width of every embedding (32 in the paper).
        hidden_units: widths of the prediction MLP (DIN's 200-80).
        dropout: dropout rate after each hidden layer.
        l2: L2 penalty on looked-up embedding rows.
        feedback: sequence items carry their ratings (``FeatureStack``); False reads the item
            ids alone (the paper's models).
        statistics: the running statistics (``schema.STATISTICS``) join the MLP input;
            False leaves them out (the paper's models).

    Call arguments:
        features: dict of ``schema.FEATURES`` tensors (extra keys such as the label are
            ignored).
        training: Python bool.

    Returns:
        (B, 1) float32 logits.
    """

    tape_fn: Callable[[], tf.GradientTape] | None = None

    def __init__(self, vocab: schema.Vocab | dict, embedding_dim: int = 32,
                 hidden_units: tuple[int, ...] = (200, 80), dropout: float = 0.0,
                 l2: float = 0.0, feedback: bool = True, statistics: bool = True, **kwargs):
        super().__init__(**kwargs)
        if embedding_dim <= 0:
            raise ValueError(f"embedding_dim must be positive. Received: {embedding_dim=}")
        self.vocab = dataclasses.asdict(vocab) if dataclasses.is_dataclass(vocab) else dict(vocab)
        self.embedding_dim, self.use_statistics = embedding_dim, statistics
        self.features = FeatureStack(self.vocab, embedding_dim, l2=l2, feedback=feedback,
                                     name="features")
        self.hidden = [tf.keras.layers.Dense(u, activation="relu", name=f"mlp_{i}")
                       for i, u in enumerate(hidden_units)]
        self.dropout = tf.keras.layers.Dropout(dropout)
        self.logit = tf.keras.layers.Dense(1, name="logit")
        self.task = tfrs.tasks.Ranking(
            loss=tf.keras.losses.BinaryCrossentropy(from_logits=True),
            metrics=[tf.keras.metrics.AUC(from_logits=True, name="auc")])

    def interest(self, features: dict, user: tf.Tensor, target: tf.Tensor,
                 training: bool) -> list[tf.Tensor]:
        """Sequence representations to concatenate to user + target; none for Base."""
        return []

    def sequence(self, features: dict, name: str = "hist_item_ids"):
        """(feedback-aware behaviours (B, L, d), mask (B, L)) of a sequence."""
        return self.features.behaviours(features, name), features[name] != 0

    def call(self, features: dict, training: bool = False) -> tf.Tensor:
        # Keras converts NumPy values of the dict but not Python lists.
        features = {k: v if tf.is_tensor(v) else tf.convert_to_tensor(v)
                    for k, v in features.items()}
        user = self.features.user(features)  # (B, 5d)
        target = self.features.target(features)  # (B, 3d); [:, :d] is the item id embedding
        stats = [self.features.statistics(features)] if self.use_statistics else []  # (B, S)
        h = tf.concat([user, target, *stats, *self.interest(features, user, target, training)],
                      -1)
        for layer in self.hidden:
            h = self.dropout(layer(h), training=training)
        return self.logit(h)  # (B, 1)

    def compute_loss(self, features, training: bool = False) -> tf.Tensor:
        # A dict holding the label (make_dataset), or Keras' (features, label[, weight]) tuple.
        if isinstance(features, tuple | list):
            features, labels = features[0], (features[1] if len(features) > 1 else None)
            if labels is not None:
                features = {**features, schema.LABEL: labels}
        labels = tf.reshape(tf.cast(features[schema.LABEL], tf.float32), (-1, 1))
        return self.task(labels=labels, predictions=self(features, training=training))

    def sparse_variables(self) -> list[tf.Variable]:
        """Variables for the sparse optimizer (LMN's memory values); the rest get Adam."""
        return []

    def addressing_variables(self) -> list[tf.Variable]:
        """Variables for the slow Adam (LMN's memory queries and keys; see make_optimizer)."""
        return []

    def make_tape(self) -> tf.GradientTape:
        """The tape of one training step; set ``tape_fn`` to wrap it (Horovod)."""
        tape = tf.GradientTape()
        return self.tape_fn(tape) if self.tape_fn is not None else tape

    def train_step(self, inputs):
        # TFRS's train_step with the tape made overridable (see the module docstring).
        tape = self.make_tape()
        with tape:
            loss = self.compute_loss(inputs, training=True)
            regularization_loss = tf.reduce_sum([tf.reduce_sum(x) for x in self.losses])
            total_loss = loss + regularization_loss
        gradients = tape.gradient(total_loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables, strict=True))
        metrics = {m.name: m.result() for m in self.metrics}
        metrics.update(loss=loss, regularization_loss=regularization_loss, total_loss=total_loss)
        return metrics


class Base(RankingModel):
    """The DNN baseline: MLP on the user and target-item embeddings, no behaviour sequence.

    Example:
    >>> from lmn_tf.data.schema import Vocab
    >>> from lmn_tf.data.random_batches import random_features
    >>> v = Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    >>> Base(v, embedding_dim=4)(random_features(v, 2)).shape
    TensorShape([2, 1])
    """
