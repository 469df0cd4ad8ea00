"""The engine end to end: a real store (the SQLite file and a PostgreSQL server: every
test runs on both, through the `store_url` fixture), the real SDKs, our simulator over HTTP."""

from __future__ import annotations

import asyncio
import math
import os
import socket
from pathlib import Path

import pytest

from batchtop.config import Config, FlushPolicy
from batchtop.engine.tick import Engine
from batchtop.providers.clients import build_adapter
from batchtop.sim import Simulator
from batchtop.store import Store, actions, lease, submissions
from batchtop.store.lease import EngineBusy

from engine_helpers import (  # noqa: F401  (sim is a fixture)
    all_settled,
    anthropic_lines,
    close,
    config,
    drive,
    enqueue,
    gemini_lines,
    openai_lines,
    sim,
    states,
    tick,
)


def attempts_of(store: Store) -> dict[tuple[str, str], int]:
    return {
        (p, c): n for p, c, n in store.db.execute("SELECT provider, custom_id, attempts FROM requests")
    }


def test_failed_first_tries_are_submitted_exactly_twice(sim: Simulator, data_dir: Path, store_url: str | None) -> None:
    sim.config.first_try_failure_rate = 0.3
    enqueue(data_dir, openai_lines(120) + anthropic_lines(80), url=store_url)
    with Store(data_dir, url=store_url) as store:
        engine = Engine(store, config())
        drive(engine, all_settled(store))
        assert states(store) == {"succeeded": 200}
        subs = sim.submissions
        twice = {k for k, n in subs.items() if n == 2}
        assert twice, "the simulator failed no first try: the test proves nothing"
        assert set(subs.values()) == {1, 2}
        # exactly the requests whose first attempt failed went twice, and we recorded it
        failed_first = {
            (p, c)
            for p, c in store.db.execute(
                "SELECT r.provider, r.custom_id FROM attempts a JOIN requests r ON r.id = a.request_id"
                " WHERE a.number = 1 AND a.outcome != 'succeeded'"
            )
        }
        assert failed_first == twice
        assert attempts_of(store) == dict(subs)
        # usage of every successful attempt is stored, and the rollup sums the attempts
        (zero,) = store.db.execute(
            "SELECT count(*) FROM attempts WHERE outcome = 'succeeded' AND (input_tokens = 0 OR output_tokens = 0)"
        ).fetchone()
        assert zero == 0
        rolled = store.db.execute("SELECT sum(attempts), sum(input_tokens), sum(output_tokens) FROM usage_rollup").fetchone()
        raw = store.db.execute("SELECT count(*), sum(input_tokens), sum(output_tokens) FROM attempts").fetchone()
        assert rolled == raw
        close(engine)


def test_max_attempts_ends_in_dead_letters(sim: Simulator, data_dir: Path, store_url: str | None) -> None:
    sim.config.failure_rate = 1.0  # transient failures (500), on every attempt
    enqueue(data_dir, openai_lines(2) + anthropic_lines(1), url=store_url)
    with Store(data_dir, url=store_url) as store:
        engine = Engine(store, config(max_attempts=2))
        drive(engine, all_settled(store))
        assert states(store) == {"dead": 3}
        dead = store.db.execute("SELECT custom_id, attempts, last_error FROM requests WHERE state = 'dead'").fetchall()
        assert all(n == 2 and err for _, n, err in dead)
        assert sim.submissions[("openai", "o0")] == 2
        close(engine)


def test_a_request_the_provider_rejects_is_dead_at_once(sim: Simulator, data_dir: Path, store_url: str | None) -> None:
    lines = openai_lines(5) + openai_lines(2, prefix="failalways-") + anthropic_lines(1, prefix="failalways_a")
    enqueue(data_dir, lines, url=store_url)
    with Store(data_dir, url=store_url) as store:
        engine = Engine(store, config(max_attempts=2))
        drive(engine, all_settled(store))
        assert states(store) == {"succeeded": 5, "dead": 3}
        dead = store.db.execute("SELECT custom_id, attempts, last_error FROM requests WHERE state = 'dead'").fetchall()
        assert all(n == 1 and "not retried" in err for _, n, err in dead)
        assert sim.submissions[("openai", "failalways-0")] == 1
        close(engine)


