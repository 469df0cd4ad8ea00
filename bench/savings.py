"""Savings totals over a million stored results, against a plain scan of the same table.

Builds a batchtop store with 1,000,000 `attempts` rows (950,000 requests, 50,000 of
them retried after a failed first attempt, over three models and two providers) and
the matching `usage_rollup` rows, as the engine keeps them. Then times:
- `savings(db, config)` (reads the rollup): target < 200 ms;
- `SELECT sum(input_tokens), sum(output_tokens) FROM attempts` (what deriving the
  figures from the results themselves would cost, at the least);
- for information: `in_flight_estimate` and the budget's month-to-date spend (cold,
  then again in the same process, where ingested batches are cached).

    python bench/savings.py [--attempts 1000000] [--runs 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import best_of, timed, verdict  # noqa: E402

from batchtop.config import Config  # noqa: E402
from batchtop.pricing.budget import spent  # noqa: E402
from batchtop.pricing.savings import in_flight_estimate, savings  # noqa: E402
from batchtop.pricing.table import price_table  # noqa: E402
from batchtop.store import Store  # noqa: E402

TARGET_S = 0.200
PER_BATCH = 50_000
MODELS = [("openai", "gpt-4o-mini-2024-07-18"), ("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-20250514")]


def build(store: Store, attempts: int, now: float) -> None:
    """Fill the store in SQL (recursive CTEs): buffers, batches, requests, attempts, rollup."""
    retries = min(attempts // 20, PER_BATCH)  # 5% of requests retried, all from batch 1
    requests = attempts - retries
    batches = -(-attempts // PER_BATCH)
    db = store.db
    db.execute("BEGIN")
    for provider, model in MODELS:
        endpoint = "/v1/messages" if provider == "anthropic" else "/v1/chat/completions"
        db.execute("INSERT INTO buffers (provider, endpoint, model) VALUES (?, ?, ?)", (provider, endpoint, model))
    for b in range(1, batches + 1):
        # the last batch holds the retries of batch 1's requests, so it has batch 1's model
        m = 0 if b == batches else (b - 1) % len(MODELS)
        provider, model = MODELS[m]
        db.execute(
            "INSERT INTO batches (submission_uid, provider, buffer_id, endpoint, model, status, total, created_at,"
            " ended_at, ingested_at) VALUES (?, ?, ?, '/v1/chat/completions', ?, 'completed', ?, ?, ?, ?)",
            (f"u{b}", provider, m + 1, model, PER_BATCH, now - 3600, now - 600, now - 600),
        )
    # attempt k (1-based) is in batch (k-1) // PER_BATCH + 1; requests take the provider of their first batch
    db.execute(
        "INSERT INTO requests (id, provider, custom_id, buffer_id, line, bytes, enqueued_at, state, attempts)"
        " WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < :n)"
        " SELECT i, b.provider, 'r' || i, b.buffer_id, '{}', 3, :t, 'succeeded', 1 + (i <= :retries)"
        " FROM c JOIN batches AS b ON b.id = (i - 1) / :per + 1",
        {"n": requests, "t": now - 7200, "retries": retries, "per": PER_BATCH},
    )
    # first attempts: the first `retries` requests fail (tokens spent), the rest succeed
    db.execute(
        "INSERT INTO attempts (request_id, batch_id, number, outcome, ended_at, input_tokens, cached_input_tokens,"
        " cache_creation_input_tokens, output_tokens)"
        " WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < :n)"
        " SELECT i, (i - 1) / :per + 1, 1, CASE WHEN i <= :retries THEN 'failed' ELSE 'succeeded' END, :t,"
        " 300 + i % 500, CASE WHEN i % 3 = 0 THEN 128 ELSE 0 END, CASE WHEN i % 7 = 0 THEN 64 ELSE 0 END,"
        " 100 + i % 200 FROM c",
        {"n": requests, "per": PER_BATCH, "retries": retries, "t": now - 600},
    )
    # second attempts of the retried requests, which succeed, in the last batch
    db.execute(
        "INSERT INTO attempts (request_id, batch_id, number, outcome, ended_at, input_tokens, output_tokens)"
        " WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < :n)"
        " SELECT i, (:requests + i - 1) / :per + 1, 2, 'succeeded', :t, 300 + i % 500, 100 + i % 200 FROM c",
        {"n": retries, "requests": requests, "per": PER_BATCH, "t": now - 600},
    )
    db.execute(
        "INSERT INTO usage_rollup (provider, model, first_attempt, succeeded, attempts, input_tokens,"
        " cached_input_tokens, cache_creation_input_tokens, output_tokens)"
        " SELECT b.provider, b.model, a.number = 1, a.outcome = 'succeeded', count(*), sum(a.input_tokens),"
        " sum(a.cached_input_tokens), sum(a.cache_creation_input_tokens), sum(a.output_tokens)"
        " FROM attempts AS a JOIN batches AS b ON b.id = a.batch_id GROUP BY 1, 2, 3, 4"
    )
    db.execute("COMMIT")
    db.execute("ANALYZE")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attempts", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    config = Config()
    now = time.time()
    with tempfile.TemporaryDirectory() as d, Store(Path(d) / "data") as store:
        build_s, _ = timed(lambda: build(store, args.attempts, now))
        db = store.db
        (stored,) = db.execute("SELECT count(*) FROM attempts").fetchone()
        rollup_rows = db.execute("SELECT count(*) FROM usage_rollup").fetchone()[0]
        first_s, doc = timed(lambda: savings(db, config))
        ours = best_of(args.runs, lambda: timed(lambda: savings(db, config))[0])
        scan_sql = "SELECT sum(input_tokens), sum(output_tokens) FROM attempts"
        raw = best_of(args.runs, lambda: timed(lambda: db.execute(scan_sql).fetchone())[0])
        flight = best_of(args.runs, lambda: timed(lambda: in_flight_estimate(db, config))[0])
        table = price_table(config)
        month_cold, _ = timed(lambda: spent(db, table, now))
        month_warm = best_of(args.runs, lambda: timed(lambda: spent(db, table, now))[0])

        inp, out = db.execute(scan_sql).fetchone()
        assert sum(r["input_tokens"] for r in doc["by_model"]) == inp, "rollup and attempts disagree"
        assert sum(r["output_tokens"] for r in doc["by_model"]) == out, "rollup and attempts disagree"
        total = doc["total"]
        print(f"store: {stored:,} attempts rows, {rollup_rows} usage_rollup rows (built in {build_s:.1f} s)")
        print(
            f"savings: batch ${total['batch_cost_usd']:,.2f}  real-time ${total['realtime_cost_usd']:,.2f}  "
            f"saved ${total['saved_usd']:,.2f} ({total['saved_pct']:.1f}%)  first pass {total['first_pass_success_rate']:.0%}"
        )
        print(f"savings(db, config), first call (loads prices.toml): {first_s * 1000:8.2f} ms")
        print(f"savings(db, config), best of {args.runs}:                  {ours * 1000:8.2f} ms")
        print(f"SELECT sum(input_tokens), sum(output_tokens) FROM attempts: {raw * 1000:8.2f} ms")
        print(f"ratio savings / scan: {ours / raw:.4f} ({raw / ours:,.0f}x faster)")
        print(f"target savings < {TARGET_S * 1000:.0f} ms: {ours * 1000:.2f} ms  {verdict(ours, TARGET_S, higher_is_better=False)}")
        print(f"(info) in_flight_estimate(db, config):                   {flight * 1000:8.2f} ms")
        print(f"(info) budget month-to-date spend, {stored:,} attempts, cold: {month_cold * 1000:8.2f} ms")
        print(f"(info) budget month-to-date spend, same process again:     {month_warm * 1000:8.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
