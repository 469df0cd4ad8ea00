"""`batchtop --once`: the status as text and JSON, refresh or not, alerts and exit codes.

Work runs for real: a SQLite store in tmp_path, the provider simulator on 127.0.0.1
and the official SDKs (enqueue, `flush --all`, `tick`, a short sleep, `tick`).
"""

from __future__ import annotations

import json
import os
import pty
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from batchtop.display import money_column
from batchtop.sim import SimConfig, Simulator

from conftest import Result, anthropic_line, openai_line, run_batchtop

Cli = Callable[..., Result]


# -- shared with test_results.py and test_dead_letters.py --------------------------------


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    """The simulator, with the SDK variables the engine reads pointing at it."""
    simulator = Simulator(SimConfig()).start()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("OPENAI_BASE_URL", simulator.openai_base_url)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", simulator.anthropic_base_url)
    yield simulator
    simulator.stop()


def write_jsonl(path: Path, lines: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


def db_rows(data_dir: Path, sql: str, args: tuple = ()) -> list[tuple]:
    with sqlite3.connect(data_dir / "batchtop.sqlite3") as db:
        return db.execute(sql, args).fetchall()


def settle(cli: Cli, data_dir: Path, rounds: int = 6) -> None:
    """Flush, submit, let the simulator finish, ingest; again until nothing is queued
    or in flight (failures come back queued for another attempt)."""
    for _ in range(rounds):
        assert cli("flush", "--all").code == 0
        assert cli("tick").code == 0
        time.sleep(0.05)
        assert cli("tick").code == 0
        ((queued,),) = db_rows(data_dir, "SELECT coalesce(sum(queued), 0) FROM buffers")
        ((flying,),) = db_rows(data_dir, "SELECT count(*) FROM batches WHERE ingested_at IS NULL")
        if not queued and not flying:
            return
    raise AssertionError("work did not settle")


def mixed_work(tmp_path: Path, n: int = 10, prefix: str = "") -> str:
    lines = [openai_line(f"{prefix}o{i}") for i in range(n)] + [anthropic_line(f"{prefix}a{i}") for i in range(n)]
    return write_jsonl(tmp_path / f"{prefix}work.jsonl", lines)


def config_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return str(path)


SCHEMA = json.loads(resources.files("batchtop").joinpath("status.schema.json").read_text())


def status_json(cli: Cli, *extra: str) -> dict[str, Any]:
    result = cli("--once", "--json", "--no-refresh", *extra)
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    jsonschema.validate(doc, SCHEMA, format_checker=jsonschema.FormatChecker())
    return doc


# -- a data dir without a database --------------------------------------------------------


@pytest.mark.parametrize("args", [(), ("--json",), ("--no-refresh",), ("--json", "--no-refresh")])
def test_no_database_prints_the_empty_status_and_creates_nothing(cli: Cli, data_dir: Path, args: tuple) -> None:
    result = cli("--once", *args)
    assert result.code == 0, result.err
    assert not data_dir.exists()
    if "--json" in args:
        doc = json.loads(result.out)
        jsonschema.validate(doc, SCHEMA)
        assert (doc["buffers"], doc["batches"], doc["alerts"], doc["dead_letters"]) == ([], [], [], 0)
    else:
        assert "(no queued requests)" in result.out and "ALERTS  0" in result.out


# -- the status of real work ----------------------------------------------------------------


def test_status_of_real_work_matches_the_schema_and_the_store(sim: Simulator, cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    assert cli("enqueue", mixed_work(tmp_path)).code == 0
    settle(cli, data_dir)
    assert cli("enqueue", mixed_work(tmp_path, 3, prefix="later-")).code == 0  # queued, not flushed

    doc = status_json(cli)
    assert {(b["provider"], b["queued"]) for b in doc["buffers"]} == {("openai", 3), ("anthropic", 3)}
    remote = {b["id"]: b for b in sim.batches()}
    assert {b["id"] for b in doc["batches"]} == set(remote)
    for b in doc["batches"]:
        assert b["status"] == "completed" and (b["succeeded"], b["failed"]) == (10, 0) == (b["total"], 0)
    by_model = {m["model"]: m for m in doc["savings"]["by_model"]}
    assert set(by_model) == {"gpt-4o-mini", "claude-sonnet-4-20250514"}
    assert all(m["requests_succeeded"] == 10 and m["first_pass_success_rate"] == 1.0 for m in by_model.values())
    assert doc["savings"]["total"]["complete"] is True
    assert doc["queued_estimate_usd"] > 0  # the 6 queued requests
    assert doc["in_flight_estimate_usd"] == 0.0  # queued work is not in flight
    assert (doc["dead_letters"], doc["unknown_submissions"], doc["alerts"]) == (0, 0, [])
    assert set(doc["providers"]) == {"openai", "anthropic"} and doc["last_poll_at"] is not None


def _cells(text: str, heading: str) -> list[list[str]]:
    """The rows of the table under a heading (cells split on runs of 2+ spaces), without
    its header row or the note lines around it."""
    block = text.split(f"\n{heading}", 1)[1].split("\n\n", 1)[0]
    rows = [re.split(r" {2,}", line.strip()) for line in block.splitlines()[1:] if line.startswith("  ")]
    return [r for r in rows[1:] if len(r) == len(rows[0])]


def test_text_and_json_agree(sim: Simulator, cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    sim.config.failure_rate = 0.3
    (tmp_path / "c.toml").write_text("[engine]\nmax_attempts = 1\n")
    config = str(tmp_path / "c.toml")
    lines = [openai_line(f"o{i}") for i in range(12)] + [anthropic_line(f"a{i}") for i in range(12)]
    lines += [openai_line(f"h{i}", model="house-model") for i in range(4)]  # no known price
    assert cli("enqueue", write_jsonl(tmp_path / "w.jsonl", lines)).code == 0
    assert cli("--config", config, "flush", "--all").code == 0
    assert cli("--config", config, "tick").code == 0
    time.sleep(0.05)
    assert cli("--config", config, "tick").code == 0
    assert cli("enqueue", write_jsonl(tmp_path / "q.jsonl", [openai_line("q1"), openai_line("q2")])).code == 0

    doc = status_json(cli, "--config", config)
    result = cli("--once", "--no-refresh", "--config", config)
    assert result.code == 0
    text = result.out
    assert "\x1b" not in text  # not a terminal: no colour codes

    assert doc["dead_letters"] > 0 and doc["alerts"]  # the fixture did produce the interesting cases
    assert f"DEAD LETTERS  {doc['dead_letters']}" in text
    assert f"UNKNOWN SUBMISSIONS  {doc['unknown_submissions']}" in text
    assert f"ALERTS  {len(doc['alerts'])}" in text
    for alert in doc["alerts"]:
        assert f"ALERT {alert['kind']}: {alert['message']}" in text
    assert f"queued: {sum(b['queued'] for b in doc['buffers'])}" in text

    buffers = {(r[0], r[2]): r for r in _cells(text, "BUFFERS")}
    assert len(buffers) == len(doc["buffers"])
    for b in doc["buffers"]:
        row = buffers[(b["provider"], b["model"])]
        assert (row[1], int(row[3]), int(row[4].replace(",", ""))) == (b["endpoint"], b["queued"], b["bytes"])
        assert row[6] == b["flush_due_at"]

    batches = {r[0]: r for r in _cells(text, "BATCHES")}
    assert len(batches) == len(doc["batches"])
    for b in doc["batches"]:
        row = batches[b["id"]]
        done = b["succeeded"] + b["failed"]
        assert row[3] == b["status"]
        assert row[4] == f"{done}/{b['total']} {done / b['total']:.0%}"
        assert (int(row[5]), int(row[6])) == (b["succeeded"], b["failed"])

    columns = {k: money_column([m[k] for m in doc["savings"]["by_model"]], doc["savings"]["total"][k], unknown="unknown")
               for k in ("batch_cost_usd", "realtime_cost_usd", "resubmission_cost_usd", "saved_usd")}
    savings = {r[1]: r for r in _cells(text, "SAVINGS BY MODEL")}
    assert set(savings) == {m["model"] for m in doc["savings"]["by_model"]}
    for m in doc["savings"]["by_model"]:
        row = savings[m["model"]]
        assert int(row[2]) == m["requests_succeeded"]
        money = [columns[k][0][doc["savings"]["by_model"].index(m)] for k in columns]
        assert row[3:7] == money
        assert row[8] == f"{m['first_pass_success_rate'] * 100:.1f}%"
    house = next(m for m in doc["savings"]["by_model"] if m["model"] == "house-model")
    assert house["price_known"] is False and savings["house-model"][3] == "unknown"
    assert "warning: openai:house-model: no known price" in text

    total = doc["savings"]["total"]
    assert total["complete"] is False
    assert (f"TOTAL  batch {columns['batch_cost_usd'][1]}  realtime {columns['realtime_cost_usd'][1]}"
            f"  saved {columns['saved_usd'][1]} ({total['saved_pct']:.1f}%)") in text
    assert "(incomplete" in text.split("\nTOTAL", 1)[1].splitlines()[0]
    estimate = doc["in_flight_estimate"]
    (queued, submitted), whole = money_column([estimate["queued_usd"], estimate["in_flight_usd"]],
                                              doc["in_flight_estimate_usd"])
    assert f"IN FLIGHT (estimate)  {whole}  (queued {queued}, submitted {submitted})" in text
    providers = {r[0]: r for r in _cells(text, "PROVIDERS")}
    assert {p: r[1] for p, r in providers.items()} == {p: s["status"] for p, s in doc["providers"].items()}


def _usd(text: str) -> Decimal:
    assert text.startswith(("$", "-$")), text
    return Decimal(text.replace("$", "").replace(",", ""))


def _decimals(text: str) -> int:
    return len(text.rsplit(".", 1)[1])


def test_money_columns_add_up_to_their_totals(sim: Simulator, cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    """Sub-cent rows over a total above a cent: each column is shown at one precision at
    which its rows visibly sum to the total (was: rows $0.0044 and $0.0065 over $0.01)."""
    lines = [anthropic_line(f"a{i}") for i in range(10)] + [openai_line(f"o{i}", model="gpt-4o") for i in range(12)]
    assert cli("enqueue", write_jsonl(tmp_path / "w.jsonl", lines)).code == 0
    settle(cli, data_dir)
    doc = status_json(cli)
    text = cli("--once", "--no-refresh").out
    rows = _cells(text, "SAVINGS BY MODEL")
    assert len(rows) == 2
    total = re.search(r"\nTOTAL  batch (\S+)  realtime (\S+)  saved (\S+) ", text)
    assert total, text
    for column, shown in zip((3, 4, 6), total.groups()):
        cells = [r[column] for r in rows]
        assert sum(map(_usd, cells), Decimal(0)) == _usd(shown), (cells, shown)
        assert {_decimals(c) for c in cells} == {_decimals(shown)}  # one precision per column
        assert all(_usd(c) != 0 for c in cells)  # no non-zero amount reads as $0
    batch = doc["savings"]["total"]["batch_cost_usd"]
    assert Decimal("0.01") < Decimal(str(batch)) and all(m["batch_cost_usd"] < 0.01 for m in doc["savings"]["by_model"])
    assert doc["savings"]["total"]["batch_cost_usd"] == pytest.approx(
        sum(m["batch_cost_usd"] for m in doc["savings"]["by_model"]), abs=2e-6)  # JSON stays exact, to 1e-6


# -- refresh, and the --no-refresh guarantee --------------------------------------------------


def test_refresh_runs_one_tick_and_no_refresh_makes_no_call(sim: Simulator, cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    assert cli("enqueue", mixed_work(tmp_path, 2)).code == 0
    assert cli("flush", "--all").code == 0
    sim.clear_log()
    for args in (("--no-refresh",), ("--no-refresh", "--json"), ("--no-refresh", "--fail-on-alert")):
        assert cli("--once", *args).code == 0
    assert sim.request_log == []
    assert db_rows(data_dir, "SELECT count(*) FROM batches") == [(0,)]

    result = cli("--once", "--json")  # refreshes: the tick submits the flushed buffers
    assert result.code == 0, result.err
    assert sim.request_log
    doc = json.loads(result.out)
    assert {b["id"] for b in doc["batches"]} == {b["id"] for b in sim.batches()} and len(doc["batches"]) == 2
    assert doc["buffers"] == []


def test_no_refresh_imports_no_sdk_and_no_textual(sim: Simulator, cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    assert cli("enqueue", mixed_work(tmp_path, 2)).code == 0
    settle(cli, data_dir)
    probe = (
        "import json, sys\n"
        "from batchtop.cli import main\n"
        "for args in (['--once', '--no-refresh'], ['--once', '--no-refresh', '--json']):\n"
        "    assert main(['--data-dir', sys.argv[1], *args]) == 0\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('openai', 'anthropic', 'textual'))\n"
        "print(json.dumps(heavy), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, str(data_dir)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stderr.splitlines()[-1]) == []
    assert "BATCHES  listed: 2" in done.stdout


def test_refresh_reads_only_when_another_engine_holds_the_data_dir(sim: Simulator, cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    assert cli("enqueue", mixed_work(tmp_path, 2)).code == 0
    engine = subprocess.Popen(
        [sys.executable, "-m", "batchtop", "--data-dir", str(data_dir), "run"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ},
    )
    try:
        deadline = time.monotonic() + 20
        while not db_rows(data_dir, "SELECT pid FROM lease"):
            assert engine.poll() is None and time.monotonic() < deadline, "the engine did not take the lease"
            time.sleep(0.05)
        assert cli("flush", "--all").code == 0
        sim.clear_log()
        result = cli("--once")
        assert result.code == 0
        assert "not refreshing: another batchtop engine holds" in result.err
        assert f"pid {engine.pid}" in result.err
        assert "BUFFERS  queued: 4" in result.out
    finally:
        engine.terminate()
        engine.wait(timeout=20)


# -- alerts and --fail-on-alert ----------------------------------------------------------------


def test_failure_rate_alert_and_its_configurable_threshold(sim: Simulator, cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    sim.config.first_try_failure_rate = 0.4  # fail once, then succeed: no dead letters
    assert cli("enqueue", mixed_work(tmp_path, 10)).code == 0
    settle(cli, data_dir)
    doc = status_json(cli)
    failed, attempts = doc["failure_rate"]["failed"], doc["failure_rate"]["attempts"]
    assert 0.05 < failed / attempts < 0.5 and doc["dead_letters"] == 0

    result = cli("--once", "--no-refresh", "--fail-on-alert")
    assert result.code == 3
    assert "batchtop: alert: failure_rate:" in result.err and f"{failed} of {attempts} attempts failed" in result.err
    assert "ALERT failure_rate:" in result.out
    json_result = cli("--once", "--no-refresh", "--json", "--fail-on-alert")
    assert json_result.code == 3 and [a["kind"] for a in json.loads(json_result.out)["alerts"]] == ["failure_rate"]

    lenient = config_file(tmp_path, "[alerts]\nfailure_rate = 0.5\n")
    assert cli("--config", lenient, "--once", "--no-refresh", "--fail-on-alert").code == 0
    assert status_json(cli, "--config", lenient)["alerts"] == []
    assert cli("--once", "--no-refresh").code == 0  # without --fail-on-alert an alert does not fail


def test_dead_letters_alert(sim: Simulator, cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    sim.config.failure_rate = 1.0
    config = config_file(tmp_path, "[engine]\nmax_attempts = 1\n[alerts]\nfailure_rate = 1.0\n")
    assert cli("enqueue", mixed_work(tmp_path, 3)).code == 0
    assert cli("--config", config, "flush", "--all").code == 0
    assert cli("--config", config, "tick").code == 0
    time.sleep(0.05)
    assert cli("--config", config, "tick").code == 0
    result = cli("--config", config, "--once", "--no-refresh", "--fail-on-alert")
    assert result.code == 3
    assert "batchtop: alert: dead_letters: 6 requests used up their attempts" in result.err
    assert "DEAD LETTERS  6" in result.out


def test_unknown_submission_alert(sim: Simulator, cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    assert cli("enqueue", mixed_work(tmp_path, 2)).code == 0
    settle(cli, data_dir)
    assert cli("--once", "--no-refresh", "--fail-on-alert").code == 0
    # a submission whose create call's answer was lost, with two provider batches it could be
    with sqlite3.connect(data_dir / "batchtop.sqlite3") as db:
        db.execute(
            "INSERT INTO batches (submission_uid, provider, buffer_id, endpoint, model, status, total, created_at,"
            " candidates) SELECT 'lost-1', provider, buffer_id, endpoint, model, 'unknown', 2, ?, ? FROM batches"
            " WHERE provider = 'anthropic' LIMIT 1",
            (time.time(), json.dumps(["msgbatch_a", "msgbatch_b"])),
        )
    result = cli("--once", "--no-refresh", "--fail-on-alert")
    assert result.code == 3
    assert "batchtop: alert: unknown_submissions: 1 submission could" in result.err
    assert "UNKNOWN SUBMISSIONS  1" in result.out
    assert re.search(r"local-\d+ anthropic .* could be msgbatch_a, msgbatch_b; batchtop adopt local-\d+", result.out)
    doc = status_json(cli)
    assert doc["unknown_submissions"] == 1 and any(b["status"] == "unknown" for b in doc["batches"])


# -- terminal colour, usage errors ---------------------------------------------------------------


def _on_a_terminal(data_dir: Path, env: dict[str, str]) -> str:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchtop", "--data-dir", str(data_dir), "--once", "--no-refresh"],
        stdout=follower, stderr=subprocess.DEVNULL, env={**os.environ, **env},
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=30) == 0
    return b"".join(chunks).decode()


def test_colour_only_on_a_terminal_and_never_with_no_color(cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    assert cli("enqueue", mixed_work(tmp_path, 1)).code == 0
    assert "\x1b[" in _on_a_terminal(data_dir, {})
    assert "\x1b[" not in _on_a_terminal(data_dir, {"NO_COLOR": "1"})
    piped = run_batchtop("--data-dir", str(data_dir), "--once", "--no-refresh")
    assert piped.returncode == 0 and "\x1b" not in piped.stdout and "BUFFERS  queued: 2" in piped.stdout


@pytest.mark.parametrize(
    "args",
    [("--json",), ("--no-refresh",), ("--fail-on-alert",), ("--once", "tick"), ("tick", "--no-refresh"),
     ("--fail-on-alert", "results"), ("--json", "tick")],
)
def test_once_options_out_of_place_are_usage_errors(cli: Cli, data_dir: Path, args: tuple) -> None:
    result = cli(*args)
    assert result.code == 2
    assert "usage:" in result.err
    assert not data_dir.exists()
