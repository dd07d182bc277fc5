"""OS-visible names for the server's own threads, so CPU use can be told apart by thread.

Python (before 3.14) keeps ``threading.Thread.name`` to itself; ``top -H``, ``ps -L`` and
``/proc/PID/task/*/comm`` show every thread as ``python``. Naming them at the OS level
lets the load benchmark attribute the server's CPU to the event loop, the workers, the
batch threads, TensorFlow's pools (``tf_*``) and gRPC's core threads.
"""

from __future__ import annotations

import ctypes
import sys

_PR_SET_NAME = 15  # <linux/prctl.h>
_libc = None


def name_this_thread(name: str) -> None:
    """Sets the calling thread's OS name (Linux; 15 bytes at most); elsewhere does nothing."""
    global _libc
    if not sys.platform.startswith("linux"):
        return
    try:
        _libc = _libc or ctypes.CDLL(None, use_errno=True)
        _libc.prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)
    except (OSError, AttributeError):  # no libc or no prctl: names are a nicety
        pass
