"""The store's write path on both backends (`store_url`: the SQLite file, then a fresh
PostgreSQL store): enqueue all or nothing, the queue counters through every kind of
transition, and a whole engine run against the simulator."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from batchtop.config import FlushPolicy
from batchtop.engine.tick import Engine
from batchtop.errors import EnqueueError
from batchtop.intake.validation import parse_lines
from batchtop.providers.base import ERRORED, SUCCEEDED, RemoteBatch, ResultLine
from batchtop.sim import Simulator
from batchtop.store import Store, submissions
from batchtop.store.ingest import BatchIngest, Settle

from engine_helpers import (  # noqa: F401  (sim is a fixture)
    all_settled,
    anthropic_lines,
    close,
    config,
    drive,
    gemini_lines,
    openai_lines,
    sim,
    states,
)


def parsed(lines: list[dict], source: str = "input.jsonl"):  # type: ignore[no-untyped-def]
    return parse_lines([(source, i, json.dumps(line)) for i, line in enumerate(lines, 1)])


def counters_match(store: Store) -> None:
    """Every buffer's queued / queued_bytes against a count of its queued requests that
    no open range claim holds (a claim's rows stay `queued` until the provider has them)."""
    for buffer_id, queued, queued_bytes in store.db.execute("SELECT id, queued, queued_bytes FROM buffers").fetchall():
        claims = store.db.execute(
            "SELECT claim_lo, claim_hi FROM batches WHERE buffer_id = ? AND claim_hi IS NOT NULL"
            " AND status IN ('submitting', 'unknown') AND provider_batch_id IS NULL",
            (buffer_id,),
        ).fetchall()
        rows = store.db.execute(
            "SELECT id, bytes FROM requests WHERE buffer_id = ? AND state = 'queued'", (buffer_id,)
        ).fetchall()
        counted = [size for rid, size in rows if not any(lo <= rid <= hi for lo, hi in claims)]
        assert (queued, queued_bytes) == (len(counted), sum(counted)), f"buffer {buffer_id}"


def test_enqueue_is_all_or_nothing_and_names_the_live_duplicate(data_dir: Path, store_url: str | None) -> None:
    with Store(data_dir, url=store_url) as store:
        store.enqueue(parsed(openai_lines(3)))
        counters_match(store)
        again = parsed(openai_lines(2, prefix="new") + openai_lines(2)[1:], source="second.jsonl")
        with pytest.raises(EnqueueError) as caught:
            store.enqueue(again)
        (problem,) = caught.value.errors
        assert (problem.source, problem.line, problem.field) == ("second.jsonl", 3, "custom_id")
        assert "'o1' is already live" in problem.message
        # nothing of the second input was stored, counters and estimates included
        assert store.db.execute("SELECT count(*) FROM requests").fetchone() == (3,)
        assert store.db.execute("SELECT queued FROM buffers").fetchone() == (3,)
        assert store.db.execute("SELECT requests FROM buffer_estimates").fetchone() == (3,)
        counters_match(store)
        # a new buffer made by the rolled-back enqueue is gone, and the store still takes work
        store.enqueue(parsed(openai_lines(2, prefix="new")))
        assert store.db.execute("SELECT count(*) FROM requests").fetchone() == (5,)
        assert store.db.execute("SELECT requests FROM buffer_estimates").fetchone() == (5,)
        counters_match(store)


def test_queue_counters_follow_enqueue_flush_and_ingest(data_dir: Path, store_url: str | None) -> None:
    with Store(data_dir, url=store_url) as store:
        store.enqueue(parsed(openai_lines(30) + anthropic_lines(10)))
        counters_match(store)
        (buffer_id,) = store.db.execute("SELECT id FROM buffers WHERE provider = 'openai'").fetchone()
        now = time.time()
        # a flush claims the fresh requests as a range, capped at 20 of them
        intent = submissions.plan(store, buffer_id, FlushPolicy(max_age=0.0, max_requests=20), "default", now)
        assert intent is not None and intent.total == 20
        counters_match(store)
        assert store.db.execute("SELECT queued FROM buffers WHERE id = ?", (buffer_id,)).fetchone() == (10,)
        assert submissions.record_submitted(store, intent.id, RemoteBatch("b1", "in_progress", 20, 0, 0, now), now)
        counters_match(store)
        store.db.execute("UPDATE batches SET status = 'completed', ended_at = ? WHERE id = ?", (now, intent.id))
        ingest = BatchIngest(store, intent.id, Settle(max_attempts=3, auto_resubmit=True))
        results = [
            ResultLine(f"o{i}", SUCCEEDED, '{"ok": true}', None, input_tokens=10, output_tokens=5)
            if i % 4 else ResultLine(f"o{i}", ERRORED, None, "server_error: try again", input_tokens=10)
            for i in range(15)
        ]
        assert ingest.add(results, now) == 15
        counters_match(store)
        ingest.finish(now)  # the 5 without a result line fail as missing, and are queued again too
        counters_match(store)
        got = states(store)
        assert got == {"succeeded": 11, "queued": 29}, got
        assert store.db.execute("SELECT queued FROM buffers WHERE id = ?", (buffer_id,)).fetchone() == (19,)
        # the requests queued again are claimed row by row by the next flush, the rest as a range
        again = submissions.plan(store, buffer_id, FlushPolicy(max_age=0.0), "default", now)
        assert again is not None and again.total == 19
        counters_match(store)
        submissions.undo(store, again.id, "refused", None, now)  # given back: all counted again
        counters_match(store)
        assert store.db.execute("SELECT queued FROM buffers WHERE id = ?", (buffer_id,)).fetchone() == (19,)
        rollup = store.db.execute(
            "SELECT first_attempt, succeeded, attempts, input_tokens, output_tokens FROM usage_rollup ORDER BY 1, 2"
        ).fetchall()
        assert rollup == [(1, 0, 9, 40, 0), (1, 1, 11, 110, 55)]


def test_an_engine_runs_to_the_end_against_the_simulator(sim: Simulator, data_dir: Path, store_url: str | None) -> None:
    sim.config.first_try_failure_rate = 0.3
    with Store(data_dir, url=store_url) as store:
        store.enqueue(parsed(openai_lines(60) + anthropic_lines(40) + gemini_lines(20)))
        engine = Engine(store, config())
        try:
            drive(engine, all_settled(store))
        finally:
            close(engine)
        assert states(store) == {"succeeded": 120}
        counters_match(store)
        assert store.db.execute("SELECT sum(queued) FROM buffers").fetchone() == (0,)
        # every retried request went twice, as the provider saw it and as the store recorded it
        twice = {k for k, n in sim.submissions.items() if n == 2}
        assert twice
        recorded = {
            (p, c) for p, c, n in store.db.execute("SELECT provider, custom_id, attempts FROM requests") if n == 2
        }
        assert recorded == twice
        (attempts,) = store.db.execute("SELECT sum(attempts) FROM usage_rollup").fetchone()
        assert attempts == 120 + len(twice)
        batches = store.db.execute("SELECT count(*) FROM batches WHERE ingested_at IS NULL").fetchone()
        assert batches == (0,)


def test_a_flush_clears_the_provider_backoff_and_keeps_the_rest_of_its_state(
    data_dir: Path, store_url: str | None
) -> None:
    from batchtop.store import actions
    from batchtop.store.lifecycle import ProviderState

    with Store(data_dir, url=store_url) as store:
        store.enqueue(parsed(openai_lines(2)))
        before = ProviderState(status="backing off 8s", error="APIError: 500", retry_at=1e10, polled_at=12.5, failures=3)
        store.set_provider_state("openai", before)
        store.set_provider_state("anthropic", ProviderState(status="ok", polled_at=7.0))
        assert actions.request_flush(store, None, time.time()) == 2
        # SQLite's json_remove and PostgreSQL's jsonb write the JSON differently: both read back the same
        assert store.provider_state("openai") == ProviderState(
            status="backing off 8s", error="APIError: 500", polled_at=12.5, failures=3
        )
        assert store.provider_states()["anthropic"] == ProviderState(status="ok", polled_at=7.0)
