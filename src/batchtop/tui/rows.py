"""The status document as table rows and header lines: formatting only.

Pure functions of (document, now), so they are tested without an App and the
screens stay thin. Every number comes from the document (`views.status_model.Status`,
read by attribute; its times are unix seconds); nothing is computed here beyond ages,
countdowns and text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from rich.text import Text

from batchtop.display import cell, clean, money_decimals, usd_amount, usd_text
from batchtop.providers import registry
from batchtop.states import BatchStatus as State
from batchtop.timefmt import human_duration, iso
from batchtop.views.status_model import BatchStatus, ProviderStatus, Status, whole_second

Cell = str | Text
Row = tuple[str, tuple[Cell, ...]]
"""(row key, cells)."""
Signature = tuple[object, ...]
"""What a row's cells show, comparable and hashable (`signature`)."""

# Essentials first, so a narrow terminal loses only the least needed columns at the right.
BUFFER_COLUMNS = ("model", "queued", "flush due", "held", "deadline", "oldest", "size", "provider")
BATCH_COLUMNS = ("batch", "status", "progress", "eta", "window left", "age", "model", "provider")
SAVINGS_COLUMNS = ("model", "saved $", "batch $", "real-time $", "saved %", "1st pass", "provider")

STATUS_STYLE: dict[str, str] = {
    State.SUBMITTING: "yellow",
    State.VALIDATING: "cyan",
    State.IN_PROGRESS: "cyan",
    State.FINALIZING: "cyan",
    State.CANCELLING: "yellow",
    State.COMPLETED: "green",
    State.FAILED: "bold red",
    State.EXPIRED: "red",
    State.CANCELLED: "yellow",
    State.UNKNOWN: "bold magenta",
}
BAR_WIDTH = 10
WIDE = 150
"""From this many columns, batch ids are shown whole."""
ID_WIDTH = 20
"""Below WIDE, batch ids are cut in the middle to this many characters."""


def id_width(columns: int) -> int | None:
    """How wide batch ids are shown on a terminal `columns` wide (None: whole)."""
    return None if columns >= WIDE else ID_WIDTH


def ago(value: float | None, now: float) -> str:
    """How long ago `value` (unix seconds) was, from the second the JSON shows."""
    t = whole_second(value)
    return "-" if t is None else human_duration(max(0.0, now - t))


def countdown(value: float | None, now: float) -> str:
    """"in 4m", or "now" once passed."""
    t = whole_second(value)
    if t is None:
        return "-"
    return "now" if t - now < 1 else f"in {human_duration(t - now)}"


def size(n: int) -> str:
    """"6.7 kB", with a no-break space: a table cell never wraps its unit out of sight."""
    for unit, scale in (("MB", 1_000_000), ("kB", 1_000)):
        if n >= scale:
            return f"{n / scale:.1f}\u00a0{unit}"
    return f"{n}\u00a0B"


def clip(text: str | None, width: int) -> str:
    if not text:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def pct(value: float | None, scale: float = 1.0) -> str:
    return "-" if value is None else f"{value * scale:.1f}%"


def progress_bar(succeeded: int, failed: int, total: int, width: int = BAR_WIDTH) -> Text:
    """`█████▒░░░░ 612/1,000 ✗23`: green done, red failed, dim to go."""
    bar = Text()
    if total <= 0:
        return Text("-", style="dim")
    ok_cells = min(width, round(width * succeeded / total))
    bad_cells = min(width - ok_cells, max(1 if failed else 0, round(width * failed / total)))
    bar.append("█" * ok_cells, style="green")
    bar.append("▒" * bad_cells, style="red")
    bar.append("░" * (width - ok_cells - bad_cells), style="dim")
    bar.append(f" {succeeded + failed:,}/{total:,}")
    if failed:
        bar.append(f" ✗{failed:,}", style="red")
    return bar


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def buffer_rows(doc: Status, now: float) -> list[Row]:
    rows: list[Row] = []
    for b in doc.buffers:
        due: Cell = Text("requested", style="bold yellow") if b.flush_requested else Text(countdown(b.flush_due_at, now))
        held = b.held_reason
        rows.append((
            b.name,
            (
                cell(b.model, limit=40),
                Text(f"{b.queued:,}", justify="right"),
                due,
                cell(held, "yellow", limit=48) if held else Text(""),
                Text(countdown(b.earliest_deadline, now) + (f" ({b.deadline_tier})" if b.deadline_tier else "")),
                Text(ago(b.oldest_enqueued_at, now)),
                Text(size(b.bytes), justify="right"),
                cell(b.provider),
            ),
        ))
    return rows


