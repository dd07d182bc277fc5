"""Synthetic CTR data with a known answer, in the schema of every dataset.

- ``load``: long-term interests hidden beyond the 50-item window (``long_term``).
- ``memorisation``: a random preference per (group, item) pair, the group in the profile.
- ``spatial``: the same preference, the group shown only by what a user browses; cold users.

Every sample stores ``TRUE_PROB``; ``expected_auc(p, p)`` is the Bayes-optimal AUC.
"""

from lmn_tf.data.synthetic.known_answer import GROUP, TRUE_PROB, expected_auc
from lmn_tf.data.synthetic.long_term import load
from lmn_tf.data.synthetic.pairs import MEMORISATION_MAX_GROUPS, memorisation, spatial

__all__ = ["GROUP", "MEMORISATION_MAX_GROUPS", "TRUE_PROB", "expected_auc", "load",
           "memorisation", "spatial"]