def test_auto_resubmit_off_leaves_failures_for_the_operator(sim: Simulator, data_dir: Path, store_url: str | None) -> None:
    sim.config.first_try_failure_rate = 0.5
    enqueue(data_dir, openai_lines(40), url=store_url)
    with Store(data_dir, url=store_url) as store:
        engine = Engine(store, config(auto_resubmit=False))
        drive(engine, lambda: "in_flight" not in states(store) and "submitting" not in states(store))
        failed = states(store).get("failed", 0)
        assert failed > 0
        (batch_id,) = store.db.execute("SELECT provider_batch_id FROM batches").fetchone()
        assert actions.resubmit(store, batch_id, 0.0) == failed
        drive(engine, all_settled(store))
        assert states(store) == {"succeeded": 40}
        close(engine)


def _slow(sim: Simulator) -> None:
    sim.config.per_request_s = 1.0
    sim.config.cancel_s = 1.0


def test_expired_batch_partial_results_ingested_rest_resubmitted(sim: Simulator, data_dir: Path, store_url: str | None) -> None:
    _slow(sim)
    enqueue(data_dir, openai_lines(10) + anthropic_lines(10), url=store_url)
    with Store(data_dir, url=store_url) as store:
        engine = Engine(store, config())
        first = tick(engine)
        assert len(first.submitted) == 2
        sim.advance(3.5)  # three requests of each batch have run
        for batch_id in first.submitted:
            sim.expire(batch_id)
        sim.config.per_request_s = 0.0
        report = tick(engine)
        assert sorted(report.ingested) == sorted(first.submitted)
        rows = store.db.execute("SELECT status, succeeded, failed FROM batches ORDER BY id LIMIT 2").fetchall()
        assert rows == [("expired", 3, 7), ("expired", 3, 7)]
        outcomes = dict(store.db.execute("SELECT outcome, count(*) FROM attempts WHERE number = 1 GROUP BY 1").fetchall())
        assert outcomes == {"succeeded": 6, "expired": 14}
        # the same tick put the 14 unfinished requests into new batches, as second attempts
        assert store.db.execute("SELECT count(*) FROM attempts WHERE number = 2").fetchone() == (14,)
        drive(engine, all_settled(store))
        assert states(store) == {"succeeded": 20}
        assert max(sim.submissions.values()) == 2
        close(engine)


def test_cancel_passes_through_cancelling_and_ingests_what_finished(sim: Simulator, data_dir: Path, store_url: str | None) -> None:
    _slow(sim)
    enqueue(data_dir, openai_lines(10) + anthropic_lines(10), url=store_url)
    with Store(data_dir, url=store_url) as store:
        engine = Engine(store, config())
        submitted = tick(engine).submitted
        sim.advance(4.5)
        for batch_id in submitted:
            actions.request_cancel(store, batch_id, 0.0)
        report = tick(engine)
        assert sorted(report.cancelled) == sorted(submitted)
        assert {r[0] for r in store.db.execute("SELECT status FROM batches")} == {"cancelling"}
        assert {b["status"] for b in sim.batches()} == {"cancelling", "canceling"}
        sim.advance(2.0)
        report = tick(engine)
        assert sorted(report.ingested) == sorted(submitted)
        outcomes = dict(store.db.execute("SELECT outcome, count(*) FROM attempts WHERE number = 1 GROUP BY 1").fetchall())
        assert outcomes == {"succeeded": 8, "cancelled": 12}
        assert {r[0] for r in store.db.execute("SELECT status FROM batches ORDER BY id LIMIT 2")} == {"cancelled"}
        close(engine)


