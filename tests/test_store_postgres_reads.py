"""The read side answers the same on PostgreSQL as on SQLite (issue #14).

The same content is built on each backend through the real Store and engine (the
console sample: batches submitted, ingested with failures, resubmitted, dead letters,
an expired batch, work in flight and queued), then everything an operator reads is
compared with what the SQLite file gives for it: the typed status (`--once --json`),
the period report, the event log, search, the inspect screen's rows, the exports and
the money rows; then the webhook cursors and the real-time lanes, driven through their
own functions. Random submission uuids and event ids / times are left out of the
comparison where they may differ; everything else must be equal.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batchtop.intake.validation import parse_lines
from batchtop.report import document
from batchtop.store import Store, alerts, detail_queries, events, export_queries, pricing_queries, realtime, search, status_queries
from batchtop.views import status

import console_sample as sample

NEEDLES = ("gpt-4o-mini", "EXPIRED", "claude haiku", "local-", "o4", "no such thing", "%", "_")


def _status_text(store: Store, data: sample.Sample) -> str:
    out = status.collect(store.db, data.config, data.now).to_json()
    for b in out["batches"]:
        b["submission"] = "<uuid>"
    return json.dumps(out, indent=2, sort_keys=True)


def _event_docs(store: Store) -> list[dict[str, Any]]:
    """Every event as `batchtop events` prints it, without its id (a sequence's gaps may
    differ), in time order; the engine's providers run side by side, so the events of
    one moment are sorted by their text (their order in the log is the race's)."""
    docs = []
    for e in events.after(store.db, 0, limit=100_000):
        doc = e.document()
        doc.pop("id")
        docs.append(doc)
    return sorted(docs, key=lambda d: (d["at"], json.dumps(d, sort_keys=True)))


def _provider_ids(store: Store, local_ids: list[int]) -> list[str | None]:
    return [b.provider_batch_id for b in status_queries.batches_by_id(store.db, local_ids)]


def _reads(data: sample.Sample, url: str | None) -> dict[str, Any]:
    """What the views read of the sample's store, as plain values."""
    with Store(data.data_dir, create=False, url=url) as store:
        db = store.db
        failed = detail_queries.batch_record(db, data.failed_batch)
        assert failed is not None
        buffer = detail_queries.buffer_record(db, data.buffer)
        assert buffer is not None
        return {
            "status": _status_text(store, data),
            "report": json.dumps(document.build(db, data.config, now=data.now), sort_keys=True, default=str),
            "events": _event_docs(store),
            "search": {n: _provider_ids(store, search.matching_batches(db, n)) for n in NEEDLES},
            "batch_record": {**vars(failed), "local_id": 0},
            "outcomes": list(detail_queries.outcome_counts(db, failed.local_id).items()),
            "failed_attempts": list(detail_queries.failed_attempts(db, failed.local_id)),
            "other_attempts": detail_queries.other_attempts(db, failed.local_id, 50),
            "buffer": {**vars(buffer), "id": 0},
            "queued": detail_queries.queued_requests(db, buffer.id, 100),
            "results": [line for chunk in export_queries.results_stream(db) for line in chunk],
            "batch_results": [line for chunk in export_queries.results_stream(db, failed.local_id) for line in chunk],
            "dead_letters": list(export_queries.dead_letters(db)),
            "dead_widths": export_queries.dead_letter_widths(db),
            "usage": sorted(pricing_queries.usage_rows(db), key=repr),
            "in_flight": pricing_queries.in_flight_rows(db),
            "queued_rows": sorted(pricing_queries.queued_rows(db), key=repr),
            "days": list(pricing_queries.batch_days(db, failed.local_id)),
            "tiered_days": list(pricing_queries.batch_days(db, failed.local_id, tier_above=10)),
            "engine_alerts": alerts.engine_alerts(db),
            "problems": status_queries.problem_counts(db),
            "totals": status_queries.batch_totals(db),
            "durations": realtime.durations(db, "openai", "gpt-4o-mini"),
            "open_batches": [(b.provider_batch_id, b.status, b.total, b.done) for b in realtime.open_batches(db)],
        }


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The sample's reads on SQLite, the answers PostgreSQL must give."""
    return _reads(sample.build(tmp_path_factory.mktemp("reference") / "data"), None)


def test_the_sample_reads_the_same_on_both_backends(store_url: str | None, tmp_path: Path, reference: dict[str, Any]) -> None:
    got = _reads(sample.build(tmp_path / "data", url=store_url), store_url)
    assert got["events"], "the sample logs events"
    assert any(got["search"].values()) and got["dead_letters"] and got["results"], "the sample has what is compared"
    for key, expected in reference.items():
        assert got[key] == expected, key


def _untimed(text: str) -> str:
    """Without its times of day: under load two builds of the sample can see a poll at
    a different second (seen once in a full run, SQLite against SQLite)."""
    import re

    return re.sub(r"\d\d:\d\d:\d\dZ", "hh:mm:ssZ", text)


def test_a_bad_day_of_alerts_reads_the_same(store_url: str | None, tmp_path: Path, reference: dict[str, Any]) -> None:
    """Alerts raised and cleared through the store's own functions; the status and
    the event log on PostgreSQL agree with SQLite's for the same steps."""

    def steps(data_dir: Path, url: str | None) -> tuple[str, list[dict[str, Any]]]:
        data = sample.build(data_dir, url=url)
        with Store(data.data_dir, create=False, url=url) as store:
            alerts.raise_alert(store, alerts.QUOTA, "openai", "openai: out of credit", data.now - 60)
            alerts.raise_alert(store, alerts.QUOTA, "openai", "openai: still out", data.now - 30)  # the first stays
            alerts.raise_alert(store, alerts.QUOTA, "anthropic", "anthropic: out of credit", data.now - 20)
            realtime.set_alert(store, realtime.STUCK_BATCH, data.running_batch, "openai", "stuck", data.now - 10)
            realtime.set_alert(store, realtime.DEADLINE_RISK, "b1", "openai", "late", data.now - 5)
            realtime.clear_alerts(store, realtime.DEADLINE_RISK, keep=())
            alerts.clear_alert(store, alerts.QUOTA, "anthropic")
            scopes = realtime.alert_scopes(store.db, realtime.STUCK_BATCH, exclude_provider="anthropic")
            assert scopes == [data.running_batch]
            return _status_text(store, data), _event_docs(store)

    got = steps(tmp_path / "data", store_url)
    expected = steps(tmp_path / "sqlite", None)
    assert _untimed(got[0]) == _untimed(expected[0])
    assert got[1] == expected[1]
    raised = [e["message"] for e in got[1] if e["kind"] == "alert" and e.get("alert") in ("quota", "stuck_batch", "deadline_risk")]
    assert sorted(raised) == ["anthropic: out of credit", "late", "openai: out of credit", "stuck"]


def _lane_store(data_dir: Path, url: str | None) -> Store:
    store = Store(data_dir, url=url)
    lines = [
        json.dumps({"custom_id": f"rt-{i}", "method": "POST", "url": "/v1/chat/completions",
                    "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q{i}"}]}})
        for i in range(6)
    ]
    store.enqueue(parse_lines([("<lanes>", i, line) for i, line in enumerate(lines, 1)]), deadline=5000.0, now=1000.0)
    return store


