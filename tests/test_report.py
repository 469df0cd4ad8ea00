"""`batchtop report`: the cost report over a period, checked against hand arithmetic.

Two kinds of stored usage:
- a history made by the real engine over the simulator (real openai/anthropic SDKs over
  HTTP) on a manual clock: batches on three UTC days (the middle one idle), with
  first-try failures, cache reads and an output-validation rule that fails one model;
- results stored through the engine's own ingest (`BatchIngest`) with token counts
  chosen for the arithmetic (the seed's routing example, break-even, unknown prices).
Prices by hand (pricing.md): gpt-4o $2.50 / $1.25 cached / $10.00, gpt-4o-mini $0.15 /
$0.075 / $0.60, claude-sonnet-4 $3.00 / $0.30 read / $3.75 write / $15.00; batch 50% off.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from batchtop.config import Config, ConfigError, parse_config
from batchtop.engine.driver import one_pass
from batchtop.engine.tick import Engine
from batchtop.intake.validation import parse_lines
from batchtop.pricing.savings import savings
from batchtop.providers.base import ProviderAdapter, ResultLine
from batchtop.providers.clients import fixed_factory
from batchtop.report import document, render
from batchtop.sim import ManualClock, SimConfig, Simulator
from batchtop.store import Store, actions
from batchtop.store.ingest import BatchIngest, Settle
from batchtop.store.schema import MIGRATIONS, _usage_by_batch_end
from batchtop.timefmt import parse_time

DAY0 = parse_time("2026-11-28T09:00:00Z")
ALL = document.Period()
M = Decimal(1_000_000)
HALF = Decimal("0.5")
# (plain input, cache read, cache write, output) USD per million, by hand from pricing.md
PRICES = {
    "gpt-4o": (Decimal("2.50"), Decimal("1.25"), Decimal("2.50"), Decimal("10.00")),
    "gpt-4o-mini": (Decimal("0.15"), Decimal("0.075"), Decimal("0.15"), Decimal("0.60")),
    "claude-sonnet-4-20250514": (Decimal("3.00"), Decimal("0.30"), Decimal("3.75"), Decimal("15.00")),
}


def list_cost(model: str, inp: int, cached: int, write: int, out: int) -> Decimal:
    p = PRICES[model]
    return (inp * p[0] + cached * p[1] + write * p[2] + out * p[3]) / M


def micro(x: Decimal) -> float:
    return float(x.quantize(Decimal("0.000001")))


# -- a history made by the real engine -------------------------------------------------------


@dataclass(frozen=True)
class History:
    data_dir: Path
    config: Config
    now: float


def _factory(sim: Simulator) -> Callable[[Config, str], ProviderAdapter]:
    return fixed_factory({"openai": sim.openai_base_url, "anthropic": sim.anthropic_base_url}, "test")


def _openai(cid: str, model: str) -> str:
    return json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                       "body": {"model": model, "max_tokens": 200, "messages": [{"role": "user", "content": f"say {cid}"}]}})


def _anthropic(cid: str) -> str:
    return json.dumps({"custom_id": cid, "params": {"model": "claude-sonnet-4-20250514", "max_tokens": 200,
                                                    "messages": [{"role": "user", "content": f"say {cid}"}]}})


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    data_dir = tmp_path_factory.mktemp("history") / "data"
    clock = ManualClock(DAY0)
    sim = Simulator(SimConfig(per_request_s=2.0, first_try_failure_rate=0.2, cached_input_share=0.25,
                              cache_write_share=0.1, seed=3), clock=clock)
    sim.start()
    # gpt-4o-mini's output must be JSON: the simulator's is not, so every attempt fails
    # validation, with its tokens billed, until the request is dead
    config = parse_config({"engine": {"max_attempts": 3}, "flush": {"max_age": "48h"},
                           "buffers": [{"model": "gpt-4o-mini", "output": "json"}]})
    store = Store(data_dir)
    engine = Engine(store, config, now=clock.now, adapter_factory=_factory(sim))

    def tick() -> None:
        one_pass(engine)

    def session(lines: list[str]) -> None:
        store.enqueue(parse_lines([("<test>", i, line) for i, line in enumerate(lines, 1)]), now=clock.now())
        for _ in range(4):  # submit, then resubmit what failed, twice
            actions.request_flush(store, None, clock.now())
            tick()
            clock.advance(1800)
            tick()

    try:
        session([_openai(f"a{i}", "gpt-4o") for i in range(30)] + [_anthropic(f"b{i}") for i in range(20)])
        clock.advance(2 * 86400 - 4 * 3600)  # day 1 idle
        session([_openai(f"c{i}", "gpt-4o") for i in range(25)] + [_openai(f"d{i}", "gpt-4o-mini") for i in range(5)])
        now = clock.now()
    finally:
        store.close()
        sim.stop()
    return History(data_dir, config, now)


def _hand_by_day(db: sqlite3.Connection) -> dict[str, dict[str, Decimal | int]]:
    """A plain scan of the attempts, priced by hand, placed on the day their batch ended."""
    out: dict[str, dict[str, Decimal | int]] = defaultdict(lambda: {"batch": Decimal(0), "realtime": Decimal(0), "ok": 0})
    for day, model, outcome, inp, cached, write, o in db.execute(
        "SELECT date(b.ended_at, 'unixepoch'), b.model, a.outcome, a.input_tokens, a.cached_input_tokens,"
        " a.cache_creation_input_tokens, a.output_tokens FROM attempts a JOIN batches b ON b.id = a.batch_id"
        " WHERE a.outcome IS NOT NULL"
    ):
        cost = list_cost(model, inp, cached, write, o)
        out[day]["batch"] += cost * HALF
        if outcome == "succeeded":
            out[day]["realtime"] += cost
            out[day]["ok"] += 1
    return dict(out)


def _report(h: History, period: document.Period = ALL, what_if=None) -> dict:
    with Store(h.data_dir, create=False) as store:
        return document.build(store.db, h.config, period, what_if, now=h.now)


def test_history_has_what_the_checks_need(history: History) -> None:
    with Store(history.data_dir, create=False) as store:
        outcomes = dict(store.db.execute("SELECT outcome, count(*) FROM attempts GROUP BY outcome"))
        days = {d for (d,) in store.db.execute("SELECT date(ended_at, 'unixepoch') FROM batches")}
    assert outcomes["succeeded"] == 75 and outcomes["invalid_output"] >= 10 and outcomes["errored"] > 0
    assert days == {"2026-11-28", "2026-11-30"}


def test_by_day_and_totals_match_hand_arithmetic(history: History) -> None:
    doc = _report(history)
    with Store(history.data_dir, create=False) as store:
        hand = _hand_by_day(store.db)
    assert [d["day"] for d in doc["by_day"]] == ["2026-11-28", "2026-11-29", "2026-11-30"]
    for d in doc["by_day"]:
        h = hand.get(d["day"], {"batch": Decimal(0), "realtime": Decimal(0), "ok": 0})
        assert d["requests_succeeded"] == h["ok"]
        assert d["batch_cost_usd"] == micro(h["batch"])
        assert d["realtime_cost_usd"] == micro(h["realtime"])
        assert d["saved_usd"] == micro(h["realtime"] - h["batch"])
    assert doc["by_day"][1] == {"day": "2026-11-29", "requests_succeeded": 0, "batch_cost_usd": 0.0,
                                "realtime_cost_usd": 0.0, "saved_usd": 0.0, "complete": True}
    batch = sum(h["batch"] for h in hand.values())
    realtime = sum(h["realtime"] for h in hand.values())
    t = doc["totals"]
    assert t["batch_cost_usd"] == micro(batch) and t["realtime_cost_usd"] == micro(realtime)
    assert t["saved_usd"] == micro(realtime - batch)
    assert t["requests_succeeded"] == 75 and t["complete"] is True
    assert t["realtime_lane_spent_usd"] == 0.0


def test_whole_history_is_what_once_shows(history: History) -> None:
    """The same pricing functions over the same usage: --once's savings and the report agree."""
    doc = _report(history)
    with Store(history.data_dir, create=False) as store:
        once = savings(store.db, history.config)
    for key in ("batch_cost_usd", "realtime_cost_usd", "saved_usd", "saved_pct", "resubmission_cost_usd",
                "first_pass_success_rate", "requests_succeeded"):
        assert doc["totals"][key] == once["total"][key], key
    for mine, theirs in zip(doc["by_model"], once["by_model"], strict=True):
        for key, value in theirs.items():
            assert mine[key] == value, (theirs["model"], key)


