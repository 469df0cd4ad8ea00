"""Savings from usage_rollup, and the in-flight estimate, on a real store.

Figures are the hand-checked ones of the shared pricing notes (pricing.md): gpt-4o at $2.50 / $10.00
per million, batch at half price, so one request of 500 in + 200 out costs $0.00325
real-time and $0.001625 in batch.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from batchtop.config import Config, parse_config
from batchtop.pricing.savings import break_even_first_pass_rate, in_flight_estimate, savings
from batchtop.pricing.table import shipped_table
from batchtop.store import Store
from batchtop.store.ingest import ROLLUP_ADD


@pytest.fixture
def db(tmp_path: Path) -> sqlite3.Connection:
    store = Store(tmp_path / "data")
    yield store.db
    store.close()


def add_usage(
    db: sqlite3.Connection,
    provider: str,
    model: str,
    *,
    first: bool,
    ok: bool,
    attempts: int,
    inp: int = 0,
    cached: int = 0,
    write: int = 0,
    out: int = 0,
    write_1h: int = 0,
) -> None:
    """As the engine does at ingest: add `attempts` attempts of these per-attempt tokens
    (`write` is every cache write, `write_1h` the 1-hour part of it)."""
    db.execute(
        ROLLUP_ADD,
        (provider, model, int(first), int(ok), attempts, inp * attempts, cached * attempts, write * attempts,
         out * attempts, write_1h * attempts),
    )


def one(doc: dict, model: str) -> dict:
    (row,) = [r for r in doc["by_model"] if r["model"] == model]
    return row


def test_worked_example_gpt4o(db: sqlite3.Connection) -> None:
    add_usage(db, "openai", "gpt-4o", first=True, ok=True, attempts=10_000, inp=500, out=200)
    doc = savings(db, Config())
    row = one(doc, "gpt-4o")
    assert row["requests_succeeded"] == 10_000
    assert (row["input_tokens"], row["output_tokens"]) == (5_000_000, 2_000_000)
    assert row["realtime_cost_usd"] == 32.50
    assert row["batch_cost_usd"] == 16.25
    assert row["saved_usd"] == 16.25
    assert row["saved_pct"] == 50.0
    assert row["resubmission_cost_usd"] == 0.0
    assert row["first_pass_success_rate"] == 1.0
    assert row["price_known"] is True
    assert row["warning"] is None
    assert doc["total"] == {
        "batch_cost_usd": 16.25,
        "realtime_cost_usd": 32.50,
        "saved_usd": 16.25,
        "saved_pct": 50.0,
        "resubmission_cost_usd": 0.0,
        "realtime_lane_spent_usd": 0.0,
        "requests_succeeded": 10_000,
        "first_pass_success_rate": 1.0,
        "complete": True,
    }
    assert doc["prices_as_of"] == shipped_table().as_of


def test_resubmissions_reduce_the_saving_by_exactly_their_cost(tmp_path: Path) -> None:
    with Store(tmp_path / "clean") as clean:
        add_usage(clean.db, "openai", "gpt-4o", first=True, ok=True, attempts=10_000, inp=500, out=200)
        baseline = one(savings(clean.db, Config()), "gpt-4o")
    with Store(tmp_path / "retried") as retried:
        # 40% fail once having spent their tokens, and succeed on the second attempt
        add_usage(retried.db, "openai", "gpt-4o", first=True, ok=True, attempts=6_000, inp=500, out=200)
        add_usage(retried.db, "openai", "gpt-4o", first=True, ok=False, attempts=4_000, inp=500, out=200)
        add_usage(retried.db, "openai", "gpt-4o", first=False, ok=True, attempts=4_000, inp=500, out=200)
        row = one(savings(retried.db, Config()), "gpt-4o")
    assert row["requests_succeeded"] == 10_000
    assert row["realtime_cost_usd"] == 32.50  # the successful work is the same
    assert row["batch_cost_usd"] == 22.75  # 14,000 attempts x $0.001625
    assert row["resubmission_cost_usd"] == 6.50  # 4,000 failed attempts x $0.001625
    assert row["saved_usd"] == 9.75
    assert row["saved_usd"] == pytest.approx(baseline["saved_usd"] - row["resubmission_cost_usd"], abs=1e-9)
    assert row["saved_pct"] == 30.0
    assert row["first_pass_success_rate"] == 0.6
    assert row["break_even_first_pass_rate"] == 0.5
    assert row["warning"] is None  # 60% is above the 50% break-even


def test_first_pass_below_break_even_warns(db: sqlite3.Connection) -> None:
    add_usage(db, "openai", "gpt-4o", first=True, ok=True, attempts=4_500, inp=500, out=200)
    add_usage(db, "openai", "gpt-4o", first=True, ok=False, attempts=5_500, inp=500, out=200)
    add_usage(db, "openai", "gpt-4o", first=False, ok=True, attempts=5_500, inp=500, out=200)
    row = one(savings(db, Config()), "gpt-4o")
    assert row["saved_usd"] == pytest.approx(32.50 - 15_500 * 0.001625, abs=1e-6)
    assert row["saved_usd"] > 0
    assert row["first_pass_success_rate"] == 0.45
    assert row["warning"] is not None
    assert "first-pass success 45%" in row["warning"] and "break-even 50%" in row["warning"]


def test_no_net_saving_warns(db: sqlite3.Connection) -> None:
    # every request fails once with its tokens spent: batch pays 2 x half price = real time
    add_usage(db, "openai", "gpt-4o", first=True, ok=False, attempts=1_000, inp=500, out=200)
    add_usage(db, "openai", "gpt-4o", first=False, ok=True, attempts=1_000, inp=500, out=200)
    row = one(savings(db, Config()), "gpt-4o")
    assert row["batch_cost_usd"] == row["realtime_cost_usd"] == 3.25
    assert row["saved_usd"] == 0.0
    assert row["warning"] is not None and row["warning"].startswith("no net saving")
    assert "$1.62" in row["warning"]  # the failed attempts' cost


def test_free_failures_do_not_warn(db: sqlite3.Connection) -> None:
    # 40% first-pass success, but failures spent no tokens (e.g. expired): the discount is kept
    add_usage(db, "openai", "gpt-4o", first=True, ok=True, attempts=400, inp=500, out=200)
    add_usage(db, "openai", "gpt-4o", first=True, ok=False, attempts=600)
    add_usage(db, "openai", "gpt-4o", first=False, ok=True, attempts=600, inp=500, out=200)
    row = one(savings(db, Config()), "gpt-4o")
    assert row["saved_pct"] == 50.0
    assert row["break_even_first_pass_rate"] == 0.0
    assert row["warning"] is None


def test_break_even_rate_formula() -> None:
    from decimal import Decimal

    assert break_even_first_pass_rate(Decimal("0.5"), Decimal(1)) == Decimal("0.5")
    assert break_even_first_pass_rate(Decimal("0.5"), Decimal(0)) == 0
    # failures half as costly: p = 0.25 / (0.5 + 0.25)
    assert break_even_first_pass_rate(Decimal("0.5"), Decimal("0.5")) == Decimal(1) / 3


def test_cached_tokens_openai_and_anthropic(db: sqlite3.Connection) -> None:
    # gpt-4o-mini: 1M plain input at $0.15, 2M cached at $0.075, 0.5M output at $0.60
    add_usage(db, "openai", "gpt-4o-mini", first=True, ok=True, attempts=1, inp=1_000_000, cached=2_000_000, out=500_000)
    # claude-sonnet-4: 1M input $3.00, 1M cache write $3.75, 10M cache read $0.30, 0.2M output $15
    add_usage(
        db, "anthropic", "claude-sonnet-4-20250514", first=True, ok=True, attempts=1,
        inp=1_000_000, write=1_000_000, cached=10_000_000, out=200_000,
    )
    doc = savings(db, Config())
    mini = one(doc, "gpt-4o-mini")
    assert mini["cached_input_tokens"] == 2_000_000
    assert mini["realtime_cost_usd"] == 0.60  # 0.15 + 0.15 + 0.30
    assert mini["batch_cost_usd"] == 0.30
    sonnet = one(doc, "claude-sonnet-4-20250514")
    assert (sonnet["cache_creation_input_tokens"], sonnet["cached_input_tokens"]) == (1_000_000, 10_000_000)
    assert sonnet["realtime_cost_usd"] == 12.75  # 3.00 + 3.75 + 3.00 + 3.00
    assert sonnet["batch_cost_usd"] == 6.375
    assert doc["total"]["realtime_cost_usd"] == 13.35
    assert doc["total"]["saved_usd"] == pytest.approx(6.675, abs=1e-9)


def test_unknown_model_is_unknown_not_zero(db: sqlite3.Connection) -> None:
    add_usage(db, "openai", "gpt-4o", first=True, ok=True, attempts=10_000, inp=500, out=200)
    add_usage(db, "openai", "mystery-model-1", first=True, ok=True, attempts=10, inp=500, out=200)
    doc = savings(db, Config())
    row = one(doc, "mystery-model-1")
    assert row["price_known"] is False and row["family"] is None
    for key in ("batch_cost_usd", "realtime_cost_usd", "resubmission_cost_usd", "saved_usd", "saved_pct"):
        assert row[key] is None, key
    assert row["input_tokens"] == 5_000  # usage is still shown
    assert doc["total"]["complete"] is False
    assert doc["total"]["realtime_cost_usd"] == 32.50  # the priced part


def test_only_unknown_models_give_null_totals(db: sqlite3.Connection) -> None:
    add_usage(db, "anthropic", "claude-2.1", first=True, ok=True, attempts=5, inp=100, out=10)
    total = savings(db, Config())["total"]
    assert total["complete"] is False
    assert total["batch_cost_usd"] is None and total["saved_usd"] is None


def test_dated_ids_belong_to_their_family(db: sqlite3.Connection) -> None:
    add_usage(db, "openai", "gpt-4o-mini-2024-07-18", first=True, ok=True, attempts=1_000, inp=1_000, out=1_000)
    add_usage(db, "openai", "gpt-4o-2024-08-06", first=True, ok=True, attempts=1_000, inp=1_000, out=1_000)
    doc = savings(db, Config())
    mini = one(doc, "gpt-4o-mini-2024-07-18")
    assert mini["family"] == "gpt-4o-mini"
    assert mini["realtime_cost_usd"] == 0.75  # 1M x 0.15 + 1M x 0.60, not gpt-4o's 12.50
    big = one(doc, "gpt-4o-2024-08-06")
    assert big["family"] == "gpt-4o" and big["realtime_cost_usd"] == 12.50


def test_config_price_override(db: sqlite3.Connection) -> None:
    add_usage(db, "openai", "gpt-4o", first=True, ok=True, attempts=10_000, inp=500, out=200)
    add_usage(db, "openai", "my-finetune", first=True, ok=True, attempts=1_000, inp=1_000, out=1_000)
    config = parse_config(
        {
            "prices": {
                "openai": {
                    "batch_discount": 0.25,
                    "gpt-4o": {"input": 5.0, "output": 20},
                    "my-finetune": {"input": 1.0, "output": 2.0},
                }
            }
        }
    )
    doc = savings(db, config)
    row = one(doc, "gpt-4o")
    assert row["realtime_cost_usd"] == 65.00
    assert row["batch_cost_usd"] == 48.75  # 25% off
    assert row["saved_pct"] == 25.0
    added = one(doc, "my-finetune")
    assert added["price_known"] is True and added["realtime_cost_usd"] == 3.0
    assert doc["total"]["complete"] is True


def test_empty_store(db: sqlite3.Connection) -> None:
    doc = savings(db, Config())
    assert doc["by_model"] == []
    assert doc["total"]["batch_cost_usd"] == 0.0 and doc["total"]["saved_pct"] is None
    assert doc["total"]["complete"] is True and doc["total"]["first_pass_success_rate"] is None


def test_reads_the_rollup_not_attempts(db: sqlite3.Connection) -> None:
    """Attempts without rollup rows are invisible: proof the figures come from the rollup."""
    db.execute("INSERT INTO buffers (provider, endpoint, model) VALUES ('openai', '/v1/chat/completions', 'gpt-4o')")
    db.execute(
        "INSERT INTO batches (submission_uid, provider, buffer_id, endpoint, model, status, total, created_at)"
        " VALUES ('u1', 'openai', 1, '/v1/chat/completions', 'gpt-4o', 'completed', 1, 0)"
    )
    db.execute(
        "INSERT INTO requests (provider, custom_id, buffer_id, line, bytes, enqueued_at, state)"
        " VALUES ('openai', 'r1', 1, '{}', 3, 0, 'succeeded')"
    )
    db.execute(
        "INSERT INTO attempts (request_id, batch_id, number, outcome, ended_at, input_tokens, output_tokens)"
        " VALUES (1, 1, 1, 'succeeded', 1, 1000000, 1000000)"
    )
    assert savings(db, Config())["by_model"] == []


# -- in-flight estimate ---------------------------------------------------------------


def _buffer(db: sqlite3.Connection, model: str, queued: int = 0, size: int = 0, provider: str = "openai") -> int:
    cur = db.execute(
        "INSERT INTO buffers (provider, endpoint, model, queued, queued_bytes) VALUES (?, '/v1/chat/completions', ?, ?, ?)",
        (provider, model, queued, size),
    )
    return int(cur.lastrowid)


def _batch(db: sqlite3.Connection, buffer_id: int, model: str, total: int, size: int, status: str, ingested: float | None) -> None:
    db.execute(
        "INSERT INTO batches (submission_uid, provider, buffer_id, endpoint, model, status, total, bytes, created_at,"
        " ingested_at) VALUES (?, 'openai', ?, '/v1/chat/completions', ?, ?, ?, ?, 0, ?)",
        (f"uid-{model}-{status}-{ingested}", buffer_id, model, status, total, size, ingested),
    )


def test_in_flight_estimate(db: sqlite3.Connection) -> None:
    # queued: 100 gpt-4o requests, 400,000 bytes -> 100,000 input tokens; observed mean output 200
    add_usage(db, "openai", "gpt-4o", first=True, ok=True, attempts=10, inp=500, out=200)
    add_usage(db, "openai", "gpt-4o", first=True, ok=False, attempts=10, inp=500, out=5_000)  # failures: not in the mean
    _buffer(db, "gpt-4o", queued=100, size=400_000)
    # in flight: 1,000 gpt-4o-mini requests, 2,000,000 bytes -> 500,000 input; no history -> 256 output each
    mini = _buffer(db, "gpt-4o-mini")
    _batch(db, mini, "gpt-4o-mini", 1_000, 2_000_000, "in_progress", None)
    _batch(db, mini, "gpt-4o-mini", 9_999, 9_999_999, "completed", 123.0)  # ingested: in the savings already
    _batch(db, mini, "gpt-4o-mini", 9_999, 9_999_999, "failed", None)  # rejected by the provider: never billed
    est = in_flight_estimate(db, Config())
    assert est["estimate"] is True and est["complete"] is True
    # queued: (100,000 x 2.50 + 20,000 x 10.00) / 1M / 2 = 0.225
    assert est["queued_usd"] == 0.225
    # in flight: (500,000 x 0.15 + 256,000 x 0.60) / 1M / 2 = 0.1143
    assert est["in_flight_usd"] == 0.1143
    assert est["usd"] == est["in_flight_usd"]  # in flight means submitted; queued work is apart
    assert est["total_usd"] == pytest.approx(0.3393, abs=1e-9)
    assert "bytes/4" in est["basis"]  # these buffers have no sums from enqueue: the old rule, and it says so
    by = {(r["stage"], r["model"]): r for r in est["by_model"]}
    assert by[("queued", "gpt-4o")]["output_tokens"] == 20_000
    assert by[("in_flight", "gpt-4o-mini")]["input_tokens"] == 500_000


def test_in_flight_unknown_model_is_incomplete(db: sqlite3.Connection) -> None:
    _buffer(db, "gpt-4o", queued=100, size=400_000)
    _buffer(db, "secret-model", queued=5, size=1_000)
    est = in_flight_estimate(db, Config())
    assert est["complete"] is False
    assert est["queued_usd"] == pytest.approx((100_000 * 2.5 + 25_600 * 10) / 1e6 / 2, abs=1e-6)
    assert est["usd"] == est["in_flight_usd"] == 0.0


def test_in_flight_nothing(db: sqlite3.Connection) -> None:
    est = in_flight_estimate(db, Config())
    assert est["usd"] == 0.0 and est["complete"] is True and est["by_model"] == []
