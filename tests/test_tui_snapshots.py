"""Snapshot tests: the main screen, the inspect screen and the cancel confirmation.

Fixed data (`batchtop.tui.sample`: real engine and simulator on a manual clock),
a frozen clock in the App, no refresh timer, no engine, a fixed terminal size.
Baselines live in tests/__snapshots__/; refresh them with `--snapshot-update`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot

from batchtop.tui import sample
from batchtop.tui.app import BatchtopApp
from batchtop.tui.widgets.live_table import LiveTable

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
    await pilot.pause()


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


def test_sample_is_deterministic(tmp_path: Path, data: sample.Sample) -> None:
    """Two builds give the same status document: what the snapshots stand on."""
    from batchtop.tui.snapshot import load

    again = sample.build(tmp_path / "again")
    first, second = (dict(load(s.data_dir, s.config, s.now).doc) for s in (data, again))
    for doc in (first, second):
        for b in doc["batches"]:
            b.pop("submission")  # a random uuid, never shown
    assert first == second