def test_the_period_rollups_sum_to_the_usage_rollup(history: History) -> None:
    with Store(history.data_dir, create=False) as store:
        cols = "attempts, input_tokens, cached_input_tokens, cache_creation_input_tokens, output_tokens"
        sums = ", ".join(f"sum({c})" for c in cols.split(", "))
        q = "SELECT provider, model, first_attempt, succeeded, {} FROM {} GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
        want = store.db.execute(q.format(sums, "usage_rollup")).fetchall()
        assert store.db.execute(q.format(sums, "usage_hourly")).fetchall() == want
        assert store.db.execute(q.format(sums, "usage_daily")).fetchall() == want
        # each hour lies in its day
        by_hour = store.db.execute(f"SELECT hour / 24, provider, model, {sums} FROM usage_hourly GROUP BY 1, 2, 3").fetchall()
        assert sorted(by_hour) == sorted(store.db.execute(f"SELECT day, provider, model, {sums} FROM usage_daily GROUP BY 1, 2, 3"))


def test_avg_batch_duration_runs_from_provider_creation_to_end(history: History) -> None:
    doc = _report(history)
    with Store(history.data_dir, create=False) as store:
        rows = store.db.execute(
            "SELECT model, ended_at - provider_created_at, ended_at - created_at FROM batches"
            " WHERE provider_batch_id IS NOT NULL"
        ).fetchall()
    assert all(d > 0 for _, d, _ in rows)
    assert doc["totals"]["batches"] == len(rows)
    assert doc["totals"]["avg_batch_duration_s"] == pytest.approx(sum(d for _, d, _ in rows) / len(rows), abs=1e-3)
    for m in doc["by_model"]:
        mine = [d for model, d, _ in rows if model == m["model"]]
        assert m["batches"] == len(mine)
        assert m["avg_batch_duration_s"] == pytest.approx(sum(mine) / len(mine), abs=1e-3)


