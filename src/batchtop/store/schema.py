"""The schema as an ordered list of forward migrations.

`PRAGMA user_version` records how many have been applied; opening a store applies the
pending ones in one transaction each. Never edit a released migration: append one.

The model carries the whole life of a request:
- `requests`: what the user enqueued (the native batch line, verbatim) and its state:
  queued -> submitting -> in_flight -> succeeded | failed | cancelled | expired,
  then queued again for a new attempt, or `dead` after max_attempts. (Since
  `_claim_request_ranges` a fresh request skips `submitting`: its batch claims it
  by id range and it goes from `queued` to `in_flight` once the provider has it.)
- `buffers`: one per provider x endpoint x model; requests wait there to be flushed.
  `queued` / `queued_bytes` are kept exact by triggers on `requests` (migration
  `_queue_counters_by_trigger`), in the statement that changes a request's state, so
  the views never count a million rows and no code path can forget them.
- `batches`: one per submission. The row exists (status `submitting`, a local
  `submission_uid`) before any provider call, so a crash can be reconciled.
- `attempts`: one row per submission of a request into a batch, numbered 1..n, with
  its result: outcome, response or error body, token usage.
- Token columns are disjoint billing categories: `input_tokens` is input billed at
  the plain input price (cache reads and writes excluded, whatever the provider's own
  field includes), `cached_input_tokens` cache reads, `cache_creation_input_tokens`
  cache writes (all of them), `output_tokens` output; `cache_creation_1h_input_tokens`
  (v3) is the part of the cache writes made for 1 hour, priced apart.
- `usage_rollup`: token and count sums per provider x model x (first attempt?) x
  (succeeded?) x prompt tier ('' or 'above': a Gemini Pro request over 200k prompt
  tokens, priced at its upper tier), kept in the same transaction as the attempts they
  sum, so the savings view reads a handful of rows instead of re-deriving a million.
- `usage_daily` / `usage_hourly`: the same sums split by the UTC day / hour the
  batch ended in, for the period report.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

Migration = Callable[[sqlite3.Connection], None]


def _script(db: sqlite3.Connection, script: str) -> None:
    """Run DDL statement by statement: `executescript` would COMMIT the migration's
    transaction half-way (it always commits first in Python 3.11)."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _v1_initial(db: sqlite3.Connection) -> None:
    _script(
        db,
        """
        CREATE TABLE buffers (
            id INTEGER PRIMARY KEY,
            provider TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            model TEXT NOT NULL,
            queued INTEGER NOT NULL DEFAULT 0,
            queued_bytes INTEGER NOT NULL DEFAULT 0,
            flush_requested_at REAL,
            held_reason TEXT,
            retry_at REAL,
            UNIQUE (provider, endpoint, model)
        );

        CREATE TABLE batches (
            id INTEGER PRIMARY KEY,
            submission_uid TEXT NOT NULL UNIQUE,
            provider TEXT NOT NULL,
            account TEXT NOT NULL DEFAULT 'default',
            buffer_id INTEGER NOT NULL REFERENCES buffers(id),
            endpoint TEXT NOT NULL,
            model TEXT NOT NULL,
            provider_batch_id TEXT UNIQUE,
            status TEXT NOT NULL,
            total INTEGER NOT NULL,
            succeeded INTEGER NOT NULL DEFAULT 0,
            failed INTEGER NOT NULL DEFAULT 0,
            bytes INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            submitted_at REAL,
            provider_created_at REAL,
            expires_at REAL,
            ended_at REAL,
            ingested_at REAL,
            input_file_id TEXT,
            output_file_id TEXT,
            error_file_id TEXT,
            last_error TEXT
        );
        CREATE INDEX batches_open ON batches (provider, status) WHERE ingested_at IS NULL;

        CREATE TABLE requests (
            id INTEGER PRIMARY KEY,
            provider TEXT NOT NULL,
            custom_id TEXT NOT NULL,
            buffer_id INTEGER NOT NULL REFERENCES buffers(id),
            line TEXT NOT NULL,
            bytes INTEGER NOT NULL,
            enqueued_at REAL NOT NULL,
            deadline REAL,
            state TEXT NOT NULL DEFAULT 'queued',
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT
        );
        -- a custom_id may be reused once its request has ended (succeeded or dead)
        CREATE UNIQUE INDEX requests_live_custom_id ON requests (provider, custom_id)
            WHERE state NOT IN ('succeeded', 'dead');
        CREATE INDEX requests_queued ON requests (buffer_id, id) WHERE state = 'queued';
        CREATE INDEX requests_deadline ON requests (buffer_id, deadline)
            WHERE state = 'queued' AND deadline IS NOT NULL;
        CREATE INDEX requests_state ON requests (state);

        CREATE TABLE attempts (
            id INTEGER PRIMARY KEY,
            request_id INTEGER NOT NULL REFERENCES requests(id),
            batch_id INTEGER NOT NULL REFERENCES batches(id),
            number INTEGER NOT NULL,
            outcome TEXT,
            ended_at REAL,
            response TEXT,
            error TEXT,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            cached_input_tokens INTEGER NOT NULL DEFAULT 0,
            cache_creation_input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            UNIQUE (request_id, number)
        );
        CREATE INDEX attempts_batch ON attempts (batch_id);

        CREATE TABLE usage_rollup (
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            first_attempt INTEGER NOT NULL,
            succeeded INTEGER NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            cached_input_tokens INTEGER NOT NULL DEFAULT 0,
            cache_creation_input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (provider, model, first_attempt, succeeded)
        );

        CREATE TABLE anomalies (
            id INTEGER PRIMARY KEY,
            batch_id INTEGER REFERENCES batches(id),
            kind TEXT NOT NULL,
            detail TEXT NOT NULL,
            created_at REAL NOT NULL
        );

        CREATE TABLE lease (
            name TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            expires_at REAL NOT NULL
        );

        CREATE TABLE engine_state (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        """
    )


