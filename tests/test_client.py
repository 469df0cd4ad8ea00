"""The Python API: same validation and store as the CLI, durable per call."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import pytest

from batchtop import Client, EnqueueError

from conftest import anthropic_line, count_requests, openai_line


def test_enqueue_one_and_many(data_dir: Path) -> None:
    with Client(data_dir) as bt:
        assert bt.enqueue(openai_line("one"), sla="2h") == "one"
        cid = bt.enqueue(json.dumps(anthropic_line(None)))
        assert cid.startswith("bt_")
        ids = bt.enqueue_many([openai_line(f"m{i}") for i in range(5)])
    assert ids == [f"m{i}" for i in range(5)]
    assert count_requests(data_dir) == 7
    with sqlite3.connect(data_dir / "batchtop.sqlite3") as db:
        (deadline_in,) = db.execute("SELECT deadline - enqueued_at FROM requests WHERE custom_id = 'one'").fetchone()
    assert deadline_in == pytest.approx(7200)


def test_bad_request_raises_with_field_and_stores_nothing(data_dir: Path) -> None:
    with Client(data_dir) as bt:
        bad = openai_line("x")
        del bad["body"]["model"]
        with pytest.raises(EnqueueError, match=r"<python>:1: body.model: missing"):
            bt.enqueue(bad)
        with pytest.raises(EnqueueError, match=r"<python>:3: params.max_tokens"):
            bt.enqueue_many([openai_line("a"), openai_line("b"), anthropic_line("c", max_tokens=0)])
    assert count_requests(data_dir) == 0


def test_live_duplicate_raises(data_dir: Path) -> None:
    with Client(data_dir) as bt:
        bt.enqueue(openai_line("dup"))
        with pytest.raises(EnqueueError, match="already live"):
            bt.enqueue_many([openai_line("fresh"), openai_line("dup")])
        assert bt.enqueue(openai_line("fresh")) == "fresh"
    assert count_requests(data_dir) == 2


def test_concurrent_writers_lose_nothing(data_dir: Path) -> None:
    Client(data_dir).close()

    def writer(n: int) -> None:
        with Client(data_dir) as bt:
            for i in range(50):
                bt.enqueue(openai_line(f"w{n}-{i}"))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert count_requests(data_dir) == 200
    with sqlite3.connect(data_dir / "batchtop.sqlite3") as db:
        assert db.execute("SELECT sum(queued) FROM buffers").fetchone()[0] == 200
