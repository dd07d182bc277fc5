"""Tasks with a random preference per (group, item) pair: memorising it, and reaching it
for a user whose group shows only in what they browse.

``A[g, i] = ±1`` at random for every pair (a full-rank table: no embedding of the group and
of the item separately can express it, a store of the pairs can); a sample of group g and
item i is a click with probability ``sigmoid(strength·A[g, i] + b_i)``. ``memorisation``
gives the group as the user's profile; ``spatial`` hides it in the user's history.
"""

from __future__ import annotations

import numpy as np

from lmn_tf.data.features import log_features
from lmn_tf.data.schema import FEATURES, LABEL, SEQ_LEN, Vocab
from lmn_tf.data.synthetic.known_answer import GROUP, NUM_YEARS, TRUE_PROB, USER_VOCAB

MEMORISATION_MAX_GROUPS = 2 * 7 * 21 * 100  # every (gender, age, occupation, zip) once


def _check_positive(sizes: dict) -> None:
    for arg, value in sizes.items():
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"`{arg}` must be a positive int. Received: {arg}={value!r}")


def _pair_probabilities(rng, num_groups: int, num_items: int, strength: float,
                        item_bias_std: float) -> np.ndarray:
    """(G, I) click probability ``sigmoid(strength·A[g, i] + b_i)``, A = ±1 at random."""
    prefer = rng.choice(np.array([-1.0, 1.0]), size=(num_groups, num_items))  # A (G, I)
    logit = strength * prefer + rng.normal(0.0, item_bias_std, num_items)
    return 1.0 / (1.0 + np.exp(-logit))


def _pairs(rng, num_pairs: int, exposures: int, eval_samples: int) -> np.ndarray:
    """Every pair ``exposures`` times in a random order, then ``eval_samples`` uniform ones."""
    pair = rng.permutation(np.repeat(np.arange(num_pairs), exposures))
    return np.r_[pair, rng.integers(0, num_pairs, eval_samples)]


def _group_profile(code: np.ndarray) -> dict[str, np.ndarray]:
    """One (gender, age, occupation, zip), 0-based, per group code < MEMORISATION_MAX_GROUPS."""
    return {"user_gender": code % 2, "user_age": code // 2 % 7,
            "user_occupation": code // 14 % 21, "user_zip": code // 294}


def _one_genre(num_items: int) -> np.ndarray:
    """Item genres where every item has genre 1 (row 0: padding)."""
    genres = np.zeros((num_items + 1, FEATURES["item_genres"][1][0]), np.int64)
    genres[1:, 0] = 1
    return genres


def _pairs_vocab(num_users: int, num_items: int) -> Vocab:
    return Vocab(num_users=num_users + 1, num_items=num_items + 1, num_genders=3, num_ages=8,
                 num_occupations=22, num_zips=101, num_genres=2, num_years=NUM_YEARS + 1)


def memorisation(
    num_groups: int = 100,
    num_items: int = 1000,
    exposures: int = 20,
    users_per_group: int = 10,
    strength: float = 1.5,
    item_bias_std: float = 0.5,
    eval_samples: int = 200_000,
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], Vocab]:
    """A memorisation task with a known answer: a random preference per (group, item) pair.

    ``A[g, i]`` is +1 or -1 independently for every pair (a full-rank table: no embedding of
    the group and of the item separately can express it, a store of the pairs can), and a
    sample of group g and item i is a click with probability
    ``sigmoid(strength·A[g, i] + b_i)``, ``b_i ~ N(0, item_bias_std²)``. A user's group is
    visible through their profile: group g has its own (gender, age, occupation, zip), and
    ``users_per_group`` users share it. Training holds every pair exactly ``exposures``
    times (each time with a random user of the group) in a random order; evaluation follows
    in time with ``eval_samples`` fresh pairs drawn uniformly. Items carry no genre or year
    signal (one genre, random years). Every feature comes from the event log through
    ``features.log_features`` as for ``load`` (ratings = label + 1), so every model and the
    export run on this data unchanged.

    Args:
        num_groups: user groups, at most ``MEMORISATION_MAX_GROUPS``.
        num_items: items; the task has ``num_groups · num_items`` pairs.
        exposures: training samples of every pair.
        users_per_group: users sharing a group's profile.
        strength: logit weight of the pair's preference.
        item_bias_std: std of the item biases.
        eval_samples: evaluation samples.
        seed: the random seed; equal seeds give equal arrays.

    Returns:
        `(train, eval, vocab)` as ``load``, both splits holding ``TRUE_PROB``;
        ``expected_auc(p, p)`` of the eval split's ``TRUE_PROB`` is the Bayes-optimal AUC.

    Raises:
        ValueError: on a non-positive size or too many groups.

    Example:
        >>> train, eval_, vocab = memorisation(num_groups=4, num_items=5, exposures=2,
        ...                                    eval_samples=10)
        >>> len(train["label"]), len(eval_["label"]), vocab.num_items
        (40, 10, 6)
    """
    _check_positive({"num_groups": num_groups, "num_items": num_items, "exposures": exposures,
                     "users_per_group": users_per_group, "eval_samples": eval_samples})
    if num_groups > MEMORISATION_MAX_GROUPS:
        raise ValueError(f"`num_groups` must be <= {MEMORISATION_MAX_GROUPS} (one profile per "
                         f"group). Received: num_groups={num_groups}")
    rng = np.random.default_rng(seed)
    prob_of = _pair_probabilities(rng, num_groups, num_items, strength, item_bias_std)
    n_train = num_groups * num_items * exposures
    pair = _pairs(rng, num_groups * num_items, exposures, eval_samples)
    group, item = pair // num_items, pair % num_items  # 0-based
    user = 1 + group * users_per_group + rng.integers(0, users_per_group, len(pair))
    prob = prob_of[group, item]
    label = (rng.random(len(pair)) < prob).astype(np.int64)

    of_group = _group_profile(np.arange(num_groups))
    profile = {k: np.r_[0, np.repeat(v + 1, users_per_group)] for k, v in of_group.items()}
    # One genre for all: SIM's search over any window returns the latest events, so a
    # window of SEQ_LEN gives what LONG_SEQ_LEN would, minutes faster.
    arrays = log_features(user, item + 1, label + 1, label, profile=profile,
                          item_genres=_one_genre(num_items),
                          item_year=np.r_[0, rng.integers(1, NUM_YEARS + 1, num_items)],
                          sim_window=SEQ_LEN, progress=False)
    arrays[LABEL] = label.astype(np.float32)
    arrays[TRUE_PROB] = prob
    train = {k: v[:n_train] for k, v in arrays.items()}
    eval_ = {k: v[n_train:] for k, v in arrays.items()}
    return train, eval_, _pairs_vocab(num_groups * users_per_group, num_items)