def _v2_engine(db: sqlite3.Connection) -> None:
    """What the engine and the views need beyond v1.

    - `batches.cancel_requested_at`: a cancel asked for by any process (CLI, console,
      a viewer); the engine holding the lease carries it out at the provider.
    - `batches.candidates`: JSON list of provider batch ids an `unknown` submission
      could be, shown to the operator who adopts one or resubmits.
    - `batches.polled_at`: when the provider last told us about this batch.
    - `outcome_hourly`: ended attempts and failed ones per hour, kept at ingest, so
      the failure-rate alert never scans the attempts table.
    - `requests_state` goes: every state change paid for it and no query needs it
      (dead letters have their own partial index).
    - `attempts_batch_outcome` finds a batch's failures without reading its successes.
    """
    _script(
        db,
        """
        ALTER TABLE batches ADD COLUMN cancel_requested_at REAL;
        ALTER TABLE batches ADD COLUMN candidates TEXT;
        ALTER TABLE batches ADD COLUMN polled_at REAL;
        CREATE INDEX batches_created ON batches (created_at);
        CREATE TABLE outcome_hourly (
            hour INTEGER PRIMARY KEY,
            attempts INTEGER NOT NULL DEFAULT 0,
            failed INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX attempts_batch_outcome ON attempts (batch_id, outcome);
        CREATE INDEX requests_dead ON requests (id) WHERE state = 'dead';
        CREATE UNIQUE INDEX anomalies_once ON anomalies (batch_id, kind, detail);
        DROP INDEX requests_state
        """,
    )


def _v3_cache_1h_and_enqueue_estimates(db: sqlite3.Connection) -> None:
    """1-hour cache writes, and what the one request estimator said at enqueue.

    - `cache_creation_1h_input_tokens` (attempts, usage_rollup): the part of
      `cache_creation_input_tokens` (still every cache write, the providers' sum)
      that was written to Anthropic's 1-hour cache, billed at 2x input instead of
      1.25x. Rows from before read 0: all 5-minute writes, as they were priced.
    - `buffer_estimates`: per buffer, the sums of the per-request estimate
      (`pricing.estimate`) over every request ever enqueued into it, next to their
      count and bytes, so queued and in-flight work is estimated by the same rules
      as `quote` (max_tokens, image sizes) from counters, never by reading requests.
      `uncapped_outputs` counts the outputs (n per request) with no cap, which the
      estimate prices at the model's observed mean of the day.
    """
    _script(
        db,
        """
        ALTER TABLE attempts ADD COLUMN cache_creation_1h_input_tokens INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE usage_rollup ADD COLUMN cache_creation_1h_input_tokens INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE buffer_estimates (
            buffer_id INTEGER PRIMARY KEY REFERENCES buffers(id),
            requests INTEGER NOT NULL DEFAULT 0,
            bytes INTEGER NOT NULL DEFAULT 0,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            capped_output_tokens INTEGER NOT NULL DEFAULT 0,
            uncapped_outputs INTEGER NOT NULL DEFAULT 0
        )
        """,
    )


