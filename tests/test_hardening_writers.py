"""Hardening: many writers in many processes while `batchtop run` works.

Four Python-API writer processes (single durable `Client.enqueue` calls and
`enqueue_many` transactions, interleaved) and one `batchtop enqueue` of a large
file write the same data dir while the engine subprocess flushes, submits, polls
and ingests against the simulator. No writer may see an error (`database is
locked` or anything else): every one exits 0 with nothing on stderr. At the end the
store holds exactly what was enqueued, and every request succeeded.

Two paces: `tight`, writers calling in a loop as fast as they can (the hardest case
for lock waits), and `paced`, a short pause between single calls, as a busy service
would. SQLite's write lock is not fair: writers in a tight loop keep winning it, and
the engine (sleeping in its busy handler) is starved for seconds at a time, though
it never errors; so only the paced run also requires the engine to have made
progress while the writers wrote.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batchtop.sim import Simulator

from engine_helpers import anthropic_lines, enqueue, openai_lines, sim  # noqa: F401

WRITERS = 4
SINGLE = 400  # durable single-request calls per writer
MANY = 4  # enqueue_many calls per writer ...
MANY_SIZE = 250  # ... of this many requests
FILE_LINES = 12_000
PRESEED = 1500  # per provider, enqueued before the engine starts

CONFIG = """
[engine]
poll_interval = 0.2
lease_ttl = 30

[flush]
max_age = 0
max_requests = 500
"""

WRITER = r"""
import json, sys, time
from batchtop import Client

data_dir, tag = sys.argv[1], sys.argv[2]
single, many, many_size = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
pause = float(sys.argv[6])

def openai(cid):
    return {"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": cid}]}}

def anthropic(cid):
    return {"custom_id": cid, "params": {"model": "claude-sonnet-4-20250514", "max_tokens": 20,
                                         "messages": [{"role": "user", "content": cid}]}}

