"""Snapshot tests: the main screen, the inspect screen and the cancel confirmation.

Fixed data (`console_sample`: real engine and simulator on a manual clock),
a frozen clock in the App, no refresh timer, no engine, a fixed terminal size.
Baselines live in tests/__snapshots__/; refresh them with `--snapshot-update`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot

from batchtop.tui.app import BatchtopApp
from batchtop.tui.widgets.live_table import LiveTable

import console_sample as sample

SIZE = (150, 45)


@pytest.fixture(autouse=True)
def no_cursor_blink(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("textual.widgets._input.Input.cursor_blink", False)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> sample.Sample:
    return sample.build(tmp_path_factory.mktemp("sample") / "data")


def frozen_app(data: sample.Sample) -> BatchtopApp:
    return BatchtopApp(data.data_dir, data.config, now=lambda: data.now, engine=False, refresh_every=None, label="~/sample")


async def loaded(pilot: Pilot) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause(0.2)  # past LiveTable's repaint of grown columns


def on_batch(batch_id: str):
    async def run(pilot: Pilot) -> None:
        await loaded(pilot)
        batches = pilot.app.screen.query_one("#batches", LiveTable)
        batches.focus()
        batches.move_cursor(row=batches.get_row_index(batch_id))
        await pilot.pause()

    return run


def test_main_screen(snap_compare, data: sample.Sample) -> None:
    assert snap_compare(frozen_app(data), terminal_size=SIZE, run_before=loaded)


def test_inspect_batch(snap_compare, data: sample.Sample) -> None:
    async def run(pilot: Pilot) -> None:
        await on_batch(data.failed_batch)(pilot)
        await pilot.press("enter")
        await loaded(pilot)

    assert snap_compare(frozen_app(data), terminal_size=SIZE, run_before=run)


def test_cancel_confirmation(snap_compare, data: sample.Sample) -> None:
    assert snap_compare(frozen_app(data), terminal_size=SIZE, press=["c"], run_before=on_batch(data.running_batch))


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_main_screen_at(snap_compare, data: sample.Sample, size: tuple[int, int]) -> None:
    """The sizes operators use: nothing essential cut (see test_layout_keeps_the_essentials)."""
    assert snap_compare(frozen_app(data), terminal_size=size, run_before=on_batch(data.running_batch))


@pytest.mark.parametrize("size", [(80, 24), (100, 30), (160, 48), (220, 60)])
def test_layout_keeps_the_essentials(data: sample.Sample, size: tuple[int, int]) -> None:
    """Header totals whole; the Batches' id, status and progress and the Savings'
    model and saved columns inside their tables; no Savings scrollbar from 160 on."""
    import asyncio

    from batchtop.tui import rows

    async def run() -> None:
        app = frozen_app(data)
        async with app.run_test(size=size) as pilot:
            await loaded(pilot)
            await pilot.pause()
            header = str(app.screen.query_one("#header").render())
            for part in ("2 batches in flight", "3 dead letters", "2 alerts", "saved $", "queued 36", "openai ok"):
                assert part in header, (size, part)
            header_box = app.screen.query_one("#header")
            assert header_box.size.height >= len(header_box.render().wrap(header_box.content_size.width))  # nothing cut
            for name, essential in (("batches", ("batch", "status", "progress")), ("savings", ("model", "saved $")),
                                    ("buffers", ("model", "queued", "flush due"))):
                t = app.screen.query_one(f"#{name}", LiveTable)
                columns = list(t.ordered_columns)
                end = sum(c.get_render_width(t) for c in columns[: max(columns.index(c) for c in columns if c.key.value in essential) + 1])
                assert end <= t.scrollable_content_region.width, (size, name, end)
            if size[0] >= 160:
                savings = app.screen.query_one("#savings", LiveTable)
                assert savings.virtual_size.width <= savings.scrollable_content_region.width, size
            assert rows.BATCH_COLUMNS[:3] == ("batch", "status", "progress")

    asyncio.run(run())


def test_sample_is_deterministic(tmp_path: Path, data: sample.Sample) -> None:
    """Two builds give the same status document: what the snapshots stand on."""
    from batchtop.tui.snapshot import load

    again = sample.build(tmp_path / "again")
    first, second = (load(s.data_dir, s.config, s.now).doc.to_json() for s in (data, again))
    for doc in (first, second):
        for b in doc["batches"]:
            b.pop("submission")  # a random uuid, never shown
    assert first == second


def test_a_cell_wider_than_its_header_is_shown_whole(data: sample.Sample) -> None:
    """A column that grows at a refresh repaints its rows: the sample's `gpt-4o` buffer
    under the 5-wide `model` header showed as `gpt-4`, and `6.7 kB` as `6.7` (their
    lines stayed cached at the old width)."""
    import asyncio

    async def run() -> str:
        app = frozen_app(data)
        async with app.run_test(size=(160, 48)) as pilot:
            await loaded(pilot)
            await pilot.pause()
            return app.export_screenshot().replace("&#160;", " ").replace("\xa0", " ")

    svg = asyncio.run(run())
    assert " gpt-4o " in svg and "6.7 kB" in svg