def test_large_buffer_is_split_by_lines_and_bytes(sim: Simulator, data_dir: Path, store_url: str | None) -> None:
    enqueue(data_dir, openai_lines(25), url=store_url)
    with Store(data_dir, url=store_url) as store:
        (line_bytes,) = store.db.execute("SELECT max(bytes) FROM requests").fetchone()
        policy = FlushPolicy(max_age=0.0, max_requests=10, max_bytes=line_bytes * 4)
        engine = Engine(store, config(flush=policy))
        report = tick(engine)
        assert len(report.submitted) == math.ceil(25 / 4)
        totals = [r[0] for r in store.db.execute("SELECT total FROM batches ORDER BY id")]
        assert sum(totals) == 25 and max(totals) <= 4
        close(engine)


@pytest.mark.slow  # several seconds: in the slow tier, which .ci/run runs after
def test_polling_uses_list_pages_not_one_call_per_batch(sim: Simulator, data_dir: Path, store_url: str | None) -> None:
    sim.config.per_request_s = 1000.0  # they stay in flight
    enqueue(data_dir, openai_lines(200) + anthropic_lines(200), url=store_url)
    with Store(data_dir, url=store_url) as store:
        engine = Engine(store, config(flush=FlushPolicy(max_age=0.0, max_requests=1)))
        assert len(tick(engine).submitted) == 400
        sim.clear_log()
        report = tick(engine)
        assert not report.errors
        openai_lists = sim.requests(provider="openai", method="GET", path="/v1/batches")
        anthropic_lists = sim.requests(provider="anthropic", method="GET", path="/v1/messages/batches")
        assert len(openai_lists) <= math.ceil(200 / 100) + 1
        assert len(anthropic_lists) <= math.ceil(200 / 1000) + 1
        assert all(r.path in ("/v1/batches", "/v1/messages/batches") for r in openai_lists + anthropic_lists)
        assert {r.query.get("limit") for r in openai_lists} == {"100"}
        assert {r.query.get("limit") for r in anthropic_lists} == {"1000"}
        close(engine)


def test_one_failing_provider_does_not_stop_the_other(sim: Simulator, data_dir: Path, monkeypatch, store_url: str | None) -> None:
    sim.config.require_api_key = "sk-right"
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-right")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    enqueue(data_dir, openai_lines(5) + anthropic_lines(5), url=store_url)
    with Store(data_dir, url=store_url) as store:
        engine = Engine(store, config())
        report = tick(engine)
        assert len(report.submitted) == 1 and report.submitted[0].startswith("msgbatch_")
        assert "401" in report.errors["openai"]  # a refused key is the provider's error, not a refused batch
        held = store.db.execute("SELECT provider, queued, held_reason, retry_at FROM buffers WHERE provider = 'openai'").fetchone()
        assert held[1] == 5 and "401" in held[2]
        # nothing was used up: the refused requests are queued with no attempt
        assert store.db.execute("SELECT max(attempts) FROM requests WHERE provider = 'openai'").fetchone() == (0,)
        assert "sk-wrong" not in str(held) and "sk-right" not in str(held)
        close(engine)


def test_rate_limited_provider_backs_off_and_status_says_why(sim: Simulator, data_dir: Path, store_url: str | None) -> None:
    sim.config.fault_rate = 1.0
    enqueue(data_dir, anthropic_lines(3), url=store_url)
    with Store(data_dir, url=store_url) as store:
        engine = Engine(store, config())
        report = tick(engine)
        (value,) = store.db.execute("SELECT value FROM engine_state WHERE key = 'provider:anthropic'").fetchone()
        held = store.db.execute("SELECT held_reason FROM buffers").fetchone()[0]
        if report.refused:  # a 429 on create: nothing was created, the buffer waits
            assert held is not None and "429" in held
        else:  # a 500: the batch may exist, so the intent waits for reconciliation
            assert "anthropic" in report.errors and "backing off" in value
            assert store.db.execute("SELECT status FROM batches").fetchone() == ("submitting",)
        sim.config.fault_rate = 0.0
        store.db.execute("UPDATE buffers SET retry_at = NULL")
        store.db.execute("UPDATE engine_state SET value = '{}' WHERE key = 'provider:anthropic'")
        drive(engine, all_settled(store))
        assert states(store) == {"succeeded": 3}
        close(engine)


