"""Selecting the store (shared/cli.md, "Store selection"): `--store URL` >
`$BATCHTOP_STORE` > `[store] url` > the SQLite file in the data dir, carried to every
command; the URL's password never shown; libpq parameters passed through; a role that
may only read is a viewer. Against a real PostgreSQL server (tests/conftest.py)."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest

from batchtop.config import Config, ConfigError, StoreConfig, load_config, parse_config, resolve_store
from batchtop.redaction import redact
from batchtop.store import Store

from conftest import openai_line, run_batchtop

DEAD = "postgresql://nobody:Dead-pw-0451@127.0.0.1:1/nothing?connect_timeout=2"
"""A well-formed URL where nothing listens: a layer that lost the precedence is never reached."""

_ROLES = itertools.count(1)


def with_user(url: str, user: str, password: str) -> str:
    """The URL with another user and password."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"{user}:{quote(password, safe='')}@{host}", parts.path, parts.query, parts.fragment))


def password_of(url: str) -> str:
    password = urlsplit(url).password
    assert password
    return password


def write_lines(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def has_schema(url: str, schema: str = "batchtop") -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() == (1,)


def requests_in(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM batchtop.requests").fetchone()
        assert row is not None
        return int(row[0])


def batchtop(data_dir: Path, *args: str, env: dict[str, str] | None = None):
    return run_batchtop("--data-dir", str(data_dir), *args, env=env)


# -- config and precedence ----------------------------------------------------------------


def test_store_section_defaults_to_sqlite_in_the_data_dir() -> None:
    assert Config().store == StoreConfig(url=None, schema="batchtop")
    assert resolve_store(Config(), None, env={}).store.url is None


@pytest.mark.parametrize("url", ["mysql://u@h/db", "sqlite:///tmp/x.db", "host=db dbname=x", "postgresql", ""])
def test_a_url_that_is_not_postgresql_names_the_file_and_the_key(tmp_path: Path, url: str) -> None:
    path = tmp_path / "config.toml"
    with pytest.raises(ConfigError) as info:
        parse_config({"store": {"url": url}}, path)
    assert str(info.value).startswith(f"{path}: key 'store.url': must be a PostgreSQL URL")


def test_a_bad_schema_names_the_file_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    with pytest.raises(ConfigError) as info:
        parse_config({"store": {"schema": "Bad-Name"}}, path)
    assert str(info.value).startswith(f"{path}: key 'store.schema': ")


def test_precedence_store_option_then_environment_then_config() -> None:
    config = parse_config({"store": {"url": "postgresql://c@config-host/db", "schema": "team"}})
    assert resolve_store(config, None, env={}).store == StoreConfig("postgresql://c@config-host/db", "team")
    env = {"BATCHTOP_STORE": "postgres://e@env-host/db"}
    assert resolve_store(config, None, env=env).store == StoreConfig("postgres://e@env-host/db", "team")
    assert resolve_store(config, "postgresql://o@option-host/db", env=env).store.url == "postgresql://o@option-host/db"
    assert resolve_store(config, None, env={"BATCHTOP_STORE": ""}).store.url == "postgresql://c@config-host/db"
    assert resolve_store(Config(), None, env=env).store.url == "postgres://e@env-host/db"


def test_a_bad_store_option_or_environment_is_a_clean_error_without_the_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--store: must be a PostgreSQL URL"):
        resolve_store(Config(), "mysql://u:Secret-pw-77@h/db", env={})
    with pytest.raises(ConfigError, match=r"^\$BATCHTOP_STORE: must be a PostgreSQL URL") as info:
        resolve_store(Config(), None, env={"BATCHTOP_STORE": "mysql://u:Secret-pw-77@h/db"})
    assert "Secret-pw-77" not in str(info.value)
    result = batchtop(tmp_path / "data", "--store", "mysql://u:Secret-pw-77@h/db", "--once", "--no-refresh")
    assert result.returncode == 1 and "Secret-pw-77" not in result.stdout + result.stderr
    assert "--store: must be a PostgreSQL URL" in result.stderr and "Traceback" not in result.stderr


def test_each_layer_wins_over_the_next_through_the_cli(tmp_path: Path, pg_url: str) -> None:
    """The losing layer points where nothing listens: a command that works never reached it."""
    data_dir = tmp_path / "data"
    lines = write_lines(tmp_path / "in.jsonl", [openai_line("r1")])
    config = tmp_path / "config.toml"
    config.write_text(f'[store]\nurl = "{DEAD}"\n')
    config.chmod(0o600)

    # [store] url alone is used: nothing listens there, so the command fails, naming it without its password
    failed = batchtop(data_dir, "--config", str(config), "--once", "--no-refresh")
    assert failed.returncode == 1 and "127.0.0.1" in failed.stderr and "nobody:***@" in failed.stderr
    assert "Dead-pw-0451" not in failed.stdout + failed.stderr and "Traceback" not in failed.stderr
    # $BATCHTOP_STORE wins over it
    via_env = batchtop(data_dir, "--config", str(config), "dead-letters", "--json", env={"BATCHTOP_STORE": pg_url})
    assert via_env.returncode == 0 and json.loads(via_env.stdout) == [], via_env.stderr
    # --store wins over $BATCHTOP_STORE, before the command or after it
    for args in (("--store", pg_url, "dead-letters", "--json"), ("events", "--store", pg_url)):
        via_option = batchtop(data_dir, *args, env={"BATCHTOP_STORE": DEAD})
        assert via_option.returncode == 0, (args, via_option.stderr)
    # and nothing of the state went to the data dir
    assert not (data_dir / "batchtop.sqlite3").exists()
    # without any of them: the SQLite file in the data dir
    assert batchtop(data_dir, "enqueue", str(lines)).returncode == 0
    assert (data_dir / "batchtop.sqlite3").exists()


def test_the_python_client_follows_the_same_precedence(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from batchtop import Client

    config = tmp_path / "config.toml"
    config.write_text(f'[store]\nurl = "{pg_url}"\n')
    config.chmod(0o600)
    with Client(tmp_path / "a", config=config) as client:
        assert client._store.url == pg_url
    monkeypatch.setenv("BATCHTOP_STORE", pg_url)
    with Client(tmp_path / "b") as client:
        assert client._store.url == pg_url
    with Client(tmp_path / "c", store=False) as client:  # the demo's: the file, whatever the environment says
        assert client._store.url is None
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert (tmp_path / "c" / "batchtop.sqlite3").exists()


# -- the password --------------------------------------------------------------------------


def test_a_wrong_password_is_a_clean_error_naming_the_host_with_stars(tmp_path: Path, pg_url: str) -> None:
    wrong = with_user(pg_url, "postgres", "Wrong-Pass-s3cr3t")
    host = urlsplit(pg_url).hostname
    lines = write_lines(tmp_path / "in.jsonl", [openai_line("r1")])
    for args in (("--once", "--json", "--no-refresh"), ("--once",), ("enqueue", str(lines)), ("flush", "--all"),
                 ("results",), ("events",), ("tick",)):
        result = batchtop(tmp_path / "data", "--store", wrong, *args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        both = result.stdout + result.stderr
        assert "Wrong-Pass-s3cr3t" not in both and "Wrong-Pass" not in both, args
        assert f"postgres:***@{host}" in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr, (args, result.stderr)


def test_the_password_is_not_in_the_once_json(tmp_path: Path, pg_url: str) -> None:
    """Needs the store's SQL ported to PostgreSQL (the refresh's tick, the status)."""
    password = password_of(pg_url)
    result = batchtop(tmp_path / "data", "--store", pg_url, "--once", "--json")
    assert result.returncode == 0, result.stderr
    assert password not in result.stdout + result.stderr
    json.loads(result.stdout)


def test_the_password_is_redacted_once_the_store_is_resolved(pg_url: str) -> None:
    password = password_of(pg_url)
    resolve_store(Config(), pg_url, env={})
    assert password not in redact(f"connection to server failed for password {password!r}")
    parameter = "postgresql://h/db?user=u&password=Param-Secret-99"
    resolve_store(Config(), parameter, env={})
    assert "Param-Secret-99" not in redact("libpq said: Param-Secret-99")
    assert "u" in redact("u")  # the user name is not a secret


def test_libpq_parameters_pass_through(tmp_path: Path, pg_url: str) -> None:
    url = f"{pg_url}?sslmode=disable&application_name=x"
    config = resolve_store(Config(), url, env={})
    with Store(tmp_path / "data", url=config.store.url, schema=config.store.schema) as store:
        (name,) = store.db.execute("SELECT current_setting('application_name')").fetchone()
        (ssl,) = store.db.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    assert name == "x" and ssl is False
    result = batchtop(tmp_path / "data", "--store", url, "dead-letters", "--json")
    assert result.returncode == 0, result.stderr


# -- a blank database -------------------------------------------------------------------------


def test_once_on_a_blank_database_prints_the_empty_status_and_creates_nothing(tmp_path: Path, pg_blank_url: str) -> None:
    data_dir = tmp_path / "data"
    shown = batchtop(data_dir, "--store", pg_blank_url, "--once", "--json")  # with its refresh
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["batches"] == [] and doc["dead_letters"] == 0
    text = batchtop(data_dir, "--store", pg_blank_url, "--once")
    assert text.returncode == 0, text.stderr
    for args in (("results",), ("dead-letters",), ("events",), ("report", "--json")):
        result = batchtop(data_dir, "--store", pg_blank_url, *args)
        assert result.returncode == 0, (args, result.stderr)
    assert not has_schema(pg_blank_url)
    assert not data_dir.exists()


def test_a_command_that_writes_creates_the_store_on_a_blank_database(tmp_path: Path, pg_blank_url: str) -> None:
    """Needs the store's SQL ported to PostgreSQL (flush)."""
    result = batchtop(tmp_path / "data", "--store", pg_blank_url, "flush", "--all")
    assert result.returncode == 0, result.stderr
    assert has_schema(pg_blank_url)


def test_enqueue_flush_once_through_the_cli(tmp_path: Path, pg_url: str) -> None:
    """Needs the store's SQL ported to PostgreSQL (enqueue, flush, the status)."""
    data_dir = tmp_path / "data"
    lines = write_lines(tmp_path / "in.jsonl", [openai_line(f"r{i}") for i in range(3)])
    enqueued = batchtop(data_dir, "--store", pg_url, "enqueue", str(lines))
    assert enqueued.returncode == 0, enqueued.stderr
    assert "enqueued 3 requests" in enqueued.stdout
    flushed = batchtop(data_dir, "flush", "--all", env={"BATCHTOP_STORE": pg_url})
    assert flushed.returncode == 0, flushed.stderr
    shown = batchtop(data_dir, "--store", pg_url, "--once", "--json", "--no-refresh")
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    (buffer,) = doc["buffers"]
    assert buffer["queued"] == 3 and buffer["provider"] == "openai"
    assert requests_in(pg_url) == 3
    assert password_of(pg_url) not in shown.stdout
    assert not (data_dir / "batchtop.sqlite3").exists()


# -- a role that may only read ------------------------------------------------------------------


@pytest.fixture
def viewer_url(pg_url: str) -> Iterator[str]:
    """A LOGIN role granted SELECT on the store only, and its URL."""
    role, password = f"viewer_{os.getpid()}_{next(_ROLES)}", "Viewer-pw-2718"
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f"DROP ROLE IF EXISTS {role}")
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        admin.execute(f"GRANT USAGE ON SCHEMA batchtop TO {role}")
        admin.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA batchtop TO {role}")
    try:
        yield with_user(pg_url, role, password)
    finally:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


def test_a_read_only_role_is_seen_as_one(tmp_path: Path, pg_url: str, viewer_url: str) -> None:
    from batchtop.tui.snapshot import store_is_read_only

    with Store(tmp_path, create=False, url=viewer_url) as store:
        assert store.read_only
    with Store(tmp_path, create=False, url=pg_url) as store:
        assert not store.read_only
    with Store(tmp_path / "sqlite") as store:
        assert not store.read_only
    assert store_is_read_only(tmp_path, resolve_store(Config(), viewer_url, env={}))
    assert not store_is_read_only(tmp_path, resolve_store(Config(), pg_url, env={}))
    assert not store_is_read_only(tmp_path / "sqlite", Config())


def test_a_viewer_cannot_write_and_is_told_so_cleanly(tmp_path: Path, pg_url: str, viewer_url: str) -> None:
    data_dir = tmp_path / "data"
    lines = write_lines(tmp_path / "in.jsonl", [openai_line("r1")])
    for args in (("flush", "--all"), ("enqueue", str(lines)), ("tick",), ("cancel", "b1", "--yes"), ("resubmit", "b1")):
        result = batchtop(data_dir, "--store", viewer_url, *args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert "read-only" in result.stderr and "nothing was done" in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr and "Viewer-pw-2718" not in result.stdout + result.stderr
    assert requests_in(pg_url) == 0


def test_a_viewer_reads_the_status(tmp_path: Path, pg_url: str, viewer_url: str) -> None:
    """Needs the status queries ported to PostgreSQL. `--once` does not try to refresh
    (tick) as a viewer: it says so and shows the store as it is."""
    shown = batchtop(tmp_path / "data", "--store", viewer_url, "--once", "--json")
    assert shown.returncode == 0, shown.stderr
    assert "read-only for this role" in shown.stderr
    assert json.loads(shown.stdout)["batches"] == []
    assert "Viewer-pw-2718" not in shown.stdout + shown.stderr


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_console_of_a_viewer_starts_read_only(tmp_path: Path, viewer_url: str) -> None:
    from batchtop.tui import READ_ONLY_STORE, console_app

    config = resolve_store(load_config(tmp_path / "absent.toml"), viewer_url, env={})
    app = console_app(tmp_path / "data", config)
    assert app.read_only and not app.runs_engine
    assert app.label.startswith(READ_ONLY_STORE) and "***@" in app.label and "Viewer-pw-2718" not in app.label
    async with app.run_test(size=(150, 45)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        await app.screen.run_action("flush_all")
        await app.workers.wait_for_complete()
        await pilot.pause()
        notices = [n.message for n in app._notifications]
        assert READ_ONLY_STORE in notices
        assert f"{READ_ONLY_STORE}: flush all is disabled" in notices
        await pilot.press("q")
    assert not (tmp_path / "data").exists()


def test_serve_hands_the_store_to_its_consoles_without_showing_the_password(tmp_path: Path, pg_url: str) -> None:
    """The sessions' command line is printed by textual-serve and shown as the page's
    title: the store reaches them in their environment instead."""
    import re
    import signal
    import subprocess
    import sys
    import urllib.request

    password = password_of(pg_url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchtop", "--data-dir", str(tmp_path / "data"), "--store", pg_url, "serve", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        found = re.search(r"http://\S+/", banner)
        assert found, banner
        with urllib.request.urlopen(found.group(0), timeout=10) as response:
            page = response.read().decode()
        assert password not in banner and password not in page
        assert "--store" not in banner and "batchtop" in banner
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert password not in out


def test_the_engine_a_console_starts_opens_the_resolved_store(tmp_path: Path, pg_url: str) -> None:
    """The console hands its driver a data dir, opened in the driving thread: with the
    config's resolved store, that is the PostgreSQL one."""
    from batchtop.engine.driver import EngineDriver

    config = resolve_store(Config(), pg_url, env={})
    driver = EngineDriver(tmp_path / "data", config)
    try:
        assert driver.engine.store.url == pg_url and driver.engine.store.shared
    finally:
        driver.close()
    assert not (tmp_path / "data").exists()


def test_a_sqlite_store_never_loads_the_postgresql_driver(tmp_path: Path) -> None:
    """psycopg costs a quarter of a second to import: a cron `--once` on the file, an
    enqueue and an export never pay it."""
    import subprocess
    import sys

    probe = (
        "import sys\nfrom batchtop.cli import main\n"
        f"d = {str(tmp_path / 'data')!r}\n"
        "main(['--data-dir', d, 'enqueue', sys.argv[1]])\n"
        "main(['--data-dir', d, '--once', '--no-refresh'])\n"
        "main(['--data-dir', d, 'results'])\n"
        "main(['--data-dir', d, 'report'])\n"
        "assert 'psycopg' not in sys.modules, sorted(m for m in sys.modules if 'psycopg' in m)[:3]\n"
    )
    lines = tmp_path / "in.jsonl"
    lines.write_text('{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",'
                     ' "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}}\n')
    done = subprocess.run([sys.executable, "-c", probe, str(lines)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
