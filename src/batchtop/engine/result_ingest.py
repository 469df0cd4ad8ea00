"""One batch's results stored within a tick's budget, stoppable at once.

The provider controls the result files, so reading them must never hold the
engine: the read runs as its own task, raced against the budget's deadline and
the engine's stop signal; what was read when it stops is stored with its position
(`store.ingest`), and the next tick goes on from there. Lines come as
`providers.streaming.ResultItem`s, already bounded and parsed, so nothing a line
holds can raise here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass

from batchtop.providers.base import ResultLine
from batchtop.providers.streaming import BudgetSpent, IngestBudget, ResultItem
from batchtop.store.ingest import BatchIngest

INGEST_CHUNK = 2000
INGEST_CHUNK_BYTES = 1 << 20  # large outputs: a chunk stays about a megabyte in memory


class ResultFileTooLong(Exception):
    """More lines than the batch could have results for: the file is not honest."""


@dataclass(frozen=True)
class IngestRun:
    complete: bool
    """The files were read to their end."""
    advanced: bool
    """Something was stored (the position moved) in this run."""


def line_limit(attempts: int) -> int:
    """Lines a batch's result files may hold before they are taken for hostile: one
    per attempt in the output or the error file, with room for blank lines."""
    return 2 * attempts + 100


async def ingest_results(
    ingest: BatchIngest,
    items: AsyncGenerator[ResultItem, None],
    budget: IngestBudget,
    now: Callable[[], float],
    invalid: Callable[[list[ResultLine]], dict[str, str]] = lambda chunk: {},
    judge: Callable[[list[ResultLine]], dict[str, str]] = lambda chunk: {},
    *,
    max_lines: int | None = None,
) -> IngestRun:
    """Store a results stream in chunks bounded in lines and bytes (memory stays flat
    whatever the file's size) until it ends, the budget runs out or the stop signal
    comes. `judge` gives a chunk's failures that must not simply be retried
    (`providers.failures.verdicts`). Raises ResultFileTooLong past `max_lines`, and
    what the download raised."""
    start = ingest.position
    chunk: list[ResultLine] = []
    anomalies: list[tuple[str, str]] = []
    size = 0
    position = start
    broken = False

    def commit() -> None:
        """Store the chunk with its position; after a failed store (a full disk),
        never again in this run: a later, smaller commit would move the position
        past lines that were not stored."""
        nonlocal chunk, anomalies, size, broken
        if broken:
            return
        if chunk or anomalies or position != ingest.position:
            try:
                ingest.add(
                chunk, now(), invalid(chunk) if chunk else {}, judge(chunk) if chunk else {},
                anomalies=anomalies, position=position,
            )
            except BaseException:
                broken = True
                raise
        chunk, anomalies, size = [], [], 0

    async def consume() -> bool:
        nonlocal position, size
        async with aclosing(items):
            async for item in items:
                if item.line is not None:
                    chunk.append(item.line)
                    size += len(item.line.response or "")
                if item.anomaly is not None:
                    anomalies.append(item.anomaly)
                position = item.position
                if max_lines is not None and position.lines > max_lines:
                    raise ResultFileTooLong(
                        f"result files longer than the batch: over {max_lines} lines for {len(ingest.attempts)} requests"
                    )
                if len(chunk) >= INGEST_CHUNK or size >= INGEST_CHUNK_BYTES or len(anomalies) >= INGEST_CHUNK:
                    commit()
                if item.line is not None:  # the byte budget is for what is stored: a skipped line is not
                    budget.spend(item.size)
        return True

    task = asyncio.ensure_future(consume())
    try:
        complete = await _within(task, budget)
    finally:
        if not task.done():  # we were cancelled ourselves: stop the read too
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        commit()  # what was read is kept, with how far it got
    return IngestRun(complete, ingest.position != start)


async def _within(task: asyncio.Future[bool], budget: IngestBudget) -> bool:
    """The task's result, or False once the budget's time is up or the stop signal
    came (the task is then cancelled: an HTTP read in progress is abandoned)."""
    waiters: set[asyncio.Future[object]] = {task}  # type: ignore[arg-type]
    stopper = asyncio.ensure_future(budget.stop.wait()) if budget.stop is not None else None
    if stopper is not None:
        waiters.add(stopper)
    try:
        await asyncio.wait(waiters, timeout=max(0.0, budget.time_left()), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if stopper is not None:
            stopper.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False
    try:
        return task.result()
    except BudgetSpent:
        return False
    except asyncio.CancelledError:
        return False