def _v4_failure_verdicts(db: sqlite3.Connection) -> None:
    """What the engine needs to tell failures apart.

    - `requests.spared_attempts`: attempts that failed for the account's quota or
      credit, not for the request: they do not count towards `engine.max_attempts`.
    - `batches.lost_at`: when the provider stopped knowing the batch (404); its
      requests wait for the operator's `batchtop resubmit`.
    """
    _script(
        db,
        """
        ALTER TABLE requests ADD COLUMN spared_attempts INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE batches ADD COLUMN lost_at REAL;
        CREATE INDEX batches_lost ON batches (id) WHERE lost_at IS NOT NULL
        """,
    )


PERIOD_ROLLUP_TOKENS = (
    "input_tokens", "cached_input_tokens", "cache_creation_input_tokens", "output_tokens", "cache_creation_1h_input_tokens",
)
"""The token columns of `usage_daily` and `usage_hourly`, in `Tokens` field order: their
DDL, their backfill, the ingest statement and the report's queries are all built from
this one tuple. A token column added to `attempts` and `usage_rollup` by a migration
ordered before `_usage_by_batch_end` joins it here; once that one is released, a new
column needs a migration of its own instead."""


def _usage_by_batch_end(db: sqlite3.Connection) -> None:
    """`usage_daily` and `usage_hourly`: `usage_rollup` split by the UTC day, and hour,
    the batch ended in.

    The period report (`batchtop report`, the console's savings screen) places money in
    a period and on a day by the batch's `ended_at`. Whole days come from `usage_daily`
    (a year is 365 keys per model and split, whatever the traffic); the partial days at
    a period's ends from `usage_hourly`, so a period may start at any whole hour
    (`--since 24h`). Both are backfilled from the attempts already ingested, each at its
    batch's end (or, for a batch with none recorded, the attempt's own), so an upgraded
    store reports its history. `batches_ended` finds a period's batches (counts and
    durations) without reading the others.
    """
    tokens = ", ".join(PERIOD_ROLLUP_TOKENS)
    columns = ",\n".join(f"            {c} INTEGER NOT NULL DEFAULT 0" for c in PERIOD_ROLLUP_TOKENS)
    sums = ", ".join(f"sum(a.{c})" for c in PERIOD_ROLLUP_TOKENS)
    for table, key, seconds in (("usage_daily", "day", 86400), ("usage_hourly", "hour", 3600)):
        _script(
            db,
            f"""
            CREATE TABLE {table} (
                {key} INTEGER NOT NULL,
                provider TEXT NOT NULL,
                model TEXT NOT NULL,
                first_attempt INTEGER NOT NULL,
                succeeded INTEGER NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
{columns},
                PRIMARY KEY ({key}, provider, model, first_attempt, succeeded)
            );
            INSERT INTO {table} ({key}, provider, model, first_attempt, succeeded, attempts, {tokens})
                SELECT CAST(coalesce(b.ended_at, a.ended_at) / {seconds} AS INTEGER), b.provider, b.model,
                       a.number = 1, a.outcome = 'succeeded', count(*), {sums}
                FROM attempts AS a JOIN batches AS b ON b.id = a.batch_id
                WHERE a.outcome IS NOT NULL
                GROUP BY 1, 2, 3, 4, 5
            """,
        )
    db.execute("CREATE INDEX batches_ended ON batches (ended_at) WHERE ended_at IS NOT NULL")