# -- exactly once across crashes ---------------------------------------------------


def _intent(store: Store, engine: Engine) -> submissions.Intent:
    (buffer_id,) = store.db.execute("SELECT id FROM buffers WHERE queued > 0").fetchone()
    intent = submissions.plan(store, buffer_id, FlushPolicy(), "default", engine.now())
    assert intent is not None
    return intent


@pytest.mark.parametrize("lines", [openai_lines, anthropic_lines, gemini_lines], ids=["openai", "anthropic", "gemini"])
def test_crash_before_the_provider_call_submits_once(sim: Simulator, data_dir: Path, lines, store_url: str | None) -> None:
    enqueue(data_dir, lines(7), url=store_url)
    with Store(data_dir, url=store_url) as store:
        engine = Engine(store, config())
        _intent(store, engine)  # the process died right after recording its intent
        report = tick(engine)
        assert len(report.submitted) == 1 and not report.adopted
        drive(engine, all_settled(store))
        assert set(sim.submissions.values()) == {1}
        close(engine)


@pytest.mark.parametrize("lines", [openai_lines, anthropic_lines, gemini_lines], ids=["openai", "anthropic", "gemini"])
def test_crash_after_create_adopts_instead_of_resubmitting(sim: Simulator, data_dir: Path, lines, store_url: str | None) -> None:
    enqueue(data_dir, lines(7), url=store_url)
    with Store(data_dir, url=store_url) as store:
        engine = Engine(store, config())
        intent = _intent(store, engine)
        provider = intent.provider

        async def send_without_recording() -> str:
            adapter = build_adapter(engine.config, provider)
            try:
                remote = await adapter.submit(intent.uid, intent.endpoint, submissions.lines(store, intent.id))
            finally:
                await adapter.close()
            return remote.id

        created = asyncio.run(send_without_recording())  # ... and died before recording the batch id
        report = tick(engine)
        assert report.adopted == [created] and not report.submitted
        drive(engine, all_settled(store))
        assert set(sim.submissions.values()) == {1}
        close(engine)


def test_orphan_openai_upload_is_deleted_before_resubmitting(sim: Simulator, data_dir: Path, store_url: str | None) -> None:
    import openai

    enqueue(data_dir, openai_lines(3), url=store_url)
    with Store(data_dir, url=store_url) as store:
        engine = Engine(store, config())
        intent = _intent(store, engine)
        client = openai.OpenAI(base_url=sim.openai_base_url, api_key="sk-test-key")
        orphan = client.files.create(file=(f"batchtop-{intent.uid}.jsonl", b"".join(submissions.lines(store, intent.id))), purpose="batch")
        tick(engine)
        assert orphan.id not in {f.id for f in client.files.list(purpose="batch")}
        assert len(sim.batches("openai")) == 1
        close(engine)


def test_ambiguous_anthropic_submission_becomes_unknown_then_operator_resolves(
    sim: Simulator, data_dir: Path, store_url: str | None
) -> None:
    import anthropic

    enqueue(data_dir, anthropic_lines(4), url=store_url)
    with Store(data_dir, url=store_url) as store:
        engine = Engine(store, config())
        intent = _intent(store, engine)
        client = anthropic.Anthropic(base_url=sim.anthropic_base_url, api_key="sk-test-key")
        other = [client.messages.batches.create(requests=anthropic_lines(4, prefix=f"x{i}")).id for i in range(2)]
        report = tick(engine)
        assert report.unknown == [intent.id] and not report.submitted
        row = store.db.execute("SELECT status, candidates FROM batches WHERE id = ?", (intent.id,)).fetchone()
        assert row[0] == "unknown" and sorted(eval(row[1])) == sorted(other)
        # the operator chooses to send it again: the candidates are not adopted
        submissions.resolve_unknown(store, str(intent.id), adopt=None, now=engine.now())
        report = tick(engine)
        assert len(report.submitted) == 1 and report.submitted[0] not in other
        drive(engine, all_settled(store))
        close(engine)


# -- one engine per data dir ---------------------------------------------------------


