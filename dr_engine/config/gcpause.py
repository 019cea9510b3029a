"""Pause CPython's cyclic garbage collector while a large runbook is loaded and planned.

Loading builds a YAML node tree, plain data, pydantic models and a plan: hundreds of thousands
of objects that stay alive and form no reference cycles. The collector's full (oldest
generation) pass runs each time the tracked heap has grown by a quarter and walks every live
object, so while a 10,000-step runbook is built it re-walks the whole growing heap again and
again: that made validate + plan grow ~x23 from 1,000 to 10,000 steps instead of ~x10.
Reference counting still frees everything acyclic at once; any cycles made meanwhile are
collected after the pause.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_reenable = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cyclic collector for the block; re-entrant and thread-safe.

    The collector is switched back on only when the outermost pause ends, and only if it was
    on when that pause began (a caller that disabled it on purpose keeps it disabled).
    """
    global _depth, _reenable
    with _lock:
        if _depth == 0:
            _reenable = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _reenable:
                gc.enable()