def test_a_period_takes_the_batches_that_ended_in_it(history: History) -> None:
    doc = _report(history, document.Period.rounded(parse_time("2026-11-29T00:00:00Z"), None))
    with Store(history.data_dir, create=False) as store:
        hand = _hand_by_day(store.db)["2026-11-30"]
    assert [d["day"] for d in doc["by_day"]] == ["2026-11-30"]
    assert doc["totals"]["batch_cost_usd"] == micro(hand["batch"])
    assert {m["model"] for m in doc["by_model"]} == {"gpt-4o", "gpt-4o-mini"}
    assert doc["period"] == {"since": "2026-11-29T00:00:00Z", "until": None}
    early = _report(history, document.Period.rounded(None, parse_time("2026-11-29T00:00:00Z")))
    assert early["totals"]["batch_cost_usd"] == micro(_hand_by_day_only(history, "2026-11-28"))
    assert early["totals"]["batch_cost_usd"] + doc["totals"]["batch_cost_usd"] == pytest.approx(
        _report(history)["totals"]["batch_cost_usd"], abs=2e-6)


def _hand_by_day_only(h: History, day: str) -> Decimal:
    with Store(h.data_dir, create=False) as store:
        return _hand_by_day(store.db)[day]["batch"]


def test_projection_follows_the_basis_days_rule(history: History) -> None:
    doc = _report(history)
    p, t = doc["projection"], doc["totals"]
    assert p["basis_days"] == 3  # 2026-11-28 to 2026-11-30, inclusive
    with Store(history.data_dir, create=False) as store:
        hand = _hand_by_day(store.db)
    batch = sum(h["batch"] for h in hand.values())
    saved = sum(h["realtime"] for h in hand.values()) - batch
    assert p["monthly_batch_cost_usd"] == micro(batch / 3 * 30)
    assert p["monthly_saved_usd"] == micro(saved / 3 * 30)
    assert p["annual_saved_usd"] == micro(saved / 3 * 30 * 12)
    assert t["saved_usd"] == micro(saved)


