"""Anthropic's two cache-write kinds: 5-minute writes at 1.25x input, 1-hour writes at 2x.

The usage reports them apart (`cache_creation.ephemeral_5m_input_tokens` and
`ephemeral_1h_input_tokens`); `cache_creation_input_tokens` is their sum. Both are
batch-discounted. These tests go through the real path: the SDK's result line, the
adapter's parsing, ingest into a real SQLite store, the rollup and the savings view.
"""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from pathlib import Path

from batchtop.config import Config
from batchtop.engine.tick import Engine
from batchtop.pricing.budget import spent
from batchtop.pricing.savings import savings
from batchtop.pricing.table import shipped_table
from batchtop.providers.anthropic_batches import parse_result_line
from batchtop.sim import Simulator
from batchtop.store import Store

from engine_helpers import (  # noqa: F401
    all_settled,
    anthropic_lines,
    close,
    config,
    drive,
    enqueue,
    sim,
)

MILLION = Decimal(1_000_000)


def _line(usage: dict) -> str:
    message = {
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": None, "usage": usage,
    }
    return json.dumps({"custom_id": "c1", "result": {"type": "succeeded", "message": message}})


MEASURED = {
    "input_tokens": 2_860,
    "cache_creation_input_tokens": 26_241,
    "cache_read_input_tokens": 0,
    "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 26_241},
    "output_tokens": 16_000,
    "service_tier": "batch",
}


def test_measured_line_costs_what_anthropic_bills() -> None:
    """Measured: this shape showed $0.1735 at batch price (1-hour writes priced as 5-minute); right is $0.2030."""
    r = parse_result_line(_line(MEASURED))
    assert (r.cache_creation_input_tokens, r.cache_creation_1h_input_tokens) == (26_241, 26_241)
    price = shipped_table().price("anthropic", "claude-sonnet-4-5-20250929")
    assert price is not None
    from batchtop.pricing.table import Tokens

    tokens = Tokens(r.input_tokens, r.cached_input_tokens, r.cache_creation_input_tokens, r.output_tokens,
                    r.cache_creation_1h_input_tokens)
    hand = (2_860 * Decimal(3) + 26_241 * Decimal(6) + 16_000 * Decimal(15)) / MILLION / 2
    assert price.batch_cost(tokens) == hand
    assert round(hand, 4) == Decimal("0.2030")


def test_either_half_of_the_usage_is_enough() -> None:
    only_split = {"input_tokens": 1, "output_tokens": 1,
                  "cache_creation": {"ephemeral_5m_input_tokens": 30, "ephemeral_1h_input_tokens": 12}}
    r = parse_result_line(_line(only_split))
    assert (r.cache_creation_input_tokens, r.cache_creation_1h_input_tokens) == (42, 12)
    only_sum = {"input_tokens": 1, "output_tokens": 1, "cache_creation_input_tokens": 42}
    r = parse_result_line(_line(only_sum))
    assert (r.cache_creation_input_tokens, r.cache_creation_1h_input_tokens) == (42, 0)
    nonsense = {"input_tokens": "many", "output_tokens": -3, "cache_creation": "x", "cache_creation_input_tokens": None}
    r = parse_result_line(_line(nonsense))
    assert (r.input_tokens, r.output_tokens, r.cache_creation_input_tokens) == (0, 0, 0)


def test_the_simulator_reports_both_write_kinds_and_they_are_priced_apart(sim: Simulator, data_dir: Path) -> None:  # noqa: F811
    sim.config.cache_write_share = 0.4
    sim.config.cache_write_1h_share = 0.5
    lines = anthropic_lines(6, model="claude-sonnet-4-5-20250929")
    for line in lines:
        line["params"]["system"] = "s" * 4_000
    enqueue(data_dir, lines)
    with Store(data_dir) as store:
        engine = Engine(store, config())
        drive(engine, all_settled(store))
        close(engine)
        i, c, w, w1h, o = store.db.execute(
            "SELECT sum(input_tokens), sum(cached_input_tokens), sum(cache_creation_input_tokens),"
            " sum(cache_creation_1h_input_tokens), sum(output_tokens) FROM attempts"
        ).fetchone()
        assert 0 < w1h < w  # both kinds came back and were stored
        for response, line_1h in store.db.execute("SELECT response, cache_creation_1h_input_tokens FROM attempts"):
            usage = json.loads(response)["result"]["message"]["usage"]
            split = usage["cache_creation"]
            assert split["ephemeral_1h_input_tokens"] == line_1h > 0
            assert split["ephemeral_5m_input_tokens"] + line_1h == usage["cache_creation_input_tokens"]
        rolled = store.db.execute(
            "SELECT sum(cache_creation_input_tokens), sum(cache_creation_1h_input_tokens) FROM usage_rollup"
        ).fetchone()
        assert rolled == (w, w1h)
        doc = savings(store.db, Config())
        (row,) = doc["by_model"]
        assert (row["cache_creation_input_tokens"], row["cache_creation_1h_input_tokens"]) == (w, w1h)
        realtime = (i * Decimal(3) + c * Decimal("0.30") + (w - w1h) * Decimal("3.75") + w1h * Decimal(6)
                    + o * Decimal(15)) / MILLION
        assert abs(Decimal(str(row["realtime_cost_usd"])) - realtime) <= Decimal("0.000001")
        assert abs(Decimal(str(row["batch_cost_usd"])) - realtime / 2) <= Decimal("0.000001")
        (ended,) = store.db.execute("SELECT max(ended_at) FROM attempts").fetchone()
        today, _ = spent(store.db, shipped_table(), ended)
        assert abs(today - realtime / 2) <= Decimal("0.000001")  # the budget prices them alike


def test_a_store_from_before_reads_its_writes_as_5_minute_ones(tmp_path: Path) -> None:
    with Store(tmp_path / "d") as store:
        store.db.execute(
            "INSERT INTO usage_rollup (provider, model, first_attempt, succeeded, attempts, cache_creation_input_tokens)"
            " VALUES ('anthropic', 'claude-sonnet-4-5', 1, 1, 1, 1000000)"
        )
        (row,) = savings(store.db, Config())["by_model"]
    assert row["cache_creation_1h_input_tokens"] == 0
    assert row["realtime_cost_usd"] == 3.75


def test_the_migration_adds_the_column_to_both_tables(tmp_path: Path) -> None:
    with Store(tmp_path / "d"):
        pass
    db = sqlite3.connect(tmp_path / "d" / "batchtop.sqlite3")
    for table in ("attempts", "usage_rollup"):
        columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        assert "cache_creation_1h_input_tokens" in columns
    db.close()
