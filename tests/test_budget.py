"""Budget caps: spend from ended attempts (UTC day / month) + in flight + the new batch.

gpt-4o at batch price: an attempt of 400 input + 100 output tokens costs
(400 x 2.50 + 100 x 10.00) / 1M / 2 = $0.001, so 1,000 of them cost $1.00.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from batchtop.config import ConfigError, load_config, parse_config
from batchtop.pricing.budget import budget_hold_reason, period_starts, spent
from batchtop.pricing.inflight import estimate_batch_cost
from batchtop.pricing.table import shipped_table
from batchtop.store import Store

NOW = datetime(2025, 11, 20, 15, 0, tzinfo=UTC).timestamp()


def ts(day: int, hour: int = 12, month: int = 11) -> float:
    return datetime(2025, month, day, hour, tzinfo=UTC).timestamp()


class World:
    """A store filled the way the engine fills it: buffers, batches, requests, attempts."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.n = 0

    def buffer(self, provider: str, model: str) -> int:
        self.db.execute(
            "INSERT OR IGNORE INTO buffers (provider, endpoint, model) VALUES (?, '/v1/chat/completions', ?)",
            (provider, model),
        )
        return self.db.execute("SELECT id FROM buffers WHERE provider = ? AND model = ?", (provider, model)).fetchone()[0]

    def batch(
        self, provider: str, model: str, *, created: float, total: int = 0, size: int = 0, ingested: float | None = 1.0
    ) -> int:
        self.n += 1
        cur = self.db.execute(
            "INSERT INTO batches (submission_uid, provider, buffer_id, endpoint, model, status, total, bytes,"
            " created_at, ingested_at) VALUES (?, ?, ?, '/v1/chat/completions', ?, ?, ?, ?, ?, ?)",
            (
                f"u{self.n}", provider, self.buffer(provider, model), model,
                "completed" if ingested else "in_progress", total, size, created, ingested,
            ),
        )
        return int(cur.lastrowid)

    def attempts(self, batch_id: int, count: int, ended: float, inp: int, out: int, provider: str = "openai") -> None:
        buffer_id = self.db.execute("SELECT buffer_id FROM batches WHERE id = ?", (batch_id,)).fetchone()[0]
        for _ in range(count):
            self.n += 1
            cur = self.db.execute(
                "INSERT INTO requests (provider, custom_id, buffer_id, line, bytes, enqueued_at, state, attempts)"
                " VALUES (?, ?, ?, '{}', 3, 0, 'succeeded', 1)",
                (provider, f"c{self.n}", buffer_id),
            )
            self.db.execute(
                "INSERT INTO attempts (request_id, batch_id, number, outcome, ended_at, input_tokens, output_tokens)"
                " VALUES (?, ?, 1, 'succeeded', ?, ?, ?)",
                (cur.lastrowid, batch_id, ended, inp, out),
            )


@pytest.fixture
def world(tmp_path: Path) -> World:
    store = Store(tmp_path / "data")
    store.db.execute("BEGIN")
    w = World(store.db)
    # today: $1.00 on gpt-4o
    w.attempts(w.batch("openai", "gpt-4o", created=ts(20, 1)), 1_000, ts(20, 9), 400, 100)
    # earlier this month: $1.00 (a batch created in October that ended on Nov 1 counts for November)
    w.attempts(w.batch("openai", "gpt-4o", created=ts(31, 20, month=10)), 1_000, ts(1, 2), 400, 100)
    # yesterday and last month: in the month / in neither
    w.attempts(w.batch("openai", "gpt-4o", created=ts(19, 1)), 500, ts(19, 23), 400, 100)
    w.attempts(w.batch("openai", "gpt-4o", created=ts(30, 1, month=10)), 5_000, ts(31, 23, month=10), 400, 100)
    # anthropic today: 1,000 x (1,000 in x $3 + 100 out x $15) / 1M / 2 = $2.25
    w.attempts(w.batch("anthropic", "claude-sonnet-4-20250514", created=ts(20, 2)), 1_000, ts(20, 10), 1_000, 100, "anthropic")
    # in flight: 1,000 gpt-4o requests, 800,000 bytes -> 200,000 input; mean output 100 (rollup) -> $0.75
    store.db.execute(
        "INSERT INTO usage_rollup (provider, model, first_attempt, succeeded, attempts, input_tokens, output_tokens)"
        " VALUES ('openai', 'gpt-4o', 1, 1, 7500, 3000000, 750000)"
    )
    w.batch("openai", "gpt-4o", created=ts(20, 14), total=1_000, size=800_000, ingested=None)
    store.db.execute("COMMIT")
    yield w
    store.close()


def test_period_starts_are_utc() -> None:
    assert period_starts(NOW) == (ts(20, 0), ts(1, 0))


def test_spent_today_and_this_month(world: World) -> None:
    table = shipped_table()
    assert spent(world.db, table, NOW, "openai") == (Decimal("1.00"), Decimal("2.50"))
    assert spent(world.db, table, NOW, "anthropic") == (Decimal("2.25"), Decimal("2.25"))
    assert spent(world.db, table, NOW) == (Decimal("3.25"), Decimal("4.75"))


