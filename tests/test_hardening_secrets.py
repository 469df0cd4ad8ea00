"""Hardening: API keys never land in the database, its side files, logs or output.

A full workflow runs through the real entry point with recognizable keys, each
provider on its own simulator that requires its key: enqueue (CLI and Python API),
ticks until done, `--once`, `--once --json`, `results` (stdout and -o FILE),
`dead-letters` (text and --json), `batchtop run` with its log on stderr, and calls
with a wrong key so that authentication errors are produced, recorded and printed.
Then every byte batchtop wrote or printed is searched for the keys and distinctive
parts of them: zero hits. The database's WAL and shared-memory files are searched
while `batchtop run` holds them open, as well as after.

Everything runs with umask 000, so a file batchtop creates without choosing its
mode would come out world-readable: the data dir must be 0700, the database and its
side files 0600, and a results export not readable by group or others.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchtop.sim import SimConfig, Simulator

from conftest import anthropic_line, openai_line

OPENAI_KEY = "sk-SECRET-openai-0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-SECRET-anthropic-fedcba9876543210"
WRONG_KEY = "sk-SECRET-wrong-5a5a5a5a5b5b5b5b"
NEEDLES = [
    OPENAI_KEY, ANTHROPIC_KEY, WRONG_KEY,
    "SECRET", "0123456789abcdef", "fedcba9876543210", "5a5a5a5a5b5b5b5b",
    "openai-0123", "anthropic-fedc", "wrong-5a5a",
]

CONFIG = """
[engine]
poll_interval = 0.2
max_attempts = 2

[flush]
max_age = 0
"""


@pytest.fixture
def sims() -> Iterator[tuple[Simulator, Simulator]]:
    """One simulator per provider, each requiring that provider's key."""
    o = Simulator(SimConfig(require_api_key=OPENAI_KEY, per_request_s=0.0)).start()
    a = Simulator(SimConfig(require_api_key=ANTHROPIC_KEY, per_request_s=0.0)).start()
    try:
        yield o, a
    finally:
        o.stop()
        a.stop()


class Workflow:
    """Runs `batchtop` subprocesses under umask 000 and keeps every byte they print."""

    def __init__(self, data_dir: Path, config: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.config = config
        self.env = env
        self.captured: list[tuple[str, bytes]] = []

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "batchtop", "--data-dir", str(self.data_dir), "--config", str(self.config), *args]

    def __call__(self, *args: str, env: dict[str, str] | None = None, ok: bool = True) -> subprocess.CompletedProcess[bytes]:
        proc = subprocess.run(
            self.argv(*args), capture_output=True, env=env or self.env, timeout=120, preexec_fn=lambda: os.umask(0)
        )
        self.captured += [(f"{args} stdout", proc.stdout), (f"{args} stderr", proc.stderr)]
        if ok:
            assert proc.returncode == 0, (args, proc.stderr.decode(errors="replace"))
        return proc

    def open_requests(self) -> int:
        with sqlite3.connect(self.data_dir / "batchtop.sqlite3", timeout=30) as db:
            return db.execute("SELECT count(*) FROM requests WHERE state NOT IN ('succeeded', 'dead')").fetchone()[0]

    def tick_until_done(self) -> None:
        for _ in range(40):
            self("tick")
            if self.open_requests() == 0:
                return
            time.sleep(0.1)
        raise AssertionError("work never finished")


