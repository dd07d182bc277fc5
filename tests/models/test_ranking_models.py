"""Every model builds, returns (B, 1) logits, trains, and beats a constant predictor."""

import numpy as np
import pytest
import tensorflow as tf

from lmn_tf import ctr_metrics
from lmn_tf import data as lmn_data
from lmn_tf.data import schema, synthetic
from lmn_tf.data.random_batches import random_features, zero_features
from lmn_tf.memory import SparseAdam
from lmn_tf.models import MODELS, build_model
from lmn_tf.models.lmn import PRESETS, QUERIES
from lmn_tf.train import make_optimizer

TINY = {"embedding_dim": 8, "hidden_units": (16,)}
TINY_BY_MODEL = {
    "din": {"attention_units": (8,)},
    "sim": {"attention_units": (8,)},
    "mimn": {"attention_units": (8,), "num_slots": 2},
    "lmn": {"attention_units": (8,), "num_keys": 8, "top_k": 4, "value_dim": 8},
}


@pytest.fixture(scope="module")
def tiny_data():
    train, _, vocab = synthetic.load(num_users=100, events_per_user=30, warmup_events=50,
                                     num_topics=5, items_per_topic=20, seed=0)
    return train, vocab


def _model(name, vocab, **extra):
    tf.keras.utils.set_random_seed(0)
    return build_model(name, vocab, **{**TINY, **TINY_BY_MODEL.get(name, {}), **extra})


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_trains_and_beats_constant_predictor(name, tiny_data):
    train, vocab = tiny_data
    model = _model(name, vocab)
    out = model(random_features(vocab, 3), training=False)
    assert out.shape == (3, 1) and out.dtype == tf.float32
    model.compile(optimizer=make_optimizer(model, 1e-2, 0.1))
    before = [w.numpy().copy() for w in model.trainable_variables]
    ds = lmn_data.make_dataset(train, 128, shuffle=True, seed=0)
    history = model.fit(ds.take(2), verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    after = [w.numpy() for w in model.trainable_variables]
    changed = [not np.array_equal(b, a) for b, a in zip(before, after, strict=True)]
    assert sum(changed) > len(changed) // 2  # two steps moved the weights
    model.fit(ds, epochs=3, verbose=0)
    labels, logits = ctr_metrics.predict(model, lmn_data.make_dataset(train, 512), verbose=0)
    metrics = ctr_metrics.score(labels, logits)
    p = labels.mean()
    constant = -(p * np.log(p) + (1 - p) * np.log(1 - p))  # LogLoss of the best constant
    assert metrics["auc"] > 0.6, metrics
    assert metrics["logloss"] < constant, (metrics, constant)


def test_unknown_model_names_the_choices():
    with pytest.raises(ValueError, match="Received: name='nope'"):
        build_model("nope", schema.Vocab(2, 2, 2, 2, 2, 2, 2, 2))


def test_base_ignores_the_sequence_and_din_does_not():
    vocab = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    f = random_features(vocab, 4)
    g = {**f, "hist_item_ids": tf.zeros_like(f["hist_item_ids"])}
    base, din = _model("base", vocab), _model("din", vocab)
    np.testing.assert_allclose(base(f), base(g))
    assert not np.allclose(din(f), din(g))


def test_sim_reads_the_searched_long_history():
    vocab = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    f = random_features(vocab, 4)
    g = {**f, "sim_item_ids": tf.zeros_like(f["sim_item_ids"])}
    sim = _model("sim", vocab)
    assert not np.allclose(sim(f), sim(g))


def _other_ratings(f, side):
    r = f[side]
    return {**f, side: tf.where(r > 0, r % (schema.NUM_RATINGS - 1) + 1, 0)}  # 5 -> 1, else +1


@pytest.mark.parametrize("name", ["pooling", "din", "sim", "mimn", "lmn"])
def test_sequence_models_read_the_ratings_unless_feedback_is_off(name):
    vocab = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    f = random_features(vocab, 4)
    g = _other_ratings(f, "hist_ratings")
    model, plain = _model(name, vocab), _model(name, vocab, feedback=False)
    assert not np.allclose(model(f), model(g))
    np.testing.assert_array_equal(plain(f), plain(g))
    assert not any("rating" in v.name for v in plain.variables)
    if name == "sim":  # the searched long history carries its ratings too
        assert not np.allclose(model(f), model(_other_ratings(f, "sim_ratings")))


def test_behaviours_keep_the_width_and_refuse_non_sequences():
    vocab = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    f = random_features(vocab, 4)
    seq = _model("din", vocab).features.behaviours(f, "hist_item_ids")  # (B, L, d)
    assert seq.shape == (4, schema.SEQ_LEN, 8)
    with pytest.raises(ValueError, match="Received: name='item_id'"):
        _model("din", vocab).features.behaviours(f, "item_id")


@pytest.mark.parametrize("variant", [
    {"readout": "pooled"}, *({"queries": q} for q in QUERIES),
    {"queries": "history", "readout": "pooled"}, {"addressing": "fixed_keys"},
    {"memory_loss_stop_gradient": "query", "memory_loss_weight": 0.0},
    *({**PRESETS[name], "num_keys": 8, "top_k": 4} for name in PRESETS)])
def test_lmn_variants_build(variant):
    vocab = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    model = _model("lmn", vocab, **variant)
    assert model(random_features(vocab, 2)).shape == (2, 1)
    # a memory loss per store (both default stores; item_pairs has one)
    stores = 1 if variant.get("queries") == "item_pairs" or "query_user" in variant else 2
    assert len(model.memories) == stores
    assert len(model.losses) == (0 if variant.get("memory_loss_weight") == 0.0 else stores)


@pytest.mark.parametrize("queries, history, target, projection", [
    ("history_and_target", True, True, False), ("history", True, False, True),
    ("target", False, True, False), ("item_pairs", True, False, True)])
def test_lmn_queries_name_who_queries_the_memory(queries, history, target, projection):
    vocab = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    model = _model("lmn", vocab, queries=queries)
    f = random_features(vocab, 4)
    _, mask = model.sequence(f)
    _, users, items_mask = model.memory_inputs(f, *model.sequence(f),
                                               model.features.item(f["item_id"]),
                                               model.features.user(f))
    expected = [mask] * history + [tf.ones((4, 1), tf.bool)] * target
    np.testing.assert_array_equal(items_mask, tf.concat(expected, 1))
    # the target item (one store), or by default the profile fields and the history's group
    d = model.embedding_dim
    widths = [d] if queries == "item_pairs" else [4 * d, d]
    assert [u.shape for u in users] == [(4, w) for w in widths]
    assert [m.name for m in model.memories] == ["memory", "memory_group"][:len(widths)]
    _, *reads = model.interest(f, model.features.user(f), model.features.target(f), False)
    # per store: the target's read-out, the history's summary
    assert len(reads) == len(widths) * (history + target)
    assert hasattr(model, "query_projection") == projection
    assert len(getattr(model, "memory_attentions", [])) == history * len(widths)


def test_lmn_addressing_and_query_norm_reach_the_layer():
    vocab = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    default = _model("lmn", vocab).memory
    assert (default.addressing, default.query_norm) == ("learned", True)  # the layer's
    layer = _model("lmn", vocab, addressing="fixed_keys", query_norm=False,
                   memory_loss_stop_gradient="readout").memory
    assert (layer.addressing, layer.query_norm, layer.memory_loss_stop_gradient) == (
        "fixed_keys", False, "readout")


def test_lmn_rejects_unknown_readout():
    with pytest.raises(ValueError, match="readout"):
        _model("lmn", schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10), readout="max")


