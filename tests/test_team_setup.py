"""The README's Team set-up, run as written on a real PostgreSQL server: its SQL makes
the database, the roles and their GRANTs; the engine's role creates the schema's tables
and runs the engine, the producer's enqueues, the viewer's only reads."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from conftest import database_url

README = Path(__file__).resolve().parents[1] / "README.md"
_SEQ = itertools.count(1)


def _setup_sql() -> str:
    text = README.read_text()
    section = text[text.index("## Team set-up"):]
    sql = re.search(r"```sql\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    return re.sub(r"--[^\n]*", "", sql)  # without its comments, which may hold a semicolon


@pytest.fixture
def team(pg_server_url: str):  # type: ignore[no-untyped-def]
    """The README's SQL with names of this test's own (roles are the whole server's)."""
    tag = f"{os.getpid()}_{next(_SEQ)}"
    sql = _setup_sql()
    names = {"batchtop_engine": f"bt_engine_{tag}", "batchtop_producer": f"bt_producer_{tag}",
             "batchtop_viewer": f"bt_viewer_{tag}"}
    db_name = f"bt_team_{tag}"
    for old, new in names.items():
        sql = sql.replace(old, new)
    sql = sql.replace("CREATE DATABASE batchtop;", f"CREATE DATABASE {db_name};")
    before, _, after = sql.partition("\\c batchtop\n")
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        for statement in filter(str.strip, before.split(";")):
            admin.execute(statement)
    db_url = database_url(pg_server_url, db_name)
    with psycopg.connect(db_url, autocommit=True) as admin:
        for statement in filter(str.strip, after.split(";")):
            admin.execute(statement)
    passwords = dict(re.findall(r"ROLE (\w+)\s+LOGIN PASSWORD '([^']+)'", sql))
    host = db_url.split("@", 1)[1]

    def url(role: str) -> str:
        name = names[role]
        return f"postgresql://{name}:{passwords[name]}@{host}"

    yield url
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")
        for name in names.values():
            admin.execute(f"DROP ROLE IF EXISTS {name}")


def _batchtop(data_dir: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "batchtop", "--data-dir", str(data_dir), *args],
        capture_output=True, text=True, input=stdin, env={**os.environ}, timeout=120,
    )


def _line(cid: str) -> str:
    return json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                       "body": {"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}})


def test_the_readme_roles_work_as_documented(team, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    engine, producer, viewer = team("batchtop_engine"), team("batchtop_producer"), team("batchtop_viewer")
    # before the engine's first start the schema is empty: the producer cannot make the tables
    early = _batchtop(data, "--store", producer, "enqueue", "-", stdin=_line("early") + "\n")
    assert early.returncode != 0 and "Traceback" not in early.stderr, early.stderr
    # the engine's role creates the tables (a tick on a blank store: nothing to submit)
    first = _batchtop(data, "--store", engine, "tick")
    assert first.returncode == 0, first.stderr
    # the producer enqueues, all or nothing, and may ask for a flush
    done = _batchtop(data, "--store", producer, "enqueue", "-", stdin="".join(_line(f"q{i}") + "\n" for i in range(5)))
    assert done.returncode == 0, done.stderr
    dup = _batchtop(data, "--store", producer, "enqueue", "-", stdin=_line("q9") + "\n" + _line("q0") + "\n")
    assert dup.returncode != 0 and "q0" in dup.stderr and "Traceback" not in dup.stderr, dup.stderr
    assert _batchtop(data, "--store", producer, "flush", "--all").returncode == 0
    # the viewer reads the status, and its writes are refused cleanly
    shown = _batchtop(data, "--store", viewer, "--once", "--json")
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert sum(b["queued"] for b in status["buffers"]) == 5
    refused = _batchtop(data, "--store", viewer, "flush", "--all")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr, refused.stderr
    for result in (early, first, done, dup, shown, refused):
        assert "change-me" not in result.stdout + result.stderr  # no password, ever
