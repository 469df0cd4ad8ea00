"""One batch (its errors grouped by code, with sample lines, and its attempts) or one
buffer (its queued requests). Read once, in a worker, from `batchtop.views.detail`."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static
from textual.worker import get_current_worker

from batchtop.config import StoreConfig
from batchtop.display import cell, clean
from batchtop.errors import BatchtopError
from batchtop.states import Outcome
from batchtop.store import Store
from batchtop.timefmt import human_duration, iso
from batchtop.tui.rows import STATUS_STYLE, clip, progress_bar, size
from batchtop.views import detail as inspect

Kind = Literal["batch", "buffer"]

OUTCOME_STYLE: dict[str, str] = {Outcome.SUCCEEDED: "green", Outcome.CANCELLED: "yellow", Outcome.EXPIRED: "yellow"}
"""Requests a cancelled or expired batch never ran are not failures: not red."""


class Loaded(Message):
    def __init__(self, detail: inspect.BatchDetail | inspect.BufferDetail | None, error: str | None) -> None:
        super().__init__()
        self.detail = detail
        self.error = error


class InspectScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "back", "Back", id="batchtop.views.detail.back"),
    ]

    def __init__(self, data_dir: Path, kind: Kind, key: str, now: float, where: StoreConfig | None = None) -> None:
        super().__init__()
        self.data_dir = data_dir
        self.where = where or StoreConfig()
        self.kind = kind
        self.key = key
        self.now = now

    def compose(self) -> ComposeResult:
        yield Static(cell(f"{self.kind} {self.key}", "bold"), id="inspect-title")
        if self.kind == "batch":
            yield Static("loading…", id="inspect-errors")
            yield DataTable(id="inspect-table", cursor_type="row", zebra_stripes=True)
        else:
            yield DataTable(id="inspect-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#inspect-table", DataTable)
        table.border_title = "attempts (failures first)" if self.kind == "batch" else "queued requests (oldest first)"
        if self.kind == "batch":
            table.add_columns("custom_id", "attempt", "outcome", "request now", "error")
        else:
            table.add_columns("custom_id", "age", "deadline", "tier", "size", "attempts so far", "last error")
        self.load()

    @work(thread=True, exclusive=True, group="inspect", exit_on_error=False)
    def load(self) -> None:
        detail: inspect.BatchDetail | inspect.BufferDetail | None = None
        error = None
        try:
            with Store(self.data_dir, create=False, url=self.where.url, schema=self.where.schema) as store:
                if self.kind == "batch":
                    detail = inspect.batch_detail(store.db, self.key)
                else:
                    detail = inspect.buffer_detail(store.db, self.key)
        except BatchtopError as exc:
            error = str(exc)
        if not get_current_worker().is_cancelled:
            self.post_message(Loaded(detail, error))

    def on_loaded(self, message: Loaded) -> None:
        title = self.query_one("#inspect-title", Static)
        if message.error or message.detail is None:
            title.update(cell(f"{self.kind} {self.key}: {message.error}", "bold red"))
            return
        if isinstance(message.detail, inspect.BatchDetail):
            self._show_batch(message.detail)
        else:
            self._show_buffer(message.detail)

    def _show_batch(self, d: inspect.BatchDetail) -> None:
        title = Text()
        title.append(clean(d.id), style="bold")
        title.append(f"  {clean(d.provider)} · {clean(d.model)} · {clean(d.endpoint)}  ")
        title.append(clean(d.status), style=STATUS_STYLE.get(d.status, ""))
        title.append("  ")
        title.append_text(progress_bar(d.succeeded, d.failed, d.total, width=20))
        title.append(f"\ncreated {iso(d.created_at)} ({human_duration(self.now - d.created_at)} ago)")
        if d.ended_at:
            title.append(f" · ended {iso(d.ended_at)}")
        elif d.expires_at:
            title.append(f" · window ends {iso(d.expires_at)}")
        title.append(" · attempts: " + ", ".join(f"{k} {v:,}" for k, v in d.outcomes.items()))
        if not d.ingested:
            title.append(" · results not ingested yet", style="dim")
        if d.error:
            title.append(f"\n{clip(clean(d.error), 300)}", style="red")
        self.query_one("#inspect-title", Static).update(title)
        errors = Text()
        if not d.errors:
            errors.append("no failed attempts" if d.ingested else "no failures known yet", style="dim")
        for i, group in enumerate(d.errors):
            if i:
                errors.append("\n")
            errors.append(clean(group.code), style="bold red")
            errors.append(f"  ×{group.count:,}\n")
            for s in group.samples:
                errors.append(f"  {clean(s.custom_id)}", style="bold")
                errors.append(f"  {clip(clean(s.message), 100)}\n")
                errors.append(f"    {clip(clean(s.line), 140)}\n", style="dim")
        panel = self.query_one("#inspect-errors", Static)
        panel.border_title = f"errors by code ({sum(g.count for g in d.errors):,} failed attempts)"
        panel.update(errors)
        table = self.query_one("#inspect-table", DataTable)
        for a in d.attempts:
            outcome = cell(a.outcome or "pending", OUTCOME_STYLE.get(a.outcome or "", "red" if a.outcome else "dim"))
            table.add_row(cell(a.custom_id, limit=60), Text(str(a.number)), outcome, cell(a.request_state), cell(a.error, limit=120))
        if len(d.attempts) < sum(d.outcomes.values()):
            table.border_subtitle = f"first {len(d.attempts):,} of {sum(d.outcomes.values()):,}"

    def _show_buffer(self, d: inspect.BufferDetail) -> None:
        title = Text()
        title.append(clean(d.name), style="bold")
        title.append(f"\n{d.queued:,} queued · {size(d.bytes)}")
        if d.held_reason:
            title.append(f" · held: {clean(d.held_reason)}", style="yellow")
        self.query_one("#inspect-title", Static).update(title)
        table = self.query_one("#inspect-table", DataTable)
        for r in d.requests:
            deadline = "-" if r.deadline is None else (
                "passed" if r.deadline <= self.now else f"in {human_duration(r.deadline - self.now)}"
            )
            table.add_row(
                cell(r.custom_id, limit=60), Text(human_duration(max(0.0, self.now - r.enqueued_at))), Text(deadline),
                Text(r.tier or "-"), Text(size(r.bytes)), Text(str(r.attempts)), cell(r.last_error, limit=100),
            )
        if len(d.requests) < d.queued:
            table.border_subtitle = f"first {len(d.requests):,} of {d.queued:,}"

    def action_back(self) -> None:
        self.dismiss(None)