done = 0
with Client(data_dir) as bt:
    every = max(1, single // max(1, many))
    for i in range(single):
        line = openai(f"{tag}-s{i}") if i % 2 else anthropic(f"{tag}_s{i}")
        bt.enqueue(line if i % 3 else json.dumps(line))  # dicts and JSON text
        done += 1
        time.sleep(pause)  # a busy service, not a tight loop: see the module docstring
        if i % every == every - 1 and i // every < many:
            k = i // every
            batch = [openai(f"{tag}-m{k}-{j}") if j % 2 else anthropic(f"{tag}_m{k}_{j}") for j in range(many_size)]
            done += len(bt.enqueue_many(batch))
print(done)
"""


def _file(path: Path, n: int) -> Path:
    with path.open("w") as f:
        for i in range(n):
            if i % 2:
                line = {"custom_id": f"file-{i}", "method": "POST", "url": "/v1/chat/completions",
                        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 100}]}}
            else:
                line = {"custom_id": f"file_{i}", "params": {"model": "claude-sonnet-4-20250514", "max_tokens": 20,
                                                             "messages": [{"role": "user", "content": "x" * 100}]}}
            f.write(json.dumps(line) + "\n")
    return path


def _db_count(data_dir: Path, sql: str) -> int:
    db = sqlite3.connect(data_dir / "batchtop.sqlite3", timeout=30)
    try:
        return db.execute(sql).fetchone()[0]
    finally:
        db.close()


# batches submitted + attempts ingested: grows with every engine write transaction that matters
_PROGRESS = (
    "SELECT (SELECT count(*) FROM batches WHERE provider_batch_id IS NOT NULL)"
    " + (SELECT count(*) FROM attempts WHERE outcome IS NOT NULL)"
)


def _holds_lease(data_dir: Path) -> bool:
    if not (data_dir / "batchtop.sqlite3").exists():
        return False
    try:
        return _db_count(data_dir, "SELECT count(*) FROM lease") == 1
    except sqlite3.OperationalError:  # the file exists, its schema not yet
        return False


def _wait(predicate, timeout: float, pause: float = 0.1) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(pause)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("pause", [0.005, 0.0], ids=["paced", "tight"])
def test_concurrent_writers_while_the_engine_runs_lose_nothing(
    sim: Simulator, data_dir: Path, tmp_path: Path, pause: float
) -> None:
    sim.config.per_request_s = 0.0002
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    big = _file(tmp_path / "big.jsonl", FILE_LINES)
    env = os.environ.copy()
    engine_err = tmp_path / "engine.err"

    # work waiting before the engine starts: it is busy from its first tick on
    enqueue(data_dir, openai_lines(PRESEED, prefix="pre-") + anthropic_lines(PRESEED, prefix="pre_"))
    with engine_err.open("wb") as err:
        engine = subprocess.Popen(
            [sys.executable, "-m", "batchtop", "--data-dir", str(data_dir), "--config", str(config), "run"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
    writers: list[subprocess.Popen[bytes]] = []
    try:
        assert _wait(lambda: _holds_lease(data_dir), 30), "engine never took the lease: " + engine_err.read_text()
        # and is past its start-up (SDK imports): its progress is measured from here
        assert _wait(lambda: _db_count(data_dir, _PROGRESS) > 0, 60), "engine never started work: " + engine_err.read_text()
        writers += [
            subprocess.Popen(
                [sys.executable, str(script), str(data_dir), f"w{n}", str(SINGLE), str(MANY), str(MANY_SIZE), str(pause)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
            for n in range(WRITERS)
        ]
        time.sleep(0.5)  # the file lands while the writers and the engine are busy
        cli = subprocess.Popen(
            [sys.executable, "-m", "batchtop", "--data-dir", str(data_dir), "enqueue", str(big)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        writers.append(cli)
        # sample the engine's progress while the writers write
        progress = set()
        end = time.monotonic() + 240
        while any(p.poll() is None for p in writers) and time.monotonic() < end:
            progress.add(_db_count(data_dir, _PROGRESS))
            time.sleep(0.1)
        results = [(p.args, *p.communicate(timeout=30), p.returncode) for p in writers]
        for args, _out, err, code in results:
            assert code == 0 and err == b"", f"{args[-4:]} exited {code}: {err.decode(errors='replace')[-2000:]}"
        expected = WRITERS * (SINGLE + MANY * MANY_SIZE) + FILE_LINES + 2 * PRESEED
        assert sum(int(out) for _, out, _, _ in results[:-1]) == WRITERS * (SINGLE + MANY * MANY_SIZE)
        assert f"enqueued {FILE_LINES} requests".encode() in results[-1][1]
        # the engine wrote too while they wrote (submissions, ingests): the writes interleaved
        if pause:
            assert len(progress) > 1, f"the engine made no progress while the writers ran: {progress}"

        settled = lambda: _db_count(data_dir, "SELECT count(*) FROM requests WHERE state NOT IN ('succeeded', 'dead')") == 0  # noqa: E731
        assert _wait(settled, 150, 0.25), "the workload never finished"
    finally:
        for p in writers:
            if p.poll() is None:
                p.kill()
                p.wait()
        engine.send_signal(signal.SIGTERM)
        code = engine.wait(timeout=60)
    log = engine_err.read_text()
    assert code == 0, log[-3000:]
    assert "Traceback" not in log and "locked" not in log, log[-3000:]

    db = sqlite3.connect(data_dir / "batchtop.sqlite3")
    try:
        assert db.execute("SELECT count(*) FROM requests").fetchone() == (expected,)
        assert db.execute("SELECT count(DISTINCT provider || ' ' || custom_id) FROM requests").fetchone() == (expected,)
        assert db.execute("SELECT state, count(*) FROM requests GROUP BY 1").fetchall() == [("succeeded", expected)]
        assert db.execute(
            "SELECT count(DISTINCT request_id) FROM attempts WHERE outcome = 'succeeded' AND response IS NOT NULL"
        ).fetchone() == (expected,)
        assert db.execute("SELECT sum(queued), sum(queued_bytes) FROM buffers").fetchone() == (0, 0)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        db.close()
    submitted = sim.submissions
    assert sum(submitted.values()) == expected and set(submitted.values()) == {1}
