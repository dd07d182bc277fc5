"""LMN (Lu et al. 2025): DIN plus the large product-key memory over the behaviour sequence.

How the ranking model consumes the memory (the paper leaves it open; decided here):
1. Every unmasked history item x queries the memory with the user (the layer's user-aware
   block, ``M_Q = MLP([x, u])``; ``query_user_id=False`` leaves the id out of u) and gets
   a read-out ``M_O(x, u)`` (B, L, d_v).
2. ``target_query=True`` (default): the target item queries the memory too, with the same
   user, in the same call (appended as position L), so its read-out ``M_O(target, u)`` says
   what the global memory recalls about this user-item pair. It is concatenated to the MLP
   input and is also the attention query in step 3. No label enters a query, so this leaks
   nothing.
3. ``readout="attended"`` (default): the history read-outs are weighted by a DIN activation
   unit whose query is the target's read-out (or, with ``target_query=False``, the target
   embedding projected to d_v); ``readout="pooled"``: their masked mean instead.
4. ``history_query=False``: only the target queries (a learned user x item cross-feature
   store, one query per sample instead of L+1); the history read-outs of step 3 go away.
5. ``memory_embeddings="fixed"``: the memory is queried with its own frozen random
   embeddings of the same fields instead of the model's (which keep training), so with the
   layer's ``addressing="fixed"`` a user-item pair reads the same slots from the first step
   to the last and the values can store it (``lmn-tf experiment capacity`` measures why).
6. ``memory_pairs="target"``: each history item (with its rating) queries the memory with the
   target item in the user's place, so the memory stores a value per (history item, rating,
   target item) triple: item-to-item co-occurrence at full rank, where DIN's attention sees
   only the low-rank dot product of two embeddings. The history read-outs are then consumed
   as in step 3 (``target_query`` must be False: the target paired with itself is no pair).
7. ``readout_dropout``: dropout on the memory's features (not on DIN's) while training, so
   the MLP cannot lean on a few read-out coordinates.
8. The result is concatenated to DIN's input (user, target, DIN's attention over the raw
   sequence), so LMN = DIN + memory features; the memory loss ``alpha·SmoothL1(M_O, M_Q)`` is added
   by the layer (``memory_loss_weight`` = alpha; ``stop_gradient`` picks which side it moves).
Memory values are trained by a sparse optimizer (``sparse_variables``), the memory's queries
and keys by a slow Adam (``addressing_variables``), everything else by Adam
(``lmn_tf.train.make_optimizer``).
"""

from __future__ import annotations

import tensorflow as tf

from lmn_tf.models.attention import TargetAttention, masked_mean
from lmn_tf.models.din import DIN
from lmn_tf.models.features import PROFILE, hash_bucket

READOUTS = ("attended", "pooled")
MEMORY_EMBEDDINGS = ("shared", "fixed")
MEMORY_PAIRS = ("user", "target")
PROFILE_BUCKETS = 2**16


