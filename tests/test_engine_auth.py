"""Keys: a refused key (401) is an error on the provider's status line and in the exit
status, never "refused" work with the provider "ok"; a missing key is an error only for
a provider with work; a buffer held for a missing or refused key is released at the
first tick after the key is right. Real SQLite, the real SDKs, the simulator over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from batchtop.config import Config, EngineConfig
from batchtop.engine.tick import Engine
from batchtop.sim import Simulator
from batchtop.store import Store
from batchtop.views import status

from conftest import run_batchtop
from engine_helpers import (  # noqa: F401
    anthropic_lines,
    close,
    config,
    enqueue,
    openai_lines,
    sim,
    states,
    tick,
)


def bt(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_batchtop("--data-dir", str(data_dir), *args, env={**os.environ, **(env or {})})


def provider_status(store: Store, engine: Engine, provider: str) -> dict:
    return status.collect(store.db, engine.config, engine.now()).to_json()["providers"][provider]


def test_a_wrong_key_is_an_auth_error_not_a_refusal(sim: Simulator, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sim.config.require_api_key = "sk-right"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-123")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-right")
    enqueue(data_dir, openai_lines(4) + anthropic_lines(2))
    with Store(data_dir) as store:
        engine = Engine(store, config())
        report = tick(engine)
        assert not report.refused
        assert "openai" in report.errors and "401" in report.errors["openai"]
        assert "OPENAI_API_KEY" in report.errors["openai"]
        assert [b for b in report.submitted if b.startswith("msgbatch_")] == report.submitted != []  # the other goes on
        line = provider_status(store, engine, "openai")
        assert line["status"] != "ok" and "auth" in line["status"] and "401" in (line["error"] or "")
        # nothing was used up and nothing is left half-submitted: the requests wait, and say why
        assert states(store).get("queued") == 4 and "submitting" not in states(store)
        assert store.db.execute("SELECT max(attempts) FROM requests WHERE provider = 'openai'").fetchone() == (0,)
        (held,) = store.db.execute("SELECT held_reason FROM buffers WHERE provider = 'openai'").fetchone()
        assert "authentication failed" in held and "sk-wrong" not in held
        # while the key is wrong, a tick asks with one cheap call, never uploads the batch again
        sim.clear_log()
        assert "openai" in tick(engine).errors
        assert not sim.requests(provider="openai", method="POST")
        close(engine)
        # the key is fixed: the next tick (a new process, as from cron) submits at once
        monkeypatch.setenv("OPENAI_API_KEY", "sk-right")
        engine = Engine(store, config())
        report = tick(engine)
        assert not report.errors and any(b.startswith("batch_") for b in report.submitted)
        assert provider_status(store, engine, "openai")["status"] == "ok"
        assert store.db.execute("SELECT held_reason, retry_at FROM buffers WHERE provider = 'openai'").fetchone() == (None, None)
        close(engine)


def test_tick_exits_non_zero_on_a_wrong_key(sim: Simulator, data_dir: Path) -> None:
    sim.config.require_api_key = "sk-right"
    enqueue(data_dir, openai_lines(2))
    assert bt(data_dir, "flush", "--all").returncode == 0
    r = bt(data_dir, "tick", env={"OPENAI_API_KEY": "sk-wrong"})
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stdout == "tick: nothing done; 1 provider failed: openai\n"
    assert "openai" in r.stderr and "401" in r.stderr and "sk-wrong" not in r.stderr + r.stdout
    doc = json.loads(bt(data_dir, "--once", "--json", "--no-refresh").stdout)
    assert "auth" in doc["providers"]["openai"]["status"]


def test_a_wrong_key_while_polling_is_an_auth_error_too(sim: Simulator, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sim.config.per_request_s = 1000.0  # the batch stays in flight
    enqueue(data_dir, anthropic_lines(2))
    with Store(data_dir) as store:
        engine = Engine(store, config())
        assert len(tick(engine).submitted) == 1
        close(engine)
        sim.config.require_api_key = "sk-rotated"  # the key was revoked meanwhile
        engine = Engine(store, config())
        report = tick(engine)
        assert "anthropic" in report.errors and "401" in report.errors["anthropic"]
        line = provider_status(store, engine, "anthropic")
        assert "auth" in line["status"] and line["retry_at"] is None
        close(engine)


def test_no_key_and_no_work_is_not_an_error(sim: Simulator, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    enqueue(data_dir, anthropic_lines(2))
    assert bt(data_dir, "flush", "--all").returncode == 0
    r = bt(data_dir, "tick")
    assert r.returncode == 0, r.stderr
    doc = json.loads(bt(data_dir, "--once", "--json", "--no-refresh").stdout)
    assert "openai" not in doc["providers"] or not doc["providers"]["openai"]["error"]


def test_no_key_with_work_is_an_error_on_its_status_line(data_dir: Path) -> None:
    enqueue(data_dir, openai_lines(1))
    r = bt(data_dir, "tick")
    assert r.returncode == 1 and "OPENAI_API_KEY" in r.stderr
    doc = json.loads(bt(data_dir, "--once", "--json", "--no-refresh").stdout)
    line = doc["providers"]["openai"]
    assert line["status"] != "ok" and "OPENAI_API_KEY" in line["error"]


def test_a_no_key_hold_clears_once_the_key_is_there(sim: Simulator, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The buffer is not due yet (max_age 1h): nothing is submitted that could clear the
    hold on the way, the key alone must."""
    monkeypatch.delenv("OPENAI_API_KEY")
    enqueue(data_dir, openai_lines(3))
    cfg = Config(engine=EngineConfig(poll_interval=0.1))
    with Store(data_dir) as store:
        engine = Engine(store, cfg)
        assert "openai" in tick(engine).errors
        (held,) = store.db.execute("SELECT held_reason FROM buffers").fetchone()
        assert "no API key" in held
        close(engine)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key")
        engine = Engine(store, cfg)
        report = tick(engine)
        assert not report.errors and not report.submitted
        assert store.db.execute("SELECT held_reason, retry_at FROM buffers").fetchone() == (None, None)
        assert provider_status(store, engine, "openai")["status"] == "ok"
        close(engine)
