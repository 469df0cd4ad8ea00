"""`batchtop results`: each request's latest success, verbatim, streamed; -o written 0600 atomically."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batchtop.sim import Simulator
from batchtop.store import Store
from test_once import Cli, db_rows, mixed_work, settle, sim  # noqa: F401 (sim is a fixture)

from conftest import openai_line


def stored_successes(data_dir: Path) -> dict[str, tuple[int, str]]:
    """custom_id -> (attempt number, raw line) of every successful attempt, from the store."""
    rows = db_rows(
        data_dir,
        "SELECT r.custom_id, a.number, a.response FROM attempts a JOIN requests r ON r.id = a.request_id"
        " WHERE a.outcome = 'succeeded'",
    )
    out: dict[str, tuple[int, str]] = {}
    for cid, number, response in rows:
        assert cid not in out
        out[cid] = (number, response)
    return out


def test_latest_success_of_each_request_verbatim(sim: Simulator, cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    sim.config.first_try_failure_rate = 0.4  # these fail once, then succeed on attempt 2
    assert cli("enqueue", mixed_work(tmp_path, 15)).code == 0
    settle(cli, data_dir)
    stored = stored_successes(data_dir)
    assert len(stored) == 30
    retried = {cid for cid, (number, _) in stored.items() if number == 2}
    assert retried and len(retried) < 30  # the simulator did fail some first tries

    result = cli("results")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert len(lines) == 30
    by_cid = {json.loads(line)["custom_id"]: line for line in lines}
    assert set(by_cid) == {f"o{i}" for i in range(15)} | {f"a{i}" for i in range(15)}
    for cid, line in by_cid.items():
        assert line == stored[cid][1]  # the provider's own line, byte for byte
    first_tries = db_rows(
        data_dir,
        "SELECT r.custom_id, a.response FROM attempts a JOIN requests r ON r.id = a.request_id"
        " WHERE a.number = 1 AND a.outcome != 'succeeded'",
    )
    assert {cid for cid, _ in first_tries} == retried
    for cid, failed_line in first_tries:
        assert failed_line != by_cid[cid] and failed_line not in result.out  # the failure is not a result


def test_one_batch_only(sim: Simulator, cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    assert cli("enqueue", mixed_work(tmp_path, 4)).code == 0
    settle(cli, data_dir)
    anthropic_batch = next(b["id"] for b in sim.batches() if b["provider"] == "anthropic")
    result = cli("results", anthropic_batch)
    assert result.code == 0, result.err
    assert sorted(json.loads(line)["custom_id"] for line in result.out.splitlines()) == ["a0", "a1", "a2", "a3"]

    missing = cli("results", "batch_nope")
    assert missing.code == 1
    assert missing.err == "batchtop: no batch 'batch_nope' in this data dir\n" and missing.out == ""


def test_a_batch_not_yet_ingested_says_so(sim: Simulator, cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    assert cli("enqueue", mixed_work(tmp_path, 2)).code == 0
    assert cli("flush", "--all").code == 0
    assert cli("tick").code == 0  # submitted, not polled yet
    batch = sim.batches()[0]["id"]
    result = cli("results", batch)
    assert result.code == 0 and result.out == ""
    assert "only the results stored so far are written" in result.err


def test_output_file_is_private_and_replaced_atomically(sim: Simulator, cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    assert cli("enqueue", mixed_work(tmp_path, 3)).code == 0
    settle(cli, data_dir)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / "results.jsonl"
    target.write_text("old\n")
    os.chmod(target, 0o644)

    result = cli("results", "-o", str(target))
    assert result.code == 0, result.err
    assert result.out == "" and "wrote 6 results to" in result.err
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_text() == cli("results").out
    assert sorted(p.name for p in out_dir.iterdir()) == ["results.jsonl"]  # no temp file left

    # a failed export leaves the previous file whole and no temp file behind
    failed = cli("results", "batch_nope", "-o", str(target))
    assert failed.code == 1
    assert len(target.read_text().splitlines()) == 6
    assert sorted(p.name for p in out_dir.iterdir()) == ["results.jsonl"]

    nowhere = cli("results", "-o", str(tmp_path / "absent" / "r.jsonl"))
    assert nowhere.code == 1 and "cannot write" in nowhere.err
    assert not (tmp_path / "absent").exists()


def test_no_database(cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    result = cli("results")
    assert (result.code, result.out) == (0, "")
    assert cli("results", "batch_x").code == 1
    assert not data_dir.exists()


def test_dead_letters_have_no_result(sim: Simulator, cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    sim.config.failure_rate = 0.5
    config = tmp_path / "c.toml"
    config.write_text("[engine]\nmax_attempts = 1\n")
    assert cli("enqueue", mixed_work(tmp_path, 10)).code == 0
    assert cli("--config", str(config), "flush", "--all").code == 0
    assert cli("--config", str(config), "tick").code == 0
    time.sleep(0.05)
    assert cli("--config", str(config), "tick").code == 0
    dead = {cid for (cid,) in db_rows(data_dir, "SELECT custom_id FROM requests WHERE state = 'dead'")}
    ok = {cid for (cid,) in db_rows(data_dir, "SELECT custom_id FROM requests WHERE state = 'succeeded'")}
    assert dead and ok and len(dead | ok) == 20
    got = {json.loads(line)["custom_id"] for line in cli("results").out.splitlines()}
    assert got == ok


RSS_PROBE = """
import resource, sys
from batchtop.cli import main
code = main(["--data-dir", sys.argv[1], "results", "-o", sys.argv[2]])
code |= main(["--data-dir", sys.argv[1], "results", "batch_big", "-o", sys.argv[2] + ".batch"])
print(code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def _fill(data_dir: Path, n: int, size: int) -> None:
    """n requests with one successful attempt each, as the engine leaves them (inserted
    directly: running this many through the simulator would take minutes)."""
    with Store(data_dir) as store, store.transaction() as db:
        db.execute("INSERT INTO buffers (provider, endpoint, model) VALUES ('openai', '/v1/chat/completions', 'm')")
        db.execute(
            "INSERT INTO batches (submission_uid, provider, buffer_id, endpoint, model, provider_batch_id, status,"
            " total, created_at) VALUES ('u', 'openai', 1, '/v1/chat/completions', 'm', 'batch_big', 'completed', ?, 0)",
            (n,),
        )
        pad = "x" * size
        line = json.dumps(openai_line("{cid}"))
        db.executemany(
            "INSERT INTO requests (id, provider, custom_id, buffer_id, line, bytes, enqueued_at, state, attempts)"
            " VALUES (?, 'openai', ?, 1, ?, 0, 0, 'succeeded', 1)",
            ((i, f"r{i}", line) for i in range(1, n + 1)),
        )
        db.executemany(
            "INSERT INTO attempts (request_id, batch_id, number, outcome, response) VALUES (?, 1, 1, 'succeeded', ?)",
            ((i, json.dumps({"custom_id": f"r{i}", "response": {"status_code": 200, "body": pad}})) for i in range(1, n + 1)),
        )


@pytest.mark.slow
def test_streams_in_bounded_memory(tmp_path: Path) -> None:
    small, big = tmp_path / "small", tmp_path / "big"
    _fill(small, 10, 2_000)
    _fill(big, 60_000, 2_000)  # ~120 MB of results

    def run(data_dir: Path) -> tuple[int, Path]:
        out = tmp_path / f"{data_dir.name}.jsonl"
        done = subprocess.run([sys.executable, "-c", RSS_PROBE, str(data_dir), str(out)], capture_output=True, text=True)
        code, rss_mb = done.stdout.split()
        assert code == "0", done.stderr
        return int(rss_mb), out

    base_rss, _ = run(small)
    big_rss, out = run(big)
    size_mb = out.stat().st_size / 2**20
    assert size_mb > 100
    with out.open() as f:
        assert sum(1 for _ in f) == 60_000
    assert Path(f"{out}.batch").stat().st_size == out.stat().st_size  # one batch holds them all
    assert big_rss - base_rss < 30, f"results held {big_rss - base_rss} MB for {size_mb:.0f} MB of output"


def test_highest_successful_attempt_wins(sim: Simulator, cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    assert cli("enqueue", mixed_work(tmp_path, 2)).code == 0
    settle(cli, data_dir)
    # the engine never records two successes for one request; pin the rule should it ever
    ((request_id, batch_id, line),) = db_rows(
        data_dir,
        "SELECT a.request_id, a.batch_id, a.response FROM attempts a JOIN requests r ON r.id = a.request_id"
        " WHERE r.custom_id = 'o1'",
    )
    later = json.dumps({**json.loads(line), "id": "batch_req_later"})
    with sqlite3.connect(data_dir / "batchtop.sqlite3") as db:
        db.execute(
            "INSERT INTO attempts (request_id, batch_id, number, outcome, response) VALUES (?, ?, 2, 'succeeded', ?)",
            (request_id, batch_id, later),
        )
        db.execute(
            "INSERT INTO attempts (request_id, batch_id, number, outcome, response) VALUES (?, ?, 3, 'errored', ?)",
            (request_id, batch_id, json.dumps({"custom_id": "o1", "error": {"code": "server_error"}})),
        )
    lines = cli("results").out.splitlines()
    assert len(lines) == 4
    assert [line for line in lines if json.loads(line)["custom_id"] == "o1"] == [later]


def test_a_custom_id_run_again_appears_once_per_run_newest_last(sim: Simulator, cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    work = mixed_work(tmp_path, 1)
    assert cli("enqueue", work).code == 0
    settle(cli, data_dir)
    assert cli("enqueue", work).code == 0  # allowed: the first run of o0 and a0 ended
    settle(cli, data_dir)
    lines = cli("results").out.splitlines()
    assert sorted(json.loads(line)["custom_id"] for line in lines) == ["a0", "a0", "o0", "o0"]
    newest = {cid: response for cid, response in db_rows(
        data_dir,
        "SELECT r.custom_id, a.response FROM attempts a JOIN requests r ON r.id = a.request_id"
        " WHERE a.outcome = 'succeeded' ORDER BY r.id",
    )}
    last_for = {json.loads(line)["custom_id"]: line for line in lines}
    assert last_for == newest
