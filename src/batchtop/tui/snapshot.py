"""One immutable status snapshot, read in a worker thread and applied on the UI loop.

No Textual here: `load` opens its own Store (its own sqlite connection, in the
calling thread) so the UI loop never waits on SQLite, and it never creates a
database: a console on an empty data dir just shows nothing yet.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from batchtop import status
from batchtop.config import Config
from batchtop.errors import BatchtopError
from batchtop.paths import DB_NAME
from batchtop.store import Store, lease


@dataclass(frozen=True)
class Snapshot:
    doc: Mapping[str, Any]
    """The status document (`batchtop.status.collect`), read-only."""
    now: float
    """The clock reading the document was built for: ages and countdowns use it."""
    other_engine: str | None = None
    """Who holds the data dir when it is another process (we are then a viewer)."""
    error: str | None = None
    """Why the store could not be read, if it could not."""


def _frozen(doc: dict[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(doc)


def other_holder(store: Store, now: float) -> str | None:
    """The lease holder, unless it is this process."""
    h = lease.holder(store, now)
    if h is None or (h.host, h.pid) == (socket.gethostname(), os.getpid()):
        return None
    return str(h)


def load(data_dir: Path, config: Config, now: float) -> Snapshot:
    """The status at `now`; never raises for a missing or unreadable store."""
    if not (data_dir / DB_NAME).exists():
        return Snapshot(_frozen(status.empty(now)), now)
    try:
        with Store(data_dir, create=False) as store:
            doc = status.collect(store.db, config, now)
            return Snapshot(_frozen(doc), now, other_holder(store, now))
    except (BatchtopError, OSError) as exc:
        return Snapshot(_frozen(status.empty(now)), now, error=str(exc))
    except Exception as exc:  # sqlite3 errors (locked past the busy timeout, I/O): shown, retried next refresh
        return Snapshot(_frozen(status.empty(now)), now, error=f"{type(exc).__name__}: {exc}")
