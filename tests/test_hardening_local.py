"""Hardening against the local machine: huge values, other users' files, secrets in output.

Each test pins one finding of the security review (issue 19, items 4-9) and failed
on the code before its fix. The machine-sharing tests run as two Unix users: as
root they create a second user (`useradd`) and act as it through `runuser`; they are
skipped only where that is impossible (not root, or no `useradd`/`runuser`).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from batchtop.client import Client
from batchtop.config import ConfigError, load_config

from conftest import openai_line, run_batchtop

# -- 19.8: durations and deadlines finite and bounded; a schema file regular and capped


def _write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("flush", "max_age", "1e300"),
        ("flush", "max_age", '"999999999999d"'),
        ("flush", "deadline_margin", '"100000d"'),
        ("alerts", "window", "1e300"),
        ("engine", "poll_interval", "1e300"),
        ("engine", "lease_ttl", '"99999999999h"'),
    ],
)
def test_a_huge_config_duration_is_refused_naming_the_key(tmp_path: Path, section: str, key: str, value: str) -> None:
    path = _write_config(tmp_path / "config.toml", f"[{section}]\n{key} = {value}\n")
    with pytest.raises(ConfigError, match=rf"{path}: key '{section}\.{key}': .*at most"):
        load_config(path, required=True)


def test_a_huge_buffer_max_age_is_refused_naming_the_entry(tmp_path: Path) -> None:
    path = _write_config(tmp_path / "config.toml", '[[buffers]]\nmodel = "m"\nmax_age = "999999999999d"\n')
    with pytest.raises(ConfigError, match=r"key 'buffers\[0\]\.max_age': .*at most"):
        load_config(path, required=True)


def test_durations_up_to_a_few_years_still_load(tmp_path: Path) -> None:
    path = _write_config(tmp_path / "config.toml", '[flush]\nmax_age = "365d"\n[alerts]\nwindow = "30d"\n')
    config = load_config(path, required=True)
    assert config.flush.max_age == 365 * 86400 and config.alerts.window == 30 * 86400


@pytest.mark.parametrize("sla", ["1e300", "999999999999d", "inf", "nan", "1e20"])
def test_enqueue_refuses_a_huge_sla_and_the_status_still_prints(cli, tmp_path: Path, data_dir: Path, sla: str) -> None:
    work = tmp_path / "work.jsonl"
    work.write_text(json.dumps(openai_line("r1")) + "\n")
    got = cli("enqueue", "--sla", sla, str(work))
    assert got.code == 1, got
    assert got.err.startswith("batchtop: --sla: ") and "Traceback" not in got.err, got.err
    assert not (data_dir / "batchtop.sqlite3").exists() or cli("--once", "--json", "--no-refresh").code == 0
    assert cli("enqueue", "--sla", "36h", str(work)).code == 0
    once = cli("--once", "--json", "--no-refresh")
    assert once.code == 0, once.err


@pytest.mark.parametrize("deadline", ["99999-01-01T00:00:00Z", "+999999-01-01T00:00:00Z", "0001-01-01T00:00:00Z"])
def test_enqueue_refuses_a_deadline_years_away(cli, tmp_path: Path, deadline: str) -> None:
    work = tmp_path / "work.jsonl"
    work.write_text(json.dumps(openai_line("r1")) + "\n")
    got = cli("enqueue", "--deadline", deadline, str(work))
    assert got.code == 1 and got.err.startswith("batchtop: --deadline: "), got


@pytest.mark.parametrize("deadline", [math.nan, math.inf, -math.inf, 1e300, -1e300, 0.0, "nan"])
def test_python_api_refuses_a_non_finite_or_far_deadline(data_dir: Path, deadline: object) -> None:
    with Client(data_dir) as bt:
        with pytest.raises(ValueError, match="deadline"):
            bt.enqueue(openai_line("r1"), deadline=deadline)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="deadline"):
            bt.enqueue_many([openai_line("r2")], deadline=deadline)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="sla"):
            bt.enqueue(openai_line("r3"), sla=1e300)
    got = run_batchtop("--data-dir", str(data_dir), "--once", "--json", "--no-refresh")
    assert got.returncode == 0, got.stderr


def test_python_api_still_takes_a_near_deadline(data_dir: Path) -> None:
    import time

    with Client(data_dir) as bt:
        assert bt.enqueue(openai_line("r1"), deadline=time.time() + 86400) == "r1"
        assert bt.enqueue(openai_line("r2"), deadline="2027-06-01T00:00:00Z") == "r2"


_LOAD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # a runaway read fails here, not the machine
from batchtop.config import ConfigError, load_config
try:
    load_config(__import__("pathlib").Path(sys.argv[1]), required=True)
except ConfigError as exc:
    print(exc)
    sys.exit(1)
"""


@pytest.mark.parametrize("target", ["/dev/zero", "fifo", "dir", "huge"])
def test_output_schema_must_be_a_small_regular_file(tmp_path: Path, target: str) -> None:
    if target == "fifo":
        schema = tmp_path / "schema.fifo"
        os.mkfifo(schema)
    elif target == "dir":
        schema = tmp_path / "schemas"
        schema.mkdir()
    elif target == "huge":
        schema = tmp_path / "huge.json"
        schema.write_text('{"description": "' + "x" * (2 << 20) + '"}')
    else:
        schema = Path(target)
    path = _write_config(tmp_path / "config.toml", f'[[buffers]]\noutput_schema = "{schema}"\n')
    # a subprocess with a time and memory limit: the old code blocked on a FIFO and read /dev/zero forever
    got = subprocess.run([sys.executable, "-c", _LOAD, str(path)], capture_output=True, text=True, timeout=30)
    assert got.returncode == 1, (got.stdout, got.stderr[-2000:])
    assert re.match(rf"{re.escape(str(path))}: key 'buffers\[0\]\.output_schema': .*(regular file|larger than)", got.stdout), got.stdout
