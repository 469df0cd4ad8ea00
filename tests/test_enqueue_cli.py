"""`batchtop enqueue`: all or nothing, errors naming file, line and field."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from conftest import CORPUS, anthropic_line, count_requests, openai_line

# file -> (line, field) the error must name
BAD = {
    "not_json.jsonl": (2, ""),
    "not_object.jsonl": (2, ""),
    "missing_model.jsonl": (1, "body.model"),
    "mistyped_model.jsonl": (1, "body.model"),
    "bad_endpoint.jsonl": (1, "url"),
    "bad_method.jsonl": (1, "method"),
    "missing_method.jsonl": (1, "method"),
    "anthropic_custom_id.jsonl": (1, "custom_id"),
    "anthropic_custom_id_long.jsonl": (1, "custom_id"),
    "duplicate_custom_id.jsonl": (2, "custom_id"),
    "anthropic_missing_max_tokens.jsonl": (1, "params.max_tokens"),
    "anthropic_bool_max_tokens.jsonl": (1, "params.max_tokens"),
    "anthropic_stream.jsonl": (1, "params.stream"),
    "custom_id_number.jsonl": (1, "custom_id"),
    "unknown_provider.jsonl": (1, ""),
    "unknown_key.jsonl": (1, "extra"),
    "not_utf8.jsonl": (2, ""),
    "embeddings_missing_input.jsonl": (1, "body.input"),
    "many_bad_lines.jsonl": (1, ""),
}


def test_corpus_is_complete() -> None:
    assert sorted(p.name for p in (CORPUS / "bad").iterdir()) == sorted(BAD)


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_file_is_rejected_whole(cli, data_dir: Path, name: str) -> None:
    line, field = BAD[name]
    path = CORPUS / "bad" / name
    good = CORPUS / "good" / "mixed.jsonl"
    result = cli("enqueue", str(good), str(path))
    assert result.code == 1
    expected = f"{path}:{line}:" + (f" {field}:" if field else "")
    assert expected in result.err, result.err
    assert "nothing was enqueued" in result.err
    assert "Traceback" not in result.err
    # the good file given in the same invocation was not enqueued either
    assert count_requests(data_dir) == 0


def test_many_bad_lines_are_all_reported_up_to_a_limit(cli) -> None:
    result = cli("enqueue", str(CORPUS / "bad" / "many_bad_lines.jsonl"))
    named = [line for line in result.err.splitlines() if "many_bad_lines.jsonl:" in line]
    assert len(named) == 20
    assert "many_bad_lines.jsonl:20:" in result.err
    assert "and 10 more problems" in result.err


def test_enqueue_mixed_file_reports_buffers(cli, data_dir: Path) -> None:
    result = cli("enqueue", str(CORPUS / "good" / "mixed.jsonl"))
    assert result.code == 0, result.err
    assert "enqueued 2 requests" in result.out
    assert "openai:/v1/chat/completions:gpt-4o-mini" in result.out
    assert "anthropic:/v1/messages:claude-3-5-haiku-latest" in result.out
    with sqlite3.connect(data_dir / "batchtop.sqlite3") as db:
        rows = db.execute(
            "SELECT r.provider, r.custom_id, b.endpoint, b.model, r.state, r.attempts"
            " FROM requests r JOIN buffers b ON b.id = r.buffer_id ORDER BY r.id"
        ).fetchall()
        queued = db.execute("SELECT provider, queued FROM buffers ORDER BY provider").fetchall()
    assert rows == [
        ("openai", "a1", "/v1/chat/completions", "gpt-4o-mini", "queued", 0),
        ("anthropic", "c1", "/v1/messages", "claude-3-5-haiku-latest", "queued", 0),
    ]
    assert queued == [("anthropic", 1), ("openai", 1)]


def test_stdin_and_generated_custom_ids(cli, data_dir: Path) -> None:
    text = json.dumps(openai_line(None)) + "\n\n" + json.dumps(anthropic_line(None)) + "\n"
    result = cli("enqueue", "-", stdin=text)
    assert result.code == 0, result.err
    with sqlite3.connect(data_dir / "batchtop.sqlite3") as db:
        rows = db.execute("SELECT custom_id, line FROM requests").fetchall()
    assert len(rows) == 2
    for cid, line in rows:
        assert cid.startswith("bt_") and len(cid) <= 64
        assert json.loads(line)["custom_id"] == cid


def test_live_custom_id_is_rejected_but_other_provider_is_fine(cli, data_dir: Path, tmp_path: Path) -> None:
    f = tmp_path / "one.jsonl"
    f.write_text(json.dumps(openai_line("same")) + "\n")
    assert cli("enqueue", str(f)).code == 0
    again = cli("enqueue", str(f))
    assert again.code == 1
    assert f"{f}:1: custom_id: 'same' is already live in batchtop for openai (queued)" in again.err
    other = tmp_path / "two.jsonl"
    other.write_text(json.dumps(anthropic_line("same")) + "\n")
    assert cli("enqueue", str(other)).code == 0
    assert count_requests(data_dir) == 2


def test_custom_id_reusable_once_the_request_ended(cli, data_dir: Path, tmp_path: Path) -> None:
    f = tmp_path / "one.jsonl"
    f.write_text(json.dumps(openai_line("again")) + "\n")
    assert cli("enqueue", str(f)).code == 0
    with sqlite3.connect(data_dir / "batchtop.sqlite3") as db:
        db.execute("UPDATE requests SET state = 'succeeded'")
    assert cli("enqueue", str(f)).code == 0
    assert count_requests(data_dir) == 2


def test_sla_and_deadline(cli, data_dir: Path, tmp_path: Path) -> None:
    f = tmp_path / "one.jsonl"
    f.write_text(json.dumps(openai_line("d1")) + "\n")
    assert cli("enqueue", str(f), "--deadline", "2030-01-02T03:04:05Z").code == 0
    g = tmp_path / "two.jsonl"
    g.write_text(json.dumps(openai_line("d2")) + "\n")
    assert cli("enqueue", str(g), "--sla", "36h").code == 0
    with sqlite3.connect(data_dir / "batchtop.sqlite3") as db:
        (d1,), (d2,) = db.execute("SELECT deadline - enqueued_at FROM requests ORDER BY id").fetchall()
        (abs_deadline,) = db.execute("SELECT deadline FROM requests WHERE custom_id = 'd1'").fetchone()
    assert abs_deadline == 1893553445.0
    assert d2 == pytest.approx(36 * 3600)
    status = cli("--once", "--no-refresh", "--json")
    buffer = json.loads(status.out)["buffers"][0]
    with sqlite3.connect(data_dir / "batchtop.sqlite3") as db:
        (sla_deadline,) = db.execute("SELECT deadline FROM requests WHERE custom_id = 'd2'").fetchone()
    from batchtop.timefmt import iso

    assert buffer["earliest_deadline"] == iso(sla_deadline) != "2030-01-02T03:04:05Z"


def test_bad_sla_is_an_error(cli, tmp_path: Path, data_dir: Path) -> None:
    f = tmp_path / "one.jsonl"
    f.write_text(json.dumps(openai_line("d1")) + "\n")
    result = cli("enqueue", str(f), "--sla", "soon")
    assert result.code == 1 and "--sla" in result.err and "not a duration" in result.err
    assert count_requests(data_dir) == 0
    both = cli("enqueue", str(f), "--sla", "1h", "--deadline", "2030-01-01")
    assert both.code == 2


def test_forced_provider_mismatch(cli, tmp_path: Path) -> None:
    f = tmp_path / "one.jsonl"
    f.write_text(json.dumps(openai_line("p1")) + "\n")
    result = cli("enqueue", str(f), "--provider", "anthropic")
    assert result.code == 1
    assert f"{f}:1: params: missing" in result.err


def test_missing_file(cli, tmp_path: Path, data_dir: Path) -> None:
    result = cli("enqueue", str(CORPUS / "good" / "mixed.jsonl"), str(tmp_path / "nope.jsonl"))
    assert result.code == 1 and "nope.jsonl: cannot read" in result.err
    assert count_requests(data_dir) == 0


def test_empty_input(cli) -> None:
    result = cli("enqueue", "-", stdin="\n\n")
    assert result.code == 0 and "nothing to enqueue" in result.err


def test_usage_error_exit_2(cli) -> None:
    assert cli("enqueue").code == 2
    assert cli("no-such-command").code == 2