def test_lmn_values_get_sparse_adam_addressing_a_slow_adam_and_only_read_rows_move():
    vocab = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    model = _model("lmn", vocab, num_keys=16)
    model(zero_features(1))
    tables = model.sparse_variables()  # one per store: the profile's, the group's
    assert [v.ref() for v in tables] == [m.value_variables[0].ref() for m in model.memories]
    assert len(tables) == 2 and all(v.shape == (256, 8) for v in tables)
    addressing = {v.ref() for v in model.addressing_variables()}
    for memory in model.memories:
        assert {memory.row_keys.ref(), memory.col_keys.ref()} <= addressing
    assert not {v.ref() for v in tables} & addressing
    optimizer = make_optimizer(model, 1e-3, 0.1, addressing_learning_rate=1e-4)
    sparse_adam, slow, adam = optimizer.optimizers
    assert isinstance(sparse_adam, SparseAdam) and sparse_adam.learning_rate == 0.1
    assert type(slow) is tf.keras.optimizers.legacy.Adam and slow.learning_rate == 1e-4
    assert type(adam) is tf.keras.optimizers.legacy.Adam and adam.learning_rate == 1e-3
    model.compile(optimizer=optimizer)
    f = random_features(vocab, 2)
    model(f, training=True)  # seeds the group router, so the reads below are the step's
    before = [v.numpy().copy() for v in tables]
    items, users, mask = model.memory_inputs(f, *model.sequence(f),
                                             model.features.item(f["item_id"]),
                                             model.features.user(f))
    # training=True: query_norm standardises with the batch's moments, as the step does
    reads = [memory(items, user, mask=mask, return_slots=True, training=True)[1]
             for memory, user in zip(model.memories, users, strict=True)]
    model.train_on_batch(f)
    for old, values, slots in zip(before, tables, reads, strict=True):
        moved = np.flatnonzero(np.any(old != values.numpy(), axis=1))
        read = np.unique(slots.numpy()[slots.numpy() >= 0])
        assert len(moved) > 0 and set(moved) <= set(read)