def _write(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _hits(name: str, blob: bytes) -> list[str]:
    return [f"{name}: {needle!r}" for needle in NEEDLES if needle.encode() in blob]


@pytest.mark.slow
def test_keys_never_leak_and_files_are_private(sims: tuple[Simulator, Simulator], tmp_path: Path) -> None:
    sim_o, sim_a = sims
    data_dir = tmp_path / "state" / "data"
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    env = {
        **os.environ,
        "OPENAI_API_KEY": OPENAI_KEY,
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
        "OPENAI_BASE_URL": sim_o.openai_base_url,
        "ANTHROPIC_BASE_URL": sim_a.anthropic_base_url,
    }
    bt = Workflow(data_dir, config, env)
    files: dict[str, bytes] = {}  # name -> bytes, searched at the end

    # enqueue: a file through the CLI, more through the Python API (in a subprocess too)
    work = [openai_line(f"o{i}") for i in range(20)] + [anthropic_line(f"a{i}") for i in range(20)]
    work += [openai_line(f"failalways-{i}") for i in range(2)] + [anthropic_line("failalways_a")]  # dead letters
    bt("enqueue", str(_write(tmp_path / "work.jsonl", work)))
    api = subprocess.run(
        [sys.executable, "-c",
         "import sys; from batchtop import Client\n"
         "with Client(sys.argv[1]) as bt: print(bt.enqueue_many([{'params': {'model': 'claude-sonnet-4-20250514',"
         " 'max_tokens': 5, 'messages': [{'role': 'user', 'content': 'hi'}]}}] * 3))", str(data_dir)],
        capture_output=True, env=env, preexec_fn=lambda: os.umask(0), timeout=60,
    )
    assert api.returncode == 0, api.stderr
    bt.captured += [("api stdout", api.stdout), ("api stderr", api.stderr)]

    bt.tick_until_done()
    bt("--once")
    bt("--once", "--json")
    bt("--once", "--json", "--no-refresh")
    bt("results")
    export = tmp_path / "results.jsonl"
    bt("results", "-o", str(export))
    bt("dead-letters")
    dead = json.loads(bt("dead-letters", "--json").stdout)
    assert len(dead) == 3 and all(d["last_error"] for d in dead)
    files["results -o"] = export.read_bytes()
    assert len(export.read_bytes().splitlines()) == 43

    # wrong keys: errors are produced, printed and recorded, and name no key
    bt("enqueue", str(_write(tmp_path / "late.jsonl", [openai_line("late-o"), anthropic_line("late_a")])))
    wrong = {**env, "OPENAI_API_KEY": WRONG_KEY, "ANTHROPIC_API_KEY": WRONG_KEY}
    failed = bt("tick", env=wrong, ok=False)
    assert failed.returncode in (0, 1)
    bt("--once", env=wrong, ok=False)
    bt("--once", "--json", "--no-refresh")
    with sqlite3.connect(data_dir / "batchtop.sqlite3") as db:
        held = [r[0] for r in db.execute("SELECT held_reason FROM buffers WHERE held_reason IS NOT NULL")]
        states = [r[0] for r in db.execute("SELECT value FROM engine_state WHERE key LIKE 'provider:%'")]
    recorded = " ".join(held + states)
    assert "401" in recorded or "Authentication" in recorded, f"the wrong key produced no recorded error: {recorded}"
    printed = b"".join(blob for _, blob in bt.captured[-6:])
    assert b"401" in printed or b"Authentication" in printed or b"key" in printed.lower(), printed
    # the operator fixes the key and flushes: the engine below sends the held work at once
    bt("flush", "--all")

    # the engine loop, with its log; the WAL and shm files are read while it holds them
    bt("enqueue", str(_write(tmp_path / "more.jsonl", [openai_line(f"r{i}") for i in range(10)]
                              + [anthropic_line(f"ra{i}") for i in range(10)])))
    run_err = tmp_path / "run.err"
    with run_err.open("wb") as err:
        engine = subprocess.Popen(bt.argv("run", "--verbose"), stdout=subprocess.PIPE, stderr=err, env=env, preexec_fn=lambda: os.umask(0))
    try:
        end = time.monotonic() + 60
        while bt.open_requests():
            assert time.monotonic() < end, run_err.read_text()
            time.sleep(0.1)
        side = {p.name: p.read_bytes() for p in data_dir.iterdir()}
        assert {"batchtop.sqlite3-wal", "batchtop.sqlite3-shm"} <= set(side), sorted(side)
        for name, blob in side.items():
            files[f"while running: {name}"] = blob
            mode = stat.S_IMODE((data_dir / name).stat().st_mode)
            assert mode == 0o600, f"{name} is {oct(mode)} while the engine runs"
    finally:
        engine.send_signal(signal.SIGTERM)
        out, _ = engine.communicate(timeout=60)
    assert engine.returncode == 0, run_err.read_text()
    bt.captured += [("run stdout", out), ("run stderr", run_err.read_bytes())]
    assert b"HTTP Request" in run_err.read_bytes(), "the run log is empty: nothing was searched"
    with sqlite3.connect(data_dir / "batchtop.sqlite3") as db:
        late = db.execute("SELECT custom_id, state FROM requests WHERE custom_id LIKE 'late%' ORDER BY 1").fetchall()
    assert late == [("late-o", "succeeded"), ("late_a", "succeeded")]

    # search: the database and every side file now, every output, every captured stream
    for p in data_dir.iterdir():
        files[f"after: {p.name}"] = p.read_bytes()
    files["config"] = config.read_bytes()
    hits = [hit for name, blob in [*files.items(), *bt.captured] for hit in _hits(name, blob)]
    assert not hits, hits
    # the search can find things: the keys were in the environment of every process
    assert _hits("env", json.dumps(env).encode())

    # permissions, though every process ran with umask 000
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    for p in data_dir.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, (p.name, oct(p.stat().st_mode))
    assert stat.S_IMODE(export.stat().st_mode) & 0o077 == 0, oct(export.stat().st_mode)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".results")], "a temp export was left behind"
