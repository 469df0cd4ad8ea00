"""`batchtop --once --format prometheus`: Prometheus text exposition of the status.

Work runs for real (SQLite store in tmp_path, the simulator on 127.0.0.1, the official
SDKs); the output is read back with the official Python client's parser and, where
Debian's `promtool` is installed (CI installs it), checked by `promtool check metrics`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from batchtop.display import clean
from batchtop.sim import Simulator
from test_once import Cli, mixed_work, settle, sim, status_json, write_jsonl  # noqa: F401 (sim is a fixture)

from conftest import anthropic_line, openai_line

PROMTOOL = shutil.which("promtool")

Sample = tuple[str, tuple[tuple[str, str], ...]]


def exposition(cli: Cli, *extra: str) -> str:
    result = cli("--once", "--format", "prometheus", "--no-refresh", *extra)
    assert result.code == 0, result.err
    return result.out


def parse(text: str) -> dict[Sample, float]:
    """Every sample by (name, sorted labels); fails on a repeated label set or on a
    family mixing an unlabelled series with labelled ones."""
    samples: dict[Sample, float] = {}
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("batchtop_"), family.name
        assert family.documentation, f"{family.name} has no HELP"
        assert family.type in ("gauge", "counter"), family.type
        shapes = {bool(s.labels) for s in family.samples}
        assert len(shapes) <= 1, f"{family.name} mixes an unlabelled total with labelled series"
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in samples, f"repeated series {key}"
            assert s.timestamp is None  # the textfile collector refuses timestamps
            samples[key] = s.value
    return samples


def series(samples: dict[Sample, float], name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def promtool_check(text: str) -> None:
    if PROMTOOL is None:
        return  # the official parser has checked it; CI has promtool and checks the lint too
    done = subprocess.run([PROMTOOL, "check", "metrics"], check=False, input=text, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def _pm(provider: str, model: str, **more: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"provider": provider, "model": model, **more}.items()))


def test_real_work_as_exposition_matches_the_json_status(sim: Simulator, cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    sim.config.failure_rate = 0.3
    config = str(tmp_path / "c.toml")
    Path(config).write_text("[engine]\nmax_attempts = 1\n")
    lines = [openai_line(f"o{i}") for i in range(12)] + [anthropic_line(f"a{i}") for i in range(12)]
    lines += [openai_line(f"h{i}", model="house-model") for i in range(4)]  # no known price
    assert cli("enqueue", write_jsonl(tmp_path / "w.jsonl", lines)).code == 0
    assert cli("--config", config, "flush", "--all").code == 0
    assert cli("--config", config, "tick").code == 0
    time.sleep(0.05)
    assert cli("--config", config, "tick").code == 0
    assert cli("enqueue", write_jsonl(tmp_path / "q.jsonl", [openai_line("q1"), openai_line("q2")])).code == 0
    assert cli("--config", config, "flush", "--all").code == 0
    assert cli("--config", config, "tick").code == 0  # submitted: one batch in flight
    assert cli("enqueue", write_jsonl(tmp_path / "r.jsonl", [anthropic_line("r1")])).code == 0  # queued

    doc = status_json(cli, "--config", config)
    text = exposition(cli, "--config", config)
    promtool_check(text)
    samples = parse(text)

    queued = series(samples, "batchtop_queued_requests")
    assert queued[_pm("anthropic", "claude-sonnet-4-20250514")] == 1
    assert sum(queued.values()) == sum(b["queued"] for b in doc["buffers"]) == 1
    assert queued[_pm("openai", "house-model")] == 0  # known and idle: 0, not absent
    flying = series(samples, "batchtop_batches_in_flight")
    assert sum(flying.values()) == sum(not b["ingested"] for b in doc["batches"]) >= 1
    assert flying[_pm("openai", "gpt-4o-mini")] == sum(
        not b["ingested"] for b in doc["batches"] if b["model"] == "gpt-4o-mini"
    )

    requests = series(samples, "batchtop_requests_total")
    cost = series(samples, "batchtop_cost_usd_total")
    for m in doc["savings"]["by_model"]:
        ok = requests[_pm(m["provider"], m["model"], outcome="succeeded")]
        failed = requests[_pm(m["provider"], m["model"], outcome="failed")]
        assert (ok, ok + failed) == (m["requests_succeeded"], m["attempts"])
        batch = cost.get(_pm(m["provider"], m["model"], kind="batch"))
        realtime = cost.get(_pm(m["provider"], m["model"], kind="realtime_equivalent"))
        if m["price_known"]:
            assert (batch, realtime) == (pytest.approx(m["batch_cost_usd"]), pytest.approx(m["realtime_cost_usd"]))
        else:
            assert (batch, realtime) == (None, None)  # unknown price: no series, never a 0
    assert sum(v for k, v in requests.items() if ("outcome", "failed") in k) > 0  # the failures did happen
    assert not any(("model", "house-model") in k for k in cost)
    assert sum(v for k, v in cost.items() if ("kind", "batch") in k) == pytest.approx(
        doc["savings"]["total"]["batch_cost_usd"], abs=2e-6  # each figure is rounded to 1e-6 on its own
    )

    assert samples[("batchtop_dead_letters", ())] == doc["dead_letters"] > 0
    assert samples[("batchtop_unknown_submissions", ())] == doc["unknown_submissions"]
    alerts = series(samples, "batchtop_alerts")
    kinds = [a["kind"] for a in doc["alerts"]]
    assert {dict(k)["kind"]: v for k, v in alerts.items() if v} == {k: kinds.count(k) for k in kinds}
    assert alerts[(("kind", "unknown_submissions"),)] == 0  # not raised: 0, not absent
    polls = series(samples, "batchtop_last_poll_timestamp_seconds")
    assert set(polls) == {(("provider", "openai"),), (("provider", "anthropic"),)}
    assert all(time.time() - 120 < t <= time.time() for t in polls.values())


HOSTILE = ['quo"te', "back\\slash", "esc\x1b[31mred", "bidi\u202eevil", "caf\u00e9-\u6a21\u578b"]


@pytest.mark.parametrize("model", HOSTILE)
def test_untrusted_model_names_are_escaped_and_cleaned(cli: Cli, data_dir: Path, tmp_path: Path, model: str) -> None:
    assert cli("enqueue", write_jsonl(tmp_path / "w.jsonl", [openai_line("x1", model=model)])).code == 0
    text = exposition(cli)
    assert "\x1b" not in text and "\u202e" not in text and "\x00" not in text
    promtool_check(text)
    queued = series(parse(text), "batchtop_queued_requests")
    assert queued == {_pm("openai", clean(model, limit=200)): 1}


def test_a_model_name_with_a_nul_is_refused_at_enqueue(cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    """No provider takes one and PostgreSQL cannot store one: the line is refused, named."""
    result = cli("enqueue", write_jsonl(tmp_path / "w.jsonl", [openai_line("x1", model="nul\x00byte")]))
    assert result.code != 0 and "w.jsonl:1: model:" in result.err and "NUL" in result.err, result.err
    assert not data_dir.exists() or "batchtop_queued_requests{" not in exposition(cli)


def test_models_that_clean_to_one_label_value_are_one_series(cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    long = "m" * 300
    lines = [openai_line("x1", model=long + "a"), openai_line("x2", model=long + "b"),
             openai_line("x3", model="esc\x1b"), openai_line("x4", model="esc\u241b")]  # ESC shows as U+241B
    assert cli("enqueue", write_jsonl(tmp_path / "w.jsonl", lines)).code == 0
    text = exposition(cli)
    promtool_check(text)
    queued = series(parse(text), "batchtop_queued_requests")  # parse() fails on a repeated label set
    assert queued == {_pm("openai", clean(long, limit=200)): 2, _pm("openai", "esc\u241b"): 2}


def test_blank_data_dir_is_valid_exposition_and_creates_nothing(cli: Cli, data_dir: Path) -> None:
    text = exposition(cli)
    assert not data_dir.exists()
    promtool_check(text)
    samples = parse(text)
    assert samples[("batchtop_dead_letters", ())] == 0
    assert series(samples, "batchtop_queued_requests") == {}
    assert set(series(samples, "batchtop_alerts").values()) == {0}


def test_no_refresh_exposition_imports_no_sdk_and_no_textual(sim: Simulator, cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    assert cli("enqueue", mixed_work(tmp_path, 2)).code == 0
    settle(cli, data_dir)
    sim.clear_log()
    probe = (
        "import json, sys\n"
        "from batchtop.cli import main\n"
        "assert main(['--data-dir', sys.argv[1], '--once', '--no-refresh', '--format', 'prometheus']) == 0\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('openai', 'anthropic', 'textual', 'aiohttp'))\n"
        "print(json.dumps(heavy), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, str(data_dir)], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stderr.splitlines()[-1]) == []
    assert sim.requests() == []  # no network call
    requests = series(parse(done.stdout), "batchtop_requests_total")
    assert requests[_pm("openai", "gpt-4o-mini", outcome="succeeded")] == 2


def test_fail_on_alert_still_writes_the_exposition(cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    assert cli("enqueue", write_jsonl(tmp_path / "w.jsonl", [openai_line("x1")])).code == 0
    result = cli("--once", "--format", "prometheus", "--no-refresh", "--fail-on-alert")
    assert result.code == 0 and parse(result.out)


@pytest.mark.parametrize(
    "args",
    [("--format", "prometheus"), ("--format", "json", "tick"), ("--once", "--json", "--format", "prometheus"),
     ("--once", "--format", "xml")],
)
def test_format_out_of_place_is_a_usage_error(cli: Cli, data_dir: Path, args: tuple[str, ...]) -> None:
    result = cli(*args)
    assert result.code == 2 and "usage:" in result.err
    assert not data_dir.exists()


@pytest.mark.parametrize("args", [("--format", "json"), ("--json", "--format", "json")])
def test_format_json_is_the_json_status(cli: Cli, args: tuple[str, ...]) -> None:
    result = cli("--once", "--no-refresh", *args)
    doc: dict[str, Any] = json.loads(result.out)
    assert result.code == 0 and doc["buffers"] == []
