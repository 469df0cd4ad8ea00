"""A shared PostgreSQL store, through psycopg 3, behind the same connection interface
as the SQLite file.

The store's SQL is written once, in the subset both databases run (`?` placeholders,
`ON CONFLICT`, `RETURNING`, `coalesce`, `CASE`); where the two really differ
(triggers, JSON, bulk insert) the store branches on `db.dialect`. This module adapts
the rest:

- **Placeholders.** psycopg takes `%s`: `?` outside string literals becomes `%s`, a
  literal `%` becomes `%%` (translated once per statement text, cached).
- **Parameters** are bound client-side (`ClientCursor`), so a `? IS NULL` or a bare
  `SELECT ?` gets its type from the value, as in SQLite, instead of failing for want
  of a declared type.
- **One writer at a time.** `begin_write` takes a transaction-scoped advisory lock
  of the store's schema, as SQLite's `BEGIN IMMEDIATE` takes the file's write lock.
  Every invariant the store keeps under that lock holds unchanged across hosts: ids
  handed out in commit order (the range claims rely on it), the queue counters, the
  lease's fence checked in the same transaction as the write it guards. Readers
  (consoles, `--once`) never take it and never wait.
- **Numbers.** `sum()` of integers is `numeric` in PostgreSQL: it is read back as an
  int (a float when it has a fraction), never as a Decimal the arithmetic would mix
  with floats.
- **Waiting.** `lock_timeout` bounds the wait for the writer lock as SQLite's busy
  timeout does; past it the statement fails with `LockNotAvailable`, an
  `OperationalError`, which the store's callers take as `StoreBusy`.

Everything lives in one schema (default `batchtop`), set as the connection's
search_path. The URL is the operator's libpq URI, passed through unchanged (sslmode,
sslrootcert, target_session_attrs, ...); its password is never shown (`display_url`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg.adapt import Loader

from batchtop.errors import StoreError
from batchtop.store.location import (
    DEFAULT_SCHEMA,
    DIALECT,
    LOCK_TIMEOUT_MS,
    SCHEMA_NAME,
    PgIntegrityError,
    PgUnavailable,
    display_url,
    is_postgres_url,
    scrub,
)

__all__ = ["DEFAULT_SCHEMA", "DIALECT", "PgConnection", "display_url", "is_postgres_url", "open_connection", "scrub"]

@lru_cache(maxsize=4096)
def translate(statement: str) -> str:
    """SQLite's `?` placeholders as psycopg's `%s`, literal `%` doubled; string
    literals and quoted names are left as they are."""
    out: list[str] = []
    quote: str | None = None
    for ch in statement:
        if quote is not None:
            if ch == "%":
                out.append("%%")
                continue
            out.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in ("'", '"'):
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


class _NumericAsNumber(Loader):
    """`numeric` (what `sum()` of integers gives) as int, or float with a fraction."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode()
        if "." in text or "e" in text or "E" in text or text in ("NaN", "Infinity", "-Infinity"):
            return float(text)
        return int(text)


def lock_key(schema: str) -> int:
    """The advisory lock of one store (schema): a signed 64-bit number of its name."""
    return int.from_bytes(hashlib.sha256(f"batchtop:{schema}".encode()).digest()[:8], "big", signed=True)


