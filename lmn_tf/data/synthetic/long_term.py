"""Synthetic CTR data with a known answer: long-term interests hidden beyond the window.

The generator (all draws from one ``numpy.random.default_rng(seed)``, so it is deterministic):

- Items: ``num_topics`` topics with ``items_per_topic`` items each; an item's only genre is
  its topic (``item_genres = [topic + 1, 0, ...]``), and it has a bias ``b_i ~ N(0, 0.5²)``.
- Users: ``long_topics`` long-term topics L_u drawn per user, giving a latent affinity
  ``a_u[z] = long_weight · [z ∈ L_u] + N(0, 0.3²)`` and a bias ``b_u ~ N(0, 0.3²)``.
  Gender, age, occupation, zip and the item's year are random and carry no signal.
- Time: every user takes one step per tick, ``warmup_events + events_per_user`` ticks; the
  global order is (tick, user). A short-term topic s_u(t) drifts: each step it jumps to a
  uniform random topic with probability ``drift``.
- Exposure: the shown item's topic is s_u(t) with probability ``short_share`` (the feed
  follows the current mood), else uniform; the item is uniform within its topic.
- Click: ``p = sigmoid(bias + b_i + b_u + a_u[z] + short_weight · [z = s_u(t)])``, label ~
  Bernoulli(p); ``true_prob`` is stored with every sample.
- Features follow `lmn_tf.data.schema` exactly, computed from the event log by
  `lmn_tf.data.features.log_features` as for MovieLens; the first ``warmup_events`` steps
  only fill the histories. Clicks are not ratings: the rating side field is ``label + 1``
  (1 = shown, not clicked; 2 = clicked), so with ``history="rated"`` the sequences hold
  every shown item with its feedback, and ``history="positive"`` only the clicked ones.

``long_term="items"`` moves the long-term interest from topics to ``long_items`` items per
user (a logit boost ``long_weight`` each, no topic boost), which the feed shows again with
probability ``revisit_share`` per step: a per (user, genre) rate cannot summarise it, only a
store of what each user did with each item can.

Why the last 50 items under-represent the long-term interests: most clicks follow the
drifting mood, so the 50 latest positives hold a few long-term items among bursts of
short-lived topics that look alike; the affinity only separates from the moods over hundreds
of events. A model that sees a user's whole past (a per-user memory, SIM's 1000-item search,
the user's embedding trained on earlier samples) can estimate a_u; the 50-item window cannot.
`expected_auc(true_prob, true_prob)` is the Bayes-optimal AUC (its expectation over labels);
`expected_auc(true_prob, label)` is what the true probabilities score on the drawn labels.
"""

from __future__ import annotations

import numpy as np

from lmn_tf.data.features import PROFILE_FIELDS, log_features
from lmn_tf.data.schema import FEATURES, LABEL, Vocab
from lmn_tf.data.synthetic.known_answer import NUM_YEARS, TRUE_PROB, USER_VOCAB

LONG_TERM = ("topics", "items")  # what a user's long-term interest is about


