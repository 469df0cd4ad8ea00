"""Hardening: a provider's result files are hostile, and ingest must not let them
hold the engine (issue 19, item 2).

A hostile provider of our own (`hostile_provider.py`) speaks the batch routes to
the real SDKs and answers with result files that never end, hold one huge line,
or lines that do not parse. What must hold: every tick ends within its ingest
budget; a bad line is an anomaly (capped per batch), never an exception; the same
tick still flushes new work; a batch whose files cannot be ingested is quarantined
with an alert; the stop signal of `batchtop run` ends a download at once; memory
stays flat whatever the length of a line.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batchtop.engine.tick import Engine, TickReport
from batchtop.sim import Simulator
from batchtop.store import Store, actions
from batchtop.store.ingest import ANOMALIES_PER_BATCH, QUARANTINE_AFTER
from batchtop.views.status import collect

from engine_helpers import (  # noqa: F401
    anthropic_lines,
    close,
    config,
    enqueue,
    openai_lines,
    run,
    sim,
    states,
    tick,
)
from hostile_provider import HostileProvider, hostile  # noqa: F401 (hostile is a fixture)

TICK_LIMIT = 30.0
"""Seconds a tick may take here before the test calls it stuck (old code: forever)."""


def _bounded_tick(engine: Engine) -> tuple[TickReport, float]:
    """One tick, failing the test (not hanging it) if it does not end."""
    started = time.monotonic()
    try:
        report = run(engine, asyncio.wait_for(engine.tick(), TICK_LIMIT))
    except TimeoutError:
        raise AssertionError(f"a tick did not end within {TICK_LIMIT}s: ingest holds the engine") from None
    return report, time.monotonic() - started


def _lines(provider: str, n: int, prefix: str) -> list[dict]:
    return openai_lines(n, prefix=prefix) if provider == "openai" else anthropic_lines(n, prefix=prefix)


def _anomalies(store: Store) -> dict[str, int]:
    return dict(store.db.execute("SELECT kind, count(*) FROM anomalies GROUP BY kind").fetchall())


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("shape", ["bad_first", "truncated"])
def test_an_unparseable_line_is_an_anomaly_and_the_same_tick_still_flushes(
    hostile: HostileProvider, data_dir: Path, provider: str, shape: str
) -> None:
    hostile.config.shape = shape
    enqueue(data_dir, _lines(provider, 3, "first"))
    with Store(data_dir) as store:
        engine = Engine(store, config())
        try:
            report, _ = _bounded_tick(engine)
            assert len(report.submitted) == 1 and not report.errors, report
            enqueue(data_dir, _lines(provider, 2, "later"))
            report, _ = _bounded_tick(engine)
            # the bad line did not fail the pass: no provider error, the batch was ingested...
            assert not report.errors, report.errors
            assert len(report.ingested) == 1, report
            # ...and the new work was flushed in the same tick
            assert len(report.submitted) == 1, report
            assert states(store) == {"succeeded": 3, "in_flight": 2}
            kinds = _anomalies(store)
            assert kinds.get("bad_result_line") == 1, kinds
            (detail,) = store.db.execute("SELECT detail FROM anomalies WHERE kind = 'bad_result_line'").fetchone()
            assert "output file line 1" in detail
        finally:
            close(engine)


def test_a_download_that_breaks_off_fails_that_batch_not_the_provider_pass(hostile: HostileProvider, data_dir: Path) -> None:
    """A result download that dies half-way is that batch's ingest failure (tried again
    later, quarantined after a few), never an error of the whole provider pass: the
    handler before it re-raises only the lease's and the store's own errors."""
    hostile.config.shape = "broken"
    enqueue(data_dir, openai_lines(3))
    with Store(data_dir) as store:
        engine = Engine(store, config())
        try:
            report, _ = _bounded_tick(engine)
            assert len(report.submitted) == 1 and not report.errors, report
            report, _ = _bounded_tick(engine)
            assert not report.errors, report.errors
            assert len(report.ingest_errors) == 1, report
            assert store.db.execute("SELECT ingest_failures FROM batches").fetchone() == (1,)
        finally:
            close(engine)


def test_a_result_file_that_never_ends_is_cut_off_and_the_batch_quarantined(
    hostile: HostileProvider, data_dir: Path
) -> None:
    hostile.config.shape = "endless"
    enqueue(data_dir, openai_lines(3, prefix="mine"))
    with Store(data_dir) as store:
        engine = Engine(store, config())  # the default budget: 10 s
        try:
            _bounded_tick(engine)
            enqueue(data_dir, openai_lines(2, prefix="later"))
            report, took = _bounded_tick(engine)
            assert took < 10.0, f"tick took {took:.1f}s"
            assert not report.errors, report.errors
            assert len(report.quarantined) == 1, report
            assert len(report.submitted) == 1, "new work waited behind the endless file"
            # our three results were stored; the ghosts after them are anomalies, capped
            assert states(store) == {"succeeded": 3, "in_flight": 2}
            (n,) = store.db.execute("SELECT count(*) FROM anomalies").fetchone()
            assert n <= ANOMALIES_PER_BATCH + 1, f"{n} anomaly rows for one batch"
            assert _anomalies(store).get("anomalies_capped") == 1
            # the alert says so, in the status document every view renders
            doc = collect(store.db, engine.config, engine.now()).to_json()
            alerts = [a for a in doc["alerts"] if a["kind"] == "ingest_quarantined"]
            assert alerts and report.quarantined[0] in alerts[0]["message"], doc["alerts"]
            batch = next(b for b in doc["batches"] if b["id"] == report.quarantined[0])
            assert batch["ingested"] and "quarantined" in batch["error"]
            # it is not read again, while an honest file after it is ingested as ever
            hostile.config.shape = "ok"
            report, _ = _bounded_tick(engine)
            assert report.quarantined == [] and len(report.ingested) == 1, report
            assert states(store) == {"succeeded": 5}
            assert hostile.state.downloads[batch["id"]] == 1
        finally:
            close(engine)


def test_a_line_that_never_ends_costs_one_budget_per_tick_then_quarantines(
    hostile: HostileProvider, data_dir: Path
) -> None:
    hostile.config.shape = "endless_line"
    enqueue(data_dir, anthropic_lines(3, prefix="a"))
    clock = [time.time()]
    with Store(data_dir) as store:
        engine = Engine(store, config(ingest_budget=0.5, ingest_max_line=4096), now=lambda: clock[0])
        try:
            _bounded_tick(engine)
            quarantined: list[str] = []
            for attempt in range(1, QUARANTINE_AFTER + 1):
                clock[0] += 3600  # past the batch's retry backoff
                report, took = _bounded_tick(engine)
                assert took < 5.0, f"tick {attempt} took {took:.1f}s with a 0.5s budget"
                assert not report.errors, report.errors
                quarantined += report.quarantined
                if attempt < QUARANTINE_AFTER:
                    assert list(report.ingest_errors) and not report.quarantined, report
            assert len(quarantined) == 1
            # the requests wait for the operator, failed, not resent to that provider on their own
            assert states(store) == {"failed": 3}
            errors = {r[0] for r in store.db.execute("SELECT last_error FROM requests")}
            assert len(errors) == 1 and errors.pop().startswith("ingest_quarantined:")
            assert hostile.state.submissions[("anthropic", "a0")] == 1
            # until the operator says so: then they are queued for a new attempt
            assert actions.resubmit(store, quarantined[0], clock[0]) == 3
            assert states(store) == {"queued": 3}
        finally:
            close(engine)


def test_a_budget_in_bytes_spreads_a_large_file_over_ticks_storing_each_line_once(
    sim: Simulator, data_dir: Path
) -> None:
    enqueue(data_dir, openai_lines(300))
    with Store(data_dir) as store:
        engine = Engine(store, config(ingest_budget_bytes=64 * 1024), now=time.time)
        try:
            ticks = 0
            while set(states(store)) != {"succeeded"}:
                report, _ = _bounded_tick(engine)
                assert not report.errors and not report.ingest_errors, report
                ticks += 1
                assert ticks < 40, states(store)
                time.sleep(0.05)
            # the ~200 KB output took several ticks, each going on where the last stopped
            assert ticks >= 4, f"ingested in {ticks} ticks: the byte budget did not bound a tick"
            assert store.db.execute("SELECT count(*) FROM attempts WHERE outcome = 'succeeded'").fetchone() == (300,)
            assert store.db.execute("SELECT sum(attempts) FROM usage_rollup").fetchone() == (300,)
            assert store.db.execute("SELECT count(*) FROM anomalies").fetchone() == (0,)
        finally:
            close(engine)


def _child(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "batchtop", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )


def _env(hostile: HostileProvider) -> dict[str, str]:
    return {**os.environ, "OPENAI_BASE_URL": hostile.openai_base_url, "ANTHROPIC_BASE_URL": hostile.anthropic_base_url}


def _peak_rss_mb(proc: subprocess.Popen[bytes]) -> tuple[int, float]:
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024


def test_a_huge_line_is_skipped_without_being_held_in_memory(
    hostile: HostileProvider, data_dir: Path, tmp_path: Path
) -> None:
    hostile.config.shape = "huge_line"
    hostile.config.huge_line_bytes = 300 * 1024 * 1024
    cfg = tmp_path / "config.toml"
    cfg.write_text("[flush]\nmax_age = 0\n")  # the default line cap: 16 MiB
    enqueue(data_dir, openai_lines(3))
    args = ["--data-dir", str(data_dir), "--config", str(cfg), "tick"]
    code, baseline = _peak_rss_mb(_child(args, _env(hostile)))  # submits: what a tick costs anyway
    assert code == 0
    peak = 0.0
    for _ in range(3):  # the line spends the tick's byte budget; the next tick goes on after it
        proc = _child(args, _env(hostile))
        code, rss = _peak_rss_mb(proc)
        peak = max(peak, rss)
        assert code == 0, proc.stderr.read().decode() if proc.stderr else ""
        with Store(data_dir) as store:
            if states(store) == {"succeeded": 3}:
                break
    assert hostile.state.result_bytes_sent > 300 * 1024 * 1024
    # 300 MB went past; the process grew by a few MB, not by the line
    assert peak < baseline + 60, f"peak RSS {peak:.0f} MB (a tick without ingest: {baseline:.0f} MB)"
    with Store(data_dir) as store:
        assert states(store) == {"succeeded": 3}
        (detail,) = store.db.execute("SELECT detail FROM anomalies WHERE kind = 'overlong_result_line'").fetchone()
        assert "over the 16777216-byte cap" in detail


def test_sigterm_ends_batchtop_run_during_a_download_that_never_ends(
    hostile: HostileProvider, data_dir: Path, tmp_path: Path
) -> None:
    hostile.config.shape = "endless_line"
    hostile.config.trickle_s = 0.01
    cfg = tmp_path / "config.toml"
    cfg.write_text('[flush]\nmax_age = 0\n[engine]\npoll_interval = "1s"\n')
    enqueue(data_dir, openai_lines(3))
    proc = _child(["--data-dir", str(data_dir), "--config", str(cfg), "run"], _env(hostile))
    try:
        end = time.monotonic() + 30
        while hostile.state.result_bytes_sent < 256 * 1024:
            assert proc.poll() is None and time.monotonic() < end, "the engine never started the download"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=5)  # well within the default ingest budget (10 s)
        except subprocess.TimeoutExpired:
            raise AssertionError("SIGTERM was ignored while a result file was being read") from None
        assert code == 0, proc.stderr.read().decode() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    db = sqlite3.connect(data_dir / "batchtop.sqlite3")
    try:
        assert db.execute("SELECT count(*) FROM lease").fetchone() == (0,), "the lease was not released"
    finally:
        db.close()


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_escapes_in_batch_ids_and_errors_are_stored_as_data(hostile: HostileProvider, data_dir: Path, provider: str) -> None:
    hostile.config.shape = "escapes"
    enqueue(data_dir, _lines(provider, 2, "esc"))
    with Store(data_dir) as store:
        engine = Engine(store, config(max_attempts=1))
        try:
            for _ in range(2):
                report, _ = _bounded_tick(engine)
                assert not report.errors and not report.ingest_errors, report
            assert states(store) == {"dead": 2}
            (batch_id,) = store.db.execute("SELECT provider_batch_id FROM batches").fetchone()
            assert "\x1b]0;pwned" in batch_id  # kept as the provider sent it: the views escape it
            errors = [e for (e,) in store.db.execute("SELECT last_error FROM requests")]
            assert all("\x1b[2J" in e for e in errors), errors
        finally:
            close(engine)


def test_tick_reports_a_quarantine_and_an_ingest_failure(hostile: HostileProvider, data_dir: Path, tmp_path: Path) -> None:
    from conftest import run_batchtop

    hostile.config.shape = "endless"
    cfg = tmp_path / "config.toml"
    cfg.write_text("[flush]\nmax_age = 0\n")
    enqueue(data_dir, openai_lines(2))
    args = ("--data-dir", str(data_dir), "--config", str(cfg), "tick")
    assert run_batchtop(*args, env=_env(hostile)).returncode == 0
    done = run_batchtop(*args, env=_env(hostile))
    assert done.returncode == 0, done.stderr
    assert "quarantined 1" in done.stdout, done.stdout


def test_bounded_lines_splits_like_bytes_split_whatever_the_chunking_and_resumes_at_any_line() -> None:
    import random

    from batchtop.providers.streaming import bounded_lines

    rng = random.Random(19)
    lines = [b"x" * rng.choice([0, 1, 5, 31, 32, 33, 100]) for _ in range(200)]
    data = b"\n".join(lines) + b"\nlast-without-newline"
    expected = [(line if len(line) <= 32 else None) for line in data.split(b"\n")]

    async def split(skip: int, sizes: list[int]) -> list[tuple[bytes | None, int]]:
        async def chunks():  # type: ignore[no-untyped-def]
            i = 0
            for n in sizes:
                yield data[i : i + n]
                i += n
            yield data[i:]

        return [item async for item in bounded_lines(chunks(), max_line=32, skip=skip)]

    for _ in range(20):
        sizes = [rng.randint(1, 97) for _ in range(rng.randint(1, 60))]
        got = asyncio.run(split(0, sizes))
        assert [raw for raw, _ in got] == expected
        assert got[-1][1] == len(data)
        # resuming at the offset after any line gives exactly the lines after it
        k = rng.randrange(len(got))
        rest = asyncio.run(split(got[k][1], sizes))
        assert rest == got[k + 1 :]
