"""A batch the provider no longer knows (404): that batch is lost, with an alert, its
requests wait for the operator's resubmit, and everything else of the provider goes
on. Real SQLite, the real SDKs, the simulator over HTTP (it forgets the batch)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from batchtop.engine.tick import Engine
from batchtop.sim import SimConfig, Simulator
from batchtop.store import Store, actions
from batchtop.views import status

from conftest import run_batchtop
from engine_helpers import (  # noqa: F401
    anthropic_lines,
    close,
    config,
    enqueue,
    gemini_lines,
    openai_lines,
    sim,
    states,
    tick,
)


def bt(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_batchtop("--data-dir", str(data_dir), *args, env=dict(os.environ))


@pytest.mark.parametrize("lines", [openai_lines, anthropic_lines, gemini_lines], ids=["openai", "anthropic", "gemini"])
def test_a_lost_batch_is_marked_and_the_provider_goes_on(sim: Simulator, data_dir: Path, lines) -> None:
    sim.config.per_request_s = 1000.0  # both batches stay in flight
    enqueue(data_dir, lines(3, prefix="lost"))
    with Store(data_dir) as store:
        engine = Engine(store, config())
        (lost_id,) = tick(engine).submitted
        enqueue(data_dir, lines(2, prefix="kept"))
        (kept_id,) = tick(engine).submitted
        (provider,) = store.db.execute("SELECT provider FROM batches WHERE provider_batch_id = ?", (lost_id,)).fetchone()
        sim.forget(lost_id)
        enqueue(data_dir, lines(2, prefix="new"))
        sim.clear_log()
        report = tick(engine)
        assert report.lost == [lost_id]
        assert not report.errors, "one lost batch is not the provider's failure"
        assert len(report.submitted) == 1, "a new buffer still gets submitted in the same tick"
        line = status.collect(store.db, engine.config, engine.now()).to_json()["providers"][provider]
        assert line["status"] == "ok" and line["retry_at"] is None
        row = store.db.execute(
            "SELECT status, last_error, lost_at, ingested_at FROM batches WHERE provider_batch_id = ?", (lost_id,)
        ).fetchone()
        assert row[0] == "failed" and "lost at the provider" in row[1] and lost_id in row[1]
        assert row[2] is not None and row[3] is not None
        # its requests wait for the operator: not queued, not dead, no attempt spent on guesses
        assert dict(store.db.execute(
            "SELECT custom_id, state FROM requests WHERE custom_id LIKE 'lost%'"
        ).fetchall()) == {f"lost{i}": "failed" for i in range(3)}
        # the other batch is still polled, and nobody asks for the lost one again
        assert store.db.execute(
            "SELECT status FROM batches WHERE provider_batch_id = ?", (kept_id,)
        ).fetchone()[0] in ("validating", "in_progress")
        sim.clear_log()
        assert not tick(engine).lost and not [r for r in sim.request_log if lost_id in r.path]
        doc = status.collect(store.db, engine.config, engine.now()).to_json()
        (alert,) = [a for a in doc["alerts"] if a["kind"] == "lost_batch"]
        assert lost_id in alert["message"] and "resubmit" in alert["message"]
        (batch,) = [b for b in doc["batches"] if b["id"] == lost_id]
        assert batch["status"] == "failed" and "lost" in batch["error"]
        # the operator resubmits: the requests go out again as second attempts, the alert clears
        assert actions.resubmit(store, lost_id, engine.now()) == 3
        sim.config.per_request_s = 0.0
        (again,) = tick(engine).submitted
        assert sorted(sim.batch(again)["custom_ids"]) == ["lost0", "lost1", "lost2"]
        doc = status.collect(store.db, engine.config, engine.now()).to_json()
        assert not [a for a in doc["alerts"] if a["kind"] == "lost_batch"]
        close(engine)


@pytest.mark.slow  # several seconds: in the slow tier, which .ci/run runs after
def test_a_lost_batch_through_the_cli_says_what_failed(sim: Simulator, data_dir: Path) -> None:
    sim.config.per_request_s = 1000.0
    enqueue(data_dir, openai_lines(2))
    assert bt(data_dir, "flush", "--all").returncode == 0
    assert bt(data_dir, "tick").returncode == 0
    (batch,) = sim.batches()
    sim.forget(batch["id"])
    r = bt(data_dir, "tick")
    assert r.returncode == 1
    assert "lost 1" in r.stdout
    assert batch["id"] in r.stderr and "lost at the provider" in r.stderr and "batchtop resubmit" in r.stderr
    r = bt(data_dir, "tick")  # marked: the next tick has nothing wrong to report
    assert r.returncode == 0, r.stderr
    r = bt(data_dir, "--once", "--no-refresh", "--fail-on-alert")
    assert r.returncode == 3 and "lost_batch" in r.stderr
    r = bt(data_dir, "resubmit", batch["id"])
    assert r.returncode == 0 and "2 requests" in r.stdout


def test_the_forget_debug_route() -> None:
    with Simulator(SimConfig(per_request_s=1000.0)) as sim:
        import anthropic

        client = anthropic.Anthropic(base_url=sim.anthropic_base_url, api_key="k", max_retries=0)
        batch = client.messages.batches.create(requests=anthropic_lines(1))
        request = urllib.request.Request(f"{sim.base_url}/_sim/forget/{batch.id}", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read()) == {"id": batch.id, "forgotten": True}
        with pytest.raises(anthropic.NotFoundError):
            client.messages.batches.retrieve(batch.id)
        assert not sim.batches()
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=10)
        assert info.value.code == 404


def test_a_backoff_gives_one_figure_on_the_status_line_its_retry_time_and_stderr(sim: Simulator, data_dir: Path) -> None:
    enqueue(data_dir, openai_lines(2))
    assert bt(data_dir, "flush", "--all").returncode == 0
    env = {**os.environ, "OPENAI_CUSTOM_HEADERS": "x-sim-fault: 500"}  # every call answered 500
    r = run_batchtop("--data-dir", str(data_dir), "tick", env=env)
    assert r.returncode == 1
    found = re.findall(r"backing off (\d+)s \(until (\S+)\)", r.stderr)
    assert len(set(found)) == 1, r.stderr
    doc = json.loads(bt(data_dir, "--once", "--json", "--no-refresh").stdout)
    line = doc["providers"]["openai"]
    seconds, until = found[0]
    assert f"backing off {seconds}s (until {until})" in line["status"]
    assert line["retry_at"] == until
    text = bt(data_dir, "--once", "--no-refresh").stdout
    assert until in text and f"backing off {seconds}s" in text


def test_results_the_provider_no_longer_has_are_lost_too(sim: Simulator, data_dir: Path) -> None:
    """An output file deleted at the provider (by hand, or expired) leaves the batch's
    requests for the operator, and does not stall the provider's pass."""
    enqueue(data_dir, openai_lines(3))
    with Store(data_dir) as store:
        engine = Engine(store, config())
        (batch_id,) = tick(engine).submitted
        output = sim.batch(batch_id)["output_file_id"]
        assert output is not None
        sim.state.delete_file(output)
        enqueue(data_dir, openai_lines(2, prefix="next"))
        report = tick(engine)
        assert report.lost == [batch_id] and not report.errors
        assert len(report.submitted) == 1  # the provider's pass went on to flush
        (error,) = store.db.execute("SELECT last_error FROM batches WHERE provider_batch_id = ?", (batch_id,)).fetchone()
        assert "lost at the provider" in error and output in error
        assert states(store)["failed"] == 3
        close(engine)