def _lanes(data_dir: Path, url: str | None) -> dict[str, Any]:
    """Claims, answers and webhook cursors through the lanes' and the log's functions."""
    from batchtop.config import Config

    config = Config()
    with _lane_store(data_dir, url) as store:
        (buf,) = status_queries.buffers(store.db, config)
        due = realtime.due_with_deadline(store.db, buf.id, 10_000.0, 10)
        ids = [rid for rid, _, _ in due]
        claims = realtime.claim(store, ids[:5], realtime.REALTIME, "deadline", 2000.0)
        assert [c.call_id for c in claims] == sorted({c.call_id for c in claims})  # ids back from the insert
        realtime.mark_sent(store, [c.call_id for c in claims], 2001.0)
        ok = realtime.CallResult("succeeded", '{"ok": 1}', None, 10, 2, 1, 5, 0, cost_usd=0.25)
        bad = realtime.CallResult("errored", None, "boom", 3, 0, 0, 0, 0, cost_usd=None, permanent=True)
        realtime.record_many(store, [(claims[0], ok), (claims[1], ok)], 90_000.0, max_attempts=3)
        realtime.record(store, claims[2], bad, 180_000.5, max_attempts=3)
        realtime.release(store, claims[3], "stopped", 2002.0)  # sent already: not released
        settled = realtime.settle_orphans(store, [claims[4].call_id], 2003.0)  # claims[3]: sent, no answer: dead
        assert settled == (0, 1)
        dead = [rid for rid, *_ in realtime.dead_letter_ids(store.db)]
        retried = realtime.request_retry(store, dead)
        hook, other = "hook-a", "hook-b"
        first = events.receiver(store.db, hook, "A")
        with store.transaction() as db:
            for n in range(3):
                events.record_alert(db, "test", f"alert {n}", 3000.0 + n, provider="openai")
        after = events.after(store.db, first.cursor)
        events.failed(store.db, hook, after[0].id, "503", 503, 3100.0, 3050.0, tries=1, alert="hook-a failing")
        events.delivered(store.db, hook, after[0].id, 3200.0)
        events.delivered(store.db, hook, after[0].id - 1, 3201.0)  # an older id never moves the cursor back
        events.rejected(store.db, hook, after[1].id, "400", 400, 3300.0)
        events.receiver(store.db, hook, "A again")  # known: unchanged
        events.receiver(store.db, other, "B")
        events.refused(store.db, other, "no secret", 3400.0)
        receivers = [
            {k: v for k, v in vars(r).items() if k not in ("cursor", "head")}
            | {"behind": events.pending_count(store.db, r.cursor, events.KINDS)}
            for r in events.receivers(store.db, [other, hook])
        ]
        pruned = events.prune(store.db, 3000.0 + events.KEEP + 1.5, [hook])
        return {
            "claims": [(c.number, c.provider, c.endpoint, c.model, c.custom_id, c.lane, c.deadline) for c in claims],
            "lane_usage": realtime.lane_usage(store.db),
            "between": realtime.lane_usage_between(store.db, None, None),
            "by_day": realtime.lane_usage_by_day(store.db, None, 200_000.0),
            "spent": realtime.spent_since(store.db, 0.0),
            "responses": list(realtime.responses(store.db)),
            "settled": settled,
            "dead": len(dead),
            "retried": retried,
            "retry_requested": len(realtime.retry_requested(store.db, "openai", 10)),
            "with_retries": realtime.providers_with_retries(store.db),
            "request_lane": realtime.request_lane(store.db, claims[2].request_id),
            "receivers": receivers,
            "pruned": pruned,
            "events": [{k: v for k, v in e.document().items() if k != "id"} for e in events.after(store.db, 0)],
        }