def batch_progress(b: BatchStatus, width: int = BAR_WIDTH) -> Text:
    """The bar, with a cancelled or expired batch's never-run requests shown as such,
    not as failures."""
    unfinished = b.unfinished
    errored = max(0, b.failed - unfinished)
    bar = progress_bar(b.succeeded, errored, b.total, width)
    if b.status in (State.CANCELLED, State.EXPIRED):
        left = unfinished if b.ingested else max(0, b.total - b.succeeded - b.failed)
        if left:
            bar.append(f" ⊘{left:,} {b.status}", style="yellow")
    return bar


def middle(text: str, width: int | None) -> str:
    """`batch_67f3…c9d2f`: both ends of an id kept (its prefix and its unique tail)."""
    text = clean(text)
    if width is None or len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def batch_rows(batches: Iterable[BatchStatus], now: float, id_width: int | None = None) -> list[Row]:
    """In-flight batches first (in the order given), then the ended; ids cut in the
    middle to `id_width` on a narrow terminal (inspect shows them whole)."""
    return [_batch_row(b, _batch_times(b, now), id_width) for b in _batch_order(batches)]


def _batch_order(batches: Iterable[BatchStatus]) -> list[BatchStatus]:
    return sorted(batches, key=lambda b: not b.in_flight)  # stable: keeps the document's order within each


def _batch_times(b: BatchStatus, now: float) -> tuple[str, str, str]:
    """(window left, age, eta): all of a batch's row that depends on the clock. The ETA
    is "?" for a batch in flight with none (stuck, or not sent yet)."""
    left = "-" if not b.in_flight else countdown(b.expires_at, now).removeprefix("in ")
    eta = "-" if not b.in_flight else ("?" if b.eta_at is None else countdown(b.eta_at, now).removeprefix("in "))
    return left, ago(b.created_at, now), eta


def _batch_row(b: BatchStatus, times: tuple[str, str, str], id_width: int | None) -> Row:
    status = cell(b.status, STATUS_STYLE.get(b.status, ""))
    ended = not b.in_flight
    if b.cancel_requested and not ended and b.status != State.CANCELLING:
        status.append(" ⊘cancel", style="yellow")
    left, age, eta = times
    bar = batch_progress(b)
    spec = registry.find(b.provider)
    if spec is not None and not spec.reports_counts_while_running and not ended and not b.succeeded + b.failed:
        bar.append(" counted at end", style="dim")  # Anthropic reports counts only once a batch ends
    return (
        b.id,
        (Text(middle(b.id, id_width or 40)), status, bar, Text(eta), Text(left), Text(age),
         cell(b.model, limit=24 if id_width else 40), cell(b.provider)),
    )