def test_spent_sees_new_batches_after_a_first_call(world: World) -> None:
    table = shipped_table()
    assert spent(world.db, table, NOW, "openai")[0] == Decimal("1.00")
    world.attempts(world.batch("openai", "gpt-4o", created=ts(20, 3)), 500, ts(20, 11), 400, 100)
    assert spent(world.db, table, NOW, "openai") == (Decimal("1.50"), Decimal("3.00"))
    assert spent(world.db, table, NOW, "openai") == (Decimal("1.50"), Decimal("3.00"))


def test_provider_daily_cap(world: World) -> None:
    config = parse_config({"budget": {"openai": {"daily_usd": 2.0}}})
    # $1.00 spent + $0.75 in flight + $0.25 = exactly the cap: allowed
    assert budget_hold_reason(world.db, config, "openai", Decimal("0.25"), NOW) is None
    assert budget_hold_reason(world.db, config, "openai", Decimal("0.26"), NOW) == (
        "budget: openai daily cap $2.00 would be exceeded (spent $1.00 + in flight $0.75 + this batch $0.26)"
    )
    # an openai cap does not hold anthropic batches
    assert budget_hold_reason(world.db, config, "anthropic", Decimal("100"), NOW) is None


def test_monthly_and_global_caps(world: World) -> None:
    monthly = parse_config({"budget": {"openai": {"monthly_usd": 3.5}}})
    assert budget_hold_reason(world.db, monthly, "openai", Decimal("0.25"), NOW) is None
    reason = budget_hold_reason(world.db, monthly, "openai", Decimal("0.30"), NOW)
    assert reason == "budget: openai monthly cap $3.50 would be exceeded (spent $2.50 + in flight $0.75 + this batch $0.30)"
    overall = parse_config({"budget": {"daily_usd": 5}})
    # all providers today: $3.25 spent + $0.75 in flight
    assert budget_hold_reason(world.db, overall, "anthropic", Decimal("1.00"), NOW) is None
    assert budget_hold_reason(world.db, overall, "anthropic", Decimal("1.01"), NOW) == (
        "budget: daily cap $5.00 (all providers) would be exceeded (spent $3.25 + in flight $0.75 + this batch $1.01)"
    )


def test_no_budget_never_holds(world: World) -> None:
    assert budget_hold_reason(world.db, parse_config({}), "openai", Decimal("1e9"), NOW) is None
    assert budget_hold_reason(world.db, parse_config({}), "openai", None, NOW) is None


def test_unknown_cost_is_held_under_a_cap(world: World) -> None:
    config = parse_config({"budget": {"openai": {"daily_usd": 100}}})
    reason = budget_hold_reason(world.db, config, "openai", None, NOW)
    assert reason is not None and "no known price" in reason and "[prices.openai" in reason


def test_next_day_resets_the_daily_spend(world: World) -> None:
    config = parse_config({"budget": {"openai": {"daily_usd": 1.0}}})
    tomorrow = ts(21, 0) + 1
    # nothing ended on the 21st; only the in-flight $0.75 counts
    assert budget_hold_reason(world.db, config, "openai", Decimal("0.25"), tomorrow) is None
    assert budget_hold_reason(world.db, config, "openai", Decimal("0.25"), NOW) is not None


def test_estimate_batch_cost(world: World) -> None:
    config = parse_config({})
    # 1,000 requests, 800,000 bytes, observed mean output 100: the in-flight batch's $0.75
    assert estimate_batch_cost(world.db, config, "openai", "gpt-4o", 1_000, 800_000) == Decimal("0.75")
    assert estimate_batch_cost(world.db, config, "openai", "nobody-knows", 1, 4) is None


@pytest.mark.parametrize(
    ("budget", "key"),
    [
        ({"dayly_usd": 1}, "budget.dayly_usd"),
        ({"daily_usd": -1}, "budget.daily_usd"),
        ({"daily_usd": "5"}, "budget.daily_usd"),
        ({"monthly_usd": True}, "budget.monthly_usd"),
        ({"openia": {"daily_usd": 1}}, "budget.openia"),
        ({"openai": 5}, "budget.openai"),
        ({"openai": {"weekly_usd": 5}}, "budget.openai.weekly_usd"),
        ({"anthropic": {"monthly_usd": float("nan")}}, "budget.anthropic.monthly_usd"),
    ],
)
def test_bad_budget_config_names_the_key(budget: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=f"key '{key}'"):
        parse_config({"budget": budget})


def test_budget_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[budget]\nmonthly_usd = 250\n\n[budget.openai]\ndaily_usd = 5.5\n")
    config = load_config(path)
    assert config.budget.total.monthly_usd == Decimal("250") and config.budget.total.daily_usd is None
    assert config.budget.providers["openai"].daily_usd == Decimal("5.5")
    path.write_text("budget = 5\n")
    with pytest.raises(ConfigError, match=f"{path}: key 'budget': must be a table"):
        load_config(path)
