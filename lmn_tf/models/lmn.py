"""LMN (Lu et al. 2025): DIN plus the large product-key memory over the behaviour sequence.

How the ranking model consumes the memory (the paper leaves it open; decided here):
1. ``queries`` names who queries the memory, and with what in the user's place:
   - ``"history_and_target"`` (the paper's design, ``PRESETS["paper"]``): every unmasked
     history item x queries with the user (the layer's user-aware block,
     ``M_Q = MLP([x, u])``), and so does the target item, as one extra position L in the
     same call. The target's read-out ``M_O(target, u)`` says what the global memory
     recalls about this user-item pair; it joins the MLP input and is the attention query
     of step 2. No label enters a query.
   - ``"history"``: the history items only, with the user.
   - ``"target"`` (default): the target only, with the user (a user x item cross-feature
     store, one query per sample instead of L+1): the read that stores a (user, item)
     preference, at 1/(L+1) of the paper's memory reads (README, "Does the memory
     memorise?").
   - ``"item_pairs"``: each history item (with its rating) queries with the target item in
     the user's place, so the memory stores a value per (history item, rating, target item)
     triple: item-to-item co-occurrence at full rank, where DIN's attention sees only the
     low-rank dot product of two embeddings.
   ``query_user`` says what stands for the user in u, one memory store per entry (each its
   own LMNLayer: keys, queries and values): ``"profile"`` the profile fields, so users who
   share a profile write and read the same slots; ``"profile_and_id"`` adds the user id
   (the paper), so each user addresses slots of their own and the memory stores almost
   nothing; ``"profile_and_history"`` adds the mean of the history's embeddings;
   ``"group"`` is the user's group alone: the nearest of ``user_groups`` centroids of
   history bags (``GroupRouter``, k-means), so users who browse alike, a cold user too, read
   and write the same slots. The default ``("profile", "group")`` keeps both stores, since
   a preference shared by a profile and one shared by what users browse need different keys
   (README, "Where the memory helps"); each store's read-out joins the MLP, which learns
   which to trust. ``"item_pairs"`` has no user in its queries, so it has one store.
2. ``readout="attended"`` (default): the history read-outs are weighted by a DIN activation
   unit whose query is the target's read-out, or the target embedding projected to d_v
   where the target does not query; ``readout="pooled"``: their masked mean instead.
3. ``memory_embeddings="fixed"``: the memory is queried with its own frozen random
   embeddings of the same fields instead of the model's (which keep training), so with
   ``addressing="fixed"`` a pair reads the same slots from the first step to the last and
   the values can store it (``lmn-tf experiment capacity`` measures why).
4. ``readout_dropout``: dropout on the memory's features (not on DIN's) while training, so
   the MLP cannot lean on a few read-out coordinates.
5. The result is concatenated to DIN's input (user, target, DIN's attention over the raw
   sequence), so LMN = DIN + memory features; the memory loss ``alpha·SmoothL1(M_O, M_Q)``
   is added by the layer (``memory_loss_weight`` = alpha; ``memory_loss_stop_gradient``
   picks which side it moves).
Memory values are trained by a sparse optimizer (``sparse_variables``), the memory's queries
and keys by a slow Adam (``addressing_variables``), everything else by Adam
(``lmn_tf.train.make_optimizer``). ``PRESETS`` names the measured recipes.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from lmn_tf.models.attention import TargetAttention, masked_mean
from lmn_tf.models.din import DIN
from lmn_tf.models.features import PROFILE, hash_bucket

QUERIES = ("history_and_target", "history", "target", "item_pairs")
QUERY_USERS = ("profile", "profile_and_id", "profile_and_history", "group")
READOUTS = ("attended", "pooled")
MEMORY_EMBEDDINGS = ("shared", "fixed")
PROFILE_BUCKETS = 2**16
# The default stores; run configs record them (`lmn_tf.training.run_dir.run_config`).
DEFAULT_QUERY_USER = ("profile", "group")

# Named LMN hparams of the measured recipes (README, "LMN presets"): LMN(vocab, **PRESETS[name]).
PRESETS = {
    # The paper's design (the defaults before the memory-by-default work; Table 1 and Table 2
    # measured it).
    "paper": {"queries": "history_and_target", "query_user": "profile_and_id", "num_heads": 1,
              "top_k": 8, "query_norm": False},
    # Memorisation (`lmn-tf experiment capacity`): a (profile, item) store at fixed addresses;
    # measured with values on Adagrad 0.3 from an accumulator of 1e-6 and constant rates
    # (`--values-optimizer adagrad --values-learning-rate 0.3 --values-initial-accumulator
    # 1e-6 --addressing-learning-rate none --learning-rate-decay none`).
    "capacity": {"queries": "target", "memory_embeddings": "fixed", "query_user": "profile",
                 "addressing": "fixed", "query_norm": True, "memory_loss_weight": 0.0,
                 "num_heads": 4, "top_k": 32},
    # ML-1M's validation-best variant: a (history item, rating, target) store, pooled;
    # measured with values on Adagrad 0.3 from an accumulator of 1e-6.
    "item_pairs": {"queries": "item_pairs", "memory_embeddings": "fixed",
                   "addressing": "fixed", "query_norm": True, "memory_loss_weight": 0.0,
                   "readout": "pooled", "num_heads": 1, "top_k": 8},
}
# LMNLayer arguments LMN used to take through its old ``memory_options`` dict.
_LAYER_OPTIONS = ("addressing", "query_norm")
# (history_query, target_query, memory_pairs) of the old flags -> queries.
_LEGACY_QUERIES = {(True, True, "user"): "history_and_target", (True, False, "user"): "history",
                   (False, True, "user"): "target", (True, False, "target"): "item_pairs"}


def legacy_hparams(hparams: dict) -> dict:
    """LMN ``hparams`` written by older code (a run's config.json) in today's names.

    ``history_query`` / ``target_query`` / ``memory_pairs`` become ``queries``,
    ``query_user_id`` / ``query_history`` ``query_user``;
    ``stop_gradient`` becomes ``memory_loss_stop_gradient``; ``memory_options``' entries
    become arguments, its ``trainable_keys=False`` ``addressing="fixed_keys"`` (or
    ``"fixed"`` where addressing was already fixed). Today's hparams come back unchanged.

    Raises:
        ValueError: a query combination the old code refused too, both user flags (no
            design today), or a ``memory_options`` entry that LMN no longer takes.

    Example:
    >>> legacy_hparams({"target_query": False, "stop_gradient": "query"})
    {'queries': 'history', 'memory_loss_stop_gradient': 'query'}
    >>> legacy_hparams({"query_user_id": True})
    {'query_user': 'profile_and_id'}
    >>> legacy_hparams({"memory_options": {"query_norm": True, "trainable_keys": False}})
    {'query_norm': True, 'addressing': 'fixed_keys'}
    """
    hp = dict(hparams)
    flags = {k: hp.pop(k) for k in ("history_query", "target_query", "memory_pairs") if k in hp}
    if flags:
        key = (flags.get("history_query", True), flags.get("target_query", True),
               flags.get("memory_pairs", "user"))
        if key not in _LEGACY_QUERIES:
            raise ValueError(f"No LMN design has these query flags. Received: {flags}")
        hp["queries"] = _LEGACY_QUERIES[key]
    user_flags = {k: hp.pop(k) for k in ("query_user_id", "query_history") if k in hp}
    if user_flags.get("query_user_id") and user_flags.get("query_history"):
        raise ValueError(f"No LMN design has these user flags. Received: {user_flags}")
    if user_flags:
        hp["query_user"] = ("profile_and_id" if user_flags.get("query_user_id") else
                            "profile_and_history" if user_flags.get("query_history") else
                            "profile")
    if "stop_gradient" in hp:
        hp["memory_loss_stop_gradient"] = hp.pop("stop_gradient")
    options = dict(hp.pop("memory_options", None) or {})
    if not options.pop("trainable_keys", True) and options.get("addressing") != "fixed":
        options["addressing"] = "fixed_keys"
    unknown = sorted(set(options) - set(_LAYER_OPTIONS))
    if unknown:
        raise ValueError(f"LMN takes no {unknown} (memory_options' layer arguments are now "
                         f"LMN's own: {_LAYER_OPTIONS}). Received: memory_options={options}")
    return {**hp, **options}


class LMN(DIN):
    """DIN + ``LMNLayer`` read-outs (see the module docstring for the design).

    Args:
        num_keys: √n, keys per axis (the paper's "number of memory keys"; n = num_keys²).
        top_k: slots read per query and head.
        num_heads: memory heads.
        memory_loss_weight: alpha of the memory loss.
        value_dim: d_v, width of the read-outs and of the user-aware query M_Q.
        queries: who queries the memory: ``"history_and_target"`` (the paper), ``"history"``,
            ``"target"`` (each with the user) or ``"item_pairs"`` (each history item with
            the target item in the user's place); module docstring, step 1.
        readout: "attended" (target attention over read-outs) or "pooled" (masked mean).
        memory_loss_stop_gradient: "none" (paper), "query" (M_Q is a fixed target) or
            "readout" (only M_Q moves).
        query_user: who the user is in the memory's queries, one store per entry (a string:
            one store): ``"profile"``, ``"profile_and_id"``, ``"profile_and_history"`` (+ the
            history's mean embedding) or ``"group"`` (the ``GroupRouter`` group of the
            history); module docstring, step 1.
        user_groups: C, the groups of ``"group"``.
        memory_embeddings: ``"shared"`` (queried with the model's embeddings) or ``"fixed"``
            (with frozen random embeddings of its own, for stable addresses).
        readout_dropout: dropout rate on the memory's features into the MLP (0: none).
        addressing: the layer's ``"learned"``, ``"fixed_keys"`` (frozen keys) or ``"fixed"``
            (frozen queries and keys, no gradient into the queries' inputs).
        query_norm: the layer's batch standardisation of the row and column queries.
        value_store: the layer's ``ValueStore`` (e.g. Horovod's sharded store); not an hparam.
        **kwargs: ``DIN`` arguments.

    Raises:
        ValueError: on an unknown ``queries``, ``readout``, ``query_user`` entry or
            ``memory_embeddings``, an empty or repeating ``query_user``, or a
            ``readout_dropout`` outside [0, 1) (the layer checks its own arguments).

    Example:
    >>> from lmn_tf.data.schema import Vocab
    >>> from lmn_tf.data.random_batches import random_features
    >>> v = Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    >>> LMN(v, embedding_dim=4, num_keys=8, top_k=4)(random_features(v, 2)).shape
    TensorShape([2, 1])
    """

    def __init__(self, vocab, num_keys: int = 300, top_k: int = 32, num_heads: int = 4,
                 memory_loss_weight: float = 0.1, value_dim: int = 32,
                 queries: str = "target", readout: str = "attended",
                 memory_loss_stop_gradient: str = "none",
                 query_user: str | Sequence[str] = DEFAULT_QUERY_USER,
                 user_groups: int = 316,
                 memory_embeddings: str = "shared", readout_dropout: float = 0.0,
                 addressing: str = "learned", query_norm: bool = True,
                 attention_units=(80, 40), value_store=None, **kwargs):
        super().__init__(vocab, attention_units=attention_units, **kwargs)
        users = (query_user,) if isinstance(query_user, str) else tuple(query_user)
        for arg, value, choices in (("queries", queries, QUERIES),
                                    ("readout", readout, READOUTS),
                                    *(("query_user", u, QUERY_USERS) for u in users),
                                    ("memory_embeddings", memory_embeddings,
                                     MEMORY_EMBEDDINGS)):
            if value not in choices:
                raise ValueError(f"{arg} must be one of {choices}. Received: {arg}={value!r}")
        if not users or len(set(users)) < len(users):
            raise ValueError("query_user must name one or more distinct users. "
                             f"Received: query_user={query_user!r}")
        if not 0.0 <= readout_dropout < 1.0:
            raise ValueError(f"readout_dropout must be in [0, 1). Received: {readout_dropout=}")
        from lmn_tf.memory.layer import LMNLayer

        self.queries, self.readout = queries, readout
        self.history_queries = queries != "target"  # the history items query
        self.target_queries = queries in ("history_and_target", "target")  # so does the target
        # item_pairs queries have the target item in the user's place: one store
        self.query_users = users[:1] if queries == "item_pairs" else users
        self.memory_embeddings = memory_embeddings
        if "group" in self.query_users:
            from lmn_tf.models.group_router import GroupRouter

            self.group_router = GroupRouter(  # replicas' k-means sums meet in the value store
                user_groups, value_store=value_store, name="group_router")
            self.group_embedding = tf.keras.layers.Embedding(
                user_groups, self.embedding_dim, trainable=memory_embeddings == "shared",
                name="group_embedding")
        self.readout_dropout = tf.keras.layers.Dropout(readout_dropout, name="readout_dropout")
        if memory_embeddings == "fixed":
            from lmn_tf.models.features import FeatureStack

            self.address_features = FeatureStack(self.vocab, self.embedding_dim,
                                                 trainable=False, name="address_features")
            # One frozen vector per profile combination, not a sum of one per field: users
            # who share all but one field would otherwise query almost alike.
            self.address_profile = tf.keras.layers.Embedding(
                PROFILE_BUCKETS, self.embedding_dim, trainable=False, name="address_profile")
        # Store i is named "memory" (i = 0, so checkpoints and exports of one store keep their
        # paths) or "memory_<user>"; a layer owns its value store, so each gets a fresh copy.
        self.memories = [
            LMNLayer(num_keys=num_keys, top_k=top_k, num_heads=num_heads,
                     memory_loss_weight=memory_loss_weight, value_dim=value_dim,
                     memory_loss_stop_gradient=memory_loss_stop_gradient,
                     addressing=addressing, query_norm=query_norm,
                     value_store=value_store if i == 0 or value_store is None else
                     type(value_store).from_config(value_store.get_config()),
                     name="memory" if i == 0 else f"memory_{user}")
            for i, user in enumerate(self.query_users)]
        self.memory = self.memories[0]
        if readout == "attended" and self.history_queries:
            self.memory_attentions = [
                TargetAttention(attention_units, name="memory_attention" if i == 0 else
                                f"memory_attention_{user}")
                for i, user in enumerate(self.query_users)]
            if not self.target_queries:
                self.query_projection = tf.keras.layers.Dense(value_dim, name="query_projection")

    def memory_inputs(self, features, seq, mask, item, user, training=False):
        """``(items, users, mask)`` the memory stores are called with (design points 1, 3).

        ``seq`` (B, L, d) and ``mask`` (B, L) are the history's, ``item`` (B, d) the target's,
        ``user`` (B, 5d) the user features, all the model's own embeddings of ``features``;
        with ``memory_embeddings="fixed"`` the memory's frozen tables embed the ids instead
        (history items without their ratings; the user as id + one profile vector, (B, 2d)).
        ``users`` holds one (B, d_u) user per store, in ``query_users``' order. The target is
        the last position when it queries. With ``queries="item_pairs"`` the target item's
        embedding (B, d) takes the user's place, and fixed history embeddings keep their
        ratings (the frozen stack's rating scale and shift).
        """
        if self.queries == "item_pairs":  # no user in these queries: nothing to embed for it
            if self.memory_embeddings == "fixed":
                stack = self.address_features
                seq = stack.behaviours(features)  # (B, L, d), the rating in the address
                item = stack.item(features["item_id"])
            return seq, [item], mask  # (B, L, d), [(B, d)], (B, L)
        if self.memory_embeddings == "fixed":
            stack = self.address_features
            seq, item = stack.item(features["hist_item_ids"]), stack.item(features["item_id"])
            profile = self.address_profile(
                hash_bucket(features, PROFILE, self.vocab, PROFILE_BUCKETS))  # (B, d)
            user = tf.concat([stack.user(features)[:, :self.embedding_dim], profile], -1)
        users = [self._query_user(name, features, seq, mask, user, training)
                 for name in self.query_users]
        if not self.history_queries:
            seq, mask = seq[:, :0], mask[:, :0]  # (B, 0, d): only the target below
        if self.target_queries:
            seq = tf.concat([seq, item[:, None]], 1)  # (B, L+1, d)
            mask = tf.concat([mask, tf.ones_like(item[:, :1], tf.bool)], 1)
        return seq, users, mask

    def _query_user(self, name, features, seq, mask, user, training):
        """The (B, d_u) user of the store keyed by ``name``; ``user`` is (id, profile...)."""
        if name == "group":  # k-means moves while training
            return self.group_embedding(self.group_router(features["hist_item_ids"], mask,
                                                          training=training))  # (B, d)
        if name == "profile_and_id":
            return user
        profile = user[:, self.embedding_dim:]  # (B, 4d), or (B, d) when fixed
        if name == "profile_and_history":
            return tf.concat([profile, masked_mean(seq, mask)], -1)  # (B, ... + d)
        return profile

    def interest(self, features, user, target, training):
        seq, mask = self.sequence(features)  # (B, L, d), (B, L)
        item = self.target_item(target)  # (B, d)
        length = tf.shape(seq)[1] if self.history_queries else 0
        items, users, items_mask = self.memory_inputs(features, seq, mask, item, user, training)
        out = []
        for i, (memory, query_user) in enumerate(zip(self.memories, users, strict=True)):
            read = memory(items, query_user, mask=items_mask,
                          training=training)  # (B, L(+1), d_v)
            if self.target_queries:
                out.append(read[:, length])  # (B, d_v)
            if self.history_queries:
                history = read[:, :length]
                if self.readout == "pooled":
                    out.append(masked_mean(history, mask))
                else:
                    query = (read[:, length] if self.target_queries else
                             self.query_projection(item))
                    out.append(self.memory_attentions[i](query, history, mask))
        interest = self.attention(item, seq, mask)  # DIN's, reusing seq's lookup
        return [interest, *(self.readout_dropout(o, training=training) for o in out)]

    def sparse_variables(self) -> list[tf.Variable]:
        return [v for memory in self.memories for v in memory.value_variables]

    def addressing_variables(self) -> list[tf.Variable]:
        return [v for memory in self.memories for v in memory.addressing_variables]

    @property
    def num_slots(self) -> int:
        """Slots of all stores together, the id space of ``read_slots(features)``."""
        return sum(memory.num_slots for memory in self.memories)

    def read_slots(self, features: dict, store: str | None = None) -> tf.Tensor:
        """The slots (B, L', H, K) the memory's queries of ``features`` read (-1: a padded
        query), inference path, no memory loss added: ``lmn_tf.memory.diagnostics``' input.

        ``store`` names one store by its ``query_user`` entry (its own slot ids); None: every
        store, stacked on the head axis (B, L', S·H, K), store s's slot j as ``s·n + j``.
        """
        if store is not None and store not in self.query_users:
            raise ValueError(f"store must be one of {self.query_users}. Received: {store=}")
        seq, mask = self.sequence(features)  # (B, L, d), (B, L)
        item = self.target_item(self.features.target(features))  # (B, d)
        items, users, mask = self.memory_inputs(features, seq, mask, item,
                                                self.features.user(features))
        reads, offset = [], 0
        for name, memory, user in zip(self.query_users, self.memories, users, strict=True):
            if store in (None, name):
                weight, memory.memory_loss_weight = memory.memory_loss_weight, 0.0
                try:
                    slots = memory(items, user, mask=mask, return_slots=True)[1]
                finally:
                    memory.memory_loss_weight = weight
                reads.append(slots if store else tf.where(slots < 0, slots, slots + offset))
            offset += memory.num_slots
        return tf.concat(reads, axis=2)