def test_lanes_and_webhook_cursors_read_the_same(store_url: str | None, tmp_path: Path) -> None:
    got = _lanes(tmp_path / "data", store_url)
    expected = _lanes(tmp_path / "sqlite", None)
    assert got["spent"] == pytest.approx(0.5)
    assert got["dead"] == got["retried"] == 2 and got["responses"] == ['{"ok": 1}', '{"ok": 1}']
    assert [d for d, _ in got["by_day"]] == [1, 2]  # 90,000 s is day 1, 180,000.5 s day 2 (truncated, not rounded)
    assert got["receivers"][1]["rejected"] == 1 and got["receivers"][0]["last_status"] == 0
    for key, value in expected.items():
        assert got[key] == value, key


# -- a server whose default collation is a language's --------------------------------------

ODD_MODELS = ("Zeta-1", "alpha_2", "alpha-1", "beta", "GPT-x", "a.b")
"""Names that byte order and an ICU English collation sort differently (case, `-`, `_`, `.`)."""


@pytest.fixture
def icu_url(pg_server_url: str) -> Iterator[str]:
    """A blank database whose default collation is ICU en-US, as many servers' are."""
    import psycopg

    from conftest import database_url

    name = f"bt_icu_{os.getpid()}"
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'")
    try:
        yield database_url(pg_server_url, name)
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _odd_buffers(data_dir: Path, url: str | None) -> tuple[list[str], list[str]]:
    from batchtop.config import Config

    lines = [
        json.dumps({"custom_id": f"c-{i}", "method": "POST", "url": "/v1/chat/completions",
                    "body": {"model": model, "messages": [{"role": "user", "content": "hi"}]}})
        for i, model in enumerate(ODD_MODELS)
    ]
    with Store(data_dir, url=url) as store:
        store.enqueue(parse_lines([("<odd>", i, line) for i, line in enumerate(lines, 1)]), now=1000.0)
        listed = [b.model for b in status_queries.buffers(store.db, Config())]
        shown = [b["model"] for b in status.collect(store.db, Config(), 1000.0).to_json()["buffers"]]
    return listed, shown


def test_text_orders_are_byte_orders_whatever_the_servers_collation(icu_url: str, tmp_path: Path) -> None:
    """The buffers (and every list ordered by a name) come in SQLite's order, not the
    database's language order."""
    got = _odd_buffers(tmp_path / "pg", icu_url)
    expected = _odd_buffers(tmp_path / "sqlite", None)
    assert expected[0] == sorted(ODD_MODELS)  # code point order
    assert got == expected
