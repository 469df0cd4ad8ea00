"""The SQLite file: permissions, WAL, migrations, refusing what it cannot read."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from batchtop.errors import StoreError
from batchtop.store import Store
from batchtop.store.schema import MIGRATIONS, SCHEMA_VERSION


def test_fresh_store_is_private_wal_and_current(data_dir: Path) -> None:
    with Store(data_dir) as store:
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"requests", "buffers", "batches", "attempts", "usage_rollup", "lease"} <= tables
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    for f in data_dir.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0, f


def test_migrations_apply_one_by_one_from_any_version(tmp_path: Path) -> None:
    """Each migration runs on the schema the previous one left (the oldest schema included)."""
    for start in range(SCHEMA_VERSION):
        d = tmp_path / f"from{start}"
        d.mkdir()
        db = sqlite3.connect(d / "batchtop.sqlite3", isolation_level=None)
        for migration in MIGRATIONS[:start]:
            migration(db)
        db.execute(f"PRAGMA user_version = {start}")
        db.close()
        with Store(d) as store:
            assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_reopening_does_not_migrate_again(data_dir: Path) -> None:
    Store(data_dir).close()
    with Store(data_dir) as store:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_newer_schema_is_refused_and_untouched(data_dir: Path) -> None:
    Store(data_dir).close()
    path = data_dir / "batchtop.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    before = path.read_bytes()
    with pytest.raises(StoreError, match="newer batchtop"):
        Store(data_dir)
    assert path.read_bytes() == before


def test_corrupt_file_is_refused_and_untouched(data_dir: Path) -> None:
    data_dir.mkdir(mode=0o700)
    path = data_dir / "batchtop.sqlite3"
    junk = b"this is not a database" * 200
    path.write_bytes(junk)
    with pytest.raises(StoreError, match="not a usable batchtop database"):
        Store(data_dir)
    assert path.read_bytes() == junk


def test_cli_reports_store_errors_cleanly(cli, data_dir: Path) -> None:
    data_dir.mkdir(mode=0o700)
    (data_dir / "batchtop.sqlite3").write_bytes(b"garbage" * 100)
    result = cli("--once", "--no-refresh")
    assert result.code == 1
    assert "not a usable batchtop database" in result.err and "Traceback" not in result.err


def test_once_no_refresh_on_missing_store_does_not_create_it(cli, data_dir: Path) -> None:
    result = cli("--once", "--no-refresh")
    assert result.code == 0, result.err
    assert "no queued requests" in result.out
    assert not data_dir.exists()