class LMN(DIN):
    """DIN + ``LMNLayer`` read-outs (see the module docstring for the design).

    Args:
        num_keys: √n, keys per axis (the paper's "number of memory keys"; n = num_keys²).
        top_k: slots read per query and head.
        num_heads: memory heads.
        memory_loss_weight: alpha of the memory loss.
        value_dim: d_v, width of the read-outs and of the user-aware query M_Q.
        readout: "attended" (target attention over read-outs) or "pooled" (masked mean).
        target_query: whether the target item also queries the memory.
        stop_gradient: the layer's ``memory_loss_stop_gradient``: "none" (paper), "query"
            (M_Q is a fixed target) or "readout".
        history_query: whether the history items query the memory (False: only the target).
        memory_embeddings: ``"shared"`` (the memory is queried with the model's embeddings)
            or ``"fixed"`` (with frozen random embeddings of its own, for stable addresses:
            the items', the user id's, and one per hashed profile combination).
        query_user_id: whether the memory queries see the user-id embedding (the paper's
            user-aware block sees the whole user). False gives them only the profile fields
            (gender, age, occupation, zip), which every user's samples train: a user unseen
            in training then queries like similar users instead of with a random embedding.
        memory_pairs: ``"user"`` (the paper: each item queries with the user) or ``"target"``
            (each history item queries with the target item; design point 6).
        readout_dropout: dropout rate on the memory's features into the MLP (0: none).
        memory_options: further ``LMNLayer`` keyword arguments (e.g. scoring, key_dim).
        value_store: the layer's ``ValueStore`` (e.g. Horovod's sharded store); not an hparam.
        **kwargs: ``DIN`` arguments.

    Raises:
        ValueError: on an unknown ``readout`` or ``memory_embeddings``, a
            ``readout_dropout`` outside [0, 1), an unknown ``memory_pairs`` or
            ``memory_pairs="target"`` with ``target_query`` or without ``history_query``, or
            ``history_query=False`` without ``target_query``.

    Example:
    >>> from lmn_tf.data.schema import Vocab
    >>> from lmn_tf.models.testing import random_features
    >>> v = Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    >>> LMN(v, embedding_dim=4, num_keys=8, top_k=4)(random_features(v, 2)).shape
    TensorShape([2, 1])
    """

    def __init__(self, vocab, num_keys: int = 300, top_k: int = 8, num_heads: int = 1,
                 memory_loss_weight: float = 0.1, value_dim: int = 32,
                 readout: str = "attended", target_query: bool = True,
                 stop_gradient: str = "none", query_user_id: bool = True,
                 history_query: bool = True, memory_embeddings: str = "shared",
                 memory_pairs: str = "user", readout_dropout: float = 0.0,
                 memory_options: dict | None = None,
                 attention_units=(80, 40), value_store=None, **kwargs):
        super().__init__(vocab, attention_units=attention_units, **kwargs)
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}. Received: {readout=}")
        if memory_embeddings not in MEMORY_EMBEDDINGS:
            raise ValueError(f"memory_embeddings must be one of {MEMORY_EMBEDDINGS}. "
                             f"Received: {memory_embeddings=}")
        if memory_pairs not in MEMORY_PAIRS:
            raise ValueError(f"memory_pairs must be one of {MEMORY_PAIRS}. "
                             f"Received: {memory_pairs=}")
        if memory_pairs == "target" and (target_query or not history_query):
            raise ValueError("memory_pairs='target' pairs history items with the target: it "
                             "needs history_query=True and target_query=False. Received: "
                             f"{history_query=}, {target_query=}")
        if not 0.0 <= readout_dropout < 1.0:
            raise ValueError(f"readout_dropout must be in [0, 1). Received: {readout_dropout=}")
        if not (history_query or target_query):
            raise ValueError("Something must query the memory: history_query=False needs "
                             f"target_query=True. Received: {history_query=}, {target_query=}")
        from lmn_tf.memory.layer import LMNLayer

        self.readout, self.target_query = readout, target_query
        self.query_user_id = query_user_id
        self.history_query, self.memory_embeddings = history_query, memory_embeddings
        self.memory_pairs = memory_pairs
        self.readout_dropout = tf.keras.layers.Dropout(readout_dropout, name="readout_dropout")
        if memory_embeddings == "fixed":
            from lmn_tf.models.features import FeatureStack

            self.address_features = FeatureStack(self.vocab, self.embedding_dim,
                                                 trainable=False, name="address_features")
            # One frozen vector per profile combination, not a sum of one per field: users
            # who share all but one field would otherwise query almost alike.
            self.address_profile = tf.keras.layers.Embedding(
                PROFILE_BUCKETS, self.embedding_dim, trainable=False, name="address_profile")
        # The ranking model's measured design (results/full_features) reads un-normalised
        # queries: it keeps them, and its saved runs their weights, whatever the layer's default.
        options = {"query_norm": False, **(memory_options or {})}
        self.memory = LMNLayer(num_keys=num_keys, top_k=top_k, num_heads=num_heads,
                               memory_loss_weight=memory_loss_weight, value_dim=value_dim,
                               memory_loss_stop_gradient=stop_gradient, value_store=value_store,
                               **options, name="memory")
        if readout == "attended" and history_query:
            self.memory_attention = TargetAttention(attention_units, name="memory_attention")
            if not target_query:
                self.query_projection = tf.keras.layers.Dense(value_dim, name="query_projection")

    def memory_inputs(self, features, seq, mask, item, user):
        """``(items, user, mask)`` the memory is called with (design points 1, 2, 4, 5).

        ``seq`` (B, L, d) and ``mask`` (B, L) are the history's, ``item`` (B, d) the target's,
        ``user`` (B, 5d) the user features, all the model's own embeddings of ``features``;
        with ``memory_embeddings="fixed"`` the memory's frozen tables embed the ids instead
        (history items without their ratings; the user as id + one profile vector, (B, 2d)).
        The target is the last position when it queries. With ``memory_pairs="target"`` the
        target item's embedding (B, d) takes the user's place, and fixed history embeddings
        keep their ratings (the frozen stack's rating scale and shift).
        """
        if self.memory_pairs == "target":  # no user in these queries: nothing to embed for it
            if self.memory_embeddings == "fixed":
                stack = self.address_features
                seq = stack.behaviours(features)  # (B, L, d), the rating in the address
                item = stack.item(features["item_id"])
            return seq, item, mask  # (B, L, d), (B, d), (B, L)
        if self.memory_embeddings == "fixed":
            stack = self.address_features
            seq, item = stack.item(features["hist_item_ids"]), stack.item(features["item_id"])
            profile = self.address_profile(
                hash_bucket(features, PROFILE, self.vocab, PROFILE_BUCKETS))  # (B, d)
            user = tf.concat([stack.user(features)[:, :self.embedding_dim], profile], -1)
        if not self.history_query:
            seq, mask = seq[:, :0], mask[:, :0]  # (B, 0, d): only the target below
        if self.target_query:
            seq = tf.concat([seq, item[:, None]], 1)  # (B, L+1, d)
            mask = tf.concat([mask, tf.ones_like(item[:, :1], tf.bool)], 1)
        if not self.query_user_id:  # the id's embedding comes first in both
            user = user[:, self.embedding_dim:]  # the profile: (B, 4d), or (B, d) when fixed
        return seq, user, mask

    def interest(self, features, user, target, training):
        seq, mask = self.sequence(features)  # (B, L, d), (B, L)
        item = self.target_item(target)  # (B, d)
        length = tf.shape(seq)[1] if self.history_query else 0
        items, query_user, items_mask = self.memory_inputs(features, seq, mask, item, user)
        read = self.memory(items, query_user, mask=items_mask,
                           training=training)  # (B, L(+1), d_v)
        interest = self.attention(item, seq, mask)  # DIN's, reusing seq's lookup
        out = [read[:, length]] if self.target_query else []  # (B, d_v)
        if self.history_query:
            history = read[:, :length]
            if self.readout == "pooled":
                out.append(masked_mean(history, mask))
            else:
                query = read[:, length] if self.target_query else self.query_projection(item)
                out.append(self.memory_attention(query, history, mask))
        return [interest, *(self.readout_dropout(o, training=training) for o in out)]

    def sparse_variables(self) -> list[tf.Variable]:
        return self.memory.value_variables

    def addressing_variables(self) -> list[tf.Variable]:
        return self.memory.addressing_variables