def test_validation_failures_are_billed_and_flag_break_even(history: History) -> None:
    doc = _report(history)
    (mini,) = [m for m in doc["by_model"] if m["model"] == "gpt-4o-mini"]
    assert mini["requests_succeeded"] == 0 and mini["attempts"] == 15
    assert mini["batch_cost_usd"] > 0 and mini["realtime_cost_usd"] == 0.0
    assert mini["resubmission_cost_usd"] == mini["batch_cost_usd"]
    assert mini["first_pass_success_rate"] == 0.0 and mini["below_break_even"] is True
    (big,) = [m for m in doc["by_model"] if m["model"] == "gpt-4o"]
    assert big["below_break_even"] is False and big["first_pass_success_rate"] > big["break_even_first_pass_rate"]
    out = io.StringIO()
    render.write_text(doc, out)
    text = out.getvalue()
    assert "! openai:gpt-4o-mini: first-pass success 0.0% is below its break-even 50.0%" in text
    assert "! openai:gpt-4o:" not in text


# -- the CLI, in its three shapes --------------------------------------------------------------


def test_cli_json_csv_and_text_agree(history: History, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHTOP_DATA_DIR", str(history.data_dir))
    doc = _report(history)
    as_json = cli("--data-dir", str(history.data_dir), "report", "--json")
    assert as_json.code == 0, as_json.err
    got = json.loads(as_json.out)
    for key in ("period", "totals", "by_model", "by_day", "projection", "what_if"):
        assert key in got
    assert got["by_day"] == doc["by_day"] and got["totals"] == doc["totals"]

    as_csv = cli("--data-dir", str(history.data_dir), "report", "--csv")
    assert as_csv.code == 0
    rows = list(csv.DictReader(io.StringIO(as_csv.out)))
    assert list(rows[0]) == ["day", "requests_succeeded", "batch_cost_usd", "realtime_cost_usd", "saved_usd"]
    assert [(r["day"], float(r["batch_cost_usd"])) for r in rows] == [(d["day"], d["batch_cost_usd"]) for d in doc["by_day"]]

    text = cli("--data-dir", str(history.data_dir), "report")
    assert text.code == 0
    assert "BY MODEL" in text.out and "BY DAY" in text.out and "PROJECTION (from 3 days" in text.out
    day_lines = [line.split() for line in text.out.splitlines() if line.strip().startswith("2026-11-")]
    assert [d[0] for d in day_lines] == ["2026-11-28", "2026-11-29", "2026-11-30"]
    total_line = next(line.split() for line in text.out.splitlines()[text.out.splitlines().index("BY DAY (UTC, by batch end)"):]
                      if line.strip().startswith("TOTAL"))
    shown = [Decimal(d[2].lstrip("$").replace(",", "")) for d in day_lines]
    assert sum(shown) == Decimal(total_line[2].lstrip("$").replace(",", ""))  # the column adds up as printed


def test_cli_since_duration_and_bad_input(history: History, cli) -> None:
    d = str(history.data_dir)
    assert cli("--data-dir", d, "report", "--since", "yesterday").code == 1
    bad = cli("--data-dir", d, "report", "--since", "yesterday")
    assert "--since" in bad.err and "neither an ISO 8601 time" in bad.err
    assert "--until" in cli("--data-dir", d, "report", "--until", "soon").err
    backwards = cli("--data-dir", d, "report", "--since", "2026-11-30T00:00:00Z", "--until", "2026-11-29T00:00:00Z")
    assert backwards.code == 1 and "not after" in backwards.err
    assert cli("--data-dir", d, "report", "--json", "--csv").code == 2
    recent = json.loads(cli("--data-dir", d, "report", "--since", "1000d", "--json").out)
    assert recent["totals"] == _report(history)["totals"]  # ten years back from the real now: everything


def test_cli_on_a_blank_data_dir_creates_nothing(cli, data_dir: Path) -> None:
    result = cli("report", "--json")
    assert result.code == 0
    doc = json.loads(result.out)
    assert doc["by_model"] == [] and doc["by_day"] == [] and doc["totals"]["batch_cost_usd"] == 0.0
    assert doc["projection"]["basis_days"] == 1
    assert not data_dir.exists()
    assert "no batch ended in this period" in cli("report").out


# -- results stored through the engine's ingest, with chosen token counts ---------------------


class Ingested:
    """A real store; each `batch` is a real batch row whose results go through BatchIngest."""

    def __init__(self, path: Path) -> None:
        self.store = Store(path)
        self.n = 0

    def batch(self, provider: str, model: str, results: list[tuple[str, int, int, int]], *, ended: float,
              created: float | None = None, number: int = 1) -> None:
        """results: (outcome, input, cached input, output) per request."""
        db = self.store.db
        endpoint = "/v1/messages" if provider == "anthropic" else "/v1/chat/completions"
        db.execute("INSERT OR IGNORE INTO buffers (provider, endpoint, model) VALUES (?, ?, ?)", (provider, endpoint, model))
        (buffer_id,) = db.execute("SELECT id FROM buffers WHERE provider = ? AND model = ?", (provider, model)).fetchone()
        self.n += 1
        batch_id = db.execute(
            "INSERT INTO batches (submission_uid, provider, buffer_id, endpoint, model, provider_batch_id, status, total,"
            " created_at, provider_created_at, ended_at) VALUES (?, ?, ?, ?, ?, ?, 'completed', ?, ?, ?, ?)",
            (f"u{self.n}", provider, buffer_id, endpoint, model, f"batch_{self.n}", len(results),
             (created or ended - 3600) - 5, created or ended - 3600, ended),
        ).lastrowid
        lines = []
        for i, (outcome, inp, cached, out) in enumerate(results):
            cid = f"r{self.n}-{i}"
            rid = db.execute(
                "INSERT INTO requests (provider, custom_id, buffer_id, line, bytes, enqueued_at, state, attempts)"
                " VALUES (?, ?, ?, '{}', 2, 0, 'in_flight', ?)", (provider, cid, buffer_id, number),
            ).lastrowid
            db.execute("INSERT INTO attempts (request_id, batch_id, number) VALUES (?, ?, ?)", (rid, batch_id, number))
            ok = outcome == "succeeded"
            lines.append(ResultLine(cid, outcome, "{}" if ok else None, None if ok else "server_error: boom",
                                    input_tokens=inp, cached_input_tokens=cached, output_tokens=out))
        ingest = BatchIngest(self.store, batch_id, Settle(max_attempts=5, auto_resubmit=False))
        ingest.add(lines, ended + 60)
        ingest.finish(ended + 60)


@pytest.fixture
def ingested(tmp_path: Path):
    made = Ingested(tmp_path / "data")
    yield made
    made.store.close()


def build(made: Ingested, *what_if: str, config: Config | None = None, period: document.Period = ALL) -> dict:
    return document.build(made.store.db, config or Config(), period, list(what_if), now=DAY0 + 10 * 86400)


def test_seed_routing_example_is_a_97_percent_cut(ingested: Ingested) -> None:
    """500 in + 200 out on gpt-4o at real time ($0.00325) against gpt-4o-mini in batch ($0.0000975)."""
    ingested.batch("openai", "gpt-4o", [("succeeded", 500, 0, 200)], ended=DAY0)
    doc = build(ingested, "gpt-4o-mini")
    (w,) = doc["what_if"]
    assert (w["provider"], w["model"], w["to_model"]) == ("openai", "gpt-4o", "gpt-4o-mini")
    assert w["realtime_cost_usd"] == 0.00325 == micro(list_cost("gpt-4o", 500, 0, 0, 200))
    assert w["batch_cost_usd"] == 0.001625
    assert w["to_batch_cost_usd"] == micro(list_cost("gpt-4o-mini", 500, 0, 0, 200) * HALF) == 0.000098  # 0.0000975
    assert w["saved_pct_vs_realtime"] == 97.0
    assert w["extra_saved_usd"] == micro(Decimal("0.001625") - Decimal("0.0000975"))
    assert w["extra_saved_pct"] == 94.0
    assert w["price_known"] is True


@pytest.mark.slow  # several seconds: in the slow tier, which .ci/run runs after
def test_what_if_prices_all_tokens_on_the_same_provider_only(ingested: Ingested) -> None:
    # 10,000 x (500 in, 200 out) on gpt-4o, as cli.md's example: $16.25 in batch, $0.975 on gpt-4o-mini
    ingested.batch("openai", "gpt-4o", [("succeeded", 500, 0, 200)] * 10_000, ended=DAY0)
    ingested.batch("anthropic", "claude-sonnet-4-20250514", [("succeeded", 1_000, 0, 100)] * 10, ended=DAY0)
    doc = build(ingested, "gpt-4o-mini", "claude-haiku-4-5")
    pairs = {(w["model"], w["to_model"]): w for w in doc["what_if"]}
    assert set(pairs) == {("gpt-4o", "gpt-4o-mini"), ("claude-sonnet-4-20250514", "claude-haiku-4-5")}
    w = pairs[("gpt-4o", "gpt-4o-mini")]
    assert (w["batch_cost_usd"], w["to_batch_cost_usd"], w["extra_saved_usd"]) == (16.25, 0.975, 15.275)
    haiku = pairs[("claude-sonnet-4-20250514", "claude-haiku-4-5")]
    # 10,000 in + 1,000 out: sonnet (0.03 + 0.015) / 2, haiku (0.01 + 0.005) / 2
    assert (haiku["batch_cost_usd"], haiku["to_batch_cost_usd"], haiku["extra_saved_usd"]) == (0.0225, 0.0075, 0.015)
    # failed attempts' tokens were paid for too: the what-if prices them on the target as well
    ingested.batch("openai", "gpt-4o", [("errored", 1_000, 0, 1_000)], ended=DAY0, number=2)
    w = {(x["model"], x["to_model"]): x for x in build(ingested, "gpt-4o-mini")["what_if"]}[("gpt-4o", "gpt-4o-mini")]
    assert w["batch_cost_usd"] == 16.25 + 0.00625
    assert w["to_batch_cost_usd"] == 0.975 + micro(list_cost("gpt-4o-mini", 1_000, 0, 0, 1_000) * HALF)


def test_unknown_prices_stay_unknown(ingested: Ingested) -> None:
    ingested.batch("openai", "gpt-4o", [("succeeded", 500, 0, 200)], ended=DAY0)
    ingested.batch("openai", "my-finetune", [("succeeded", 500, 0, 200)], ended=DAY0 + 86400)
    doc = build(ingested, "gpt-4o-mini", "gpt-9-turbo")
    (ft,) = [m for m in doc["by_model"] if m["model"] == "my-finetune"]
    assert ft["price_known"] is False and ft["batch_cost_usd"] is None and ft["saved_usd"] is None
    assert doc["totals"]["complete"] is False and doc["totals"]["batch_cost_usd"] == 0.001625  # the priced part
    assert doc["by_day"][1] == {"day": "2026-11-29", "requests_succeeded": 1, "batch_cost_usd": None,
                                "realtime_cost_usd": None, "saved_usd": None, "complete": False}
    pairs = {(w["model"], w["to_model"]): w for w in doc["what_if"]}
    unknown_from = pairs[("my-finetune", "gpt-4o-mini")]
    assert unknown_from["batch_cost_usd"] is None and unknown_from["extra_saved_usd"] is None
    assert unknown_from["price_known"] is False
    unknown_to = pairs[("gpt-4o", "gpt-9-turbo")]
    assert unknown_to["to_batch_cost_usd"] is None and unknown_to["extra_saved_usd"] is None
    assert unknown_to["price_known"] is False and unknown_to["batch_cost_usd"] == 0.001625
    assert any("gpt-9-turbo" in n for n in doc["notes"])
    out = io.StringIO()
    render.write_csv(doc, out)
    assert out.getvalue().splitlines()[2] == "2026-11-29,1,,,"  # empty cells, never 0
    text = io.StringIO()
    render.write_text(doc, text)
    assert "openai:my-finetune: no known price" in text.getvalue()


def test_break_even_per_model(ingested: Ingested) -> None:
    # gpt-4o: 45% first pass with failures as costly as successes (break-even 50%): flagged
    ingested.batch("openai", "gpt-4o", [("succeeded", 500, 0, 200)] * 45 + [("errored", 500, 0, 200)] * 55, ended=DAY0)
    ingested.batch("openai", "gpt-4o", [("succeeded", 500, 0, 200)] * 55, ended=DAY0 + 3600, number=2)
    # gpt-4o-mini: 60% first pass: above
    ingested.batch("openai", "gpt-4o-mini", [("succeeded", 500, 0, 200)] * 60 + [("errored", 500, 0, 200)] * 40, ended=DAY0)
    ingested.batch("openai", "gpt-4o-mini", [("succeeded", 500, 0, 200)] * 40, ended=DAY0 + 3600, number=2)
    by = {m["model"]: m for m in build(ingested)["by_model"]}
    assert by["gpt-4o"]["first_pass_success_rate"] == 0.45 and by["gpt-4o"]["break_even_first_pass_rate"] == 0.5
    assert by["gpt-4o"]["below_break_even"] is True
    # 155 attempts at $0.001625 against 100 successes at $0.00325
    assert by["gpt-4o"]["batch_cost_usd"] == micro(155 * Decimal("0.001625"))
    assert by["gpt-4o"]["saved_usd"] == micro(100 * Decimal("0.00325") - 155 * Decimal("0.001625"))
    assert by["gpt-4o-mini"]["first_pass_success_rate"] == 0.6 and by["gpt-4o-mini"]["below_break_even"] is False


@pytest.mark.slow  # several seconds: in the slow tier, which .ci/run runs after
def test_projection_of_one_day(ingested: Ingested) -> None:
    ingested.batch("openai", "gpt-4o", [("succeeded", 500, 0, 200)] * 10_000, ended=DAY0)
    p = build(ingested)["projection"]
    assert p == {"basis_days": 1, "monthly_batch_cost_usd": 487.5, "monthly_saved_usd": 487.5,
                 "annual_batch_cost_usd": 5850.0, "annual_saved_usd": 5850.0, "complete": True}


def test_periods_are_widened_to_whole_hours(ingested: Ingested) -> None:
    ingested.batch("openai", "gpt-4o", [("succeeded", 500, 0, 200)], ended=DAY0 + 600)  # 09:10
    assert document.Period.rounded(DAY0 + 1200, DAY0 + 1201) == document.Period(DAY0, DAY0 + 3600)
    inside = build(ingested, period=document.Period.rounded(DAY0 + 1200, None))  # since 09:20 -> 09:00
    assert inside["totals"]["requests_succeeded"] == 1 and inside["totals"]["batches"] == 1
    after = build(ingested, period=document.Period.rounded(DAY0 + 3600, None))
    assert after["totals"]["requests_succeeded"] == 0 and after["totals"]["batches"] == 0


def test_partial_days_at_both_ends_come_from_the_hours(ingested: Ingested) -> None:
    """Batches every 5 hours over four days; every period, whole days or not, sums what
    a plain filter on the batches' end times finds."""
    ends = [DAY0 + k * 5 * 3600 + 120 for k in range(20)]
    for k, ended in enumerate(ends):
        ingested.batch("openai", "gpt-4o", [("succeeded", 100 * (k + 1), 0, 10)], ended=ended)
    for since, until in [(None, None), (DAY0 + 3600, None), (None, DAY0 + 50 * 3600), (DAY0 + 7 * 3600, DAY0 + 80 * 3600),
                         (DAY0 + 20 * 3600, DAY0 + 21 * 3600), (DAY0 + 15 * 3600, DAY0 + 39 * 3600),
                         (DAY0 - 9 * 3600, DAY0 + 15 * 3600)]:
        inside = [k for k, e in enumerate(ends) if (since is None or e >= since) and (until is None or e < until)]
        doc = build(ingested, period=document.Period(since, until))
        want = sum(list_cost("gpt-4o", 100 * (k + 1), 0, 0, 10) for k in inside) * HALF
        assert doc["totals"]["batches"] == len(inside), (since, until)
        assert doc["totals"]["requests_succeeded"] == len(inside), (since, until)
        assert doc["totals"]["batch_cost_usd"] == micro(Decimal(want)), (since, until)
        days = {document.day_text(int(ends[k] // 86400)) for k in inside}
        assert {d["day"] for d in doc["by_day"] if d["requests_succeeded"]} == days


def test_routing_candidates_are_the_default_what_if(ingested: Ingested) -> None:
    ingested.batch("openai", "gpt-4o", [("succeeded", 500, 0, 200)], ended=DAY0)
    config = parse_config({"routing": {"candidates": ["gpt-4o-mini", "claude-haiku-4-5"]}})
    doc = document.build(ingested.store.db, config, document.Period(), None, now=DAY0)
    assert [(w["model"], w["to_model"]) for w in doc["what_if"]] == [("gpt-4o", "gpt-4o-mini")]
    assert document.build(ingested.store.db, config, document.Period(), [], now=DAY0)["what_if"] == []


@pytest.mark.parametrize(
    ("routing", "key"),
    [({"candidates": "gpt-4o-mini"}, "routing.candidates"), ({"candidates": ["gpt-4o-mini", 3]}, "routing.candidates[1]"),
     ({"candidates": [""]}, "routing.candidates[0]"), ({"models": []}, "routing.models"), ("x", "routing")],
)
def test_routing_config_errors_name_the_key(routing: object, key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"key '{key}'")):
        parse_config({"routing": routing}, Path("batchtop.toml"))


def test_migration_backfills_the_period_rollups(tmp_path: Path) -> None:
    """A store from before `usage_daily` / `usage_hourly`: opening it places its history by batch end."""
    data = tmp_path / "data"
    data.mkdir()
    db = sqlite3.connect(data / "batchtop.sqlite3", isolation_level=None)
    before = MIGRATIONS.index(_usage_by_batch_end)
    for migration in MIGRATIONS[:before]:
        migration(db)
    db.execute(f"PRAGMA user_version = {before}")
    db.execute("INSERT INTO buffers (provider, endpoint, model) VALUES ('openai', '/v1/chat/completions', 'gpt-4o')")
    for uid, ended in ((1, DAY0), (2, DAY0 + 86400)):
        db.execute(
            "INSERT INTO batches (id, submission_uid, provider, buffer_id, endpoint, model, provider_batch_id, status,"
            " total, created_at, provider_created_at, ended_at, ingested_at)"
            " VALUES (?, ?, 'openai', 1, '/v1/chat/completions', 'gpt-4o', ?, 'completed', 1, ?, ?, ?, ?)",
            (uid, f"u{uid}", f"batch_{uid}", ended - 4000, ended - 3600, ended, ended + 60),
        )
    # batch 1: three successes (500 in, 200 out) and a failure that used 100 input; batch 2: the retry
    attempts = [(1, 1, "succeeded", 500, 200), (1, 1, "succeeded", 500, 200), (1, 1, "succeeded", 500, 200),
                (1, 1, "errored", 100, 0), (2, 2, "succeeded", 500, 200)]
    for i, (batch, number, outcome, inp, out) in enumerate(attempts, 1):
        db.execute("INSERT INTO requests (id, provider, custom_id, buffer_id, line, bytes, enqueued_at)"
                   " VALUES (?, 'openai', ?, 1, '{}', 2, 0) ON CONFLICT DO NOTHING", (min(i, 4), f"r{min(i, 4)}"))
        db.execute("INSERT INTO attempts (request_id, batch_id, number, outcome, ended_at, input_tokens, output_tokens)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?)", (min(i, 4), batch, number, outcome, DAY0, inp, out))
    db.close()
    with Store(data, create=False) as store:
        doc = document.build(store.db, Config(), document.Period(), [], now=DAY0 + 10 * 86400)
    # day 0: real time 3 x $0.00325; batch half of that plus half of 100 x $2.50/M
    assert [(d["day"], d["requests_succeeded"], d["batch_cost_usd"], d["realtime_cost_usd"]) for d in doc["by_day"]] == [
        ("2026-11-28", 3, 0.005, 0.00975), ("2026-11-29", 1, 0.001625, 0.00325)]
    (m,) = doc["by_model"]
    assert (m["batches"], m["attempts"], m["first_pass_success_rate"]) == (2, 5, 0.75)


def test_report_imports_neither_textual_nor_the_sdks(tmp_path: Path) -> None:
    """`batchtop report` is a read of the store: no console, no provider SDK loaded."""
    code = (
        "import sys, contextlib, io\n"
        "from batchtop.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    main(['--data-dir', {str(tmp_path / 'data')!r}, 'report', '--json'])\n"
        "print(sorted(m for m in ('textual', 'openai', 'anthropic') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
