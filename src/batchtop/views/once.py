"""`batchtop --once`: the console's status as text or JSON, then exit.

Both outputs render the one document `status.collect` builds, so they cannot
disagree. With `refresh` one engine tick runs first (imported only then: the
`--no-refresh` path reads the store and imports neither the SDKs nor Textual).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from batchtop import paths
from batchtop.config import Config
from batchtop.display import clean, money_column
from batchtop.exitcodes import Exit
from batchtop.states import BatchStatus as State
from batchtop.timefmt import iso

if TYPE_CHECKING:
    from batchtop.views.status_model import BatchStatus, Status

_BOLD, _RED, _YELLOW, _RESET = "\x1b[1m", "\x1b[31m", "\x1b[33m", "\x1b[0m"


def read_status(data_dir: Path, config: Config, now: float) -> Status:
    """The status document; a data dir without a database is shown empty and left untouched."""
    from batchtop.views import status

    if not has_store(data_dir, config):
        return status.empty(now)
    from batchtop.store import Store

    with Store(data_dir, create=False, url=config.store.url, schema=config.store.schema) as store:
        return status.collect(store.db, config, now)


def has_store(data_dir: Path, config: Config) -> bool:
    """Whether there is a store to read (`--once` must not create one): the data dir's
    file, or a batchtop schema in the PostgreSQL database of `[store] url` (resolved)."""
    if config.store.url is None:
        return (data_dir / paths.DB_NAME).exists()
    from batchtop.store.db import has_database

    return has_database(data_dir, config.store.url, config.store.schema)


def refresh(data_dir: Path, config: Config, err: TextIO) -> None:
    """One engine tick so the figures are current. When another engine holds the data
    dir it keeps them current itself, so we only read; a provider error is reported and
    the status (which shows it too) is still printed."""
    if not has_store(data_dir, config):
        return  # nothing enqueued yet: nothing to tick, and nothing may be created
    from batchtop.engine import entrypoints as operations
    from batchtop.store.lease import EngineBusy

    if config.store.url is not None:
        from batchtop.store import Store

        with Store(data_dir, create=False, url=config.store.url, schema=config.store.schema) as store:
            if store.read_only:  # a viewer role: it cannot tick, and the engines keep the figures current
                err.write(clean(f"batchtop: not refreshing: {store.where} is read-only for this role; showing the store as it is") + "\n")
                return

    try:
        report = operations.tick(data_dir, config)
    except EngineBusy as exc:
        err.write(clean(f"batchtop: not refreshing: {exc}; showing the store as it is") + "\n")
        return
    for provider, error in sorted(report.errors.items()):
        err.write(clean(f"batchtop: refresh: {provider}: {error}") + "\n")


# -- text ------------------------------------------------------------------------------


def _pct(rate: float | None, scale: float = 100.0) -> str:
    return f"{rate * scale:.1f}%" if rate is not None else "-"


def _progress(batch: BatchStatus) -> str:
    done = batch.succeeded + batch.failed
    total = batch.total
    return f"{done}/{total} {done / total:.0%}" if total else f"{done}/{total}"


class _Text:
    """Plain-text writer: aligned tables; colour only on a terminal without NO_COLOR.

    Every line and cell is passed through `display.clean` here, at the one place text
    leaves, because most of it is provider content (batch ids, errors) or names we took
    as data (models, custom_ids): an escape sequence in any of them must not reach the
    terminal or the log it is written to. Our own colour codes are added after."""

    def __init__(self, out: TextIO, color: bool) -> None:
        self.out = out
        self.color = color

    def line(self, text: str = "", style: str = "") -> None:
        text = clean(text)
        self.out.write((f"{style}{text}{_RESET}" if style and self.color else text) + "\n")

    def heading(self, text: str) -> None:
        self.line()
        self.line(text, _BOLD)

    def table(self, headers: list[str], rows: list[list[str]], right: frozenset[int] = frozenset()) -> None:
        rows = [[clean(c) for c in r] for r in rows]
        widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

        def fmt(cells: list[str]) -> str:
            return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

        self.line("  " + fmt(headers).rstrip())
        for r in rows:
            self.line("  " + fmt(r).rstrip())


def _at(ts: float | None) -> str:
    """A time as the JSON shows it, "-" when there is none."""
    return iso(ts) or "-"


def render_text(doc: Status, out: TextIO, *, color: bool = False) -> None:
    """The status for a log or a terminal: every figure of the JSON, as tables."""
    t = _Text(out, color)
    t.line(f"batchtop status at {iso(doc.generated_at)}", _BOLD)

    buffers = doc.buffers
    t.heading(f"BUFFERS  queued: {sum(b.queued for b in buffers)}")
    if buffers:
        t.table(
            ["PROVIDER", "ENDPOINT", "MODEL", "QUEUED", "BYTES", "OLDEST", "FLUSH DUE", "DEADLINE", "HELD"],
            [
                [b.provider, b.endpoint, b.model, str(b.queued), f"{b.bytes:,}",
                 _at(b.oldest_enqueued_at), _at(b.flush_due_at), _at(b.earliest_deadline),
                 b.held_reason or "-"]
                for b in buffers
            ],
            right=frozenset({3, 4}),
        )
    else:
        t.line("  (no queued requests)")

    batches = doc.batches
    t.heading(f"BATCHES  listed: {len(batches)}")
    if batches:
        t.table(
            ["ID", "PROVIDER", "MODEL", "STATUS", "PROGRESS", "SUCCEEDED", "FAILED", "CREATED", "ENDED"],
            [
                [b.id, b.provider, b.model, b.status, _progress(b), str(b.succeeded),
                 str(b.failed), _at(b.created_at), _at(b.ended_at)]
                for b in batches
            ],
            right=frozenset({4, 5, 6}),
        )
    else:
        t.line("  (no batches)")

    models = doc.savings.by_model
    total = doc.savings.total
    # One precision per money column, at which its rows visibly add up to the total
    # below it; a model without a price is "unknown" and left out of both.
    columns = {
        key: money_column([getattr(m, key) for m in models], getattr(total, key), unknown="unknown")
        for key in ("batch_cost_usd", "realtime_cost_usd", "resubmission_cost_usd", "saved_usd")
    }
    t.heading("SAVINGS BY MODEL")
    if models:
        t.table(
            ["PROVIDER", "MODEL", "SUCCEEDED", "BATCH", "REALTIME", "RESUBMISSIONS", "SAVED", "SAVED%", "FIRST-PASS"],
            [
                [m.provider, m.model, str(m.requests_succeeded),
                 *(columns[key][0][i] for key in columns),
                 _pct(m.saved_pct, 1), _pct(m.first_pass_success_rate)]
                for i, m in enumerate(models)
            ],
            right=frozenset(range(2, 9)),
        )
        for m in models:
            if not m.price_known:
                t.line(f"  warning: {m.provider}:{m.model}: no known price; add it under [prices] in the config",
                       _YELLOW)
            if m.warning:
                t.line(f"  warning: {m.provider}:{m.model}: {m.warning}", _YELLOW)
    else:
        t.line("  (no results yet)")
    incomplete = "" if total.complete else "  (incomplete: models without a known price are left out)"
    resubmitted = columns["resubmission_cost_usd"][1]
    t.line(
        f"TOTAL  batch {columns['batch_cost_usd'][1]}  realtime {columns['realtime_cost_usd'][1]}"
        f"  saved {columns['saved_usd'][1]} ({_pct(total.saved_pct, 1)})"
        + (f"  resubmissions {resubmitted}" if total.resubmission_cost_usd else "")
        + incomplete,
        _BOLD,
    )
    if doc.lanes.flex or doc.lanes.realtime:  # the lanes side by side, once any but batch was used
        t.line(f"LANES  {doc.lanes.line()}")

    estimate = doc.in_flight_estimate
    (queued, submitted), whole = money_column(
        [estimate.queued_usd, estimate.in_flight_usd], estimate.in_flight_usd, unknown="unknown"
    )
    parts = f"  (queued {queued}, submitted {submitted})"
    partial = "" if estimate.complete else "  (incomplete: models without a known price are left out)"
    t.line(f"IN FLIGHT (estimate)  {whole}{parts}{partial}")
    if estimate.basis:
        t.line(f"  {estimate.basis}")

    t.heading(f"DEAD LETTERS  {doc.dead_letters}")
    if doc.dead_letters:
        t.line("  requests that used up their attempts: batchtop dead-letters")
    unknown = [b for b in batches if b.status == State.UNKNOWN]
    t.heading(f"UNKNOWN SUBMISSIONS  {doc.unknown_submissions}")
    for b in unknown:
        candidates = ", ".join(b.candidates) or "none"
        t.line(f"  {b.id} {b.provider} {b.model} ({b.total} requests): could be {candidates};"
               f" batchtop adopt {b.id} BATCH_ID, or batchtop resubmit {b.id}")
    if doc.anomalies:
        t.line(f"  anomalies recorded: {doc.anomalies}")

    alerts = doc.alerts
    t.heading(f"ALERTS  {len(alerts)}")
    for a in alerts:
        t.line(f"  ALERT {a.kind}: {a.message}", _RED)
    rate = doc.failure_rate
    if rate.attempts:
        t.line(f"  failure rate over the alert window: {rate.failed} of {rate.attempts} attempts"
               f" ({_pct(rate.rate)})")

    providers = doc.providers
    t.heading(f"PROVIDERS  last poll: {iso(doc.last_poll_at) or 'never'}")
    if providers:
        t.table(
            ["PROVIDER", "STATUS", "LAST POLL", "RETRY AT", "ERROR"],
            [[name, p.status or "-", _at(p.polled_at), _at(p.retry_at), p.error or "-"]
             for name, p in sorted(providers.items())],
        )
    else:
        t.line("  (no provider contacted yet)")


def _use_color(out: TextIO) -> bool:
    isatty = getattr(out, "isatty", None)
    return bool(isatty and isatty()) and not os.environ.get("NO_COLOR")


def run_once(
    data_dir: Path,
    config: Config,
    *,
    as_json: bool,
    refresh_first: bool,
    fail_on_alert: bool,
    prometheus: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Print the status once (text, JSON or, with `prometheus`, the exposition format);
    Exit.ALERT when asked to fail on a raised alert."""
    out = out or sys.stdout
    err = err or sys.stderr
    if refresh_first:
        refresh(data_dir, config, err)
    doc = read_status(data_dir, config, time.time())
    if as_json:
        json.dump(doc.to_json(), out, indent=2)
        out.write("\n")
    elif prometheus:
        from batchtop.views.prometheus import exposition

        out.write(exposition(doc))
    else:
        render_text(doc, out, color=_use_color(out))
    if fail_on_alert and doc.alerts:
        for a in doc.alerts:
            err.write(clean(f"batchtop: alert: {a.kind}: {a.message}") + "\n")
        return Exit.ALERT
    return Exit.OK
