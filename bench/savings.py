"""Savings totals over a million stored results, against a plain scan of the same table.

Builds a batchtop store with 1,000,000 `attempts` rows (950,000 requests, 50,000 of
them retried after a failed first attempt, over three models and two providers) and
the matching `usage_rollup` rows, as the engine keeps them. Then times:
- `savings(db, config)` (reads the rollup): target < 200 ms;
- `SELECT sum(input_tokens), sum(output_tokens) FROM attempts` (what deriving the
  figures from the results themselves would cost, at the least);
- `report.document.build` (`batchtop report`: reads `usage_daily` / `usage_hourly` and
  the ended batches): target < 200 ms, beside the plain scan a report without the
  rollups would run (attempts joined to batches, summed per hour x model x split);
- the same report, all of history and from an hour that is not midnight, after a
  year of rows for every hour x model x split (the rollups' worst case: 8,760 hours
  x 3 models x 4 splits);
- for information: `in_flight_estimate` and the budget's month-to-date spend (cold,
  then again in the same process, where ingested batches are cached).

The batches end one after another over the last `--days` days.

    python bench/savings.py [--attempts 1000000] [--runs 5] [--days 30]
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
from batchtop.report import document  # noqa: E402
from batchtop.store import (
    Store,  # noqa: E402
    report_queries,  # noqa: E402
)

TARGET_S = 0.200
PER_BATCH = 50_000
MODELS = [("openai", "gpt-4o-mini-2024-07-18"), ("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-20250514")]


def build(store: Store, attempts: int, now: float, days: float = 30.0) -> None:
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
        ended = now - 600 - (batches - b) * days * 86400 / batches
        db.execute(
            "INSERT INTO batches (submission_uid, provider, buffer_id, endpoint, model, provider_batch_id, status, total,"
            " created_at, provider_created_at, ended_at, ingested_at)"
            " VALUES (?, ?, ?, '/v1/chat/completions', ?, ?, 'completed', ?, ?, ?, ?, ?)",
            (f"u{b}", provider, m + 1, model, f"batch_{b}", PER_BATCH, ended - 3600, ended - 3590, ended, ended),
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
    for hour, *row in db.execute(_SCAN).fetchall():  # as ingest keeps them: by the hour the batch ended
        report_queries.add_at(db, hour, [row])
    db.execute("COMMIT")
    db.execute("ANALYZE")


_SCAN = (
    "SELECT CAST(b.ended_at / 3600 AS INTEGER), b.provider, b.model, a.number = 1, a.outcome = 'succeeded', count(*),"
    " sum(a.input_tokens), sum(a.cached_input_tokens), sum(a.cache_creation_input_tokens), sum(a.output_tokens),"
    " sum(a.cache_creation_1h_input_tokens)"
    " FROM attempts AS a JOIN batches AS b ON b.id = a.batch_id GROUP BY 1, 2, 3, 4, 5"
)
"""What a report without the rollup would have to run: every attempt, per hour x model x split."""


def year_of_hours(store: Store, now: float) -> None:
    """Add usage at every hour of the past year for every model and split (tiny token
    counts): the rollups' worst case for a year-long report."""
    first = int(now // 3600) - 8760
    rows = [(p, m, first_attempt, ok, 1, 10, 0, 0, 5, 0) for p, m in MODELS for first_attempt in (0, 1) for ok in (0, 1)]
    with store.transaction() as db:
        for hour in range(first, first + 8760):
            report_queries.add_at(db, hour, rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attempts", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--days", type=float, default=30.0, help="the batches end over this many days")
    args = parser.parse_args()
    config = Config()
    now = time.time()
    with tempfile.TemporaryDirectory() as d, Store(Path(d) / "data") as store:
        build_s, _ = timed(lambda: build(store, args.attempts, now, args.days))
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
        targets = ["gpt-4o-mini", "claude-haiku-4-5"]

        def report() -> dict:
            return document.build(db, config, document.Period(), targets, now=now)

        rep = report()
        assert rep["totals"]["batch_cost_usd"] == total["batch_cost_usd"], "report and --once disagree"
        hourly, daily = (db.execute(f"SELECT count(*) FROM usage_{t}").fetchone()[0] for t in ("hourly", "daily"))
        report_s = best_of(args.runs, lambda: timed(report)[0])
        scan_s = best_of(args.runs, lambda: timed(lambda: db.execute(_SCAN).fetchall())[0])
        print(f"report: {len(rep['by_day'])} days, {daily} usage_daily and {hourly} usage_hourly rows,"
              f" {rep['totals']['batches']} batches")
        print(f"report.document.build (all of history), best of {args.runs}: {report_s * 1000:8.2f} ms")
        print(f"plain scan: attempts JOIN batches per hour x model x split: {scan_s * 1000:8.2f} ms")
        print(f"ratio report / scan: {report_s / scan_s:.4f} ({scan_s / report_s:,.0f}x faster)")
        print(f"target report < {TARGET_S * 1000:.0f} ms: {report_s * 1000:.2f} ms  {verdict(report_s, TARGET_S, higher_is_better=False)}")
        year_of_hours(store, now)
        hourly, daily = (db.execute(f"SELECT count(*) FROM usage_{t}").fetchone()[0] for t in ("hourly", "daily"))
        year_s = best_of(args.runs, lambda: timed(report)[0])
        since = document.Period.rounded(now - 365 * 86400 + 5 * 3600, None)  # partial first day: hours too

        def since_report() -> dict:
            return document.build(db, config, since, targets, now=now)

        since_s = best_of(args.runs, lambda: timed(since_report)[0])
        print(f"after a year at every hour x model x split ({daily:,} usage_daily, {hourly:,} usage_hourly rows):")
        print(f"  report, all of history:       {year_s * 1000:8.2f} ms  {verdict(year_s, TARGET_S, higher_is_better=False)}")
        print(f"  report, --since 365d (hours): {since_s * 1000:8.2f} ms  {verdict(since_s, TARGET_S, higher_is_better=False)}")
        print(f"(info) in_flight_estimate(db, config):                   {flight * 1000:8.2f} ms")
        print(f"(info) budget month-to-date spend, {stored:,} attempts, cold: {month_cold * 1000:8.2f} ms")
        print(f"(info) budget month-to-date spend, same process again:     {month_warm * 1000:8.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
