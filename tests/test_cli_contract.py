"""The command-line contract (shared/cli.md): names, options, env vars and exit codes,
plus `batchtop quote`, which is ours."""

from __future__ import annotations

import argparse
import io
import json
import re
import sqlite3
import time
from pathlib import Path

import pytest

from batchtop.cli import build_parser
from batchtop.config import Config
from batchtop.exitcodes import Exit
from batchtop.intake.quote import quote, render_quote
from test_once import Cli, config_file, db_rows, sim, write_jsonl  # noqa: F401 (sim is a fixture)

from conftest import CORPUS, Result, anthropic_line, openai_line, run_batchtop

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


# -- help, confirmation, plurals ----------------------------------------------------------


def _parser_of(command: str | None) -> argparse.ArgumentParser:
    parser = build_parser()
    if command is None:
        return parser
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


@pytest.mark.parametrize("command", list(CONTRACT))
def test_every_help_has_a_description_and_shows_defaults(cli: Cli, command: str | None) -> None:
    result = cli(*([command] if command else []), "--help")
    assert result.code == 0
    _, _, rest = result.out.partition("\n\n")
    description = rest.split("\n\n", 1)[0].strip()
    assert description and not description.startswith(("positional arguments", "options")), result.out
    parser = _parser_of(command)
    flat = " ".join(result.out.split())
    for action in parser._actions:
        if not action.option_strings or action.nargs == 0 or action.help == argparse.SUPPRESS:
            continue  # flags and --help: nothing to default
        shown = " ".join(parser._get_formatter()._expand_help(action).split())
        assert "default" in shown, f"{command or 'batchtop'} {action.option_strings[-1]}: no default in {shown!r}"
        assert shown in flat
        if action.default not in (None, argparse.SUPPRESS):
            assert f"(default: {action.default})" in shown


def _one_batch(cli: Cli, tmp_path: Path, sim) -> str:  # sim: Simulator
    assert cli("enqueue", write_jsonl(tmp_path / "w.jsonl", [openai_line("r1")])).code == 0
    assert cli("flush", "--all").code == 0
    assert cli("tick").code == 0
    (batch,) = sim.batches()
    return batch["id"]


def test_answering_no_to_cancel_exits_0_and_cancels_nothing(sim, cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    sim.config.per_request_s = 60.0  # stays in progress
    batch_id = _one_batch(cli, tmp_path, sim)
    for answer in ("n\n", "no\n", "\n"):
        result = cli("cancel", batch_id, stdin=answer)
        assert result.code == Exit.OK, result.err
        assert "[y/N]" in result.err and "not cancelled" in result.err
    assert db_rows(data_dir, "SELECT cancel_requested_at FROM batches") == [(None,)]
    assert all(b["status"] != "cancelling" for b in sim.batches())
    done = cli("cancel", batch_id, stdin="y\n")
    assert done.code == Exit.OK, done.err
    assert db_rows(data_dir, "SELECT cancel_requested_at IS NOT NULL FROM batches") == [(1,)]


_PLURAL = re.compile(r"\(s\)|\w\(es\)")


def test_no_parenthesised_plurals_in_cli_output(sim, cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    """"1 request" and "2 requests", never "request(s)", in what the commands print,
    alerts included (one dead letter, one unknown submission; then two of each)."""
    sim.config.failure_rate = 1.0
    config = config_file(tmp_path, "[engine]\nmax_attempts = 1\n[alerts]\nfailure_rate = 1.0\n")
    outputs = [cli("enqueue", write_jsonl(tmp_path / "one.jsonl", [openai_line("r1")]))]
    outputs += [cli("--config", config, "flush", "--all"), cli("--config", config, "tick")]
    time.sleep(0.05)
    outputs.append(cli("--config", config, "tick"))
    unknown = ("INSERT INTO batches (submission_uid, provider, buffer_id, endpoint, model, status, total, created_at)"
               " SELECT ?, provider, buffer_id, endpoint, model, 'unknown', 1, created_at FROM batches LIMIT 1")
    with sqlite3.connect(data_dir / "batchtop.sqlite3") as db:
        db.execute(unknown, ("lost-1",))
    for round_ in range(2):
        outputs += [cli("--config", config, "--once", "--no-refresh", "--fail-on-alert"),
                    cli("--config", config, "--once", "--no-refresh", "--json"), cli("dead-letters")]
        doc = json.loads(outputs[-2].out)
        assert {a["kind"] for a in doc["alerts"]} >= {"dead_letters", "unknown_submissions"}
        if round_:
            break
        outputs.append(cli("enqueue", write_jsonl(tmp_path / "two.jsonl", [openai_line("r2"), openai_line("r3")])))
        outputs += [cli("--config", config, "flush", "--all"), cli("--config", config, "tick")]
        time.sleep(0.05)
        outputs.append(cli("--config", config, "tick"))
        with sqlite3.connect(data_dir / "batchtop.sqlite3") as db:
            db.execute(unknown, ("lost-2",))
    messages = [a["message"] for a in doc["alerts"]]
    assert "3 requests used up their attempts" in messages
    assert any(m.startswith("2 submissions could not be matched") for m in messages)
    text = "\n".join(r.out + r.err for r in outputs)
    assert "1 request used up its attempts" in text and "1 submission could not be matched" in text
    assert not _PLURAL.search(text), _PLURAL.findall(text)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join("{not json\n" for _ in range(200)))
    rejected = cli("enqueue", str(bad))
    assert rejected.code == Exit.ERROR and "more problems" in rejected.err and not _PLURAL.search(rejected.err)
