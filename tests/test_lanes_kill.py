"""`batchtop run` killed with SIGKILL while real-time calls are out, restarted each
time: no request is ever sent twice (issue 15). A claim left open by a killed engine
may have been answered, so it becomes a dead letter, never a second call."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batchtop.intake.client import Client
from batchtop.sim import Simulator
from batchtop.store.realtime import ORPHANED

from engine_helpers import anthropic_lines, openai_lines, sim  # noqa: F401

KILLS = 8
SEED = 20261201

CONFIG = """
[engine]
poll_interval = 0.2
lease_ttl = 30

[realtime]
concurrency = 4
"""


def _engine(data_dir: Path, config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "batchtop", "--data-dir", str(data_dir), "--config", str(config), "run"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy(),
    )


def _wait(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _holds_lease(data_dir: Path, pid: int) -> bool:
    rows = _query(data_dir, "SELECT pid FROM lease")
    return bool(rows) and rows[0][0] == pid


def _query(data_dir: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(data_dir / "batchtop.sqlite3", timeout=30)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


@pytest.mark.slow
def test_nothing_is_sent_twice_across_sigkills_during_realtime_work(sim: Simulator, data_dir: Path, tmp_path: Path) -> None:
    sim.config.realtime_latency_s = 0.1  # 300 calls, 4 at a time: about 8 s of work, over many kills
    with Client(data_dir) as bt:
        bt.enqueue_many(openai_lines(150), tier="critical")
        bt.enqueue_many(anthropic_lines(150), tier="critical")
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    rng = random.Random(SEED)
    killed_busy = 0
    for _ in range(KILLS):
        sent = sum(sim.realtime_received.values())
        proc = _engine(data_dir, config)
        try:
            assert _wait(lambda proc=proc: _holds_lease(data_dir, proc.pid), 30), "engine never took the lease"
            # kill while calls are out, not while it is still importing
            if not _wait(lambda sent=sent: sum(sim.realtime_received.values()) > sent, 30):
                break  # nothing left to send
            time.sleep(rng.uniform(0.0, 0.5))
            killed_busy += _query(data_dir, "SELECT count(*) FROM realtime_calls WHERE outcome IS NULL")[0][0] > 0
        finally:
            proc.kill()
            proc.wait()
    proc = _engine(data_dir, config)
    try:
        end = time.monotonic() + 120
        while time.monotonic() < end:
            if not _query(data_dir, "SELECT count(*) FROM requests WHERE state NOT IN ('succeeded', 'dead')")[0][0]:
                break
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    states = dict(_query(data_dir, "SELECT state, count(*) FROM requests GROUP BY state"))
    assert set(states) <= {"succeeded", "dead"} and sum(states.values()) == 300, states
    assert killed_busy >= KILLS // 2, "most kills landed while no call was out: the test proves little"
    assert max(sim.realtime_received.values()) == 1, [k for k, v in sim.realtime_received.items() if v > 1]
    dead = _query(data_dir, "SELECT last_error FROM requests WHERE state = 'dead'")
    assert all(e == ORPHANED for (e,) in dead)
    # at most the calls out at each kill (concurrency 4) and the answers waiting for their commit (as many);
    # claims not yet sent were queued again
    assert len(dead) <= KILLS * 2 * 4
    # each success was answered once; the other answers went to engines killed before storing them (dead letters)
    answered = sum(sim.realtime_calls.values())
    assert states.get("succeeded", 0) <= answered <= states.get("succeeded", 0) + len(dead)
    assert not _query(data_dir, "SELECT count(*) FROM attempts")[0][0]
    assert not _query(data_dir, "SELECT count(*) FROM batches")[0][0]  # no batch was involved