class BatchRowMemo:
    """The last refresh's batch rows, reused for a batch whose fields and clock-bound
    texts read the same: between two refreshes most of ~450 batches do not change,
    and formatting them again was most of the refresh worker's CPU.

    Each call builds a new memo and swaps it in whole, so two refresh workers
    overlapping (a cancelled thread worker still runs to its end) can at worst
    format a row twice, never read half a memo."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[object, Row, Signature]] = {}

    def rows(
        self, batches: Iterable[BatchStatus], now: float, id_width: int | None
    ) -> tuple[list[Row], dict[str, Signature]]:
        """`batch_rows(batches, now, id_width)` and their signatures."""
        last = self._last
        memo: dict[str, tuple[object, Row, Signature]] = {}
        out: list[Row] = []
        for b in _batch_order(batches):
            times = _batch_times(b, now)
            key = (id_width, times, b)  # the batch's fields compared with ==
            hit = last.get(b.id)
            if hit is not None and hit[0] == key:
                row, sig = hit[1], hit[2]
            else:
                row = _batch_row(b, times, id_width)
                sig = signature(row[1])
            memo[row[0]] = (key, row, sig)
            out.append(row)
        self._last = memo
        return out, {key: sig for key, (_, _, sig) in memo.items()}


def batches_title(doc: Status, shown: int, listed: int) -> str:
    """`8 in flight · 50 of 412 ended` (the store's counts), after how many rows match
    the search when there is one."""
    live = len(doc.live_batches)
    ended_listed = listed - live
    ended_all = max(doc.batch_counts.ended, ended_listed)
    title = f"{live:,} in flight · {ended_listed:,} of {ended_all:,} ended" if ended_all > ended_listed else (
        f"{live:,} in flight · {ended_all:,} ended"
    )
    return title if shown == listed else f"{shown:,} match · {title}"


_DEC_RANGE = range(2, 7)


def _adds_up(parts: Sequence[float | None], whole: float | None, decimals: int) -> bool:
    known = [Decimal(str(v)) for v in parts if v is not None]
    q = Decimal(1).scaleb(-decimals)
    shown = [v.quantize(q, rounding=ROUND_HALF_EVEN) for v in known]
    if any(s == 0 and v != 0 for s, v in zip(shown, known)):
        return False
    if whole is None:
        return True
    w = Decimal(str(whole))
    ws = w.quantize(q, rounding=ROUND_HALF_EVEN)
    return sum(shown, Decimal(0)) == ws and not (w != 0 and ws == 0)


def savings_decimals(doc: Status) -> int:
    """One precision for the savings table and the header's total, at which the paid
    column (batch plus what the real-time lanes spent, as shown) and the saved column
    each add up to their totals (`display.money_decimals`' rule over both at once)."""
    by_model, t = doc.savings.by_model, doc.savings.total
    known = [m for m in by_model if m.price_known]
    columns = [
        ([_spent(m.batch_cost_usd, m.realtime_lane.spent_usd) for m in known], _spent(t.batch_cost_usd, t.realtime_lane_spent_usd)),
        ([m.saved_usd for m in known], t.saved_usd),
    ]
    base = max(money_decimals(values, total) for values, total in columns)
    for decimals in range(base, _DEC_RANGE.stop):
        if all(_adds_up(v, w, decimals) for v, w in columns):
            return decimals
    return base


def _rounded(value: float | None, decimals: int) -> Decimal | None:
    if value is None:
        return None
    return Decimal(str(value)).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_EVEN)


def savings_money(batch: float | None, saved: float | None, decimals: int) -> tuple[str, str, str]:
    """(batch, real-time, saved) as shown: real-time is shown as the shown batch plus the
    shown saved, so every row and the total read batch + saved = real-time, and the
    real-time column adds up because the other two do. JSON keeps the exact amounts."""
    b, s = _rounded(batch, decimals), _rounded(saved, decimals)
    realtime = b + s if b is not None and s is not None else None
    return usd_text(b, decimals), usd_text(realtime, decimals), usd_text(s, decimals)


def _spent(batch: float | None, lanes: float | None) -> float | None:
    """Batch spend plus the synchronous lanes': what was paid, so that paid + saved still
    reads as the real-time equivalent."""
    return batch if batch is None or not lanes else batch + lanes


def savings_rows(doc: Status) -> list[Row]:
    """One row per model and a total; unpriced models show `?`, never $0 (their warning
    is in the problems panel)."""
    rows: list[Row] = []
    savings = doc.savings
    decimals = savings_decimals(doc)

    def money(known: bool, batch: float | None, saved: float | None, style: str) -> tuple[Text, Text, Text]:
        """(saved, batch, real-time): the column order of SAVINGS_COLUMNS."""
        b, r, s = savings_money(batch if known else None, saved if known else None, decimals)
        return Text(s, style=style, justify="right"), Text(b, justify="right"), Text(r, justify="right")

    for m in savings.by_model:
        known = m.price_known
        rows.append((
            f"{m.provider}:{m.model}",
            (
                cell(m.model, limit=32),
                *money(known, _spent(m.batch_cost_usd, m.realtime_lane.spent_usd), m.saved_usd,
                       "green" if (m.saved_usd or 0) > 0 else ""),
                Text(pct(m.saved_pct), justify="right"),
                Text(pct(m.first_pass_success_rate, 100), justify="right"),
                cell(m.provider),
            ),
        ))
    if rows:
        t = savings.total
        known = t.batch_cost_usd is not None
        rows.append((
            "total",
            (
                Text("total" if t.complete else "total (priced models)", style="bold"),
                *money(known, _spent(t.batch_cost_usd, t.realtime_lane_spent_usd), t.saved_usd, "bold green"),
                Text(pct(t.saved_pct), justify="right"),
                Text(pct(t.first_pass_success_rate, 100), justify="right"),
                Text(""),
            ),
        ))
    return rows


@dataclass(frozen=True)
class Tables:
    """The main screen's table rows for one document, batch ids at one width.

    Formatting ~450 batch rows is most of a refresh on a big store, so the refresh
    worker thread builds this beside the snapshot and the UI thread only diffs it
    into its tables (it formats again only if the terminal's width crossed WIDE
    since)."""

    id_width: int | None
    buffers: list[Row]
    batches: list[Row]
    savings: list[Row]
    signatures: Mapping[str, Mapping[str, Signature]]
    """Table name ("buffers", "batches", "savings") -> row key -> its signature."""


def signature(cells: Sequence[Cell]) -> Signature:
    """What a row's cells show: each one's text, styles and layout (a rich Text's own
    equality looks at its text and spans only). Equal signatures: nothing to redraw."""
    return tuple(
        (c.plain, c.style, c.justify, c.no_wrap, c.overflow, tuple(c.spans)) if isinstance(c, Text) else c for c in cells
    )


def signatures(rows: Iterable[Row]) -> dict[str, Signature]:
    return {key: signature(cells) for key, cells in rows}


def tables(doc: Status, now: float, width: int | None, memo: BatchRowMemo | None = None) -> Tables:
    """Every table's rows of `doc` at `now`, batch ids cut to `width`, signed; the
    batch rows reused from `memo` where they read the same."""
    buffers, savings = buffer_rows(doc, now), savings_rows(doc)
    batches, batch_signatures = (memo or BatchRowMemo()).rows(doc.batches, now, width)
    signed = {"buffers": signatures(buffers), "batches": batch_signatures, "savings": signatures(savings)}
    return Tables(width, buffers, batches, savings, signed)


def matches(row: Row, needle: str) -> bool:
    """Case-insensitive substring filter over a row's text."""
    if not needle:
        return True
    text = " ".join(str(c) for c in row[1]).lower()
    return all(part in text for part in needle.lower().split())


def only(rows: Iterable[Row], needle: str) -> list[Row]:
    return [r for r in rows if matches(r, needle)]


PROVIDER_NAMES = ("anthropic", "openai")


def provider_status(name: str, p: ProviderStatus | None, missing_key: str | None) -> tuple[str, str]:
    """(text, style) for one provider on the header: "no key" whenever this process has
    none (whatever an older poll said), then the engine's last word."""
    if missing_key is not None:
        return f"no key (set {missing_key})", "bold yellow"
    status = p.status if p is not None else None
    if not status:
        return "not polled yet", "dim"
    return clean(status, limit=50), "green" if status == "ok" else "bold red"


def header_lines(
    doc: Status,
    now: float,
    engine: Text,
    where: str = "",
    missing_keys: Mapping[str, str] | None = None,
) -> Text:
    """Where and who runs the engine; the providers; the totals. Each item is a single
    unit that wraps as a whole, so a narrow terminal wraps rather than drops one."""
    missing_keys = missing_keys or {}
    text = Text()
    text.append("batchtop", style="bold")
    if where:
        text.append(f" {clean(where, limit=60)}", style="dim")
    text.append("  ·  ")
    text.append_text(engine)
    poll = iso(doc.last_poll_at)
    text.append("\nlast provider poll ")
    if poll:
        text.append(f"{ago(doc.last_poll_at, now)} ago", style="bold")
        text.append(f" ({poll[11:19]}Z)", style="dim")
    else:
        text.append("never", style="dim")
    providers = doc.providers
    for name in sorted(set(PROVIDER_NAMES) | set(providers)):
        body, style = provider_status(name, providers.get(name), missing_keys.get(name))
        text.append(f"  ·  {clean(name)} ")
        text.append(body, style=style)
    text.append("\n")
    buffers = doc.buffers
    queued = sum(b.queued for b in buffers)
    live = doc.live_batches
    dead, alerts = doc.dead_letters, len(doc.alerts)
    parts: list[Text] = []
    parts.append(Text.assemble((f"queued {queued:,}", "bold"), f" in {_plural(len(buffers), 'buffer')}"))
    parts.append(Text.assemble(
        (f"{_plural(len(live), 'batch', 'batches')} in flight", "bold"),
        f" ({_plural(sum(b.total for b in live), 'request')})",
    ))
    parts.append(Text(_plural(dead, "dead letter"), style="bold red" if dead else "dim"))
    parts.append(Text(_plural(alerts, "alert"), style="bold red" if alerts else "dim"))
    total = doc.savings.total
    if total.saved_usd is not None:
        paid = _spent(total.batch_cost_usd, total.realtime_lane_spent_usd)
        _, realtime, saved = savings_money(paid, total.saved_usd, savings_decimals(doc))
        parts.append(Text.assemble((f"saved {saved}", "bold green"), f" of {realtime} ({pct(total.saved_pct)})"))
    else:
        parts.append(Text("saved: unknown (no prices)", style="yellow"))
    if doc.lanes.flex or doc.lanes.realtime:  # the lanes side by side, once any but batch was used
        parts.append(Text(doc.lanes.line()))
    estimate = doc.in_flight_estimate
    for label, amount in (("queued", estimate.queued_usd), ("in flight", estimate.in_flight_usd)):
        if amount:
            parts.append(Text(f"{label} ≈{usd_amount(amount)}"))
    text.append_text(Text("  ·  ").join(parts))
    return text


OWN_LINES = ("dead_letters", "unknown_submissions")
"""Alerts the problems panel words itself (with the console's own hints)."""


def problems(doc: Status, now: float, error: str | None = None) -> Text:
    """The errors panel: store errors, alerts, provider errors, failed batches. Every
    message may carry provider text: cleaned, appended as plain text."""
    text = Text()
    lines = 0

    def line(mark: str, style: str, body: str) -> None:
        nonlocal lines
        if lines:
            text.append("\n")
        text.append(f"{mark} ", style=style)
        text.append(clean(body, limit=400))
        lines += 1

    if error:
        line("✗", "bold red", f"store: {error}")
    for alert in doc.alerts:
        if alert.kind not in OWN_LINES:
            line("▲", "bold red", alert.message)
    if doc.dead_letters:
        line("▲", "bold red", f"{_plural(doc.dead_letters, 'dead letter')} (used up their attempts):"
             " `batchtop dead-letters` lists them; r on their batch resubmits")
    if doc.unknown_submissions:
        line("?", "magenta", f"{_plural(doc.unknown_submissions, 'unknown submission')}"
             " (not matched at the provider): inspect the batch for its candidates")
    for name, p in sorted(doc.providers.items()):
        if p.error:
            retry = f" (retry {countdown(p.retry_at, now)})" if iso(p.retry_at) else ""
            line("!", "yellow", f"{name}: {clip(clean(p.error), 200)}{retry}")
    for m in doc.savings.by_model:
        if m.warning or not m.price_known:
            line("$", "yellow", f"{m.provider}/{m.model}: {m.warning or 'no price known for this model'}")
    if doc.anomalies:
        line("!", "yellow", f"{_plural(doc.anomalies, 'anomaly', 'anomalies')} recorded at ingest")
    for b in doc.batches:
        if b.error and b.status in (State.FAILED, State.UNKNOWN):
            line("✗", "red", f"{b.id}: {clip(clean(b.error), 160)}")
    if not lines:
        text.append("✓ ", style="green")
        text.append("no alerts, no dead letters, providers ok", style="dim")
    return text