def _v6_status_bounded(db: sqlite3.Connection) -> None:
    """What keeps a status refresh independent of how much the store has done.

    The console reads the status every second and `--once` runs from cron; both
    listed the latest ended batches by sorting every ended batch, counted unknown
    submissions by scanning every batch, and counted every anomaly ever recorded
    (40 ms and 9 ms at 10,000 ended batches, and growing).
    - `batches_ingested` gives the newest ended batches in index order;
    - the partial `batches_unknown` holds only unknown submissions (a handful at most);
    - `counters.anomalies` is the anomaly count, kept by triggers in the same
      transaction as the insert or delete, whoever writes (INSERT OR IGNORE of a
      duplicate fires nothing).
    """
    _script(
        db,
        """
        CREATE INDEX batches_ingested ON batches (ingested_at, id) WHERE ingested_at IS NOT NULL;
        CREATE INDEX batches_unknown ON batches (id) WHERE status = 'unknown';
        CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
        INSERT INTO counters (name, value) SELECT 'anomalies', count(*) FROM anomalies
        """,
    )
    # one statement each: their bodies hold semicolons, which _script splits on
    db.execute(
        "CREATE TRIGGER anomalies_count_insert AFTER INSERT ON anomalies"
        " BEGIN UPDATE counters SET value = value + 1 WHERE name = 'anomalies'; END"
    )
    db.execute(
        "CREATE TRIGGER anomalies_count_delete AFTER DELETE ON anomalies"
        " BEGIN UPDATE counters SET value = value - 1 WHERE name = 'anomalies'; END"
    )
    # `counters.ended_batches`: ingested batches that held requests (the console's
    # "50 of 412 ended"), kept as every change of `ingested_at` happens.
    db.execute(
        "INSERT INTO counters (name, value) SELECT 'ended_batches', count(*) FROM batches"
        " WHERE ingested_at IS NOT NULL AND total > 0"
    )
    for name, event, when, delta in (
        ("insert", "INSERT", "new.ingested_at IS NOT NULL AND new.total > 0", "+ 1"),
        ("delete", "DELETE", "old.ingested_at IS NOT NULL AND old.total > 0", "- 1"),
        ("ended", "UPDATE OF ingested_at, total",
         "(new.ingested_at IS NOT NULL AND new.total > 0) AND NOT (old.ingested_at IS NOT NULL AND old.total > 0)", "+ 1"),
        ("reopened", "UPDATE OF ingested_at, total",
         "(old.ingested_at IS NOT NULL AND old.total > 0) AND NOT (new.ingested_at IS NOT NULL AND new.total > 0)", "- 1"),
    ):
        db.execute(
            f"CREATE TRIGGER ended_batches_{name} AFTER {event} ON batches WHEN {when}"
            f" BEGIN UPDATE counters SET value = value {delta} WHERE name = 'ended_batches'; END"
        )


def _v7_bounded_ingest_and_lease_fencing(db: sqlite3.Connection) -> None:
    """Result ingest bounded per tick, and the lease fenced across hosts.

    - `batches.ingest_file` / `ingest_offset` / `ingest_lines`: how far the result
      files were stored (file 0 output, 1 errors; bytes of it; lines of all), kept in
      the same transaction as the results, so an ingest stopped by its budget or the
      stop signal resumes there next tick.
    - `batches.ingest_failures` / `ingest_retry_at`: failed ingests in a row and when
      to try again; after a few the batch is `quarantined_at` (an alert) and the
      engine stops reading its files.
    - `lease.token` and `lease_tokens`: the fencing token, one more on every takeover
      and never reused (it survives a release in `lease_tokens`); every engine write
      checks it in its own transaction, so a holder that lost the lease (a pause, a
      clock ahead elsewhere) cannot change a submission any more. `lease.ttl` is the
      holder's own ttl, so another host knows how long to watch for its renewal.
    """
    _script(
        db,
        """
        ALTER TABLE batches ADD COLUMN ingest_file INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE batches ADD COLUMN ingest_offset INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE batches ADD COLUMN ingest_lines INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE batches ADD COLUMN ingest_failures INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE batches ADD COLUMN ingest_retry_at REAL;
        ALTER TABLE batches ADD COLUMN quarantined_at REAL;
        CREATE INDEX batches_quarantined ON batches (quarantined_at) WHERE quarantined_at IS NOT NULL;
        ALTER TABLE lease ADD COLUMN token INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE lease ADD COLUMN ttl REAL;
        CREATE TABLE lease_tokens (
            name TEXT PRIMARY KEY,
            token INTEGER NOT NULL
        )
        """,
    )