class PgConnection:
    """A psycopg connection in autocommit mode, with the subset of the sqlite3
    connection interface the store uses: execute, executemany, in_transaction, close,
    and `begin_write`, each in the store's SQL."""

    dialect = DIALECT

    def __init__(self, conn: psycopg.Connection[Any], schema: str, url: str) -> None:
        self.conn = conn
        self.schema = schema
        self.url = url
        self._lock = lock_key(schema)

    @contextmanager
    def errors(self) -> Iterator[None]:
        """psycopg's errors as the store's: OperationalError (lock timeout, a lost
        server) is `PgUnavailable`, part of StoreBusy; IntegrityError `PgIntegrityError`.
        Their text never carries the password."""
        try:
            yield
        except psycopg.OperationalError as exc:
            raise PgUnavailable(scrub(str(exc).strip(), self.url)) from exc
        except psycopg.IntegrityError as exc:
            raise PgIntegrityError(scrub(str(exc).strip(), self.url)) from exc

    def execute(self, statement: str, params: Sequence[Any] | None = None) -> psycopg.Cursor[Any]:
        cur = self.conn.cursor()
        with self.errors():
            cur.execute(translate(statement), params if params else None)
        return cur

    def executemany(self, statement: str, rows: Iterable[Sequence[Any]]) -> psycopg.Cursor[Any]:
        cur = self.conn.cursor()
        with self.errors():
            cur.executemany(translate(statement), rows)
        return cur

    def begin_write(self) -> None:
        """BEGIN, then wait for the store's writer lock (held to COMMIT or ROLLBACK)."""
        with self.errors():
            self.conn.execute("BEGIN")
            try:
                self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock,))
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise

    @property
    def in_transaction(self) -> bool:
        return self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def close(self) -> None:
        self.conn.close()

    def identity(self) -> str:
        """What names this store among others: the server's system id, the database
        and the schema (a store's cached figures are keyed by it)."""
        row = self.conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()
        database = self.conn.info.dbname
        return f"postgresql:{row[0] if row else '?'}:{database}:{self.schema}"


def open_connection(url: str, schema: str = DEFAULT_SCHEMA) -> PgConnection:
    """Connect with the operator's URL as it is (every libpq parameter passes through),
    set the search path to the store's schema; StoreError with the password hidden."""
    if not SCHEMA_NAME.fullmatch(schema):
        raise StoreError(f"[store] schema {schema!r}: not a plain lower-case name (letters, digits, _)")
    extra: dict[str, Any] = {}
    lowered = url.lower()
    if "connect_timeout" not in lowered:
        extra["connect_timeout"] = 10
    if "application_name" not in lowered:
        extra["application_name"] = "batchtop"
    try:
        conn = psycopg.connect(url, autocommit=True, cursor_factory=psycopg.ClientCursor, **extra)
    except psycopg.Error as exc:
        raise StoreError(f"{display_url(url)}: cannot connect to the PostgreSQL store: {scrub(str(exc).strip(), url)}") from None
    except Exception as exc:  # a malformed URL (psycopg.ProgrammingError is a psycopg.Error; this is the rest)
        raise StoreError(f"{display_url(url)}: not a usable PostgreSQL URL: {scrub(str(exc), url)}") from None
    conn.adapters.register_loader("numeric", _NumericAsNumber)
    try:
        conn.execute(pgsql.SQL("SET search_path TO {}").format(pgsql.Identifier(schema)))
        conn.execute(f"SET lock_timeout = {LOCK_TIMEOUT_MS}")
    except BaseException:
        conn.close()
        raise
    return PgConnection(conn, schema, url)


def schema_exists(db: PgConnection) -> bool:
    row = db.conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL", (f"{pgsql.Identifier(db.schema).as_string(db.conn)}.schema_version",)
    ).fetchone()
    return bool(row and row[0])


def stored_version(db: PgConnection) -> int:
    """How many migrations the store has had (0: a blank database)."""
    if not schema_exists(db):
        return 0
    row = db.conn.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def bootstrap(db: PgConnection) -> None:
    """Inside the first migration's transaction: the schema and its version row."""
    exists = db.conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (db.schema,)).fetchone()
    if not exists:
        db.conn.execute(pgsql.SQL("CREATE SCHEMA {}").format(pgsql.Identifier(db.schema)))
    db.conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
    if db.conn.execute("SELECT count(*) FROM schema_version").fetchone() == (0,):
        db.conn.execute("INSERT INTO schema_version (version) VALUES (0)")


def set_version(db: PgConnection, version: int) -> None:
    db.conn.execute("UPDATE schema_version SET version = %s", (version,))
