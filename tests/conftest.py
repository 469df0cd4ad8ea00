"""Shared fixtures: a private temp data dir, isolated config discovery, a CLI runner."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from batchtop.cli import main

CORPUS = Path(__file__).parent / "corpus"


@pytest.fixture(autouse=True)
def no_discovered_config(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never read the developer's own config or data dir."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("BATCHTOP_CONFIG", str(home / "absent-config.toml"))
    monkeypatch.setenv("BATCHTOP_DATA_DIR", str(home / "default-data"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for var in (
        "OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL",
        "GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_GENAI_API_VERSION",
        "GOOGLE_GENAI_USE_VERTEXAI",
    ):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run `batchtop --data-dir DATA ARGS...` in-process; stdin from a string."""

    def run(*args: str, stdin: str | bytes | None = None) -> Result:
        if stdin is not None:
            raw = stdin.encode() if isinstance(stdin, str) else stdin
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw)))
        capsys.readouterr()
        try:
            code = main(["--data-dir", str(data_dir), *args])
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def count_requests(data_dir: Path) -> int:
    db_path = data_dir / "batchtop.sqlite3"
    if not db_path.exists():
        return 0
    with sqlite3.connect(db_path) as db:
        return db.execute("SELECT count(*) FROM requests").fetchone()[0]


def run_batchtop(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess[str]:
    """Run the real `batchtop` entry point in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "batchtop", *args], capture_output=True, text=True, env=full_env, **kw)


def openai_line(cid: str | None = "r1", model: str = "gpt-4o-mini", content: str = "hi") -> dict:
    line = {
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": content}]},
    }
    if cid is not None:
        line["custom_id"] = cid
    return line


def anthropic_line(cid: str | None = "c1", model: str = "claude-sonnet-4-20250514", max_tokens: int = 64) -> dict:
    line = {"params": {"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}]}}
    if cid is not None:
        line["custom_id"] = cid
    return line


@pytest.fixture
def corpus() -> Iterator[Path]:
    yield CORPUS
