"""A SIGKILL in the middle of enqueueing leaves all of a file's lines or none."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import count_requests, openai_line

LINES = 60_000


@pytest.mark.slow
def test_sigkill_leaves_all_or_none(tmp_path: Path) -> None:
    big = tmp_path / "big.jsonl"
    with big.open("w") as f:
        for i in range(LINES):
            f.write(json.dumps(openai_line(f"k{i}", content="x" * 200)) + "\n")
    outcomes = set()
    # kill at increasing delays, so some kills land in parsing and some in the insert
    for n, delay in enumerate([0.2, 0.4, 0.6, 0.8, 1.0, 1.3, 1.6, 2.0]):
        data = tmp_path / f"d{n}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "batchtop", "--data-dir", str(data), "enqueue", str(big)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        got = count_requests(data)
        assert got in (0, LINES), f"kill after {delay}s left {got} of {LINES} lines"
        if (data / "batchtop.sqlite3").exists():
            with sqlite3.connect(data / "batchtop.sqlite3") as db:
                assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
                queued = db.execute("SELECT coalesce(sum(queued), 0) FROM buffers").fetchone()[0]
            assert queued == got
        outcomes.add(got)
    assert 0 in outcomes, "no kill landed before the commit: the test proved nothing"
