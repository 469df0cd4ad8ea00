"""The event log: written by the real engine (real SQLite, the real SDKs against the
simulator) in the same transactions as its changes, and read by `batchtop events`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batchtop.engine.tick import Engine
from batchtop.sim import Simulator
from batchtop.store import Store, actions, events

from conftest import Result
from engine_helpers import (  # noqa: F401  (sim is a fixture)
    all_settled,
    anthropic_lines,
    close,
    config,
    drive,
    enqueue,
    openai_lines,
    sim,
    states,
    tick,
)

CORE = {"id", "at", "kind", "provider", "batch_id", "counts"}


def logged(store: Store) -> list[dict]:
    return [e.document() for e in events.after(store.db, 0, limit=100_000)]


def test_a_run_with_retries_logs_each_batch_once_per_change(sim: Simulator, data_dir: Path) -> None:
    sim.config.first_try_failure_rate = 0.3
    enqueue(data_dir, openai_lines(30) + anthropic_lines(20))
    with Store(data_dir) as store:
        engine = Engine(store, config())
        drive(engine, all_settled(store))
        assert states(store) == {"succeeded": 50}
        log = logged(store)
        assert [e["id"] for e in log] == sorted(e["id"] for e in log)
        assert all(CORE <= set(e) for e in log)
        batches = {
            pid: (provider, total, ok, failed, status)
            for pid, provider, total, ok, failed, status in store.db.execute(
                "SELECT provider_batch_id, provider, total, succeeded, failed, status FROM batches"
            )
        }
        for kind in ("submitted", "ended", "ingested"):
            assert sorted(e["batch_id"] for e in log if e["kind"] == kind) == sorted(batches), kind
        for e in log:
            provider, total, ok, failed, status = batches[e["batch_id"]]
            assert e["provider"] == provider
            if e["kind"] == "submitted":
                assert e["counts"]["requests"] == total
            if e["kind"] in ("ended", "ingested"):
                assert e["counts"] == {"total": total, "succeeded": ok, "failed": failed}
            if e["kind"] == "ended":
                assert e["status"] == status
        # each batch's events in the order they happened
        for pid in batches:
            assert [e["kind"] for e in log if e["batch_id"] == pid][:3] == ["submitted", "ended", "ingested"]
        # the retried requests: one `resubmitted` per batch that had failures, the counts adding up
        (retried,) = store.db.execute("SELECT count(*) FROM requests WHERE attempts = 2").fetchone()
        assert retried > 0, "the simulator failed no first try: the test proves nothing"
        assert sum(e["counts"]["requests"] for e in log if e["kind"] == "resubmitted") == retried
        assert {e["by"] for e in log if e["kind"] == "resubmitted"} == {"engine"}
        assert not [e for e in log if e["kind"] == "dead_letter"]
        close(engine)


def test_dead_letters_and_an_operator_resubmit(sim: Simulator, data_dir: Path) -> None:
    sim.config.failure_rate = 1.0
    enqueue(data_dir, openai_lines(3))
    with Store(data_dir) as store:
        engine = Engine(store, config(max_attempts=1))
        drive(engine, all_settled(store))
        (pid,) = store.db.execute("SELECT provider_batch_id FROM batches").fetchone()
        dead = [e for e in logged(store) if e["kind"] == "dead_letter"]
        assert [(e["batch_id"], e["counts"]) for e in dead] == [(pid, {"requests": 3})]
        assert actions.resubmit(store, pid, time.time()) == 3
        again = [e for e in logged(store) if e["kind"] == "resubmitted"]
        assert [(e["batch_id"], e["counts"], e["by"]) for e in again] == [(pid, {"requests": 3}, "operator")]
        close(engine)


def test_a_cancel_carried_out_is_logged_then_the_end(sim: Simulator, data_dir: Path) -> None:
    sim.config.per_request_s = 1.0
    sim.config.cancel_s = 1.0
    enqueue(data_dir, openai_lines(4))
    with Store(data_dir) as store:
        engine = Engine(store, config())
        (pid,) = tick(engine).submitted
        actions.request_cancel(store, pid, time.time())
        assert tick(engine).cancelled == [pid]
        sim.advance(2.0)
        drive(engine, lambda: store.db.execute("SELECT ingested_at FROM batches").fetchone()[0] is not None)
        kinds = [(e["kind"], e.get("status")) for e in logged(store)]
        # what the cancel cut short goes again (auto_resubmit): a new batch is submitted
        assert kinds[:5] == [
            ("submitted", None), ("cancelled", "cancelling"), ("ended", "cancelled"), ("ingested", None),
            ("resubmitted", None),
        ]
        close(engine)


def test_an_alert_is_logged_when_raised_not_on_every_refresh(sim: Simulator, data_dir: Path) -> None:
    sim.config.scripted_errors = {"o0": "insufficient_quota"}
    enqueue(data_dir, openai_lines(1))
    with Store(data_dir) as store:
        engine = Engine(store, config(max_attempts=1))
        for _ in range(20):
            if tick(engine).quota:
                break
            time.sleep(0.05)
        actions.request_flush(store, None, time.time())  # tried again, refused again: the alert is refreshed
        for _ in range(20):
            if tick(engine).quota:
                break
            time.sleep(0.05)
        alerts = [e for e in logged(store) if e["kind"] == "alert"]
        assert [(e["alert"], e["provider"]) for e in alerts] == [("quota", "openai")]
        assert "quota or credit" in alerts[0]["message"]
        close(engine)


def test_a_change_rolled_back_leaves_no_event(data_dir: Path) -> None:
    enqueue(data_dir, openai_lines(2))
    with Store(data_dir) as store:
        with pytest.raises(RuntimeError), store.transaction() as db:
            events.record(db, "alert", at=time.time(), provider=None, batch_id=None, counts={}, alert="x", message="y")
            raise RuntimeError("the change failed")
        assert logged(store) == []


# -- batchtop events ------------------------------------------------------------------------


def _seed(data_dir: Path, times: list[float]) -> None:
    with Store(data_dir) as store, store.transaction() as db:
        for i, at in enumerate(times):
            events.record(db, "alert", at=at, provider="openai", batch_id=None, counts={"n": i}, alert="t", message=f"m{i}")


def test_events_on_a_data_dir_without_a_database_prints_nothing_and_creates_nothing(cli, data_dir: Path) -> None:
    result: Result = cli("events")
    assert (result.code, result.out, result.err) == (0, "", "")
    assert not data_dir.exists()


def test_events_prints_json_lines_oldest_first_with_since_and_after(cli, data_dir: Path) -> None:
    _seed(data_dir, [1_700_000_000.0, 1_700_000_100.0, 1_700_000_200.0])
    result = cli("events")
    assert result.code == 0
    lines = [json.loads(line) for line in result.out.splitlines()]
    assert [e["counts"]["n"] for e in lines] == [0, 1, 2]
    assert lines[0]["at"] == "2023-11-14T22:13:20Z" and lines[0]["kind"] == "alert" and CORE <= set(lines[0])
    since = [json.loads(line)["counts"]["n"] for line in cli("events", "--since", "2023-11-14T22:15:00Z").out.splitlines()]
    assert since == [1, 2]
    after = [json.loads(line)["counts"]["n"] for line in cli("events", "--after", str(lines[1]["id"])).out.splitlines()]
    assert after == [2]
    bad = cli("events", "--since", "yesterday-ish")
    assert bad.code == 1 and "--since" in bad.err


def test_events_escapes_provider_text(cli, data_dir: Path) -> None:
    with Store(data_dir) as store, store.transaction() as db:
        events.record(db, "alert", at=1.0, provider="openai", batch_id="batch_\x1b[31mred\u202e", counts={},
                      alert="x", message="\x9b2J")
    out = cli("events").out
    assert out.isascii() and "\x1b" not in out
    assert json.loads(out)["batch_id"] == "batch_\x1b[31mred\u202e"  # the data is kept as it came


def test_events_follow_prints_new_events_and_exits_0_on_sigint(data_dir: Path, tmp_path: Path) -> None:
    """A real process: it starts before the database exists, prints events as they are
    committed, imports no provider SDK, and stops cleanly on SIGINT."""
    probe = (
        "import sys; from batchtop.cli import main\n"
        "try:\n"
        "    code = main(sys.argv[1:])\n"
        "finally:\n"
        "    bad = sorted(m for m in ('openai', 'anthropic', 'httpx', 'textual') if m in sys.modules)\n"
        "    print('IMPORTED', bad, file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", probe, "--data-dir", str(data_dir), "events", "--follow"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        time.sleep(1.0)
        _seed(data_dir, [100.0, 200.0])
        first = [proc.stdout.readline(), proc.stdout.readline()]
        _seed(data_dir, [300.0])
        first.append(proc.stdout.readline())
        assert [json.loads(line)["at"] for line in first] == [
            "1970-01-01T00:01:40Z", "1970-01-01T00:03:20Z", "1970-01-01T00:05:00Z",
        ]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "IMPORTED []" in err and "Traceback" not in err


def test_a_batch_the_provider_refused_after_taking_it_says_where_its_requests_went(data_dir: Path) -> None:
    """Refused for the enqueued-token limit after submission: its requests go back to the
    buffer without using an attempt; a follower that saw `submitted` sees `resubmitted`.
    An intent the provider never had (undone before any create) logs nothing."""
    from batchtop.config import FlushPolicy
    from batchtop.providers.base import RemoteBatch
    from batchtop.store import submissions

    enqueue(data_dir, openai_lines(3))
    with Store(data_dir) as store:
        (buffer_id,) = store.db.execute("SELECT id FROM buffers").fetchone()
        intent = submissions.plan(store, buffer_id, FlushPolicy(), "default", 1.0)
        assert intent is not None
        submissions.undo(store, intent.id, "create refused: 429", None, 2.0)  # never reached the provider
        assert logged(store) == []
        intent = submissions.plan(store, buffer_id, FlushPolicy(), "default", 3.0)
        assert intent is not None
        submissions.record_submitted(store, intent.id, RemoteBatch("batch_r", "validating", 3, 0, 0, 3.0), 3.0)
        submissions.undo(store, intent.id, "provider refused the batch: token_limit_exceeded", 63.0, 4.0)
        log = logged(store)
        assert [(e["kind"], e["batch_id"], e["counts"]) for e in log] == [
            ("submitted", "batch_r", {"requests": 3, "bytes": log[0]["counts"]["bytes"]}),
            ("resubmitted", "batch_r", {"requests": 3}),
        ]
        assert log[1]["refused"] is True and states(store) == {"queued": 3}


def test_a_batch_adopted_after_it_ended_logs_its_end_too(data_dir: Path) -> None:
    """A crash between the provider's create and our record: the next engine adopts the
    batch, maybe already completed, and never polls it again: `ended` comes with `submitted`."""
    from batchtop.config import FlushPolicy
    from batchtop.providers.base import RemoteBatch
    from batchtop.store import submissions

    enqueue(data_dir, openai_lines(2))
    with Store(data_dir) as store:
        (buffer_id,) = store.db.execute("SELECT id FROM buffers").fetchone()
        intent = submissions.plan(store, buffer_id, FlushPolicy(), "default", 1.0)
        assert intent is not None
        submissions.record_submitted(store, intent.id, RemoteBatch("batch_done", "completed", 2, 2, 0, 1.0), 5.0)
        assert [(e["kind"], e.get("status"), e["counts"].get("succeeded")) for e in logged(store)] == [
            ("submitted", None, None), ("ended", "completed", 2),
        ]


def _engine_process(data_dir: Path, config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "batchtop", "--data-dir", str(data_dir), "--config", str(config), "run"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy(),
    )


def _open_requests(data_dir: Path) -> int:
    import sqlite3

    db = sqlite3.connect(data_dir / "batchtop.sqlite3", timeout=30)
    try:
        return int(db.execute("SELECT count(*) FROM requests WHERE state NOT IN ('succeeded', 'dead')").fetchone()[0])
    finally:
        db.close()


@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_each_change_logged_exactly_once(
    sim: Simulator, data_dir: Path, tmp_path: Path
) -> None:
    """The events are written in the changes' own transactions: whatever instant the
    engine dies at, every batch ends up with one `submitted`, one `ended`, one `ingested`,
    in that order, and the retried requests add up."""
    import random

    sim.config.per_request_s = 0.002
    sim.config.first_try_failure_rate = 0.1
    config_file = tmp_path / "config.toml"
    config_file.write_text('[engine]\npoll_interval = 0.2\n\n[flush]\nmax_age = 0\nmax_requests = 40\n')
    rng = random.Random(20261201)
    for round_ in range(8):
        enqueue(data_dir, openai_lines(120, prefix=f"o{round_}-") + anthropic_lines(120, prefix=f"a{round_}_"))
        calls = len(sim.request_log)
        proc = _engine_process(data_dir, config_file)
        try:
            deadline = time.monotonic() + 30
            while len(sim.request_log) <= calls:
                assert time.monotonic() < deadline, "the engine made no provider call"
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.4))
        finally:
            proc.kill()
            proc.wait()
    proc = _engine_process(data_dir, config_file)
    try:
        deadline = time.monotonic() + 120
        while _open_requests(data_dir):
            assert time.monotonic() < deadline, "the workload never finished"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    with Store(data_dir) as store:
        log = logged(store)
        pids = [r[0] for r in store.db.execute("SELECT provider_batch_id FROM batches WHERE provider_batch_id IS NOT NULL")]
        assert len(pids) >= 8
        for pid in pids:
            assert [e["kind"] for e in log if e["batch_id"] == pid and e["kind"] in ("submitted", "ended", "ingested")] == [
                "submitted", "ended", "ingested",
            ], pid
        (failed,) = store.db.execute("SELECT count(*) FROM attempts WHERE outcome != 'succeeded'").fetchone()
        assert failed > 0
        requeued = sum(e["counts"]["requests"] for e in log if e["kind"] == "resubmitted" and not e.get("refused"))
        assert requeued == failed


def test_events_older_than_a_month_are_pruned_hourly_unless_a_receiver_still_waits(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses
    import socket

    from batchtop.config import Webhook
    from batchtop.timefmt import iso

    with socket.socket() as s:  # a port nobody listens on: the receiver is down
        s.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{s.getsockname()[1]}/hook"
    monkeypatch.setenv("HOOK_SECRET", "x")
    clock = [1_800_000_000.0]
    month = events.KEEP
    with Store(data_dir) as store:
        plain = Engine(store, config(), now=lambda: clock[0])
        _seed(data_dir, [clock[0] - month - 10, clock[0] - month - 5, clock[0] - 5])
        tick(plain)
        assert [e["counts"]["n"] for e in logged(store)] == [2]  # the month-old ones went
        _seed(data_dir, [clock[0] - month - 1])
        tick(plain)
        assert len(logged(store)) == 2  # not again within the hour
        close(plain)
        # a receiver that is down keeps what it has not had, however old
        hooked = Engine(store, dataclasses.replace(config(), webhooks=(Webhook(down, "HOOK_SECRET"),)),
                        now=lambda: clock[0])
        tick(hooked)  # registers it: it waits for events after the current last one
        _seed(data_dir, [clock[0] - month - 1])
        clock[0] += 2 * 3600
        tick(hooked)
        # the month-old one it had passed went; the month-old one it waits for stayed
        start = 1_800_000_000.0
        assert [(e["counts"]["n"], e["at"]) for e in logged(store)] == [(2, iso(start - 5)), (0, iso(start - month - 1))]
        close(hooked)
        hooked.settle_deliveries()


def test_an_unknown_submission_alerts_and_the_operators_adopt_is_a_submission(sim: Simulator, data_dir: Path) -> None:
    import anthropic

    from batchtop.config import FlushPolicy
    from batchtop.store import submissions

    enqueue(data_dir, anthropic_lines(4))
    with Store(data_dir) as store:
        engine = Engine(store, config())
        (buffer_id,) = store.db.execute("SELECT id FROM buffers").fetchone()
        intent = submissions.plan(store, buffer_id, FlushPolicy(), "default", engine.now())
        assert intent is not None  # written, and then the engine died before its create
        client = anthropic.Anthropic(base_url=sim.anthropic_base_url, api_key="sk-test-key")
        other = [client.messages.batches.create(requests=anthropic_lines(4, prefix=f"x{i}")).id for i in range(2)]
        assert tick(engine).unknown == [intent.id]
        (alert,) = logged(store)
        assert (alert["kind"], alert["alert"], alert["batch_id"]) == ("alert", "unknown_submission", None)
        assert f"local-{intent.id}" in alert["message"] and "2 candidates" in alert["message"]
        submissions.resolve_unknown(store, str(intent.id), adopt=other[0], now=engine.now())
        assert [(e["kind"], e["batch_id"]) for e in logged(store)][1:] == [("submitted", other[0])]
        close(engine)
