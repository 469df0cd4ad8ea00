"""Hardening: the disk fills up in the middle of an ingest.

SQLite's own limit stands in for a full disk: `PRAGMA max_page_count` on the
engine's connection, set a little above the database's current size, makes the
ingest of large result files fail with SQLITE_FULL part-way (some chunks committed,
the next one not). The tick must fail cleanly: the error reported and recorded as
the provider's state, nothing raised, the batch not marked ingested, the rollups
agreeing with the attempts that were stored. With the limit lifted, the next tick
completes the ingest with correct totals and nothing resubmitted.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from batchtop.config import FlushPolicy
from batchtop.engine.tick import Engine
from batchtop.sim import Simulator
from batchtop.store import Store

from engine_helpers import anthropic_lines, close, config, enqueue, openai_lines, sim, states, tick  # noqa: F401

N = 3000
# long custom_ids make long result lines (the simulator's reply names the custom_id)
OPENAI_PREFIX = "disk-" + "x" * 250 + "-"
ANTHROPIC_PREFIX = "disk_" + "y" * 50 + "_"
NO_LIMIT = 1_073_741_823


class Clock:
    """The engine's clock: real time plus a jump we control, to skip its backoff."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def _consistent(store: Store) -> tuple[int, int]:
    """The rollups sum exactly the attempts that have an outcome; returns (with outcome, total)."""
    db = store.db
    stored, total = db.execute("SELECT count(outcome), count(*) FROM attempts").fetchone()
    rolled = db.execute(
        "SELECT coalesce(sum(attempts), 0), coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0) FROM usage_rollup"
    ).fetchone()
    raw = db.execute(
        "SELECT count(*), coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0) FROM attempts WHERE outcome IS NOT NULL"
    ).fetchone()
    assert rolled == raw, f"rollup {rolled} != stored attempts {raw}"
    (hourly,) = db.execute("SELECT coalesce(sum(attempts), 0) FROM outcome_hourly").fetchone()
    assert hourly == stored
    # a request is succeeded exactly when its attempt's success was stored
    ok_attempts = db.execute("SELECT count(*) FROM attempts WHERE outcome = 'succeeded'").fetchone()[0]
    assert states(store).get("succeeded", 0) == ok_attempts
    return stored, total


def _run_until_ended_at_provider(sim: Simulator, engine: Engine, store: Store) -> None:
    report = tick(engine)
    assert len(report.submitted) == 2 and not report.errors, report
    end = time.monotonic() + 30
    while {b["phase"] for b in sim.batches()} - {"completed", "ended"}:
        assert time.monotonic() < end, sim.batches()
        time.sleep(0.05)


def _fill_the_disk(store: Store, margin_pages: int) -> None:
    (pages,) = store.db.execute("PRAGMA page_count").fetchone()
    (limit,) = store.db.execute(f"PRAGMA max_page_count = {pages + margin_pages}").fetchone()
    assert limit == pages + margin_pages


@pytest.fixture
def big_results(sim: Simulator, data_dir: Path) -> None:
    sim.config.per_request_s = 0.0
    enqueue(data_dir, openai_lines(N, prefix=OPENAI_PREFIX) + anthropic_lines(N, prefix=ANTHROPIC_PREFIX))


@pytest.mark.slow
@pytest.mark.parametrize("margin_pages", [0, 400])
def test_full_disk_mid_ingest_fails_cleanly_then_resumes(
    sim: Simulator, data_dir: Path, big_results: None, margin_pages: int
) -> None:
    clock = Clock()
    with Store(data_dir) as store:
        engine = Engine(store, config(flush=FlushPolicy(max_age=0.0, max_requests=50_000)), now=clock)
        try:
            _run_until_ended_at_provider(sim, engine, store)
            _fill_the_disk(store, margin_pages)

            report = tick(engine)  # must not raise
            assert report.errors, "the ingest did not hit the limit: the test proves nothing"
            assert not report.ingested
            for provider in report.errors:
                (value,) = store.db.execute(
                    "SELECT value FROM engine_state WHERE key = ?", (f"provider:{provider}",)
                ).fetchone()
                state = json.loads(value)
                assert state["status"].startswith("backing off") and state["error"] and state["retry_at"] > clock()
            # not marked ingested, and what was stored is counted once
            assert store.db.execute("SELECT count(*) FROM batches WHERE ingested_at IS NOT NULL").fetchone() == (0,)
            stored, total = _consistent(store)
            assert total == 2 * N and stored < total
            if margin_pages:
                assert stored > 0, "no chunk fitted: the partial-ingest case was not reached"
            assert not store.db.in_transaction

            # the backoff holds the provider while the disk is still full: nothing changes
            assert not tick(engine).ingested
            assert _consistent(store) == (stored, total)

            # space again, and the backoff has passed
            store.db.execute(f"PRAGMA max_page_count = {NO_LIMIT}")
            clock.offset += 3600
            report = tick(engine)
            assert not report.errors, report.errors
            assert len(report.ingested) == 2
            stored, total = _consistent(store)
            assert stored == total == 2 * N
            assert states(store) == {"succeeded": 2 * N}
            assert store.db.execute("SELECT count(*) FROM batches WHERE ingested_at IS NULL").fetchone() == (0,)
            assert store.db.execute("SELECT max(number) FROM attempts").fetchone() == (1,)
            assert set(sim.submissions.values()) == {1}
            assert store.db.execute("SELECT count(*) FROM anomalies").fetchone() == (0,)
            assert store.db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        finally:
            close(engine)


def test_full_disk_is_named_in_the_status(sim: Simulator, data_dir: Path, big_results: None) -> None:
    with Store(data_dir) as store:
        engine = Engine(store, config(flush=FlushPolicy(max_age=0.0, max_requests=50_000)))
        try:
            _run_until_ended_at_provider(sim, engine, store)
            _fill_the_disk(store, 0)
            report = tick(engine)
            assert report.errors
            for provider, error in report.errors.items():
                assert "full" in error, error
                (value,) = store.db.execute(
                    "SELECT value FROM engine_state WHERE key = ?", (f"provider:{provider}",)
                ).fetchone()
                assert "full" in json.loads(value)["error"]
        finally:
            close(engine)
