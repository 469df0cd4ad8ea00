"""The console's savings screen: its snapshot, its keys, and the chart it draws.

Fixed data (`report_sample`: a fortnight of batches by the real engine over the
simulator on a manual clock), a frozen clock, no engine, a fixed terminal size.
Baselines live in tests/__snapshots__/test_report_tui/; refresh with `--snapshot-update`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable

from batchtop.report import document
from batchtop.store import Store
from batchtop.tui.app import BatchtopApp
from batchtop.tui.screens.main import MainScreen
from batchtop.tui.screens.savings import (
    BATCH,
    OVER,
    REALTIME,
    SavingsScreen,
    spend_chart,
)

import report_sample as sample

SIZE = (150, 45)
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> sample.History:
    return sample.build(tmp_path_factory.mktemp("savings") / "data")


def frozen_app(h: sample.History) -> BatchtopApp:
    return BatchtopApp(h.data_dir, h.config, now=lambda: h.now, engine=False, refresh_every=None, label="~/sample")


async def on_savings(pilot: Pilot) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.press("dollar_sign")
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def test_savings_screen(snap_compare, history: sample.History) -> None:
    assert snap_compare(frozen_app(history), terminal_size=SIZE, run_before=on_savings)


async def test_savings_screen_shows_the_report(history: sample.History) -> None:
    with Store(history.data_dir, create=False) as store:
        doc = document.build(store.db, history.config, document.Period.rounded(history.now - 30 * 86400, None), None,
                             now=history.now)
    app = frozen_app(history)
    async with app.run_test(size=SIZE) as pilot:
        await on_savings(pilot)
        screen = app.screen
        assert isinstance(screen, SavingsScreen)
        assert screen.query_one("#savings-chart").days == doc["by_day"]
        models = screen.query_one("#savings-models", DataTable)
        assert [models.get_row_at(i)[1].plain for i in range(models.row_count)] == [m["model"] for m in doc["by_model"]]
        below = [m["model"] for m in doc["by_model"] if m["below_break_even"]]
        assert below == ["gpt-4o-mini"]
        flags = str(screen.query_one("#savings-flags").render())
        assert "gpt-4o-mini: first-pass success 0.0% is below its break-even 50.0%" in flags
        what_if = screen.query_one("#savings-what-if", DataTable)
        pairs = [(what_if.get_row_at(i)[1].plain, what_if.get_row_at(i)[2].plain) for i in range(what_if.row_count)]
        assert pairs == [("gpt-4o", "gpt-4o-mini"), ("claude-sonnet-4-20250514", "claude-haiku-4-5")]
        assert what_if.get_row_at(0)[-1].plain == "97.0%"  # 2.50/10.00 against 0.15/0.60 at half price

        await pilot.press("p")  # last 90 days, then all of history: the same fortnight
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "last 90 days" in str(screen.query_one("#savings-summary").render())
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)


async def test_savings_screen_on_a_blank_data_dir(tmp_path: Path) -> None:
    app = BatchtopApp(tmp_path / "data", sample.CONFIG, now=lambda: sample.NOW, engine=False, refresh_every=None)
    async with app.run_test(size=SIZE) as pilot:
        await on_savings(pilot)
        assert "no batch ended in this period" in str(app.screen.query_one("#savings-chart").render())
    assert not (tmp_path / "data").exists()


def _styles(text, ch: str) -> set[str]:
    return {str(span.style) for span in text.spans if ch in text.plain[span.start:span.end]}


def test_chart_bars_scale_to_the_largest_day_and_mark_losses_and_unknowns() -> None:
    days = [
        {"day": "2026-11-28", "batch_cost_usd": 1.0, "realtime_cost_usd": 2.0},  # half saved
        {"day": "2026-11-29", "batch_cost_usd": 0.0, "realtime_cost_usd": 0.0},  # idle
        {"day": "2026-11-30", "batch_cost_usd": 2.0, "realtime_cost_usd": 1.0},  # resubmissions: over real time
        {"day": "2026-12-01", "batch_cost_usd": None, "realtime_cost_usd": None},  # no known price
    ]
    text = spend_chart(days, width=60, height=10)
    lines = text.plain.split("\n")
    assert len(lines) == 10  # 8 bar rows, the day labels, the legend
    assert lines[0].startswith("$2.00 ┤") and lines[7].startswith("$0.00 ┤")
    assert "11-28" in lines[8] and "12-01" in lines[8]
    assert "?" in lines[7] and "?" not in "".join(lines[:7])
    # 11-28: green for the lower half of the full height, grey above it; 11-30 the other way round, red above
    column = lines[0].index("┤") + 1
    first = [line[column] for line in lines[:8]]
    assert first == ["█"] * 8
    spans = {(s.start, str(s.style)) for s in text.spans}
    row_starts = [sum(len(line) + 1 for line in lines[:k]) for k in range(8)]
    assert (row_starts[0] + column, REALTIME) in spans and (row_starts[7] + column, BATCH) in spans
    third = column + 2 * (lines[8].index("11-29") - lines[8].index("11-28"))
    assert (row_starts[0] + third, OVER) in spans and (row_starts[7] + third, BATCH) in spans
    assert lines[0][column + 8] == " " and lines[7][column + 8] == " "  # the idle day between is empty


def test_chart_keeps_the_newest_days_when_they_do_not_fit() -> None:
    days = [{"day": f"2026-10-{d:02d}", "batch_cost_usd": 1.0, "realtime_cost_usd": 2.0} for d in range(1, 32)]
    lines = spend_chart(days, width=30, height=6).plain.split("\n")
    assert lines[4].rstrip().endswith("10-31") and "10-01" not in lines[4]  # the newest day is labelled
    assert max(len(line) for line in lines[:4]) <= 30
