"""The README's examples run as written, and config.example.toml loads and is complete.

Shell blocks run in order as one bash script against the simulator (the README's port
8765 becomes the simulator's free port); Python blocks are exec'd; the JSON example is
validated against the status schema and TOML snippets are parsed by the config loader.
The set-up block is not run here: .ci/run runs `python3 dev.py test` itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from batchtop.cli import build_parser
from batchtop.config import (
    AlertConfig,
    Config,
    EngineConfig,
    FlushPolicy,
    declared_keys,
    load_config,
    parse_config,
    readme_rows,
)
from batchtop.sim import SimConfig, Simulator
from batchtop.store import Store

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
SETUP = (
    "python3 dev.py demo    # creates .venv, installs batchtop, runs the demo against the built-in simulator\n"
    "python3 dev.py test    # creates .venv, installs batchtop[test], runs the tests (all but the slow tier)\n"
)
SCHEMA = json.loads(resources.files("batchtop").joinpath("status.schema.json").read_text())


def blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", README, flags=re.S | re.M)


def test_setup_commands_come_first_then_the_screenshot() -> None:
    first = re.search(r"^```\w*\n(.*?)^```$", README, flags=re.S | re.M)
    assert first is not None and first.group(1) == SETUP
    after = README[first.end():]
    assert after.index("](screenshots/main.svg)") < after.index("\n## ")


@pytest.mark.slow  # several seconds: in the slow tier, which .ci/run runs after
def test_shell_examples_run_against_the_simulator(tmp_path: Path) -> None:
    scripts = [b for b in blocks("sh") if "dev.py" not in b]
    assert len(scripts) == len(blocks("sh")) - 1 >= 3
    script = "\n".join(scripts)
    assert "8765" in script
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    with Simulator(SimConfig()) as sim:
        script = script.replace("8765", str(sim.port))
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert len(sim.batches()) == 3  # one per provider: OpenAI, Anthropic, Gemini
    assert "TOTAL  batch $" in done.stdout and "ALERTS  0" in done.stdout and "no dead letters" in done.stdout
    assert "batchtop alert" not in done.stdout
    results = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert sorted(r.get("custom_id") or r["key"] for r in results) == ["q1", "q2", "q3"]  # Gemini's line has `key`
    status = json.loads((tmp_path / "status.json").read_text())
    jsonschema.validate(status, SCHEMA)
    assert [b["status"] for b in status["batches"]] == ["completed", "completed", "completed"]
    assert {m["model"] for m in status["savings"]["by_model"]} == {"gpt-4o-mini", "claude-sonnet-4-20250514", "gemini-2.0-flash"}
    assert (tmp_path / "batchtop-data" / "batchtop.sqlite3").exists()


def test_python_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (example,) = blocks("python")
    data_dir = tmp_path / "data"
    monkeypatch.setenv("BATCHTOP_DATA_DIR", str(data_dir))
    exec(compile(example, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert printed == "<python>:1: body.model: missing\n"  # as the example's comment says
    assert "# " + printed.strip() in example
    with Store(data_dir) as store:
        ids = sorted(r[0] for r in store.db.execute("SELECT custom_id FROM requests"))
    assert ids == ["q3", "q4", "q5"]


def test_json_example_is_a_valid_status_document() -> None:
    (example,) = blocks("json")
    jsonschema.validate(json.loads(example), SCHEMA)


def test_toml_examples_load() -> None:
    snippets = blocks("toml")
    assert snippets
    for snippet in snippets:
        parse_config(tomllib.loads(snippet))


def test_every_command_and_option_is_documented() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        assert f"`batchtop {name}" in README, f"README lacks the {name} command"
        for action in command._actions:
            if action.option_strings and "--help" not in action.option_strings:
                assert any(o in README for o in action.option_strings), f"README lacks {name} {action.option_strings}"
    for action in parser._actions:
        if action.option_strings and "--help" not in action.option_strings:
            assert action.option_strings[-1] in README


# -- config.example.toml ----------------------------------------------------------------------

EXAMPLE = ROOT / "config.example.toml"


def _fields(cls: type, *skip: str) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)} - set(skip)


FLUSH_KEYS = _fields(FlushPolicy)


def accepted_keys() -> set[str]:
    """Every key path the loader accepts, from its declarations (so a key added there
    and missing from the example fails this test)."""
    keys = set(declared_keys())
    assert {k.split(".")[0] for k in keys} == _fields(Config, "path")
    return keys


def used_keys(doc: dict[str, Any]) -> set[str]:
    """The key paths a config document sets, spelled as `declared_keys` spells them."""
    keys: set[str] = set()
    for section, table in doc.items():
        if section == "buffers":  # any [flush] key may appear here: one stands for them all
            keys |= {f"buffers.{k}" if k not in FLUSH_KEYS else "buffers.<a flush key>" for entry in table for k in entry}
        elif section == "webhooks":
            keys |= {f"webhooks.{k}" for entry in table for k in entry}
        elif section == "accounts":
            keys |= {f"accounts.<provider>.{k}" for acct in table.values() for k in acct}
        elif section == "prices":
            for provider in table.values():
                for name, value in provider.items():
                    keys |= {f"prices.<provider>.<family>.{k}" for k in value} if isinstance(value, dict) else {f"prices.<provider>.{name}"}
        elif section == "budget":
            for k, v in table.items():
                keys |= {f"budget.<provider>.{kk}" for kk in v} if isinstance(v, dict) else {f"budget.{k}"}
        else:
            keys |= {f"{section}.{k}" for k in table}
    return keys


def test_readme_config_table_is_the_declared_one() -> None:
    """The README's table of config keys is generated from the declarations in
    batchtop.config: after adding a key, paste `python -m batchtop.config` over it."""
    start = README.index("| Key | Default | Meaning |\n|---|---|---|\n")
    lines = README[start:README.index("\n\n", start)].splitlines()[2:]
    assert lines == list(readme_rows()), "regenerate it: python -m batchtop.config"


def test_config_example_loads_as_shipped() -> None:
    config = load_config(EXAMPLE, required=True)
    assert config.engine == EngineConfig() and config.flush == FlushPolicy() and config.alerts == AlertConfig()


def test_config_example_shows_every_key_and_its_commented_ones_load(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            assert "#" in line or line.startswith("["), f"key without a comment: {line}"
    # uncomment the settings shown commented out: `# key = value` and `# [table]`
    enabled = re.sub(r"^# (\[[^\]]+\]|[a-z_]+ = )", r"\1", text, flags=re.M)
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "answer.schema.json").write_text('{"type": "object"}')
    path = tmp_path / "config.toml"
    path.write_text(enabled)
    config = load_config(path, required=True)
    assert config.buffers[0].output_schema == (tmp_path / "schemas" / "answer.schema.json").resolve()
    assert config.budget.total.daily_usd is not None and "openai" in config.budget.providers
    assert used_keys(tomllib.loads(enabled)) == accepted_keys()