def test_decay_stops_the_adam_parts_after_decay_steps_and_the_values_keep_learning():
    vocab = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    model = _model("lmn", vocab, num_keys=16)
    model(zero_features(1))
    optimizer = make_optimizer(model, 1e-2, 0.1, addressing_learning_rate=1e-3, decay_steps=2)
    model.compile(optimizer=optimizer)
    f = random_features(vocab, 16)
    # cosine: full rate at step 0, half at step 1 (of 2), 0 from step 2 on
    _, slow, adam = optimizer.optimizers
    assert [float(adam._decayed_lr(tf.float32)), float(slow._decayed_lr(tf.float32))] == [
        pytest.approx(1e-2), pytest.approx(1e-3)]
    model.train_on_batch(f)
    model.train_on_batch(f)
    tables = model.sparse_variables()  # both stores' values
    rest = [v for v in model.trainable_variables if v.ref() not in {t.ref() for t in tables}]
    before = [v.numpy().copy() for v in rest], [t.numpy().copy() for t in tables]
    model.train_on_batch(f)
    for v, b in zip(rest, before[0], strict=True):
        np.testing.assert_array_equal(v.numpy(), b, err_msg=v.name)  # lr 0: no step
    assert all(np.any(t.numpy() != b) for t, b in zip(tables, before[1], strict=True))
    with pytest.raises(ValueError, match="decay_steps must be positive"):
        make_optimizer(model, 1e-2, 0.1, decay_steps=0)


