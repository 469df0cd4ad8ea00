"""`buffers.queued` / `queued_bytes` never drift from the requests they count.

The counters let every view skip counting a million rows, so a path that changes a
request's state without them would show a wrong queue and flush on wrong figures
for good. They are kept by triggers (schema `_queue_counters_by_trigger`); these
tests walk every path that moves requests in or out of `queued` (enqueue, a
rejected enqueue, flush, a refused submit, cancel, retry, dead-letter, resubmit) and
compare the counters with a COUNT over `requests` after each step. Real SQLite, the
real SDKs, our simulator over HTTP.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from batchtop.engine.tick import Engine
from batchtop.errors import EnqueueError
from batchtop.sim import Simulator
from batchtop.states import RequestState
from batchtop.store import Store, actions

from engine_helpers import anthropic_lines, close, config, enqueue, openai_lines, sim, states, tick  # noqa: F401 (sim is a fixture)


def drift(store: Store) -> list[tuple[int, int, int, int, int]]:
    """(buffer, queued, counted, queued_bytes, counted bytes) of every buffer whose
    counters disagree with its queued requests; [] when all are exact."""
    rows = store.db.execute(
        "SELECT b.id, b.queued, count(r.id), b.queued_bytes, coalesce(sum(r.bytes), 0) FROM buffers b"
        " LEFT JOIN requests r ON r.buffer_id = b.id AND r.state = ? GROUP BY b.id ORDER BY b.id",
        (RequestState.QUEUED,),
    ).fetchall()
    return [r for r in rows if (r[1], r[3]) != (r[2], r[4])]


def queued(store: Store) -> int:
    (n,) = store.db.execute("SELECT coalesce(sum(queued), 0) FROM buffers").fetchone()
    return int(n)


def settle(engine: Engine, store: Store, ticks: int = 40) -> None:
    """Tick until nothing is in flight, checking the counters after every tick."""
    for _ in range(ticks):
        tick(engine)
        assert drift(store) == []
        s = states(store)
        if not {RequestState.SUBMITTING, RequestState.IN_FLIGHT} & set(s) and not s.get(RequestState.QUEUED):
            return
        time.sleep(0.05)
    raise AssertionError(f"still in flight: {states(store)}")


def test_counters_follow_enqueue_flush_retry_and_dead_letters(sim: Simulator, data_dir: Path) -> None:
    sim.config.first_try_failure_rate = 0.4  # retried: queued again by the ingest
    sim.config.scripted_errors = {"o3": "invalid_request", "o4": "server_error"}  # dead at once; dead after max_attempts
    enqueue(data_dir, openai_lines(30) + anthropic_lines(12))
    with Store(data_dir) as store:
        assert drift(store) == [] and queued(store) == 42
        with pytest.raises(EnqueueError):  # a live custom_id: the whole input is rolled back
            enqueue(data_dir, openai_lines(2))
        assert drift(store) == [] and queued(store) == 42
        engine = Engine(store, config(max_attempts=2))
        settle(engine, store)
        s = states(store)
        assert s.get(RequestState.DEAD) == 2 and s[RequestState.SUCCEEDED] == 40, s
        (retried,) = store.db.execute("SELECT count(*) FROM attempts WHERE number = 2").fetchone()
        assert retried > 2, "the simulator failed no first try: the retry path was not walked"
        assert queued(store) == 0
        # the operator sends the dead letters of a batch again
        (batch_id,) = store.db.execute(
            "SELECT b.provider_batch_id FROM attempts a JOIN requests r ON r.id = a.request_id"
            " JOIN batches b ON b.id = a.batch_id WHERE r.custom_id = 'o3' AND a.number = r.attempts"
        ).fetchone()
        sim.config.scripted_errors = {}
        assert actions.resubmit(store, batch_id, time.time()) >= 1
        assert drift(store) == [] and queued(store) >= 1
        settle(engine, store)
        assert queued(store) == 0
        close(engine)


def test_counters_follow_a_refused_submit_and_a_cancel(sim: Simulator, data_dir: Path) -> None:
    enqueue(data_dir, openai_lines(10) + anthropic_lines(10))
    with Store(data_dir) as store:
        engine = Engine(store, config())
        sim.config.create_error = "insufficient_quota"  # nothing created: the requests go back (undo)
        report = tick(engine)
        assert report.refused and not report.submitted
        assert drift(store) == [] and queued(store) == 20
        sim.config.create_error = None
        sim.config.per_request_s = 1.0
        sim.config.cancel_s = 1.0
        actions.request_flush(store, None, time.time())  # past the quota hold
        submitted = tick(engine).submitted
        assert len(submitted) == 2 and queued(store) == 0 and drift(store) == []
        sim.advance(3.5)
        for batch_id in submitted:
            actions.request_cancel(store, batch_id, time.time())
        assert sorted(tick(engine).cancelled) == sorted(submitted)
        sim.advance(2.0)
        sim.config.per_request_s = 0.0
        assert sorted(tick(engine).ingested) == sorted(submitted)
        assert drift(store) == []
        settle(engine, store)
        close(engine)
