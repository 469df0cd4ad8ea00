"""Opening the store: the SQLite file (private permissions, WAL) or a PostgreSQL
database (`store.postgres`), migrated by one ordered list, with clear errors.

Every open checks what it opens, since a data dir may be on a shared machine: the dir
and the database files must be ours (another user's are refused), are tightened to
0700/0600 when looser, and the files are never reached through a symlink.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from batchtop.errors import StoreError
from batchtop.paths import DB_NAME, check_private_dir, ensure_private_dir
from batchtop.store.location import DEFAULT_SCHEMA, PgIntegrityError, PgUnavailable, display_url
from batchtop.store.schema import MIGRATIONS, SCHEMA_VERSION

if TYPE_CHECKING:
    from batchtop.store import postgres


class SqliteConnection(sqlite3.Connection):
    """The SQLite file's connection, with what the store asks of either database."""

    dialect = "sqlite"

    def begin_write(self) -> None:
        """BEGIN IMMEDIATE: take the file's write lock up front (see `Store.transaction`)."""
        self.execute("BEGIN IMMEDIATE")


class Cursor(Protocol):
    """What a statement gives back, on either database: rows as tuples."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """An open store, as the read modules and views take it: they name it by this
    type and never import `sqlite3` or `psycopg` (only `store/` knows which database
    it is): `SqliteConnection` or `postgres.PgConnection`. `dialect` is "sqlite" or
    "postgresql", for the few statements the two write differently."""

    @property
    def dialect(self) -> str: ...

    @property
    def in_transaction(self) -> bool: ...

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Cursor: ...

    def begin_write(self) -> None: ...

    def close(self) -> None: ...

def epoch_bucket(db: Connection, column: str, seconds: int) -> str:
    """SQL for the bucket (UTC day, hour) a unix-time column falls in, rounded down:
    SQLite's CAST truncates (our epochs are positive), PostgreSQL's rounds, so floor there."""
    if db.dialect == "sqlite":
        return f"CAST({column} / {seconds} AS INTEGER)"
    return f"CAST(floor({column} / {seconds}) AS BIGINT)"


StoreBusy = (sqlite3.OperationalError, PgUnavailable)
"""The store could not be reached in time (locked past the busy timeout by other
writers, or a PostgreSQL server that did not answer): a caller waits and tries
again later."""

IntegrityError = (sqlite3.IntegrityError, PgIntegrityError)
"""A constraint refused a write (a live custom_id enqueued twice)."""

BUSY_TIMEOUT_MS = 30_000


def connect(
    data_dir: Path, *, create: bool = True, url: str | None = None, schema: str = DEFAULT_SCHEMA
) -> Connection:
    """A connection to the store, migrated to the current schema: the PostgreSQL
    database of `url` when given, else the data dir's SQLite file."""
    if url is not None:
        return _connect_postgres(url, schema, create)
    return _connect_sqlite(data_dir, create=create)


def _connect_postgres(url: str, schema: str, create: bool) -> postgres.PgConnection:
    """A writer (`create`) creates or migrates the schema; a reader finds it as it is
    (a viewer role may not change anything) and asks for a writer when it is behind."""
    import psycopg

    from batchtop.store import postgres  # psycopg only for a PostgreSQL store

    where = display_url(url)
    db = postgres.open_connection(url, schema)
    try:
        version = postgres.stored_version(db)
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{where} (schema {schema}): written by a newer batchtop (schema {version}, this one knows"
                f" {SCHEMA_VERSION}); upgrade batchtop; nothing was changed"
            )
        if version < SCHEMA_VERSION:
            if not create:
                if version == 0:
                    raise StoreError(f"{where}: no batchtop store in schema {schema} (nothing enqueued yet?)")
                raise StoreError(
                    f"{where} (schema {schema}): at schema {version}, this batchtop needs {SCHEMA_VERSION}; run a command"
                    " that writes (`batchtop run`, `enqueue`) with a role that may change the schema first"
                )
            _migrate_postgres(db)
    except (psycopg.Error, PgUnavailable, PgIntegrityError) as exc:
        db.close()
        raise StoreError(f"{where}: not a usable batchtop store ({postgres.scrub(str(exc).strip(), url)})") from None
    except BaseException:
        db.close()
        raise
    return db


def _migrate_postgres(db: postgres.PgConnection) -> None:
    """Each pending migration in a transaction of its own under the writer lock (the
    DDL is transactional: a migration is applied whole or not at all)."""
    from batchtop.store import postgres

    while True:
        db.begin_write()
        try:
            postgres.bootstrap(db)
            current = postgres.stored_version(db)  # re-read under the lock: another host may have migrated
            if current >= SCHEMA_VERSION:
                db.execute("COMMIT")
                return
            MIGRATIONS[current](db)
            postgres.set_version(db, current + 1)
            db.execute("COMMIT")
        except BaseException:
            rollback(db)
            raise


def _connect_sqlite(data_dir: Path, *, create: bool = True) -> SqliteConnection:
    """A connection to the data dir's database, migrated to the current schema.

    Autocommit mode (isolation_level=None): every state change is an explicit
    `BEGIN IMMEDIATE ... COMMIT` through `transaction()`, so writers take the lock up
    front and never fail half-way on an upgrade from reader to writer.
    """
    path = data_dir / DB_NAME
    if not os.path.lexists(data_dir):
        if not create:
            raise StoreError(f"{path}: no batchtop database here (nothing enqueued yet?)")
        ensure_private_dir(data_dir)
    else:
        check_private_dir(data_dir)
    checked = _existing_or_created(path, create)
    sides = _check_side_files(path)
    db = _open_sqlite(path)
    try:
        _same_file(path, checked)
        # tightened only now that it proved to be our database: a file we refuse stays as it was
        _tighten(path, checked)
        for side in sides:
            _tighten(side, side.lstat())
        for suffix in ("-wal", "-shm"):  # SQLite makes them with the file's mode, maybe before it was tightened
            side = Path(f"{path}{suffix}")
            if side.exists():
                _tighten(side, side.lstat())
    except BaseException:
        db.close()
        raise
    return db


