"""One ordered migration list for both backends: from a blank store and from every
older version, each backend ends at the same schema, with the data it held kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from batchtop.store import Store, postgres
from batchtop.store.db import SqliteConnection
from batchtop.store.schema import MIGRATIONS, SCHEMA_VERSION

SEED = (
    # what a v1 store holds: a buffer, a request, its batch and its ended attempt
    "INSERT INTO buffers (id, provider, endpoint, model) VALUES (1, 'openai', '/v1/chat/completions', 'gpt-4o-mini')",
    "INSERT INTO batches (id, submission_uid, provider, buffer_id, endpoint, model, status, total, created_at, ended_at,"
    " ingested_at) VALUES (1, 'u-1', 'openai', 1, '/v1/chat/completions', 'gpt-4o-mini', 'completed', 1, 1000.5,"
    " 90000.25, 90001.0)",
    "INSERT INTO requests (id, provider, custom_id, buffer_id, line, bytes, enqueued_at, state, attempts)"
    " VALUES (1, 'openai', 'c-1', 1, '{}', 2, 999.0, 'succeeded', 1)",
    "INSERT INTO requests (id, provider, custom_id, buffer_id, line, bytes, enqueued_at, state)"
    " VALUES (2, 'openai', 'c-2', 1, '{\"a\": 1}', 8, 999.0, 'queued')",
    "INSERT INTO attempts (id, request_id, batch_id, number, outcome, ended_at, input_tokens, output_tokens)"
    " VALUES (1, 1, 1, 1, 'succeeded', 90000.0, 10, 5)",
)


def _seeded(db: Any, start: int) -> None:
    for migration in MIGRATIONS[:start]:
        migration(db)
        if migration is MIGRATIONS[0]:
            for statement in SEED:
                db.execute(statement)


def _sqlite_at(path: Path, start: int) -> None:
    db = sqlite3.connect(path, isolation_level=None, factory=SqliteConnection)
    _seeded(db, start)
    db.execute(f"PRAGMA user_version = {start}")
    db.close()


def _postgres_at(url: str, start: int) -> None:
    db = postgres.open_connection(url)
    try:
        db.begin_write()
        postgres.bootstrap(db)
        _seeded(db, start)
        postgres.set_version(db, start)
        db.execute("COMMIT")
    finally:
        db.close()


def _shape(store: Store) -> dict[str, list[tuple]]:
    """The schema as the catalog has it: columns with types and defaults, indexes, triggers."""
    db = store.db
    if db.dialect == "sqlite":
        objects = db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name").fetchall()
        columns = [
            (table, *col)
            for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").fetchall()
            for col in db.execute(f"PRAGMA table_info({table})").fetchall()
        ]
        return {"objects": objects, "columns": columns}
    return {
        "columns": db.execute(
            "SELECT table_name, column_name, data_type, is_nullable, column_default FROM information_schema.columns"
            " WHERE table_schema = 'batchtop' ORDER BY table_name, column_name"
        ).fetchall(),
        "indexes": db.execute(
            "SELECT indexname, replace(indexdef, 'batchtop.', '') FROM pg_indexes WHERE schemaname = 'batchtop'"
            " AND indexname NOT LIKE '%pkey' ORDER BY indexname"
        ).fetchall(),
        "triggers": db.execute(
            "SELECT trigger_name, event_manipulation, event_object_table, action_timing FROM information_schema.triggers"
            " WHERE trigger_schema = 'batchtop' ORDER BY 1, 2"
        ).fetchall(),
    }


def _content(store: Store) -> dict[str, list[tuple]]:
    db = store.db
    return {
        "requests": db.execute("SELECT id, custom_id, state, bytes FROM requests ORDER BY id").fetchall(),
        "queued": db.execute("SELECT queued, queued_bytes, claimed_through FROM buffers").fetchall(),
        "rollup": db.execute(
            "SELECT provider, model, first_attempt, succeeded, attempts, input_tokens, output_tokens, tier FROM usage_rollup"
        ).fetchall(),
        "daily": db.execute("SELECT day, attempts, input_tokens FROM usage_daily").fetchall(),
        "hourly": db.execute("SELECT hour, attempts FROM usage_hourly").fetchall(),
        "ended": db.execute("SELECT value FROM counters WHERE name = 'ended_batches'").fetchall(),
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_every_older_version_migrates_to_the_blank_schema(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """From each version 0..N-1 (a v1 store's rows seeded on the way), opening the store
    applies the rest: the schema equals a blank store's, the rows are kept, and the
    backfills (daily/hourly sums, counters, claim cursors) are the same on both backends."""
    shapes, contents = [], []
    for start in range(SCHEMA_VERSION + 1):
        if backend == "sqlite":
            d = tmp_path / f"from{start}"
            d.mkdir(mode=0o700)
            if start:
                _sqlite_at(d / "batchtop.sqlite3", start)
            store = Store(d)
            version = store.db.execute("PRAGMA user_version").fetchone()[0]
        else:
            url = request.getfixturevalue("pg_blank_url") if start == 0 else _another_blank(request, start)
            if start:
                _postgres_at(url, start)
            store = Store(tmp_path, url=url)
            version = store.db.execute("SELECT version FROM schema_version").fetchone()[0]
        with store:
            assert version == SCHEMA_VERSION
            shapes.append(_shape(store))
            if start:
                contents.append(_content(store))
    assert all(shape == shapes[0] for shape in shapes[1:])
    assert all(content == contents[0] for content in contents[1:])
    assert contents[0]["queued"] == [(1, 8, 1)]  # the queued request counted; the cursor above the claimed one
    assert contents[0]["daily"] == [(1, 1, 10)] and contents[0]["hourly"] == [(25, 1)]  # by the batch's end, rounded down


def _another_blank(request: pytest.FixtureRequest, n: int) -> str:
    import conftest

    server = request.getfixturevalue("pg_server_url")
    gen = conftest._fresh_database(server, None)
    url = next(gen)
    request.addfinalizer(lambda: next(gen, None))
    return url


def test_both_backends_agree_after_migrating_a_seeded_store(tmp_path: Path, pg_blank_url: str) -> None:
    """The rows a v1 store held read back the same on SQLite and PostgreSQL after the
    whole list (the types mapped for PostgreSQL keep every value)."""
    d = tmp_path / "s"
    d.mkdir(mode=0o700)
    _sqlite_at(d / "batchtop.sqlite3", 1)
    _postgres_at(pg_blank_url, 1)
    with Store(d) as lite, Store(tmp_path, url=pg_blank_url) as pg:
        assert _content(lite) == _content(pg)
        assert lite.db.execute("SELECT ended_at FROM batches").fetchall() == pg.db.execute(
            "SELECT ended_at FROM batches"
        ).fetchall() == [(90000.25,)]


def test_a_reader_never_creates_or_migrates(tmp_path: Path, pg_blank_url: str) -> None:
    from batchtop.errors import StoreError
    from batchtop.store.db import has_database

    assert not has_database(tmp_path, pg_blank_url)
    with pytest.raises(StoreError, match="no batchtop store"):
        Store(tmp_path, url=pg_blank_url, create=False)
    _postgres_at(pg_blank_url, 3)
    with pytest.raises(StoreError, match="at schema 3"):
        Store(tmp_path, url=pg_blank_url, create=False)
    db = postgres.open_connection(pg_blank_url)
    try:
        assert postgres.stored_version(db) == 3
    finally:
        db.close()


def test_a_newer_schema_is_refused_and_untouched(tmp_path: Path, pg_url: str) -> None:
    from batchtop.errors import StoreError

    db = postgres.open_connection(pg_url)
    db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 5,))
    db.close()
    with pytest.raises(StoreError, match="newer batchtop"):
        Store(tmp_path, url=pg_url)