def spatial(
    num_groups: int = 100,
    num_items: int = 1000,
    exposures: int = 20,
    users_per_group: int = 20,
    cold_users_per_group: int = 5,
    taste_size: int = 50,
    history_noise: float = 0.2,
    strength: float = 1.5,
    item_bias_std: float = 0.5,
    eval_samples: int = 200_000,
    group_in_profile: bool = False,
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], Vocab]:
    """Similar users' knowledge for a cold user: a preference per (latent group, item) pair.

    As in ``memorisation``, ``A[g, i] = ±1`` at random and a sample of group g and item i is
    a click with probability ``sigmoid(strength·A[g, i] + b_i)``; but the group is no
    feature: a user shows it only through what they browse. Each group has a taste set of
    ``taste_size`` items; a browse event shows an item of the user's taste set (with
    probability ``1 - history_noise``, else a uniform item) and is a click. Every user first
    browses ``SEQ_LEN`` items, and browses once more before each of their samples, so half of
    a history window is browsing; browse events enter the histories but are not samples.
    Profiles are random (``group_in_profile=True``: one profile per group instead, the
    oracle's input: a profile x item store is then a (group, item) store). Training holds
    every pair ``exposures`` times, each with a random one of the group's
    ``users_per_group`` warm users; evaluation follows in time with ``eval_samples`` uniform
    pairs, each with a random user of the group, warm or one of ``cold_users_per_group``
    users who have no training sample (``lmn_tf.ctr_metrics``' warm/cold split finds them).

    Args:
        num_groups: latent user groups; the task has ``num_groups · num_items`` pairs.
        num_items: items.
        exposures: training samples of every pair.
        users_per_group: warm users per group.
        cold_users_per_group: users per group seen only in evaluation.
        taste_size: items in a group's taste set (drawn independently per group).
        history_noise: share of browse events outside the taste set.
        strength: logit weight of the pair's preference.
        item_bias_std: std of the item biases.
        eval_samples: evaluation samples.
        group_in_profile: give every user their group's profile (the oracle's input).
        seed: the random seed; equal seeds give equal arrays.

    Returns:
        `(train, eval, vocab)` as ``load``, both splits holding ``TRUE_PROB`` and ``GROUP``
        (for diagnostics; ``make_dataset`` drops both); ``expected_auc(p, p)`` of the eval
        split's ``TRUE_PROB`` is the Bayes-optimal AUC of a model that knows the group.

    Raises:
        ValueError: on a non-positive size, ``taste_size > num_items``, a noise outside
            [0, 1], or more groups than profiles with ``group_in_profile``.

    Example:
        >>> train, eval_, vocab = spatial(num_groups=3, num_items=10, exposures=2,
        ...                               users_per_group=2, cold_users_per_group=1,
        ...                               taste_size=4, eval_samples=10)
        >>> len(train["label"]), len(eval_["label"]), vocab.num_users
        (60, 10, 10)
    """
    _check_positive({"num_groups": num_groups, "num_items": num_items, "exposures": exposures,
                     "users_per_group": users_per_group, "taste_size": taste_size,
                     "eval_samples": eval_samples})
    if not isinstance(cold_users_per_group, int) or cold_users_per_group < 0:
        raise ValueError("`cold_users_per_group` must be a non-negative int. "
                         f"Received: cold_users_per_group={cold_users_per_group!r}")
    if taste_size > num_items:
        raise ValueError(f"`taste_size` must be <= num_items ({num_items}). "
                         f"Received: taste_size={taste_size}")
    if not 0.0 <= history_noise <= 1.0:
        raise ValueError(f"`history_noise` must be in [0, 1]. Received: {history_noise=}")
    if group_in_profile and num_groups > MEMORISATION_MAX_GROUPS:
        raise ValueError(f"With group_in_profile, `num_groups` must be <= "
                         f"{MEMORISATION_MAX_GROUPS}. Received: num_groups={num_groups}")
    rng = np.random.default_rng(seed)
    prob_of = _pair_probabilities(rng, num_groups, num_items, strength, item_bias_std)
    taste = np.argsort(rng.random((num_groups, num_items)), 1)[:, :taste_size]  # (G, T)
    per_group = users_per_group + cold_users_per_group  # users g·per_group + 1 ... (g+1)·...
    num_users = num_groups * per_group
    group_of = np.repeat(np.arange(num_groups), per_group)  # user index - 1 -> group

    n_train = num_groups * num_items * exposures
    pair = _pairs(rng, num_groups * num_items, exposures, eval_samples)
    group, item = pair // num_items, pair % num_items
    slot = np.r_[rng.integers(0, users_per_group, n_train),  # eval: warm or cold users
                 rng.integers(0, per_group, eval_samples)]
    user = 1 + group * per_group + slot
    label = (rng.random(len(pair)) < prob_of[group, item]).astype(np.int64)

    def browse(users):  # one browse event (0-based item) per user
        own = taste[group_of[users - 1], rng.integers(0, taste_size, len(users))]
        return np.where(rng.random(len(users)) < history_noise,
                        rng.integers(0, num_items, len(users)), own)

    first = np.repeat(np.arange(1, num_users + 1), SEQ_LEN)  # every user's first window
    log_user = np.r_[first, np.stack([user, user], 1).ravel()]  # (browse, sample) per sample
    log_item = np.r_[browse(first), np.stack([browse(user), item], 1).ravel()]
    is_sample = np.r_[np.zeros(len(first), bool), np.tile([False, True], len(pair))]
    log_label = np.ones(len(log_user), np.int64)
    log_label[is_sample] = label

    fields = {k: rng.integers(0, v, num_users) for k, v in USER_VOCAB.items()}
    if group_in_profile:  # drawn all the same, so the two datasets differ in profiles only
        fields = _group_profile(group_of)
    profile = {k: np.r_[0, v + 1] for k, v in fields.items()}
    arrays = log_features(log_user, log_item + 1, log_label + 1, log_label, profile=profile,
                          item_genres=_one_genre(num_items),
                          item_year=np.r_[0, rng.integers(1, NUM_YEARS + 1, num_items)],
                          sim_window=SEQ_LEN, progress=False)
    arrays = {k: v[is_sample] for k, v in arrays.items()}
    arrays[LABEL] = label.astype(np.float32)
    arrays[TRUE_PROB] = prob_of[group, item]
    arrays[GROUP] = group
    train = {k: v[:n_train] for k, v in arrays.items()}
    eval_ = {k: v[n_train:] for k, v in arrays.items()}
    return train, eval_, _pairs_vocab(num_users, num_items)
