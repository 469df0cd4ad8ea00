"""What the engine does with a failed request: when it goes out again, and whether it
should at all. Real SQLite, the real SDKs, our simulator over HTTP."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from batchtop.config import Config, EngineConfig, parse_config
from batchtop.engine.tick import Engine
from batchtop.sim import Simulator
from batchtop.store import Store, actions

from engine_helpers import anthropic_lines, close, config, enqueue, gemini_lines, openai_lines, sim, states, tick  # noqa: F401 (sim is a fixture)


def second_attempts(store: Store) -> int:
    (n,) = store.db.execute("SELECT count(*) FROM attempts WHERE number = 2").fetchone()
    return int(n)


def first_failures(store: Store) -> int:
    (n,) = store.db.execute(
        "SELECT count(*) FROM attempts WHERE number = 1 AND outcome IS NOT NULL AND outcome != 'succeeded'"
    ).fetchone()
    return int(n)


def test_failures_go_out_again_at_the_next_tick_not_after_max_age(sim: Simulator, data_dir: Path) -> None:
    """The default flush policy (max_age 1h): the operator flushed once; the batch's
    failures must not wait an hour in their buffer for a second try."""
    sim.config.first_try_failure_rate = 0.5
    enqueue(data_dir, openai_lines(44))
    with Store(data_dir) as store:
        engine = Engine(store, Config(engine=EngineConfig(poll_interval=0.1)))
        actions.request_flush(store, None, engine.now())
        assert len(tick(engine).submitted) == 1
        for _ in range(20):  # until the batch is ingested
            time.sleep(0.05)
            if tick(engine).ingested:
                break
        failed = first_failures(store)
        assert failed > 0, "the simulator failed no first try: the test proves nothing"
        if second_attempts(store) < failed:
            tick(engine)  # at the latest, the next tick sends them
        assert second_attempts(store) == failed
        assert states(store).get("queued", 0) == 0
        close(engine)


def test_engine_retry_delay_holds_failures_back_for_that_long(sim: Simulator, data_dir: Path) -> None:
    sim.config.first_try_failure_rate = 0.5
    enqueue(data_dir, openai_lines(30))
    offset = [0.0]
    with Store(data_dir) as store:
        cfg = parse_config({"engine": {"retry_delay": "10m", "poll_interval": 0.1}})
        assert cfg.engine.retry_delay == 600.0
        engine = Engine(store, cfg, now=lambda: time.time() + offset[0])
        actions.request_flush(store, None, engine.now())
        assert len(tick(engine).submitted) == 1
        for _ in range(20):
            time.sleep(0.05)
            if tick(engine).ingested:
                break
        failed = first_failures(store)
        assert failed > 0
        tick(engine)
        assert second_attempts(store) == 0 and states(store)["queued"] == failed
        (due,) = store.db.execute("SELECT flush_requested_at FROM buffers").fetchone()
        assert due is not None and 590 < due - engine.now() <= 600
        offset[0] = 601.0
        tick(engine)
        assert second_attempts(store) == failed
        close(engine)


def test_retry_delay_is_checked_like_every_duration(tmp_path: Path) -> None:
    from batchtop.config import ConfigError

    assert Config().engine.retry_delay == 0.0
    with pytest.raises(ConfigError, match="engine.retry_delay"):
        parse_config({"engine": {"retry_delay": "soon"}})


# -- which failures are retried (12.5) --------------------------------------------------


def settle_all(engine: Engine, store: Store, ticks: int = 40) -> None:
    """Tick until nothing is queued, submitting or in flight (provider errors fail the test)."""
    for _ in range(ticks):
        report = tick(engine)
        assert not report.errors, report.errors
        if set(states(store)) <= {"succeeded", "dead", "failed"}:
            return
        time.sleep(0.05)
    raise AssertionError(f"not settled: {states(store)}")


def request_rows(store: Store) -> dict[str, tuple[str, int, str | None]]:
    return {
        cid: (state, attempts, error)
        for cid, state, attempts, error in store.db.execute("SELECT custom_id, state, attempts, last_error FROM requests")
    }


def test_an_invalid_request_is_a_dead_letter_on_its_first_attempt(sim: Simulator, data_dir: Path) -> None:
    sim.config.scripted_errors = {"o-bad0": "invalid_request", "o-long0": "context_length", "a_bad0": "invalid_request"}
    enqueue(data_dir, openai_lines(3) + openai_lines(1, prefix="o-bad") + openai_lines(1, prefix="o-long")
            + anthropic_lines(2) + anthropic_lines(1, prefix="a_bad"))
    with Store(data_dir) as store:
        engine = Engine(store, config(max_attempts=3))
        settle_all(engine, store)
        rows = request_rows(store)
        for cid in ("o-bad0", "o-long0", "a_bad0"):
            state, attempts, error = rows[cid]
            assert (state, attempts) == ("dead", 1), (cid, rows[cid])
            assert "invalid_request_error" in error or "context_length_exceeded" in error
            assert "not retried" in error
        assert "maximum context length" in rows["o-long0"][2]
        assert "max_tokens: Field required" in rows["a_bad0"][2]
        assert sim.submissions[("openai", "o-bad0")] == 1 and sim.submissions[("anthropic", "a_bad0")] == 1
        assert {s for cid, (s, _, _) in rows.items() if "bad" not in cid and "long" not in cid} == {"succeeded"}
        close(engine)


def test_transient_errors_are_still_retried(sim: Simulator, data_dir: Path) -> None:
    kinds = ["rate_limit", "server_error", "overloaded", "overloaded_flat"]
    sim.config.scripted_errors = {f"o-{k}0": k for k in kinds} | {f"a_{k}0": k for k in kinds}
    lines = [line for k in kinds for line in openai_lines(1, prefix=f"o-{k}") + anthropic_lines(1, prefix=f"a_{k}")]
    enqueue(data_dir, lines)
    with Store(data_dir) as store:
        engine = Engine(store, config(max_attempts=2))
        settle_all(engine, store)
        rows = request_rows(store)
        assert {(state, attempts) for state, attempts, _ in rows.values()} == {("dead", 2)}
        assert set(sim.submissions.values()) == {2}
        close(engine)


def test_a_flat_anthropic_error_keeps_its_message(sim: Simulator, data_dir: Path) -> None:
    sim.config.scripted_errors = {"a_flat0": "overloaded_flat"}
    enqueue(data_dir, anthropic_lines(1, prefix="a_flat"))
    with Store(data_dir) as store:
        engine = Engine(store, config(max_attempts=1))
        settle_all(engine, store)
        (error,) = store.db.execute("SELECT error FROM attempts").fetchone()
        assert error == "overloaded_error: Overloaded"
        close(engine)


@pytest.mark.parametrize("kind", ["insufficient_quota", "billing"])
def test_out_of_quota_holds_the_provider_and_alerts_without_burning_attempts(
    sim: Simulator, data_dir: Path, kind: str
) -> None:
    from batchtop.views import status

    sim.config.scripted_errors = {"o-q0": kind, "a_q0": kind}
    enqueue(data_dir, openai_lines(2) + openai_lines(1, prefix="o-q") + anthropic_lines(1) + anthropic_lines(1, prefix="a_q"))
    with Store(data_dir) as store:
        engine = Engine(store, config(max_attempts=1))
        reports = []
        for _ in range(20):
            reports.append(tick(engine))
            if set(states(store)) <= {"succeeded", "queued"} and "queued" in states(store):
                break
            time.sleep(0.05)
        rows = request_rows(store)
        # with max_attempts 1 a counted failure would be dead: these are queued, attempt not counted
        assert rows["o-q0"][0] == "queued" and rows["a_q0"][0] == "queued"
        assert store.db.execute("SELECT spared_attempts FROM requests WHERE custom_id = 'o-q0'").fetchone() == (1,)
        held = dict(store.db.execute("SELECT provider, held_reason FROM buffers"))
        assert set(held) == {"openai", "anthropic"}
        assert all(reason and "quota or credit" in reason for reason in held.values())
        assert sorted(p for r in reports for p in r.quota) == ["anthropic", "openai"]
        # held: the next tick sends nothing, though the buffers are due
        before = len(sim.batches())
        tick(engine)
        assert len(sim.batches()) == before
        doc = status.collect(store.db, engine.config, engine.now()).to_json()
        quota = [a for a in doc["alerts"] if a["kind"] == "quota"]
        assert sorted(a["provider"] for a in quota) == ["anthropic", "openai"]
        # the account is topped up and the operator flushes: the requests go out, the alert clears
        sim.config.scripted_errors = {}
        actions.request_flush(store, None, engine.now())
        settle_all(engine, store)
        assert states(store) == {"succeeded": 5}
        doc = status.collect(store.db, engine.config, engine.now()).to_json()
        assert not [a for a in doc["alerts"] if a["kind"] == "quota"]
        assert store.db.execute("SELECT count(*) FROM buffers WHERE held_reason IS NOT NULL").fetchone() == (0,)
        close(engine)


@pytest.mark.parametrize("kind", ["insufficient_quota", "billing"])  # billing: Anthropic's is a 402
@pytest.mark.parametrize("lines", [openai_lines, anthropic_lines, gemini_lines], ids=["openai", "anthropic", "gemini"])
def test_a_create_refused_for_quota_holds_the_provider_with_an_alert(sim: Simulator, data_dir: Path, lines, kind: str) -> None:
    from batchtop.views import status

    sim.config.create_error = kind
    enqueue(data_dir, lines(3))
    with Store(data_dir) as store:
        engine = Engine(store, config())
        report = tick(engine)
        assert report.refused and not report.submitted
        provider = {openai_lines: "openai", anthropic_lines: "anthropic", gemini_lines: "gemini"}[lines]
        assert report.quota == [provider]
        held, retry_at = store.db.execute("SELECT held_reason, retry_at FROM buffers").fetchone()
        assert "quota or credit" in held and retry_at - engine.now() > 600
        assert store.db.execute("SELECT max(attempts) FROM requests").fetchone() == (0,)
        doc = status.collect(store.db, engine.config, engine.now()).to_json()
        assert [a["provider"] for a in doc["alerts"] if a["kind"] == "quota"] == [provider]
        sim.config.create_error = None
        actions.request_flush(store, None, engine.now())
        settle_all(engine, store)
        assert states(store) == {"succeeded": 3}
        doc = status.collect(store.db, engine.config, engine.now()).to_json()
        assert not [a for a in doc["alerts"] if a["kind"] == "quota"]
        close(engine)