def test_second_engine_is_refused_and_a_dead_owner_is_taken_over(data_dir: Path, store_url: str | None) -> None:
    with Store(data_dir, url=store_url) as store:
        store.db.execute(
            "INSERT INTO lease (name, host, pid, expires_at) VALUES ('engine', 'elsewhere', 1, 9e9)"
        )
        with pytest.raises(EngineBusy, match="pid 1 on elsewhere"):
            lease.acquire(store, 60.0, 0.0)
        # a holder on this host whose process is gone is taken over at once
        dead_pid = os.fork()
        if dead_pid == 0:
            os._exit(0)
        os.waitpid(dead_pid, 0)
        store.db.execute("UPDATE lease SET host = ?, pid = ?", (socket.gethostname(), dead_pid))
        lease.acquire(store, 60.0, 0.0)
        assert lease.holder(store, 0.0).pid == os.getpid()
        # a holder elsewhere whose lease expired long ago is taken over too
        store.db.execute("UPDATE lease SET host = 'elsewhere', pid = 1, expires_at = 10")
        lease.acquire(store, 60.0, 3600.0)
        assert lease.holder(store, 3600.0).pid == os.getpid()


# -- savings hooks: output validation and the budget cap -------------------------------


def _parsed(doc: dict) -> Config:
    from batchtop.config import parse_config

    return parse_config({"flush": {"max_age": 0}, "engine": {"poll_interval": 0.1}, **doc})


def test_invalid_output_is_a_failed_attempt_that_costs_and_retries(sim: Simulator, data_dir: Path, store_url: str | None) -> None:
    # the simulator answers in prose, so a buffer that wants JSON rejects every output
    enqueue(data_dir, openai_lines(4), url=store_url)
    cfg = _parsed({"engine": {"max_attempts": 2, "poll_interval": 0.1}, "buffers": [{"model": "gpt-4o-mini", "output": "json"}]})
    with Store(data_dir, url=store_url) as store:
        engine = Engine(store, cfg)
        drive(engine, all_settled(store))
        assert states(store) == {"dead": 4}
        assert {r[0] for r in store.db.execute("SELECT outcome FROM attempts")} == {"invalid_output"}
        assert all("invalid_output" in r[0] for r in store.db.execute("SELECT last_error FROM requests"))
        assert set(sim.submissions.values()) == {2}
        # the tokens were spent: they are in the rollup as failed attempts (resubmission cost)
        (failed_tokens,) = store.db.execute("SELECT sum(output_tokens) FROM usage_rollup WHERE succeeded = 0").fetchone()
        assert failed_tokens > 0
        close(engine)


def test_budget_cap_holds_the_flush_and_says_why(sim: Simulator, data_dir: Path, store_url: str | None) -> None:
    enqueue(data_dir, openai_lines(20), url=store_url)
    with Store(data_dir, url=store_url) as store:
        engine = Engine(store, _parsed({"budget": {"daily_usd": 0.000001}}))
        report = tick(engine)
        assert not report.submitted and not sim.batches()
        (reason,) = store.db.execute("SELECT held_reason FROM buffers").fetchone()
        assert "budget" in reason and "daily" in reason
        close(engine)
        engine = Engine(store, _parsed({"budget": {"daily_usd": 100}}))
        assert len(tick(engine).submitted) == 1
        close(engine)


