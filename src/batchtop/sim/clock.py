"""Clock the lifecycles are computed from.

Batches advance lazily: every access computes the state from elapsed time.
Tests move time forward with :meth:`Clock.advance` instead of sleeping.
"""

from __future__ import annotations

import threading
import time


class Clock:
    """Wall-clock unix time plus an adjustable offset (timestamps must look real)."""

    def __init__(self, start: float | None = None) -> None:
        self._lock = threading.Lock()
        self._offset = 0.0 if start is None else start - time.time()

    def now(self) -> float:
        with self._lock:
            return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Jump forward (or back, for negative values) by ``seconds``."""
        with self._lock:
            self._offset += seconds


class ManualClock(Clock):
    """A clock that only moves when told to; for fully deterministic tests."""

    def __init__(self, start: float = 1_760_000_000.0) -> None:
        super().__init__()
        self._t = start

    def now(self) -> float:
        with self._lock:
            return self._t

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._t += seconds
