"""Bounds on a REST request body as JSON: nesting depth (the converters recurse once per
level; a tensor has at most 64 dimensions here, numpy's limit) and lone UTF-16 surrogate
escapes (``"\\ud800"``: ``json`` accepts them, but they cannot become UTF-8 for a proto
string or a tensor; rapidjson refuses them too).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

# Deeper documents are refused.
MAX_DEPTH = 100
_STEP = np.zeros(256, np.int32)  # byte -> its change of bracket depth
_STEP[list(b"[{")], _STEP[list(b"]}")] = 1, -1
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def may_hold_surrogate(body: bytes) -> bool:
    """The body has an escape of a surrogate: the only way a lone one gets in (cheap)."""
    return _SURROGATE_ESCAPE.search(body) is not None


def max_depth_bound(body: bytes) -> int:
    """Bracket depth counting brackets inside strings too: an upper bound, vectorised.

    Every request pays this, so the common case is two C-speed counts: a body with at most
    MAX_DEPTH opening brackets cannot nest deeper. (np.isin here cost a quarter of the
    server's CPU at 1-row requests: it sorts on every call.)
    """
    opening = body.count(b"[") + body.count(b"{")
    if opening <= MAX_DEPTH:
        return opening
    return int(np.cumsum(_STEP[np.frombuffer(body, np.uint8)]).max(initial=0))


def depth_over(body: bytes) -> bool:
    """The exact depth (brackets in strings skipped) exceeds MAX_DEPTH."""
    depth, in_string, escaped = 0, False, False
    for c in body.decode("utf-8", errors="replace"):
        if in_string:
            escaped, in_string = (False, True) if escaped else (c == "\\", c != '"')
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif c in "]}":
            depth -= 1
    return False


def has_lone_surrogate(doc: Any) -> bool:
    """A string of ``doc`` (keys included) holds a lone UTF-16 surrogate: not UTF-8."""
    stack = [doc]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v)
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, str):
            try:
                v.encode()
            except UnicodeEncodeError:
                return True
    return False