def test_savings_from_the_store_after_a_real_run_match_hand_arithmetic(sim: Simulator, data_dir: Path, store_url: str | None) -> None:
    from decimal import Decimal

    from batchtop.pricing.savings import savings

    sim.config.first_try_failure_rate = 0.25
    sim.config.cached_input_share = 0.5  # half the input reported as cache reads
    enqueue(data_dir, openai_lines(60), url=store_url)
    with Store(data_dir, url=store_url) as store:
        engine = Engine(store, config())
        drive(engine, all_settled(store))
        close(engine)
        doc = savings(store.db, engine.config)
        (row,) = [m for m in doc["by_model"] if m["model"] == "gpt-4o-mini"]
        # gpt-4o-mini list prices per million: input 0.15, cached input 0.075, output 0.60; batch = half
        per_m = Decimal(1_000_000)

        def cost(where: str) -> Decimal:
            i, c, o = store.db.execute(
                f"SELECT sum(input_tokens), sum(cached_input_tokens), sum(output_tokens) FROM attempts WHERE {where}"
            ).fetchone()
            return (Decimal(i) * Decimal("0.15") + Decimal(c) * Decimal("0.075") + Decimal(o) * Decimal("0.60")) / per_m

        realtime = cost("outcome = 'succeeded'")
        batch = cost("1 = 1") / 2
        assert row["cached_input_tokens"] > 0
        assert abs(Decimal(str(row["realtime_cost_usd"])) - realtime) <= Decimal("0.000001")
        assert abs(Decimal(str(row["batch_cost_usd"])) - batch) <= Decimal("0.000001")
        assert abs(Decimal(str(row["saved_usd"])) - (realtime - batch)) <= Decimal("0.000002")
        (first_ok, first_all) = store.db.execute(
            "SELECT sum(CASE WHEN outcome = 'succeeded' THEN 1 ELSE 0 END), count(*) FROM attempts WHERE number = 1"
        ).fetchone()
        assert row["first_pass_success_rate"] == pytest.approx(first_ok / first_all, abs=1e-6)
        assert row["first_pass_success_rate"] < 1.0


def test_a_batch_is_never_polled_with_another_account(sim: Simulator, data_dir: Path, store_url: str | None) -> None:
    sim.config.per_request_s = 1000.0
    enqueue(data_dir, openai_lines(3), url=store_url)
    with Store(data_dir, url=store_url) as store:
        engine = Engine(store, config())
        assert len(tick(engine).submitted) == 1
        assert store.db.execute("SELECT account FROM batches").fetchone() == ("default",)
        store.db.execute("UPDATE batches SET account = 'team-b'")  # submitted under another account
        sim.clear_log()
        report = tick(engine)
        assert "openai" not in report.list_calls and not sim.requests(path="/v1/batches")
        (state,) = store.db.execute("SELECT value FROM engine_state WHERE key = 'provider:openai'").fetchone()
        assert "another account" in state
        close(engine)


def test_enqueued_token_limit_is_not_a_failed_attempt(sim: Simulator, data_dir: Path, store_url: str | None) -> None:
    sim.config.token_limit_batches = 1  # the account's queue is full for the first batch
    enqueue(data_dir, openai_lines(6), url=store_url)
    with Store(data_dir, url=store_url) as store:
        engine = Engine(store, config())
        assert len(tick(engine).submitted) == 1
        report = tick(engine)
        assert report.refused and "token_limit_exceeded" in report.refused[0]
        # nothing was used up: the requests wait in their buffer, which says why
        assert store.db.execute("SELECT max(attempts), min(state), max(state) FROM requests").fetchone() == (0, "queued", "queued")
        held, retry_at = store.db.execute("SELECT held_reason, retry_at FROM buffers").fetchone()
        assert "token_limit_exceeded" in held and retry_at > engine.now()
        assert not tick(engine).submitted  # it waits for retry_at
        store.db.execute("UPDATE buffers SET retry_at = ?", (engine.now(),))
        drive(engine, all_settled(store))
        assert states(store) == {"succeeded": 6}
        assert store.db.execute("SELECT max(attempts) FROM requests").fetchone() == (1,)
        close(engine)


def test_flush_overrides_a_provider_backoff(sim: Simulator, data_dir: Path, store_url: str | None) -> None:
    sim.config.fault_rate = 1.0
    enqueue(data_dir, anthropic_lines(2), url=store_url)
    with Store(data_dir, url=store_url) as store:
        engine = Engine(store, config())
        tick(engine)  # fails: the provider or the buffer now backs off
        sim.config.fault_rate = 0.0
        assert not tick(engine).submitted  # still backing off
        actions.request_flush(store, None, engine.now())
        drive(engine, all_settled(store))
        assert states(store) == {"succeeded": 2}
        close(engine)