def _events_and_webhook_deliveries(db: sqlite3.Connection) -> None:
    """The engine's event log and where each webhook receiver is in it.

    - `events`: one row per change worth telling the outside (a batch submitted, seen
      ended, ingested; requests queued again or dead; an alert raised; a cancel carried
      out), written in the same transaction as the change, so the log and the store
      never disagree. AUTOINCREMENT: an id is never reused, even after old rows are
      pruned, because delivery cursors and `batchtop events --after` rely on it.
      `detail` holds the kind's extra fields (a JSON object or NULL).
    - `webhook_state`: per receiver (keyed by a hash of its URL, which may carry a
      token and is never stored), the cursor (every event id up to it was delivered or
      given up), the tries of the event after it, the backoff, and what to report.
    """
    _script(
        db,
        """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            kind TEXT NOT NULL,
            provider TEXT,
            batch_id TEXT,
            counts TEXT NOT NULL,
            detail TEXT
        );
        CREATE INDEX events_at ON events (at);
        CREATE TABLE webhook_state (
            webhook TEXT PRIMARY KEY,
            label TEXT NOT NULL,
            cursor INTEGER NOT NULL,
            head INTEGER,
            tries INTEGER NOT NULL DEFAULT 0,
            failures INTEGER NOT NULL DEFAULT 0,
            next_at REAL,
            last_ok_at REAL,
            last_error TEXT,
            last_error_at REAL,
            last_status INTEGER,
            rejected INTEGER NOT NULL DEFAULT 0,
            rejected_at REAL,
            rejected_error TEXT
        ) WITHOUT ROWID
        """,
    )


def _queue_counters_by_trigger(db: sqlite3.Connection) -> None:
    """`buffers.queued` / `queued_bytes` kept by triggers on `requests`, whoever writes.

    They were adjusted by hand next to every change of a request's state (enqueue,
    plan, undo, settle, resubmit: five UPDATEs in four modules), and a new path that
    forgot would make a buffer's line and its flush decision wrong for good. A request
    counts where it is `queued`: entering that state adds its bytes to its buffer,
    leaving it takes them away, in the same statement and so the same transaction.
    The counters are recomputed once here, so a store that had drifted starts exact.
    """
    db.execute(
        "UPDATE buffers SET queued = coalesce((SELECT count(*) FROM requests r WHERE r.buffer_id = buffers.id"
        " AND r.state = 'queued'), 0), queued_bytes = coalesce((SELECT sum(r.bytes) FROM requests r"
        " WHERE r.buffer_id = buffers.id AND r.state = 'queued'), 0)"
    )
    add = "UPDATE buffers SET queued = queued + 1, queued_bytes = queued_bytes + new.bytes WHERE id = new.buffer_id"
    take = "UPDATE buffers SET queued = queued - 1, queued_bytes = queued_bytes - old.bytes WHERE id = old.buffer_id"
    same = "new.buffer_id = old.buffer_id AND new.bytes = old.bytes"
    for name, event, when, body in (
        ("enqueued", "INSERT", "new.state = 'queued'", add),
        ("deleted", "DELETE", "old.state = 'queued'", take),
        ("taken", "UPDATE OF state, buffer_id, bytes",
         f"old.state = 'queued' AND NOT (new.state = 'queued' AND {same})", take),
        ("requeued", "UPDATE OF state, buffer_id, bytes",
         f"new.state = 'queued' AND NOT (old.state = 'queued' AND {same})", add),
    ):
        db.execute(f"CREATE TRIGGER requests_queue_{name} AFTER {event} ON requests WHEN {when} BEGIN {body}; END")


