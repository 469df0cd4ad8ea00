"""Reading a provider's result files with bounds, whatever the provider sends.

A result file is untrusted: it may never end, hold one line of hundreds of
megabytes, or lines that are not the JSON the API documents. So lines are split
from the raw bytes here rather than by the HTTP client (which buffers a whole
line, however long): a line over the cap is skipped without being kept, and a
line that does not parse becomes an anomaly, never an exception. Each item
carries the position after it, so an ingest stopped by its budget resumes where
it stopped on the next tick.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # base imports this module for the adapter contract's defaults
    from batchtop.providers.base import ResultLine

DEFAULT_MAX_LINE = 16 * 1024 * 1024
"""Bytes: a long completion is a few hundred kilobytes of JSON; 16 MiB leaves room."""
MAX_TOKENS = 10**12
"""Token counts above this are not usage but garbage (and would overflow the rollups)."""
EXCERPT = 120
"""Characters of a bad line kept in its anomaly, for the operator to recognise it."""

FILE_NAMES = ("output file", "error file")


class BudgetSpent(Exception):
    """The tick's ingest budget (bytes) ran out: stop here, resume next tick."""


class IngestBudget:
    """What one provider pass may spend on reading result files: seconds (wall
    clock, monotonic; skipped lines spend these), bytes of result lines stored,
    and the engine's stop signal. Shared by every
    batch of the pass, so one hostile file cannot take the whole tick twice."""

    def __init__(self, seconds: float, nbytes: int, stop: asyncio.Event | None = None) -> None:
        self.deadline = time.monotonic() + seconds
        self.bytes_left = nbytes
        self.stop = stop

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def spent(self) -> bool:
        return self.bytes_left <= 0 or self.time_left() <= 0 or self.stopped()

    def stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def spend(self, nbytes: int) -> None:
        self.bytes_left -= nbytes
        if self.bytes_left <= 0:
            raise BudgetSpent


@dataclass(frozen=True)
class Position:
    """How far a batch's results were stored: which file (0 output, 1 errors), how
    many of its bytes, and how many lines of all files (blank ones too)."""

    file: int = 0
    offset: int = 0
    lines: int = 0


START = Position()
"""Nothing read yet."""


@dataclass(frozen=True)
class ResultItem:
    """One line read: its result, or an anomaly (kind, detail), or neither (blank)."""

    position: Position
    size: int
    line: ResultLine | None = None
    anomaly: tuple[str, str] | None = None


async def bounded_lines(
    chunks: AsyncIterator[bytes], *, max_line: int, skip: int = 0
) -> AsyncGenerator[tuple[bytes | None, int], None]:
    """(line without its newline, or None when over `max_line`; offset after it),
    for the bytes after the first `skip`. Memory stays within max_line + a chunk."""
    buf = bytearray()
    overlong = False
    base = 0  # offset of the current chunk's first byte in the file
    line_start = skip
    async for chunk in chunks:
        start = 0
        if base + len(chunk) <= skip:
            base += len(chunk)
            continue
        if base < skip:
            start = skip - base
        while True:
            nl = chunk.find(b"\n", start)
            piece = chunk[start:] if nl < 0 else chunk[start:nl]
            if not overlong and len(buf) + len(piece) > max_line:
                overlong = True
                buf.clear()
            elif not overlong:
                buf += piece
            if nl < 0:
                break
            end = base + nl + 1
            yield (None if overlong else bytes(buf)), end
            buf.clear()
            overlong = False
            line_start = end
            start = nl + 1
        base += len(chunk)
    if base > line_start:  # a last line without its newline
        yield (None if overlong else bytes(buf)), base


def _checked(line: ResultLine) -> ResultLine:
    """A parsed line whose fields have the types the store needs."""
    if not isinstance(line.custom_id, str) or not line.custom_id:
        raise ValueError("custom_id is not a string")
    for name in ("input_tokens", "cached_input_tokens", "cache_creation_input_tokens", "output_tokens"):
        value = getattr(line, name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKENS:
            raise ValueError(f"{name} is not a token count")
    if line.error is not None and not isinstance(line.error, str):
        raise ValueError("error is not text")
    return line


def _excerpt(raw: bytes) -> str:
    text = raw[: EXCERPT * 4].decode("utf-8", "replace")
    return text[:EXCERPT] + ("…" if len(raw) > EXCERPT else "")


async def result_items(
    files: Sequence[tuple[int, Callable[[], AsyncGenerator[bytes, None]]]],
    parse: Callable[[str], ResultLine],
    start: Position,
    max_line: int,
) -> AsyncIterator[ResultItem]:
    """The items of a batch's result files from `start` on. `files` pairs each file's
    index with a function opening its byte stream (called only for files not yet
    read); the stream is closed by its opener's own context when this one is."""
    lines = start.lines
    for index, opener in files:
        if index < start.file:
            continue
        skip = start.offset if index == start.file else 0
        name = FILE_NAMES[index] if index < len(FILE_NAMES) else f"file {index}"
        last = skip
        stream = opener()
        async with aclosing(stream), aclosing(bounded_lines(stream, max_line=max_line, skip=skip)) as split:
            async for raw, end in split:
                lines += 1
                size = end - last
                last = end
                position = Position(index, end, lines)
                if raw is None:
                    yield ResultItem(position, size, anomaly=(
                        "overlong_result_line",
                        f"{name} line {lines}: {size} bytes, over the {max_line}-byte cap (engine.ingest_max_line); skipped",
                    ))
                    continue
                if not raw.strip():
                    yield ResultItem(position, size)
                    continue
                try:
                    text = raw.decode("utf-8")
                    item = ResultItem(position, size, line=_checked(parse(text)))
                except Exception as exc:  # noqa: BLE001 - any shape a hostile provider sends: recorded, never raised
                    reason = f"{type(exc).__name__}: {exc}"[:200]
                    item = ResultItem(position, size, anomaly=(
                        "bad_result_line", f"{name} line {lines}: {reason}; starts {_excerpt(raw)!r}"
                    ))
                yield item
