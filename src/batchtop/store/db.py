"""Opening the SQLite file: private permissions, WAL, migrations, clear errors."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from batchtop.errors import StoreError
from batchtop.paths import DB_NAME, ensure_private_dir
from batchtop.store.schema import MIGRATIONS, SCHEMA_VERSION

BUSY_TIMEOUT_MS = 30_000


def connect(data_dir: Path, *, create: bool = True) -> sqlite3.Connection:
    """A connection to the data dir's database, migrated to the current schema.

    Autocommit mode (isolation_level=None): every state change is an explicit
    `BEGIN IMMEDIATE ... COMMIT` through `transaction()`, so writers take the lock up
    front and never fail half-way on an upgrade from reader to writer.
    """
    path = data_dir / DB_NAME
    if not path.exists():
        if not create:
            raise StoreError(f"{path}: no batchtop database here (nothing enqueued yet?)")
        ensure_private_dir(data_dir)
        # create the file 0600 before SQLite does, so it is never world-readable
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    try:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{path}: written by a newer batchtop (schema {version}, this one knows {SCHEMA_VERSION}); "
                "upgrade batchtop; the file was not touched"
            )
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":  # pragma: no cover - e.g. a filesystem without shared memory
            raise StoreError(f"{path}: could not switch to WAL mode (got {mode})")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA foreign_keys = ON")
        _migrate(db, version)
    except sqlite3.DatabaseError as exc:
        db.close()
        raise StoreError(f"{path}: not a usable batchtop database ({exc}); the file was not touched") from exc
    except BaseException:
        db.close()
        raise
    for suffix in ("-wal", "-shm"):
        side = Path(f"{path}{suffix}")
        if side.exists():
            os.chmod(side, 0o600)
    return db


def _migrate(db: sqlite3.Connection, version: int) -> None:
    for number in range(version, SCHEMA_VERSION):
        db.execute("BEGIN IMMEDIATE")
        try:
            # re-read under the write lock: another process may have migrated meanwhile
            current = db.execute("PRAGMA user_version").fetchone()[0]
            if current > number:
                db.execute("COMMIT")
                continue
            MIGRATIONS[number](db)
            db.execute(f"PRAGMA user_version = {number + 1}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
