"""The engine commands as a user runs them: flush, tick, run, resubmit, cancel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batchtop.sim import Simulator
from batchtop.store import Store

from conftest import run_batchtop
from engine_helpers import anthropic_lines, enqueue, openai_lines, sim  # noqa: F401


def bt(data_dir: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_batchtop("--data-dir", str(data_dir), *args, input=stdin, env=dict(os.environ))


@pytest.mark.slow  # several seconds: in the slow tier, which .ci/run runs after
def test_flush_then_tick_submits_then_ingests(sim: Simulator, data_dir: Path) -> None:
    enqueue(data_dir, openai_lines(5) + anthropic_lines(4))
    r = bt(data_dir, "flush", "gpt-4o-mini")
    assert r.returncode == 0 and "5 queued requests" in r.stdout
    r = bt(data_dir, "tick")
    assert r.returncode == 0, r.stderr
    assert "submitted 1" in r.stdout  # only the flushed buffer: the other is not due yet (max_age 1h)
    assert [b["provider"] for b in sim.batches()] == ["openai"]
    assert bt(data_dir, "flush", "--all").returncode == 0
    time.sleep(0.1)
    r = bt(data_dir, "tick")
    assert "submitted 1" in r.stdout and "ingested 1" in r.stdout


def test_flush_names_an_unknown_buffer(data_dir: Path) -> None:
    enqueue(data_dir, openai_lines(1))
    r = bt(data_dir, "flush", "no-such-model")
    assert r.returncode == 1 and "no buffer named 'no-such-model'" in r.stderr and "gpt-4o-mini" in r.stderr
    assert bt(data_dir, "flush").returncode == 2  # BUFFER or --all


def _submitted(sim: Simulator, data_dir: Path) -> str:
    sim.config.per_request_s = 1000.0
    enqueue(data_dir, openai_lines(3))
    bt(data_dir, "flush", "--all")
    assert bt(data_dir, "tick").returncode == 0
    (batch,) = sim.batches()
    return batch["id"]


@pytest.mark.slow  # several seconds: in the slow tier, which .ci/run runs after
def test_cancel_asks_and_no_means_no(sim: Simulator, data_dir: Path) -> None:
    batch_id = _submitted(sim, data_dir)
    r = bt(data_dir, "cancel", batch_id, stdin="n\n")
    assert r.returncode == 0 and batch_id in r.stderr and "not cancelled" in r.stderr
    assert sim.batch(batch_id)["status"] == "in_progress"
    r = bt(data_dir, "cancel", batch_id, stdin="y\n")
    assert r.returncode == 0, r.stderr
    assert sim.batch(batch_id)["status"] in ("cancelling", "cancelled")


def test_cancel_yes_and_unknown_batch(sim: Simulator, data_dir: Path) -> None:
    batch_id = _submitted(sim, data_dir)
    assert bt(data_dir, "cancel", batch_id, "--yes").returncode == 0
    assert sim.batch(batch_id)["status"] in ("cancelling", "cancelled")
    r = bt(data_dir, "cancel", "batch_nope", "--yes")
    assert r.returncode == 1 and "batch_nope" in r.stderr


@pytest.mark.slow  # several seconds: in the slow tier, which .ci/run runs after
def test_resubmit_requeues_the_failed_lines_of_a_batch(sim: Simulator, data_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[engine]\nauto_resubmit = false\n[flush]\nmax_age = 0\n")
    sim.config.first_try_failure_rate = 0.5
    enqueue(data_dir, openai_lines(20))
    assert bt(data_dir, "--config", str(config), "tick").returncode == 0
    time.sleep(0.1)
    assert bt(data_dir, "--config", str(config), "tick").returncode == 0
    with Store(data_dir) as store:
        failed = store.db.execute("SELECT count(*) FROM requests WHERE state = 'failed'").fetchone()[0]
    (batch,) = sim.batches()
    assert failed > 0
    r = bt(data_dir, "--config", str(config), "resubmit", batch["id"])
    assert r.returncode == 0 and f"{failed} requests" in r.stdout
    assert bt(data_dir, "--config", str(config), "tick").returncode == 0
    second = sim.batches()[-1]
    assert second["n"] == failed


def _holder_is(data_dir: Path, pid: int) -> bool:
    with Store(data_dir) as store:
        row = store.db.execute("SELECT pid FROM lease").fetchone()
    return row is not None and row[0] == pid


def test_second_engine_says_who_holds_the_data_dir_and_run_exits_cleanly(sim: Simulator, data_dir: Path) -> None:
    enqueue(data_dir, openai_lines(2))
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchtop", "--data-dir", str(data_dir), "run"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )
    try:
        deadline = time.monotonic() + 30
        while not _holder_is(data_dir, proc.pid):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the running engine never took the lease"
            time.sleep(0.05)
        r = bt(data_dir, "tick")
        assert r.returncode == 1 and f"pid {proc.pid}" in r.stderr and "holds" in r.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert bt(data_dir, "tick").returncode == 0  # released on exit


def test_run_says_what_it_does(sim: Simulator, data_dir: Path) -> None:
    """`batchtop run` logged nothing at all, not even the batches it submitted."""
    enqueue(data_dir, openai_lines(2))
    bt(data_dir, "flush", "--all")
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchtop", "--data-dir", str(data_dir), "run"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )
    try:
        deadline = time.monotonic() + 30
        while not sim.batches():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the engine never submitted"
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "engine running" in err and "tick: submitted 1" in err and "engine stopped" in err, err


def test_missing_key_is_reported_not_crashed(data_dir: Path) -> None:
    enqueue(data_dir, anthropic_lines(1))
    bt(data_dir, "flush", "--all")
    r = bt(data_dir, "tick")
    assert r.returncode == 1 and "ANTHROPIC_API_KEY" in r.stderr and "Traceback" not in r.stderr
    doc = json.loads(bt(data_dir, "--once", "--json", "--no-refresh").stdout)
    assert "ANTHROPIC_API_KEY" in (doc["buffers"][0].get("held_reason") or "")
