"""One immutable status snapshot, read in a worker thread and applied on the UI loop.

No Textual here: `load` opens its own Store (its own sqlite connection, in the
calling thread) so the UI loop never waits on SQLite, and it never creates a
database: a console on an empty data dir just shows nothing yet.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

from batchtop.config import Config, StoreConfig
from batchtop.errors import BatchtopError
from batchtop.providers import registry
from batchtop.providers.clients import key_env
from batchtop.store import Store, lease
from batchtop.store.search import matching_batches
from batchtop.tui.rows import BatchRowMemo, Tables, tables
from batchtop.views import status
from batchtop.views.once import has_store
from batchtop.views.status_model import BatchStatus, Status


@dataclass(frozen=True)
class Snapshot:
    doc: Status
    """The status document (`batchtop.views.status.collect`), immutable."""
    now: float
    """The clock reading the document was built for: ages and countdowns use it."""
    other_engine: str | None = None
    """Who holds the data dir when it is another process (we are then a viewer)."""
    error: str | None = None
    """Why the store could not be read, if it could not."""
    missing_keys: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Provider -> the environment variable this process lacks for its API key."""
    first_run: bool = False
    """No database yet: the console shows how to start."""
    tables: Tables | None = None
    """The document's table rows, formatted off the UI thread (`formatted`)."""


def formatted(snap: Snapshot, id_width: int | None, memo: BatchRowMemo | None = None) -> Snapshot:
    """`snap` with its table rows formatted, batch ids cut to `id_width` (batch rows
    that read as in `memo`'s last call reused): done in the refresh worker, it leaves
    the UI thread only the diff of the tables."""
    return replace(snap, tables=tables(snap.doc, snap.now, id_width, memo))


def other_holder(store: Store, now: float) -> str | None:
    """The lease holder, unless it is this process."""
    h = lease.holder(store, now)
    if h is None or (h.host, h.pid) == (socket.gethostname(), os.getpid()):
        return None
    return str(h)


def missing_keys(config: Config) -> Mapping[str, str]:
    """Providers whose API key this process does not have (the variable's name only)."""
    wanted = {p: key_env(config, p) for p in registry.names()}
    return MappingProxyType({p: env for p, env in wanted.items() if not os.environ.get(env)})


def load(data_dir: Path, config: Config, now: float) -> Snapshot:
    """The status at `now`; never raises for a missing or unreadable store."""
    keys = missing_keys(config)
    try:
        if not has_store(data_dir, config):
            return Snapshot(status.empty(now), now, missing_keys=keys, first_run=True)
        with Store(data_dir, create=False, url=config.store.url, schema=config.store.schema) as store:
            doc = status.collect(store.db, config, now)
            return Snapshot(doc, now, other_holder(store, now), missing_keys=keys)
    except (BatchtopError, OSError) as exc:
        return Snapshot(status.empty(now), now, error=str(exc), missing_keys=keys)
    except Exception as exc:  # noqa: BLE001 sqlite3 errors (locked past the busy timeout, I/O): shown, retried next refresh
        return Snapshot(status.empty(now), now, error=f"{type(exc).__name__}: {exc}", missing_keys=keys)


def store_is_read_only(data_dir: Path, config: Config) -> bool:
    """Whether the console's store may only be read by this process (a PostgreSQL
    role granted SELECT only): the console then starts as a viewer. A SQLite file, or
    a store that is not there yet (the console's engine creates it), is not."""
    if config.store.url is None:
        return False
    try:
        if not has_store(data_dir, config):
            return False
        with Store(data_dir, create=False, url=config.store.url, schema=config.store.schema) as store:
            return store.read_only
    except BatchtopError:
        return False  # unreachable now: the console shows why on its first refresh


def search(data_dir: Path, needle: str, where: StoreConfig | None = None) -> list[BatchStatus]:
    """Every batch in the store matching `needle` (the `/` search), as document entries;
    [] when there is no store yet."""
    where = where or StoreConfig()
    if not needle.strip() or not has_store(data_dir, Config(store=where)):
        return []
    with Store(data_dir, create=False, url=where.url, schema=where.schema) as store:
        ids = matching_batches(store.db, needle)
        return status.batches_by_id(store.db, ids)
