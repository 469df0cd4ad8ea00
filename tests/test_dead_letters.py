"""`batchtop dead-letters`: requests that used up their attempts, as a table or JSON."""

from __future__ import annotations

import json
import time
from pathlib import Path

from batchtop.sim import Simulator
from test_once import Cli, config_file, db_rows, mixed_work, settle, sim  # noqa: F401 (sim is a fixture)


def run_round(cli: Cli, config: str) -> None:
    assert cli("--config", config, "flush", "--all").code == 0
    assert cli("--config", config, "tick").code == 0
    time.sleep(0.05)
    assert cli("--config", config, "tick").code == 0


def test_dead_letters_json_and_text(sim: Simulator, cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    sim.config.failure_rate = 0.5
    config = config_file(tmp_path, "[engine]\nmax_attempts = 1\n")
    assert cli("enqueue", mixed_work(tmp_path, 10)).code == 0
    run_round(cli, config)
    failed = {
        cid: error
        for cid, error in db_rows(
            data_dir,
            "SELECT r.custom_id, a.error FROM attempts a JOIN requests r ON r.id = a.request_id"
            " WHERE a.outcome != 'succeeded'",
        )
    }
    assert any(c.startswith("o") for c in failed) and any(c.startswith("a") for c in failed)
    batches = {b["provider"]: b["id"] for b in sim.batches()}

    result = cli("dead-letters", "--json")
    assert result.code == 0, result.err
    items = json.loads(result.out)
    assert {i["custom_id"] for i in items} == set(failed)
    for item in items:
        provider = "openai" if item["custom_id"].startswith("o") else "anthropic"
        assert item["provider"] == provider
        assert item["model"] == ("gpt-4o-mini" if provider == "openai" else "claude-sonnet-4-20250514")
        assert item["endpoint"] == ("/v1/chat/completions" if provider == "openai" else "/v1/messages")
        assert item["attempts"] == 1
        assert item["last_error"] == failed[item["custom_id"]] and item["last_error"]
        assert item["last_batch_id"] == batches[provider]

    text = cli("dead-letters")
    assert text.code == 0
    header, *rows, summary = text.out.splitlines()
    assert header.split() == ["CUSTOM_ID", "PROVIDER", "MODEL", "ATTEMPTS", "LAST_BATCH", "LAST_ERROR"]
    assert summary == f"{len(items)} dead letters"
    assert len(rows) == len(items)
    for row, item in zip(rows, items):  # same order: oldest first
        cells = row.split(maxsplit=5)
        assert cells[:5] == [item["custom_id"], item["provider"], item["model"], "1", item["last_batch_id"]]
        assert cells[5] == " ".join(item["last_error"].split())
    assert json.loads(cli("--json", "dead-letters").out) == items  # --json before the command too


def test_attempts_and_last_batch_after_retries(sim: Simulator, cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    sim.config.failure_rate = 1.0
    config = config_file(tmp_path, "[engine]\nmax_attempts = 2\n")
    assert cli("enqueue", mixed_work(tmp_path, 2)).code == 0
    run_round(cli, config)
    assert json.loads(cli("dead-letters", "--json").out) == []  # one attempt left: queued again
    run_round(cli, config)
    items = json.loads(cli("dead-letters", "--json").out)
    assert sorted(i["custom_id"] for i in items) == ["a0", "a1", "o0", "o1"]
    assert all(i["attempts"] == 2 for i in items)
    second = {b["provider"]: b["id"] for b in sim.batches()[2:]}  # the resubmissions' batches
    assert {i["provider"]: i["last_batch_id"] for i in items} == second


def test_none(sim: Simulator, cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    assert cli("dead-letters").out == "no dead letters\n"
    assert cli("dead-letters", "--json").out == "[]\n"
    assert not data_dir.exists()  # reading created nothing
    assert cli("enqueue", mixed_work(tmp_path, 2)).code == 0
    settle(cli, data_dir)
    assert cli("dead-letters").out == "no dead letters\n"
    assert json.loads(cli("dead-letters", "--json").out) == []
