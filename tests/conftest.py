"""Shared fixtures: a private temp data dir, isolated config discovery, a CLI runner."""

from __future__ import annotations

import io
import itertools
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from batchtop.cli import main

import pg_server

CORPUS = Path(__file__).parent / "corpus"


@pytest.fixture(autouse=True)
def no_discovered_config(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never read the developer's own config or data dir."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("BATCHTOP_CONFIG", str(home / "absent-config.toml"))
    monkeypatch.setenv("BATCHTOP_DATA_DIR", str(home / "default-data"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for var in (
        "OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL",
        "GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_GENAI_API_VERSION",
        "GOOGLE_GENAI_USE_VERTEXAI", "BATCHTOP_STORE",
    ):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run `batchtop --data-dir DATA ARGS...` in-process; stdin from a string."""

    def run(*args: str, stdin: str | bytes | None = None) -> Result:
        if stdin is not None:
            raw = stdin.encode() if isinstance(stdin, str) else stdin
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw)))
        capsys.readouterr()
        try:
            code = main(["--data-dir", str(data_dir), *args])
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def count_requests(data_dir: Path) -> int:
    db_path = data_dir / "batchtop.sqlite3"
    if not db_path.exists():
        return 0
    with sqlite3.connect(db_path) as db:
        return db.execute("SELECT count(*) FROM requests").fetchone()[0]


def run_batchtop(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess[str]:
    """Run the real `batchtop` entry point in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "batchtop", *args], capture_output=True, text=True, env=full_env, **kw)


def openai_line(cid: str | None = "r1", model: str = "gpt-4o-mini", content: str = "hi") -> dict:
    line = {
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": content}]},
    }
    if cid is not None:
        line["custom_id"] = cid
    return line


def anthropic_line(cid: str | None = "c1", model: str = "claude-sonnet-4-20250514", max_tokens: int = 64) -> dict:
    line = {"params": {"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}]}}
    if cid is not None:
        line["custom_id"] = cid
    return line


@pytest.fixture
def corpus() -> Iterator[Path]:
    yield CORPUS


# -- PostgreSQL: a real server for the tests that run on both backends ------------------

_DB_SEQ = itertools.count(1)


def _admin(url: str):
    import psycopg

    return psycopg.connect(url, autocommit=True)


def database_url(server_url: str, name: str) -> str:
    """The server's URL with another database name."""
    base, _, _ = server_url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The superuser URL of a running PostgreSQL: `.ci/run`'s (BATCHTOP_TEST_POSTGRES), else
    one started here from the machine's server binaries. Without either the PostgreSQL
    cases are skipped, except in CI (CI=true), where that is a failure: CI must have one."""
    url = os.environ.get(pg_server.ENV_URL)
    if url:
        yield url
        return
    if pg_server.bin_dir() is None:
        if os.environ.get("CI"):
            pytest.fail("CI has no PostgreSQL server: .ci/run must install and start one (BATCHTOP_TEST_POSTGRES)")
        pytest.skip("no PostgreSQL server binaries here (apt-get install -y postgresql)")
    # not under pytest's temp dir: run as root, the server runs as `postgres`, which
    # could not reach a dir below pytest-of-root (0700)
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="batchtop-test-pg-"))
    url = pg_server.start(root)
    try:
        yield url
    finally:
        pg_server.stop(root)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_template(pg_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database migrated to the current schema once, copied for each test (a copy
    takes 50 ms; migrating a blank one, 200)."""
    from batchtop.store import Store

    name = f"bt_template_{os.getpid()}"
    with _admin(pg_server_url) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    Store(tmp_path_factory.mktemp("template"), url=database_url(pg_server_url, name)).close()
    return name


def _fresh_database(server_url: str, template: str | None) -> Iterator[str]:
    name = f"bt_{os.getpid()}_{next(_DB_SEQ)}"
    with _admin(server_url) as admin:
        admin.execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
    try:
        yield database_url(server_url, name)
    finally:
        with _admin(server_url) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pg_url(pg_server_url: str, pg_template: str) -> Iterator[str]:
    """A fresh database holding a migrated, empty store (schema `batchtop`)."""
    yield from _fresh_database(pg_server_url, pg_template)


@pytest.fixture
def pg_blank_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, blank database: no batchtop schema in it."""
    yield from _fresh_database(pg_server_url, None)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    """The one parametrized fixture that runs a test on both backends: None for the
    SQLite file in the data dir, else the URL of a fresh PostgreSQL store."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("pg_url")
