"""`batchtop run` killed with SIGKILL at random moments, restarted each time:
nothing lost, nothing submitted more often than the attempts we recorded."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batchtop.sim import Simulator
from batchtop.store import Store

from engine_helpers import anthropic_lines, enqueue, gemini_lines, openai_lines, sim  # noqa: F401

KILLS = 20
SEED = 20261125

CONFIG = """
[engine]
poll_interval = 0.2
lease_ttl = 30

[flush]
max_age = 0
max_requests = 50
"""


def _engine(data_dir: Path, config: Path, url: str | None) -> subprocess.Popen[bytes]:
    store = ["--store", url] if url else []
    return subprocess.Popen(
        [sys.executable, "-m", "batchtop", "--data-dir", str(data_dir), *store, "--config", str(config), "run"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
    )


def _holds_lease(data_dir: Path, url: str | None, pid: int) -> bool:
    with Store(data_dir, url=url) as store:
        row = store.db.execute("SELECT pid FROM lease").fetchone()
    return row is not None and row[0] == pid


def _wait(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _settled(data_dir: Path, url: str | None) -> bool:
    with Store(data_dir, url=url) as store:
        (open_,) = store.db.execute("SELECT count(*) FROM requests WHERE state NOT IN ('succeeded', 'dead')").fetchone()
    return open_ == 0


@pytest.mark.slow
def test_kill_engine_at_random_moments(sim: Simulator, data_dir: Path, tmp_path: Path, store_url: str | None) -> None:
    """On the SQLite file and on a PostgreSQL store (the same loop, the same audit)."""
    url = store_url
    sim.config.per_request_s = 0.002
    sim.config.first_try_failure_rate = 0.1
    enqueue(data_dir, openai_lines(1000) + anthropic_lines(1000) + gemini_lines(300), url=url)
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    rng = random.Random(SEED)
    killed_while_busy = 0
    for round_ in range(KILLS):
        # work keeps arriving between restarts, as it does in real use
        enqueue(data_dir, openai_lines(150, prefix=f"o{round_}-") + anthropic_lines(150, prefix=f"a{round_}_")
                + gemini_lines(50, prefix=f"g{round_}-"), url=url)
        calls = len(sim.request_log)
        proc = _engine(data_dir, config, url)
        try:
            assert _wait(lambda: _holds_lease(data_dir, url, proc.pid), 30), "engine never took the lease"  # noqa: B023  (called here)
            # kill while it talks to the providers, not while it is still importing
            if not _wait(lambda: len(sim.request_log) > calls, 30):  # noqa: B023  (called here)
                with Store(data_dir, url=url) as store:
                    debug = (
                        store.db.execute("SELECT * FROM engine_state").fetchall(),
                        store.db.execute("SELECT state, count(*) FROM requests GROUP BY 1").fetchall(),
                        store.db.execute("SELECT status, count(*) FROM batches GROUP BY 1").fetchall(),
                        store.db.execute("SELECT id, queued, held_reason, retry_at FROM buffers").fetchall(),
                    )
                raise AssertionError(f"engine made no provider call: {debug}")
            time.sleep(rng.uniform(0.0, 0.4))
            killed_while_busy += not _settled(data_dir, url)
        finally:
            proc.kill()
            proc.wait()
    assert killed_while_busy >= KILLS // 2, "most kills landed after the work was done: the test proves little"

    proc = _engine(data_dir, config, url)
    try:
        assert _wait(lambda: _settled(data_dir, url), 120), "the workload never finished after the last restart"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0

    with Store(data_dir, url=url) as store:
        rows = store.db.execute("SELECT provider, custom_id, state, attempts FROM requests").fetchall()
        assert len(rows) == 2300 + KILLS * 350
        assert {r[0] for r in rows} == {"openai", "anthropic", "gemini"}
        assert {r[2] for r in rows} == {"succeeded"}
        submitted = sim.submissions
        over = [(p, c, n, submitted[(p, c)]) for p, c, _, n in rows if submitted[(p, c)] > n]
        assert not over, f"submitted more often than recorded: {over[:5]}"
        assert all(submitted[(p, c)] >= 1 for p, c, _, _ in rows)
        # every request has exactly one successful attempt, with its result stored
        assert store.db.execute(
            "SELECT count(*) FROM attempts WHERE outcome = 'succeeded' AND response IS NOT NULL"
        ).fetchone() == (len(rows),)
        assert store.db.execute("SELECT count(*) FROM lease").fetchone() == (0,)  # released on SIGTERM
