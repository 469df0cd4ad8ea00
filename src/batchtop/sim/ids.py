"""Object ids whose hex part starts with a creation sequence.

Lists are "newest first" by that sequence, so ordering is well defined even for
objects created in the same second, and a cursor id that was since deleted still
marks a position. A per-simulator salt keeps ids from two runs distinct.
"""

from __future__ import annotations

import itertools
import secrets
import threading

_SEQ_DIGITS = 12


class IdMaker:
    """Hands out ``<prefix><seq hex><salt>`` ids, one sequence per prefix.

    One sequence per kind (as real providers' ids share nothing): the ids of one
    provider do not depend on how its calls interleave with the other's. `order`
    keeps the global creation order, for listing every batch oldest first.
    """

    def __init__(self) -> None:
        self._counters: dict[str, itertools.count[int]] = {}
        self._lock = threading.Lock()
        self._created = itertools.count(1)
        self.order: dict[str, int] = {}
        self.salt = secrets.token_hex(6)

    def make(self, prefix: str) -> tuple[str, int]:
        """Return ``(id, seq)`` with the prefix's next sequence number."""
        with self._lock:
            seq = next(self._counters.setdefault(prefix, itertools.count(1)))
            object_id = f"{prefix}{seq:0{_SEQ_DIGITS}x}{self.salt}"
            self.order[object_id] = next(self._created)
        return object_id, seq


def seq_of(object_id: str, prefix: str) -> int | None:
    """The creation sequence encoded in an id, or None if it is not one of ours."""
    if not object_id.startswith(prefix):
        return None
    digits = object_id[len(prefix) : len(prefix) + _SEQ_DIGITS]
    if len(digits) != _SEQ_DIGITS:
        return None
    try:
        return int(digits, 16)
    except ValueError:
        return None
