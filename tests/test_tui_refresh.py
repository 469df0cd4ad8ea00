"""A refresh touches only what changed: on a big store the UI thread has ~450 batch
rows to show every couple of seconds, and redrawing unchanged ones is what made it
miss its frame budget. These tests see it through what the tables hold: a cell left
alone is still the very object an earlier refresh put there."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from rich.text import Text
from textual.app import App, ComposeResult

from batchtop.timefmt import parse_time
from batchtop.tui import rows, snapshot
from batchtop.tui.snapshot import Snapshot
from batchtop.tui.widgets.live_table import LiveTable
from batchtop.views import status
from batchtop.views.status_model import BatchCounts, BatchStatus, Status
from test_tui import anyio_backend, console, no_cursor_blink, settle, table  # noqa: F401 (fixtures)

NOW = parse_time("2026-11-25T10:00:00Z")
WIDE_SIZE = (160, 48)


class OneTable(App[None]):
    def compose(self) -> ComposeResult:
        yield LiveTable(("name", "n"), id="t")


def fresh(n: int, changed: dict[int, Text] | None = None) -> list[rows.Row]:
    """The same rows as new objects each call, as every snapshot formats them."""
    changed = changed or {}
    return [(f"r{i}", (Text(f"r{i}"), changed.get(i, Text(str(i), style="green", justify="right")))) for i in range(n)]


def cells(t: LiveTable) -> dict[str, tuple[object, ...]]:
    return {r.key.value: tuple(t.get_row(r.key)) for r in t.ordered_rows}


@pytest.mark.anyio
async def test_an_unchanged_row_is_not_updated_and_a_changed_one_only_in_its_changed_cell() -> None:
    app = OneTable()
    async with app.run_test(size=(60, 20)) as pilot:
        t = app.query_one(LiveTable)
        t.sync(fresh(50))
        await pilot.pause()
        before = cells(t)
        t.sync(fresh(50))  # equal rows, new objects: nothing to redraw
        await pilot.pause()
        after = cells(t)
        assert all(a is b for key in before for a, b in zip(before[key], after[key], strict=True))
        t.sync(fresh(50, {7: Text("70", style="green", justify="right")}))
        await pilot.pause()
        now = cells(t)
        assert now["r7"][1].plain == "70"
        assert now["r7"][0] is before["r7"][0], "the unchanged cell of a changed row was replaced"
        assert all(now[k][1] is before[k][1] for k in before if k != "r7")


@pytest.mark.anyio
async def test_a_cell_whose_style_alone_changed_is_updated() -> None:
    """A rich Text equals another of the same text and spans whatever its own style:
    `$0.10` turning from green to plain must still be redrawn."""
    app = OneTable()
    async with app.run_test(size=(60, 20)) as pilot:
        t = app.query_one(LiveTable)
        t.sync(fresh(3))
        await pilot.pause()
        t.sync(fresh(3, {1: Text("1", style="red", justify="right")}))
        await pilot.pause()
        assert t.get_cell("r1", "n").style == "red"


def _doc(n: int, succeeded_of: dict[int, int] | None = None) -> Status:
    succeeded_of = succeeded_of or {}
    batches = tuple(
        BatchStatus(
            id=f"batch_{i:032d}", provider="openai", model="gpt-4o-mini", status="in_progress", total=100,
            succeeded=succeeded_of.get(i, 10), failed=0, created_at=parse_time("2026-11-25T09:00:00Z"),
            expires_at=parse_time("2026-11-26T09:00:00Z"),
        )
        for i in range(n)
    )
    return replace(status.empty(NOW), batches=batches, batch_counts=BatchCounts(in_flight=n))


@pytest.mark.anyio
async def test_applying_an_unchanged_snapshot_leaves_every_batch_cell_alone(data_dir: Path) -> None:
    app = console(data_dir, engine=False)
    async with app.run_test(size=WIDE_SIZE) as pilot:
        await settle(pilot)
        width = rows.id_width(WIDE_SIZE[0])
        app.main.apply(snapshot.formatted(Snapshot(_doc(200), NOW), width), app.engine_line)
        await pilot.pause()
        batches = table(app, "batches")
        before = cells(batches)
        app.main.apply(snapshot.formatted(Snapshot(_doc(200, {5: 60}), NOW), width), app.engine_line)
        await pilot.pause()
        after = cells(batches)
        moved = [key for key in before for a, b in zip(before[key], after[key], strict=True) if a is not b]
        assert moved == [f"batch_{5:032d}"]
        assert after[moved[0]][2].plain.startswith("██████░░░░ 60/100")


@pytest.mark.anyio
async def test_rows_formatted_for_another_width_are_formatted_again(data_dir: Path) -> None:
    """The worker formats for the width it saw; a terminal widened since shows ids whole."""
    app = console(data_dir, engine=False)
    async with app.run_test(size=WIDE_SIZE) as pilot:
        await settle(pilot)
        app.main.apply(snapshot.formatted(Snapshot(_doc(3), NOW), rows.ID_WIDTH), app.engine_line)
        await pilot.pause()
        shown = [str(table(app, "batches").get_cell(r.key, "batch")) for r in table(app, "batches").ordered_rows]
        assert shown == [f"batch_{i:032d}" for i in range(3)]


def test_the_worker_formats_again_only_the_batches_that_read_differently() -> None:
    """Reused rows are the very rows of the last refresh; a batch whose counts moved,
    or whose age reads differently a minute later, is formatted again; and what the
    memo gives always equals formatting from scratch."""
    memo = rows.BatchRowMemo()
    first, _ = memo.rows(_doc(20).batches, NOW, None)
    again, signatures = memo.rows(_doc(20, {3: 50}).batches, NOW, None)
    reused = [a is b for a, b in zip(first, again, strict=True)]
    assert reused == [i != 3 for i in range(20)]
    assert signatures == rows.signatures(rows.batch_rows(_doc(20, {3: 50}).batches, NOW))
    later, _ = memo.rows(_doc(20, {3: 50}).batches, NOW + 60, None)
    assert not any(a is b for a, b in zip(again, later, strict=True))  # every age moved from 1h to 1h1m
    assert [rows.signature(c) for _, c in later] == [
        rows.signature(c) for _, c in rows.batch_rows(_doc(20, {3: 50}).batches, NOW + 60)
    ]
    narrow, _ = memo.rows(_doc(20, {3: 50}).batches, NOW + 60, rows.ID_WIDTH)
    assert str(narrow[0][1][0]) == rows.middle(f"batch_{0:032d}", rows.ID_WIDTH)