@pytest.mark.parametrize("start", [0.1, 1e-10])
def test_values_initial_accumulator_reaches_adagrad(start):
    vocab = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    model = _model("lmn", vocab, num_keys=16, query_user="profile")  # one store
    model(zero_features(1))
    (values,) = model.sparse_variables()
    optimizer = make_optimizer(model, 1e-3, 0.1, values_optimizer="adagrad",
                               values_initial_accumulator=start)
    model.compile(optimizer=optimizer)
    before = values.numpy().copy()
    # 16 rows: with 2, a row read by one item alone gets a gradient near lr's scale.
    model.train_on_batch(random_features(vocab, 16))
    step = np.abs(values.numpy() - before).max()
    accumulator = optimizer.optimizers[0].get_slot(values, "accumulator").numpy()
    untouched = ~np.any(before != values.numpy(), axis=1)
    assert untouched.any()
    np.testing.assert_array_equal(accumulator[untouched], np.float32(start))
    # Adagrad's first step is lr·g / sqrt(start + g²): about lr when start << g², and far
    # below it for tf-keras' default start of 0.1 (a batch-mean gradient is small).
    assert step == pytest.approx(0.1, rel=0.02) if start < 1e-8 else step < 0.05


@pytest.mark.parametrize("query_user", ["profile_and_id", "profile"])
def test_lmn_memory_queries_see_the_user_id_only_if_asked(query_user):
    vocab = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    model = _model("lmn", vocab, query_user=query_user)
    f = random_features(vocab, 4)
    other = {**f, "user_id": f["user_id"] % (vocab.num_users - 1) + 1}  # every id changes
    assert not np.any(other["user_id"].numpy() == f["user_id"].numpy())

    def memory_features(feats):  # DIN's attention ignores the user; the read-outs follow it
        return tf.concat(model.interest(feats, model.features.user(feats),
                                        model.features.target(feats), False), -1).numpy()

    same = np.allclose(memory_features(f), memory_features(other), atol=1e-6)
    assert same != (query_user == "profile_and_id")


def test_base_uses_plain_adam():
    model = _model("base", schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10))
    assert isinstance(make_optimizer(model, 1e-3, 0.1), tf.keras.optimizers.legacy.Adam)


def test_tape_fn_wraps_the_training_tape():
    vocab = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    model = _model("pooling", vocab)
    wrapped = []
    model.tape_fn = lambda tape: wrapped.append(tape) or tape
    model.compile(optimizer=make_optimizer(model, 1e-3, 0.1))
    model.fit(lmn_data.make_dataset(
        {k: v.numpy() for k, v in random_features(vocab, 8).items()}, 4), verbose=0)
    assert wrapped  # traced through make_tape at least once


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_reads_the_statistics_unless_off(name):
    vocab = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    f = random_features(vocab, 4)
    g = {**f, "user_pos_rate": f["user_pos_rate"] + 0.5}
    model, plain = _model(name, vocab), _model(name, vocab, statistics=False)
    assert not np.allclose(model(f), model(g))
    np.testing.assert_array_equal(plain(f), plain(g))


def test_lmn_target_only_queries_with_frozen_address_embeddings():
    vocab = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    model = _model("lmn", vocab, num_keys=16, queries="target", memory_embeddings="fixed",
                   query_user="profile", addressing="fixed")
    f = random_features(vocab, 4)
    items, (user,), mask = model.memory_inputs(f, *model.sequence(f),
                                               model.features.item(f["item_id"]),
                                               model.features.user(f))
    assert items.shape[1] == 1 and mask.shape == (4, 1)
    assert user.shape[1] == model.embedding_dim  # the profile combination only
    np.testing.assert_allclose(items[:, 0], model.address_features.item(f["item_id"]))
    model.compile(optimizer=make_optimizer(model, 1e-2, 0.3, values_optimizer="adagrad",
                                           values_initial_accumulator=1e-6))
    frozen = [w.numpy() for w in model.address_features.weights]
    model.train_on_batch(f)
    for before, w in zip(frozen, model.address_features.weights, strict=True):
        np.testing.assert_array_equal(before, w.numpy())  # addresses never drift


