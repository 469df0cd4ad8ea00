"""The status document as table rows and header lines: formatting only.

Pure functions of (document, now), so they are tested without an App and the
screens stay thin. Every number comes from the document; nothing is computed
here beyond ages, countdowns and text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.text import Text

from batchtop.pricing.money import fmt_usd
from batchtop.timefmt import human_duration, parse_time

Cell = str | Text
Row = tuple[str, tuple[Cell, ...]]
"""(row key, cells)."""

BUFFER_COLUMNS = ("provider", "model", "queued", "size", "oldest", "flush due", "deadline", "held")
BATCH_COLUMNS = ("batch", "provider", "model", "status", "progress", "age", "window left")
SAVINGS_COLUMNS = ("provider", "model", "batch $", "real-time $", "saved $", "saved %", "1st pass", "warning")

STATUS_STYLE = {
    "submitting": "yellow",
    "validating": "cyan",
    "in_progress": "cyan",
    "finalizing": "cyan",
    "cancelling": "yellow",
    "completed": "green",
    "failed": "bold red",
    "expired": "red",
    "cancelled": "yellow",
    "unknown": "bold magenta",
}
BAR_WIDTH = 10


def _ts(value: str | None) -> float | None:
    return parse_time(value) if value else None


def ago(value: str | None, now: float) -> str:
    t = _ts(value)
    return "-" if t is None else human_duration(max(0.0, now - t))


def countdown(value: str | None, now: float) -> str:
    """"in 4m", or "now" once passed."""
    t = _ts(value)
    if t is None:
        return "-"
    return "now" if t - now < 1 else f"in {human_duration(t - now)}"


def size(n: int) -> str:
    for unit, scale in (("MB", 1_000_000), ("kB", 1_000)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


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


def buffer_rows(doc: Mapping[str, Any], now: float) -> list[Row]:
    rows: list[Row] = []
    for b in doc["buffers"]:
        due: Cell = Text("requested", style="bold yellow") if b.get("flush_requested") else countdown(b["flush_due_at"], now)
        held = b.get("held_reason")
        rows.append((
            b["name"],
            (
                b["provider"],
                b["model"],
                f"{b['queued']:,}",
                size(b["bytes"]),
                ago(b["oldest_enqueued_at"], now),
                due,
                countdown(b["earliest_deadline"], now),
                Text(clip(held, 48), style="yellow") if held else "",
            ),
        ))
    return rows


def batch_rows(doc: Mapping[str, Any], now: float) -> list[Row]:
    rows: list[Row] = []
    for b in doc["batches"]:
        status = Text(b["status"], style=STATUS_STYLE.get(b["status"], ""))
        if b.get("cancel_requested") and b["status"] not in ("cancelling", "cancelled"):
            status.append(" ⊘cancel", style="yellow")
        ended = b.get("ended_at") is not None
        left = "-" if ended else countdown(b.get("expires_at"), now).removeprefix("in ")
        bar = progress_bar(b["succeeded"], b["failed"], b["total"])
        if b["provider"] == "anthropic" and not ended and not b["succeeded"] + b["failed"]:
            bar.append(" counted at end", style="dim")  # Anthropic reports counts only once a batch ends
        rows.append((
            b["id"],
            (b["id"], b["provider"], b["model"], status, bar,
             ago(b["created_at"], now), left),
        ))
    return rows


def _money(value: float | None, known: bool) -> str:
    return fmt_usd(value) if known and value is not None else "?"


def savings_rows(doc: Mapping[str, Any]) -> list[Row]:
    rows: list[Row] = []
    savings = doc["savings"]
    for m in savings["by_model"]:
        known = bool(m.get("price_known"))
        warning = m.get("warning") or ("" if known else "no price known for this model")
        rows.append((
            f"{m['provider']}:{m['model']}",
            (
                m["provider"],
                m["model"],
                _money(m["batch_cost_usd"], known),
                _money(m["realtime_cost_usd"], known),
                Text(_money(m["saved_usd"], known), style="green" if (m["saved_usd"] or 0) > 0 else ""),
                pct(m["saved_pct"]),
                pct(m["first_pass_success_rate"], 100),
                Text(clip(warning, 40), style="yellow") if warning else "",
            ),
        ))
    if rows:
        t = savings["total"]
        known = t.get("batch_cost_usd") is not None
        rows.append((
            "total",
            (
                Text("total", style="bold"),
                "" if t.get("complete", True) else Text("(priced models only)", style="dim"),
                _money(t.get("batch_cost_usd"), known),
                _money(t.get("realtime_cost_usd"), known),
                Text(_money(t.get("saved_usd"), known), style="bold green"),
                pct(t.get("saved_pct")),
                pct(t.get("first_pass_success_rate"), 100),
                "",
            ),
        ))
    return rows


def matches(row: Row, needle: str) -> bool:
    """Case-insensitive substring filter over a row's text."""
    if not needle:
        return True
    text = " ".join(str(c) for c in row[1]).lower()
    return all(part in text for part in needle.lower().split())