def _tiers_lanes_and_realtime_calls(db: sqlite3.Connection) -> None:
    """Tiers, lanes and the real-time lane's calls (issue 15).

    - `requests.tier`: the priority tier it was enqueued with (`critical`, `high`,
      `normal`, `low`) or NULL; its deadline stays in `requests.deadline`.
    - `realtime_calls`: one row per request sent through a synchronous lane
      (`realtime` at list price, `flex` at batch price), written BEFORE the call, in
      the same transaction that takes the request out of its buffer (state
      `realtime`), and completed after it: a row without an outcome left by a dead
      engine may have been answered, so it is never sent again on its own. The
      response column holds a result line in the provider's batch shape, so
      `results` and the views read it like a batch result.
    - `realtime_rollup`: calls, successes, tokens and money per provider x model x lane,
      kept in the same transaction as the calls, so savings never scan the calls.
    - `batches.rescue_requested_at`: the engine cancelled this batch to send its
      unfinished requests real time; `rescue_done_at` once they were claimed.
    - `batches.deadline_at`: the earliest deadline of the batch's requests, worked out
      once per batch by the engine (`deadline_checked`), so the status and the ETA
      watch never read a batch's attempts again (50,000 of them, every refresh).
    - `batches_model_completed`: the latest completed batches of a model, whose
      durations give a lane's expected latency and a batch's ETA, read in index order.
    - `requests_retry_realtime`: dead letters the operator asked to send once more real
      time (`dead-letters --retry-realtime`, state `retry_realtime`), found without a scan.
    """
    _script(
        db,
        """
        ALTER TABLE requests ADD COLUMN tier TEXT;
        ALTER TABLE batches ADD COLUMN rescue_requested_at REAL;
        ALTER TABLE batches ADD COLUMN rescue_done_at REAL;
        CREATE TABLE realtime_calls (
            id INTEGER PRIMARY KEY,
            request_id INTEGER NOT NULL REFERENCES requests(id),
            number INTEGER NOT NULL,
            provider TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            model TEXT NOT NULL,
            lane TEXT NOT NULL,
            reason TEXT NOT NULL,
            claimed_at REAL NOT NULL,
            sent_at REAL,
            ended_at REAL,
            outcome TEXT,
            response TEXT,
            error TEXT,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            cached_input_tokens INTEGER NOT NULL DEFAULT 0,
            cache_creation_input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            cache_creation_1h_input_tokens INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL,
            UNIQUE (request_id, number)
        );
        CREATE INDEX realtime_calls_open ON realtime_calls (id) WHERE outcome IS NULL;
        CREATE INDEX realtime_calls_ended ON realtime_calls (ended_at) WHERE ended_at IS NOT NULL;
        CREATE TABLE realtime_rollup (
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            lane TEXT NOT NULL,
            calls INTEGER NOT NULL DEFAULT 0,
            succeeded INTEGER NOT NULL DEFAULT 0,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            cached_input_tokens INTEGER NOT NULL DEFAULT 0,
            cache_creation_input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            cache_creation_1h_input_tokens INTEGER NOT NULL DEFAULT 0,
            spent_usd REAL,
            ok_input_tokens INTEGER NOT NULL DEFAULT 0,
            ok_cached_input_tokens INTEGER NOT NULL DEFAULT 0,
            ok_cache_creation_input_tokens INTEGER NOT NULL DEFAULT 0,
            ok_output_tokens INTEGER NOT NULL DEFAULT 0,
            ok_cache_creation_1h_input_tokens INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (provider, model, lane)
        );
        CREATE INDEX batches_rescue ON batches (id) WHERE rescue_requested_at IS NOT NULL AND rescue_done_at IS NULL;
        CREATE INDEX requests_retry_realtime ON requests (provider, id) WHERE state = 'retry_realtime';
        ALTER TABLE batches ADD COLUMN deadline_at REAL;
        ALTER TABLE batches ADD COLUMN deadline_checked INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX batches_deadline_unchecked ON batches (id) WHERE deadline_checked = 0;
        CREATE INDEX batches_model_completed ON batches (provider, model, ended_at) WHERE status = 'completed'
        """,
    )


