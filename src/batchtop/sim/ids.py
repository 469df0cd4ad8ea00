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
    """Hands out ``<prefix><seq hex><salt>`` ids with one global sequence."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self.salt = secrets.token_hex(6)

    def next_seq(self) -> int:
        with self._lock:
            return next(self._counter)

    def make(self, prefix: str, seq: int | None = None) -> tuple[str, int]:
        """Return ``(id, seq)``; a fresh sequence number unless one is given."""
        if seq is None:
            seq = self.next_seq()
        return f"{prefix}{seq:0{_SEQ_DIGITS}x}{self.salt}", seq


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