def test_cancelling_a_lost_batch_marks_it_lost(sim: Simulator, data_dir: Path) -> None:
    from engine_helpers import run

    sim.config.per_request_s = 1000.0
    enqueue(data_dir, anthropic_lines(2))
    with Store(data_dir) as store:
        engine = Engine(store, config())
        (batch_id,) = tick(engine).submitted
        sim.forget(batch_id)
        actions.request_cancel(store, batch_id, engine.now())
        report = run(engine, engine.cancels_only())
        assert report.lost == [batch_id] and not report.errors and not report.cancelled
        (status_,) = store.db.execute("SELECT status FROM batches WHERE provider_batch_id = ?", (batch_id,)).fetchone()
        assert status_ == "failed"
        close(engine)


def test_batchtop_cancel_of_a_lost_batch_says_so(sim: Simulator, data_dir: Path) -> None:
    sim.config.per_request_s = 1000.0
    enqueue(data_dir, openai_lines(2))
    assert bt(data_dir, "flush", "--all").returncode == 0
    assert bt(data_dir, "tick").returncode == 0
    (batch,) = sim.batches()
    sim.forget(batch["id"])
    r = bt(data_dir, "cancel", batch["id"], "--yes")
    assert r.returncode == 1 and "lost at the provider" in r.stderr and "cancelling" not in r.stdout
