"""One engine per data dir: a lease row with its owner and an expiry.

A lease whose owner was on this host and whose process is gone is taken over at
once, so a restart after a crash never waits; one held elsewhere is taken over
only after it expires.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from batchtop.errors import BatchtopError
from batchtop.store.store import Store
from batchtop.timefmt import iso

NAME = "engine"


class EngineBusy(BatchtopError):
    """Another engine holds the data dir."""


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    expires_at: float

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host} (lease until {iso(self.expires_at)})"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder(store: Store, now: float) -> Holder | None:
    """Who holds the lease now, if anyone living does."""
    row = store.db.execute("SELECT host, pid, expires_at FROM lease WHERE name = ?", (NAME,)).fetchone()
    if row is None:
        return None
    h = Holder(*row)
    if h.host == socket.gethostname():
        return h if h.pid == os.getpid() or _alive(h.pid) else None
    return h if h.expires_at > now else None


def acquire(store: Store, ttl: float, now: float) -> None:
    """Take or renew the lease, or raise EngineBusy naming the holder."""
    me = (socket.gethostname(), os.getpid())
    with store.transaction() as db:
        current = holder(store, now)
        if current is not None and (current.host, current.pid) != me:
            raise EngineBusy(f"another batchtop engine holds {store.data_dir}: {current}")
        db.execute(
            "INSERT INTO lease (name, host, pid, expires_at) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
            " host = excluded.host, pid = excluded.pid, expires_at = excluded.expires_at",
            (NAME, *me, now + ttl),
        )


def release(store: Store) -> None:
    with store.transaction() as db:
        db.execute("DELETE FROM lease WHERE name = ? AND host = ? AND pid = ?", (NAME, socket.gethostname(), os.getpid()))
