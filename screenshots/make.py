"""Make the console's screenshots: screenshots/*.svg.

    .venv/bin/python screenshots/make.py

Builds the deterministic sample data dir (real engine and simulator on a manual
clock, see `tests/console_sample.py`) in a temp dir, opens the console on it with a
frozen clock and no engine, and saves the main screen, the inspect screen, the
cancel confirmation, the help screen, a search and the main screen at 80x24; then the
savings screen on a fortnight of batches (`tests/report_sample.py`). Same input, same SVGs.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from textual.pilot import Pilot

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from batchtop.tui.app import BatchtopApp  # noqa: E402
from batchtop.tui.widgets.live_table import LiveTable  # noqa: E402

import console_sample as sample  # noqa: E402  (fixtures live under tests/)
import report_sample  # noqa: E402

OUT = Path(__file__).resolve().parent
SIZE = (150, 45)

Step = Callable[[Pilot, sample.Sample], Awaitable[None]]


async def _settle(pilot: Pilot) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause(0.2)  # past LiveTable's repaint of grown columns


async def _on_batch(pilot: Pilot, batch_id: str) -> None:
    batches = pilot.app.screen.query_one("#batches", LiveTable)
    batches.focus()
    batches.move_cursor(row=batches.get_row_index(batch_id))
    await pilot.pause()


async def main_screen(pilot: Pilot, data: sample.Sample) -> None:
    await _on_batch(pilot, data.running_batch)


async def inspect_screen(pilot: Pilot, data: sample.Sample) -> None:
    await _on_batch(pilot, data.failed_batch)
    await pilot.press("enter")
    await _settle(pilot)


async def confirm_cancel(pilot: Pilot, data: sample.Sample) -> None:
    await _on_batch(pilot, data.running_batch)
    await pilot.press("c")
    await _settle(pilot)


async def help_screen(pilot: Pilot, data: sample.Sample) -> None:
    await pilot.press("question_mark")
    await _settle(pilot)


async def savings_screen(pilot: Pilot, data: report_sample.History) -> None:
    await pilot.press("dollar_sign")
    await _settle(pilot)


async def search(pilot: Pilot, data: sample.Sample) -> None:
    await pilot.press("slash", *"o4-mini")
    await _settle(pilot)


SHOTS: dict[str, tuple[Step, tuple[int, int]]] = {
    "main": (main_screen, SIZE),
    "main-80x24": (main_screen, (80, 24)),
    "search": (search, SIZE),
    "inspect": (inspect_screen, SIZE),
    "confirm-cancel": (confirm_cancel, SIZE),
    "help": (help_screen, SIZE),
}


async def shoot(data: sample.Sample | report_sample.History, name: str, step: Step, size: tuple[int, int]) -> Path:
    app = BatchtopApp(data.data_dir, data.config, now=lambda: data.now, engine=False, refresh_every=None, label="~/sample")
    async with app.run_test(size=size) as pilot:
        await _settle(pilot)
        await step(pilot, data)
        await pilot.pause()
        return Path(app.save_screenshot(f"{name}.svg", path=str(OUT)))


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="batchtop-shots-") as tmp:
        data = sample.build(Path(tmp) / "data")  # outside any event loop: it runs the engine
        for name, (step, size) in SHOTS.items():
            path = asyncio.run(shoot(data, name, step, size))
            print(path.relative_to(OUT.parent))
        history = report_sample.build(Path(tmp) / "history")  # a fortnight of batches, for the chart
        print(asyncio.run(shoot(history, "savings", savings_screen, SIZE)).relative_to(OUT.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
