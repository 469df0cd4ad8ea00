"""The command-line contract (shared/cli.md): names, options, env vars and exit codes,
plus `batchtop quote`, which is ours."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from batchtop.config import Config
from batchtop.exitcodes import Exit
from batchtop.quote import quote, render_quote
from conftest import CORPUS, Result, anthropic_line, openai_line, run_batchtop
from test_once import Cli, write_jsonl

# Every command of the contract with the options it must take, and ours after them.
CONTRACT = {
    None: ["--data-dir", "--config", "--once", "--json", "--no-refresh", "--fail-on-alert"],
    "demo": [],
    "sim": ["--port"],
    "enqueue": ["--sla", "--deadline", "--provider", "FILE"],
    "flush": ["BUFFER", "--all"],
    "tick": [],
    "run": [],
    "resubmit": ["BATCH_ID"],
    "cancel": ["BATCH_ID", "--yes"],
    "results": ["BATCH_ID", "-o"],
    "dead-letters": ["--json"],
    "adopt": ["LOCAL_ID", "BATCH_ID"],
    "quote": ["FILE", "--json", "--provider"],
}


def test_exit_statuses() -> None:
    assert (Exit.OK, Exit.ERROR, Exit.USAGE, Exit.ALERT) == (0, 1, 2, 3)


@pytest.mark.parametrize("command", list(CONTRACT))
def test_every_command_and_option_exists(cli: Cli, command: str | None) -> None:
    result = cli(*([command] if command else []), "--help")
    assert result.code == 0
    for option in CONTRACT[command]:
        assert option in result.out, f"{command or 'batchtop'} lacks {option}"
    if command:  # the global options are taken after the command too
        assert "--data-dir" in result.out and "--config" in result.out


def test_global_options_after_the_command_and_from_the_environment(tmp_path: Path) -> None:
    work = write_jsonl(tmp_path / "w.jsonl", [openai_line("r1")])
    after = tmp_path / "after"
    done = run_batchtop("enqueue", work, "--data-dir", str(after))
    assert done.returncode == 0, done.stderr
    assert (after / "batchtop.sqlite3").exists()

    from_env = tmp_path / "from-env"
    done = run_batchtop("enqueue", work, env={"BATCHTOP_DATA_DIR": str(from_env)})
    assert done.returncode == 0 and (from_env / "batchtop.sqlite3").exists()

    bad = tmp_path / "bad.toml"
    bad.write_text("[engine]\nmax_attempts = 0\n")
    done = run_batchtop("--data-dir", str(after), "--once", "--no-refresh", env={"BATCHTOP_CONFIG": str(bad)})
    assert done.returncode == 1
    assert done.stderr.startswith(f"batchtop: {bad}: key 'engine.max_attempts'")
    done = run_batchtop("--data-dir", str(after), "quote", work, "--config", str(tmp_path / "absent.toml"))
    assert done.returncode == 1 and "config file not found" in done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("no-such-command",),
        ("resubmit",),
        ("cancel",),
        ("enqueue",),
        ("enqueue", "x.jsonl", "--sla", "36h", "--deadline", "2026-11-27T09:00:00Z"),
        ("flush",),
        ("results", "a", "b"),
        ("dead-letters", "--csv"),
        ("quote",),
        ("--once", "results"),
    ],
)
def test_usage_errors_exit_2(cli: Cli, data_dir: Path, args: tuple[str, ...]) -> None:
    result = cli(*args)
    assert result.code == Exit.USAGE
    assert "usage:" in result.err
    assert not data_dir.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (("cancel", "batch_nope", "--yes"), "no batch 'batch_nope'"),
        (("resubmit", "batch_nope"), "no batch 'batch_nope'"),
        (("results", "batch_nope"), "no batch 'batch_nope'"),
        (("enqueue", "absent.jsonl"), "absent.jsonl: cannot read"),
        (("quote", "absent.jsonl"), "absent.jsonl: cannot read"),
        (("flush", "no-such-buffer"), "no buffer named 'no-such-buffer'"),
    ],
)
def test_errors_exit_1_and_name_what_is_wrong(cli: Cli, data_dir: Path, tmp_path: Path, args: tuple, message: str) -> None:
    assert cli("enqueue", write_jsonl(tmp_path / "w.jsonl", [openai_line("r1")])).code == 0
    result = cli(*args)
    assert result.code == Exit.ERROR
    assert result.err.startswith("batchtop: ") and message in result.err


# -- quote -------------------------------------------------------------------------------


def _lines() -> list[dict]:
    return [openai_line(f"o{i}", model="gpt-4o") for i in range(5)] + [anthropic_line("a1", max_tokens=100),
                                                                         openai_line("x1", model="house-model")]


def test_quote_text_and_json(cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "w.jsonl", _lines())
    rows = quote([path], Config())
    expected = io.StringIO()
    render_quote(rows, expected)

    text = cli("quote", path)
    assert text.code == 0, text.err
    assert text.out == expected.getvalue()
    assert "no known price for openai:house-model" in text.err  # a warning, on stderr (cli.md)
    assert "no known price" not in text.out

    as_json = cli("quote", path, "--json")
    assert as_json.code == 0
    assert json.loads(as_json.out) == rows
    assert {r["model"] for r in rows} == {"gpt-4o", "claude-sonnet-4-20250514", "house-model"}
    assert not data_dir.exists()  # quoting stores nothing


def test_quote_stdin_prices_from_config_and_forced_provider(cli: Cli, tmp_path: Path) -> None:
    line = json.dumps(openai_line("h1", model="house-model"))
    config = tmp_path / "c.toml"
    config.write_text('[prices.openai."house-model"]\ninput = 10\noutput = 20\n')
    result: Result = cli("--config", str(config), "quote", "-", "--json", stdin=line + "\n")
    assert result.code == 0, result.err
    (row,) = json.loads(result.out)
    assert row["price_known"] is True and row["batch_usd"] > 0

    forced = cli("quote", "-", "--provider", "anthropic", stdin=line + "\n")
    assert forced.code == 1 and forced.out == ""
    assert forced.err.startswith("batchtop: <stdin>:1: ") and "Anthropic batch line" in forced.err


@pytest.mark.parametrize("name", ["not_json.jsonl", "missing_model.jsonl", "duplicate_custom_id.jsonl"])
def test_quote_rejects_what_enqueue_rejects(cli: Cli, name: str) -> None:
    path = str(CORPUS / "bad" / name)
    quoted, enqueued = cli("quote", path), cli("enqueue", path)
    assert quoted.code == enqueued.code == Exit.ERROR
    assert quoted.err == enqueued.err and quoted.out == ""