def load(
    num_users: int = 1000,
    events_per_user: int = 300,
    warmup_events: int = 200,
    num_topics: int = 20,
    items_per_topic: int = 100,
    long_topics: int = 3,
    long_weight: float = 2.0,
    short_share: float = 0.6,
    short_weight: float = 1.0,
    drift: float = 0.1,
    bias: float = -1.5,
    split: float = 0.8,
    limit: int | None = None,
    seed: int = 0,
    history: str = "rated",
    long_term: str = "topics",
    long_items: int = 20,
    revisit_share: float = 0.2,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], Vocab]:
    """Generates synthetic CTR samples in time order, split by global time like MovieLens.

    Args:
        num_users: number of users.
        events_per_user: samples per user (after the warm-up).
        warmup_events: earlier events per user that only fill the histories.
        num_topics: topics (= genres), at most 62.
        items_per_topic: items per topic.
        long_topics: long-term topics per user.
        long_weight: logit boost of a long-term topic.
        short_share: probability that the shown item follows the user's current mood.
        short_weight: logit boost of the current mood's topic.
        drift: per-step probability that the mood jumps.
        bias: global logit offset.
        split: fraction of the samples (earliest ticks first) in the train split.
        limit: keep at most this many samples of each split (the earliest).
        seed: the random seed; equal seeds give equal arrays.
        history: "rated" (every shown item enters the sequences, with rating label + 1) or
            "positive" (only the clicked ones).
        long_term: what the long-term interest is about: ``"topics"`` (``long_topics``
            topics, a per (user, genre) rate can summarise it) or ``"items"`` (``long_items``
            items per user, spread over the topics: only a store of (user, item) can).
        long_items: with ``long_term="items"``, each user's long-term items (logit boost
            ``long_weight``).
        revisit_share: with ``long_term="items"``, probability that the shown item is one of
            the user's long-term items (so they recur, mostly beyond the window).

    Returns:
        `(train, eval, vocab)` as `lmn_tf.data.movielens.load`, each split also holding
        `TRUE_PROB` (ignored by `make_dataset`).

    Example:
        >>> from lmn_tf.data.synthetic import expected_auc
        >>> train, eval_, vocab = load(num_users=10, events_per_user=20, seed=1)
        >>> p = eval_[TRUE_PROB]
        >>> train["sim_item_ids"].shape, expected_auc(p, p) > 0.5
        ((160, 50), True)
    """
    if not 0 < long_topics < num_topics <= 62:
        raise ValueError(
            "Need 0 < long_topics < num_topics <= 62. "
            f"Received: long_topics={long_topics}, num_topics={num_topics}"
        )
    if not 0.0 < split < 1.0:
        raise ValueError(f"`split` must be in (0, 1). Received: split={split}")
    if long_term not in LONG_TERM:
        raise ValueError(f"`long_term` must be one of {LONG_TERM}. Received: {long_term=}")
    num_items = num_topics * items_per_topic
    if long_term == "items" and not (0 < long_items <= num_items
                                     and 0.0 <= revisit_share <= 1.0):
        raise ValueError("With long_term='items', need 0 < long_items <= the number of items "
                         f"and revisit_share in [0, 1]. Received: {long_items=}, "
                         f"{revisit_share=}")
    rng = np.random.default_rng(seed)
    steps = warmup_events + events_per_user
    item_bias = np.r_[0.0, rng.normal(0.0, 0.5, num_items)]
    item_year = np.r_[0, rng.integers(1, NUM_YEARS + 1, num_items)]
    user_bias = rng.normal(0.0, 0.3, num_users)
    # Drawn whatever long_term is, so that both variants share every draw before theirs.
    long_set = np.argsort(rng.random((num_users, num_topics)), axis=1)[:, :long_topics]
    affinity = rng.normal(0.0, 0.3, (num_users, num_topics))  # (U, T)
    if long_term == "topics":
        boosted = np.take_along_axis(affinity, long_set, 1) + long_weight
        np.put_along_axis(affinity, long_set, boosted, 1)
    user_feats = {k: rng.integers(1, v + 1, num_users) for k, v in USER_VOCAB.items()}
    if long_term == "items":  # drawn after the topics' draws, so "topics" data is unchanged
        favourite = 1 + np.argsort(rng.random((num_users, num_items)), 1)[:, :long_items]
        is_favourite = np.zeros((num_users, num_items + 1), bool)  # (U, items + padding)
        np.put_along_axis(is_favourite, favourite, True, 1)

    mood = rng.integers(0, num_topics, num_users)
    rows = np.arange(num_users)
    item = np.empty((steps, num_users), dtype=np.int64)  # tick-major = global time order
    prob = np.empty((steps, num_users))
    for t in range(steps):
        jump = rng.random(num_users) < drift
        mood = np.where(jump, rng.integers(0, num_topics, num_users), mood)
        follow = rng.random(num_users) < short_share
        topic = np.where(follow, mood, rng.integers(0, num_topics, num_users))
        item[t] = 1 + topic * items_per_topic + rng.integers(0, items_per_topic, num_users)
        boost = 0.0
        if long_term == "items":  # a revisit shows one of the user's long-term items
            revisit = rng.random(num_users) < revisit_share
            pick = favourite[rows, rng.integers(0, long_items, num_users)]
            item[t] = np.where(revisit, pick, item[t])
            topic = (item[t] - 1) // items_per_topic
            boost = long_weight * is_favourite[rows, item[t]]
        logit = bias + item_bias[item[t]] + user_bias + affinity[rows, topic] + boost
        prob[t] = 1.0 / (1.0 + np.exp(-(logit + short_weight * (topic == mood))))
    label = (rng.random(prob.shape) < prob).astype(np.int64)

    user = np.tile(rows + 1, steps)
    item, prob, label = item.ravel(), prob.ravel(), label.ravel()
    topic_of = np.r_[0, np.repeat(np.arange(num_topics), items_per_topic)]
    genres = np.zeros((len(topic_of), FEATURES["item_genres"][1][0]), dtype=np.int64)
    genres[1:, 0] = topic_of[1:] + 1
    out = log_features(user, item, label + 1, label,
                       profile={k: np.r_[0, user_feats[k]] for k in PROFILE_FIELDS},
                       item_genres=genres, item_year=item_year, history=history, progress=False)
    keep = slice(warmup_events * num_users, None)  # drop the warm-up ticks
    arrays = {k: v[keep] for k, v in out.items()}
    arrays[LABEL] = label[keep].astype(np.float32)
    arrays[TRUE_PROB] = prob[keep]
    cut = round(events_per_user * split) * num_users  # whole ticks: a global time cut
    train = {k: v[:cut][:limit] for k, v in arrays.items()}
    eval_ = {k: v[cut:][:limit] for k, v in arrays.items()}
    vocab = Vocab(
        num_users=num_users + 1,
        num_items=num_items + 1,
        num_genders=USER_VOCAB["user_gender"] + 1,
        num_ages=USER_VOCAB["user_age"] + 1,
        num_occupations=USER_VOCAB["user_occupation"] + 1,
        num_zips=USER_VOCAB["user_zip"] + 1,
        num_genres=num_topics + 1,
        num_years=NUM_YEARS + 1,
    )
    return train, eval_, vocab