def _same_file(path: Path, checked: os.stat_result) -> None:
    """The name still leads to the file we checked (the dir is ours and 0700 by now,
    so only this user could have swapped it meanwhile)."""
    try:
        now = os.lstat(path)
    except OSError as exc:
        raise StoreError(f"{path}: vanished while being opened ({exc.strerror})") from None
    if (now.st_dev, now.st_ino) != (checked.st_dev, checked.st_ino):
        raise StoreError(f"{path}: replaced while being opened; not used")


def _refuse_other(path: Path, uid: int) -> StoreError:
    me = os.geteuid()
    return StoreError(
        f"{path}: owned by another user (uid {uid}; you are uid {me}), who could read or change your prompts"
        " and results; not used: use a data dir of your own (--data-dir DIR or BATCHTOP_DATA_DIR)"
    )


def _private_file(path: Path, info: os.stat_result) -> None:
    """A regular file of ours (its mode is `_tighten`'s business); StoreError otherwise."""
    if stat.S_ISLNK(info.st_mode):
        raise StoreError(
            f"{path}: a symlink; batchtop opens its database files only as regular files in the data dir,"
            " never through a link (another user could point it at a file of theirs): put the real file there"
        )
    if not stat.S_ISREG(info.st_mode):
        raise StoreError(f"{path}: not a regular file; not used")
    if info.st_uid != os.geteuid():
        raise _refuse_other(path, info.st_uid)


def _tighten(path: Path, info: os.stat_result) -> None:
    """Mode 0600 for a file of ours that is looser (a database left 0644 by an older
    batchtop or a copy); StoreError with the fix when that fails. By name, never through
    a descriptor of our own: closing one would drop SQLite's POSIX locks on the file."""
    mode = stat.S_IMODE(info.st_mode)
    if not mode & 0o077:
        return
    try:
        os.chmod(path, 0o600)  # a regular file by its lstat, in a dir only we can change
    except OSError as exc:
        raise StoreError(
            f"{path}: mode {mode:04o} and could not be made private ({exc.strerror}); fix it with `chmod 600 {path}`"
        ) from None


def _existing_or_created(path: Path, create: bool) -> os.stat_result:
    """The database file's lstat, checked by `_private_file`: never followed through a
    symlink, never opened by us (only SQLite opens it: a descriptor of ours, once
    closed, would drop the locks of every SQLite connection to it in this process).
    When missing and `create`, it is made 0600 first (O_EXCL: never someone else's
    file, never through a link), so it is never world-readable, not even for a moment."""
    if create:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            os.close(os.open(path, flags, 0o600))
        except FileExistsError:
            pass  # there already (or a link): checked below
        except OSError as exc:
            raise StoreError(f"{path}: cannot create the database ({exc.strerror})") from None
    try:
        info = path.lstat()
    except FileNotFoundError:
        raise StoreError(f"{path}: no batchtop database here (nothing enqueued yet?)") from None
    except OSError as exc:
        raise StoreError(f"{path}: cannot use the database ({exc.strerror})") from None
    _private_file(path, info)
    return info


def _check_side_files(path: Path) -> list[Path]:
    """SQLite's WAL, shared-memory and journal files get the same checks as the file
    (a planted one would be read into our database, or fed our writes); the ones there."""
    found = []
    for suffix in ("-wal", "-shm", "-journal"):
        side = Path(f"{path}{suffix}")
        try:
            info = side.lstat()
        except FileNotFoundError:
            continue
        _private_file(side, info)
        found.append(side)
    return found


def _open_sqlite(path: Path) -> SqliteConnection:
    probed = _pending_wal_version(path)
    if probed is not None and probed > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: written by a newer batchtop (schema {probed}, this one knows {SCHEMA_VERSION}); "
            "upgrade batchtop; the file was not touched"
        )
    db = sqlite3.connect(
        path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False, factory=SqliteConnection
    )
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
    return db


def has_database(data_dir: Path, url: str | None = None, schema: str = DEFAULT_SCHEMA) -> bool:
    """Whether there is a store to read, for commands that must not create one: no
    data dir or no file is False; a data dir that is not ours is a StoreError, as for
    `connect` (never a traceback where we may not even look inside). With a
    PostgreSQL `url`: whether its schema holds a store (a blank database does not)."""
    if url is not None:
        import psycopg

        from batchtop.store import postgres

        db = postgres.open_connection(url, schema)
        try:
            return postgres.stored_version(db) > 0
        except psycopg.Error as exc:
            raise StoreError(f"{display_url(url)}: {postgres.scrub(str(exc).strip(), url)}") from None
        finally:
            db.close()
    if not os.path.lexists(data_dir):
        return False
    check_private_dir(data_dir)
    return os.path.lexists(data_dir / DB_NAME)


def rollback(db: Connection) -> None:
    """Roll back if a transaction is still open: SQLite ends one by itself on some
    errors (SQLITE_FULL), and a failing ROLLBACK must not hide the real error."""
    if db.in_transaction:
        try:
            db.execute("ROLLBACK")
        except PgUnavailable:  # the server went away: so did the transaction
            pass


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


def _migrate(db: SqliteConnection, version: int) -> None:
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
