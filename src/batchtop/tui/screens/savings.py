"""The savings screen: spend per day drawn as a chart (batch cost against the real-time
equivalent), savings per model with first-pass break-even, and the what-if of routing
to the configured candidates.

It shows one report document (`batchtop.report.document.build`, what `batchtop report
--json` prints), read in a worker with its own store connection; it computes nothing
but the chart's geometry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import DataTable, Footer, Static
from textual.worker import get_current_worker

from batchtop.config import Config
from batchtop.display import cell, clean, money_column, usd_amount
from batchtop.errors import BatchtopError
from batchtop.report import document
from batchtop.timefmt import human_duration
from batchtop.views.once import has_store

PERIODS: tuple[tuple[str, float | None], ...] = (
    ("last 7 days", 7 * 86400.0),
    ("last 30 days", 30 * 86400.0),
    ("last 90 days", 90 * 86400.0),
    ("all of history", None),
)
DEFAULT_PERIOD = 1
REFRESH_S = 30.0
"""How often an open savings screen re-reads the report (a day's bars move slowly)."""

BATCH, REALTIME, OVER = "green", "grey50", "red"
"""Chart colours: what batches cost; what real time would have cost on top (the saving);
batch spend beyond the real-time equivalent (resubmissions ate the discount)."""
_EIGHTHS = " ▁▂▃▄▅▆▇█"


# -- the chart ------------------------------------------------------------------------------


def _cell_levels(k: int, unit: float, batch: float, realtime: float) -> list[str | None]:
    """The colour of each eighth of chart row k (0 = bottom) for one day's bar."""
    levels: list[str | None] = []
    for e in range(8):
        y = (k * 8 + e + 0.5) * unit / 8
        if y < min(batch, realtime):
            levels.append(BATCH)
        elif y < batch:
            levels.append(OVER)
        elif y < realtime:
            levels.append(REALTIME)
        else:
            levels.append(None)
    return levels


def _glyph(levels: list[str | None]) -> tuple[str, str]:
    """One character cell for eight stacked levels: the lowest colour as a partial block,
    whatever sits above it as the background."""
    low = levels[0]
    if low is None:
        return " ", ""
    filled = next((i for i, c in enumerate(levels) if c != low), 8)
    if filled == 8:
        return "█", low
    above = levels[filled]
    return _EIGHTHS[filled], f"{low} on {above}" if above else low


def spend_chart(days: Sequence[dict[str, Any]], width: int, height: int) -> Text:
    """Bars per UTC day: green up to the batch cost, grey on up to the real-time
    equivalent, red where batch spend passed it; "?" where a day's money is unknown.
    The newest days are kept when they do not all fit."""
    if not days:
        return Text("no batch ended in this period", style="dim")
    rows = max(3, height - 2)  # bars, then day labels, then the legend
    values = [(d["batch_cost_usd"], d["realtime_cost_usd"]) for d in days]
    top = max([max(b or 0.0, r or 0.0) for b, r in values] + [0.0])
    labels = [usd_amount(top), usd_amount(top / 2), usd_amount(0)]
    axis = max(len(s) for s in labels) + 1
    room = max(1, width - axis - 1)
    slot = max(1, min(8, room // len(days)))
    shown = days[-(room // slot):]
    values = values[-len(shown):]
    bar = slot - 1 if slot > 1 else 1
    unit = top / rows if top > 0 else 1.0
    out = Text()
    for k in range(rows - 1, -1, -1):
        label = labels[0] if k == rows - 1 else labels[1] if k == (rows - 1) // 2 else labels[2] if k == 0 else ""
        out.append(label.rjust(axis - 1) + " ┤" if label else " " * axis + "│", style="dim")
        for b, r in values:
            if b is None or r is None:
                out.append(("?" if k == 0 else " ").ljust(slot), style="yellow")
                continue
            char, style = _glyph(_cell_levels(k, unit, b, r))
            out.append(char * bar, style=style)
            out.append(" " * (slot - bar))
        out.append("\n")
    out.append(" " * axis + "└", style="dim")
    out.append(_day_labels([d["day"][5:] for d in shown], slot, room) + "\n", style="dim")
    out.append(" " * axis)
    out.append("█", style=BATCH)
    out.append(" batch cost  ")
    out.append("█", style=REALTIME)
    out.append(" real-time equivalent on top: the saving  ")
    out.append("█", style=OVER)
    out.append(" batch spend over real time  (per UTC day, by batch end)", style="")
    return out


def _day_labels(labels: Sequence[str], slot: int, room: int) -> str:
    """"MM-DD" under the bars, from the newest back, as many as fit a space apart."""
    line = [" "] * room
    free_until = room  # columns from here on are taken
    for i in range(len(labels) - 1, -1, -1):
        start = min(i * slot, room - len(labels[i]))
        if start < 0 or start + len(labels[i]) > free_until:
            continue
        line[start:start + len(labels[i])] = labels[i]
        free_until = start - 1
    return "".join(line).rstrip()


class SpendChart(Widget):
    """The spend-per-day chart, redrawn at whatever size the layout gives it."""

    DEFAULT_CSS = """
    SpendChart { height: 18; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.days: list[dict[str, Any]] = []

    def show(self, days: Sequence[dict[str, Any]]) -> None:
        self.days = list(days)
        self.refresh()

    def render(self) -> Text:
        return spend_chart(self.days, self.content_size.width, self.content_size.height)


# -- the screen ---------------------------------------------------------------------------------


class ReportLoaded(Message):
    def __init__(self, doc: dict[str, Any] | None, error: str | None) -> None:
        super().__init__()
        self.doc = doc
        self.error = error


def _pct(value: float | None, scale: float = 1.0) -> str:
    return "-" if value is None else f"{value * scale:.1f}%"


MODEL_COLUMNS = ("provider", "model", "batches", "succeeded", "batch", "real-time", "saved", "saved %",
                 "1st pass", "break-even", "avg batch")
WHAT_IF_COLUMNS = ("provider", "model", "routed to", "batch", "on it in batch", "extra saved", "extra %",
                   "cut vs real time")


class SavingsScreen(Screen[None]):
    DEFAULT_CSS = """
    SavingsScreen #savings-summary { padding: 0 1; height: auto; }
    SavingsScreen #savings-chart { border: round $primary; padding: 0 1; }
    SavingsScreen DataTable { height: auto; max-height: 12; border: round $primary-darken-1; }
    SavingsScreen #savings-flags { padding: 0 1; height: auto; }
    """
    BINDINGS = [
        Binding("escape,q", "back", "Back", id="batchtop.savings.back"),
        Binding("p", "period", "Period", id="batchtop.savings.period"),
    ]

    def __init__(self, data_dir: Path, config: Config, now: Callable[[], float], period: int = DEFAULT_PERIOD) -> None:
        super().__init__()
        self.data_dir = data_dir
        self.config = config
        self.now = now
        self.period = period
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static("loading…", id="savings-summary")
            yield SpendChart(id="savings-chart")
            yield DataTable(id="savings-models", cursor_type="row", zebra_stripes=True)
            yield Static(id="savings-flags")
            yield DataTable(id="savings-what-if", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        models = self.query_one("#savings-models", DataTable)
        models.border_title = "Savings by model"
        models.add_columns(*MODEL_COLUMNS)
        what_if = self.query_one("#savings-what-if", DataTable)
        what_if.border_title = r"What-if: the same tokens in batch on a candidate model (\[routing] candidates)"
        what_if.add_columns(*WHAT_IF_COLUMNS)
        self.load()

    @work(thread=True, exclusive=True, group="savings", exit_on_error=False)
    def load(self) -> None:
        """Build the report in this worker thread, with its own connection; post it."""
        now = self.now()
        span = PERIODS[self.period][1]
        period = document.Period.rounded(now - span if span is not None else None, None)
        doc, error = None, None
        try:
            if not has_store(self.data_dir, self.config):
                doc = document.build(None, self.config, period, None, now=now)
            else:
                from batchtop.store import Store

                where = self.config.store
                with Store(self.data_dir, create=False, url=where.url, schema=where.schema) as store:
                    doc = document.build(store.db, self.config, period, None, now=now)
        except BatchtopError as exc:
            error = str(exc)
        if not get_current_worker().is_cancelled:
            self.post_message(ReportLoaded(doc, error))

    def on_report_loaded(self, message: ReportLoaded) -> None:
        self._arm_refresh()
        summary = self.query_one("#savings-summary", Static)
        if message.error or message.doc is None:
            summary.update(Text(f"savings: {message.error}", style="bold red"))
            return
        doc = message.doc
        summary.update(self._summary(doc))
        chart = self.query_one("#savings-chart", SpendChart)
        chart.border_title = f"Spend per day, {PERIODS[self.period][0]}"
        chart.show(doc["by_day"])
        self._models(doc)
        self._what_if(doc)

    def _summary(self, doc: dict[str, Any]) -> Text:
        t, p = doc["totals"], doc["projection"]
        text = Text()
        text.append(f"Savings · {PERIODS[self.period][0]}", style="bold")
        since = doc["period"]["since"]
        text.append(f" (since {since})" if since else "", style="dim")
        text.append(f" · prices as of {doc['prices_as_of']} · p: change the period\n", style="dim")
        text.append(f"{t['batches']:,} batches · {t['requests_succeeded']:,} succeeded · batch ")
        text.append(usd_amount(t["batch_cost_usd"]), style="bold")
        text.append(" · real-time equivalent ")
        text.append(usd_amount(t["realtime_cost_usd"]), style="bold")
        text.append(" · saved ")
        text.append(f"{usd_amount(t['saved_usd'])} ({_pct(t['saved_pct'])})", style="bold green")
        text.append(f" · first pass {_pct(t['first_pass_success_rate'], 100)}")
        if t["avg_batch_duration_s"] is not None:
            text.append(f" · avg batch {human_duration(t['avg_batch_duration_s'])}")
        days = p["basis_days"]
        text.append(
            f"\nprojected from {days} day{'s' if days != 1 else ''}: {usd_amount(p['monthly_saved_usd'])} saved a month,"
            f" {usd_amount(p['annual_saved_usd'])} a year (batch spend {usd_amount(p['monthly_batch_cost_usd'])} a month)",
            style="dim",
        )
        if not t["complete"]:
            text.append("\nincomplete: models without a known price are left out of the money", style="yellow")
        return text

    def _models(self, doc: dict[str, Any]) -> None:
        table = self.query_one("#savings-models", DataTable)
        table.clear()
        models, t = doc["by_model"], doc["totals"]
        money = [money_column([m[k] for m in models], t[k])[0]
                 for k in ("batch_cost_usd", "realtime_cost_usd", "saved_usd")]
        flags = Text()
        for i, m in enumerate(models):
            below = m["below_break_even"]
            table.add_row(
                cell(m["provider"]), cell(m["model"], limit=40), f"{m['batches']:,}", f"{m['requests_succeeded']:,}",
                *(Text(col[i], justify="right") for col in money), Text(_pct(m["saved_pct"]), justify="right"),
                Text(_pct(m["first_pass_success_rate"], 100), style="bold red" if below else "", justify="right"),
                Text(_pct(m["break_even_first_pass_rate"], 100) + (" ▲ below" if below else ""),
                     style="bold red" if below else "dim", justify="right"),
                human_duration(m["avg_batch_duration_s"]) if m["avg_batch_duration_s"] is not None else "-",
                key=f"{m['provider']}:{m['model']}",
            )
            if below:
                flags.append(f"! {clean(m['model'], limit=40)}", style="bold red")
                flags.append(
                    f": first-pass success {_pct(m['first_pass_success_rate'], 100)} is below its break-even"
                    f" {_pct(m['break_even_first_pass_rate'], 100)}: resubmissions use up the batch discount\n"
                )
            if not m["price_known"]:
                flags.append(f"? {clean(m['model'], limit=40)}", style="bold yellow")
                flags.append(": no known price; add it under [prices] in the config\n")
        table.border_subtitle = f"{len(models)} model{'s' if len(models) != 1 else ''}"
        self.query_one("#savings-flags", Static).update(flags)

    def _what_if(self, doc: dict[str, Any]) -> None:
        table = self.query_one("#savings-what-if", DataTable)
        table.clear()
        rows = doc["what_if"]
        if not rows:
            table.border_subtitle = (
                r'no candidates: set \[routing] candidates = ["gpt-4o-mini", ...] in the config'
                if not self.config.routing.candidates else "no model of the candidates' providers in this period"
            )
            return
        money = [money_column([w[k] for w in rows])[0] for k in ("batch_cost_usd", "to_batch_cost_usd", "extra_saved_usd")]
        for i, w in enumerate(rows):
            table.add_row(
                cell(w["provider"]), cell(w["model"], limit=40), cell(w["to_model"], limit=40),
                *(Text(col[i], justify="right") for col in money), Text(_pct(w["extra_saved_pct"]), justify="right"),
                Text(_pct(w["saved_pct_vs_realtime"]), style="bold green" if w["price_known"] else "", justify="right"),
                key=f"{w['provider']}:{w['model']}>{w['to_model']}",
            )
        table.border_subtitle = "unknown prices show as ?" if any(not w["price_known"] for w in rows) else ""

    def _arm_refresh(self) -> None:
        """A one-shot timer re-armed after each load, so loads never overlap; none when
        the console refreshes on request only (tests, snapshots)."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if getattr(self.app, "refresh_every", None) is not None:
            self._timer = self.set_timer(REFRESH_S, self.load)

    def action_period(self) -> None:
        self.period = (self.period + 1) % len(PERIODS)
        self.load()

    def action_back(self) -> None:
        self.dismiss(None)