def test_lmn_rejects_unknown_queries_and_embeddings():
    vocab = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    with pytest.raises(ValueError, match=r"queries must be one of .* Received: queries='user'"):
        build_model("lmn", vocab, queries="user")
    with pytest.raises(ValueError, match="memory_embeddings must be one of"):
        build_model("lmn", vocab, memory_embeddings="learned")
    with pytest.raises(ValueError, match=r"query_user must be one of .* Received: query_user='id'"):
        build_model("lmn", vocab, query_user="id")
    with pytest.raises(ValueError, match=r"query_user must be one of .* query_user='id'"):
        build_model("lmn", vocab, query_user=("profile", "id"))
    for users in ((), ("group", "group")):
        with pytest.raises(ValueError, match=r"one or more distinct users\. Received: "):
            build_model("lmn", vocab, query_user=users)


def test_lmn_item_pairs_query_with_the_target_and_the_rating():
    vocab = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    model = _model("lmn", vocab, num_keys=16, queries="item_pairs", memory_embeddings="fixed",
                   addressing="fixed")
    f = random_features(vocab, 4)
    items, (user,), mask = model.memory_inputs(f, *model.sequence(f),
                                               model.features.item(f["item_id"]),
                                               model.features.user(f))
    assert len(model.memories) == 1  # the target in the user's place: one store
    np.testing.assert_array_equal(mask, f["hist_item_ids"].numpy() != 0)  # no target slot
    np.testing.assert_allclose(user, model.address_features.item(f["item_id"]))
    np.testing.assert_allclose(items, model.address_features.behaviours(f))
    rerated = {**f, "hist_ratings": tf.where(f["hist_ratings"] > 0,
                                             f["hist_ratings"] % 5 + 1, 0)}
    moved, _, _ = model.memory_inputs(rerated, *model.sequence(rerated),
                                      model.features.item(f["item_id"]), model.features.user(f))
    assert not np.allclose(items, moved)  # the same item rated otherwise: another address
    retarget = {**f, "item_id": f["item_id"] % (vocab.num_items - 1) + 1}
    assert not np.allclose(model(f), model(retarget))


def test_lmn_readout_dropout_acts_in_training_only():
    vocab = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    f = random_features(vocab, 8)
    # no query_norm: its batch moments (training) and moving ones would differ besides dropout
    model = _model("lmn", vocab, readout_dropout=0.5, query_norm=False)
    user, target = model.features.user(f), model.features.target(f)
    din, *reads = model.interest(f, user, target, training=True)
    din_eval, *reads_eval = model.interest(f, user, target, training=False)
    np.testing.assert_allclose(din, din_eval, atol=1e-6)  # DIN's interest: never dropped
    for dropped, kept in zip(reads, reads_eval, strict=True):
        zero = dropped.numpy() == 0
        assert 0.2 < zero.mean() < 0.8
        np.testing.assert_allclose(dropped.numpy()[~zero], 2 * kept.numpy()[~zero], rtol=1e-5)
    with pytest.raises(ValueError, match="readout_dropout must be in"):
        build_model("lmn", vocab, readout_dropout=1.0)


def test_cross_ids_separate_profiles_and_items():
    vocab = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    model = build_model("cross", vocab, embedding_dim=4, cross_buckets=1 << 20)
    f = random_features(vocab, 64)
    ids = model.cross_ids(f).numpy()
    combos = {tuple(int(f[k][j]) for k in ("user_gender", "user_age", "user_occupation",
                                            "user_zip", "item_id")) for j in range(64)}
    assert len(set(ids)) == len(combos) and ids.min() >= 0 and ids.max() < 1 << 20
    with pytest.raises(ValueError, match="cross_buckets"):
        build_model("cross", vocab, cross_buckets=0)


def test_cross_with_the_user_separates_users_of_one_profile():
    vocab = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    f = random_features(vocab, 8)
    profile = ("user_gender", "user_age", "user_occupation", "user_zip")
    same = {**f, **{k: tf.ones_like(f[k]) for k in profile},
            "item_id": tf.fill(f["item_id"].shape, 3), "user_id": tf.range(1, 9)}
    by_user = build_model("cross", vocab, cross_with="user").cross_ids(same).numpy()
    by_profile = build_model("cross", vocab).cross_ids(same).numpy()
    assert len(set(by_user)) == 8 and len(set(by_profile)) == 1
    with pytest.raises(ValueError, match="cross_with"):
        build_model("cross", vocab, cross_with="group")


