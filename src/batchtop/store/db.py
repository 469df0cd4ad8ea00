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
    probed = _pending_wal_version(path)
    if probed is not None and probed > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: written by a newer batchtop (schema {probed}, this one knows {SCHEMA_VERSION}); "
            "upgrade batchtop; the file was not touched"
        )
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


def rollback(db: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open: SQLite ends one by itself on some
    errors (SQLITE_FULL), and a failing ROLLBACK must not hide the real error."""
    if db.in_transaction:
        db.execute("ROLLBACK")


def _pending_wal_version(path: Path) -> int | None:
    """With commits still in the WAL (a killed writer), read the schema version through
    a read-only connection, which cannot checkpoint them into the file on close: a
    database we then refuse stays as it was. Without a WAL, None (nothing to protect)."""
    wal = Path(f"{path}-wal")
    if not wal.exists() or wal.stat().st_size == 0:
        return None
    try:
        probe = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error:
        return None
    try:
        return int(probe.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error:
        return None  # not a database: the normal open reports it
    finally:
        probe.close()


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
            rollback(db)
            raise