def only(rows: Iterable[Row], needle: str) -> list[Row]:
    return [r for r in rows if matches(r, needle)]


def header_lines(doc: Mapping[str, Any], now: float, engine: Text, where: str = "") -> Text:
    """Three lines: where and who runs the engine; the providers; the totals."""
    text = Text()
    text.append("batchtop", style="bold")
    if where:
        text.append(f" {where}", style="dim")
    text.append("  ·  ")
    text.append_text(engine)
    poll = doc.get("last_poll_at")
    text.append("\nlast provider poll ")
    if poll:
        text.append(f"{ago(poll, now)} ago", style="bold")
        text.append(f" ({poll[11:19]}Z)", style="dim")
    else:
        text.append("never", style="dim")
    for name, p in sorted(doc.get("providers", {}).items()):
        status = p.get("status") or "?"
        text.append(f"  ·  {name} ")
        text.append(clip(status, 50), style="green" if status == "ok" else "bold red")
    text.append("\n")
    buffers: Sequence[Mapping[str, Any]] = doc["buffers"]
    queued = sum(b["queued"] for b in buffers)
    live = [b for b in doc["batches"] if b.get("ended_at") is None]
    text.append(f"queued {queued:,}", style="bold")
    text.append(f" in {len(buffers)} buffer{'s' if len(buffers) != 1 else ''}  ·  ")
    text.append(f"{len(live)} batch{'es' if len(live) != 1 else ''} in flight", style="bold")
    text.append(f" ({sum(b['total'] for b in live):,} requests)  ·  ")
    total = doc["savings"]["total"]
    if total.get("saved_usd") is not None:
        text.append(f"saved {fmt_usd(total['saved_usd'])}", style="bold green")
        text.append(f" of {fmt_usd(total['realtime_cost_usd'])} ({pct(total.get('saved_pct'))})")
    else:
        text.append("saved: unknown (no prices)", style="yellow")
    estimate = doc.get("in_flight_estimate_usd")
    if estimate is not None:
        text.append(f"  ·  in flight ≈{fmt_usd(estimate)}")
    dead, alerts = doc["dead_letters"], len(doc["alerts"])
    text.append("  ·  ")
    text.append(f"{dead:,} dead", style="bold red" if dead else "dim")
    text.append("  ·  ")
    text.append(f"{alerts} alert{'s' if alerts != 1 else ''}", style="bold red" if alerts else "dim")
    return text


def problems(doc: Mapping[str, Any], now: float, error: str | None = None) -> Text:
    """The errors panel: store errors, alerts, provider errors, failed batches."""
    text = Text()
    lines = 0

    def line(mark: str, style: str, body: str) -> None:
        nonlocal lines
        if lines:
            text.append("\n")
        text.append(f"{mark} ", style=style)
        text.append(body)
        lines += 1

    if error:
        line("✗", "bold red", f"store: {error}")
    for alert in doc["alerts"]:
        line("▲", "bold red", alert["message"])
    if doc["dead_letters"]:
        line("✗", "red", f"{doc['dead_letters']:,} dead letter(s): `batchtop dead-letters` lists them; r on their batch resubmits")
    if doc["unknown_submissions"]:
        line("?", "magenta", f"{doc['unknown_submissions']} unknown submission(s): inspect the batch for its candidates")
    for name, p in sorted(doc.get("providers", {}).items()):
        if p.get("error"):
            retry = f" (retry {countdown(p.get('retry_at'), now)})" if p.get("retry_at") else ""
            line("!", "yellow", f"{name}: {clip(p['error'], 200)}{retry}")
    for m in doc["savings"]["by_model"]:
        if m.get("warning"):
            line("$", "yellow", f"{m['provider']}/{m['model']}: {m['warning']}")
    if doc.get("anomalies"):
        line("!", "yellow", f"{doc['anomalies']} anomal{'ies' if doc['anomalies'] != 1 else 'y'} recorded at ingest")
    for b in doc["batches"]:
        if b.get("error") and b["status"] in ("failed", "unknown"):
            line("✗", "red", f"{b['id']}: {clip(b['error'], 160)}")
    if not lines:
        text.append("✓ ", style="green")
        text.append("no alerts, no dead letters, providers ok", style="dim")
    return text