@pytest.mark.parametrize("query_history", [True, False])
def test_lmn_target_query_sees_the_history_only_if_asked(query_history):
    vocab = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    model = _model("lmn", vocab, query_norm=False,
                   query_user="profile_and_history" if query_history else "profile")
    f = random_features(vocab, 4)
    other = {**f, "hist_item_ids": f["hist_item_ids"] % (vocab.num_items - 1) + 1}
    _, (user,), _ = model.memory_inputs(f, *model.sequence(f),
                                        model.features.item(f["item_id"]),
                                        model.features.user(f))
    assert user.shape == (4, (4 + query_history) * model.embedding_dim)  # profile (+ history)

    def target_read(feats):
        return model.interest(feats, model.features.user(feats), model.features.target(feats),
                              False)[1].numpy()

    assert np.allclose(target_read(f), target_read(other), atol=1e-6) != query_history


def test_lmn_group_query_user_is_the_history_group_alone():
    # query_user="group": the memory sees the user only through their history's group, so a
    # new user id with a new profile reads what the user with the same history reads.
    vocab = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    model = _model("lmn", vocab, query_user="group", user_groups=3, query_norm=False)
    f = random_features(vocab, 6)
    model(f, training=True)  # seeds the router's centroids with these histories
    assert model.group_router.assigned.numpy().sum() == 6
    stranger = {**f, "user_id": f["user_id"] % (vocab.num_users - 1) + 1,
                **{k: f[k] % (n - 1) + 1 for k, n in (("user_gender", vocab.num_genders),
                                                        ("user_age", vocab.num_ages))}}
    assert not np.any(stranger["user_id"].numpy() == f["user_id"].numpy())

    def memory_features(feats):
        return tf.concat(model.interest(feats, model.features.user(feats),
                                        model.features.target(feats), False), -1).numpy()

    np.testing.assert_allclose(memory_features(stranger), memory_features(f), atol=1e-6)
    groups = model.group_router(f["hist_item_ids"], f["hist_item_ids"] != 0).numpy()
    assert len(set(groups)) > 1  # the histories route to more than one group


@pytest.mark.parametrize("query_user, fields", [
    ("profile", 4), ("profile_and_id", 5), ("profile_and_history", 5), ("group", 1)])
def test_lmn_query_user_widths(query_user, fields):
    # u of the memory's queries, in embeddings of width d: 4 profile fields, the id, the
    # history's mean, the group's
    vocab = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    model = _model("lmn", vocab, query_user=query_user, user_groups=3)
    f = random_features(vocab, 4)
    _, (user,), _ = model.memory_inputs(f, *model.sequence(f),
                                        model.features.item(f["item_id"]),
                                        model.features.user(f))
    assert user.shape == (4, fields * model.embedding_dim)


def test_lmn_read_slots_stack_the_stores_with_offset_ids():
    vocab = schema.Vocab(10, 20, 3, 8, 22, 100, 19, 10)
    model = _model("lmn", vocab, num_keys=4, top_k=2, user_groups=3)
    f = random_features(vocab, 5)
    model(f, training=True)
    n = model.memory.num_slots
    assert model.num_slots == 2 * n
    both = model.read_slots(f).numpy()  # (B, 1, 2H, K): the profile store's heads first
    profile, group = (model.read_slots(f, store=s).numpy() for s in ("profile", "group"))
    heads = profile.shape[2]
    np.testing.assert_array_equal(both[:, :, :heads], profile)
    np.testing.assert_array_equal(both[:, :, heads:], group + n)
    assert group.min() >= 0 and group.max() < n
    with pytest.raises(ValueError, match="store must be one of"):
        model.read_slots(f, store="profile_and_id")
