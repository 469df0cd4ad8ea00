"""Files written on Windows: a UTF-8 byte-order mark and CRLF line endings are accepted
by enqueue and quote alike, and the provider is sent clean lines (no BOM, no CR)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchtop.engine.tick import Engine
from batchtop.sim import Simulator
from batchtop.store import Store

from conftest import Result, anthropic_line, openai_line
from engine_helpers import close, config, drive, sim, states  # noqa: F401 (sim is a fixture)

BOM = b"\xef\xbb\xbf"


def windows_file(path: Path, lines: list[dict], *, bom: bool = True) -> str:
    """What Notepad or a PowerShell export writes: BOM first, CRLF after every line."""
    path.write_bytes((BOM if bom else b"") + b"".join(json.dumps(line).encode() + b"\r\n" for line in lines))
    return str(path)


@pytest.mark.parametrize("bom", [True, False], ids=["bom+crlf", "crlf"])
def test_enqueue_and_quote_accept_bom_and_crlf(cli, tmp_path: Path, data_dir: Path, bom: bool) -> None:
    path = windows_file(tmp_path / "win.jsonl", [openai_line("r1"), openai_line("r2"), anthropic_line("a1")], bom=bom)
    quoted: Result = cli("quote", path, "--json")
    assert quoted.code == 0, quoted.err
    assert sum(row["requests"] for row in json.loads(quoted.out)) == 3
    enqueued: Result = cli("enqueue", path)
    assert enqueued.code == 0, enqueued.err
    assert "enqueued 3 requests" in enqueued.out
    with Store(data_dir) as store:
        stored = [line for (line,) in store.db.execute("SELECT line FROM requests ORDER BY id")]
    assert all(not line.startswith("\ufeff") and "\r" not in line for line in stored)
    assert json.loads(stored[0])["custom_id"] == "r1"


def test_a_bom_on_stdin_is_accepted_too(cli) -> None:
    raw = BOM + json.dumps(openai_line("s1")).encode() + b"\r\n"
    result: Result = cli("enqueue", "-", stdin=raw)
    assert result.code == 0, result.err
    assert "enqueued 1 request" in result.out


def test_the_provider_receives_clean_lines(sim: Simulator, cli, tmp_path: Path, data_dir: Path) -> None:
    path = windows_file(tmp_path / "win.jsonl", [openai_line("r1"), openai_line("r2"), anthropic_line("a1")])
    assert cli("enqueue", path).code == 0
    with Store(data_dir) as store:
        engine = Engine(store, config())
        drive(engine, lambda: set(states(store)) == {"succeeded"})
        close(engine)
    uploads = [f.content for f in sim.state.files.values() if f.purpose == "batch"]
    assert len(uploads) == 1
    assert BOM not in uploads[0] and b"\r" not in uploads[0]
    assert [json.loads(line)["custom_id"] for line in uploads[0].splitlines()] == ["r1", "r2"]
    (batch,) = sim.batches("anthropic")
    assert batch["custom_ids"] == ["a1"]