def _claim_request_ranges(db: sqlite3.Connection) -> None:
    """A flush claims a buffer's fresh requests as one id range, in O(1) rows.

    The durable intent of a 50,000-request batch wrote 50,000 attempts and rewrote
    50,000 request rows (line and all) before the provider was even called, and
    rewrote them again once it took the batch. Now:
    - `buffers.claimed_through`: every request of the buffer with a larger id is
      fresh (queued, never claimed by any batch); ids only grow, so a flush claims
      them as a range.
    - `batches.claim_lo` / `claim_hi`: the buffer's requests with ids in
      [claim_lo, claim_hi] belong to this batch, besides any it holds as attempts
      (requests queued again after an attempt sit below the cursor and are claimed
      row by row, as before). The range is turned into attempts, and the requests
      into `in_flight`, in the transaction that records the provider's batch; until
      then (status `submitting` or `unknown`, no provider batch) it is an open claim
      and its requests keep their `queued` row while the buffer's counters no longer
      count them.
    - `batches_open_claims` finds a buffer's open claims (a handful at most).
    The backfill puts each cursor above every request that was ever claimed.
    """
    _script(
        db,
        """
        ALTER TABLE buffers ADD COLUMN claimed_through INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE batches ADD COLUMN claim_lo INTEGER;
        ALTER TABLE batches ADD COLUMN claim_hi INTEGER;
        UPDATE buffers SET claimed_through = coalesce((SELECT max(r.id) FROM requests r
            WHERE r.buffer_id = buffers.id AND (r.state != 'queued' OR r.attempts > 0)), 0);
        CREATE INDEX batches_open_claims ON batches (buffer_id)
            WHERE claim_hi IS NOT NULL AND status IN ('submitting', 'unknown')
        """,
    )
    # Its rows go from `queued` straight to `in_flight` when the batch is recorded, and
    # their share of the counters was taken at the claim: the trigger that takes a
    # request's share as it leaves `queued` skips that move (nothing else makes it).
    db.execute("DROP TRIGGER requests_queue_taken")
    db.execute(
        "CREATE TRIGGER requests_queue_taken AFTER UPDATE OF state, buffer_id, bytes ON requests"
        " WHEN old.state = 'queued' AND new.state != 'in_flight'"
        " AND NOT (new.state = 'queued' AND new.buffer_id = old.buffer_id AND new.bytes = old.bytes)"
        " BEGIN UPDATE buffers SET queued = queued - 1, queued_bytes = queued_bytes - old.bytes"
        " WHERE id = old.buffer_id; END"
    )


def _usage_rollups_by_prompt_tier(db: sqlite3.Connection) -> None:
    """A `tier` column in `usage_rollup`, `usage_daily` and `usage_hourly`, and in their keys.

    Gemini Pro prices a request by its own prompt length (over 200k tokens, every token
    of it at the upper tier), so a per-model sum of tokens cannot be priced right: the
    ingest rolls a request whose prompt is over its model's `tier_above` up under the
    tier `above` (`pricing.table.UPPER_TIER`), every other under '' (the base tier).
    SQLite cannot change a primary key, so each table is rebuilt; the rows already
    stored keep tier '' (they were priced at the base tier when they were ingested).
    """
    tokens = ", ".join(PERIOD_ROLLUP_TOKENS)
    columns = ",\n".join(f"            {c} INTEGER NOT NULL DEFAULT 0" for c in PERIOD_ROLLUP_TOKENS)
    for table, key in (("usage_rollup", None), ("usage_daily", "day"), ("usage_hourly", "hour")):
        head = f"{key} INTEGER NOT NULL,\n" if key else ""
        keyed = f"{key}, " if key else ""
        _script(
            db,
            f"""
            CREATE TABLE {table}_by_tier (
                {head}provider TEXT NOT NULL,
                model TEXT NOT NULL,
                first_attempt INTEGER NOT NULL,
                succeeded INTEGER NOT NULL,
                tier TEXT NOT NULL DEFAULT '',
                attempts INTEGER NOT NULL DEFAULT 0,
{columns},
                PRIMARY KEY ({keyed}provider, model, first_attempt, succeeded, tier)
            );
            INSERT INTO {table}_by_tier ({keyed}provider, model, first_attempt, succeeded, attempts, {tokens})
                SELECT {keyed}provider, model, first_attempt, succeeded, attempts, {tokens} FROM {table};
            DROP TABLE {table};
            ALTER TABLE {table}_by_tier RENAME TO {table}
            """,
        )


MIGRATIONS: list[Migration] = [
    _v1_initial,
    _v2_engine,
    _v3_cache_1h_and_enqueue_estimates,
    _v4_failure_verdicts,
    _usage_by_batch_end,
    _v6_status_bounded,
    _v7_bounded_ingest_and_lease_fencing,
    _events_and_webhook_deliveries,
    _queue_counters_by_trigger,
    _tiers_lanes_and_realtime_calls,
    _claim_request_ranges,
    _usage_rollups_by_prompt_tier,
]
SCHEMA_VERSION = len(MIGRATIONS)
