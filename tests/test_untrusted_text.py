"""Untrusted text never reaches the terminal raw: provider content (batch ids, error
codes and messages) and names we accepted as data (a model, a custom_id) go through
`display.clean` in every text output of the CLI, while JSON keeps them exact.

Both sources are real: a hostile OpenAI endpoint on 127.0.0.1 that the official SDK
talks to (tests/hostile_openai.py), and the simulator fed a model name and custom_id
full of escapes, enqueued as an operator would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import hostile_openai as hostile
from batchtop.sim import Simulator
from test_once import Cli, config_file, settle, sim, status_json, write_jsonl  # noqa: F401 (sim is a fixture)

from conftest import openai_line

BEL = "\x07"


def assert_clean(text: str) -> None:
    """Nothing a terminal would act on: no ESC, no C1 control, no BEL, no DEL."""
    bad = [c for c in text if (ord(c) < 0x20 and c not in "\n") or 0x7F <= ord(c) <= 0x9F]
    assert not bad, f"raw control characters {sorted(set(bad))!r} in {text!r}"


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[hostile.HostileOpenAI]:
    server = hostile.HostileOpenAI(**getattr(request, "param", {})).start()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    yield server
    server.stop()


def _one_request(cli: Cli, tmp_path: Path, engine: str = "") -> str:
    config = config_file(tmp_path, f"[engine]\nmax_attempts = 1\n{engine}")
    assert cli("enqueue", write_jsonl(tmp_path / "w.jsonl", [openai_line("r1")])).code == 0
    assert cli("flush", "--all").code == 0
    return config


def test_hostile_batch_id_and_errors_are_cleaned_in_once_and_dead_letters(
    provider: hostile.HostileOpenAI, cli: Cli, tmp_path: Path
) -> None:
    config = _one_request(cli, tmp_path)
    submitted = cli("--config", config, "tick")
    assert submitted.code == 0 and "submitted 1" in submitted.out
    assert cli("--config", config, "tick").code == 0  # polls: the batch failed, its request is a dead letter

    doc = status_json(cli, "--config", config)  # JSON keeps the provider's text exact
    assert [b["id"] for b in doc["batches"]] == [hostile.BATCH_ID] and doc["dead_letters"] == 1
    (item,) = json.loads(cli("dead-letters", "--json").out)
    assert item["last_batch_id"] == hostile.BATCH_ID
    assert hostile.ERROR_MESSAGE in item["last_error"] and hostile.ERROR_CODE in item["last_error"]

    once = cli("--config", config, "--once", "--no-refresh")
    assert once.code == 0
    assert_clean(once.out)
    assert "batch_␛]0;owned␛\\evil" in once.out  # shown, visibly, not acted on

    dead = cli("dead-letters")
    assert dead.code == 0
    assert_clean(dead.out)
    assert "batch_␛]0;owned␛\\evil" in dead.out
    assert "input rejected ␛]52;c;cm0gLXJmIH4=␛\\␛[2J\\x9b2J␇ see docs" in dead.out

    raw_json = cli("dead-letters", "--json").out
    assert_clean(raw_json.replace("\n", ""))  # C1 controls escaped too (json leaves them raw)


@pytest.mark.parametrize("provider", [{"poll_status": 403}], indirect=True)
def test_hostile_provider_errors_are_cleaned_on_stderr(provider: hostile.HostileOpenAI, cli: Cli, tmp_path: Path) -> None:
    config = _one_request(cli, tmp_path)
    assert cli("--config", config, "tick").code == 0
    failed = cli("--config", config, "tick")  # the poll answers 403 with a hostile message
    assert failed.code == 1
    assert "PermissionDeniedError" in failed.err and "input rejected ␛]52;c;" in failed.err
    assert_clean(failed.err)

    once = cli("--config", config, "--once", "--no-refresh")  # the provider's error, in its status line
    assert "input rejected ␛]52;c;" in once.out
    assert_clean(once.out)
    assert hostile.ERROR_MESSAGE in status_json(cli, "--config", config)["providers"]["openai"]["error"]


@pytest.mark.parametrize("provider", [{"poll_status": 403}], indirect=True)
def test_hostile_provider_errors_are_cleaned_in_the_engine_log(
    provider: hostile.HostileOpenAI, cli: Cli, data_dir: Path, tmp_path: Path
) -> None:
    """`batchtop run` logs what the provider said (the SDK's own logger included)."""
    config = _one_request(cli, tmp_path, 'poll_interval = "1s"\n')
    engine = subprocess.Popen(
        [sys.executable, "-m", "batchtop", "--data-dir", str(data_dir), "--config", config, "run"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ},
    )
    try:
        deadline = time.monotonic() + 30
        log = b""
        os.set_blocking(engine.stderr.fileno(), False)  # type: ignore[union-attr]
        while b"PermissionDeniedError" not in log:
            assert engine.poll() is None and time.monotonic() < deadline, log.decode(errors="replace")
            time.sleep(0.1)
            log += engine.stderr.read() or b""  # type: ignore[union-attr]
    finally:
        engine.send_signal(signal.SIGTERM)
        rest = engine.communicate(timeout=30)[1]
    text = (log + (rest or b"")).decode()
    assert "input rejected ␛]52;c;" in text
    assert_clean(text)


def test_names_we_accepted_are_data_in_every_text_view(sim: Simulator, cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    """A model and a custom_id full of escapes (and Rich markup) are enqueued as given,
    shown cleaned, and kept exact in JSON; the simulator echoes the custom_id back in
    its error messages, so the provider's text carries them too."""
    model = f"gpt-4o-mini{hostile.TITLE}[/]"
    cid = f"id{hostile.CLEAR}{BEL}"
    sim.config.failure_rate = 1.0
    config = config_file(tmp_path, "[engine]\nmax_attempts = 1\n[alerts]\nfailure_rate = 1.0\n")
    enqueued = cli("enqueue", write_jsonl(tmp_path / "w.jsonl", [openai_line(cid, model=model), openai_line("ok")]))
    assert enqueued.code == 0
    assert_clean(enqueued.out)
    assert "gpt-4o-mini␛]0;owned␛\\[/]" in enqueued.out

    queued = cli("--config", config, "--once", "--no-refresh")
    assert_clean(queued.out)
    assert "gpt-4o-mini␛]0;owned␛\\[/]" in queued.out
    assert {b["model"] for b in status_json(cli)["buffers"]} == {model, "gpt-4o-mini"}

    flushed = cli("flush", model)
    assert flushed.code == 0
    settle(cli, data_dir)
    items = json.loads(cli("dead-letters", "--json").out)
    assert {(i["custom_id"], i["model"]) for i in items} == {(cid, model), ("ok", "gpt-4o-mini")}
    dead = cli("dead-letters")
    assert_clean(dead.out)
    assert "id␛[2J\\x9b2J␇" in dead.out and "gpt-4o-mini␛]0;owned␛\\[/]" in dead.out
    once = cli("--config", config, "--once", "--no-refresh")
    assert_clean(once.out)
    assert once.out.count("gpt-4o-mini␛]0;owned␛\\[/]") >= 2  # its batch and its savings row

    missing = cli("resubmit", f"batch_{hostile.TITLE}")  # user text echoed in an error message
    assert missing.code == 1 and "no batch" in missing.err
    assert_clean(missing.err)
